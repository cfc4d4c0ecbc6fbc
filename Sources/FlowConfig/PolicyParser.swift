import FlowCore
import FlowGraph
import FlowPolicy

/// Reads a policy file (docs/policy.md); every error names the file, line and column.
public enum PolicyParser {
    /// `keep` receives the parsed tree, for a caller that would rather leave it to the
    /// process exit than free it node by node (large policies).
    public static func parse(_ text: String, file: String, keep: ((Any) -> Void)? = nil) throws(ConfigError) -> Policy {
        // Rules in the layout suggest writes are read from the bytes (RuleScanner); the rest of
        // the file, with their lines left blank (so that every line number stays), the usual
        // way. Anything the scanner does not take, and any doubt, reads the whole file the
        // usual way.
        if let scanned = RuleScanner.scan(text, file: file) {
            var rest = [UInt8]()
            var t = text
            t.withUTF8 { b in
                rest.reserveCapacity(b.count - (scanned.end - scanned.start) + 16)
                rest.append(contentsOf: UnsafeBufferPointer(rebasing: b[0..<scanned.start]))
                for p in scanned.start..<scanned.end where b[p] == 10 { rest.append(10) }
                rest.append(contentsOf: UnsafeBufferPointer(rebasing: b[scanned.end...]))
            }
            if let p = try parse(String(decoding: rest, as: UTF8.self), file: file, keep: keep, scanned: scanned) { return p }
        }
        return try parse(text, file: file, keep: keep, scanned: nil)!
    }

    /// With `scanned`: nil when the rest of the file does not agree with what the scanner
    /// assumed (the caller then reads the file the usual way).
    static func parse(_ text: String, file: String, keep: ((Any) -> Void)?,
                              scanned: RuleScanner.Scanned?) throws(ConfigError) -> Policy? {
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
        if let scanned {
            guard let r = entry("rules"), r.value.isNull, scanned.workloads.isSubset(of: names) else { return nil }
            var seen = NameTable(capacity: scanned.rules.count)
            p.rules = scanned.rules
            for (i, rule) in p.rules.enumerated() {
                if let earlier = seen.insert(rule.name, i, names: p.rules) {
                    let m = rule.mark ?? SourceMark(file: file, line: 1, column: 1)
                    throw ConfigError(file: file, line: m.line, column: m.column,
                                      reason: "rule '\(rule.name)' is already defined at line \(p.rules[earlier].mark?.line ?? 0)")
                }
            }
        } else if let r = entry("rules"), !r.value.isNull {
            let items = try r.value.sequence("rules")
            var seen = NameTable(capacity: items.count)
            p.rules.reserveCapacity(items.count)
            for item in items {
                let rule: Rule
                if let r = fastRule(item.node, workloads: names, file: file) { rule = r } else { rule = try self.rule(item, workloads: names) }
                if let earlier = seen.insert(rule.name, p.rules.count, names: p.rules) {
                    throw item.error("rule '\(rule.name)' is already defined at line \(p.rules[earlier].mark?.line ?? 0)")
                }
                p.rules.append(rule)
            }
        }
        keep?(root.node)
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

    /// A rule in the shape `suggest` writes, read straight from the tree: nil for anything
    /// else (a schedule, a null, an unknown or repeated key, a value that does not parse),
    /// which `rule` then reads — and words the error for. When it gives a rule, it is the
    /// rule `rule` gives.
    static func fastRule(_ node: YNode, workloads: Set<String>, file: String) -> Rule? {
        guard case .mapping(let pairs) = node.kind, pairs.count <= 8 else { return nil }
        var name: String?, from: Selector?, to: Selector?, ports: [PortSpec]?
        var infrastructure: String?, note: String?, evidence: Evidence?
        var seen: UInt8 = 0
        for (k, v) in pairs {
            guard case .scalar(let key, _) = k.kind else { return nil }
            let bit: UInt8
            switch key {
            case "name":
                guard let t = scalarText(v), !t.isEmpty else { return nil }
                name = t; bit = 1
            case "from":
                guard let sel = fastSelector(v, workloads: workloads) else { return nil }
                from = sel; bit = 2
            case "to":
                guard let sel = fastSelector(v, workloads: workloads) else { return nil }
                to = sel; bit = 4
            case "ports":
                guard let list = fastPorts(v) else { return nil }
                ports = list; bit = 8
            case "infrastructure":
                guard let t = scalarText(v), !isNull(v) else { return nil }
                infrastructure = t; bit = 16
            case "note":
                guard let t = scalarText(v), !isNull(v) else { return nil }
                note = t; bit = 32
            case "evidence":
                guard let e = fastEvidence(v) else { return nil }
                evidence = e; bit = 64
            default:
                return nil  // schedule, or an unknown key
            }
            guard seen & bit == 0 else { return nil }
            seen |= bit
        }
        guard let name, let from, let to, let ports, !ports.isEmpty else { return nil }
        return Rule(name: name, from: from, to: to, ports: ports, infrastructure: infrastructure, note: note,
                    evidence: evidence, mark: SourceMark(file: file, line: node.line, column: node.column))
    }

    private static func scalarText(_ n: YNode) -> String? {
        if case .scalar(let s, _) = n.kind { return s }
        return nil
    }

    private static func isNull(_ n: YNode) -> Bool {
        if case .scalar(let s, let plain) = n.kind { return plain && (s == "" || s == "~" || s == "null" || s == "Null" || s == "NULL") }
        return false
    }

    /// Scalars of a scalar or a sequence of scalars (what `stringList` takes).
    private static func scalarList(_ n: YNode) -> [String]? {
        switch n.kind {
        case .scalar(let s, _): return [s]
        case .sequence(let items):
            var out: [String] = []
            out.reserveCapacity(items.count)
            for i in items { guard case .scalar(let s, _) = i.kind else { return nil }; out.append(s) }
            return out
        case .mapping: return nil
        }
    }

    private static func fastSelector(_ n: YNode, workloads: Set<String>) -> Selector? {
        guard case .mapping(let pairs) = n.kind else { return nil }
        var f = FastSelector()
        for (k, v) in pairs {
            guard case .scalar(let key, _) = k.kind else { return nil }
            let value: FastSelector.Value
            switch v.kind {
            case .scalar(let t, _): value = .scalar(t)
            case .sequence: guard let list = scalarList(v) else { return nil }; value = .list(list)
            case .mapping: return nil
            }
            guard f.take(key, value) else { return nil }
        }
        guard let s = f.selector, f.workloads.allSatisfy({ workloads.contains($0) }) else { return nil }
        return s
    }

    private static func fastPorts(_ n: YNode) -> [PortSpec]? {
        guard let list = scalarList(n) else { return nil }
        return FastSelector.ports(list)
    }

    private static func fastEvidence(_ n: YNode) -> Evidence? {
        guard case .mapping(let pairs) = n.kind else { return nil }
        var f = FastEvidence()
        for (k, v) in pairs {
            guard case .scalar(let key, _) = k.kind, let text = scalarText(v), f.take(key, text) else { return nil }
        }
        return f.evidence
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

/// A rule's `from` or `to` in the shape suggest writes, built from its keys and values as the
/// tree reader (`fastRule`) and the byte scanner (`RuleScanner`) both read them: the two agree
/// by construction. `take` is false for anything else (the general reader then words it).
struct FastSelector {
    enum Value { case scalar(String), list([String]) }
    private var s = Selector()
    private var seen: UInt8 = 0
    private var count = 0
    /// Workloads named (each must be one of the policy's; the caller checks).
    private(set) var workloads: [String] = []

    mutating func take(_ key: String, _ value: Value) -> Bool {
        count += 1
        let bit: UInt8
        var list: [String] {
            switch value {
            case .scalar(let t): return [t]
            case .list(let l): return l
            }
        }
        switch key {
        case "workload":
            guard case .scalar(let w) = value, !w.isEmpty else { return false }
            s.workload = w; workloads.append(w); bit = 1
        case "fqdn":
            guard case .scalar(let f) = value, !f.isEmpty else { return false }
            s.fqdn = f.lowercased(); bit = 2
        case "cidr", "cidrs":
            for t in list { guard let c = CIDR(t) else { return false }; s.cidrs.append(c) }
            bit = key == "cidr" ? 4 : 8
        case "processes":
            s.processes = list; bit = 16
        case "users":
            s.users = list; bit = 32
        default:
            return false  // labels (read by the general path), or an unknown key
        }
        guard seen & bit == 0 else { return false }
        seen |= bit
        return true
    }

    var selector: Selector? { count <= 7 ? s : nil }

    static func ports(_ list: [String]) -> [PortSpec]? {
        var out: [PortSpec] = []
        out.reserveCapacity(list.count)
        for t in list { guard let p = PortSpec(t) else { return nil }; out.append(p) }
        return out
    }
}

/// A rule's evidence in the shape suggest writes (see `FastSelector`).
struct FastEvidence {
    private var flows = 0, bytes = 0, clients = 0
    private var firstSeen = "", lastSeen = ""
    private var seen: UInt8 = 0
    private var count = 0

    mutating func take(_ key: String, _ text: String) -> Bool {
        count += 1
        let bit: UInt8
        switch key {
        case "flows": guard let x = Int(text) else { return false }; flows = x; bit = 1
        case "bytes": guard let x = Int(text) else { return false }; bytes = x; bit = 2
        case "clients": guard let x = Int(text) else { return false }; clients = x; bit = 4
        case "firstSeen": firstSeen = text; bit = 8
        case "lastSeen": lastSeen = text; bit = 16
        default: return false
        }
        guard seen & bit == 0 else { return false }
        seen |= bit
        return true
    }

    var evidence: Evidence? {
        count <= 5 ? Evidence(flows: UInt64(max(0, flows)), bytes: UInt64(max(0, bytes)), clients: clients,
                              firstSeen: firstSeen, lastSeen: lastSeen) : nil
    }
}

/// Rule names seen so far, by open addressing on a hash of their bytes (one probe for most,
/// no rehashing: sized for every rule up front). A slot holds the hash's high bits beside the
/// rule's index, so names are compared only when their hashes agree.
struct NameTable {
    private var slots: [UInt64]
    private let mask: Int

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [UInt64](repeating: 0, count: size)
        mask = size - 1
    }

    /// Records `name` as rule `index`; returns the index of an earlier rule of that name.
    mutating func insert(_ name: String, _ index: Int, names rules: [Rule]) -> Int? {
        let h = TextHash.of(name)
        let tag = UInt64(truncatingIfNeeded: UInt(bitPattern: h) >> 32) << 32
        var i = h & mask
        while slots[i] != 0 {
            let e = slots[i]
            if e & 0xFFFF_FFFF_0000_0000 == tag {
                let earlier = Int(e & 0xFFFF_FFFF) - 1
                if rules[earlier].name == name { return earlier }
            }
            i = (i + 1) & mask
        }
        slots[i] = tag | UInt64(index + 1)
        return nil
    }
}
