import FlowCore

/// Output formats of a workload graph.
public enum GraphFormat: String, Sendable, CaseIterable {
    case dot, json, mermaid
}

/// Compact counts for labels: 950, 1.2k, 3.4M.
func compactCount(_ n: UInt64) -> String {
    if n < 1000 { return String(n) }
    let units: [(Double, String)] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
    let x = Double(n)
    for (scale, suffix) in units where x >= scale {
        let v = x / scale
        if v >= 100 { return "\(Int(v.rounded(.down)))\(suffix)" }
        let tenths = Int((v * 10).rounded(.down))
        return tenths % 10 == 0 ? "\(tenths / 10)\(suffix)" : "\(tenths / 10).\(tenths % 10)\(suffix)"
    }
    return String(n)
}

extension GraphEdge {
    /// "tcp/5432", "icmp/8", "gre", or "tcp ?" when direction (hence the service) is unknown.
    public var serviceLabel: String {
        guard directionKnown else { return "\(proto) (direction unknown)" }
        if let p = port { return "\(proto)/\(p)" }
        return proto
    }

    /// "tcp/5432 · 1.2k flows".
    public var label: String { "\(serviceLabel) · \(compactCount(flows)) flow\(flows == 1 ? "" : "s")" }
}

/// Graphviz DOT: clusters by a label, node shape by kind, edge width by log(bytes), a legend.
public enum DOTRenderer {
    static func quote(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default:
                if c.value < 0x20 { out += " " } else { out.unicodeScalars.append(c) }
            }
        }
        return out + "\""
    }

    static func shape(_ k: WorkloadKind) -> String {
        switch k {
        case .inventory: return "box"
        case .process: return "component"
        case .dns: return "ellipse"
        case .address: return "hexagon"
        case .external: return "octagon"
        }
    }

    static func fill(_ k: WorkloadKind) -> String {
        switch k {
        case .inventory: return "#dbe9f6"
        case .process: return "#e4f3da"
        case .dns: return "#fdf1d6"
        case .address: return "#eeeeee"
        case .external: return "#f9dede"
        }
    }

    static func kindText(_ k: WorkloadKind) -> String {
        switch k {
        case .inventory: return "inventory workload"
        case .process: return "process (agent)"
        case .dns: return "DNS name"
        case .address: return "address"
        case .external: return "external"
        }
    }

    /// Formats x with two decimals, deterministically.
    static func fixed2(_ x: Double) -> String {
        let c = Int((x * 100).rounded())
        return "\(c / 100).\(c % 100 < 10 ? "0" : "")\(c % 100)"
    }

    /// Edge widths from 1 to 6, by log(bytes) between the smallest and the largest edge.
    static func width(_ bytes: UInt64, min minBytes: UInt64, max maxBytes: UInt64) -> String {
        guard maxBytes > minBytes, bytes > 0, minBytes > 0 else { return "2.00" }
        let lo = naturalLog(Double(minBytes)), hi = naturalLog(Double(maxBytes))
        let w = 1 + 5 * (naturalLog(Double(bytes)) - lo) / (hi - lo)
        return fixed2(min(6, max(1, w)))
    }

    /// Edges with flows a policy would block (`blockedFlows` > 0) are drawn red and dashed.
    public static func render(_ g: WorkloadGraph, clusterBy: String? = nil, title: String = "flowmap") -> String {
        let blocked = Set(g.edges.indices.filter { g.edges[$0].blockedFlows > 0 })
        var out = "digraph flowmap {\n"
        out += "  graph [rankdir=LR, fontname=\"Helvetica\", fontsize=11, label=\(quote(title)), labelloc=t, nodesep=0.4, ranksep=0.9];\n"
        out += "  node [fontname=\"Helvetica\", fontsize=10, style=filled, color=\"#555555\"];\n"
        out += "  edge [fontname=\"Helvetica\", fontsize=9, color=\"#4a6a8a\", fontcolor=\"#333333\"];\n"
        var ids: [String: String] = [:]
        for (i, n) in g.nodes.enumerated() { ids[n.id] = "n\(i)" }
        func nodeLine(_ n: GraphNode, indent: String) -> String {
            let label = n.name + "\n\(n.endpoints)\(n.endpointsExact ? "" : "~") endpoint\(n.endpoints == 1 ? "" : "s")"
            return "\(indent)\(ids[n.id]!) [label=\(quote(label)), shape=\(shape(n.kind)), fillcolor=\(quote(fill(n.kind))), tooltip=\(quote(n.id))];\n"
        }
        if let key = clusterBy {
            var groups: [String: [GraphNode]] = [:]
            var loose: [GraphNode] = []
            for n in g.nodes {
                if let v = n.label(key) { groups[v, default: []].append(n) } else { loose.append(n) }
            }
            for (ci, v) in groups.keys.sorted().enumerated() {
                out += "  subgraph cluster_\(ci) {\n"
                out += "    label=\(quote("\(key)=\(v)")); style=\"rounded,dashed\"; color=\"#888888\";\n"
                for n in groups[v]! { out += nodeLine(n, indent: "    ") }
                out += "  }\n"
            }
            for n in loose { out += nodeLine(n, indent: "  ") }
        } else {
            for n in g.nodes { out += nodeLine(n, indent: "  ") }
        }
        let maxBytes = g.edges.map(\.bytes).max() ?? 0
        let minBytes = g.edges.map(\.bytes).filter { $0 > 0 }.min() ?? 0
        for (i, e) in g.edges.enumerated() {
            guard let a = ids[e.from], let b = ids[e.to] else { continue }
            var attrs = "label=\(quote(e.label)), penwidth=\(width(e.bytes, min: minBytes, max: maxBytes))"
            attrs += ", tooltip=\(quote("\(e.label) · \(compactCount(e.packets)) packets · \(compactCount(e.bytes)) bytes · \(e.clients)\(e.clientsExact ? "" : "~") client\(e.clients == 1 ? "" : "s")"))"
            if !e.directionKnown { attrs += ", dir=none, style=dotted, color=\"#999999\"" }
            if blocked.contains(i) { attrs += ", style=dashed, color=\"#d62728\", fontcolor=\"#d62728\"" }
            out += "  \(a) -> \(b) [\(attrs)];\n"
        }
        // Legend: one sample node per kind present, and the edge conventions.
        let kinds = Set(g.nodes.map(\.kind)).sorted()
        out += "  subgraph cluster_legend {\n"
        out += "    label=\"legend\"; style=\"rounded\"; color=\"#bbbbbb\"; fontsize=9;\n"
        for k in kinds {
            out += "    legend_\(k.rawValue) [label=\(quote(kindText(k))), shape=\(shape(k)), fillcolor=\(quote(fill(k))), fontsize=8, height=0.3];\n"
        }
        out += "    legend_edges [shape=plain, style=\"\", fontsize=8, label=\"solid: client -> server, label proto/port · flows\\lwidth: log(bytes)\\ldotted: direction unknown\\l"
        out += blocked.isEmpty ? "\"];\n" : "red dashed: blocked by policy\\l\"];\n"
        out += "  }\n"
        out += "}\n"
        return out
    }
}

/// JSON: {"nodes": [...], "edges": [...]} with node ids as edge endpoints; times RFC 3339 UTC.
public enum GraphJSON {
    /// A JSON string literal (the flow renderers' quoting).
    static func quote(_ s: String) -> String { JSONLines.quote(s) }


    /// Appends `s` as a JSON string (escaping only what must be escaped).
    static func quote(_ s: String, into w: ByteWriter) {
        var plain = true
        for b in s.utf8 where b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") { plain = false; break }
        w.byte(UInt8(ascii: "\""))
        if plain { w.text(s) } else { w.text(String(quote(s).dropFirst().dropLast())) }
        w.byte(UInt8(ascii: "\""))
    }

    static func strings(_ a: [String], into w: ByteWriter) {
        w.byte(UInt8(ascii: "["))
        for (i, s) in a.enumerated() {
            if i > 0 { w.byte(UInt8(ascii: ",")) }
            quote(s, into: w)
        }
        w.byte(UInt8(ascii: "]"))
    }

    public static func render(_ g: WorkloadGraph, policy: Bool = false) -> String {
        var out: [UInt8] = []
        render(g, policy: policy) { w in w.withBytes { out.append(contentsOf: $0) } }
        return String(decoding: out, as: UTF8.self)
    }

    /// Renders in chunks of about 64 KiB handed to `chunk` (which may write them out), so that
    /// a large graph is never held twice in memory as text.
    /// With `policy`, each edge also says whether (and how many of) its flows the policy blocks.
    public static func render(_ g: WorkloadGraph, policy: Bool = false, chunk: (ByteWriter) -> Void) {
        let w = ByteWriter(capacity: 1 << 17)
        func spill() {
            if w.count >= 1 << 16 { chunk(w); w.clear() }
        }
        w.ascii("{\n  \"nodes\": [")
        for (i, n) in g.nodes.enumerated() {
            w.ascii(i == 0 ? "\n    {\"id\":" : ",\n    {\"id\":")
            quote(n.id, into: w)
            w.ascii(",\"name\":"); quote(n.name, into: w)
            w.ascii(",\"kind\":"); quote(n.kind.rawValue, into: w)
            w.ascii(",\"labels\":{")
            for (j, l) in n.labels.enumerated() {
                if j > 0 { w.byte(UInt8(ascii: ",")) }
                quote(l.key, into: w); w.byte(UInt8(ascii: ":")); quote(l.value, into: w)
            }
            w.ascii("},\"endpoints\":"); w.decimal(n.endpoints)
            w.ascii(n.endpointsExact ? ",\"endpointsExact\":true}" : ",\"endpointsExact\":false}")
            spill()
        }
        w.ascii(g.nodes.isEmpty ? "],\n" : "\n  ],\n")
        w.ascii("  \"edges\": [")
        for (i, e) in g.edges.enumerated() {
            w.ascii(i == 0 ? "\n    {\"from\":" : ",\n    {\"from\":")
            quote(e.from, into: w)
            w.ascii(",\"to\":"); quote(e.to, into: w)
            w.ascii(",\"port\":")
            if let p = e.port { w.decimal(Int(p)) } else { w.ascii("null") }
            w.ascii(",\"proto\":"); quote(e.proto, into: w)
            w.ascii(e.directionKnown ? ",\"direction\":\"client-server\"" : ",\"direction\":\"unknown\"")
            w.ascii(",\"flows\":"); w.decimal(e.flows)
            w.ascii(",\"packets\":"); w.decimal(e.packets)
            w.ascii(",\"bytes\":"); w.decimal(e.bytes)
            w.ascii(",\"packetsToServer\":"); w.decimal(e.packetsToServer)
            w.ascii(",\"packetsToClient\":"); w.decimal(e.packetsToClient)
            w.ascii(",\"bytesToServer\":"); w.decimal(e.bytesToServer)
            w.ascii(",\"bytesToClient\":"); w.decimal(e.bytesToClient)
            w.ascii(",\"firstSeen\":"); quote(Fmt.iso8601(e.firstSeen), into: w)
            w.ascii(",\"lastSeen\":"); quote(Fmt.iso8601(e.lastSeen), into: w)
            w.ascii(",\"clients\":"); w.decimal(e.clients)
            w.ascii(e.clientsExact ? ",\"clientsExact\":true" : ",\"clientsExact\":false")
            w.ascii(",\"clientProcesses\":"); strings(e.clientProcesses, into: w)
            w.ascii(",\"clientUsers\":"); strings(e.clientUsers, into: w)
            w.ascii(",\"serverProcesses\":"); strings(e.serverProcesses, into: w)
            w.ascii(",\"serverUsers\":"); strings(e.serverUsers, into: w)
            if policy {
                w.ascii(e.blockedFlows > 0 ? ",\"blocked\":true,\"blockedFlows\":" : ",\"blocked\":false,\"blockedFlows\":")
                w.decimal(e.blockedFlows)
            }
            w.byte(UInt8(ascii: "}"))
            spill()
        }
        w.ascii(g.edges.isEmpty ? "],\n" : "\n  ],\n")
        w.ascii("  \"flows\": "); w.decimal(g.flows)
        w.ascii("\n}\n")
        chunk(w)
    }
}

/// Mermaid flowchart (renders in GitHub and GitLab markdown).
public enum MermaidRenderer {
    static func text(_ s: String) -> String {
        // Mermaid labels in quotes: escape quotes as entities.
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "#quot;"
            case "\n": out += " "
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }

    static func shaped(_ id: String, _ label: String, _ k: WorkloadKind) -> String {
        let t = text(label)
        switch k {
        case .inventory: return "\(id)[\(t)]"
        case .process: return "\(id)[[\(t)]]"
        case .dns: return "\(id)([\(t)])"
        case .address: return "\(id){{\(t)}}"
        case .external: return "\(id)((\(t)))"
        }
    }

    public static func render(_ g: WorkloadGraph, clusterBy: String? = nil) -> String {
        let blocked = Set(g.edges.indices.filter { g.edges[$0].blockedFlows > 0 })
        var out = "flowchart LR\n"
        var ids: [String: String] = [:]
        for (i, n) in g.nodes.enumerated() { ids[n.id] = "n\(i)" }
        if let key = clusterBy {
            var groups: [String: [GraphNode]] = [:]
            var loose: [GraphNode] = []
            for n in g.nodes {
                if let v = n.label(key) { groups[v, default: []].append(n) } else { loose.append(n) }
            }
            for (ci, v) in groups.keys.sorted().enumerated() {
                out += "  subgraph c\(ci)[\(text("\(key)=\(v)"))]\n"
                for n in groups[v]! { out += "    " + shaped(ids[n.id]!, n.name, n.kind) + "\n" }
                out += "  end\n"
            }
            for n in loose { out += "  " + shaped(ids[n.id]!, n.name, n.kind) + "\n" }
        } else {
            for n in g.nodes { out += "  " + shaped(ids[n.id]!, n.name, n.kind) + "\n" }
        }
        var linkStyles: [String] = []
        for (i, e) in g.edges.enumerated() {
            guard let a = ids[e.from], let b = ids[e.to] else { continue }
            let arrow = e.directionKnown ? "-->" : "-.-"
            out += "  \(a) \(arrow)|\(text(e.label))| \(b)\n"
            if blocked.contains(i) { linkStyles.append("  linkStyle \(i) stroke:#d62728,stroke-dasharray:5 5") }
        }
        for l in linkStyles { out += l + "\n" }
        return out
    }
}
