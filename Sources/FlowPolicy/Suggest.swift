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

    /// A rule-name part: lower-case letters and digits, every other run of characters one dash.
    static func sanitize(_ s: String) -> String {
        // ASCII (nearly every name): bytes in, bytes out.
        sanitizeASCII(s) ?? sanitizeGeneral(s)
    }

    static func sanitizeGeneral(_ s: String) -> String {
        var out = ""
        var dash = false
        for u in s.lowercased().unicodeScalars {
            let ok = (u >= "a" && u <= "z") || (u >= "0" && u <= "9")
            if ok { out.unicodeScalars.append(u); dash = false } else if !dash && !out.isEmpty { out += "-"; dash = true }
        }
        while out.hasSuffix("-") { out.removeLast() }
        return out.isEmpty ? "x" : out
    }

    /// `sanitize` for ASCII text; nil for anything else (lower-casing other scripts can yield
    /// ASCII letters, so those take the general path).
    static func sanitizeASCII(_ s: String) -> String? {
        var s = s
        return s.withUTF8 { u -> String? in
            guard u.allSatisfy({ $0 < 0x80 }) else { return nil }
            if u.isEmpty { return "x" }
            return String(unsafeUninitializedCapacity: u.count) { out in
                var n = 0
                var dash = false
                for b in u {
                    let c = b >= 65 && b <= 90 ? b + 32 : b
                    if (c >= 97 && c <= 122) || (c >= 48 && c <= 57) {
                        out[n] = c; n += 1; dash = false
                    } else if !dash && n > 0 {
                        out[n] = 45; n += 1; dash = true
                    }
                }
                while n > 0 && out[n - 1] == 45 { n -= 1 }
                if n == 0 { out[0] = 120; n = 1 }  // "x"
                return n
            }
        }
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
        selectorIndex.reserveCapacity(g.nodes.count)
        selectors.reserveCapacity(g.nodes.count)
        selectorNames.reserveCapacity(g.nodes.count)
        func intern(_ s: Selector, _ name: String) -> Int32 {
            if let i = selectorIndex[s] { return i }
            let i = Int32(selectors.count)
            selectors.append(s); selectorNames.append(name); selectorIndex[s] = i
            return i
        }
        var nodeSelector: [String: Int32] = [:]
        nodeSelector.reserveCapacity(g.nodes.count)
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

        // Observations are gathered flat: one entry per (group, port) sighting, where a group
        // is (client selector, server selector, protocol); sorting the entries brings each
        // group's ports together. (A table per group would be an allocation per rule.)
        struct Key: Hashable {
            var from: Int32
            var to: Int32
            var proto: Int32
        }
        struct Entry {
            var group: Int32
            /// The port, or -1 for the group's port-less traffic.
            var port: Int32
            var tally: Tally
        }
        var protos: [String] = []
        func protoID(_ p: String) -> Int32 {
            if let i = protos.firstIndex(of: p) { return Int32(i) }
            protos.append(p)
            return Int32(protos.count - 1)
        }
        var groupIndex: [Key: Int32] = [:]
        groupIndex.reserveCapacity(g.edges.count)
        var groups: [Key] = []
        var noted: [Bool] = []
        func group(_ k: Key) -> Int32 {
            if let i = groupIndex[k] { return i }
            let i = Int32(groups.count)
            groups.append(k); noted.append(false); groupIndex[k] = i
            return i
        }
        var entries: [Entry] = []
        entries.reserveCapacity(g.edges.count)
        var review: [ReviewItem] = []
        var first = Double.infinity, last = -Double.infinity
        // Edges are read in place (a copy of one retains its strings and lists).
        g.edges.withUnsafeBufferPointer { edges in
            for ei in edges.indices {
                let e = edges.baseAddress! + ei
                guard let fs = nodeSelector[e.pointee.from], let ts = nodeSelector[e.pointee.to] else { continue }
                first = min(first, e.pointee.firstSeen); last = max(last, e.pointee.lastSeen)
                let from = narrowed(fs, e.pointee.clientProcesses, e.pointee.clientUsers)
                var t = Tally()
                t.add(e.pointee)
                if e.pointee.directionKnown {
                    let gi = group(Key(from: from, to: ts, proto: protoID(e.pointee.proto)))
                    entries.append(Entry(group: gi, port: e.pointee.port.map { Int32($0) } ?? -1, tally: t))
                } else if e.pointee.seenAsOriginated.isEmpty {
                    review.append(ReviewItem(from: selectors[Int(from)], to: selectors[Int(ts)], ports: [PortSpec(proto: e.pointee.proto)],
                                             flows: e.pointee.flows, reason: "direction unknown, on more than 32 port pairs"))
                } else {
                    // Direction unknown: allow each flow as it was seen (originator → responder
                    // port), flagged for review rather than guessed.
                    let portful = e.pointee.proto == "tcp" || e.pointee.proto == "udp"
                    let proto = protoID(e.pointee.proto)
                    for (fromIsOrig, port) in e.pointee.seenAsOriginated {
                        let k = fromIsOrig ? Key(from: from, to: ts, proto: proto)
                            : Key(from: narrowed(ts, e.pointee.serverProcesses, e.pointee.serverUsers), to: fs, proto: proto)
                        let gi = group(k)
                        noted[Int(gi)] = true
                        entries.append(Entry(group: gi, port: portful ? Int32(port) : -1, tally: t))
                    }
                }
            }
        }
        entries.sort { a, b in a.group != b.group ? a.group < b.group : a.port < b.port }

        // Rules are first planned (name, group, ports, totals), sorted by name, and only then
        // built, in order: a rule is large, and moving or copying built rules costs more than
        // building them.
        struct Planned {
            var name: String
            var group: Int32
            /// Port range; low -1 for port-less.
            var low: Int32
            var high: Int32
            var tally: Tally
        }
        let unknownNote = "direction unknown: allowed as seen (originator to responder port); review"
        let clean = selectorNames.map(sanitize)
        let cleanProtos = protos.map(sanitize)
        var planned: [Planned] = []
        planned.reserveCapacity(entries.count)
        var ports: [UInt16] = []
        var tallies: [Tally] = []
        var i = 0
        while i < entries.count {
            let gi = entries[i].group
            let k = groups[Int(gi)]
            let proto = protos[Int(k.proto)]
            var base = clean[Int(k.from)]
            base += "-to-"
            base += clean[Int(k.to)]
            base += "-"
            base += cleanProtos[Int(k.proto)]
            // This group's distinct ports (in order) with their totals, and its port-less total.
            ports.removeAll(keepingCapacity: true)
            tallies.removeAll(keepingCapacity: true)
            var portless: Tally?
            while i < entries.count && entries[i].group == gi {
                let en = entries[i]
                if en.port < 0 {
                    portless = portless ?? Tally()
                    portless!.add(en.tally)
                } else if let lastPort = ports.last, Int32(lastPort) == en.port {
                    tallies[tallies.count - 1].add(en.tally)
                } else {
                    ports.append(UInt16(en.port)); tallies.append(en.tally)
                }
                i += 1
            }
            var j = 0
            while j < ports.count {
                // A run of adjacent ports long enough becomes one range.
                var z = j
                if let min = options.portRanges, min >= 2 {
                    while z + 1 < ports.count && ports[z + 1] == ports[z] + 1 { z += 1 }
                    if z - j + 1 < min { z = j }
                }
                var t = Tally()
                for x in j...z { t.add(tallies[x]) }
                let low = ports[j], high = ports[z]
                if t.flows < options.minFlows {
                    review.append(ReviewItem(from: selectors[Int(k.from)], to: selectors[Int(k.to)],
                                             ports: [PortSpec(proto: proto, low: low, high: high)], flows: t.flows,
                                             reason: "fewer than \(options.minFlows) flows"))
                } else {
                    var name = base
                    name += "-"
                    name += String(low)
                    if high != low { name += "-"; name += String(high) }
                    planned.append(Planned(name: name, group: gi, low: Int32(low), high: Int32(high), tally: t))
                }
                j = z + 1
            }
            if let t = portless {
                if t.flows < options.minFlows {
                    review.append(ReviewItem(from: selectors[Int(k.from)], to: selectors[Int(k.to)],
                                             ports: [PortSpec(proto: proto)], flows: t.flows,
                                             reason: "fewer than \(options.minFlows) flows"))
                } else {
                    planned.append(Planned(name: base, group: gi, low: -1, high: -1, tally: t))
                }
            }
        }
        func spec(_ p: Planned) -> PortSpec {
            let proto = protos[Int(groups[Int(p.group)].proto)]
            return p.low < 0 ? PortSpec(proto: proto) : PortSpec(proto: proto, low: UInt16(p.low), high: UInt16(p.high))
        }
        // Sorted by name, ties in content order (as `order` compares built rules).
        func contentLess(_ a: Int, _ b: Int) -> Bool {
            let x = planned[a], y = planned[b]
            let kx = groups[Int(x.group)], ky = groups[Int(y.group)]
            return (selectors[Int(kx.from)].summary, selectors[Int(kx.to)].summary, spec(x).description)
                < (selectors[Int(ky.from)].summary, selectors[Int(ky.to)].summary, spec(y).description)
        }
        var order = Array(planned.indices)
        if planned.allSatisfy({ $0.name.utf8.allSatisfy { $0 < 0x80 } }) {
            // ASCII names order as their bytes do: the first 32 bytes, as four big-endian
            // words, decide most comparisons without touching the strings.
            var keys = [UInt64](repeating: 0, count: planned.count * 4)
            for (n, p) in planned.enumerated() { PolicySuggester.prefixKey(p.name, into: &keys, at: n * 4) }
            keys.withUnsafeBufferPointer { kb in
                order.sort { a, b in
                    let ka = kb.baseAddress! + a * 4, kz = kb.baseAddress! + b * 4
                    if ka[0] != kz[0] { return ka[0] < kz[0] }
                    if ka[1] != kz[1] { return ka[1] < kz[1] }
                    if ka[2] != kz[2] { return ka[2] < kz[2] }
                    if ka[3] != kz[3] { return ka[3] < kz[3] }
                    return planned[a].name != planned[b].name ? planned[a].name < planned[b].name : contentLess(a, b)
                }
            }
        } else {
            order.sort { a, b in planned[a].name != planned[b].name ? planned[a].name < planned[b].name : contentLess(a, b) }
        }
        var rules: [Rule] = []
        rules.reserveCapacity(planned.count)
        for n in order {
            let p = planned[n]
            let k = groups[Int(p.group)]
            let proto = protos[Int(k.proto)]
            let sp = spec(p)
            let infrastructure: String? = p.low >= 0 && sp.contains(proto: proto, port: 53) && (proto == "udp" || proto == "tcp") ? "dns"
                : (p.low >= 0 && proto == "udp" && sp.contains(proto: "udp", port: 123) ? "ntp" : nil)
            rules.append(Rule(name: p.name, from: selectors[Int(k.from)], to: selectors[Int(k.to)], ports: [sp],
                              infrastructure: infrastructure, note: noted[Int(p.group)] ? unknownNote : nil,
                              evidence: p.tally.evidence))
        }
        // Names are content-derived; two rules can only collide through sanitising (then they
        // are neighbours).
        var r = 1, run = 1
        while r < rules.count {
            if rules[r].name == rules[r - 1].name || (run > 1 && rules[r].name == rules[r - run].name) {
                run += 1
                rules[r].name += "-\(run)"
            } else {
                run = 1
            }
            r += 1
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

    /// The first 32 bytes of an ASCII text as four big-endian words (zero-padded) at
    /// `keys[o..<o+4]`: ordering the words orders the texts as `<` does, up to ties.
    static func prefixKey(_ s: String, into keys: inout [UInt64], at o: Int) {
        var i = 0
        var s = s
        s.withUTF8 { u in
            for b in u.prefix(32) {
                keys[o + i / 8] |= UInt64(b) << (56 - 8 * (i % 8))
                i += 1
            }
        }
    }
}
