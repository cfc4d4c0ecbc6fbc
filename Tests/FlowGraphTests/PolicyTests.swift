import FlowConfig
import FlowCore
import FlowGraph
@testable import FlowPolicy
import Foundation
import XCTest

private func ip(_ s: String) -> IPAddress { IPAddress(s)! }

private func flow(_ c: String, _ cp: UInt16, _ s: String, _ sp: UInt16, proto: IPProtocol = .tcp, at t: Double = 1_767_607_200,
                  history: String = "ShADdFf", flipped: Bool = false, proc: ProcessAttribution? = nil) -> GraphFlow {
    GraphFlow(ts: t, duration: 1, origH: ip(c), origP: cp, respH: ip(s), respP: sp, ipProto: proto, origPkts: 3, respPkts: 2,
              origIPBytes: 300, respIPBytes: 200, history: history, flipped: flipped, origProcess: proc)
}

final class PortAndScheduleTests: XCTestCase {
    func testPortSpecs() {
        XCTAssertEqual(PortSpec("5432/tcp"), PortSpec(proto: "tcp", low: 5432, high: 5432))
        XCTAssertEqual(PortSpec("8000-8010/TCP")?.description, "8000-8010/tcp")
        XCTAssertEqual(PortSpec("8/icmp")?.width, 1)
        XCTAssertEqual(PortSpec("gre")?.description, "gre")
        XCTAssertEqual(PortSpec("tcp")?.width, 65536)
        XCTAssertEqual(PortSpec("ip-132")?.proto, "ip-132")
        for bad in ["5432", "5432/tcpp", "0/tcp", "70000/udp", "10-5/tcp", "300/icmp", "a/tcp", "1-2-3/tcp", "", "+5/tcp"] {
            XCTAssertNil(PortSpec(bad), bad)
        }
        XCTAssertTrue(PortSpec("8000-8010/tcp")!.contains(proto: "tcp", port: 8005))
        XCTAssertFalse(PortSpec("8000-8010/tcp")!.contains(proto: "udp", port: 8005))
        XCTAssertTrue(PortSpec("5432/tcp")!.isWithin(PortSpec("5000-6000/tcp")!))
        XCTAssertFalse(PortSpec("tcp")!.isWithin(PortSpec("5000-6000/tcp")!))
    }

    func testScheduleDaysHoursAndMidnight() {
        // 2026-01-05 is a Monday. 10:00Z.
        let monday10 = 1_767_607_200.0
        let office = Schedule(days: [0, 1, 2, 3, 4], startMinute: 7 * 60, endMinute: 19 * 60, tz: "UTC")
        XCTAssertTrue(office.contains(monday10, utcOffset: 0))
        XCTAssertFalse(office.contains(monday10 + 10 * 3600, utcOffset: 0), "20:00")
        XCTAssertFalse(office.contains(monday10 - 2 * 86400, utcOffset: 0), "Saturday")
        // In Berlin (UTC+1 in January) 18:30Z is 19:30 local: closed; 17:30Z is 18:30: open.
        XCTAssertFalse(office.contains(monday10 + 8.5 * 3600, utcOffset: 3600))
        XCTAssertTrue(office.contains(monday10 + 7.5 * 3600, utcOffset: 3600))
        // In Tokyo (UTC+9), Sunday 23:00Z is Monday 08:00 local: open.
        XCTAssertTrue(office.contains(monday10 - 11 * 3600, utcOffset: 9 * 3600))
        // A night window across midnight, on Fridays: Fri 23:00 and Sat 03:00 (Friday's night)
        // are in; Sat 23:00 and Fri 03:00 (Thursday's night) are not.
        let night = Schedule(days: [4], startMinute: 22 * 60, endMinute: 6 * 60, tz: "UTC")
        let friday0 = monday10 - 10 * 3600 + 4 * 86400
        XCTAssertTrue(night.contains(friday0 + 23 * 3600, utcOffset: 0))
        XCTAssertTrue(night.contains(friday0 + 27 * 3600, utcOffset: 0))
        XCTAssertFalse(night.contains(friday0 + 47 * 3600, utcOffset: 0))
        XCTAssertFalse(night.contains(friday0 + 3 * 3600, utcOffset: 0))
        XCTAssertFalse(night.contains(friday0 + 12 * 3600, utcOffset: 0))
        XCTAssertEqual(Schedule.parseHours("22:00-06:00").map { [$0.0, $0.1] }, [1320, 360])
        XCTAssertEqual(Schedule.parseHours("00:00-24:00").map { [$0.0, $0.1] }, [0, 1440])
        XCTAssertNil(Schedule.parseHours("7:00-19:00"))
        XCTAssertNil(Schedule.parseHours("07:00-25:00"))
        XCTAssertEqual(night.hoursText, "22:00-06:00")
    }
}

final class PolicyFileTests: XCTestCase {
    static let full = """
        apiVersion: flowmap/v1
        kind: Policy
        metadata:
          name: classic
          generatedAt: "2026-01-05T10:00:00Z"
          sources: [a.pcap, "b c.pcap"]
          window: {from: "2026-01-05T09:00:00Z", to: "2026-01-05T10:00:00Z"}
        workloads:
          - name: payment-service
            labels: {env: prod, role: payments}
            match:
              cidrs: [10.0.1.0/24, "fd00:1::/64"]
          - name: db-service
            labels: {role: db}
            match:
              hosts: ["db-*.internal"]
              ports: [5432, 8161]
        defaultAction: deny
        rules:
          - name: payment-service-to-db-service
            from: {workload: payment-service, processes: [psql, curl], users: [svc-pay]}
            to: {workload: db-service}
            ports: [5432/tcp, 8161/tcp]
            schedule: {days: [mon, tue, wed, thu, fri], hours: "07:00-19:00", tz: Europe/Berlin}
            evidence: {flows: 1234, bytes: 5678901, clients: 3, firstSeen: "2026-01-05T09:00:00Z", lastSeen: "2026-01-05T10:00:00Z"}
          - name: to-the-internet
            from: {labels: {role: payments}}
            to: {cidrs: [0.0.0.0/0, "::/0"]}
            ports: [80/tcp, 443/tcp, 8000-8010/tcp, 8/icmp]
            note: "broad on purpose"
          - name: dns
            from: {labels: {env: prod}}
            to: {fqdn: "*.resolver.internal"}
            ports: [53/udp, 53/tcp]
            infrastructure: dns
        review:
          - {from: {cidr: 10.0.5.5/32}, to: {cidr: 10.0.5.6/32}, ports: [tcp], flows: 1, reason: direction unknown}
        """

    func testParseWriteParseRoundTrip() throws {
        let p = try PolicyParser.parse(PolicyFileTests.full, file: "p.yaml")
        XCTAssertEqual(p.rules.count, 3)
        XCTAssertEqual(p.rules[0].schedule?.tz, "Europe/Berlin")
        XCTAssertEqual(p.rules[0].from.users, ["svc-pay"])
        XCTAssertEqual(p.rules[1].to.cidrs.count, 2)
        XCTAssertEqual(p.rules[0].mark?.line, 20)
        let text = PolicyWriter.write(p)
        let again = try PolicyParser.parse(text, file: "p2.yaml")
        XCTAssertEqual(again, p, "read → write → read is equal")
        XCTAssertEqual(PolicyWriter.write(again), text, "and writing is stable")
    }

    func error(_ yaml: String) -> ConfigError? {
        do { _ = try PolicyParser.parse(yaml, file: "p.yaml"); return nil } catch { return error }
    }

    func testErrorsWithLineAndColumn() {
        let head = "apiVersion: flowmap/v1\nkind: Policy\nworkloads:\n  - name: db\n    match: {cidrs: [10.0.3.0/24]}\nrules:\n"
        var e = error(head + "  - name: r\n    from: {workload: web}\n    to: {workload: db}\n    ports: [5432/tcp]\n")
        XCTAssertEqual(e.map { "\($0.line):\($0.column) \($0.reason)" }, "8:22 from: no workload named 'web' in this policy's workloads")
        e = error(head + "  - name: r\n    from: {cidr: 10.0.0.1}\n    to: {workload: db}\n    port: [5432/tcp]\n")
        XCTAssertEqual(e.map { "\($0.line):\($0.column)" }, "10:5")
        XCTAssertTrue(e?.reason.contains("unknown key 'port'") ?? false)
        e = error(head + "  - name: r\n    from: {cidr: 10.0.0.1}\n    to: {workload: db}\n    ports: [5432/tcp]\n    schedule: {days: [funday]}\n")
        XCTAssertEqual(e.map { "\($0.line):\($0.column)" }, "11:23")
        e = error(head + "  - name: r\n    from: {cidr: 10.0.0.1}\n    to: {workload: db}\n    ports: [5432/tcp]\n    schedule: {hours: 7-19}\n")
        XCTAssertEqual(e?.reason, "hours '7-19' is not HH:MM-HH:MM")
        e = error(head + "  - name: r\n    from: {}\n    to: {}\n    ports: [tcp]\n  - name: r\n    from: {}\n    to: {}\n    ports: [udp]\n")
        XCTAssertEqual(e?.reason, "rule 'r' is already defined at line 7")
        e = error("apiVersion: flowmap/v2\nkind: Policy\n")
        XCTAssertEqual(e.map { "\($0.line):\($0.column)" }, "1:13")
        e = error(head + "  - name: r\n    from: {cidr: 10.0.0.1\n")
        XCTAssertTrue(e?.reason.hasPrefix("invalid YAML") ?? false)
        e = error(head + "  - name: r\n    from: {cidr: 10.0.0.1}\n    to: {workload: db}\n    ports: []\n")
        XCTAssertEqual(e?.reason, "rule 'r': ports is empty, so the rule allows nothing")
    }
}

final class EvaluatorAndSuggesterTests: XCTestCase {
    func policy(_ yaml: String) throws -> Policy { try PolicyParser.parse(yaml, file: "p.yaml") }

    func testReasonsSchedulesLabelsAndProcesses() throws {
        let p = try policy("""
            apiVersion: flowmap/v1
            kind: Policy
            workloads:
              - name: web
                labels: {role: web}
                match: {cidrs: [10.0.1.0/24]}
              - name: api
                labels: {role: api}
                match: {cidrs: [10.0.2.0/24]}
              - name: db
                match: {cidrs: [10.0.3.0/24]}
            rules:
              - name: web-api
                from: {labels: {role: web}}
                to: {workload: api}
                ports: [8443/tcp]
              - name: api-db-office-hours
                from: {workload: api, processes: [java]}
                to: {workload: db}
                ports: [5432/tcp]
                schedule: {days: [mon, tue, wed, thu, fri], hours: "07:00-19:00", tz: UTC}
            """)
        let e = PolicyEvaluator(policy: p)
        let java = ProcessAttribution(comm: "java", exe: "/usr/bin/java", user: "svc")
        XCTAssertEqual(e.evaluate(flow("10.0.1.5", 40000, "10.0.2.9", 8443)), .allowed(rule: 0))
        XCTAssertEqual(e.evaluate(flow("10.0.1.5", 40000, "10.0.2.9", 22)), .blocked(.portNotAllowed))
        XCTAssertEqual(e.evaluate(flow("10.0.1.5", 40000, "10.0.3.9", 5432)), .blocked(.noRule))
        XCTAssertEqual(e.evaluate(flow("10.0.1.5", 40000, "10.9.9.9", 80)), .blocked(.noWorkload))
        XCTAssertEqual(e.evaluate(flow("10.0.2.5", 40000, "10.0.3.9", 5432, proc: java)), .allowed(rule: 1))
        XCTAssertEqual(e.evaluate(flow("10.0.2.5", 40000, "10.0.3.9", 5432)), .blocked(.noRule), "no attribution: not java")
        XCTAssertEqual(e.evaluate(flow("10.0.2.5", 40000, "10.0.3.9", 5432, at: 1_767_607_200 + 10 * 3600, proc: java)),
                       .blocked(.outsideSchedule))
        var open = p
        open.defaultAction = .allow
        XCTAssertEqual(PolicyEvaluator(policy: open).evaluate(flow("10.0.1.5", 1, "10.9.9.9", 80)), .allowed(rule: -1))
    }

    func testSuggestNarrowGroupedRangedAndReviewed() throws {
        let inv = try InventoryParser.parse("""
            workloads:
              - name: web
                labels: {role: web}
                match: {cidrs: [10.0.1.0/24]}
              - name: api
                labels: {role: api}
                match: {cidrs: [10.0.2.0/24]}
            """, file: "i.yaml")
        let names = NameResolver()
        names.add(client: ip("10.0.2.1"), name: "api.stripe.com", address: ip("198.51.100.7"), ttl: 60, first: 0, last: 0)
        let b = GraphBuilder(inventory: inv, names: names, options: PolicySuggester.graphOptions(GraphOptions()))
        for port in [8000, 8001, 8002, 8003, 9000] as [UInt16] { b.add(flow("10.0.1.5", 40000, "10.0.2.9", port)) }
        b.add(flow("10.0.2.1", 40000, "198.51.100.7", 443))
        b.add(flow("10.0.2.1", 40001, "198.51.100.9", 443))
        b.add(flow("10.0.2.1", 40002, "10.0.0.2", 53, proto: .udp))
        b.add(flow("10.0.5.5", 41000, "10.0.5.6", 40000, history: "Dd"))
        let g = b.build()
        let p = PolicySuggester.suggest(graph: g, inventory: inv)
        XCTAssertEqual(p.rules.map(\.name), [
            "10-0-5-5-to-10-0-5-6-tcp-40000", "api-to-10-0-0-2-udp-53", "api-to-198-51-100-9-tcp-443",
            "api-to-api-stripe-com-tcp-443", "web-to-api-tcp-8000", "web-to-api-tcp-8001", "web-to-api-tcp-8002",
            "web-to-api-tcp-8003", "web-to-api-tcp-9000",
        ])
        XCTAssertEqual(p.rules[1].infrastructure, "dns")
        XCTAssertEqual(p.rules[2].to.cidrs.map(\.description), ["198.51.100.9/32"])
        XCTAssertEqual(p.rules[3].to.fqdn, "api.stripe.com")
        XCTAssertNotNil(p.rules[0].note)
        // Everything observed is allowed by what was suggested.
        let e = PolicyEvaluator(policy: p, names: names)
        for f in [flow("10.0.1.5", 40000, "10.0.2.9", 8002), flow("10.0.2.1", 40000, "198.51.100.7", 443),
                  flow("10.0.5.5", 41000, "10.0.5.6", 40000, history: "Dd")] {
            XCTAssertFalse(e.evaluate(f).isBlocked)
        }
        XCTAssertTrue(e.evaluate(flow("10.0.1.5", 40000, "10.0.2.9", 8004)).isBlocked, "never broader than observed")

        var o = SuggestOptions()
        o.portRanges = 3
        o.groupBy = "role"
        o.minFlows = 1
        let q = PolicySuggester.suggest(graph: g, inventory: inv, options: o)
        XCTAssertEqual(q.rules.filter { $0.name.hasPrefix("role-web") }.map { "\($0.name) \($0.ports)" },
                       ["role-web-to-role-api-tcp-8000-8003 [8000-8003/tcp]", "role-web-to-role-api-tcp-9000 [9000/tcp]"])
        XCTAssertEqual(q.rules.first { $0.name.hasPrefix("role-web") }?.from.labels, ["role": "web"])
        o.minFlows = 2
        let r = PolicySuggester.suggest(graph: g, inventory: inv, options: o)
        XCTAssertEqual(r.rules.map(\.name), ["role-web-to-role-api-tcp-8000-8003"], "the range carries 4 flows")
        XCTAssertEqual(r.review.count, 5)
        XCTAssertEqual(r.review.first?.reason, "fewer than 2 flows")
        XCTAssertEqual(PolicyWriter.write(PolicySuggester.suggest(graph: g, inventory: inv)), PolicyWriter.write(p), "deterministic")
    }
}

final class SuggestDetailTests: XCTestCase {
    func testSanitizeFastPathAgreesWithTheGeneralOne() {
        var samples = ["", "-", "--a--", "A.B", "api.Stripe.COM", "proc-java@svc-pay", "x", "2001:db8::1", "a__b..c",
                       "ÄB", "\u{212A}elvin", "İstanbul", "web 1", "9", "-9-"]
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("aZ09-._@: /".utf8)
        for _ in 0..<500 {
            let n = Int.random(in: 0...12, using: &rng)
            samples.append(String(decoding: (0..<n).map { _ in alphabet.randomElement(using: &rng)! }, as: UTF8.self))
        }
        for s in samples {
            XCTAssertEqual(PolicySuggester.sanitize(s), PolicySuggester.sanitizeGeneral(s), s)
            if s.utf8.allSatisfy({ $0 < 0x80 }) {
                XCTAssertEqual(PolicySuggester.sanitizeASCII(s), PolicySuggester.sanitizeGeneral(s), s)
            } else {
                XCTAssertNil(PolicySuggester.sanitizeASCII(s), s)
            }
        }
        XCTAssertEqual(PolicySuggester.sanitize("\u{212A}8s"), "k8s", "the Kelvin sign lower-cases to an ASCII k")
    }

    /// Edges that land on the same (client, server, protocol, port) are one rule whose evidence
    /// adds them up, whichever order the graph lists them in.
    func testGroupedEdgesAddUpIntoOneRule() throws {
        let inv = try InventoryParser.parse("""
            workloads:
              - name: web-a
                labels: {role: web}
                match: {cidrs: [10.0.1.0/24]}
              - name: web-b
                labels: {role: web}
                match: {cidrs: [10.0.3.0/24]}
              - name: api
                labels: {role: api}
                match: {cidrs: [10.0.2.0/24]}
            """, file: "i.yaml")
        let b = GraphBuilder(inventory: inv, names: NameResolver(), options: PolicySuggester.graphOptions(GraphOptions()))
        b.add(flow("10.0.1.5", 40000, "10.0.2.9", 8080, at: 1_767_607_200))
        b.add(flow("10.0.1.6", 40001, "10.0.2.9", 8080, at: 1_767_607_300))
        b.add(flow("10.0.3.5", 40000, "10.0.2.9", 8080, at: 1_767_607_100))
        b.add(flow("10.0.3.5", 40002, "10.0.2.9", 8081, at: 1_767_607_400))
        var g = b.build()
        var o = SuggestOptions()
        o.groupBy = "role"
        let p = PolicySuggester.suggest(graph: g, inventory: inv, options: o)
        XCTAssertEqual(p.rules.map(\.name), ["role-web-to-role-api-tcp-8080", "role-web-to-role-api-tcp-8081"])
        let ev = try XCTUnwrap(p.rules.first?.evidence)
        XCTAssertEqual(ev.flows, 3)
        XCTAssertEqual(ev.bytes, 3 * 500)
        XCTAssertEqual(ev.clients, 3)
        XCTAssertEqual(ev.firstSeen, Fmt.iso8601(1_767_607_100))
        XCTAssertEqual(ev.lastSeen, Fmt.iso8601(1_767_607_301))
        o.portRanges = 2
        XCTAssertEqual(PolicySuggester.suggest(graph: g, inventory: inv, options: o).rules.map { "\($0.name) \($0.evidence!.flows)" },
                       ["role-web-to-role-api-tcp-8080-8081 4"])
        g.edges.reverse()
        o.portRanges = nil
        XCTAssertEqual(PolicyWriter.write(PolicySuggester.suggest(graph: g, inventory: inv, options: o)), PolicyWriter.write(p))
    }
}

/// docs/examples/classic-policy.yaml expresses the classic table; every row is enforced as written.
final class ClassicPolicyTests: XCTestCase {
    func testTheClassicTable() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/examples/classic-policy.yaml")
        let p = try PolicyParser.parse(String(contentsOf: url, encoding: .utf8), file: url.path)
        let e = PolicyEvaluator(policy: p)
        let psql = ProcessAttribution(comm: "psql", exe: "/usr/bin/psql", user: "svc-pay")
        let java = ProcessAttribution(comm: "java", exe: "/usr/lib/jvm/bin/java", user: "jwt-user")
        let py = ProcessAttribution(comm: "python3", exe: "/usr/bin/python3", user: "svc-analytics",
                                    cgroup: "/system.slice/analytics-agent.service", unit: "analytics-agent.service")
        let rogue = ProcessAttribution(comm: "nc", exe: "/usr/bin/nc", user: "svc-pay")
        let monday10 = 1_767_607_200.0
        XCTAssertEqual(e.evaluate(flow("10.0.1.5", 40000, "10.0.3.9", 5432, at: monday10, proc: psql)), .allowed(rule: 0))
        XCTAssertEqual(e.evaluate(flow("10.0.1.5", 40000, "10.0.3.9", 8161, at: monday10, proc: psql)), .allowed(rule: 0))
        XCTAssertEqual(e.evaluate(flow("10.0.1.5", 40000, "10.0.3.9", 5432, at: monday10, proc: rogue)), .blocked(.noRule))
        XCTAssertEqual(e.evaluate(flow("10.0.1.5", 40000, "10.0.3.9", 22, at: monday10, proc: psql)), .blocked(.portNotAllowed))
        XCTAssertEqual(e.evaluate(flow("10.0.2.5", 40000, "10.0.4.9", 8443, at: monday10, proc: java)), .allowed(rule: 1))
        XCTAssertEqual(e.evaluate(flow("10.0.2.5", 40000, "10.0.3.9", 5432, at: monday10, proc: java)), .blocked(.noRule))
        XCTAssertEqual(e.evaluate(flow("10.0.9.5", 40000, "93.184.216.34", 443, at: monday10, proc: py)), .allowed(rule: 2))
        XCTAssertEqual(e.evaluate(flow("10.0.9.5", 40000, "93.184.216.34", 443, at: monday10 + 12 * 3600, proc: py)),
                       .blocked(.outsideSchedule))
        XCTAssertEqual(PolicyLinter.lint(p).map(\.message), ["rule 'analytics-agent-to-internet': to is 0.0.0.0/0 (everything)", "rule 'analytics-agent-to-internet': to is ::/0 (everything)"])
    }
}

/// The linter compares a rule only with earlier rules that can share a port with it (indexed
/// by port within each bucket of selectors). That must find exactly what comparing every pair
/// finds: checked against a plain pairwise reference on a policy that mixes single ports,
/// several ports, ranges, every port, no ports, protocols, schedules and wide selectors.
final class LintIndexTests: XCTestCase {
    func testIndexedLintFindsWhatComparingEveryPairFinds() throws {
        var rules: [Rule] = []
        var x: UInt64 = 12345
        func next(_ n: UInt64) -> Int {
            x = x &* 6364136223846793005 &+ 1442695040888963407
            return Int((x >> 33) % n)
        }
        let sides: [Selector] = [Selector(workload: "web"), Selector(workload: "db"), Selector(workload: "cache"),
                                 Selector(fqdn: "api.example.com"), Selector(cidrs: [CIDR("10.1.2.3/32")!]),
                                 Selector(cidrs: [CIDR("10.0.0.0/8")!]), Selector(labels: ["role": "api"]), Selector(),
                                 Selector(workload: "web", processes: ["java"])]
        for i in 0..<700 {
            let proto = ["tcp", "udp", "icmp"][next(3)]
            var ports: [PortSpec]
            switch next(10) {
            case 0: ports = [PortSpec(proto: proto)]  // every port
            case 1: let l = UInt16(next(40) + 1); ports = [PortSpec(proto: proto, low: l, high: l + UInt16(next(5)))]
            case 2: ports = [PortSpec(proto: proto, low: UInt16(next(40) + 1)), PortSpec(proto: "tcp", low: UInt16(next(40) + 1))]
            case 3 where i % 7 == 0: ports = []
            default: ports = [PortSpec(proto: proto, low: UInt16(next(40) + 1))]
            }
            let schedule: Schedule? = next(8) == 0 ? Schedule(days: [0], startMinute: 420, endMinute: 1140) : nil
            rules.append(Rule(name: "r\(i)", from: sides[next(UInt64(sides.count))], to: sides[next(UInt64(sides.count))],
                              ports: ports, schedule: schedule))
        }
        var p = Policy()
        p.rules = rules
        let indexed = PolicyLinter.lint(p)
        // The reference: every earlier rule, with the same three tests in the same order.
        var reference: [LintFinding] = []
        for (i, r) in rules.enumerated() {
            for e in rules[..<i] {
                let sameEnds = r.from == e.from && r.to == e.to
                let m: String?
                if sameEnds && Set(r.ports) == Set(e.ports) && r.schedule == e.schedule {
                    m = "rule '\(r.name)': duplicates rule '\(e.name)'"
                } else if PolicyLinter.covers(e.from, r.from) && PolicyLinter.covers(e.to, r.to)
                            && PolicyLinter.portsCover(e.ports, r.ports) && (e.schedule == nil || e.schedule == r.schedule) {
                    m = "rule '\(r.name)': is shadowed by rule '\(e.name)' (which allows everything it does)"
                } else if sameEnds && PolicyLinter.portsOverlap(r.ports, e.ports) {
                    m = "rule '\(r.name)': overlaps rule '\(e.name)'"
                } else {
                    m = nil
                }
                if let m { reference.append(LintFinding(severity: .warning, line: 0, column: 0, rule: r.name, message: m)) }
            }
        }
        func pairs(_ f: [LintFinding]) -> [String] {
            f.map(\.message).filter { $0.contains("duplicates") || $0.contains("shadowed") || $0.contains("overlaps") }
                .map { $0.components(separatedBy: " on ").first! }.sorted()
        }
        XCTAssertGreaterThan(reference.count, 500)
        XCTAssertEqual(pairs(indexed), pairs(reference))
    }
}
