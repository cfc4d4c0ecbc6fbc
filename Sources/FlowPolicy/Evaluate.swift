import FlowCore
import FlowGraph

/// Why a flow would be blocked.
public enum BlockReason: String, Sendable, CaseIterable {
    case noWorkload = "endpoint in no workload"
    case noRule = "no rule between these workloads"
    case portNotAllowed = "port not allowed"
    case outsideSchedule = "outside the schedule"
}

/// A policy's verdict on one flow.
public enum Verdict: Sendable, Equatable {
    /// Allowed by the rule at this index (or by `defaultAction: allow`, index -1).
    case allowed(rule: Int)
    case blocked(BlockReason)

    public var isBlocked: Bool { if case .blocked = self { return true } else { return false } }
}

/// Decides flows against a policy, the way enforcement would: endpoints are classified into
/// the policy's own workloads (first match wins), then the first rule whose `from` takes the
/// client, `to` the server, whose ports include the service and whose schedule is open allows
/// the flow. A flow whose direction is unknown is allowed if either orientation is.
public final class PolicyEvaluator {
    public let policy: Policy
    let inventory: Inventory
    let names: NameResolver
    /// The UTC offset in seconds of a time zone (by name) at a time; from the caller.
    let utcOffset: (String, Double) -> Int

    /// Rules indexed by what their `from` and `to` name exactly (a workload, a DNS name, one
    /// address; "*" for anything else: labels, wide blocks, globs, everything), so that a flow
    /// looks at the few rules that can concern it.
    private var index: [PairKey: [Int]] = [:]
    /// The same rules, indexed also by protocol and port (port -1: ranges and every port),
    /// for the common path: finding the rule that allows a flow.
    private var byPort: [PortKey: [Int]] = [:]
    private var wildFrom = false, wildTo = false
    /// Every key some rule's `from` (`to`) has: an endpoint's other keys can find no rule, so
    /// a flow looks up only the pairs of keys that exist (a lookup in a large index is a cache
    /// miss, and most pairs are absent).
    private var fromKeys: Set<EndKey> = [], toKeys: Set<EndKey> = []
    struct PortKey: Hashable {
        var pair: PairKey
        var proto: Int32
        var port: Int32
        func hash(into h: inout Hasher) {
            h.combine(FlowUID.mix(pair.from, pair.to, UInt64(UInt32(bitPattern: proto)) << 32 | UInt64(UInt32(bitPattern: port))))
        }
    }

    /// The IP protocol number of a protocol name ("tcp" → 6, "ip-132" → 132).
    static func protocolNumber(_ name: String) -> Int32 {
        switch name {
        case "tcp": return 6
        case "udp": return 17
        case "icmp": return 1
        case "icmp6": return 58
        case "sctp": return 132
        case "gre": return 47
        case "esp": return 50
        case "ah": return 51
        default: return name.hasPrefix("ip-") ? Int32(name.dropFirst(3)) ?? -1 : -1
        }
    }
    /// Rules as shared references (a candidate is looked at without copying its strings).
    final class Compiled {
        let from: Selector
        let to: Selector
        let ports: [PortSpec]
        let schedule: Schedule?
        init(_ r: Rule) { from = r.from; to = r.to; ports = r.ports; schedule = r.schedule }
    }
    private var compiled: [Compiled] = []
    struct PairKey: Hashable {
        var from: EndKey
        var to: EndKey
        func hash(into h: inout Hasher) { h.combine(FlowUID.mix(from, to, 0x5A17)) }
    }
    /// What one side of a rule names exactly, as one word (cheap to hash and compare): any
    /// (0), a workload (by index), a DNS name (by id, names interned when the policy is read),
    /// or one address (by a 62-bit hash: a rule found through a colliding hash is still
    /// checked against the endpoint, selector by selector, before it counts).
    typealias EndKey = UInt64
    static let anyKey: EndKey = 0
    private static let kindShift: UInt64 = 62
    @inline(__always) static func workloadKey(_ i: Int) -> EndKey { 1 << kindShift | UInt64(i) }
    @inline(__always) static func addressKey(_ a: IPAddress) -> EndKey {
        3 << kindShift | (FlowUID.mix(a.hi, a.lo, 0xADD4) & (1 << kindShift - 1))
    }
    /// Literal DNS names that some rule's side names exactly, by id.
    private var nameKeys: [String: EndKey] = [:]
    @inline(__always) func nameKey(_ n: String) -> EndKey? { nameKeys.isEmpty ? nil : nameKeys[n] }

    func endKey(_ s: Selector) -> EndKey {
        if let w = s.workload, s.labels.isEmpty, s.fqdn == nil, s.cidrs.isEmpty,
           let i = inventory.workloads.firstIndex(where: { $0.name == w }) { return PolicyEvaluator.workloadKey(i) }
        if let f = s.fqdn, Glob(f).isLiteral, s.workload == nil, s.labels.isEmpty, s.cidrs.isEmpty {
            if let k = nameKeys[f] { return k }
            let k = 2 << PolicyEvaluator.kindShift | UInt64(nameKeys.count)
            nameKeys[f] = k
            return k
        }
        if s.cidrs.count == 1, s.cidrs[0].hostBits == 0, s.workload == nil, s.labels.isEmpty, s.fqdn == nil {
            return PolicyEvaluator.addressKey(s.cidrs[0].network)
        }
        return PolicyEvaluator.anyKey
    }

    /// Addresses and names that some rule selects (to tell "in no workload" apart).
    private var selectedAddresses: Set<IPAddress> = []
    private var wideBlocks: [CIDR] = []
    private var selectedNames: Set<String> = []
    private var nameGlobs: [Glob] = []
    private var anyEndpoint = false
    private var workloadCache: [CacheKey: Int32] = [:]
    private var hasFQDNKeys: Bool { !nameKeys.isEmpty }
    private lazy var inventoryPorts = Set(inventory.workloads.flatMap(\.match.ports))
    private lazy var usesHosts = inventory.workloads.contains { !$0.match.hosts.isEmpty }

    struct CacheKey: Hashable {
        var address: IPAddress
        var port: Int32
        var name: UInt64
    }

    public init(policy: Policy, names: NameResolver = NameResolver(), utcOffset: @escaping (String, Double) -> Int = { _, _ in 0 }) {
        self.policy = policy
        self.inventory = policy.inventory
        self.names = names
        self.utcOffset = utcOffset
        for (i, r) in policy.rules.enumerated() {
            let k = PairKey(from: endKey(r.from), to: endKey(r.to))
            fromKeys.insert(k.from)
            toKeys.insert(k.to)
            if k.from == PolicyEvaluator.anyKey { wildFrom = true }
            if k.to == PolicyEvaluator.anyKey { wildTo = true }
            index[k, default: []].append(i)
            compiled.append(Compiled(r))
            var ranged: Set<String> = []
            for spec in r.ports {
                if let l = spec.low, l == spec.high {
                    byPort[PortKey(pair: k, proto: PolicyEvaluator.protocolNumber(spec.proto), port: Int32(l)), default: []].append(i)
                } else {
                    ranged.insert(spec.proto)
                }
            }
            for proto in ranged.sorted() { byPort[PortKey(pair: k, proto: PolicyEvaluator.protocolNumber(proto), port: -1), default: []].append(i) }
            for s in [r.from, r.to] {
                if s.matchesEverything { anyEndpoint = true }
                for c in s.cidrs { if c.hostBits == 0 { selectedAddresses.insert(c.network) } else { wideBlocks.append(c) } }
                if let f = s.fqdn { if Glob(f).isLiteral { selectedNames.insert(f) } else { nameGlobs.append(Glob(f, caseInsensitive: true)) } }
            }
        }
    }

    /// One endpoint of one flow, with what is known of it (names looked up only if needed).
    struct Endpoint {
        var address: IPAddress
        var servedPort: UInt16?
        var process: ProcessAttribution?
        var workload: Int?
        var names: () -> [String]
        /// The name the flow's client asked for (for the server), else the latest valid one.
        var preferred: () -> String?
    }

    private func endpoint(_ a: IPAddress, servedPort: UInt16?, client: IPAddress?, t: Double,
                          process: ProcessAttribution?) -> Endpoint {
        let resolver = names
        // Looked up once, and only if something asks (most flows need no names).
        final class Memo { var names: [String]? }
        let memo = Memo()
        let lookup: () -> [String] = {
            if let n = memo.names { return n }
            var out: [String] = []
            if !resolver.isEmpty && resolver.knows(a) {
                if let p = resolver.name(for: a, client: client, at: t) { out.append(p) }
                for n in resolver.names(for: a, client: nil, at: t) where !out.contains(n) { out.append(n) }
            }
            memo.names = out
            return out
        }
        var w: Int?
        if process == nil {
            // Decided by the address, the port class (only ports the workloads name matter)
            // and, with host globs, the names valid at `t`: cached on exactly that.
            let port: Int32 = servedPort.map { inventoryPorts.contains($0) ? Int32($0) : -3 } ?? -1
            var key = CacheKey(address: a, port: port, name: 0)
            if usesHosts && resolver.knows(a) {
                // The names a host glob sees: those valid at `t`, and the client's own.
                let own = UInt64(bitPattern: Int64(resolver.preferredID(for: a, client: client, at: t)))
                key.name = (resolver.validSetSignature(for: a, at: t) ^ (own &* 0x9E37_79B9_7F4A_7C15)) | 1
            }
            if let hit = workloadCache[key] {
                w = hit >= 0 ? Int(hit) : nil
            } else {
                w = inventory.workloadIndex(address: a, servedPort: servedPort, process: nil, names: lookup)
                if workloadCache.count > 1 << 18 { workloadCache.removeAll(keepingCapacity: true) }
                workloadCache[key] = Int32(w ?? -1)
            }
        } else {
            w = inventory.workloadIndex(address: a, servedPort: servedPort, process: process, names: lookup)
        }
        let preferred: () -> String? = { resolver.isEmpty ? nil : resolver.name(for: a, client: client, at: t) }
        return Endpoint(address: a, servedPort: servedPort, process: process, workload: w, names: lookup, preferred: preferred)
    }

    func matches(_ s: Selector, _ e: Endpoint) -> Bool {
        if let w = s.workload {
            guard let i = e.workload, inventory.workloads[i].name == w else { return false }
        }
        if !s.labels.isEmpty {
            guard let i = e.workload else { return false }
            let wl = inventory.workloads[i]
            for (k, v) in s.labels where wl.label(k) != v { return false }
        }
        if !s.cidrs.isEmpty && !s.cidrs.contains(where: { $0.contains(e.address) }) { return false }
        if let f = s.fqdn {
            let g = Glob(f, caseInsensitive: true)
            guard e.names().contains(where: { g.matches($0) }) else { return false }
        }
        if !s.processes.isEmpty || !s.users.isEmpty {
            guard let p = e.process else { return false }
            if !s.processes.isEmpty {
                let exe = p.exe.map { $0.split(separator: "/").last.map(String.init) ?? $0 }
                guard s.processes.contains(where: { $0 == p.comm || $0 == exe }) else { return false }
            }
            if !s.users.isEmpty {
                guard let u = p.user, s.users.contains(u) else { return false }
            }
        }
        return true
    }

    private func isKnown(_ e: Endpoint) -> Bool {
        if e.workload != nil || anyEndpoint { return true }
        if selectedAddresses.contains(e.address) || wideBlocks.contains(where: { $0.contains(e.address) }) { return true }
        if !selectedNames.isEmpty || !nameGlobs.isEmpty {
            for n in e.names() where selectedNames.contains(n) || nameGlobs.contains(where: { $0.matches(n) }) { return true }
        }
        return false
    }

    /// The verdict for a client → server flow on (proto, port) at time t.
    private func decide(client c: Endpoint, server s: Endpoint, proto: String, port: UInt16?, t: Double) -> Verdict {
        // Rule keys an endpoint can meet. FQDN keys: first only the preferred name (the name
        // suggest would have used); every valid name only if that allows nothing.
        // Only keys that some rule's side has: any other finds no rule.
        func keys(_ e: Endpoint, wild: Bool, allNames: Bool, present: Set<EndKey>) -> [EndKey] {
            var k: [EndKey] = []
            func add(_ key: EndKey) { if present.contains(key) { k.append(key) } }
            add(PolicyEvaluator.addressKey(e.address))
            if let i = e.workload { add(PolicyEvaluator.workloadKey(i)) }
            if hasFQDNKeys {
                // A name no rule names exactly cannot be a key.
                if allNames {
                    for n in e.names() { if let id = nameKey(n) { add(id) } }
                } else if let n = e.preferred(), let id = nameKey(n) {
                    add(id)
                }
            }
            if wild { add(PolicyEvaluator.anyKey) }
            return k
        }
        var ck = keys(c, wild: wildFrom, allNames: false, present: fromKeys)
        var sk = keys(s, wild: wildTo, allNames: false, present: toKeys)
        for pass in 0..<(hasFQDNKeys ? 2 : 1) {
        if pass == 1 {
            ck = keys(c, wild: wildFrom, allNames: true, present: fromKeys)
            sk = keys(s, wild: wildTo, allNames: true, present: toKeys)
        }
        // The common path: the first rule (in file order) that allows the flow.
        var best = Int.max
        let portKey = Int32(port ?? 0) - (port == nil ? 1 : 0)
        let protoKey = PolicyEvaluator.protocolNumber(proto)
        for a in ck {
            for b in sk {
                let pair = PairKey(from: a, to: b)
                for ranged in [false, true] {
                    if ranged && port == nil { continue }
                    guard let list = byPort[PortKey(pair: pair, proto: protoKey, port: ranged ? -1 : portKey)] else { continue }
                    for i in list where i < best {
                        let r = compiled[i]
                        guard r.ports.contains(where: { $0.contains(proto: proto, port: port) }),
                              matches(r.to, s), matches(r.from, c) else { continue }
                        if let sch = r.schedule, !sch.contains(t, utcOffset: utcOffset(sch.tz, t)) { continue }
                        best = i
                    }
                }
            }
        }
        if best != Int.max { return .allowed(rule: best) }
        }
        // Blocked (or allowed by default): find out why, over every rule between the endpoints.
        var candidates: [Int] = []
        for a in ck { for b in sk { if let r = index[PairKey(from: a, to: b)] { candidates += r } } }
        var endpointsMatched = false, portMatched = false
        for i in candidates {
            let r = compiled[i]
            guard matches(r.to, s), matches(r.from, c) else { continue }
            endpointsMatched = true
            if r.ports.contains(where: { $0.contains(proto: proto, port: port) }) { portMatched = true }
        }
        if policy.defaultAction == .allow { return .allowed(rule: -1) }
        if portMatched { return .blocked(.outsideSchedule) }
        if endpointsMatched { return .blocked(.portNotAllowed) }
        if !isKnown(c) || !isKnown(s) { return .blocked(.noWorkload) }
        return .blocked(.noRule)
    }

    /// The verdict on one flow.
    public func evaluate(_ f: GraphFlow) -> Verdict {
        let proto = protocolName(f.ipProto)
        let known = f.directionKnown
        let port = f.servicePort
        let client = endpoint(f.origH, servedPort: nil, client: nil, t: f.ts, process: f.origProcess)
        let server = endpoint(f.respH, servedPort: port, client: f.origH, t: f.ts, process: f.respProcess)
        let v = decide(client: client, server: server, proto: proto, port: port, t: f.ts)
        if known || !v.isBlocked { return v }
        // Direction unknown: the other orientation, with the originator's port as the service.
        let altPort: UInt16? = f.ipProto.rawValue == 6 || f.ipProto.rawValue == 17 ? f.origP : port
        let c2 = endpoint(f.respH, servedPort: nil, client: nil, t: f.ts, process: f.respProcess)
        let s2 = endpoint(f.origH, servedPort: altPort, client: f.respH, t: f.ts, process: f.origProcess)
        let v2 = decide(client: c2, server: s2, proto: proto, port: altPort, t: f.ts)
        return v2.isBlocked ? v : v2
    }

    /// How an endpoint is shown in reports: its policy workload, else its DNS name, else its address.
    public func displayName(_ a: IPAddress, client: IPAddress?, t: Double, servedPort: UInt16?, process: ProcessAttribution?) -> String {
        let e = endpoint(a, servedPort: servedPort, client: client, t: t, process: process)
        if let i = e.workload { return inventory.workloads[i].name }
        if let n = names.name(for: a, client: client, at: t) { return n }
        return a.description
    }
}
