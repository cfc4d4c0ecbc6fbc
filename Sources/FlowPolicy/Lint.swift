import FlowCore
import FlowGraph

/// One finding of `flowmap lint`.
public struct LintFinding: Sendable, Equatable, Comparable {
    public enum Severity: String, Sendable { case error, warning }
    public var severity: Severity
    public var line: Int
    public var column: Int
    public var rule: String?
    public var message: String

    public init(severity: Severity, line: Int, column: Int, rule: String?, message: String) {
        self.severity = severity; self.line = line; self.column = column; self.rule = rule; self.message = message
    }

    public static func < (a: LintFinding, b: LintFinding) -> Bool {
        (a.line, a.column, a.message) < (b.line, b.column, b.message)
    }
}

/// Earlier rules of one bucket, indexed by port: a rule whose ports are all single ports can
/// only duplicate, be shadowed by or overlap a rule that shares one of them, or one with a
/// range or every port. A suggested policy has many single-port rules between the same two
/// workloads; without the index, linting it would compare every pair of them.
final class RuleBucket {
    private struct PortKey: Hashable {
        var proto: String
        var port: UInt16
    }
    private var all: [Int] = []
    private var byPort: [PortKey: [Int]] = [:]
    /// Rules with a port range or every port of a protocol.
    private var wide: [Int] = []

    private static func singlePorts(_ r: Rule) -> [PortKey]? {
        guard !r.ports.isEmpty else { return nil }
        var out: [PortKey] = []
        for p in r.ports {
            guard let l = p.low, p.high == l else { return nil }
            out.append(PortKey(proto: p.proto, port: l))
        }
        return out
    }

    func insert(_ i: Int, _ r: Rule) {
        all.append(i)
        if let keys = RuleBucket.singlePorts(r) {
            for k in keys { byPort[k, default: []].append(i) }
        } else if !r.ports.isEmpty {
            wide.append(i)
        }
        // A rule with no ports allows nothing: it can duplicate only another such rule, which
        // then finds it through `all`.
    }

    /// Appends the earlier rules that can share a port with `r` (every rule, when `r` has a
    /// range, every port or no ports).
    func candidates(for r: Rule, into out: inout [Int]) {
        guard let keys = RuleBucket.singlePorts(r) else {
            out += all
            return
        }
        for k in keys { if let l = byPort[k] { out += l } }
        out += wide
    }
}

/// Static checks of a policy, and checks against traffic.
public enum PolicyLinter {
    /// True when `a` takes every endpoint `b` takes, judged on the selectors alone.
    static func covers(_ a: Selector, _ b: Selector) -> Bool {
        // Process and user constraints: `a` must constrain no more than `b` does.
        if !a.processes.isEmpty && (b.processes.isEmpty || !Set(b.processes).isSubset(of: a.processes)) { return false }
        if !a.users.isEmpty && (b.users.isEmpty || !Set(b.users).isSubset(of: a.users)) { return false }
        if a.matchesEverything { return true }
        if let w = a.workload, w != b.workload { return false }
        for (k, v) in a.labels where b.labels[k] != v { return false }
        if let f = a.fqdn {
            guard let g = b.fqdn else { return false }
            if f != g && !Glob(f, caseInsensitive: true).matches(g) { return false }
        }
        if !a.cidrs.isEmpty {
            guard !b.cidrs.isEmpty else { return false }
            for c in b.cidrs where !a.cidrs.contains(where: { $0.isV6 == c.isV6 && $0.length <= c.length && $0.contains(c.network) }) {
                return false
            }
        }
        return true
    }

    static func portsCover(_ a: [PortSpec], _ b: [PortSpec]) -> Bool {
        b.allSatisfy { p in a.contains { p.isWithin($0) } }
    }

    static func portsOverlap(_ a: [PortSpec], _ b: [PortSpec]) -> Bool {
        for x in a {
            for y in b where x.proto == y.proto {
                guard let xl = x.low, let xh = x.high, let yl = y.low, let yh = y.high else { return true }
                if xl <= yh && yl <= xh { return true }
            }
        }
        return false
    }

    /// Findings that need no traffic: duplicates, shadowed and overlapping rules, over-broad rules.
    public static func lint(_ p: Policy) -> [LintFinding] {
        var out: [LintFinding] = []
        func add(_ s: LintFinding.Severity, _ r: Rule, _ m: String) {
            out.append(LintFinding(severity: s, line: r.mark?.line ?? 0, column: r.mark?.column ?? 0, rule: r.name, message: "rule '\(r.name)': \(m)"))
        }
        // Only rules that can take the same endpoints are compared: rules are bucketed by the
        // exact workload, name or address each side names ("*" for anything wider), so that a
        // large suggested policy lints in near-linear time.
        func key(_ s: Selector) -> String {
            if let w = s.workload, s.labels.isEmpty, s.fqdn == nil, s.cidrs.isEmpty { return "w:" + w }
            if let f = s.fqdn, Glob(f).isLiteral, s.workload == nil, s.labels.isEmpty, s.cidrs.isEmpty { return "f:" + f }
            if s.cidrs.count == 1, s.cidrs[0].hostBits == 0, s.workload == nil, s.labels.isEmpty, s.fqdn == nil {
                return "a:" + s.cidrs[0].network.description
            }
            return "*"
        }
        // Side keys are interned (0 is "*"); buckets are keyed by ids, not by joined strings.
        var sideIDs: [String: UInt64] = ["*": 0]
        func sideID(_ k: String) -> UInt64 {
            if let i = sideIDs[k] { return i }
            let i = UInt64(sideIDs.count)
            sideIDs[k] = i
            return i
        }
        var byPair: [UInt64: RuleBucket] = [:], byFrom: [UInt64: RuleBucket] = [:], byTo: [UInt64: RuleBucket] = [:]
        let everything = RuleBucket()
        func bucket(_ map: inout [UInt64: RuleBucket], _ k: UInt64) -> RuleBucket {
            if let b = map[k] { return b }
            let b = RuleBucket()
            map[k] = b
            return b
        }
        @inline(__always) func pair(_ f: UInt64, _ t: UInt64) -> UInt64 { f << 32 | t }
        for (i, r) in p.rules.enumerated() {
            let fk = sideID(key(r.from)), tk = sideID(key(r.to))
            var earlier: [Int] = []
            switch (fk == 0, tk == 0) {
            case (false, false):
                for k in [pair(fk, tk), pair(fk, 0), pair(0, tk), pair(0, 0)] { byPair[k]?.candidates(for: r, into: &earlier) }
            case (true, false): for k in [tk, 0] { byTo[k]?.candidates(for: r, into: &earlier) }
            case (false, true): for k in [fk, 0] { byFrom[k]?.candidates(for: r, into: &earlier) }
            case (true, true): everything.candidates(for: r, into: &earlier)
            }
            bucket(&byPair, pair(fk, tk)).insert(i, r)
            bucket(&byFrom, fk).insert(i, r)
            bucket(&byTo, tk).insert(i, r)
            everything.insert(i, r)
            for j in Set(earlier).sorted() {
                let e = p.rules[j]
                let sameEnds = r.from == e.from && r.to == e.to
                if sameEnds && Set(r.ports) == Set(e.ports) && r.schedule == e.schedule {
                    add(.error, r, "duplicates rule '\(e.name)'")
                } else if covers(e.from, r.from) && covers(e.to, r.to) && portsCover(e.ports, r.ports)
                            && (e.schedule == nil || e.schedule == r.schedule) {
                    add(.warning, r, "is shadowed by rule '\(e.name)' (which allows everything it does)")
                } else if sameEnds && portsOverlap(r.ports, e.ports) {
                    add(.warning, r, "overlaps rule '\(e.name)' on \(r.ports.filter { x in e.ports.contains { portsOverlap([x], [$0]) } }.map(\.description).joined(separator: ", "))")
                }
            }
            for port in r.ports where port.low == nil && PortSpec.isPortful(port.proto) {
                add(.warning, r, "allows every \(port.proto) port")
            }
            for (side, s) in [("from", r.from), ("to", r.to)] {
                if s.matchesEverything { add(.warning, r, "\(side) matches every endpoint") }
                for c in s.cidrs {
                    if c.length == 0 { add(.warning, r, "\(side) is \(c) (everything)") }
                    else if (!c.isV6 && c.length < 16) || (c.isV6 && c.length < 32) {
                        add(.warning, r, "\(side) \(c) is wider than a /\(c.isV6 ? 32 : 16)")
                    }
                }
            }
        }
        return out.sorted()
    }

    /// Findings against traffic: rules no flow hit in the window (orphaned), and evidence last
    /// seen long before the traffic's last flow (stale).
    public static func lint(_ p: Policy, hits: [UInt64], trafficEnd: Double?, staleAfter: Double) -> [LintFinding] {
        var out: [LintFinding] = []
        for (i, r) in p.rules.enumerated() {
            let mark = (r.mark?.line ?? 0, r.mark?.column ?? 0)
            if i < hits.count && hits[i] == 0 {
                out.append(LintFinding(severity: .warning, line: mark.0, column: mark.1, rule: r.name,
                                       message: "rule '\(r.name)': orphaned (no flow in the traffic)"))
            }
            if let end = trafficEnd, let last = r.evidence.flatMap({ Fmt.parseTime($0.lastSeen) }), end - last > staleAfter {
                out.append(LintFinding(severity: .warning, line: mark.0, column: mark.1, rule: r.name,
                                       message: "rule '\(r.name)': stale evidence (last seen \(r.evidence!.lastSeen), \(Int((end - last) / 86400)) days before the traffic ends)"))
            }
        }
        return out
    }
}

extension PortSpec {
    static func isPortful(_ proto: String) -> Bool { proto == "tcp" || proto == "udp" || proto == "sctp" }
}

/// What changed between two policies, for a review.
public struct PolicyDiff: Sendable {
    public enum Change: Sendable, Equatable {
        case added(Rule)
        case removed(Rule)
        case widened(old: Rule, new: Rule, why: [String])
        case narrowed(old: Rule, new: Rule, why: [String])
        case changed(old: Rule, new: Rule, why: [String])
    }
    public var rules: [Change] = []
    public var workloads: [String] = []
    public var isEmpty: Bool { rules.isEmpty && workloads.isEmpty }

    public static func compare(_ a: Policy, _ b: Policy) -> PolicyDiff {
        var d = PolicyDiff()
        let old = Dictionary(a.rules.map { ($0.name, $0) }, uniquingKeysWith: { x, _ in x })
        let new = Dictionary(b.rules.map { ($0.name, $0) }, uniquingKeysWith: { x, _ in x })
        for name in Set(old.keys).union(new.keys).sorted() {
            switch (old[name], new[name]) {
            case (nil, let n?): d.rules.append(.added(n))
            case (let o?, nil): d.rules.append(.removed(o))
            case (let o?, let n?):
                var wider: [String] = [], narrower: [String] = []
                let op = Set(o.ports), np = Set(n.ports)
                if op != np {
                    let covers = PolicyLinter.portsCover(n.ports, o.ports), covered = PolicyLinter.portsCover(o.ports, n.ports)
                    let text = "ports \(o.ports.map(\.description).joined(separator: ", ")) → \(n.ports.map(\.description).joined(separator: ", "))"
                    if covers && !covered { wider.append(text) } else if covered && !covers { narrower.append(text) } else { wider.append(text); narrower.append(text) }
                }
                for (side, os, ns) in [("from", o.from, n.from), ("to", o.to, n.to)] where os != ns {
                    let text = "\(side) \(os.summary) → \(ns.summary)"
                    let w = PolicyLinter.covers(ns, os), nr = PolicyLinter.covers(os, ns)
                    if w && !nr { wider.append(text) } else if nr && !w { narrower.append(text) } else { wider.append(text); narrower.append(text) }
                }
                if o.schedule != n.schedule {
                    if n.schedule == nil { wider.append("schedule removed") }
                    else if o.schedule == nil { narrower.append("schedule added (\(n.schedule!.hoursText) \(n.schedule!.tz))") }
                    else { wider.append("schedule changed"); narrower.append("schedule changed") }
                }
                let why = Array(Set(wider + narrower)).sorted()
                if !wider.isEmpty && narrower.isEmpty { d.rules.append(.widened(old: o, new: n, why: why)) }
                else if wider.isEmpty && !narrower.isEmpty { d.rules.append(.narrowed(old: o, new: n, why: why)) }
                else if !why.isEmpty { d.rules.append(.changed(old: o, new: n, why: why)) }
            default: break
            }
        }
        let ow = Dictionary(a.workloads.map { ($0.name, $0) }, uniquingKeysWith: { x, _ in x })
        let nw = Dictionary(b.workloads.map { ($0.name, $0) }, uniquingKeysWith: { x, _ in x })
        for name in Set(ow.keys).union(nw.keys).sorted() {
            switch (ow[name], nw[name]) {
            case (nil, _?): d.workloads.append("+ workload \(name) added")
            case (_?, nil): d.workloads.append("- workload \(name) removed")
            case (let x?, let y?) where x != y: d.workloads.append("~ workload \(name) changed (its match or labels): every rule naming it changes with it")
            default: break
            }
        }
        return d
    }

    static func describe(_ r: Rule) -> String {
        "\(r.from.summary) → \(r.to.summary) \(r.ports.map(\.description).joined(separator: ", "))"
            + (r.schedule.map { " (\($0.hoursText) \($0.tz))" } ?? "")
    }

    /// A review text: one line per change, `+` added, `-` removed, `>` widened, `<` narrowed, `~` changed.
    public var text: String {
        var out = ""
        for c in rules {
            switch c {
            case .added(let r): out += "+ \(r.name): \(PolicyDiff.describe(r))\n"
            case .removed(let r): out += "- \(r.name): \(PolicyDiff.describe(r))\n"
            case .widened(_, let n, let why): out += "> widened \(n.name): \(why.joined(separator: "; "))\n"
            case .narrowed(_, let n, let why): out += "< narrowed \(n.name): \(why.joined(separator: "; "))\n"
            case .changed(_, let n, let why): out += "~ changed \(n.name): \(why.joined(separator: "; "))\n"
            }
        }
        for w in workloads { out += w + "\n" }
        return out
    }
}
