import FlowCore
import FlowGraph

public struct SuggestOptions: Sendable {
    /// Rules between groups of this label (role=web → role=api) instead of workloads.
    public var groupBy: String?
    /// Merge this many or more adjacent observed ports into a range (nil: never).
    public var portRanges: Int?
    /// Edges with fewer flows go to `review:` instead of the rules.
    public var minFlows: UInt64 = 0
    public var name = "suggested"
    public var sources: [String] = []
    public init() {}
}

/// Turns observed traffic (a workload graph built with `PolicySuggester.graphOptions`) into the
/// narrowest allow list that permits it: one rule per (client workload, server workload, server
/// port, protocol), nothing broader unless an option asks.
public enum PolicySuggester {
    /// Graph settings for suggestion: external peers kept per address (/32, /128), named by
    /// the DNS name their client resolved when there is one.
    public static func graphOptions(_ base: GraphOptions) -> GraphOptions {
        var o = base
        if o.groupExternal == .name || o.groupExternal == .domain {
            o.externalPrefixV4 = 32
            o.externalPrefixV6 = 128
        }
        return o
    }

    static func sanitize(_ s: String) -> String {
        var out = ""
        var dash = false
        for u in s.lowercased().unicodeScalars {
            let ok = (u >= "a" && u <= "z") || (u >= "0" && u <= "9")
            if ok { out.unicodeScalars.append(u); dash = false } else if !dash && !out.isEmpty { out += "-"; dash = true }
        }
        while out.hasSuffix("-") { out.removeLast() }
        return out.isEmpty ? "x" : out
    }

    /// A rule endpoint for a graph node; generated workloads (internal DNS names, processes)
    /// are added to `extra`.
    static func selector(_ n: GraphNode, groupBy: String?, extra: inout [String: Workload]) -> (Selector, String) {
        if let key = groupBy, let v = n.label(key) {
            return (Selector(labels: [key: v]), "\(key)-\(v)")
        }
        switch n.kind {
        case .inventory:
            return (Selector(workload: n.name), n.name)
        case .process:
            let program = n.name.split(separator: "@").first.map(String.init) ?? n.name
            let name = sanitize("proc-" + n.name)
            var m = WorkloadMatch(processes: [Glob(program)])
            if let u = n.label("user") { m.users = [Glob(u)] }
            extra[name] = Workload(name: name, labels: n.labels, match: m)
            return (Selector(workload: name), name)
        case .dns:
            if n.label("scope") == "internal" {
                let name = n.name
                extra[name] = Workload(name: name, labels: [("dns", "true")], match: WorkloadMatch(hosts: [Glob(name, caseInsensitive: true)]))
                return (Selector(workload: name), name)
            }
            return (Selector(fqdn: n.name), n.name)
        case .address:
            let a = IPAddress(String(n.id.dropFirst(3)))!
            return (Selector(cidrs: [CIDR(network: a, length: a.isV6 ? 128 : 32)]), n.name)
        case .external:
            if n.id == "external" {
                return (Selector(cidrs: [CIDR("0.0.0.0/0")!, CIDR("::/0")!]), "internet")
            }
            let c = CIDR(String(n.id.dropFirst("external:".count)))!
            let shown = c.hostBits == 0 ? c.network.description : c.description
            return (Selector(cidrs: [c]), shown)
        }
    }

    /// Runs of `min` or more adjacent ports become ranges; the rest stay single ports.
    static func compress(_ ports: [UInt16], proto: String, min: Int?) -> [[PortSpec]] {
        let sorted = Array(Set(ports)).sorted()
        guard let min, min >= 2 else { return sorted.map { [PortSpec(proto: proto, low: $0, high: $0)] } }
        var out: [[PortSpec]] = []
        var i = 0
        while i < sorted.count {
            var j = i
            while j + 1 < sorted.count && sorted[j + 1] == sorted[j] + 1 { j += 1 }
            if j - i + 1 >= min {
                out.append([PortSpec(proto: proto, low: sorted[i], high: sorted[j])])
            } else {
                for k in i...j { out.append([PortSpec(proto: proto, low: sorted[k], high: sorted[k])]) }
            }
            i = j + 1
        }
        return out
    }

    public static func suggest(graph g: WorkloadGraph, inventory: Inventory, options: SuggestOptions = SuggestOptions()) -> Policy {
        var extra: [String: Workload] = [:]
        var sel: [String: (Selector, String)] = [:]
        for n in g.nodes { sel[n.id] = selector(n, groupBy: options.groupBy, extra: &extra) }

        struct Key: Hashable {
            var from: Selector
            var to: Selector
            var proto: String
        }
        struct Acc {
            var fromName: String
            var toName: String
            var ports: [UInt16: Evidence] = [:]
            var portless: Evidence?
            var known = true
        }
        func merge(_ a: Evidence?, _ e: GraphEdge) -> Evidence {
            let first = Fmt.iso8601(e.firstSeen), last = Fmt.iso8601(e.lastSeen)
            guard let a else { return Evidence(flows: e.flows, bytes: e.bytes, clients: e.clients, firstSeen: first, lastSeen: last) }
            return Evidence(flows: a.flows + e.flows, bytes: a.bytes + e.bytes, clients: a.clients + e.clients,
                            firstSeen: min(a.firstSeen, first), lastSeen: max(a.lastSeen, last))
        }
        var groups: [Key: Acc] = [:]
        var review: [ReviewItem] = []
        var notes: [Key: String] = [:]
        var first = Double.infinity, last = -Double.infinity
        for e in g.edges {
            guard let (fs, fname) = sel[e.from], let (ts, tname) = sel[e.to] else { continue }
            first = min(first, e.firstSeen); last = max(last, e.lastSeen)
            var from = fs
            from.processes = e.clientProcesses
            from.users = e.clientUsers
            if e.directionKnown {
                let k = Key(from: from, to: ts, proto: e.proto)
                var acc = groups[k] ?? Acc(fromName: fname, toName: tname)
                if let p = e.port { acc.ports[p] = merge(acc.ports[p], e) } else { acc.portless = merge(acc.portless, e) }
                groups[k] = acc
            } else if e.seenAsOriginated.isEmpty {
                review.append(ReviewItem(from: from, to: ts, ports: [PortSpec(proto: e.proto)], flows: e.flows,
                                         reason: "direction unknown, on more than 32 port pairs"))
            } else {
                // Direction unknown: allow each flow as it was seen (originator → responder
                // port), flagged for review rather than guessed.
                for (fromIsOrig, port) in e.seenAsOriginated {
                    var a = fromIsOrig ? from : ts, b = fromIsOrig ? ts : fs
                    if !fromIsOrig { a.processes = e.serverProcesses; a.users = e.serverUsers; b.processes = []; b.users = [] }
                    let k = Key(from: a, to: b, proto: e.proto)
                    var acc = groups[k] ?? Acc(fromName: fromIsOrig ? fname : tname, toName: fromIsOrig ? tname : fname)
                    let portful = e.proto == "tcp" || e.proto == "udp"
                    if portful { acc.ports[port] = merge(acc.ports[port], e) } else { acc.portless = merge(acc.portless, e) }
                    acc.known = false
                    groups[k] = acc
                    notes[k] = "direction unknown: allowed as seen (originator to responder port); review"
                }
            }
        }
        var rules: [Rule] = []
        for (k, acc) in groups {
            let base = "\(sanitize(acc.fromName))-to-\(sanitize(acc.toName))-\(sanitize(k.proto))"
            for specs in compress(Array(acc.ports.keys), proto: k.proto, min: options.portRanges) {
                let spec = specs[0]
                var ev: Evidence?
                for p in spec.low!...spec.high! { if let e = acc.ports[p] { ev = ev.map { merged($0, e) } ?? e } }
                let portText = spec.low == spec.high ? "\(spec.low!)" : "\(spec.low!)-\(spec.high!)"
                let infrastructure: String? = spec.contains(proto: k.proto, port: 53) && (k.proto == "udp" || k.proto == "tcp") ? "dns"
                    : (k.proto == "udp" && spec.contains(proto: "udp", port: 123) ? "ntp" : nil)
                if let ev, ev.flows < options.minFlows {
                    review.append(ReviewItem(from: k.from, to: k.to, ports: specs, flows: ev.flows,
                                             reason: "fewer than \(options.minFlows) flows"))
                    continue
                }
                rules.append(Rule(name: "\(base)-\(portText)", from: k.from, to: k.to, ports: specs,
                                  infrastructure: infrastructure, note: notes[k], evidence: ev))
            }
            if let ev = acc.portless {
                if ev.flows < options.minFlows {
                    review.append(ReviewItem(from: k.from, to: k.to, ports: [PortSpec(proto: k.proto)], flows: ev.flows,
                                             reason: "fewer than \(options.minFlows) flows"))
                    continue
                }
                rules.append(Rule(name: base, from: k.from, to: k.to, ports: [PortSpec(proto: k.proto)], note: notes[k], evidence: ev))
            }
        }
        rules.sort { a, b in a.name != b.name ? a.name < b.name : PolicySuggester.order(a, b) }
        // Names are content-derived; two rules can only collide through sanitising.
        var used: [String: Int] = [:]
        for i in rules.indices {
            let n = rules[i].name
            if let c = used[n] { used[n] = c + 1; rules[i].name = "\(n)-\(c + 1)" } else { used[n] = 1 }
        }
        review.sort { a, b in
            let x = (a.from.summary, a.to.summary, a.ports.map(\.description).joined()), y = (b.from.summary, b.to.summary, b.ports.map(\.description).joined())
            return x < y
        }
        var p = Policy()
        p.metadata.name = options.name
        p.metadata.sources = options.sources
        if first.isFinite && last.isFinite {
            p.metadata.window = (Fmt.iso8601(first), Fmt.iso8601(last))
            p.metadata.generatedAt = Fmt.iso8601(last)
        }
        p.workloads = inventory.workloads + extra.keys.sorted().map { extra[$0]! }
        p.defaultAction = .deny
        p.rules = rules
        p.review = review
        return p
    }

    static func merged(_ a: Evidence, _ b: Evidence) -> Evidence {
        Evidence(flows: a.flows + b.flows, bytes: a.bytes + b.bytes, clients: a.clients + b.clients,
                 firstSeen: min(a.firstSeen, b.firstSeen), lastSeen: max(a.lastSeen, b.lastSeen))
    }

    static func order(_ a: Rule, _ b: Rule) -> Bool {
        (a.from.summary, a.to.summary, a.ports.map(\.description).joined(separator: ",")) <
            (b.from.summary, b.to.summary, b.ports.map(\.description).joined(separator: ","))
    }
}
