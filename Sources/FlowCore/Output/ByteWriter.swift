/// Appends text to a growable byte buffer without intermediate `String`s or per-append
/// bookkeeping: the output path for large runs (one row per flow, a million flows).
public final class ByteWriter {
    private var base: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    public private(set) var count = 0

    /// Where a full buffer goes instead of growing (see `init(capacity:sink:)`).
    private let sink: ((UnsafeRawBufferPointer) -> Void)?

    public init(capacity: Int = 1 << 16) {
        self.capacity = max(capacity, 64)
        base = .allocate(capacity: self.capacity)
        sink = nil
    }

    /// A writer that hands its bytes to `sink` whenever the next write would not fit, and
    /// reuses the buffer: output of any size in a fixed buffer. `count` is then what was written
    /// since the last hand-off; call `drain()` at the end for the rest.
    public init(capacity: Int, sink: @escaping (UnsafeRawBufferPointer) -> Void) {
        self.capacity = max(capacity, 64)
        base = .allocate(capacity: self.capacity)
        self.sink = sink
    }

    /// Hands what is buffered to the sink (if there is one) and empties the buffer.
    public func drain() {
        guard let sink, count > 0 else { return }
        sink(UnsafeRawBufferPointer(start: base, count: count))
        count = 0
    }

    deinit { base.deallocate() }

    /// A copy of the bytes written so far.
    public var bytes: [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }

    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    public func clear() { count = 0 }

    @inline(__always)
    private func reserve(_ n: Int) {
        if count + n > capacity { makeRoom(n) }
    }

    /// Makes room for `n` more bytes: hands the buffer to the sink, or grows it.
    private func makeRoom(_ n: Int) {
        if sink != nil {
            drain()
            if n <= capacity { return }
        }
        let need = count + n
        var c = capacity
        while c < need { c *= 2 }
        let nb = UnsafeMutablePointer<UInt8>.allocate(capacity: c)
        nb.update(from: base, count: count)
        base.deallocate()
        base = nb
        capacity = c
    }

    @inline(__always)
    public func byte(_ b: UInt8) {
        reserve(1)
        base[count] = b
        count += 1
    }

    @inline(__always)
    public func ascii(_ s: StaticString) {
        s.withUTF8Buffer { raw(UnsafeRawBufferPointer($0)) }
    }

    /// Lets `body` write exactly `n` bytes in place.
    @inline(__always)
    func withSpace(_ n: Int, _ body: (UnsafeMutableRawBufferPointer) -> Void) {
        reserve(n)
        body(UnsafeMutableRawBufferPointer(start: base + count, count: n))
        count += n
    }

    @inline(__always)
    public func raw(_ p: UnsafeRawBufferPointer) {
        reserve(p.count)
        if let src = p.baseAddress { (base + count).update(from: src.assumingMemoryBound(to: UInt8.self), count: p.count) }
        count += p.count
    }

    @inline(__always)
    public func text(_ s: String) {
        var s = s
        s.withUTF8 { raw(UnsafeRawBufferPointer($0)) }
    }

    /// Decimal digits of `v`.
    @inline(__always)
    public func decimal(_ v0: UInt64) {
        reserve(20)
        if v0 < 10 { base[count] = 48 &+ UInt8(v0); count += 1; return }
        // The digit count from comparisons, then each digit once (one division per digit).
        var digits = 2
        var limit: UInt64 = 100
        while digits < 20 && v0 >= limit {
            digits += 1
            limit = limit &* 10
        }
        var v = v0
        var i = count + digits - 1
        while v >= 10 {
            let q = v / 10
            base[i] = 48 &+ UInt8(truncatingIfNeeded: v &- q &* 10)
            v = q
            i -= 1
        }
        base[i] = 48 &+ UInt8(truncatingIfNeeded: v)
        count += digits
    }

    @inline(__always)
    public func decimal(_ v: Int) {
        if v < 0 { byte(45); decimal(UInt64(-v)) } else { decimal(UInt64(v)) }
    }

    /// `x` with 6 decimals, rounded half away from zero (Zeek's `%.6f`).
    public func fixed6(_ x: Double) {
        guard x.isFinite, abs(x) < 9.0e12 else { text(Fmt.fixed(x)); return }
        if x < 0 { byte(45) }
        let n = UInt64((abs(x) * 1_000_000).rounded(.toNearestOrAwayFromZero))
        decimal(n / 1_000_000)
        reserve(7)
        base[count] = 46
        var frac = n % 1_000_000
        for i in stride(from: 6, through: 1, by: -1) {
            base[count + i] = 48 &+ UInt8(frac % 10)
            frac /= 10
        }
        count += 7
    }

    /// An address in its text form (dotted quad, or RFC 5952 IPv6).
    public func address(_ a: IPAddress) {
        if a.isV6 {
            a.writeV6(into: self)
            return
        }
        let v = a.v4
        reserve(15)
        let p = base
        var i = count
        @inline(__always) func octet(_ o: UInt8) {
            if o >= 100 {
                p[i] = 48 &+ o / 100; p[i + 1] = 48 &+ (o / 10) % 10; p[i + 2] = 48 &+ o % 10
                i += 3
            } else if o >= 10 {
                p[i] = 48 &+ o / 10; p[i + 1] = 48 &+ o % 10
                i += 2
            } else {
                p[i] = 48 &+ o
                i += 1
            }
        }
        octet(UInt8(truncatingIfNeeded: v >> 24)); p[i] = 46; i += 1
        octet(UInt8(truncatingIfNeeded: v >> 16)); p[i] = 46; i += 1
        octet(UInt8(truncatingIfNeeded: v >> 8)); p[i] = 46; i += 1
        octet(UInt8(truncatingIfNeeded: v))
        count = i
    }
}
