import FlowConfig
import FlowCore
@testable import FlowGraph
import XCTest

private func ip(_ s: String) -> IPAddress { IPAddress(s)! }

/// A TCP flow with a full handshake (direction known) unless `history` says otherwise.
private func tcpFlow(_ c: String, _ cp: UInt16, _ s: String, _ sp: UInt16, at t: Double = 1000, history: String = "ShADdFf",
                     flipped: Bool = false, proc: (ProcessAttribution?, ProcessAttribution?) = (nil, nil)) -> GraphFlow {
    GraphFlow(ts: t, duration: 1, origH: ip(c), origP: cp, respH: ip(s), respP: sp, ipProto: .tcp, origPkts: 5,
              respPkts: 4, origIPBytes: 500, respIPBytes: 2000, history: history, flipped: flipped,
              origProcess: proc.0, respProcess: proc.1, hostID: "host-1")
}

final class CIDRAndGlobTests: XCTestCase {
    func testCIDRv4v6AndBareAddresses() {
        let net = CIDR("10.0.1.0/24")!
        XCTAssertTrue(net.contains(ip("10.0.1.200")))
        XCTAssertFalse(net.contains(ip("10.0.2.1")))
        XCTAssertFalse(net.contains(ip("::ffff:0a00:0101") == ip("10.0.1.1") ? ip("fd00::1") : ip("fd00::1")))
        let host = CIDR("10.0.9.7")!
        XCTAssertEqual(host.length, 32)
        XCTAssertTrue(host.contains(ip("10.0.9.7")))
        XCTAssertFalse(host.contains(ip("10.0.9.8")))
        let v6 = CIDR("fd00:2::/32")!
        XCTAssertTrue(v6.contains(ip("fd00:2:0:1::21")))
        XCTAssertFalse(v6.contains(ip("fd00:3::1")))
        XCTAssertFalse(v6.contains(ip("10.0.0.1")), "an IPv4 address is never inside an IPv6 prefix")
        XCTAssertEqual(CIDR("fd00:2::21")!.length, 128)
        XCTAssertEqual(CIDR("10.0.1.77/24")!.description, "10.0.1.0/24", "host bits cleared")
        XCTAssertNil(CIDR("10.0.1.77/24", strict: true))
        XCTAssertEqual(CIDR("0.0.0.0/0")!.hostBits, 32)
        XCTAssertTrue(CIDR("0.0.0.0/0")!.contains(ip("8.8.8.8")))
        XCTAssertTrue(CIDR("::/0")!.contains(ip("2001:db8::1")))
        for bad in ["10.0.0.0/33", "fd00::/129", "10.0.0/8", "x", "10.0.0.0/-1", "10.0.0.0/+8", ""] {
            XCTAssertNil(CIDR(bad), bad)
        }
    }

    func testPublicAddresses() {
        for a in ["8.8.8.8", "203.0.113.5", "2001:db8::1"] { XCTAssertTrue(ip(a).isPublic, a) }
        for a in ["10.1.2.3", "192.168.1.1", "172.16.0.1", "100.64.0.1", "127.0.0.1", "169.254.1.1", "224.0.0.251",
                  "fd00::1", "fe80::1", "::1", "ff02::1"] {
            XCTAssertFalse(ip(a).isPublic, a)
        }
    }

    func testGlobs() {
        XCTAssertTrue(Glob("api-*.internal").matches("api-3.internal"))
        XCTAssertFalse(Glob("api-*.internal").matches("web-3.internal"))
        XCTAssertTrue(Glob("*docker-*").matches("/system.slice/docker-4f2a.scope"))
        XCTAssertTrue(Glob("web-?").matches("web-1"))
        XCTAssertFalse(Glob("web-?").matches("web-10"))
        XCTAssertTrue(Glob("web-[0-9]").matches("web-7"))
        XCTAssertFalse(Glob("web-[!0-9]").matches("web-7"))
        XCTAssertTrue(Glob("API.*", caseInsensitive: true).matches("api.example.com"))
        XCTAssertFalse(Glob("API.*").matches("api.example.com"))
        XCTAssertTrue(Glob("a*b*c").matches("aXXbYYc"))
        XCTAssertFalse(Glob("a*b*c").matches("aXXbYY"))
        XCTAssertTrue(Glob("*").matchesEverything)
        XCTAssertTrue(Glob("[x").matches("[x"), "an unclosed set is literal")
    }

    func testPublicSuffixList() {
        let psl = PublicSuffixList(text: """
            // comment
            com
            uk
            co.uk
            *.ck
            !www.ck
            """)
        XCTAssertEqual(psl.registrableDomain("api.stripe.com"), "stripe.com")
        XCTAssertEqual(psl.registrableDomain("a.b.example.co.uk"), "example.co.uk")
        XCTAssertEqual(psl.registrableDomain("foo.bar.ck"), "foo.bar.ck", "*.ck makes bar.ck a suffix")
        XCTAssertEqual(psl.registrableDomain("a.www.ck"), "www.ck", "the exception rule")
        XCTAssertEqual(psl.registrableDomain("co.uk"), "co.uk")
        XCTAssertEqual(psl.registrableDomain("x.y.internal"), "y.internal", "no rule: the last label is the suffix")
        XCTAssertEqual(PublicSuffixList().registrableDomain("API.Stripe.com."), "stripe.com")
    }

    func testDistinctCounterExactThenEstimated() {
        var c = DistinctCounter()
        for i in 0..<200 { c.insert(mix64(UInt64(i), 7)); c.insert(mix64(UInt64(i), 7)) }
        XCTAssertEqual(c.count, 200)
        XCTAssertTrue(c.isExact)
        for i in 0..<100_000 { c.insert(mix64(UInt64(i), 7)) }
        XCTAssertFalse(c.isExact)
        XCTAssertEqual(Double(c.count), 100_000, accuracy: 5_000)
        XCTAssertEqual(naturalLog(1), 0, accuracy: 1e-12)
        XCTAssertEqual(naturalLog(1000), 6.907755278982137, accuracy: 1e-9)
    }
}

final class NameResolverTests: XCTestCase {
    func testClientsOwnAnswerFirstThenAnyValidAnswer() {
        let r = NameResolver(grace: 0)
        r.add(client: ip("10.0.0.1"), name: "api.example.com", address: ip("203.0.113.9"), ttl: 60, first: 100, last: 100)
        r.add(client: ip("10.0.0.2"), name: "cdn.example.net", address: ip("203.0.113.9"), ttl: 60, first: 110, last: 110)
        XCTAssertEqual(r.name(for: ip("203.0.113.9"), client: ip("10.0.0.1"), at: 150), "api.example.com")
        XCTAssertEqual(r.name(for: ip("203.0.113.9"), client: ip("10.0.0.2"), at: 150), "cdn.example.net")
        XCTAssertEqual(r.name(for: ip("203.0.113.9"), client: ip("10.0.0.3"), at: 150), "cdn.example.net",
                       "another client: the most recently begun valid answer")
        XCTAssertEqual(r.names(for: ip("203.0.113.9"), client: nil, at: 150), ["cdn.example.net", "api.example.com"])
        XCTAssertNil(r.name(for: ip("203.0.113.9"), client: ip("10.0.0.3"), at: 99), "not valid before the answer")
        XCTAssertNil(r.name(for: ip("203.0.113.9"), client: ip("10.0.0.3"), at: 500), "not valid after TTL (and grace)")
    }

    func testAddressReuseNeverCarriesTheOldName() {
        // 10.0.7.7 is old-db until noon, then new-cache: flows get the name valid at their time.
        let r = NameResolver(grace: 0)
        let a = ip("10.0.7.7"), c = ip("10.0.0.1")
        r.add(client: c, name: "old-db.internal", address: a, ttl: 300, first: 1000, last: 5000)
        r.add(client: c, name: "new-cache.internal", address: a, ttl: 300, first: 9000, last: 9500)
        XCTAssertEqual(r.name(for: a, client: c, at: 4000), "old-db.internal")
        XCTAssertEqual(r.name(for: a, client: c, at: 9100), "new-cache.internal")
        XCTAssertEqual(r.name(for: a, client: ip("10.0.0.9"), at: 9100), "new-cache.internal")
        XCTAssertNil(r.name(for: a, client: ip("10.0.0.9"), at: 7000), "between the two, no valid answer")

        let b = GraphBuilder(names: r)
        b.add(tcpFlow("10.0.0.1", 40000, "10.0.7.7", 5432, at: 4000))
        b.add(tcpFlow("10.0.0.1", 40001, "10.0.7.7", 6379, at: 9100))
        let g = b.build()
        XCTAssertEqual(g.edges.map { "\($0.to) \($0.port!)" }, ["dns:new-cache.internal 6379", "dns:old-db.internal 5432"])
    }
}

final class IdentityTests: XCTestCase {
    func inventory(_ yaml: String) throws -> Inventory { try InventoryParser.parse(yaml, file: "inv.yaml") }

    func testOverlappingMatchesFirstInFileOrderWins() throws {
        let inv = try inventory("""
            workloads:
              - name: special
                match: {cidrs: [10.0.1.5]}
              - name: web
                labels: {role: web}
                match: {cidrs: [10.0.1.0/24]}
              - name: everything-private
                match: {cidrs: [10.0.0.0/8]}
            """)
        let b = GraphBuilder(inventory: inv)
        b.add(tcpFlow("10.0.1.5", 40000, "10.0.1.6", 80))
        b.add(tcpFlow("10.0.1.7", 40001, "10.9.9.9", 443))
        let g = b.build()
        XCTAssertEqual(g.edges.map { "\($0.from)>\($0.to)" }, ["workload:special>workload:web", "workload:web>workload:everything-private"])
        XCTAssertEqual(g.node("workload:web")?.labels.map { "\($0.key)=\($0.value)" }, ["role=web"])
        XCTAssertEqual(g.node("workload:web")?.endpoints, 2)
    }

    func testIPv6CIDRsHostGlobsAndPorts() throws {
        let inv = try inventory("""
            workloads:
              - name: api
                match: {cidrs: ["fd00:2::/64"]}
              - name: web
                match: {hosts: ["WEB-*.internal"]}
              - name: pg
                match: {cidrs: [10.0.3.0/24], ports: [5432]}
              - name: any-dns-server
                match: {ports: [53]}
            """)
        let names = NameResolver()
        names.add(client: ip("10.0.0.10"), name: "web-1.internal", address: ip("10.0.1.11"), ttl: 300, first: 0, last: 0)
        let b = GraphBuilder(inventory: inv, names: names)
        b.add(tcpFlow("10.0.1.11", 40000, "fd00:2::21", 8443))       // v4 web (by name) → v6 api: mixed is fine
        b.add(tcpFlow("fd00:2::21", 40001, "10.0.3.31", 5432))
        b.add(tcpFlow("10.0.3.31", 40002, "10.0.3.40", 6379))        // pg as a client is not pg
        var dnsFlow = tcpFlow("10.0.1.11", 40003, "10.0.0.2", 53)
        dnsFlow.ipProto = .udp
        b.add(dnsFlow)
        let got = b.build().edges.map { "\($0.from) > \($0.to) \($0.proto)/\($0.port!)" }
        XCTAssertEqual(got, [
            "ip:10.0.3.31 > ip:10.0.3.40 tcp/6379",
            "workload:api > workload:pg tcp/5432",
            "workload:web > workload:any-dns-server udp/53",
            "workload:web > workload:api tcp/8443",
        ])
    }

    func testIdentityOrderProcessThenDNSThenAddressThenExternal() {
        let names = NameResolver()
        names.add(client: ip("10.0.0.1"), name: "api.stripe.com", address: ip("198.51.100.7"), ttl: 60, first: 0, last: 0)
        names.add(client: ip("10.0.0.1"), name: "billing.stripe.com", address: ip("198.51.100.8"), ttl: 60, first: 0, last: 0)
        let java = ProcessAttribution(pid: 42, comm: "java", exe: "/usr/lib/jvm/bin/java", user: "svc-pay", unit: "payments.service")
        let b = GraphBuilder(names: names)
        b.add(tcpFlow("10.0.0.1", 40000, "198.51.100.7", 443, proc: (java, nil)))
        b.add(tcpFlow("10.0.0.1", 40001, "198.51.100.8", 443, proc: (java, nil)))
        b.add(tcpFlow("10.0.0.1", 40002, "198.51.100.9", 443))
        b.add(tcpFlow("10.0.0.1", 40003, "10.0.0.2", 22))
        let g = b.build()
        XCTAssertEqual(g.nodes.map(\.id), [
            "dns:api.stripe.com", "dns:billing.stripe.com", "external:198.51.100.0/24", "ip:10.0.0.1", "ip:10.0.0.2",
            "process:host-1/java/svc-pay/payments.service",
        ])
        let p = g.node("process:host-1/java/svc-pay/payments.service")!
        XCTAssertEqual(p.kind, .process)
        XCTAssertEqual(p.name, "java@host-1 (payments.service)")
        XCTAssertEqual(g.edges.first { $0.to == "dns:api.stripe.com" }?.clientUsers, ["svc-pay"])
        XCTAssertEqual(g.edges.first { $0.to == "dns:api.stripe.com" }?.clientProcesses, ["java"])

        var o = GraphOptions()
        o.groupExternal = .domain
        let d = GraphBuilder(names: names, options: o)
        d.add(tcpFlow("10.0.0.1", 40000, "198.51.100.7", 443))
        d.add(tcpFlow("10.0.0.1", 40001, "198.51.100.8", 443))
        XCTAssertEqual(d.build().edges.map { "\($0.to) \($0.flows)" }, ["dns:stripe.com 2"])

        o.groupExternal = .all
        let a = GraphBuilder(names: names, options: o)
        a.add(tcpFlow("10.0.0.1", 40000, "198.51.100.7", 443))
        a.add(tcpFlow("10.0.0.1", 40001, "8.8.8.8", 443))
        XCTAssertEqual(a.build().edges.map { "\($0.to) \($0.flows)" }, ["external 2"])
    }

    func testUnknownDirectionIsAMarkedEdgeWithoutPorts() {
        let b = GraphBuilder()
        b.add(tcpFlow("10.0.5.6", 41000, "10.0.5.5", 40000, history: "Dd"))       // midstream
        b.add(tcpFlow("10.0.5.5", 40001, "10.0.5.6", 41001, history: "^dD", flipped: true))
        b.add(tcpFlow("10.0.5.5", 40002, "10.0.5.6", 22))                          // handshake seen
        var udp = tcpFlow("10.0.5.5", 53, "10.0.5.6", 40000, flipped: true)
        udp.ipProto = .udp
        b.add(udp)
        let g = b.build()
        XCTAssertEqual(g.edges.count, 3)
        XCTAssertEqual(g.edges[0].directionKnown, true)
        XCTAssertEqual(g.edges[0].port, 22)
        let unknown = g.edges.filter { !$0.directionKnown }
        XCTAssertEqual(unknown.map { "\($0.from)-\($0.to) \($0.proto) \($0.flows)" },
                       ["ip:10.0.5.5-ip:10.0.5.6 tcp 2", "ip:10.0.5.5-ip:10.0.5.6 udp 1"])
        XCTAssertTrue(unknown.allSatisfy { $0.port == nil }, "no port is guessed")
        let json = GraphJSON.render(g)
        for ephemeral in ["40000", "40001", "40002", "41000", "41001"] {
            XCTAssertFalse(json.contains("\"port\":\(ephemeral)"), ephemeral)
        }
    }

    func testFiltersAndRenderers() {
        let b = GraphBuilder()
        for i in 0..<3 { b.add(tcpFlow("10.0.0.1", UInt16(40000 + i), "10.0.0.2", 5432)) }
        b.add(tcpFlow("10.0.0.1", 40010, "10.0.0.3", 22), blocked: true)
        let g = b.build()
        XCTAssertEqual(g.filtered(minFlows: 2).edges.map(\.to), ["ip:10.0.0.2"])
        XCTAssertEqual(g.filtered(minFlows: 2).nodes.map(\.id), ["ip:10.0.0.1", "ip:10.0.0.2"])
        XCTAssertEqual(g.filtered(exclude: [Glob("10.0.0.2")]).edges.map(\.to), ["ip:10.0.0.3"])
        XCTAssertEqual(g.edges[0].label, "tcp/5432 · 3 flows")
        XCTAssertEqual(compactCount(1234), "1.2k")
        XCTAssertEqual(compactCount(999), "999")
        XCTAssertEqual(compactCount(3_400_000), "3.4M")
        XCTAssertEqual(compactCount(150_000), "150k")
        XCTAssertEqual(g.edges.map(\.blockedFlows), [0, 1])
        let dot = DOTRenderer.render(g)
        XCTAssertTrue(dot.contains("label=\"tcp/5432 · 3 flows\""))
        XCTAssertTrue(dot.contains("style=dashed, color=\"#d62728\""))
        let mermaid = MermaidRenderer.render(g)
        XCTAssertTrue(mermaid.hasPrefix("flowchart LR\n"))
        XCTAssertTrue(mermaid.contains("n0 -->|\"tcp/5432 · 3 flows\"| n1"))
    }
}

final class InventoryParserTests: XCTestCase {
    func parseError(_ yaml: String) -> ConfigError? {
        do { _ = try InventoryParser.parse(yaml, file: "inv.yaml"); return nil } catch { return error }
    }

    func testFullSchema() throws {
        let inv = try InventoryParser.parse("""
            workloads:
              - name: payments-api
                labels: {env: prod, role: api, team: payments, tier: 2}
                match:
                  cidrs: [10.0.1.0/24, 10.0.9.7, "fd00:1::/64"]
                  hosts: ["api-*.internal"]
                  processes: [java]
                  users: [svc-pay]
                  cgroups: ["*docker-*", "system.slice/payments.service"]
                  ports: [8443]
            """, file: "inv.yaml")
        let w = try XCTUnwrap(inv.workloads.first)
        XCTAssertEqual(w.name, "payments-api")
        XCTAssertEqual(w.labels.map(\.key), ["env", "role", "team", "tier"])
        XCTAssertEqual(w.label("tier"), "2")
        XCTAssertEqual(w.match.cidrs.map(\.description), ["10.0.1.0/24", "10.0.9.7/32", "fd00:1::/64"])
        XCTAssertEqual(w.match.ports, [8443])
        XCTAssertEqual(w.mark?.line, 2)
        XCTAssertEqual(try InventoryParser.parse("", file: "x").workloads.count, 0)
    }

    func testErrorsNameLineAndColumn() {
        var e = parseError("workloads:\n  - name: a\n    match: {cidrs: [10.0.0.0/8]\n")
        XCTAssertEqual(e?.file, "inv.yaml")
        XCTAssertTrue(e?.reason.hasPrefix("invalid YAML") ?? false, "\(String(describing: e))")
        e = parseError("workloads:\n  - name: a\n    match:\n      cidrs: [10.0.0.0/8, 10.0.0.300]\n")
        XCTAssertEqual(e.map { "\($0.line):\($0.column)" }, "4:27")
        XCTAssertEqual(e?.reason, "'10.0.0.300' is not an address or CIDR (like 10.0.1.0/24 or fd00::/8)")
        e = parseError("workloads:\n  - name: a\n    match:\n      cidr: [10.0.0.0/8]\n")
        XCTAssertEqual(e.map { "\($0.line):\($0.column)" }, "4:7")
        XCTAssertTrue(e?.reason.contains("unknown key 'cidr'") ?? false)
        e = parseError("workloads:\n  - name: a\n    match: {cidrs: [10.0.0.1]}\n  - name: a\n    match: {cidrs: [10.0.0.2]}\n")
        XCTAssertEqual(e?.line, 4)
        XCTAssertEqual(e?.reason, "workload 'a' is already defined at line 2")
        e = parseError("workloads:\n  - name: a\n    match: {}\n")
        XCTAssertEqual(e?.line, 3)
        e = parseError("workloads:\n  - name: a\n    match: {ports: [70000]}\n")
        XCTAssertEqual(e?.reason, "'70000' is not a port (1-65535)")
        e = parseError("workloads:\n  - name: has space\n    match: {ports: [80]}\n")
        XCTAssertEqual(e.map { "\($0.line):\($0.column)" }, "2:11")
        e = parseError("hosts: [a]\n")
        XCTAssertTrue(e?.reason.contains("unknown key 'hosts'") ?? false)
        e = parseError("- just a list\n")
        XCTAssertEqual(e?.reason, "the inventory must be a mapping")
        e = parseError("workloads:\n  - name: a\n    match: {cidrs: [10.0.0.1]}\n    match: {cidrs: [10.0.0.2]}\n")
        XCTAssertNotNil(e, "duplicate keys are an error")
        XCTAssertTrue(e?.description.hasPrefix("inv.yaml:") ?? false)
    }

    func testPolicyFileIsAlsoAnInventory() throws {
        let inv = try InventoryParser.parse("""
            apiVersion: flowmap/v1
            kind: Policy
            workloads:
              - name: db
                match: {cidrs: [10.0.3.0/24]}
            defaultAction: deny
            rules: []
            """, file: "policy.yaml")
        XCTAssertEqual(inv.workloads.map(\.name), ["db"])
    }
}
