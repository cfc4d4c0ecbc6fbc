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
        var t = text
        guard let a = t.withUTF8({ IPAddress.parse($0) }) else { return nil }
        self = a
    }

    public init?(_ text: String) {
        var t = text
        guard let a = t.withUTF8({ IPAddress.parse($0) }) else { return nil }
        self = a
    }

    /// Parses UTF-8 text without allocating.
    public static func parse(_ b: UnsafeBufferPointer<UInt8>) -> IPAddress? {
        let n = b.count
        guard n > 0 else { return nil }
        var hasColon = false
        for c in b where c == UInt8(ascii: ":") { hasColon = true; break }
        if !hasColon {
            guard let v = parseV4(b, from: 0) else { return nil }
            return IPAddress(v4: v)
        }
        return withUnsafeTemporaryAllocation(of: UInt16.self, capacity: 8) { g -> IPAddress? in
            var count = 0, gapAt = -1, i = 0
            if n >= 2 && b[0] == UInt8(ascii: ":") && b[1] == UInt8(ascii: ":") {
                gapAt = 0
                i = 2
            } else if b[0] == UInt8(ascii: ":") {
                return nil
            }
            while i < n {
                let start = i
                var v: UInt32 = 0
                while i < n, i - start < 5, let d = hexValue(b[i]) { v = v << 4 | d; i += 1 }
                if i < n && b[i] == UInt8(ascii: ".") {
                    // A dotted IPv4 tail: two groups.
                    guard count <= 6, let v4 = parseV4(b, from: start) else { return nil }
                    g[count] = UInt16(v4 >> 16); g[count + 1] = UInt16(v4 & 0xFFFF)
                    count += 2
                    i = n
                    break
                }
                guard i > start, i - start <= 4, count < 8 else { return nil }
                g[count] = UInt16(v)
                count += 1
                if i == n { break }
                guard b[i] == UInt8(ascii: ":") else { return nil }
                i += 1
                if i < n && b[i] == UInt8(ascii: ":") {
                    if gapAt >= 0 { return nil }
                    gapAt = count
                    i += 1
                    if i == n { break }
                } else if i == n {
                    return nil
                }
            }
            if gapAt >= 0 {
                guard count <= 7 else { return nil }
                let tail = count - gapAt
                for k in 0..<tail { g[7 - k] = g[count - 1 - k] }
                for k in gapAt..<(8 - tail) { g[k] = 0 }
            } else if count != 8 {
                return nil
            }
            var h: UInt64 = 0, l: UInt64 = 0
            for j in 0..<4 { h = (h << 16) | UInt64(g[j]) }
            for j in 4..<8 { l = (l << 16) | UInt64(g[j]) }
            return IPAddress(v6hi: h, v6lo: l)
        }
    }

    @inline(__always)
    private static func hexValue(_ c: UInt8) -> UInt32? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(c - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(c - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(c - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }

    /// A dotted quad from `b[from...]` to the end: four decimal parts of 1–3 digits, ≤ 255.
    private static func parseV4(_ b: UnsafeBufferPointer<UInt8>, from: Int) -> UInt32? {
        var v: UInt32 = 0, part: UInt32 = 0, digits = 0, parts = 0
        var i = from
        while i <= b.count {
            if i == b.count || b[i] == UInt8(ascii: ".") {
                guard digits > 0, part <= 255 else { return nil }
                v = v << 8 | part
                parts += 1
                part = 0; digits = 0
                if i == b.count { break }
            } else {
                let c = b[i]
                guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9"), digits < 3 else { return nil }
                part = part * 10 + UInt32(c - UInt8(ascii: "0"))
                digits += 1
            }
            i += 1
        }
        return parts == 4 ? v : nil
    }
}
