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
}
