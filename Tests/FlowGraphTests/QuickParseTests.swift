@testable import FlowConfig
import FlowCore
@testable import FlowGraph
@testable import FlowPolicy
import XCTest

/// The allocation-free readers of the usual spellings (port specs, CIDRs, rules as `suggest`
/// writes them) must give exactly what the general readers give, and must be the ones used for
/// those spellings.
final class QuickParseTests: XCTestCase {
    func testPortSpecQuickPathAgreesWithGeneral() {
        let ranges = ["0", "1", "22", "0443", "65535", "65536", "99999", "000001", "5-4", "1-65535", "8000-8010", "-5", "5-",
                      "a", "1-2-3", "", "255", "256", "1--2", "٣"]
        let protos = ["tcp", "udp", "icmp", "icmp6", "gre", "ip-132", "ip-300", "ip-", "sctp", "TCP", "tcpp", "", "esp", "ah"]
        var texts = protos + ["/", "//", "5/tcp/udp", "5432/ tcp", " 5432/tcp", "ip-1-2", "5/ip-17", "tcp-5"]
        for r in ranges { for p in protos { texts.append("\(r)/\(p)") } }
        var quick = 0
        for t in texts {
            XCTAssertEqual(PortSpec(t), PortSpec.general(t), t)
            if PortSpec.quick(t) != nil { quick += 1 }
        }
        XCTAssertNotNil(PortSpec.quick("5432/tcp") ?? nil)
        XCTAssertNotNil(PortSpec.quick("8000-8010/udp") ?? nil)
        XCTAssertNotNil(PortSpec.quick("gre") ?? nil)
        XCTAssertGreaterThan(quick, texts.count / 2)
    }

    func testCIDRQuickPathAgreesWithGeneral() {
        let addresses = ["10.0.0.1", "10.1.0.0", "0.0.0.0", "2001:db8::", "::", "1.2.3", "::ffff:1.2.3.4", "fe80::1%eth0", "x", "",
                         "2001:db8:1000::78e", "256.1.1.1"]
        let suffixes = ["", "/0", "/8", "/16", "/32", "/33", "/48", "/128", "/129", "/+8", "/-0", "/08", "/0008", "//8", "/", "/ 8", "/8 "]
        for a in addresses {
            for s in suffixes {
                for strict in [false, true] {
                    let t = a + s
                    XCTAssertEqual(CIDR(t, strict: strict), CIDR.general(t, strict: strict), "\(t) strict \(strict)")
                }
            }
        }
        XCTAssertNotNil(CIDR.quick("10.1.0.0/20", strict: false) ?? nil)
        XCTAssertNotNil(CIDR.quick("2001:db8:1000::78e/128", strict: true) ?? nil)
    }

    func testFastRuleGivesWhatTheGeneralReaderGives() throws {
        let text = """
            apiVersion: flowmap/v1
            kind: Policy
            workloads:
              - name: web
                labels: {role: web}
                match: {cidrs: [10.0.1.0/24]}
              - name: db
                match: {cidrs: [10.0.2.0/24]}
            rules:
              - name: plain
                from: {workload: web}
                to: {workload: db}
                ports: [5432/tcp, 8000-8010/tcp]
                evidence: {flows: 3, bytes: 400, clients: 1, firstSeen: "2026-01-05T09:00:00Z", lastSeen: "2026-01-05T10:00:00Z"}
              - name: addresses
                from: {cidr: "2001:db8:1000::78e/128"}
                to: {cidrs: [10.0.9.9, 10.9.0.0/16]}
                ports: 53/udp
                note: "direction unknown: allowed as seen"
                infrastructure: dns
              - name: names
                from: {workload: web, processes: [java, nginx], users: svc}
                to: {fqdn: API.Example.COM}
                ports: [443/TCP, gre, 0443/tcp]
              - name: glob
                from: {workload: web}
                to: {fqdn: "*.example.com"}
                ports: [tcp]
              - name: with-labels
                from: {labels: {role: web}}
                to: {workload: db}
                ports: [5432/tcp]
              - name: with-schedule
                from: {workload: web}
                to: {workload: db}
                ports: [5432/tcp]
                schedule: {days: [mon], hours: "07:00-19:00", tz: UTC}
              - name: null-note
                from: {workload: web}
                to: {workload: db}
                ports: [5432/tcp]
                note: ~
              - name: negative-evidence
                from: {workload: web}
                to: {workload: db}
                ports: [22/tcp]
                evidence: {flows: -4, bytes: 0, clients: 0}
            """
        guard let root = try YAMLValue.parse(text, file: "p.yaml") else { return XCTFail("empty") }
        let rules = try root.mapping("policy").first { $0.key == "rules" }!.value.sequence("rules")
        let names = Set(["web", "db"])
        var fast: [String] = []
        for item in rules {
            let general = try PolicyParser.rule(item, workloads: names)
            if let r = PolicyParser.fastRule(item.node, workloads: names, file: "p.yaml") {
                XCTAssertEqual(r, general, general.name)
                XCTAssertEqual(r.mark, general.mark, general.name)
                fast.append(r.name)
            }
        }
        // The shapes suggest writes take the fast path; labels, schedules and nulls do not.
        XCTAssertEqual(fast, ["plain", "addresses", "names", "glob", "negative-evidence"])
        // The whole file reads the same through PolicyParser (which mixes both paths).
        let p = try PolicyParser.parse(text, file: "p.yaml")
        XCTAssertEqual(p.rules.map(\.name), ["plain", "addresses", "names", "glob", "with-labels", "with-schedule", "null-note",
                                              "negative-evidence"])
        XCTAssertEqual(p.rules[2].to.fqdn, "api.example.com")
        XCTAssertEqual(p.rules[7].evidence?.flows, 0)
    }

    func testFastRuleLeavesErrorsToTheGeneralReader() {
        let bad: [(String, String)] = [
            ("from: {workload: nope}\n    to: {workload: db}\n    ports: [5432/tcp]", "no workload named 'nope'"),
            ("from: {workload: web}\n    to: {workload: db}\n    ports: [5432/tcpp]", "'5432/tcpp' is not a port spec"),
            ("from: {workload: web}\n    to: {cidr: 10.0.0.300}\n    ports: [5432/tcp]", "'10.0.0.300' is not an address or CIDR"),
            ("from: {workload: web}\n    to: {workload: db}\n    ports: []", "ports is empty"),
            ("from: {workload: web}\n    to: {workload: db}\n    ports: [5432/tcp]\n    colour: red", "unknown key 'colour'"),
            ("from: {workload: web}\n    to: {workload: db, workload: web}\n    ports: [5432/tcp]", "duplicate key 'workload'"),
            ("from: {workload: web}\n    to: {workload: db}\n    ports: [5432/tcp]\n    evidence: {flows: many}", "flows must be an integer"),
        ]
        for (body, expected) in bad {
            let text = "apiVersion: flowmap/v1\nkind: Policy\nworkloads:\n  - {name: web, match: {cidrs: [10.0.1.0/24]}}\n"
                + "  - {name: db, match: {cidrs: [10.0.2.0/24]}}\nrules:\n  - name: r\n    " + body + "\n"
            XCTAssertThrowsError(try PolicyParser.parse(text, file: "p.yaml"), body) { e in
                let d = (e as? ConfigError)?.description ?? "\(e)"
                XCTAssertTrue(d.contains(expected), d)
                XCTAssertTrue(d.hasPrefix("p.yaml:"), d)
            }
        }
    }
}
