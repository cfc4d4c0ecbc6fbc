import FlowCore
import FlowGraph

/// Writes a policy as YAML, deterministically (fixed key order, sorted maps, plain scalars only
/// where YAML cannot misread them).
public enum PolicyWriter {
    /// A scalar as YAML: plain when safe, else double-quoted with escapes.
    static func scalar(_ s: String) -> String {
        if isPlainSafe(s) { return s }
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\x" + (h.count < 2 ? "0" : "") + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    static func isPlainSafe(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first else { return false }
        for u in s.unicodeScalars {
            let ok = (u >= "a" && u <= "z") || (u >= "A" && u <= "Z") || (u >= "0" && u <= "9")
                || u == "." || u == "_" || u == "-" || u == "/"
            if !ok { return false }
        }
        if first == "-" || first == "." { return false }
        let lower = s.lowercased()
        if ["true", "false", "yes", "no", "on", "off", "null", "y", "n"].contains(lower) { return false }
        // Anything a YAML resolver could read as a number.
        if s.unicodeScalars.allSatisfy({ ($0 >= "0" && $0 <= "9") || $0 == "." || $0 == "_" || $0 == "-" }) { return false }
        return true
    }

    static func list(_ items: [String]) -> String { "[" + items.map(scalar).joined(separator: ", ") + "]" }

    static func flowMap(_ pairs: [(String, String)]) -> String {
        "{" + pairs.map { "\($0.0): \($0.1)" }.joined(separator: ", ") + "}"
    }

    static func selector(_ s: Selector) -> String {
        var pairs: [(String, String)] = []
        if let w = s.workload { pairs.append(("workload", scalar(w))) }
        if !s.labels.isEmpty {
            pairs.append(("labels", flowMap(s.labels.sorted { $0.key < $1.key }.map { (scalar($0.key), scalar($0.value)) })))
        }
        if let f = s.fqdn { pairs.append(("fqdn", scalar(f))) }
        if s.cidrs.count == 1 { pairs.append(("cidr", scalar(s.cidrs[0].description))) }
        if s.cidrs.count > 1 { pairs.append(("cidrs", list(s.cidrs.map(\.description)))) }
        if !s.processes.isEmpty { pairs.append(("processes", list(s.processes))) }
        if !s.users.isEmpty { pairs.append(("users", list(s.users))) }
        return flowMap(pairs)
    }

    static func ports(_ p: [PortSpec]) -> String { "[" + p.map { scalar($0.description) }.joined(separator: ", ") + "]" }

    public static func write(_ p: Policy) -> String {
        var out = "apiVersion: \(Policy.apiVersion)\nkind: \(Policy.kind)\nmetadata:\n"
        out += "  name: \(scalar(p.metadata.name))\n"
        if let g = p.metadata.generatedAt { out += "  generatedAt: \(scalar(g))\n" }
        if !p.metadata.sources.isEmpty { out += "  sources: \(list(p.metadata.sources))\n" }
        if let w = p.metadata.window { out += "  window: \(flowMap([("from", scalar(w.from)), ("to", scalar(w.to))]))\n" }
        out += p.workloads.isEmpty ? "workloads: []\n" : "workloads:\n"
        for w in p.workloads {
            out += "  - name: \(scalar(w.name))\n"
            if !w.labels.isEmpty { out += "    labels: \(flowMap(w.labels.map { (scalar($0.key), scalar($0.value)) }))\n" }
            out += "    match:\n"
            let m = w.match
            if !m.cidrs.isEmpty { out += "      cidrs: \(list(m.cidrs.map { $0.length == ($0.isV6 ? 128 : 32) ? $0.network.description : $0.description }))\n" }
            if !m.hosts.isEmpty { out += "      hosts: \(list(m.hosts.map(\.pattern)))\n" }
            if !m.processes.isEmpty { out += "      processes: \(list(m.processes.map(\.pattern)))\n" }
            if !m.users.isEmpty { out += "      users: \(list(m.users.map(\.pattern)))\n" }
            if !m.cgroups.isEmpty { out += "      cgroups: \(list(m.cgroups.map(\.pattern)))\n" }
            if !m.ports.isEmpty { out += "      ports: [\(m.ports.map(String.init).joined(separator: ", "))]\n" }
        }
        out += "defaultAction: \(p.defaultAction.rawValue)\n"
        out += p.rules.isEmpty ? "rules: []\n" : "rules:\n"
        for r in p.rules {
            out += "  - name: \(scalar(r.name))\n"
            out += "    from: \(selector(r.from))\n"
            out += "    to: \(selector(r.to))\n"
            out += "    ports: \(ports(r.ports))\n"
            if let s = r.schedule {
                var pairs: [(String, String)] = []
                if !s.days.isEmpty { pairs.append(("days", list(s.days.sorted().map { Schedule.dayNames[$0] }))) }
                pairs.append(("hours", scalar(s.hoursText)))
                pairs.append(("tz", scalar(s.tz)))
                out += "    schedule: \(flowMap(pairs))\n"
            }
            if let i = r.infrastructure { out += "    infrastructure: \(scalar(i))\n" }
            if let n = r.note { out += "    note: \(scalar(n))\n" }
            if let e = r.evidence {
                out += "    evidence: \(flowMap([("flows", String(e.flows)), ("bytes", String(e.bytes)), ("clients", String(e.clients)), ("firstSeen", scalar(e.firstSeen)), ("lastSeen", scalar(e.lastSeen))]))\n"
            }
        }
        if !p.review.isEmpty {
            out += "review:\n"
            for r in p.review {
                out += "  - {from: \(selector(r.from)), to: \(selector(r.to)), ports: \(ports(r.ports)), flows: \(r.flows), reason: \(scalar(r.reason))}\n"
            }
        }
        return out
    }
}
