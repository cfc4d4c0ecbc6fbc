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
        var t = s
        let (ok, numeric, first) = t.withUTF8 { u -> (Bool, Bool, UInt8) in
            guard let first = u.first else { return (false, true, 0) }
            var numeric = true
            for c in u {
                let letter = (c >= 97 && c <= 122) || (c >= 65 && c <= 90)
                let digit = c >= 48 && c <= 57
                if !(letter || digit || c == 46 || c == 95 || c == 45 || c == 47) { return (false, numeric, first) }
                if letter || c == 47 { numeric = false }
            }
            return (true, numeric, first)
        }
        if !ok { return false }
        if first == 45 || first == 46 { return false }
        // Anything a YAML resolver could read as a number.
        if numeric { return false }
        if s.utf8.count <= 5 {
            let lower = s.lowercased()
            if ["true", "false", "yes", "no", "on", "off", "null", "y", "n"].contains(lower) { return false }
        }
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
        let w = ByteWriter(capacity: 1 << 20)
        write(p, into: w)
        return w.withBytes { String(decoding: $0, as: UTF8.self) }
    }

    /// Appends `s` as a YAML scalar (plain when safe).
    static func put(_ s: String, _ w: ByteWriter) {
        if isPlainSafe(s) { w.text(s); return }
        // Most quoted scalars (times, IPv6 blocks) need no escape: quote them as they are.
        var t = s
        if !t.withUTF8({ u in u.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") } }) {
            w.byte(UInt8(ascii: "\"")); w.text(s); w.byte(UInt8(ascii: "\""))
            return
        }
        w.text(scalar(s))
    }

    static func putList(_ items: [String], _ w: ByteWriter) {
        w.byte(UInt8(ascii: "["))
        for (i, x) in items.enumerated() {
            if i > 0 { w.ascii(", ") }
            put(x, w)
        }
        w.byte(UInt8(ascii: "]"))
    }

    static func putSelector(_ s: Selector, _ w: ByteWriter) {
        var first = true
        func key(_ k: StaticString) {
            w.ascii(first ? "{" : ", ")
            first = false
            w.ascii(k)
        }
        if let x = s.workload { key("workload: "); put(x, w) }
        if !s.labels.isEmpty { key("labels: "); w.text(flowMap(s.labels.sorted { $0.key < $1.key }.map { (scalar($0.key), scalar($0.value)) })) }
        if let f = s.fqdn { key("fqdn: "); put(f, w) }
        if s.cidrs.count == 1 { key("cidr: "); put(s.cidrs[0].description, w) }
        if s.cidrs.count > 1 { key("cidrs: "); putList(s.cidrs.map(\.description), w) }
        if !s.processes.isEmpty { key("processes: "); putList(s.processes, w) }
        if !s.users.isEmpty { key("users: "); putList(s.users, w) }
        w.ascii(first ? "{}" : "}")
    }

    static func putPorts(_ p: [PortSpec], _ w: ByteWriter) { putList(p.map(\.description), w) }

    /// Writes the policy into `w`.
    public static func write(_ p: Policy, into w: ByteWriter) {
        w.ascii("apiVersion: "); w.text(Policy.apiVersion); w.ascii("\nkind: "); w.text(Policy.kind); w.ascii("\nmetadata:\n")
        w.ascii("  name: "); put(p.metadata.name, w); w.byte(10)
        if let g = p.metadata.generatedAt { w.ascii("  generatedAt: "); put(g, w); w.byte(10) }
        if !p.metadata.sources.isEmpty { w.ascii("  sources: "); putList(p.metadata.sources, w); w.byte(10) }
        if let x = p.metadata.window { w.text("  window: " + flowMap([("from", scalar(x.from)), ("to", scalar(x.to))]) + "\n") }
        w.ascii(p.workloads.isEmpty ? "workloads: []\n" : "workloads:\n")
        for wl in p.workloads {
            w.ascii("  - name: "); put(wl.name, w); w.byte(10)
            if !wl.labels.isEmpty { w.text("    labels: " + flowMap(wl.labels.map { (scalar($0.key), scalar($0.value)) }) + "\n") }
            w.ascii("    match:\n")
            let m = wl.match
            if !m.cidrs.isEmpty {
                w.ascii("      cidrs: ")
                putList(m.cidrs.map { $0.length == ($0.isV6 ? 128 : 32) ? $0.network.description : $0.description }, w)
                w.byte(10)
            }
            if !m.hosts.isEmpty { w.ascii("      hosts: "); putList(m.hosts.map(\.pattern), w); w.byte(10) }
            if !m.processes.isEmpty { w.ascii("      processes: "); putList(m.processes.map(\.pattern), w); w.byte(10) }
            if !m.users.isEmpty { w.ascii("      users: "); putList(m.users.map(\.pattern), w); w.byte(10) }
            if !m.cgroups.isEmpty { w.ascii("      cgroups: "); putList(m.cgroups.map(\.pattern), w); w.byte(10) }
            if !m.ports.isEmpty { w.text("      ports: [\(m.ports.map(String.init).joined(separator: ", "))]\n") }
        }
        w.ascii("defaultAction: "); w.text(p.defaultAction.rawValue); w.byte(10)
        w.ascii(p.rules.isEmpty ? "rules: []\n" : "rules:\n")
        // Rules are read in place (a copy of one retains every string and list in it).
        p.rules.withUnsafeBufferPointer { rules in
            for ri in rules.indices {
                let r = rules.baseAddress! + ri
                w.ascii("  - name: "); put(r.pointee.name, w)
                w.ascii("\n    from: "); putSelector(r.pointee.from, w)
                w.ascii("\n    to: "); putSelector(r.pointee.to, w)
                w.ascii("\n    ports: "); putPorts(r.pointee.ports, w)
                w.byte(10)
                if let s = r.pointee.schedule {
                    var pairs: [(String, String)] = []
                    if !s.days.isEmpty { pairs.append(("days", list(s.days.sorted().map { Schedule.dayNames[$0] }))) }
                    pairs.append(("hours", scalar(s.hoursText)))
                    pairs.append(("tz", scalar(s.tz)))
                    w.text("    schedule: " + flowMap(pairs) + "\n")
                }
                if let i = r.pointee.infrastructure { w.ascii("    infrastructure: "); put(i, w); w.byte(10) }
                if let n = r.pointee.note { w.ascii("    note: "); put(n, w); w.byte(10) }
                if let e = r.pointee.evidence {
                    w.ascii("    evidence: {flows: "); w.decimal(e.flows)
                    w.ascii(", bytes: "); w.decimal(e.bytes)
                    w.ascii(", clients: "); w.decimal(e.clients)
                    w.ascii(", firstSeen: "); put(e.firstSeen, w)
                    w.ascii(", lastSeen: "); put(e.lastSeen, w)
                    w.ascii("}\n")
                }
            }
        }
        if !p.review.isEmpty {
            w.ascii("review:\n")
            for r in p.review {
                w.ascii("  - {from: "); putSelector(r.from, w)
                w.ascii(", to: "); putSelector(r.to, w)
                w.ascii(", ports: "); putPorts(r.ports, w)
                w.ascii(", flows: "); w.decimal(r.flows)
                w.ascii(", reason: "); put(r.reason, w)
                w.ascii("}\n")
            }
        }
    }
}
