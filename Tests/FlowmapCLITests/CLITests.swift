import FlowCore
import FlowStore
import Foundation
import XCTest

/// End-to-end behaviour of the `flowmap` binary: errors, truncated input, stdin, the store.
final class CLITests: XCTestCase {
    let wikipedia = Repo.fixtures.appendingPathComponent("zeek-parity/wikipedia.pcap").path

    func tempDir() throws -> URL {
        let u = FileManager.default.temporaryDirectory.appendingPathComponent("flowmap-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: u) }
        return u
    }

    func assertOneLineError(_ r: RunResult, mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 2, r.stderr, file: file, line: line)
        XCTAssertFalse(r.crashed, file: file, line: line)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "expected one line, got: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(mentions), "\(r.stderr) should mention \(mentions)", file: file, line: line)
        XCTAssertTrue(r.stdout.isEmpty, file: file, line: line)
    }

    func testBadInputsGiveOneLineAndExitTwo() throws {
        assertOneLineError(try runFlowmap(["flows", "/nonexistent/x.pcap"]), mentions: "/nonexistent/x.pcap: no such file")
        let text = Repo.fixtures.appendingPathComponent("captures/not-a-capture.txt").path
        assertOneLineError(try runFlowmap(["flows", text]), mentions: "not-a-capture.txt: not a pcap or pcapng capture")
        // A bad path among good ones fails before any output.
        assertOneLineError(try runFlowmap(["flows", wikipedia, "/nonexistent/y.pcap"]), mentions: "y.pcap")
        assertOneLineError(try runFlowmap(["flows", "--db", "/nonexistent/dir/flows.db"]), mentions: "/nonexistent/dir/flows.db")
        // Reading a store that does not exist is an error, and creates nothing.
        let missing = FileManager.default.temporaryDirectory.appendingPathComponent("flowmap-\(UUID().uuidString).db")
        assertOneLineError(try runFlowmap(["flows", "--db", missing.path]), mentions: "no such file")
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing.path))
        assertOneLineError(try runFlowmap(["ingest", wikipedia, "--db", "/nonexistent/dir/flows.db"]), mentions: "flows.db")
        let dir = try tempDir()
        let notDB = dir.appendingPathComponent("junk.db")
        try Data(repeating: 0x41, count: 4096).write(to: notDB)
        assertOneLineError(try runFlowmap(["flows", "--db", notDB.path]), mentions: "junk.db: not a flowmap database")
        // Usage errors keep ArgumentParser's code.
        let usage = try runFlowmap(["flows"])
        XCTAssertEqual(usage.status, 64)
        XCTAssertEqual(try runFlowmap(["flows", "--format", "xml", wikipedia]).status, 64)
        XCTAssertEqual(try runFlowmap(["flows", "--db", "x.db", "--since", "yesterday"]).status, 64)
        // Options that would do nothing for the chosen format are refused, not ignored.
        XCTAssertEqual(try runFlowmap(["flows", "--community-id", wikipedia]).status, 64)
        XCTAssertEqual(try runFlowmap(["flows", "--format", "json", "--vlan-fields", wikipedia]).status, 64)
    }

    func testTruncatedCaptureKeepsFlowsAndWarns() throws {
        let cut = Repo.fixtures.appendingPathComponent("captures/ftp-ipv4-truncated.pcap").path
        let r = try runFlowmap(["flows", "--format", "json", "-q", cut])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("warning"), r.stderr)
        XCTAssertTrue(r.stderr.contains("capture cut short after 13 packets"), r.stderr)
        let lines = r.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 1)
        XCTAssertTrue(lines[0].contains("\"orig_pkts\":8"), String(lines[0]))
    }

    func testStandardInputAndStats() throws {
        let r = try runFlowmap(["flows", "--format", "zeek", "--stats", "-q", "-"], stdin: URL(fileURLWithPath: wikipedia))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.split(separator: "\n").filter { !$0.hasPrefix("#") }.count, 34)
        XCTAssertTrue(r.stderr.contains("packets_read\t136"), r.stderr)
        XCTAssertTrue(r.stderr.contains("non_ip_frames\t"), r.stderr)
        XCTAssertTrue(r.stderr.contains("anomaly.truncated_IP\t0"), r.stderr)
    }

    func testIngestIsIdempotentAndReadsBack() throws {
        let dir = try tempDir()
        let db = dir.appendingPathComponent("flows.db").path
        let first = try runFlowmap(["ingest", wikipedia, "--db", db, "-q"])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stderr.contains("34 flows (34 new)"), first.stderr)
        let again = try runFlowmap(["ingest", wikipedia, "--db", db, "-q"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stderr.contains("already ingested"), again.stderr)
        // A copy under another name has the same SHA-256: still no duplicates.
        let copy = dir.appendingPathComponent("copy.pcap")
        try FileManager.default.copyItem(atPath: wikipedia, toPath: copy.path)
        XCTAssertEqual(try runFlowmap(["ingest", copy.path, "--db", db, "-q"]).status, 0)

        let store = try FlowStore(path: db)
        XCTAssertEqual(try store.flowCount(), 34)
        XCTAssertEqual(try store.sources().count, 1)
        XCTAssertEqual(try store.appliedMigrations(), ["v1", "v2: vlan", "v3: agent", "v4: agent indexes", "v5: fewer indexes"])
        XCTAssertGreaterThan(try store.nameCount(), 0)
        let src = try XCTUnwrap(store.sources().first)
        XCTAssertEqual(src.packets, 136)
        XCTAssertEqual(src.sha256?.count, 64)

        // What the store gives back is what the capture gave.
        let (records, _) = try analyze([wikipedia])
        let stored = try store.flows()
        XCTAssertEqual(stored, records.sorted(by: FlowRecord.outputOrder))
        let fromDB = try runFlowmap(["flows", "--db", db, "--format", "json"])
        XCTAssertEqual(fromDB.status, 0)
        XCTAssertEqual(fromDB.stdout, stored.map { JSONLines.line($0) }.joined())

        // Time windows: --since is inclusive, --until exclusive.
        let t0 = stored[10].ts
        let later = try store.flows(since: t0)
        XCTAssertTrue(later.allSatisfy { $0.ts >= t0 })
        XCTAssertEqual(later.count + (try store.flows(until: t0)).count, 34)
        let cli = try runFlowmap(["flows", "--db", db, "--format", "csv", "--since", Fmt.iso8601(t0)])
        XCTAssertEqual(cli.stdout.split(separator: "\n").count - 1, try store.flows(since: Fmt.parseTime(Fmt.iso8601(t0))).count)
    }

    func testTimeoutsAreSettable() throws {
        let trace = Repo.fixtures.appendingPathComponent("zeek-parity/teredo.pcap").path
        let normal = try runFlowmap(["flows", "--format", "json", "-q", trace])
        let short = try runFlowmap(["flows", "--format", "json", "-q", "--udp-timeout", "1", trace])
        XCTAssertGreaterThan(short.stdout.split(separator: "\n").count, normal.stdout.split(separator: "\n").count)
        XCTAssertEqual(try runFlowmap(["flows", "--udp-timeout", "-5", trace]).status, 64)
    }

    func testDiscoverRejectsOptionsThatCannotApply() throws {
        let db = FileManager.default.temporaryDirectory.appendingPathComponent("flowmap-discover-\(getpid()).db").path
        for (args, message) in [
            (["--bpf", "tcp"], "--bpf applies to live capture: give --interface too."),
            (["--promiscuous"], "--promiscuous applies to live capture: give --interface too."),
            (["--proc-root", "/tmp"], "--proc-root: '/tmp' is not a /proc (no 'self' or '1' in it)."),
            (["--duration=-5s"], "--duration: '-5s' is not a duration (e.g. 30s, 10m, 1h)."),
            (["--flush-interval", "0"], "--flush-interval: '0' is not a positive duration."),
        ] {
            let r = try runFlowmap(["discover", "--db", db] + args)
            XCTAssertEqual(r.status, 64, "\(args)")
            XCTAssertTrue(r.stderr.hasPrefix("Error: \(message)\n"), r.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: db), "nothing is created on a usage error")
    }
}

/// The progress bar: drawn on stderr when it is a terminal, never otherwise or with -q.
final class ProgressTests: XCTestCase {
    func testProgressBarOnlyOnATerminal() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else {
            throw XCTSkip("script(1) is not installed; cannot give flowmap a terminal")
        }
        guard let bin = Repo.binary else { throw XCTSkip("flowmap binary not built") }
        // A capture long enough for the bar to be drawn: 400 000 small UDP packets.
        var file: [UInt8] = [0xD4, 0xC3, 0xB2, 0xA1, 2, 0, 4, 0] + [UInt8](repeating: 0, count: 8) + [0xFF, 0xFF, 0, 0, 1, 0, 0, 0]
        let frame: [UInt8] = [UInt8](repeating: 1, count: 12) + [0x08, 0x00,
            0x45, 0, 0, 29, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39, 0, 53, 0, 9, 0, 0, 0x61]
        file.reserveCapacity(24 + 400_000 * (16 + frame.count))
        for i in 0..<400_000 {
            let sec = UInt32(1_700_000_000 + i / 1000), usec = UInt32(i % 1000 * 1000), len = UInt32(frame.count)
            for v in [sec, usec, len, len] { file += [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF), UInt8((v >> 16) & 0xFF), UInt8(v >> 24)] }
            file += frame
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flowmap-progress-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cap = dir.appendingPathComponent("many.pcap")
        try Data(file).write(to: cap)
        // Slow the read a little (one packet at a time through a pipe would not); the bar is
        // drawn every 65 536 packets once 0.2 s have passed, so read the file three times.
        let cmd = "\(bin.path) flows --format json --threads 1 \(cap.path) \(cap.path) \(cap.path) > /dev/null"
        let onTTY = try runScript(cmd)
        XCTAssertTrue(onTTY.contains("pkts/s"), "expected a progress bar, got: \(onTTY.prefix(300))")
        XCTAssertTrue(onTTY.contains("%"), onTTY)
        let quiet = try runScript(cmd.replacingOccurrences(of: "--format json", with: "--format json -q"))
        XCTAssertFalse(quiet.contains("pkts/s"))
        // Not a terminal: no bar.
        let piped = try runFlowmap(["flows", "--format", "json", cap.path])
        XCTAssertFalse(piped.stderr.contains("pkts/s"))
    }

    /// Runs a shell command under script(1), which gives it a pseudo-terminal; returns what it wrote there.
    func runScript(_ cmd: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/script")
        p.arguments = ["-qec", cmd, "/dev/null"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

}
