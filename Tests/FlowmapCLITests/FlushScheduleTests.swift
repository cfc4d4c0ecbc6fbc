@testable import FlowmapCLI
import XCTest

/// When the agent flushes: every interval, and early when many flows wait; early flushes do
/// not put the interval's off.
final class FlushScheduleTests: XCTestCase {
    func testEarlyFlushesDoNotPostponeTheIntervals() {
        var s = FlushSchedule(start: 0, every: 10, early: 1024)
        var intervals: [Double] = [], early = 0
        // Under load: 2,000 flows wait at every turn of the loop (every half second).
        for i in 1...60 {
            let t = Double(i) / 2
            switch s.take(at: t, pending: 2000) {
            case true?: intervals.append(t)
            case false?: early += 1
            case nil: XCTFail("a flush is due at every turn under load")
            }
        }
        XCTAssertEqual(intervals, [10, 20, 30])
        XCTAssertEqual(early, 57)
    }

    func testQuietLoadFlushesOnlyAtIntervals() {
        var s = FlushSchedule(start: 100, every: 10, early: 1024)
        var flushes: [(Double, Bool)] = []
        for i in 1...25 {
            let t = 100 + Double(i)
            if let interval = s.take(at: t, pending: 3) { flushes.append((t, interval)) }
        }
        XCTAssertEqual(flushes.map(\.0), [110, 120])
        XCTAssertTrue(flushes.allSatisfy(\.1))
        XCTAssertEqual(s.next, 130)
    }
}
