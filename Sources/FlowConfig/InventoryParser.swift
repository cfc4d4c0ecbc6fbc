import FlowCore
import FlowGraph

/// Reads the `workloads:` section of an inventory or policy file (docs/inventory.md).
public enum InventoryParser {
    /// Keys a policy file has beside `workloads`: an inventory may be a policy file.
    static let policyKeys = ["apiVersion", "kind", "metadata", "defaultAction", "rules", "review"]

    /// Parses an inventory file's text. An empty file is an empty inventory.
    public static func parse(_ text: String, file: String) throws(ConfigError) -> Inventory {
        guard let root = try YAMLValue.parse(text, file: file), !root.isNull else { return Inventory() }
        let top = try root.mapping("the inventory")
        try YAMLValue.checkKeys(top, allowed: ["workloads"] + policyKeys, in: "the inventory")
        guard let w = top.first(where: { $0.key == "workloads" }) else {
            throw root.error("the inventory has no 'workloads:' list")
        }
        return Inventory(workloads: try workloads(w.value))
    }

    /// Parses a `workloads:` list.
    public static func workloads(_ list: YAMLValue) throws(ConfigError) -> [Workload] {
        if list.isNull { return [] }
        var out: [Workload] = []
        var names: [String: SourceMark] = [:]
        for item in try list.sequence("workloads") {
            let entries = try item.mapping("a workload")
            try YAMLValue.checkKeys(entries, allowed: ["name", "labels", "match"], in: "a workload")
            guard let nameEntry = entries.first(where: { $0.key == "name" }) else { throw item.error("a workload needs a name") }
            let name = try nameEntry.value.nonEmptyString("name")
            guard name.unicodeScalars.allSatisfy({ isNameScalar($0) }) else {
                throw nameEntry.value.error("workload name '\(name)': use letters, digits, '.', '_' and '-' only")
            }
            if let first = names[name] {
                throw nameEntry.value.error("workload '\(name)' is already defined at line \(first.line)")
            }
            names[name] = nameEntry.value.mark
            var labels: [(key: String, value: String)] = []
            if let l = entries.first(where: { $0.key == "labels" }), !l.value.isNull {
                for e in try l.value.mapping("labels") {
                    guard !e.key.isEmpty else { throw e.keyValue.error("a label key must not be empty") }
                    labels.append((e.key, try e.value.string("label '\(e.key)'")))
                }
            }
            guard let m = entries.first(where: { $0.key == "match" }) else {
                throw item.error("workload '\(name)' needs a match: (cidrs, hosts, processes, users, cgroups, ports)")
            }
            let match = try parseMatch(m.value, workload: name)
            out.append(Workload(name: name, labels: labels, match: match, mark: item.mark))
        }
        return out
    }

    static func isNameScalar(_ c: Unicode.Scalar) -> Bool {
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "-" || c == "_" || c == "."
    }

    static func parseMatch(_ v: YAMLValue, workload: String) throws(ConfigError) -> WorkloadMatch {
        let entries = try v.mapping("match")
        try YAMLValue.checkKeys(entries, allowed: ["cidrs", "hosts", "processes", "users", "cgroups", "ports"], in: "match")
        var m = WorkloadMatch()
        for e in entries {
            if e.value.isNull { continue }
            let items = try e.value.stringList(e.key)
            switch e.key {
            case "cidrs":
                for (s, node) in items {
                    guard let c = CIDR(s) else { throw node.error("'\(s)' is not an address or CIDR (like 10.0.1.0/24 or fd00::/8)") }
                    m.cidrs.append(c)
                }
            case "hosts":
                m.hosts += try items.map { (s, node) throws(ConfigError) in
                    if s.isEmpty { throw node.error("an empty host pattern") }
                    return Glob(s, caseInsensitive: true)
                }
            case "processes":
                m.processes += items.map { Glob($0.0) }
            case "users":
                m.users += items.map { Glob($0.0) }
            case "cgroups":
                m.cgroups += items.map { Glob($0.0) }
            case "ports":
                for (s, node) in items {
                    guard let p = Int(s), p >= 1, p <= 65535 else { throw node.error("'\(s)' is not a port (1-65535)") }
                    m.ports.append(UInt16(p))
                }
            default:
                break
            }
        }
        if m.isEmpty { throw v.error("workload '\(workload)': match is empty, so it would take no endpoint") }
        return m
    }
}
