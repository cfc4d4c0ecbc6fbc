/// An IPv4 or IPv6 address in a fixed-size value: two `UInt64`s (16 bytes).
///
/// IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d), as Zeek stores them, so that both
/// families share one layout; an IPv6 packet that carries a mapped address is treated as IPv4,
/// as in Zeek. Fixed size keeps flow keys cheap to hash and compare (gopacket's Endpoint,
/// Zeek's IPAddr).
public struct IPAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var hi: UInt64
    public var lo: UInt64

    @inline(__always)
    public init(v4: UInt32) { hi = 0; lo = 0xFFFF_0000_0000 | UInt64(v4) }

    @inline(__always)
    public init(v6hi: UInt64, v6lo: UInt64) { hi = v6hi; lo = v6lo }

    public static let zeroV4 = IPAddress(v4: 0)

    @inline(__always)
    public var isV6: Bool { !(hi == 0 && lo >> 32 == 0xFFFF) }

    @inline(__always)
    public func hash(into h: inout Hasher) {
        h.combine((lo &* 0x9E37_79B9_7F4A_7C15) ^ (hi &* 0xC2B2_AE3D_27D4_EB4F))
    }

    /// Words that identify the address in content-derived ids (IPv4 as its 32-bit value), kept
    /// stable across representations.
    var idWords: (UInt64, UInt64) { isV6 ? (hi, lo) : (0, UInt64(v4)) }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        let av6 = a.isV6, bv6 = b.isV6
        if av6 != bv6 { return !av6 }
        if a.hi != b.hi { return a.hi < b.hi }
        return a.lo < b.lo
    }

    public var v4: UInt32 { UInt32(truncatingIfNeeded: lo) }

    /// IPv4 limited broadcast or multicast (v4 224/4, v6 ff00::/8): never a client.
    public var isBroadcastOrMulticast: Bool {
        if isV6 { return (hi >> 56) == 0xFF }
        let a = v4
        return a == 0xFFFF_FFFF || (a >> 28) == 0xE
    }

    /// RFC 1918, RFC 4193 (fc00::/7), loopback and link-local ranges.
    public var isPrivate: Bool {
        if isV6 {
            if hi == 0 && lo == 1 { return true }
            let top = hi >> 48
            return (top & 0xFE00) == 0xFC00 || (top & 0xFFC0) == 0xFE80
        }
        let a = v4
        return (a >> 24) == 10 || (a >> 20) == 0xAC1 || (a >> 16) == 0xC0A8 || (a >> 24) == 127
            || (a >> 16) == 0xA9FE
    }

    /// Text form: dotted quad, or RFC 5952 compressed lower-case IPv6.
    public var description: String {
        let w = ByteWriter(capacity: 64)
        w.address(self)
        return w.withBytes { String(decoding: $0, as: UTF8.self) }
    }

    /// Writes the RFC 5952 text of an IPv6 address: lower case, longest run of two or more
    /// zero groups as "::" (the first on ties).
    func writeV6(into w: ByteWriter) {
        @inline(__always) func group(_ i: Int) -> UInt16 {
            i < 4 ? UInt16(truncatingIfNeeded: hi >> (48 - 16 * UInt64(i)))
                : UInt16(truncatingIfNeeded: lo >> (48 - 16 * UInt64(i - 4)))
        }
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if group(i) == 0 {
                var j = i
                while j < 8 && group(j) == 0 { j += 1 }
                if j - i > bestLen && j - i >= 2 { bestStart = i; bestLen = j - i }
                i = j
            } else { i += 1 }
        }
        let hex: StaticString = "0123456789abcdef"
        var k = 0
        var needColon = false
        while k < 8 {
            if k == bestStart {
                w.byte(58); w.byte(58)
                k += bestLen
                needColon = false
                continue
            }
            if needColon { w.byte(58) }
            let g = group(k)
            var started = false
            for shift in stride(from: 12, through: 0, by: -4) {
                let d = Int((g >> UInt16(shift)) & 0xF)
                if d != 0 || started || shift == 0 {
                    hex.withUTF8Buffer { w.byte($0[d]) }
                    started = true
                }
            }
            needColon = true
            k += 1
        }
    }

    /// Parses a dotted quad or an IPv6 text address (with `::`, and an optional dotted tail).
    public init?(_ text: Substring) {
        if !text.contains(":") {
            guard let v = IPAddress.parseV4(text) else { return nil }
            self.init(v4: v)
            return
        }
        var head: [UInt16] = [], tail: [UInt16] = []
        var sawGap = false
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        var idx = 0
        // Handle leading "::".
        if text.hasPrefix("::") { sawGap = true; idx = 2 }
        else if text.hasPrefix(":") { return nil }
        while idx < parts.count {
            let p = parts[idx]
            if p.isEmpty {
                if sawGap {
                    if idx == parts.count - 1 { break }  // trailing "::"
                    return nil
                }
                sawGap = true
                idx += 1
                continue
            }
            if p.contains(".") {
                guard idx == parts.count - 1, let v = IPAddress.parseV4(p) else { return nil }
                let g1 = UInt16(v >> 16), g2 = UInt16(v & 0xFFFF)
                if sawGap { tail += [g1, g2] } else { head += [g1, g2] }
                idx += 1
                continue
            }
            guard p.count <= 4, let g = UInt16(p, radix: 16) else { return nil }
            if sawGap { tail.append(g) } else { head.append(g) }
            idx += 1
        }
        let total = head.count + tail.count
        if sawGap ? total > 7 : total != 8 { return nil }
        let groups = head + [UInt16](repeating: 0, count: 8 - total) + tail
        var h: UInt64 = 0, l: UInt64 = 0
        for j in 0..<4 { h = (h << 16) | UInt64(groups[j]) }
        for j in 4..<8 { l = (l << 16) | UInt64(groups[j]) }
        self.init(v6hi: h, v6lo: l)
    }

    public init?(_ text: String) { self.init(Substring(text)) }

    private static func parseV4(_ s: Substring) -> UInt32? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard !p.isEmpty, p.count <= 3, let n = UInt32(p), n <= 255 else { return nil }
            v = (v << 8) | n
        }
        return v
    }
}
