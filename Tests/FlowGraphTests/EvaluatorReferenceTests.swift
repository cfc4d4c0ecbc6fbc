import FlowCore
@testable import FlowGraph
@testable import FlowPolicy
import XCTest

/// The indexed evaluator against the plain reading of the policy semantics: try every rule in
/// file order; a flow is allowed by a rule whose `from` takes the client, `to` the server,
/// whose ports include the service and whose schedule is open; else blocked because a rule took
/// both endpoints and the port but its schedule was closed, or took both endpoints on other
/// ports, or an endpoint is in no workload, or there is no rule. Random policies and flows over
/// a small world, so that every selector kind, port kind, schedule and name case meets.
final class EvaluatorReferenceTests: XCTestCase {
    struct Rand {
        var s: UInt64
        mutating func next() -> UInt64 { s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407; return s >> 33 }
        mutating func pick<T>(_ a: [T]) -> T { a[Int(next() % UInt64(a.count))] }
        mutating func chance(_ n: UInt64) -> Bool { next() % n == 0 }
    }

    static func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    let inventory = Inventory(workloads: [
        Workload(name: "web", labels: [("role", "web")], match: WorkloadMatch(cidrs: [CIDR("10.0.1.0/24")!])),
        Workload(name: "db", labels: [("role", "db"), ("tier", "data")], match: WorkloadMatch(cidrs: [CIDR("10.0.2.0/24")!], ports: [5432])),
        Workload(name: "api", labels: [("role", "api")], match: WorkloadMatch(hosts: [Glob("api*.example.com", caseInsensitive: true)])),
        Workload(name: "jvm", labels: [("tier", "data")], match: WorkloadMatch(processes: [Glob("java")])),
    ])
    let addresses = ["10.0.1.1", "10.0.1.2", "10.0.2.1", "10.0.2.2", "10.0.3.1", "10.0.3.2", "198.51.100.1", "198.51.100.2",
                     "198.51.100.3", "198.51.100.4", "2001:db8::1", "2001:db8::2"].map(EvaluatorReferenceTests.ip)

    func names() -> NameResolver {
        let n = NameResolver()
        n.add(client: Self.ip("10.0.1.1"), name: "api1.example.com", address: Self.ip("198.51.100.1"), ttl: 300, first: 0, last: 0)
        n.add(client: Self.ip("10.0.1.2"), name: "cdn.example.net", address: Self.ip("198.51.100.1"), ttl: 300, first: 100, last: 100)
        n.add(client: Self.ip("10.0.2.1"), name: "api2.example.com", address: Self.ip("198.51.100.2"), ttl: 300, first: 0, last: 0)
        n.add(client: nil, name: "www.example.org", address: Self.ip("198.51.100.3"), ttl: 300, first: 0, last: 0)
        n.add(client: Self.ip("10.0.1.1"), name: "host.internal", address: Self.ip("10.0.3.1"), ttl: 300, first: 0, last: 0)
        return n
    }

    let selectors: [Selector] = [
        Selector(workload: "web"), Selector(workload: "db"), Selector(workload: "api"), Selector(workload: "jvm"),
        Selector(labels: ["role": "web"]), Selector(labels: ["tier": "data"]), Selector(fqdn: "api1.example.com"),
        Selector(fqdn: "cdn.example.net"), Selector(fqdn: "*.example.com"), Selector(fqdn: "host.internal"),
        Selector(cidrs: [CIDR("198.51.100.3/32")!]), Selector(cidrs: [CIDR("10.0.3.0/24")!]), Selector(cidrs: [CIDR("10.0.3.1")!]),
        Selector(cidrs: [CIDR("2001:db8::2")!]), Selector(), Selector(workload: "web", processes: ["curl"]),
        Selector(workload: "web", users: ["svc"]), Selector(cidrs: [CIDR("0.0.0.0/0")!]),
    ]
    let portSets: [[PortSpec]] = [["5432/tcp"], ["80/tcp", "443/tcp"], ["8000-8010/tcp"], ["tcp"], ["53/udp"], ["8/icmp"],
                                  ["gre"], ["udp"], ["443/tcp", "53/udp"]].map { $0.map { PortSpec($0)! } }

    func randomPolicy(_ r: inout Rand, rules: Int) -> Policy {
        var p = Policy(workloads: inventory.workloads)
        for i in 0..<rules {
            var rule = Rule(name: "r\(i)", from: r.pick(selectors), to: r.pick(selectors), ports: r.pick(portSets))
            if r.chance(6) { rule.schedule = Schedule(days: [0, 1, 2], startMinute: 7 * 60, endMinute: 19 * 60, tz: "UTC") }
            if r.chance(9) { rule.schedule = Schedule(days: [], startMinute: 22 * 60, endMinute: 6 * 60, tz: "UTC") }
            p.rules.append(rule)
        }
        if r.chance(8) { p.defaultAction = .allow }
        return p
    }

    func randomFlow(_ r: inout Rand) -> GraphFlow {
        let proto = r.pick([IPProtocol.tcp, .tcp, .tcp, .udp, .udp, IPProtocol(rawValue: 1), IPProtocol(rawValue: 47)])
        let port = r.pick([5432, 80, 443, 8005, 53, 22, 9999, 8] as [UInt16])
        var c = r.pick(addresses), s = r.pick(addresses)
        if c.isV6 != s.isV6 { s = c.isV6 ? addresses[10] : addresses[0]; if c == s { c = addresses[1] } }
        let procs = [nil, ProcessAttribution(comm: "java", exe: "/usr/bin/java", user: "svc"),
                     ProcessAttribution(comm: "curl", exe: "/usr/bin/curl", user: "root")]
        let proc = r.pick(procs)
        let t = 1_767_571_200 + Double(r.next() % (7 * 86400))  // a week from a Monday 00:00 UTC
        let history = r.pick(["ShADdFf", "ShADdFf", "Dd", "D"])
        let icmp = proto.rawValue == 1
        return GraphFlow(ts: t, duration: 1, origH: c, origP: icmp ? port : 40000, respH: s, respP: icmp ? 0 : port, ipProto: proto,
                         origPkts: 1, respPkts: 1, origIPBytes: 60, respIPBytes: 60, history: history, flipped: false,
                         origProcess: proc, respProcess: r.chance(5) ? procs[1] : nil)
    }

    // MARK: the reference

    struct End { var address: IPAddress; var workload: Int?; var names: [String]; var process: ProcessAttribution? }

    func end(_ a: IPAddress, served: UInt16?, client: IPAddress?, t: Double, process: ProcessAttribution?, _ n: NameResolver) -> End {
        var names: [String] = []
        if let p = n.name(for: a, client: client, at: t) { names.append(p) }
        for x in n.names(for: a, client: nil, at: t) where !names.contains(x) { names.append(x) }
        let w = inventory.workloadIndex(address: a, servedPort: served, process: process, names: { names })
        return End(address: a, workload: w, names: names, process: process)
    }

    func takes(_ s: Selector, _ e: End) -> Bool {
        if let w = s.workload { guard let i = e.workload, inventory.workloads[i].name == w else { return false } }
        for (k, v) in s.labels { guard let i = e.workload, inventory.workloads[i].label(k) == v else { return false } }
        if !s.cidrs.isEmpty && !s.cidrs.contains(where: { $0.contains(e.address) }) { return false }
        if let f = s.fqdn { guard e.names.contains(where: { Glob(f, caseInsensitive: true).matches($0) }) else { return false } }
        if !s.processes.isEmpty || !s.users.isEmpty {
            guard let p = e.process else { return false }
            if !s.processes.isEmpty && !s.processes.contains(where: { $0 == p.comm || $0 == p.exe?.split(separator: "/").last.map(String.init) }) { return false }
            if !s.users.isEmpty { guard let u = p.user, s.users.contains(u) else { return false } }
        }
        return true
    }

    func known(_ e: End, _ p: Policy) -> Bool {
        if e.workload != nil { return true }
        for r in p.rules {
            for s in [r.from, r.to] {
                if s.matchesEverything { return true }
                if s.cidrs.contains(where: { $0.contains(e.address) }) { return true }
                if let f = s.fqdn, e.names.contains(where: { Glob(f, caseInsensitive: true).matches($0) }) { return true }
            }
        }
        return false
    }

    /// nil: allowed (and `allowedBy` the rules that would allow it).
    func reference(_ p: Policy, _ c: End, _ s: End, proto: String, port: UInt16?, t: Double) -> (BlockReason?, Set<Int>) {
        var schedule = false, endpoints = false
        var allowing: Set<Int> = []
        for (i, r) in p.rules.enumerated() where takes(r.from, c) && takes(r.to, s) {
            endpoints = true
            guard r.ports.contains(where: { $0.contains(proto: proto, port: port) }) else { continue }
            if let sch = r.schedule, !sch.contains(t, utcOffset: 0) { schedule = true; continue }
            allowing.insert(i)
        }
        if !allowing.isEmpty || p.defaultAction == .allow { return (nil, allowing) }
        if schedule { return (.outsideSchedule, []) }
        if endpoints { return (.portNotAllowed, []) }
        if !known(c, p) || !known(s, p) { return (.noWorkload, []) }
        return (.noRule, [])
    }

    func referenceVerdict(_ p: Policy, _ f: GraphFlow, _ n: NameResolver) -> (BlockReason?, Set<Int>) {
        let proto = protocolName(f.ipProto)
        let c = end(f.origH, served: nil, client: nil, t: f.ts, process: f.origProcess, n)
        let s = end(f.respH, served: f.servicePort, client: f.origH, t: f.ts, process: f.respProcess, n)
        let v = reference(p, c, s, proto: proto, port: f.servicePort, t: f.ts)
        if v.0 == nil || f.directionKnown { return v }
        let alt: UInt16? = f.ipProto.rawValue == 6 || f.ipProto.rawValue == 17 ? f.origP : f.servicePort
        let c2 = end(f.respH, served: nil, client: nil, t: f.ts, process: f.respProcess, n)
        let s2 = end(f.origH, served: alt, client: f.respH, t: f.ts, process: f.origProcess, n)
        let v2 = reference(p, c2, s2, proto: proto, port: alt, t: f.ts)
        return v2.0 == nil ? v2 : v
    }

    /// Reading a capture, DNS answers arrive as flows do: an address first seen without a name
    /// must be classified again once an answer names it (the workload cache must not keep the
    /// nameless answer).
    func testANameLearnedLaterChangesTheWorkload() {
        let n = NameResolver()
        var p = Policy(workloads: inventory.workloads)
        p.rules = [Rule(name: "web-to-api", from: Selector(workload: "web"), to: Selector(workload: "api"), ports: [PortSpec("443/tcp")!])]
        let e = PolicyEvaluator(policy: p, names: n, cacheBits: 4)
        let f = GraphFlow(ts: 100, duration: 1, origH: Self.ip("10.0.1.1"), origP: 40000, respH: Self.ip("198.51.100.9"), respP: 443,
                          ipProto: .tcp, origPkts: 1, respPkts: 1, origIPBytes: 60, respIPBytes: 60, history: "ShADdFf", flipped: false)
        XCTAssertEqual(e.evaluate(f), .blocked(.noWorkload))
        n.add(client: Self.ip("10.0.1.1"), name: "api7.example.com", address: Self.ip("198.51.100.9"), ttl: 300, first: 90, last: 90)
        var g = f
        g.ts = 110
        XCTAssertEqual(e.evaluate(g), .allowed(rule: 0))
        // And an address decided without names (a CIDR workload) stays decided.
        var h = f
        h.respH = Self.ip("10.0.2.1"); h.respP = 5432
        XCTAssertEqual(e.evaluate(h), .blocked(.noRule))
    }

    func testIndexedEvaluatorAgreesWithThePlainReading() {
        var r = Rand(s: 0xF10)
        var seen: [String: Int] = [:]
        for round in 0..<60 {
            let n = names()
            let p = randomPolicy(&r, rules: 1 + Int(r.next() % 25))
            let e = PolicyEvaluator(policy: p, names: n)
            let shared = PolicyEvaluator(sharing: e)
            for _ in 0..<300 {
                let f = randomFlow(&r)
                let (reason, allowing) = referenceVerdict(p, f, n)
                let v = e.evaluate(f)
                XCTAssertEqual(shared.evaluate(f), v)
                switch v {
                case .allowed(let i):
                    XCTAssertNil(reason, "round \(round): \(f.origH)->\(f.respH) \(f.ipProto.rawValue)/\(f.servicePort ?? 0) allowed by \(i)")
                    if i >= 0 { XCTAssertTrue(allowing.contains(i) || !f.directionKnown, "round \(round): rule \(i) does not allow it") }
                    seen["allowed", default: 0] += 1
                case .blocked(let why):
                    XCTAssertEqual(why, reason, "round \(round): \(f.origH)->\(f.respH) \(f.ipProto.rawValue)/\(f.servicePort ?? 0) at \(f.ts)")
                    seen[why.rawValue, default: 0] += 1
                }
            }
        }
        // Every outcome was met (the world is small enough for that).
        XCTAssertEqual(seen.keys.sorted(), (["allowed"] + BlockReason.allCases.map(\.rawValue)).sorted(), "\(seen)")
    }
}
