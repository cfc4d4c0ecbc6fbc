import FlowCore
@testable import FlowHost
import XCTest

/// Uids of connections waiting in TIME_WAIT are held packed; every uid comes back unchanged.
final class CompactUIDTests: XCTestCase {
    func testFlowmapUIDsRoundTripAndOthersAreKeptAsText() {
        var uids = ["C000000000000000000", "Czzzzzzzzzzzzzzzzz", "C00000000000000000", "CA1b2C3d4E5f6G7h8i"]
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<2000 {
            x = x &* 6364136223846793005 &+ 1442695040888963407
            uids.append(FlowUID.format(x, x.byteSwapped))
        }
        // Not flowmap's form: other lengths, prefixes and characters.
        uids += ["", "C", "Cabc", "D00000000000000000", "C0000000000000000!", "CÄ000000000000000", "C000000000000000000000"]
        for u in uids { XCTAssertEqual(CompactUID(u).string, u) }
        XCTAssertEqual(FlowUID.format(1, 2).utf8.count, 18)
        XCTAssertNotEqual(CompactUID("C00000000000000001"), CompactUID("C00000000000000010"))
        XCTAssertLessThanOrEqual(MemoryLayout<CompactUID>.size, 17)
    }

    /// The agent's uids sort as their times do (the store's uid index is appended to), are
    /// held packed, and differ for flows of the same instant.
    func testTimeOrderedUIDsSortByTimeAndPack() {
        var x: UInt64 = 0x2545_F491_4F6C_DD1D
        var made: [(Double, String)] = []
        var t = 1_790_000_000.0
        for _ in 0..<3000 {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            t += Double(x % 1000) / 997  // steps from 0 to 1 s, some under the 1/3,844 s tick
            made.append((t, FlowUID.timeOrdered(t, x)))
        }
        for (_, u) in made {
            XCTAssertEqual(u.utf8.count, 18)
            XCTAssertTrue(u.hasPrefix("C"))
            XCTAssertEqual(CompactUID(u).string, u)
            XCTAssertLessThanOrEqual(MemoryLayout<CompactUID>.size, 17)
        }
        for i in 1..<made.count where made[i].0 - made[i - 1].0 >= 1.0 / 3844 {
            XCTAssertLessThan(made[i - 1].1, made[i].1, "times \(made[i - 1].0) < \(made[i].0)")
        }
        XCTAssertEqual(Set(made.map(\.1)).count, made.count)
        // The same instant, other hashes: other uids, all after an earlier second's.
        let now = FlowUID.timeOrdered(1_800_000_000.25, 1), other = FlowUID.timeOrdered(1_800_000_000.25, 2)
        XCTAssertNotEqual(now, other)
        XCTAssertLessThan(FlowUID.timeOrdered(1_799_999_999.9, .max), min(now, other))
        // Deterministic: the same time and hash give the same uid (a restart re-derives it).
        XCTAssertEqual(FlowUID.timeOrdered(1_800_000_000.25, 1), now)
    }

    /// The time-ordered layout, written out independently: "C", eight base-62 digits of the
    /// time in 1/3,844 s (most significant first), nine of the hash (least significant first).
    func reference(_ t: Double, _ h: UInt64) -> String {
        let abc = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
        var ticks = UInt64(max(0, min(t, 1.4e10)) * 3844) % 218_340_105_584_896
        var time: [UInt8] = [], hash: [UInt8] = []
        for _ in 0..<8 { time.insert(abc[Int(ticks % 62)], at: 0); ticks /= 62 }
        var y = h
        for _ in 0..<9 { hash.append(abc[Int(y % 62)]); y /= 62 }
        return String(decoding: [UInt8(ascii: "C")] + time + hash, as: UTF8.self)
    }

    /// The agent makes uids as digits, without the string: they are the strings
    /// `FlowUID.timeOrdered` makes, and they sort as those strings do.
    func testUIDsMadeAsDigitsAreTheTimeOrderedStrings() {
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        var made: [CompactUID] = []
        for i in 0..<3000 {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            let t = i % 3 == 0 ? Double(x % 4_000_000_000) + Double(x % 997) / 997 : [0, 1e-4, 1.4e10, 2e10][i % 4]
            let (hi, lo) = FlowUID.timeOrderedDigits(t, x)
            let u = CompactUID(packed: hi, lo)
            XCTAssertEqual(u.string, reference(t, x))
            XCTAssertEqual(FlowUID.timeOrdered(t, x), reference(t, x))
            XCTAssertEqual(CompactUID(reference(t, x)), u, "parsed back to the same digits")
            made.append(u)
        }
        made.append(CompactUID("not-a-flowmap-uid"))
        for (a, b) in zip(made, made.dropFirst()) {
            XCTAssertEqual(a < b, a.string < b.string, "\(a.string) \(b.string)")
            XCTAssertEqual(b < a, b.string < a.string)
        }
    }
}
