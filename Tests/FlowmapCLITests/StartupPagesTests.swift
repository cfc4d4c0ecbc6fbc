@testable import FlowmapCLI
import Foundation
import XCTest

/// The agent hands the pages its start touched in its own binary back to the kernel.
final class StartupPagesTests: XCTestCase {
    /// Resident kB of this process's executable's read-only mappings (from /proc/self/smaps).
    func residentExecutableKiB() throws -> Int {
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let smaps = try String(contentsOfFile: "/proc/self/smaps", encoding: .utf8)
        var total = 0, counting = false
        for line in smaps.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if let first = f.first, first.contains("-"), f.count >= 5, first.allSatisfy({ $0.isHexDigit || $0 == "-" }) {
                counting = f.count >= 6 && String(f[5]) == exe && !f[1].contains("w")
            } else if counting, f.first == "Rss:", f.count >= 2, let kb = Int(f[1]) {
                total += kb
            }
        }
        return total
    }

    func testStartupPagesOfTheBinaryAreHandedBack() throws {
        let before = try residentExecutableKiB()
        XCTAssertGreaterThan(before, 1024, "this test binary has pages resident")
        DiscoveryAgent.releaseStartupPages()
        let after = try residentExecutableKiB()
        XCTAssertLessThan(after, before / 2, "before \(before) kB, after \(after) kB")
    }
}
