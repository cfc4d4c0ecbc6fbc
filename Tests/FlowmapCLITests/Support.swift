import FlowCapture
import FlowCore
import Foundation
import XCTest

/// Paths and helpers shared by the end-to-end tests.
enum Repo {
    static let root: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static var fixtures: URL { root.appendingPathComponent("Fixtures") }
    static var reports: URL { root.appendingPathComponent("reports") }
    static var corpus: URL { root.deletingLastPathComponent().appendingPathComponent("shared/corpus") }

    /// The built `flowmap` binary (scripts/test builds it before the tests run).
    static var binary: URL? {
        for config in ["debug", "release"] {
            let u = root.appendingPathComponent(".build/\(config)/flowmap")
            if FileManager.default.isExecutableFile(atPath: u.path) { return u }
        }
        return nil
    }
}

/// Analyzes capture files in-process, the same way `flowmap flows` does.
func analyze(_ paths: [String], timeouts: Timeouts = Timeouts()) throws -> (records: [FlowRecord], stats: AnalysisStats) {
    final class Sink { var records: [FlowRecord] = [] }
    let sink = Sink()
    let table = FlowTable(timeouts: timeouts) { sink.records.append($0) }
    let analyzer = PacketAnalyzer(table: table)
    for p in paths {
        let r = try PcapReader(path: p)
        _ = r.forEachPacket { lt, ts, wire, bytes in
            analyzer.process(linkType: lt, timestamp: ts, wireLength: wire, bytes: bytes)
        }
    }
    analyzer.finish()
    return (sink.records, analyzer.stats)
}

struct RunResult {
    var status: Int32
    var crashed: Bool
    var stdout: String
    var stderr: String
}

/// Runs the flowmap binary with a time limit; reports a crash (signal) separately from an exit.
func runFlowmap(_ args: [String], stdin: URL? = nil, timeout: Double = 60, environment: [String: String] = [:]) throws -> RunResult {
    guard let bin = Repo.binary else { throw XCTSkip("flowmap binary not built (run scripts/test)") }
    let p = Process()
    p.executableURL = bin
    p.arguments = args
    if !environment.isEmpty {
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    }
    // Output goes to temporary files: nothing can block on a full pipe.
    let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("flowmap-run-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: tmp) }
    let outURL = tmp.appendingPathComponent("out"), errURL = tmp.appendingPathComponent("err")
    FileManager.default.createFile(atPath: outURL.path, contents: nil)
    FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
    p.standardOutput = out
    p.standardError = err
    if let stdin { p.standardInput = try FileHandle(forReadingFrom: stdin) } else { p.standardInput = FileHandle.nullDevice }
    try p.run()
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { usleep(1000) }
    var timedOut = false
    if p.isRunning {
        timedOut = true
        p.terminate()
    }
    p.waitUntilExit()
    try out.close(); try err.close()
    let o = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
    let e = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
    if timedOut { return RunResult(status: -1, crashed: true, stdout: o, stderr: "timed out after \(timeout) s\n" + e) }
    return RunResult(status: p.terminationStatus, crashed: p.terminationReason == .uncaughtSignal, stdout: o, stderr: e)
}

/// Compares `actual` with a golden file; RECORD_GOLDEN=1 rewrites it and fails, so that every
/// change is a reviewed diff.
func assertGolden(_ actual: String, _ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
    let url = Repo.fixtures.appendingPathComponent("golden/\(name)")
    if ProcessInfo.processInfo.environment["RECORD_GOLDEN"] == "1" {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try actual.write(to: url, atomically: true, encoding: .utf8)
        XCTFail("recorded \(name); review the diff and run again without RECORD_GOLDEN", file: file, line: line)
        return
    }
    guard let expected = try? String(contentsOf: url, encoding: .utf8) else {
        XCTFail("missing golden file \(name); run with RECORD_GOLDEN=1", file: file, line: line)
        return
    }
    if expected != actual {
        let e = expected.split(separator: "\n", omittingEmptySubsequences: false)
        let a = actual.split(separator: "\n", omittingEmptySubsequences: false)
        let i = (0..<min(e.count, a.count)).first { e[$0] != a[$0] } ?? min(e.count, a.count)
        XCTFail("\(name) differs at line \(i + 1):\n- \(i < e.count ? String(e[i]) : "<end>")\n+ \(i < a.count ? String(a[i]) : "<end>")",
                file: file, line: line)
    }
}

/// Reads a Zeek log (or zeek-cut -m output) into one dictionary per row, by column name.
enum ZeekLog {
    static func rows(_ text: String) -> [[String: String]] {
        var fields: [String] = []
        var out: [[String: String]] = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("#fields") { fields = line.split(separator: "\t").dropFirst().map(String.init); continue }
            if line.hasPrefix("#") { continue }
            // zeek-cut -m output (.cut baselines) names its columns in a plain first line.
            if fields.isEmpty && line.hasPrefix("ts\t") {
                fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
                continue
            }
            let cols = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            var d: [String: String] = [:]
            for (f, c) in zip(fields, cols) where !f.isEmpty { d[f] = c }
            out.append(d)
        }
        return out
    }
}
