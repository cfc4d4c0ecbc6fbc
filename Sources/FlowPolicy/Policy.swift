import FlowCore
import FlowGraph

/// A least-privilege policy (docs/policy.md): its own workloads, a default action, and allow
/// rules between workloads, names and address blocks on ports and protocols.
public struct Policy: Sendable, Equatable {
    public static let apiVersion = "flowmap/v1"
    public static let kind = "Policy"

    public var metadata = Metadata()
    public var workloads: [Workload] = []
    public var defaultAction: Action = .deny
    public var rules: [Rule] = []
    /// Observed edges left out of the rules (rare, or direction unknown), for a person to decide.
    public var review: [ReviewItem] = []

    public init(metadata: Metadata = Metadata(), workloads: [Workload] = [], defaultAction: Action = .deny,
                rules: [Rule] = [], review: [ReviewItem] = []) {
        self.metadata = metadata; self.workloads = workloads; self.defaultAction = defaultAction
        self.rules = rules; self.review = review
    }

    public enum Action: String, Sendable, CaseIterable { case deny, allow }

    public struct Metadata: Sendable, Equatable {
        public var name = "policy"
        /// RFC 3339 UTC. `suggest` writes the time of the last flow it saw (so that the same
        /// input gives the same file), not the wall clock.
        public var generatedAt: String?
        public var sources: [String] = []
        public var window: (from: String, to: String)?
        public init() {}
        public static func == (a: Metadata, b: Metadata) -> Bool {
            a.name == b.name && a.generatedAt == b.generatedAt && a.sources == b.sources
                && a.window?.from == b.window?.from && a.window?.to == b.window?.to
        }
    }

    public var inventory: Inventory { Inventory(workloads: workloads) }
}

/// One allow rule.
public struct Rule: Sendable, Equatable {
    public var name: String
    public var from: Selector
    public var to: Selector
    public var ports: [PortSpec]
    public var schedule: Schedule?
    /// Set on rules for infrastructure every host needs ("dns", "ntp").
    public var infrastructure: String?
    /// A remark for reviewers (e.g. "direction unknown: allowed as seen").
    public var note: String?
    public var evidence: Evidence?
    public var mark: SourceMark?

    public init(name: String, from: Selector, to: Selector, ports: [PortSpec], schedule: Schedule? = nil,
                infrastructure: String? = nil, note: String? = nil, evidence: Evidence? = nil, mark: SourceMark? = nil) {
        self.name = name; self.from = from; self.to = to; self.ports = ports; self.schedule = schedule
        self.infrastructure = infrastructure; self.note = note; self.evidence = evidence; self.mark = mark
    }

    public static func == (a: Rule, b: Rule) -> Bool {
        a.name == b.name && a.from == b.from && a.to == b.to && a.ports == b.ports && a.schedule == b.schedule
            && a.infrastructure == b.infrastructure && a.note == b.note && a.evidence == b.evidence
    }
}

/// Which endpoints a rule's `from` or `to` takes.
public struct Selector: Sendable, Equatable, Hashable {
    /// A workload of the policy, by name.
    public var workload: String?
    /// Every workload carrying all these labels.
    public var labels: [String: String] = [:]
    /// A DNS name (glob) the endpoint had when the flow happened.
    public var fqdn: String?
    /// Address blocks.
    public var cidrs: [CIDR] = []
    /// Narrowing by process attribution (agent data): comm or exe basename, and user.
    public var processes: [String] = []
    public var users: [String] = []

    public init(workload: String? = nil, labels: [String: String] = [:], fqdn: String? = nil, cidrs: [CIDR] = [],
                processes: [String] = [], users: [String] = []) {
        self.workload = workload; self.labels = labels; self.fqdn = fqdn; self.cidrs = cidrs
        self.processes = processes; self.users = users
    }

    /// True when the selector takes every endpoint (no criterion, or 0.0.0.0/0 and ::/0).
    public var matchesEverything: Bool {
        if workload == nil && labels.isEmpty && fqdn == nil && cidrs.isEmpty { return true }
        if let f = fqdn, Glob(f).matchesEverything { return true }
        return false
    }

    /// A short text for tables and messages.
    public var summary: String {
        var parts: [String] = []
        if let w = workload { parts.append(w) }
        if !labels.isEmpty { parts.append(labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")) }
        if let f = fqdn { parts.append(f) }
        if !cidrs.isEmpty { parts.append(cidrs.map(\.description).joined(separator: ",")) }
        if !processes.isEmpty { parts.append("processes " + processes.joined(separator: ",")) }
        if !users.isEmpty { parts.append("users " + users.joined(separator: ",")) }
        return parts.isEmpty ? "any" : parts.joined(separator: " ")
    }
}

/// A port or port range on a protocol ("5432/tcp", "8000-8010/tcp", "8/icmp" for an ICMP
/// type, "gre" for a port-less protocol, "tcp" for every TCP port).
public struct PortSpec: Sendable, Equatable, Hashable, Comparable, CustomStringConvertible {
    public var proto: String
    /// Inclusive range; nil for "every port" (or a port-less protocol).
    public var low: UInt16?
    public var high: UInt16?

    public init(proto: String, low: UInt16? = nil, high: UInt16? = nil) {
        self.proto = proto; self.low = low; self.high = high ?? low
    }

    public static let protocols = ["tcp", "udp", "icmp", "icmp6", "sctp", "gre", "esp", "ah"]

    /// Parses "5432/tcp", "8000-8010/tcp", "8/icmp", "tcp", "gre", "ip-132".
    public init?(_ text: String) {
        guard let spec = PortSpec.quick(text) ?? PortSpec.general(text) else { return nil }
        self = spec
    }

    /// Any spelling (upper case, leading zeros, …).
    static func general(_ text: String) -> PortSpec? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count == 1 {
            let p = String(parts[0]).lowercased()
            guard PortSpec.isProtocol(p) else { return nil }
            return PortSpec(proto: p)
        }
        guard parts.count == 2 else { return nil }
        let p = String(parts[1]).lowercased()
        guard PortSpec.isProtocol(p) else { return nil }
        let range = parts[0].split(separator: "-", omittingEmptySubsequences: false)
        let maxValue = p == "icmp" || p == "icmp6" ? 255 : 65535
        let minValue = p == "icmp" || p == "icmp6" ? 0 : 1
        func num(_ s: Substring) -> UInt16? {
            guard !s.isEmpty, s.allSatisfy(\.isNumber), let v = Int(s), v >= minValue, v <= maxValue else { return nil }
            return UInt16(v)
        }
        if range.count == 1, let v = num(range[0]) {
            return PortSpec(proto: p, low: v, high: v)
        } else if range.count == 2, let a = num(range[0]), let b = num(range[1]), a <= b {
            return PortSpec(proto: p, low: a, high: b)
        } else {
            return nil
        }
    }

    /// The usual spellings ("5432/tcp", "8000-8010/udp", "8/icmp", "gre"), in lower-case ASCII,
    /// read without allocating: .some(nil) when such a text is not a spec, nil when the text
    /// needs the general parser.
    static func quick(_ text: String) -> PortSpec?? {
        var t = text
        return t.withUTF8 { b -> PortSpec?? in
            guard b.count <= 24 else { return nil }
            var slash = -1, dash = -1
            for i in 0..<b.count {
                let c = b[i]
                if c == 47 { guard slash < 0 else { return nil }; slash = i; continue }
                if c == 45 && slash < 0 { guard dash < 0 else { return nil }; dash = i; continue }
                guard (c >= 48 && c <= 57) || (c >= 97 && c <= 122) || c == 45 else { return nil }
            }
            if slash < 0 {
                guard dash < 0 || b.starts(with: "ip-".utf8) else { return nil }
                let p = String(decoding: b, as: UTF8.self)
                return .some(PortSpec.isProtocol(p) ? PortSpec(proto: p) : nil)
            }
            let p = String(decoding: UnsafeBufferPointer(rebasing: b[(slash + 1)...]), as: UTF8.self)
            guard PortSpec.isProtocol(p) else { return .some(nil) }
            let icmp = p == "icmp" || p == "icmp6"
            let maxValue = icmp ? 255 : 65535, minValue = icmp ? 0 : 1
            func num(_ from: Int, _ to: Int) -> Int? {
                guard to > from, to - from <= 5 else { return nil }
                var v = 0
                for i in from..<to {
                    guard b[i] >= 48 && b[i] <= 57 else { return nil }
                    v = v * 10 + Int(b[i] - 48)
                }
                return v
            }
            let end = dash < 0 ? slash : dash
            guard let a = num(0, end), let z = dash < 0 ? a : num(dash + 1, slash) else { return nil }
            guard a >= minValue, a <= maxValue, z >= minValue, z <= maxValue, a <= z else { return .some(nil) }
            return .some(PortSpec(proto: p, low: UInt16(a), high: UInt16(z)))
        }
    }

    static func isProtocol(_ p: String) -> Bool {
        if protocols.contains(p) { return true }
        if p.hasPrefix("ip-"), let n = Int(p.dropFirst(3)), n >= 0, n <= 255 { return true }
        return false
    }

    public var description: String {
        guard let l = low, let h = high else { return proto }
        return l == h ? "\(l)/\(proto)" : "\(l)-\(h)/\(proto)"
    }

    /// How many ports (or types) it opens; 65536 for "every port".
    public var width: Int {
        guard let l = low, let h = high else { return 65536 }
        return Int(h) - Int(l) + 1
    }

    public func contains(proto p: String, port: UInt16?) -> Bool {
        guard p == proto else { return false }
        guard let l = low, let h = high else { return true }
        guard let port else { return false }
        return l <= port && port <= h
    }

    /// True when every port this spec opens is also opened by `other`.
    public func isWithin(_ other: PortSpec) -> Bool {
        guard proto == other.proto else { return false }
        guard let ol = other.low, let oh = other.high else { return true }
        guard let l = low, let h = high else { return false }
        return ol <= l && h <= oh
    }

    public static func < (a: PortSpec, b: PortSpec) -> Bool {
        if a.proto != b.proto { return a.proto < b.proto }
        return (a.low.map(Int.init) ?? -1, a.high.map(Int.init) ?? -1) < (b.low.map(Int.init) ?? -1, b.high.map(Int.init) ?? -1)
    }
}

/// When a rule applies: days of the week and a daily window, in a time zone. A window whose
/// end is before its start runs across midnight (22:00-06:00): it then belongs to the day
/// it starts on.
public struct Schedule: Sendable, Equatable, Hashable {
    public static let dayNames = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    /// 0 = Monday … 6 = Sunday; empty means every day.
    public var days: [Int]
    /// Minutes after midnight: [start, end). start == end means all day.
    public var startMinute: Int
    public var endMinute: Int
    /// "UTC", a fixed offset ("+05:30"), or an IANA zone ("Europe/Berlin").
    public var tz: String

    public init(days: [Int] = [], startMinute: Int = 0, endMinute: Int = 0, tz: String = "UTC") {
        self.days = days; self.startMinute = startMinute; self.endMinute = endMinute; self.tz = tz
    }

    public var hoursText: String {
        func hm(_ m: Int) -> String { (m / 60 < 10 ? "0" : "") + "\(m / 60):" + (m % 60 < 10 ? "0" : "") + "\(m % 60)" }
        return "\(hm(startMinute))-\(hm(endMinute))"
    }

    /// Parses "HH:MM-HH:MM" (24:00 allowed as an end).
    public static func parseHours(_ s: String) -> (Int, Int)? {
        let parts = s.split(separator: "-")
        guard parts.count == 2 else { return nil }
        func minutes(_ t: Substring) -> Int? {
            let hm = t.split(separator: ":")
            guard hm.count == 2, hm[0].count == 2, hm[1].count == 2, let h = Int(hm[0]), let m = Int(hm[1]),
                  m >= 0, m < 60, h >= 0, h <= 24, !(h == 24 && m != 0) else { return nil }
            return h * 60 + m
        }
        guard let a = minutes(parts[0]), let b = minutes(parts[1]), a < 1440 else { return nil }
        return (a, b)
    }

    /// Whether the schedule is open at `t` (epoch seconds), given the zone's UTC offset in
    /// seconds at `t` (from the caller: the pure core reads no time zone database).
    public func contains(_ t: Double, utcOffset: Int) -> Bool {
        let local = Int64((t + Double(utcOffset)).rounded(.down))
        var days = local / 86400
        var secs = local % 86400
        if secs < 0 { secs += 86400; days -= 1 }
        let minute = Int(secs / 60)
        let weekday = Int(((days % 7) + 7 + 3) % 7)  // 1970-01-01 was a Thursday (3)
        let allDay = startMinute == endMinute
        if allDay || startMinute < endMinute {
            return (self.days.isEmpty || self.days.contains(weekday)) && (allDay || (minute >= startMinute && minute < endMinute))
        }
        // Across midnight: the evening part belongs to today, the morning part to yesterday.
        if minute >= startMinute { return self.days.isEmpty || self.days.contains(weekday) }
        if minute < endMinute { return self.days.isEmpty || self.days.contains((weekday + 6) % 7) }
        return false
    }
}

/// What was observed for a rule when it was suggested.
public struct Evidence: Sendable, Equatable, Hashable {
    public var flows: UInt64
    public var bytes: UInt64
    public var clients: Int
    public var firstSeen: String
    public var lastSeen: String
    public init(flows: UInt64, bytes: UInt64, clients: Int, firstSeen: String, lastSeen: String) {
        self.flows = flows; self.bytes = bytes; self.clients = clients; self.firstSeen = firstSeen; self.lastSeen = lastSeen
    }
}

/// An observed edge that `suggest` did not turn into a rule.
public struct ReviewItem: Sendable, Equatable {
    public var from: Selector
    public var to: Selector
    public var ports: [PortSpec]
    public var flows: UInt64
    public var reason: String
    public init(from: Selector, to: Selector, ports: [PortSpec], flows: UInt64, reason: String) {
        self.from = from; self.to = to; self.ports = ports; self.flows = flows; self.reason = reason
    }
}
