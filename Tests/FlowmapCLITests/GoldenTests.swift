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
        // conn.log output (no names are learned for it) is identical too,
        // and its flows are the json flows.
        let zeek1 = try runFlowmap(["flows", "--format", "zeek", "-q", "--threads", "1"] + all)
        let zeek2 = try runFlowmap(["flows", "--format", "zeek", "-q", "--threads", "2"] + all)
        XCTAssertEqual(zeek2.status, 0, zeek2.stderr)
        XCTAssertEqual(zeek1.stdout, zeek2.stdout)
        let rows = zeek2.stdout.split(separator: "\n").filter { !$0.hasPrefix("#") }
        XCTAssertEqual(rows.count, one.stdout.split(separator: "\n").count)
    }

    /// A conn.log is written straight from the table's snapshots; with Community IDs it goes
    /// through flow records. Without that last column the two are the same bytes (tunnel
    /// parents, VLAN columns, flipped and history-less flows included), on either thread count.
    func testConnLogFromSnapshotsEqualsConnLogFromRecords() throws {
        let dir = Repo.fixtures.appendingPathComponent("zeek-parity")
        let all = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .filter { $0.hasSuffix(".pcap") || $0.hasSuffix(".pcapng") }.sorted().map { dir.appendingPathComponent($0).path }
        for threads in ["1", "2"] {
            let base = ["flows", "--format", "zeek", "--vlan-fields", "-q", "--threads", threads] + all
            let direct = try runFlowmap(base), viaRecords = try runFlowmap(base + ["--community-id"])
            XCTAssertEqual(direct.status, 0, direct.stderr)
            XCTAssertEqual(viaRecords.status, 0, viaRecords.stderr)
            let stripped = viaRecords.stdout.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
                if line.hasPrefix("#types") || (!line.hasPrefix("#") && !line.isEmpty) || line.hasPrefix("#fields") {
                    return line[..<(line.lastIndex(of: "\t") ?? line.endIndex)]
                }
                return line
            }.joined(separator: "\n")
            XCTAssertEqual(direct.stdout, stripped, "threads \(threads)")
            XCTAssertGreaterThan(direct.stdout.split(separator: "\n").count, 1500)
            let parents = direct.stdout.split(separator: "\n").filter { !$0.hasPrefix("#") }
                .map { $0.split(separator: "\t", omittingEmptySubsequences: false)[20] }
            XCTAssertTrue(parents.contains { $0 != "-" })  // some flows are tunnelled
        }
    }

    /// --since and --until on captures select the same flows for a conn.log written from
    /// snapshots as for the record path (json).
    func testTimeWindowSelectsTheSameFlowsForEveryFormat() throws {
        let capture = Repo.fixtures.appendingPathComponent("zeek-parity/wikipedia.pcap").path
        let all = try runFlowmap(["flows", "--format", "json", "-q", capture])
        let times = all.stdout.split(separator: "\n").compactMap { line -> Double? in
            guard let r = line.range(of: "\"ts\":") else { return nil }
            return Double(line[r.upperBound...].prefix { $0 != "," })
        }.sorted()
        XCTAssertGreaterThan(times.count, 10)
        let since = Fmt.iso8601(times[times.count / 3]), until = Fmt.iso8601(times[2 * times.count / 3])
        let window = ["--since", since, "--until", until, "-q", capture]
        let json = try runFlowmap(["flows", "--format", "json"] + window)
        let zeek = try runFlowmap(["flows", "--format", "zeek"] + window)
        XCTAssertEqual(zeek.status, 0, zeek.stderr)
        func uids(_ lines: [Substring], _ field: (Substring) -> Substring) -> [Substring] { lines.map(field).sorted() }
        let jsonUIDs = uids(json.stdout.split(separator: "\n")) { line in
            let r = line.range(of: "\"uid\":\"")!
            return line[r.upperBound...].prefix { $0 != "\"" }
        }
        let zeekUIDs = uids(zeek.stdout.split(separator: "\n").filter { !$0.hasPrefix("#") }) {
            $0.split(separator: "\t")[1]
        }
        XCTAssertEqual(zeekUIDs, jsonUIDs)
        XCTAssertGreaterThan(zeekUIDs.count, 0)
        XCTAssertLessThan(zeekUIDs.count, times.count)
    }

    /// conn.log output learns no DNS names, but DNS answers are still decoded: the counters
    /// (malformed answers included) are those of any other format.
    func testStatsDoNotDependOnTheFormat() throws {
        let dir = Repo.fixtures.appendingPathComponent("zeek-parity")
        let all = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .filter { $0.hasSuffix(".pcap") || $0.hasSuffix(".pcapng") }.sorted().map { dir.appendingPathComponent($0).path }
        // A capture with one good and one malformed DNS response (answer count 1, no answer).
        func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
        func be16(_ v: Int) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
        func frame(_ dns: [UInt8]) -> [UInt8] {
            let udp = be16(53) + be16(40000) + be16(8 + dns.count) + be16(0) + dns
            let ip: [UInt8] = [0x45, 0] + be16(20 + udp.count) + [0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]
            return [UInt8](repeating: 2, count: 12) + [0x08, 0x00] + ip + udp
        }
        let question: [UInt8] = [3] + Array("www".utf8) + [7] + Array("example".utf8) + [3] + Array("com".utf8) + [0, 0, 1, 0, 1]
        let good = be16(1) + [0x81, 0x80] + be16(1) + be16(1) + be16(0) + be16(0) + question
            + [0xC0, 12] + be16(1) + be16(1) + [0, 0, 0, 60] + be16(4) + [93, 184, 216, 34]
        let bad = be16(2) + [0x81, 0x80] + be16(1) + be16(1) + be16(0) + be16(0) + question
        var pcap = le32(0xA1B2_C3D4) + [2, 0, 4, 0] + le32(0) + le32(0) + le32(65535) + le32(1)
        for (i, f) in [frame(good), frame(bad)].enumerated() { pcap += le32(1_700_000_000 + i) + le32(0) + le32(f.count) + le32(f.count) + f }
        let dns = FileManager.default.temporaryDirectory.appendingPathComponent("flowmap-dns-\(getpid()).pcap")
        try Data(pcap).write(to: dns)
        defer { try? FileManager.default.removeItem(at: dns) }

        let json = try runFlowmap(["flows", "--format", "json", "-q", "--stats"] + all + [dns.path])
        let zeek = try runFlowmap(["flows", "--format", "zeek", "-q", "--stats"] + all + [dns.path])
        XCTAssertEqual(json.status, 0, json.stderr)
        XCTAssertTrue(json.stderr.contains("anomaly.malformed_dns\t1\n"), json.stderr)
        XCTAssertEqual(json.stderr, zeek.stderr)
    }
}
