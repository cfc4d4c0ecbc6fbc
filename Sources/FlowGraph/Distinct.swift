/// Counts distinct 64-bit hashes in bounded memory: exactly up to `exactLimit` values, then
/// with HyperLogLog (2^12 registers, about 1.6% standard error) — so a graph's memory grows
/// with its workloads and edges, not with the endpoints behind them.
struct DistinctCounter {
    static let exactLimit = 256
    private static let p = 12
    private var exact: [UInt64] = []  // sorted
    private var registers: [UInt8]?

    var isExact: Bool { registers == nil }

    mutating func insert(_ h: UInt64) {
        if var r = registers {
            registers = nil
            DistinctCounter.add(&r, h)
            registers = r
            return
        }
        var lo = 0, hi = exact.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if exact[mid] < h { lo = mid + 1 } else { hi = mid }
        }
        if lo < exact.count && exact[lo] == h { return }
        exact.insert(h, at: lo)
        if exact.count > DistinctCounter.exactLimit {
            var r = [UInt8](repeating: 0, count: 1 << DistinctCounter.p)
            for v in exact { DistinctCounter.add(&r, v) }
            registers = r
            exact = []
        }
    }

    private static func add(_ r: inout [UInt8], _ h: UInt64) {
        let idx = Int(h >> UInt64(64 - p))
        let rest = h << UInt64(p) | (1 << UInt64(p - 1))  // a stop bit bounds the run
        let rank = UInt8(rest.leadingZeroBitCount + 1)
        if rank > r[idx] { r[idx] = rank }
    }

    var count: Int {
        guard let r = registers else { return exact.count }
        let m = Double(r.count)
        var sum = 0.0
        var zeros = 0
        for v in r {
            sum += 1.0 / Double(UInt64(1) << UInt64(v))
            if v == 0 { zeros += 1 }
        }
        let alpha = 0.7213 / (1 + 1.079 / m)
        var e = alpha * m * m / sum
        if e <= 2.5 * m && zeros > 0 { e = m * naturalLog(m / Double(zeros)) }
        return Int(e.rounded())
    }
}

/// The natural logarithm of a positive finite `x` (the pure modules import no C library):
/// x = m·2^e with m in [1, 2), ln x = e·ln 2 + 2·atanh((m − 1)/(m + 1)).
func naturalLog(_ x: Double) -> Double {
    guard x > 0, x.isFinite else { return x == 0 ? -.infinity : .nan }
    let e = Double(x.exponent)
    let m = x.significand
    let y = (m - 1) / (m + 1)
    let y2 = y * y
    var term = y, sum = 0.0
    var k = 1.0
    while k < 60 {
        sum += term / k
        term *= y2
        k += 2
        if abs(term) < 1e-18 { break }
    }
    return e * 0.693_147_180_559_945_3 + 2 * sum
}

/// A 64-bit mix (splitmix64's finaliser) of two words.
@inline(__always)
func mix64(_ a: UInt64, _ b: UInt64) -> UInt64 {
    var x = a &* 0x9E37_79B9_7F4A_7C15 ^ (b &+ 0x632B_E59B_D9B4_E019)
    x ^= x >> 30
    x = x &* 0xBF58_476D_1CE4_E5B9
    x ^= x >> 27
    x = x &* 0x94D0_49BB_1331_11EB
    x ^= x >> 31
    return x
}
