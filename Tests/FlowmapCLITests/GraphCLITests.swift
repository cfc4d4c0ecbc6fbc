import Foundation
import XCTest

/// `flowmap graph` end to end on the multi-tier fixture (Fixtures/multitier, made by
/// make-capture.py), against edges written down by hand.
final class GraphCLITests: XCTestCase {
    var capture: String { Repo.fixtures.appendingPathComponent("multitier/multitier.pcap").path }
    var inventory: String { Repo.fixtures.appendingPathComponent("multitier/inventory.yaml").path }

    func graphJSON(_ args: [String]) throws -> [String: Any] {
        let r = try runFlowmap(["graph"] + args + ["--format", "json", "-q"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
    }

    static func edgeRows(_ g: [String: Any]) -> [String] {
        (g["edges"] as? [[String: Any]] ?? []).map { e in
            let port = (e["port"] as? Int).map(String.init) ?? "-"
            return [e["from"], e["to"], e["proto"], port, e["direction"], (e["flows"] as? Int).map(String.init)]
                .map { "\($0 ?? "?")" }.joined(separator: "\t")
        }.sorted()
    }

    func testMultiTierEdgesExactlyAsWrittenByHand() throws {
        let expected = try String(contentsOf: Repo.fixtures.appendingPathComponent("multitier/expected-edges.tsv"), encoding: .utf8)
            .split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.isEmpty }.map(String.init).sorted()
        let g = try graphJSON([capture, "--inventory", inventory])
        XCTAssertEqual(GraphCLITests.edgeRows(g), expected, "no edge missing, none extra")
        // No ephemeral (client) port anywhere: every port is a service the scenario offers.
        let services: Set<Int> = [443, 8080, 8081, 8443, 5432, 6379, 53, 123, 8]
        for e in g["edges"] as? [[String: Any]] ?? [] {
            if let p = e["port"] as? Int { XCTAssertTrue(services.contains(p), "port \(p) is not a service port") }
        }
        let nodes = (g["nodes"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
        XCTAssertEqual(nodes.count, 13)
        XCTAssertEqual(g["flows"] as? Int, 38)
        let web = (g["nodes"] as? [[String: Any]])?.first { $0["id"] as? String == "workload:web" }
        XCTAssertEqual(web?["endpoints"] as? Int, 3, "web-1, web-2 and web-1's IPv6 address")
        XCTAssertEqual((web?["labels"] as? [String: String])?["role"], "web")
    }

    func testGoldenDOTJSONAndMermaid() throws {
        let dot = try runFlowmap(["graph", capture, "--inventory", inventory, "--cluster-by", "role", "-q"])
        XCTAssertEqual(dot.status, 0, dot.stderr)
        try assertGolden(dot.stdout, "multitier.graph.dot")
        let json = try runFlowmap(["graph", capture, "--inventory", inventory, "--format", "json", "-q"])
        try assertGolden(json.stdout, "multitier.graph.json")
        let mermaid = try runFlowmap(["graph", capture, "--inventory", inventory, "--format", "mermaid", "--cluster-by", "role", "-q"])
        try assertGolden(mermaid.stdout, "multitier.graph.mmd")
        // The same graph from the store: ingest, then --db.
        let db = FileManager.default.temporaryDirectory.appendingPathComponent("graph-\(UUID().uuidString).db").path
        defer { for s in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: db + s) } }
        let ingest = try runFlowmap(["ingest", capture, "--db", db, "-q"])
        XCTAssertEqual(ingest.status, 0, ingest.stderr)
        let fromDB = try runFlowmap(["graph", "--db", db, "--inventory", inventory, "--format", "json"])
        XCTAssertEqual(fromDB.status, 0, fromDB.stderr)
        XCTAssertEqual(fromDB.stdout, json.stdout, "a store gives the same graph as its capture")
    }

    func testGraphvizRendersTheDOTWithoutWarnings() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/dot") else {
            throw XCTSkip("Graphviz is not installed (scripts/setup installs it)")
        }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("graph-\(UUID().uuidString).svg")
        defer { try? FileManager.default.removeItem(at: out) }
        let r = try runFlowmap(["graph", capture, "--inventory", inventory, "--cluster-by", "role", "--render", "svg",
                                "-o", out.path, "-q"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stderr.contains("dot:"), "dot printed warnings: \(r.stderr)")
        let svg = try String(contentsOf: out, encoding: .utf8)
        XCTAssertTrue(svg.contains("<svg"))
        XCTAssertTrue(svg.contains("payments&#45;api") || svg.contains("payments-api"))
        // And dot itself, on the DOT text: exit 0 and nothing on stderr.
        let dotText = try runFlowmap(["graph", capture, "--inventory", inventory, "--cluster-by", "tier", "-q"]).stdout
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("graph-\(UUID().uuidString).dot")
        try dotText.write(to: input, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: input) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/dot")
        p.arguments = ["-Tsvg", "-o", "/dev/null", input.path]
        let err = Pipe()
        p.standardError = err
        try p.run()
        p.waitUntilExit()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 0)
        XCTAssertEqual(errText, "", "dot warnings")
    }

    func testErrorsAreOneLineWithExitStatus2() throws {
        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("inv-\(UUID().uuidString).yaml")
        try "workloads:\n  - name: a\n    match:\n      cidrs: [10.0.0.0/8, 10.0.0.300]\n".write(to: bad, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: bad) }
        var r = try runFlowmap(["graph", capture, "--inventory", bad.path, "-q"])
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr, "flowmap: \(bad.path):4:27: '10.0.0.300' is not an address or CIDR (like 10.0.1.0/24 or fd00::/8)\n")
        XCTAssertEqual(r.stdout, "")
        r = try runFlowmap(["graph", capture, "--inventory", "/nonexistent/inv.yaml", "-q"])
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr, "flowmap: /nonexistent/inv.yaml: no such file\n")
        r = try runFlowmap(["graph", capture, "--render", "png", "-q"])
        XCTAssertEqual(r.status, 64, "usage error: png needs -o")
        // --render with no Graphviz on PATH says so.
        guard let bin = Repo.binary else { throw XCTSkip("no binary") }
        let p = Process()
        p.executableURL = bin
        p.arguments = ["graph", capture, "--render", "svg", "-o", "/tmp/never.svg", "-q"]
        p.environment = ["PATH": "/nonexistent"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 2)
        XCTAssertTrue(text.hasPrefix("flowmap: --render needs Graphviz's dot, which is not installed"), text)
        XCTAssertEqual(text.split(separator: "\n").count, 1)
    }

    func testFiltersOnTheCommandLine() throws {
        let g = try graphJSON([capture, "--inventory", inventory, "--min-flows", "2", "--exclude", "dns-resolver", "external*"])
        let rows = GraphCLITests.edgeRows(g)
        XCTAssertFalse(rows.contains { $0.contains("dns-resolver") || $0.contains("external:") })
        XCTAssertTrue(rows.allSatisfy { Int($0.split(separator: "\t").last!)! >= 2 })
        XCTAssertEqual(rows.count, 4)
        let t0 = try graphJSON([capture, "--since", "2026-01-05T10:00:01.6Z"])
        XCTAssertEqual(t0["flows"] as? Int, 7, "only flows that started at or after --since")
    }
}
