import FlowCore
import FlowGraph
import FlowPolicy

/// Reads a policy file (docs/policy.md); every error names the file, line and column.
public enum PolicyParser {
    public static func parse(_ text: String, file: String) throws(ConfigError) -> Policy {
        guard let root = try YAMLValue.parse(text, file: file), !root.isNull else {
            throw ConfigError(file: file, line: 1, column: 1, reason: "the policy is empty")
        }
        let top = try root.mapping("the policy")
        try YAMLValue.checkKeys(top, allowed: ["apiVersion", "kind", "metadata", "workloads", "defaultAction", "rules", "review"],
                                in: "the policy")
        func entry(_ k: String) -> (key: String, keyValue: YAMLValue, value: YAMLValue)? { top.first { $0.key == k } }
        guard let api = entry("apiVersion") else { throw root.error("the policy needs apiVersion: \(Policy.apiVersion)") }
        let apiText = try api.value.string("apiVersion")
        guard apiText == Policy.apiVersion else { throw api.value.error("apiVersion '\(apiText)' is not supported (expected \(Policy.apiVersion))") }
        guard let kind = entry("kind") else { throw root.error("the policy needs kind: \(Policy.kind)") }
        let kindText = try kind.value.string("kind")
        guard kindText == Policy.kind else { throw kind.value.error("kind '\(kindText)' is not \(Policy.kind)") }
        var p = Policy()
        if let m = entry("metadata"), !m.value.isNull { p.metadata = try metadata(m.value) }
        if let w = entry("workloads") { p.workloads = try InventoryParser.workloads(w.value) }
        if let d = entry("defaultAction") {
            let t = try d.value.string("defaultAction")
            guard let a = Policy.Action(rawValue: t) else { throw d.value.error("defaultAction must be deny or allow, not '\(t)'") }
            p.defaultAction = a
        }
        let names = Set(p.workloads.map(\.name))
        if let r = entry("rules"), !r.value.isNull {
            var seen: [String: Int] = [:]
            for item in try r.value.sequence("rules") {
                let rule = try self.rule(item, workloads: names)
                if let line = seen[rule.name] { throw item.error("rule '\(rule.name)' is already defined at line \(line)") }
                seen[rule.name] = item.mark.line
                p.rules.append(rule)
            }
        }
        if let r = entry("review"), !r.value.isNull {
            for item in try r.value.sequence("review") {
                let e = try item.mapping("a review entry")
                try YAMLValue.checkKeys(e, allowed: ["from", "to", "ports", "flows", "reason"], in: "a review entry")
                func v(_ k: String) -> YAMLValue? { e.first { $0.key == k }?.value }
                p.review.append(ReviewItem(
                    from: try v("from").map { v throws(ConfigError) in try selector(v, workloads: names, what: "from") } ?? Selector(),
                    to: try v("to").map { v throws(ConfigError) in try selector(v, workloads: names, what: "to") } ?? Selector(),
                    ports: try v("ports").map { v throws(ConfigError) in try ports(v) } ?? [],
                    flows: UInt64(max(0, try v("flows")?.int("flows") ?? 0)),
                    reason: try v("reason")?.string("reason") ?? ""))
            }
        }
        return p
    }

    static func metadata(_ v: YAMLValue) throws(ConfigError) -> Policy.Metadata {
        let e = try v.mapping("metadata")
        try YAMLValue.checkKeys(e, allowed: ["name", "generatedAt", "sources", "window"], in: "metadata")
        var m = Policy.Metadata()
        for x in e {
            switch x.key {
            case "name": m.name = try x.value.nonEmptyString("metadata name")
            case "generatedAt":
                let t = try x.value.string("generatedAt")
                guard Fmt.parseTime(t) != nil else { throw x.value.error("generatedAt '\(t)' is not an RFC 3339 time") }
                m.generatedAt = t
            case "sources": m.sources = try x.value.stringList("sources").map(\.0)
            case "window":
                let w = try x.value.mapping("window")
                try YAMLValue.checkKeys(w, allowed: ["from", "to"], in: "window")
                guard let f = w.first(where: { $0.key == "from" }), let t = w.first(where: { $0.key == "to" }) else {
                    throw x.value.error("window needs from and to")
                }
                m.window = (try f.value.string("window from"), try t.value.string("window to"))
            default: break
            }
        }
        return m
    }

    static func rule(_ item: YAMLValue, workloads: Set<String>) throws(ConfigError) -> Rule {
        let e = try item.mapping("a rule")
        try YAMLValue.checkKeys(e, allowed: ["name", "from", "to", "ports", "schedule", "infrastructure", "note", "evidence"],
                                in: "a rule")
        func v(_ k: String) -> YAMLValue? { e.first { $0.key == k }?.value }
        guard let n = v("name") else { throw item.error("a rule needs a name") }
        let name = try n.nonEmptyString("rule name")
        guard let f = v("from") else { throw item.error("rule '\(name)' needs from:") }
        guard let t = v("to") else { throw item.error("rule '\(name)' needs to:") }
        guard let p = v("ports") else { throw item.error("rule '\(name)' needs ports: (like [5432/tcp])") }
        var rule = Rule(name: name, from: try selector(f, workloads: workloads, what: "from"),
                        to: try selector(t, workloads: workloads, what: "to"), ports: try ports(p), mark: item.mark)
        if rule.ports.isEmpty { throw p.error("rule '\(name)': ports is empty, so the rule allows nothing") }
        if let s = v("schedule"), !s.isNull { rule.schedule = try schedule(s) }
        if let i = v("infrastructure"), !i.isNull { rule.infrastructure = try i.string("infrastructure") }
        if let x = v("note"), !x.isNull { rule.note = try x.string("note") }
        if let ev = v("evidence"), !ev.isNull {
            let m = try ev.mapping("evidence")
            try YAMLValue.checkKeys(m, allowed: ["flows", "bytes", "clients", "firstSeen", "lastSeen"], in: "evidence")
            func f(_ k: String) -> YAMLValue? { m.first { $0.key == k }?.value }
            rule.evidence = Evidence(flows: UInt64(max(0, try f("flows")?.int("flows") ?? 0)),
                                     bytes: UInt64(max(0, try f("bytes")?.int("bytes") ?? 0)),
                                     clients: try f("clients")?.int("clients") ?? 0,
                                     firstSeen: try f("firstSeen")?.string("firstSeen") ?? "",
                                     lastSeen: try f("lastSeen")?.string("lastSeen") ?? "")
        }
        return rule
    }

    static func selector(_ v: YAMLValue, workloads: Set<String>, what: String) throws(ConfigError) -> Selector {
        let e = try v.mapping(what)
        try YAMLValue.checkKeys(e, allowed: ["workload", "labels", "fqdn", "cidr", "cidrs", "processes", "users"], in: what)
        var s = Selector()
        for x in e {
            switch x.key {
            case "workload":
                let w = try x.value.nonEmptyString("workload")
                guard workloads.contains(w) else { throw x.value.error("\(what): no workload named '\(w)' in this policy's workloads") }
                s.workload = w
            case "labels":
                for l in try x.value.mapping("labels") { s.labels[l.key] = try l.value.string("label '\(l.key)'") }
            case "fqdn":
                s.fqdn = try x.value.nonEmptyString("fqdn").lowercased()
            case "cidr", "cidrs":
                for (text, node) in try x.value.stringList(x.key) {
                    guard let c = CIDR(text) else { throw node.error("'\(text)' is not an address or CIDR") }
                    s.cidrs.append(c)
                }
            case "processes": s.processes = try x.value.stringList("processes").map(\.0)
            case "users": s.users = try x.value.stringList("users").map(\.0)
            default: break
            }
        }
        return s
    }

    static func ports(_ v: YAMLValue) throws(ConfigError) -> [PortSpec] {
        try v.stringList("ports").map { (text, node) throws(ConfigError) in
            guard let p = PortSpec(text) else {
                throw node.error("'\(text)' is not a port spec (like 5432/tcp, 8000-8010/tcp, 8/icmp or gre)")
            }
            return p
        }
    }

    static func schedule(_ v: YAMLValue) throws(ConfigError) -> Schedule {
        let e = try v.mapping("schedule")
        try YAMLValue.checkKeys(e, allowed: ["days", "hours", "tz"], in: "schedule")
        var s = Schedule()
        for x in e {
            switch x.key {
            case "days":
                s.days = try x.value.stringList("days").map { (d, node) throws(ConfigError) in
                    guard let i = Schedule.dayNames.firstIndex(of: d.lowercased().prefix(3).description), d.count >= 3 else {
                        throw node.error("'\(d)' is not a day (mon, tue, wed, thu, fri, sat, sun)")
                    }
                    return i
                }
            case "hours":
                let h = try x.value.string("hours")
                guard let (a, b) = Schedule.parseHours(h) else { throw x.value.error("hours '\(h)' is not HH:MM-HH:MM") }
                s.startMinute = a; s.endMinute = b
            case "tz":
                s.tz = try x.value.nonEmptyString("tz")
            default: break
            }
        }
        return s
    }
}
