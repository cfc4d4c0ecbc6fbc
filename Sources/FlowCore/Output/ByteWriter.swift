/// Appends text to a byte buffer without intermediate `String`s: the output path for large
/// runs (one row per flow, a million flows).
public struct ByteWriter {
    public var bytes: [UInt8]

    public init(capacity: Int = 1 << 16) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    @inline(__always)
    public mutating func byte(_ b: UInt8) { bytes.append(b) }

    @inline(__always)
    public mutating func ascii(_ s: StaticString) {
        s.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    @inline(__always)
    public mutating func text(_ s: String) {
        var s = s
        s.withUTF8 { bytes.append(contentsOf: $0) }
    }

    /// Decimal digits of `v`.
    @inline(__always)
    public mutating func decimal(_ v0: UInt64) {
        if v0 < 10 { bytes.append(48 &+ UInt8(v0)); return }
        var buf: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: enough for 20 digits
        var n = 0
        var v = v0
        withUnsafeMutableBytes(of: &buf) { p in
            while v > 0 {
                p[23 - n] = 48 &+ UInt8(v % 10)
                v /= 10
                n += 1
            }
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: p[(24 - n)...]))
        }
    }

    @inline(__always)
    public mutating func decimal(_ v: Int) {
        if v < 0 { bytes.append(45); decimal(UInt64(-v)) } else { decimal(UInt64(v)) }
    }

    /// `x` with 6 decimals, rounded half away from zero (Zeek's `%.6f`).
    public mutating func fixed6(_ x: Double) {
        guard x.isFinite, abs(x) < 9.0e12 else { text(Fmt.fixed(x)); return }
        if x < 0 { bytes.append(45) }
        let n = UInt64((abs(x) * 1_000_000).rounded(.toNearestOrAwayFromZero))
        decimal(n / 1_000_000)
        bytes.append(46)
        var frac = n % 1_000_000
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { p in
            for i in stride(from: 5, through: 0, by: -1) {
                p[i] = 48 &+ UInt8(frac % 10)
                frac /= 10
            }
            bytes.append(contentsOf: p)
        }
    }

    /// An address in its text form (dotted quad, or RFC 5952 IPv6).
    public mutating func address(_ a: IPAddress) {
        if a.isV6 {
            text(a.description)
            return
        }
        let v = a.v4
        decimal(UInt64(v >> 24)); bytes.append(46)
        decimal(UInt64((v >> 16) & 0xFF)); bytes.append(46)
        decimal(UInt64((v >> 8) & 0xFF)); bytes.append(46)
        decimal(UInt64(v & 0xFF))
    }
}
