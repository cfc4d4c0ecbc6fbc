import FlowCore

/// An address prefix (10.0.1.0/24, fd00::/8). IPv4 prefixes are stored as their IPv4-mapped
/// IPv6 form, like `IPAddress`, so one comparison serves both families.
public struct CIDR: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let network: IPAddress
    /// Prefix length in the address's own family (0...32 for IPv4, 0...128 for IPv6).
    public let length: Int
    public let isV6: Bool

    /// Parses "a.b.c.d/n", "x::y/n", or a bare address (a /32 or /128). Host bits must be zero
    /// unless `strict` is false (then they are cleared).
    public init?(_ text: String, strict: Bool = false) {
        guard let c = CIDR.quick(text, strict: strict) ?? CIDR.general(text, strict: strict) else { return nil }
        self = c
    }

    private init(checked network: IPAddress, length: Int, isV6: Bool) {
        self.network = network; self.length = length; self.isV6 = isV6
    }

    /// The usual form ("10.1.0.0/16", "2001:db8::/48", a bare address) without allocating:
    /// .some(nil) when such a text is not a CIDR, nil when the text needs `general`.
    static func quick(_ text: String, strict: Bool) -> CIDR?? {
        var t = text
        let parsed: (IPAddress, Int?)?? = t.withUTF8 { b in
            var slash = -1
            for i in 0..<b.count where b[i] == 47 {
                guard slash < 0 else { return .some(nil) }  // two slashes: not a CIDR
                slash = i
            }
            if slash < 0 { return IPAddress.parse(b).map { ($0, nil) } }
            let digits = b.count - slash - 1
            guard digits >= 1, digits <= 3 else { return nil }
            var n = 0
            for i in (slash + 1)..<b.count {
                guard b[i] >= 48 && b[i] <= 57 else { return nil }
                n = n * 10 + Int(b[i] - 48)
            }
            return IPAddress.parse(UnsafeBufferPointer(rebasing: b[0..<slash])).map { ($0, n) }
        }
        guard let q = parsed else { return nil }
        guard let (addr, n) = q else { return .some(nil) }
        return .some(make(addr, n, strict: strict))
    }

    private static func make(_ addr: IPAddress, _ n: Int?, strict: Bool) -> CIDR? {
        let v6 = addr.isV6
        let maxLen = v6 ? 128 : 32
        if let n, n < 0 || n > maxLen { return nil }
        let len = n ?? maxLen
        let net = CIDR.mask(addr, bits: v6 ? len : len + 96)
        if strict && net != addr { return nil }
        return CIDR(checked: net, length: len, isV6: v6)
    }

    /// Any spelling.
    static func general(_ text: String, strict: Bool) -> CIDR? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let addr = IPAddress(parts[0]) else { return nil }
        var len: Int?
        if parts.count == 2 {
            guard let n = Int(parts[1]), !parts[1].hasPrefix("+") else { return nil }
            len = n
        }
        return make(addr, len, strict: strict)
    }

    public init(network: IPAddress, length: Int) {
        isV6 = network.isV6
        self.length = length
        self.network = CIDR.mask(network, bits: isV6 ? length : length + 96)
    }

    /// The number of leading bits that matter, in the 128-bit form.
    private var bits: Int { isV6 ? length : length + 96 }

    static func mask(_ a: IPAddress, bits: Int) -> IPAddress {
        if bits >= 128 { return a }
        if bits <= 0 { return IPAddress(v6hi: 0, v6lo: 0) }
        if bits <= 64 {
            let m: UInt64 = bits == 64 ? ~0 : ~(~0 >> UInt64(bits))
            return IPAddress(v6hi: a.hi & m, v6lo: 0)
        }
        let m: UInt64 = ~(~0 >> UInt64(bits - 64))
        return IPAddress(v6hi: a.hi, v6lo: a.lo & m)
    }

    public func contains(_ a: IPAddress) -> Bool {
        if a.isV6 != isV6 { return false }
        return CIDR.mask(a, bits: bits) == network
    }

    /// How wide the prefix is, as a number of host bits (0 for a single address).
    public var hostBits: Int { (isV6 ? 128 : 32) - length }

    public var description: String { "\(network)/\(length)" }

    public static func < (a: CIDR, b: CIDR) -> Bool {
        a.network != b.network ? a.network < b.network : a.length < b.length
    }
}

extension IPAddress {
    /// A unicast address routed on the internet: not private (RFC 1918, ULA), shared
    /// (100.64/10), loopback, link-local, multicast, broadcast or unspecified.
    public var isPublic: Bool {
        if isPrivate || isBroadcastOrMulticast { return false }
        if isV6 {
            if hi == 0 && lo == 0 { return false }
            if hi == 0 && lo == 1 { return false }
            // Global unicast is 2000::/3.
            return (hi >> 61) == 1
        }
        let a = v4
        if (a >> 24) == 0 { return false }                 // 0/8
        if (a >> 22) == (100 << 2 | 1) { return false }    // 100.64/10
        if (a >> 24) == 127 || (a >> 16) == 0xA9FE { return false }
        if (a >> 28) == 0xF { return false }               // 240/4 reserved
        return true
    }
}
