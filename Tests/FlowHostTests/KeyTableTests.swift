@testable import FlowHost
import FlowCore
import XCTest

/// The agent's flow-key hash table against `Dictionary` as the model.
final class KeyTableTests: XCTestCase {
    typealias Key = ConntrackFlows.Key

    func key(_ n: Int, zone: UInt16 = 0) -> Key {
        let t = ConntrackTuple(src: IPAddress("10.0.\(n / 250 % 250).\(n % 250 + 1)")!, dst: IPAddress("10.1.0.1")!, proto: 6,
                               sport: UInt16(truncatingIfNeeded: 1024 + n), dport: 443)
        return Key(id: UInt32(truncatingIfNeeded: n &* 2_654_435_761), orig: t, zone: zone)
    }

    func testRandomOperationsMatchADictionary() {
        var rng = SystemRandomNumberGenerator()
        let table = KeyTable<[Int]>()
        var model: [Key: [Int]] = [:]
        let keys = (0..<3000).map { key($0, zone: UInt16($0 % 3)) }
        for step in 0..<200_000 {
            if step == 100_000 {
                for k in keys[300...] { XCTAssertEqual(table.removeValue(forKey: k), model.removeValue(forKey: k)) }
            }
            let k = keys[Int.random(in: 0..<(step < 100_000 ? keys.count : 300), using: &rng)]
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<4:
                XCTAssertEqual(table.updateValue([step], forKey: k), model.updateValue([step], forKey: k))
            case 4..<7:
                XCTAssertEqual(table.removeValue(forKey: k), model.removeValue(forKey: k))
            case 7:
                if let i = table.slot(of: k) {
                    table[slot: i].append(step)  // in place
                    model[k]!.append(step)
                } else {
                    XCTAssertNil(model[k])
                }
            default:
                XCTAssertEqual(table[k], model[k])
            }
            if step % 10_000 == 0 {
                XCTAssertEqual(table.count, model.count)
                XCTAssertEqual(Set(table.allKeys), Set(model.keys))
            }
        }
        // Only a few hundred keys live in the second half: the table gave its room back.
        XCTAssertEqual(table.count, model.count)
        XCTAssertLessThanOrEqual(table.capacity, 2048)
        for (k, v) in model { XCTAssertEqual(table[k], v) }
    }

    func testRemovingWhileVisitingSlots() {
        let table = KeyTable<Int>()
        for n in 0..<5000 { table[key(n)] = n }
        XCTAssertEqual(table.count, 5000)
        // Removal moves nothing: every slot visited is still the entry it was.
        table.forEachSlot { i in if table[slot: i] % 2 == 0 { table.remove(at: i) } }
        XCTAssertEqual(table.count, 2500)
        for n in 0..<5000 { XCTAssertEqual(table[key(n)], n % 2 == 0 ? nil : n) }
        XCTAssertEqual(table.values.sorted(), Array(stride(from: 1, to: 5000, by: 2)))
        // Emptied by removals, it takes entries again.
        table.forEachSlot { table.remove(at: $0) }
        XCTAssertTrue(table.isEmpty)
        XCTAssertNil(table[key(1)])
        table[key(7)] = 7
        XCTAssertEqual(table[key(7)], 7)
    }

    /// Keys that differ only in zone or id are different keys.
    func testZoneAndIdAreParts() {
        let table = KeyTable<String>()
        let a = key(1), b = key(1, zone: 1)
        var c = a
        c.id &+= 1
        table[a] = "a"; table[b] = "b"; table[c] = "c"
        XCTAssertEqual([table[a], table[b], table[c]], ["a", "b", "c"])
        // Values are released when removed and when the table goes.
        final class Counter { var live = 0 }
        final class Box {
            let c: Counter
            init(_ c: Counter) { self.c = c; c.live += 1 }
            deinit { c.live -= 1 }
        }
        let counter = Counter()
        do {
            let boxes = KeyTable<Box>()
            for n in 0..<100 { boxes[key(n)] = Box(counter) }
            for n in 0..<50 { boxes[key(n)] = nil }
            boxes[key(60)] = Box(counter)  // replaces one
            XCTAssertEqual(counter.live, 50)
        }
        XCTAssertEqual(counter.live, 0)
    }
}
