import Foundation
import XCTest

/// `flowmap suggest` and `flowmap simulate` end to end.
final class PolicyCLITests: XCTestCase {
    var multitier: String { Repo.fixtures.appendingPathComponent("multitier/multitier.pcap").path }
    var bad: String { Repo.fixtures.appendingPathComponent("multitier/multitier-bad.pcap").path }
    var inventory: String { Repo.fixtures.appendingPathComponent("multitier/inventory.yaml").path }

    func temp(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString)-\(name)").path
    }

    func simulate(_ policy: String, _ capture: String, _ extra: [String] = []) throws -> [String: Any] {
        let r = try runFlowmap(["simulate", "--policy", policy, capture, "--format", "json", "-q"] + extra)
        XCTAssertTrue(r.status == 0 || r.status == 3, r.stderr)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
    }

    /// Property, over every fixture capture: a policy suggested from some traffic blocks none of it.
    func testSuggestThenSimulateBlocksNothingOnEveryFixtureCapture() throws {
        let fm = FileManager.default
        var captures: [String] = []
        for dir in ["zeek-parity", "zeek-parity/connids", "multitier", "captures"] {
            let d = Repo.fixtures.appendingPathComponent(dir)
            for f in try fm.contentsOfDirectory(atPath: d.path).sorted() where f.hasSuffix(".pcap") || f.hasSuffix(".pcapng") {
                captures.append(d.appendingPathComponent(f).path)
            }
        }
        XCTAssertGreaterThan(captures.count, 30)
        var flowsSeen = 0
        for c in captures {
            let policy = temp("prop.yaml")
            defer { try? fm.removeItem(atPath: policy) }
            let s = try runFlowmap(["suggest", c, "-q", "-o", policy])
            XCTAssertEqual(s.status, 0, "\(c): \(s.stderr)")
            let summary = try XCTUnwrap(simulate(policy, c, ["--flows", "none"])["summary"] as? [String: Any])
            XCTAssertEqual(summary["blocked"] as? Int, 0, "\(c) blocks its own traffic")
            flowsSeen += summary["flows"] as? Int ?? 0
        }
        XCTAssertGreaterThan(flowsSeen, 1500)
    }

    /// The suggested policy is streamed to its file: a place that cannot be written is a
    /// one-line error naming it, and a non-zero exit.
    func testSuggestIntoAnUnwritablePlaceIsAOneLineError() throws {
        let bad = temp("no-such-dir") + "/p.yaml"
        let s = try runFlowmap(["suggest", multitier, "--inventory", inventory, "-q", "-o", bad])
        XCTAssertNotEqual(s.status, 0)
        let lines = s.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, s.stderr)
        XCTAssertTrue(s.stderr.contains(bad) && s.stderr.contains("cannot write"), s.stderr)
    }

    /// One host turns bad: exactly its probes are blocked, with the reasons written by hand.
    func testABadHostsProbesAreExactlyWhatIsBlocked() throws {
        let policy = temp("suggested.yaml")
        defer { try? FileManager.default.removeItem(atPath: policy) }
        XCTAssertEqual(try runFlowmap(["suggest", multitier, "--inventory", inventory, "-q", "-o", policy]).status, 0)
        let expected = try String(contentsOf: Repo.fixtures.appendingPathComponent("multitier/expected-blocked.tsv"), encoding: .utf8)
            .split(separator: "\n").filter { !$0.hasPrefix("#") }.map(String.init).sorted()
        let g = try simulate(policy, bad, ["--flows", "all"])
        let flows = try XCTUnwrap(g["flows"] as? [[String: Any]])
        XCTAssertEqual(flows.count, 44)
        let blocked = flows.filter { $0["verdict"] as? String == "blocked" }.map { f in
            "\(f["orig_h"]!):\(f["orig_p"]!)\t\(f["resp_h"]!):\(f["resp_p"]!)\t\(f["reason"]!)"
        }.sorted()
        XCTAssertEqual(blocked, expected)
        XCTAssertTrue(flows.filter { $0["verdict"] as? String == "allowed" }.allSatisfy { $0["rule"] is String })
        let summary = try XCTUnwrap(g["summary"] as? [String: Any])
        XCTAssertEqual(summary["blocked"] as? Int, 5)
        XCTAssertEqual(summary["allowed"] as? Int, 39)
        let edges = try XCTUnwrap(g["blockedEdges"] as? [[String: Any]])
        XCTAssertEqual(edges.count, 5)
        XCTAssertTrue(edges.contains { $0["from"] as? String == "web" && $0["to"] as? String == "orders-db" && $0["port"] as? Int == 5432 })
        let rules = try XCTUnwrap(g["rules"] as? [[String: Any]])
        XCTAssertEqual(rules.first { $0["name"] as? String == "web-to-payments-api-tcp-8443" }?["hits"] as? Int, 8)
        // The CI gate: exit 3 when anything is blocked, 0 when nothing is.
        XCTAssertEqual(try runFlowmap(["simulate", "--policy", policy, bad, "--fail-on-blocked", "-q"]).status, 3)
        XCTAssertEqual(try runFlowmap(["simulate", "--policy", policy, multitier, "--fail-on-blocked", "-q"]).status, 0)
        // Nothing blocked: the JSON still parses, with an empty list of flows.
        let clean = try simulate(policy, multitier)
        XCTAssertEqual((clean["flows"] as? [Any])?.count, 0)
        XCTAssertEqual((clean["summary"] as? [String: Any])?["blocked"] as? Int, 0)
        // The table names the blocked edges and flows.
        let table = try runFlowmap(["simulate", "--policy", policy, bad, "-q"])
        XCTAssertTrue(table.stdout.contains("blocked 5 (11.4%)"), table.stdout)
        XCTAssertTrue(table.stdout.contains("web   payments-api  tcp/22        1     80  port not allowed"), table.stdout)
        // And the graph draws those edges red and dashed.
        let dot = try runFlowmap(["graph", bad, "--inventory", inventory, "--policy", policy, "-q"])
        XCTAssertEqual(dot.status, 0, dot.stderr)
        XCTAssertEqual(dot.stdout.components(separatedBy: "style=dashed, color=\"#d62728\"").count - 1, 5, dot.stdout)
    }

    /// From a store, simulation reads and evaluates on two threads: tiny batches make them take
    /// turns, and the report is the same as with one batch (one thread evaluating).
    func testSimulationFromAStoreIsTheSameWhicheverThreadEvaluates() throws {
        let policy = temp("suggested.yaml"), db = temp("flows.db")
        defer { for f in [policy, db, db + "-wal", db + "-shm"] { try? FileManager.default.removeItem(atPath: f) } }
        XCTAssertEqual(try runFlowmap(["suggest", multitier, "--inventory", inventory, "-q", "-o", policy]).status, 0)
        XCTAssertEqual(try runFlowmap(["ingest", bad, multitier, "--db", db, "-q"]).status, 0)
        let args = ["simulate", "--policy", policy, "--db", db, "--format", "json", "--flows", "all", "-q"]
        let one = try runFlowmap(args)
        XCTAssertEqual(one.status, 0, one.stderr)
        for size in ["1", "2", "5"] {
            let turns = try runFlowmap(args, environment: ["FLOWMAP_STORE_BATCH": size, "FLOWMAP_TIMES": "1"])
            XCTAssertEqual(turns.stdout, one.stdout, "batches of \(size)")
            XCTAssertTrue(turns.stderr.contains("store_reader"), turns.stderr)
        }
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(one.stdout.utf8)) as? [String: Any])
        let summary = try XCTUnwrap(json["summary"] as? [String: Any])
        XCTAssertEqual(summary["blocked"] as? Int, 5)
        XCTAssertEqual(summary["flows"] as? Int, 44)
        // A policy that does not parse stops the reading thread: a clean error, no hang.
        let broken = temp("broken.yaml")
        defer { try? FileManager.default.removeItem(atPath: broken) }
        try "apiVersion: flowmap/v1\nkind: Policy\nrules:\n  - name: x\n".write(toFile: broken, atomically: true, encoding: .utf8)
        let r = try runFlowmap(["simulate", "--policy", broken, "--db", db, "-q"], environment: ["FLOWMAP_STORE_BATCH": "1"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("broken.yaml:4:5"), r.stderr)
    }

    func testGoldenDeterministicYAML() throws {
        let a = try runFlowmap(["suggest", multitier, "--inventory", inventory, "-q"])
        XCTAssertEqual(a.status, 0, a.stderr)
        let b = try runFlowmap(["suggest", multitier, "--inventory", inventory, "-q"])
        XCTAssertEqual(a.stdout, b.stdout, "byte-identical for the same input")
        // metadata.sources holds the paths as given: relative to the repository in the goldens.
        func relative(_ s: String) -> String { s.replacingOccurrences(of: Repo.root.path + "/", with: "") }
        try assertGolden(relative(a.stdout), "multitier.policy.yaml")
        let grouped = try runFlowmap(["suggest", multitier, "--inventory", inventory, "--group-by", "role", "--min-flows", "2", "-q"])
        try assertGolden(relative(grouped.stdout), "multitier.policy.group-by-role.yaml")
        // From the store: the same rules.
        let db = temp("store.db")
        defer { for s in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: db + s) } }
        XCTAssertEqual(try runFlowmap(["ingest", multitier, "--db", db, "-q"]).status, 0)
        let fromDB = try runFlowmap(["suggest", "--db", db, "--inventory", inventory])
        func rules(_ s: String) -> Substring { s[s.range(of: "workloads:")!.lowerBound...] }
        XCTAssertEqual(rules(fromDB.stdout), rules(a.stdout))
    }

    func testPolicyErrorsNameLineAndColumn() throws {
        let path = temp("bad.yaml")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try """
            apiVersion: flowmap/v1
            kind: Policy
            workloads: []
            rules:
              - name: a
                from: {cidr: 10.0.0.1}
                to: {cidr: 10.0.0.2}
                ports: [5432/tcpp]
            """.write(toFile: path, atomically: true, encoding: .utf8)
        var r = try runFlowmap(["simulate", "--policy", path, multitier, "-q"])
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr, "flowmap: \(path):8:13: '5432/tcpp' is not a port spec (like 5432/tcp, 8000-8010/tcp, 8/icmp or gre)\n")
        try """
            apiVersion: flowmap/v1
            kind: Policy
            rules:
              - name: a
                from: {cidr: 10.0.0.1}
                to: {cidr: 10.0.0.2}
                ports: [5432/tcp]
                schedule: {hours: "07:00-19:00", tz: Mars/Olympus_Mons}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        r = try runFlowmap(["simulate", "--policy", path, multitier, "-q"])
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr, "flowmap: \(path):4:5: rule 'a': unknown time zone 'Mars/Olympus_Mons' (UTC, +05:30 or an IANA name like Europe/Berlin)\n")
        r = try runFlowmap(["simulate", "--policy", "/nonexistent/p.yaml", multitier, "-q"])
        XCTAssertEqual(r.stderr, "flowmap: /nonexistent/p.yaml: no such file\n")
        XCTAssertEqual(r.status, 2)
    }
}

final class LintDiffCLITests: XCTestCase {
    func write(_ text: String) throws -> String {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("lint-\(UUID().uuidString).yaml").path
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    static let head = """
        apiVersion: flowmap/v1
        kind: Policy
        workloads:
          - name: web
            match: {cidrs: [10.0.1.0/24]}
          - name: db
            match: {cidrs: [10.0.3.0/24]}
        rules:

        """

    func testLintFindsDuplicatesShadowsOverlapsAndOverBroadRules() throws {
        let p = try write(LintDiffCLITests.head + """
              - name: web-db
                from: {workload: web}
                to: {workload: db}
                ports: [5432/tcp]
              - name: web-db-again
                from: {workload: web}
                to: {workload: db}
                ports: [5432/tcp]
              - name: web-db-range
                from: {workload: web}
                to: {workload: db}
                ports: [5000-6000/tcp]
              - name: web-db-5433
                from: {workload: web}
                to: {workload: db}
                ports: [5433/tcp]
              - name: anything
                from: {}
                to: {cidr: 0.0.0.0/0}
                ports: [tcp]
              - name: wide
                from: {cidr: 10.0.0.0/8}
                to: {workload: db}
                ports: [5432/tcp]
            """)
        defer { try? FileManager.default.removeItem(atPath: p) }
        let r = try runFlowmap(["lint", "--policy", p])
        XCTAssertEqual(r.status, 1, "a duplicate is an error")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains("\(p):13:5: error: rule 'web-db-again': duplicates rule 'web-db'"), r.stdout)
        XCTAssertTrue(lines.contains("\(p):17:5: warning: rule 'web-db-range': overlaps rule 'web-db' on 5000-6000/tcp"), r.stdout)
        XCTAssertTrue(lines.contains("\(p):21:5: warning: rule 'web-db-5433': is shadowed by rule 'web-db-range' (which allows everything it does)"), r.stdout)
        XCTAssertTrue(lines.contains("\(p):25:5: warning: rule 'anything': allows every tcp port"), r.stdout)
        XCTAssertTrue(lines.contains("\(p):25:5: warning: rule 'anything': from matches every endpoint"), r.stdout)
        XCTAssertTrue(lines.contains("\(p):25:5: warning: rule 'anything': to is 0.0.0.0/0 (everything)"), r.stdout)
        XCTAssertTrue(lines.contains("\(p):29:5: warning: rule 'wide': from 10.0.0.0/8 is wider than a /16"), r.stdout)
        // Warnings alone exit 0; a file that does not parse exits 1 with line:column.
        let clean = try write(LintDiffCLITests.head + "  - name: a\n    from: {workload: web}\n    to: {workload: db}\n    ports: [5432/tcp]\n  - name: b\n    from: {workload: web}\n    to: {cidr: 0.0.0.0/0}\n    ports: [443/tcp]\n")
        defer { try? FileManager.default.removeItem(atPath: clean) }
        XCTAssertEqual(try runFlowmap(["lint", "--policy", clean]).status, 0)
        let broken = try write(LintDiffCLITests.head + "  - name: a\n    from: {workload: web}\n    to: {workload: db}\n    prots: [5432/tcp]\n")
        defer { try? FileManager.default.removeItem(atPath: broken) }
        let b = try runFlowmap(["lint", "--policy", broken])
        XCTAssertEqual(b.status, 1)
        XCTAssertTrue(b.stderr.hasPrefix("\(broken):12:5: error: a rule: unknown key 'prots'"), b.stderr)
    }

    func testLintWithTrafficFindsOrphanedRulesAndStaleEvidence() throws {
        let p = try write(LintDiffCLITests.head + """
              - name: used
                from: {cidr: 10.0.2.21/32}
                to: {cidr: 10.0.3.31/32}
                ports: [5432/tcp]
                evidence: {flows: 6, bytes: 1, clients: 1, firstSeen: "2026-01-05T10:00:00Z", lastSeen: "2026-01-05T10:00:01Z"}
              - name: unused
                from: {workload: web}
                to: {workload: db}
                ports: [5432/tcp]
                evidence: {flows: 6, bytes: 1, clients: 1, firstSeen: "2025-06-01T10:00:00Z", lastSeen: "2025-06-01T10:00:01Z"}
            """)
        defer { try? FileManager.default.removeItem(atPath: p) }
        let capture = Repo.fixtures.appendingPathComponent("multitier/multitier.pcap").path
        let r = try runFlowmap(["lint", "--policy", p, capture, "-q"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("\(p):14:5: warning: rule 'unused': orphaned (no flow in the traffic)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("\(p):14:5: warning: rule 'unused': stale evidence (last seen 2025-06-01T10:00:01Z, 218 days before the traffic ends)"), r.stdout)
        XCTAssertFalse(r.stdout.contains("'used'"), r.stdout)
    }

    func testDiffReportsAddedRemovedWidenedNarrowed() throws {
        let rules = """
              - name: a
                from: {workload: web}
                to: {workload: db}
                ports: [5432/tcp]
              - name: b
                from: {workload: web}
                to: {cidr: 192.0.2.7/32}
                ports: [443/tcp]
              - name: c
                from: {workload: web}
                to: {workload: db}
                ports: [6379/tcp]

            """
        let old = try write(LintDiffCLITests.head + rules)
        let new = try write(LintDiffCLITests.head + """
              - name: a
                from: {workload: web}
                to: {workload: db}
                ports: [5432/tcp, 5433/tcp]
              - name: b
                from: {workload: web}
                to: {cidr: 192.0.2.7/32}
                ports: [443/tcp]
                schedule: {days: [mon], hours: "22:00-06:00", tz: Europe/Berlin}
              - name: d
                from: {workload: web}
                to: {cidr: 192.0.2.0/24}
                ports: [443/tcp]
            """)
        defer { for f in [old, new] { try? FileManager.default.removeItem(atPath: f) } }
        let r = try runFlowmap(["diff", old, new])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stdout, """
            > widened a: ports 5432/tcp → 5432/tcp, 5433/tcp
            < narrowed b: schedule added (22:00-06:00 Europe/Berlin)
            - c: web → db 6379/tcp
            + d: web → 192.0.2.0/24 443/tcp

            """)
        let same = try runFlowmap(["diff", old, old])
        XCTAssertEqual(same.status, 0)
        XCTAssertEqual(same.stdout, "no changes: 3 rules\n")
    }
}

final class ScheduleCLITests: XCTestCase {
    /// Schedules in IANA time zones, through the system's time zone database: the multi-tier
    /// traffic runs at 10:00Z on Monday 2026-01-05, which is 11:00 in Berlin.
    func testTimeZonesDecide() throws {
        let capture = Repo.fixtures.appendingPathComponent("multitier/multitier.pcap").path
        func policy(_ schedule: String) throws -> String {
            let p = FileManager.default.temporaryDirectory.appendingPathComponent("tz-\(UUID().uuidString).yaml").path
            try """
                apiVersion: flowmap/v1
                kind: Policy
                workloads:
                  - name: api
                    match: {cidrs: [10.0.2.0/24]}
                  - name: db
                    match: {cidrs: [10.0.3.31]}
                rules:
                  - name: api-db
                    from: {workload: api}
                    to: {workload: db}
                    ports: [5432/tcp]
                    schedule: \(schedule)
                """.write(toFile: p, atomically: true, encoding: .utf8)
            return p
        }
        func apiDB(_ schedule: String) throws -> [String] {
            let p = try policy(schedule)
            defer { try? FileManager.default.removeItem(atPath: p) }
            let r = try runFlowmap(["simulate", "--policy", p, capture, "--format", "json", "--flows", "all", "-q"])
            let g = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stderr)
            let flows = try XCTUnwrap(g["flows"] as? [[String: Any]])
            return flows.filter { $0["resp_p"] as? Int == 5432 }.map { ($0["rule"] as? String) ?? ($0["reason"] as? String ?? "?") }
        }
        XCTAssertEqual(try apiDB("{days: [mon], hours: \"10:30-12:00\", tz: Europe/Berlin}"), Array(repeating: "api-db", count: 6))
        XCTAssertEqual(try apiDB("{days: [mon], hours: \"10:30-12:00\", tz: UTC}"), Array(repeating: "outside the schedule", count: 6))
        XCTAssertEqual(try apiDB("{days: [mon], hours: \"10:30-12:00\", tz: \"+01:00\"}"), Array(repeating: "api-db", count: 6))
        XCTAssertEqual(try apiDB("{days: [sun], hours: \"23:00-11:00\", tz: Asia/Tokyo}"), Array(repeating: "outside the schedule", count: 6),
                       "19:00 Monday in Tokyo: after Sunday night's window")
        XCTAssertEqual(try apiDB("{days: [mon], hours: \"18:00-02:00\", tz: Asia/Tokyo}"), Array(repeating: "api-db", count: 6),
                       "19:00 Monday in Tokyo: inside Monday night's window across midnight")
    }
}

final class PolicyUsageTests: XCTestCase {
    func testBadNumbersAreUsageErrorsNotCrashes() throws {
        let capture = Repo.fixtures.appendingPathComponent("multitier/multitier.pcap").path
        let policy = Repo.fixtures.appendingPathComponent("golden/multitier.policy.yaml").path
        let r = try runFlowmap(["simulate", "--policy", policy, capture, "--top=-1", "-q"])
        XCTAssertFalse(r.crashed)
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("--top must be 0 or more."), r.stderr)
        let s = try runFlowmap(["suggest", capture, "--port-ranges", "1", "-q"])
        XCTAssertEqual(s.status, 64)
        // --port-ranges reaches the suggester: edge-lb → web on 8080 and 8081 becomes one range.
        let inventory = Repo.fixtures.appendingPathComponent("multitier/inventory.yaml").path
        let ranged = try runFlowmap(["suggest", capture, "--inventory", inventory, "--port-ranges", "2", "-q"])
        XCTAssertTrue(ranged.stdout.contains("  - name: edge-lb-to-web-tcp-8080-8081\n"), ranged.stdout)
        XCTAssertTrue(ranged.stdout.contains("    ports: [8080-8081/tcp]\n"), ranged.stdout)
    }
}
