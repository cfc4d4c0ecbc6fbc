@testable import FlowConfig
import FlowCore
import FlowGraph
import FlowPolicy
import XCTest

/// The rules scanner reads what suggest writes exactly as the tree reader does (rules, marks,
/// errors), and hands everything else to the tree reader.
final class RuleScannerTests: XCTestCase {
    /// A policy in suggest's layout with every kind of rule line the writer produces.
    private func written() -> String {
        var p = Policy()
        p.metadata.name = "scan"
        p.metadata.generatedAt = "2026-01-05T10:00:00Z"
        p.workloads = [
            Workload(name: "web", labels: [("role", "web")], match: WorkloadMatch(cidrs: [CIDR("10.0.1.0/24")!])),
            Workload(name: "db", labels: [("role", "db")], match: WorkloadMatch(cidrs: [CIDR("10.0.2.0/24")!])),
        ]
        let ev = Evidence(flows: 12, bytes: 3456, clients: 2, firstSeen: "2026-01-05T10:00:00.5Z", lastSeen: "2026-01-05T11:00:00Z")
        p.rules = [
            Rule(name: "web-to-db-tcp-5432", from: Selector(workload: "web", processes: ["java", "psql"], users: ["svc-pay"]),
                 to: Selector(workload: "db"), ports: [PortSpec("5432/tcp")!], evidence: ev),
            Rule(name: "web-to-api-stripe-com-tcp-443", from: Selector(workload: "web"), to: Selector(fqdn: "api.stripe.com"),
                 ports: [PortSpec("443/tcp")!, PortSpec("8000-8010/tcp")!], evidence: ev),
            Rule(name: "db-to-v6-udp-53", from: Selector(workload: "db"), to: Selector(cidrs: [CIDR("2001:db8::53/128")!]),
                 ports: [PortSpec("53/udp")!], infrastructure: "dns", evidence: ev),
            Rule(name: "x-to-y-icmp", from: Selector(cidrs: [CIDR("10.9.0.0/16")!, CIDR("10.8.0.1/32")!]),
                 to: Selector(fqdn: "*.example.com"), ports: [PortSpec("icmp")!],
                 note: "direction unknown: allowed as seen (originator to responder port); review", evidence: nil),
            Rule(name: "any-to-db-gre", from: Selector(), to: Selector(workload: "db"), ports: [PortSpec("gre")!],
                 evidence: Evidence(flows: 1, bytes: 0, clients: 1, firstSeen: "é", lastSeen: "")),
        ]
        p.review = [ReviewItem(from: Selector(workload: "web"), to: Selector(workload: "db"), ports: [PortSpec("22/tcp")!],
                               flows: 1, reason: "fewer than 2 flows")]
        return PolicyWriter.write(p)
    }

    /// The policy read the usual way (the tree reader alone).
    private struct NoPolicy: Error {}

    private func viaTree(_ text: String) throws -> Policy {
        guard let p = try PolicyParser.parse(text, file: "p.yaml", keep: nil, scanned: nil) else { throw NoPolicy() }
        return p
    }

    private func assertSameRead(_ text: String, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        let a = Result { try PolicyParser.parse(text, file: "p.yaml") }
        let b = Result { try viaTree(text) }
        switch (a, b) {
        case (.success(let x), .success(let y)):
            XCTAssertEqual(x.rules, y.rules, message, file: file, line: line)
            XCTAssertEqual(x.rules.map(\.mark), y.rules.map(\.mark), message, file: file, line: line)
            XCTAssertEqual(PolicyWriter.write(x), PolicyWriter.write(y), message, file: file, line: line)
        case (.failure(let x), .failure(let y)):
            XCTAssertEqual("\(x)", "\(y)", message, file: file, line: line)
        default:
            XCTFail("\(message): one reader failed, the other did not: \(a) / \(b)", file: file, line: line)
        }
    }

    func testWhatTheWriterWritesIsScannedAndReadAsTheTreeReadsIt() throws {
        let text = written()
        let scanned = try XCTUnwrap(RuleScanner.scan(text, file: "p.yaml"), "the writer's layout is scanned")
        XCTAssertEqual(scanned.rules.count, 5)
        XCTAssertEqual(scanned.workloads, ["web", "db"])
        assertSameRead(text, "as written")
        let p = try PolicyParser.parse(text, file: "p.yaml")
        XCTAssertEqual(p.rules[0].from.processes, ["java", "psql"])
        XCTAssertEqual(p.rules[3].to.fqdn, "*.example.com")
        XCTAssertEqual(p.rules[2].infrastructure, "dns")
        XCTAssertEqual(p.review.count, 1, "what follows the rules is read too")
        XCTAssertEqual(p.rules.map { $0.mark?.column }, [5, 5, 5, 5, 5])
    }

    func testAnythingElseIsLeftToTheTreeReader() {
        let text = written()
        let variants: [(String, String)] = [
            ("a schedule", text.replacingOccurrences(of: "    ports: [5432/tcp]\n",
                                                     with: "    ports: [5432/tcp]\n    schedule: {days: [mon], hours: \"07:00-19:00\", tz: UTC}\n")),
            ("a comment line", text.replacingOccurrences(of: "  - name: db-to-v6-udp-53\n", with: "  # dns\n  - name: db-to-v6-udp-53\n")),
            ("a blank line", text.replacingOccurrences(of: "  - name: db-to-v6-udp-53\n", with: "\n  - name: db-to-v6-udp-53\n")),
            ("CRLF", text.replacingOccurrences(of: "\n", with: "\r\n")),
            ("an escape", text.replacingOccurrences(of: "direction unknown:", with: "direction\\tunknown:")),
            ("a single-quoted name", text.replacingOccurrences(of: "name: x-to-y-icmp", with: "name: 'x-to-y-icmp'")),
            ("keys in another order", text.replacingOccurrences(of: "  - name: any-to-db-gre\n    from: {}\n", with: "  - from: {}\n    name: any-to-db-gre\n")),
            ("labels", text.replacingOccurrences(of: "from: {workload: web}", with: "from: {labels: {role: web}}")),
            ("an unknown workload", text.replacingOccurrences(of: "to: {workload: db}", with: "to: {workload: nosuch}")),
            ("a duplicate name", text.replacingOccurrences(of: "name: x-to-y-icmp", with: "name: web-to-db-tcp-5432")),
            ("a repeated key", text.replacingOccurrences(of: "    ports: [gre]\n", with: "    ports: [gre]\n    ports: [esp]\n")),
            ("a bad port", text.replacingOccurrences(of: "[53/udp]", with: "[53/udpx]")),
            ("a bad block", text.replacingOccurrences(of: "2001:db8::53/128", with: "2001:db8::53/129")),
            ("a null note", text.replacingOccurrences(of: "note: \"direction unknown: allowed as seen (originator to responder port); review\"", with: "note: null")),
            ("a second document", text + "---\nrules: []\n"),
            ("a document marker first", "---\n" + text),
            ("rules twice", text + "rules:\n  - name: again\n    from: {}\n    to: {}\n    ports: [tcp]\n"),
            ("no ports", text.replacingOccurrences(of: "    ports: [gre]\n", with: "    ports: []\n")),
            ("trailing space", text.replacingOccurrences(of: "ports: [gre]\n", with: "ports: [gre] \n")),
        ]
        for (what, t) in variants {
            XCTAssertNotEqual(t, text, what)
            assertSameRead(t, what)
        }
        // Not scanned at all: the layout is not the writer's.
        for (what, t) in variants where ["a schedule", "a comment line", "CRLF", "an escape", "a single-quoted name",
                                         "keys in another order", "labels", "a second document", "a document marker first",
                                         "rules twice", "trailing space"].contains(what) {
            XCTAssertNil(RuleScanner.scan(t, file: "p.yaml"), what)
        }
        // Scanned, and the duplicate is reported exactly as the tree reader reports it.
        let dup = variants.first { $0.0 == "a duplicate name" }!.1
        XCTAssertNotNil(RuleScanner.scan(dup, file: "p.yaml"))
        XCTAssertThrowsError(try PolicyParser.parse(dup, file: "p.yaml")) { e in
            XCTAssertTrue("\(e)".contains("is already defined at line"), "\(e)")
        }
    }
}
