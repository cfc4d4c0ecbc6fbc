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

    /// Observed totals for one rule, as numbers until the rule is written.
    struct Tally {
        var flows: UInt64 = 0
        var bytes: UInt64 = 0
        var clients = 0
        var first = Double.infinity
        var last = -Double.infinity

        mutating func add(_ e: GraphEdge) {
            flows += e.flows; bytes += e.bytes; clients += e.clients
            first = min(first, e.firstSeen); last = max(last, e.lastSeen)
        }
        mutating func add(_ t: Tally) {
            flows += t.flows; bytes += t.bytes; clients += t.clients
            first = min(first, t.first); last = max(last, t.last)
        }
        var evidence: Evidence {
            Evidence(flows: flows, bytes: bytes, clients: clients, firstSeen: Fmt.iso8601(first), lastSeen: Fmt.iso8601(last))
        }
    }

    public static func suggest(graph g: WorkloadGraph, inventory: Inventory, options: SuggestOptions = SuggestOptions()) -> Policy {
        var extra: [String: Workload] = [:]
        // Selectors are interned: rules are grouped on small integer keys.
        var selectors: [Selector] = []
        var selectorNames: [String] = []
        var selectorIndex: [Selector: Int32] = [:]
        func intern(_ s: Selector, _ name: String) -> Int32 {
            if let i = selectorIndex[s] { return i }
            let i = Int32(selectors.count)
            selectors.append(s); selectorNames.append(name); selectorIndex[s] = i
            return i
        }
        var nodeSelector: [String: Int32] = [:]
        for n in g.nodes {
            let (s, name) = selector(n, groupBy: options.groupBy, extra: &extra)
            nodeSelector[n.id] = intern(s, name)
        }
        /// A selector narrowed by process and user constraints (agent data).
        func narrowed(_ base: Int32, _ processes: [String], _ users: [String]) -> Int32 {
            if processes.isEmpty && users.isEmpty { return base }
            var s = selectors[Int(base)]
            s.processes = processes
            s.users = users
            return intern(s, selectorNames[Int(base)])
        }

        struct Key: Hashable {
            var from: Int32
            var to: Int32
            var proto: String
        }
        struct Acc {
            var ports: [UInt16: Tally] = [:]
            var portless: Tally?
        }
        var groups: [Key: Acc] = [:]
        var review: [ReviewItem] = []
        var notes: Set<Key> = []
        var first = Double.infinity, last = -Double.infinity
        for e in g.edges {
            guard let fs = nodeSelector[e.from], let ts = nodeSelector[e.to] else { continue }
            first = min(first, e.firstSeen); last = max(last, e.lastSeen)
            let from = narrowed(fs, e.clientProcesses, e.clientUsers)
            if e.directionKnown {
                // In place: copying an accumulator would copy its port table.
                PolicySuggester.update(&groups[Key(from: from, to: ts, proto: e.proto), default: Acc()]) { acc in
                    if let p = e.port { acc.ports[p, default: Tally()].add(e) } else { acc.portless = acc.portless ?? Tally(); acc.portless!.add(e) }
                }
            } else if e.seenAsOriginated.isEmpty {
                review.append(ReviewItem(from: selectors[Int(from)], to: selectors[Int(ts)], ports: [PortSpec(proto: e.proto)],
                                         flows: e.flows, reason: "direction unknown, on more than 32 port pairs"))
            } else {
                // Direction unknown: allow each flow as it was seen (originator → responder
                // port), flagged for review rather than guessed.
                let portful = e.proto == "tcp" || e.proto == "udp"
                for (fromIsOrig, port) in e.seenAsOriginated {
                    let k = fromIsOrig ? Key(from: from, to: ts, proto: e.proto)
                        : Key(from: narrowed(ts, e.serverProcesses, e.serverUsers), to: fs, proto: e.proto)
                    PolicySuggester.update(&groups[k, default: Acc()]) { acc in
                        if portful { acc.ports[port, default: Tally()].add(e) } else { acc.portless = acc.portless ?? Tally(); acc.portless!.add(e) }
                    }
                    notes.insert(k)
                }
            }
        }
        let unknownNote = "direction unknown: allowed as seen (originator to responder port); review"
        let clean = selectorNames.map(sanitize)
        var rules: [Rule] = []
        rules.reserveCapacity(groups.count)
        for (k, acc) in groups {
            let fromSel = selectors[Int(k.from)], toSel = selectors[Int(k.to)]
            let base = clean[Int(k.from)] + "-to-" + clean[Int(k.to)] + "-" + sanitize(k.proto)
            let note = notes.contains(k) ? unknownNote : nil
            for specs in compress(Array(acc.ports.keys), proto: k.proto, min: options.portRanges) {
                let spec = specs[0]
                var t = Tally()
                for p in spec.low!...spec.high! { if let x = acc.ports[p] { t.add(x) } }
                if t.flows < options.minFlows {
                    review.append(ReviewItem(from: fromSel, to: toSel, ports: specs, flows: t.flows,
                                             reason: "fewer than \(options.minFlows) flows"))
                    continue
                }
                let portText = spec.low == spec.high ? "\(spec.low!)" : "\(spec.low!)-\(spec.high!)"
                let infrastructure: String? = spec.contains(proto: k.proto, port: 53) && (k.proto == "udp" || k.proto == "tcp") ? "dns"
                    : (k.proto == "udp" && spec.contains(proto: "udp", port: 123) ? "ntp" : nil)
                rules.append(Rule(name: "\(base)-\(portText)", from: fromSel, to: toSel, ports: specs,
                                  infrastructure: infrastructure, note: note, evidence: t.evidence))
            }
            if let t = acc.portless {
                if t.flows < options.minFlows {
                    review.append(ReviewItem(from: fromSel, to: toSel, ports: [PortSpec(proto: k.proto)], flows: t.flows,
                                             reason: "fewer than \(options.minFlows) flows"))
                    continue
                }
                rules.append(Rule(name: base, from: fromSel, to: toSel, ports: [PortSpec(proto: k.proto)], note: note, evidence: t.evidence))
            }
        }
        // Sorted by name (an index sort: rules are large to move), ties in content order.
        let names = rules.map(\.name)
        var order = Array(rules.indices)
        if names.allSatisfy({ $0.utf8.allSatisfy { $0 < 0x80 } }) {
            // ASCII names order as their bytes do: the first 16 bytes, as two big-endian
            // words, decide most comparisons without touching the strings.
            let keys = names.map(PolicySuggester.prefixKey)
            order.sort { a, b in
                if keys[a] != keys[b] { return keys[a] < keys[b] }
                return names[a] != names[b] ? names[a] < names[b] : PolicySuggester.order(rules, a, b)
            }
        } else {
            order.sort { a, b in names[a] != names[b] ? names[a] < names[b] : PolicySuggester.order(rules, a, b) }
        }
        rules = order.map { rules[$0] }
        // Names are content-derived; two rules can only collide through sanitising (then they
        // are neighbours).
        var i = 1, run = 1
        while i < rules.count {
            if rules[i].name == rules[i - 1].name || (run > 1 && rules[i].name == rules[i - run].name) {
                run += 1
                rules[i].name += "-\(run)"
            } else {
                run = 1
            }
            i += 1
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

    @inline(__always)
    static func update<T>(_ value: inout T, _ body: (inout T) -> Void) { body(&value) }

    static func order(_ rules: [Rule], _ a: Int, _ b: Int) -> Bool {
        (rules[a].from.summary, rules[a].to.summary, rules[a].ports.map(\.description).joined(separator: ",")) <
            (rules[b].from.summary, rules[b].to.summary, rules[b].ports.map(\.description).joined(separator: ","))
    }

    /// The first 16 bytes of an ASCII text as two big-endian words (zero-padded): ordering
    /// the pairs orders the texts as `<` does, up to ties.
    static func prefixKey(_ s: String) -> (UInt64, UInt64) {
        var hi: UInt64 = 0, lo: UInt64 = 0
        var i = 0
        for b in s.utf8.prefix(16) {
            if i < 8 { hi |= UInt64(b) << (56 - 8 * i) } else { lo |= UInt64(b) << (56 - 8 * (i - 8)) }
            i += 1
        }
        return (hi, lo)
    }
}
