import FlowCore
import Foundation
import XCTest

/// Every output format against reviewed golden files (RECORD_GOLDEN=1 re-records and fails).
/// The capture mixes IPv4 and IPv6, Teredo tunnels, flips, DNS, resets and ICMPv6.
final class GoldenTests: XCTestCase {
    let capture = Repo.fixtures.appendingPathComponent("zeek-parity/teredo.pcap").path

    func testRenderersMatchGoldenFiles() throws {
        let (records, stats) = try analyze([capture])
        var zeek = ZeekConnLogWriter.header(openTime: stats.firstTimestamp)
        var json = "", csv = CSVWriter.header
        for r in records {
            zeek += ZeekConnLogWriter.row(r)
            json += JSONLines.line(r)
            csv += CSVWriter.row(r)
        }
        zeek += ZeekConnLogWriter.footer(closeTime: stats.lastTimestamp)
        try assertGolden(zeek, "teredo.conn.log")
        try assertGolden(json, "teredo.jsonl")
        try assertGolden(csv, "teredo.csv")
        try assertGolden(TableWriter.render(records.sorted(by: FlowRecord.outputOrder)), "teredo.txt")
    }

    /// The CLI writes exactly what the renderers do, for every format.
    func testCLIOutputMatchesGoldenFiles() throws {
        for (format, golden) in [("zeek", "teredo.conn.log"), ("json", "teredo.jsonl"), ("csv", "teredo.csv"), ("table", "teredo.txt")] {
            let r = try runFlowmap(["flows", "--format", format, "-q", capture])
            XCTAssertEqual(r.status, 0, r.stderr)
            try assertGolden(r.stdout, golden)
        }
    }

    /// Two runs give byte-identical output (no dictionary order, no wall clock).
    func testOutputIsDeterministic() throws {
        let a = try runFlowmap(["flows", "--format", "json", "-q", Repo.fixtures.appendingPathComponent("zeek-parity/wikipedia.pcap").path])
        let b = try runFlowmap(["flows", "--format", "json", "-q", Repo.fixtures.appendingPathComponent("zeek-parity/wikipedia.pcap").path])
        XCTAssertEqual(a.stdout, b.stdout)
        XCTAssertFalse(a.stdout.isEmpty)
    }
}

/// Decoding on one thread and tracking flows on another gives exactly the single-threaded output.
final class ThreadingTests: XCTestCase {
    func testTwoThreadsGiveIdenticalOutput() throws {
        let dir = Repo.fixtures.appendingPathComponent("zeek-parity")
        let all = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .filter { $0.hasSuffix(".pcap") || $0.hasSuffix(".pcapng") }.sorted().map { dir.appendingPathComponent($0).path }
        // Many files in one run: several thousand packets, so many batches cross threads.
        let one = try runFlowmap(["flows", "--format", "json", "-q", "--threads", "1"] + all)
        let two = try runFlowmap(["flows", "--format", "json", "-q", "--threads", "2"] + all)
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertEqual(two.status, 0, two.stderr)
        XCTAssertGreaterThan(one.stdout.split(separator: "\n").count, 1500)
        XCTAssertEqual(one.stdout, two.stdout)
        XCTAssertEqual(try runFlowmap(["flows", "--threads", "3", all[0]]).status, 64)
    }
}
