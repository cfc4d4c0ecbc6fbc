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
///
/// Rules are indexed by what their sides name exactly (one word per side, see `EndKey`) and by
/// protocol and port, in flat open-addressing tables: deciding a flow hashes a few words and
/// allocates nothing unless it needs the endpoints' DNS names.
public final class PolicyEvaluator {
    public let policy: Policy
    let inventory: Inventory
    let names: NameResolver
    /// The UTC offset in seconds of a time zone (by name) at a time; from the caller.
    let utcOffset: (String, Double) -> Int

    /// Rules by (from key, to key, protocol and port); port -1 holds the rules with ranges or
    /// every port of the protocol. Lists are in file order.
    private var byPort = KeyedLists()
    /// Rules by (from key, to key), one per distinct pair of selectors: to tell "port not
    /// allowed" from "no rule" without looking at every port rule between two workloads.
    private var byPair = KeyedLists()
    private var wildFrom = false, wildTo = false
    /// Every key some rule's `from` (`to`) has: an endpoint's other keys can find no rule, so
    /// a flow looks up only the pairs of keys that exist (a lookup in a large index is a cache
    /// miss, and most pairs are absent).
    private var fromKeys = KeySet(), toKeys = KeySet()

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

    /// A port spec by numbers: protocol, and an inclusive range (low -1: every port).
    struct CompiledPort {
        var proto: Int32
        var low: Int32
        var high: Int32
        /// `port` -1: the flow's protocol has no ports.
        @inline(__always) func contains(proto p: Int32, port: Int32) -> Bool {
            guard p == proto else { return false }
            if low < 0 { return true }
            return port >= 0 && low <= port && port <= high
        }
    }

    /// A selector with its names resolved to numbers and its glob compiled.
    struct CompiledSelector {
        static func same(_ a: CompiledSelector, _ b: CompiledSelector) -> Bool {
            a.workload == b.workload && a.fqdnLiteral == b.fqdnLiteral && a.cidrs == b.cidrs && a.fqdnGlob == b.fqdnGlob
                && a.processes == b.processes && a.users == b.users
                && a.labels.count == b.labels.count && zip(a.labels, b.labels).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        }
        /// The inventory index standing for the named workload (-1: none named, -2: a name
        /// the policy's inventory lacks, which no endpoint has).
        var workload: Int32
        var labels: [(String, String)]
        var cidrs: [CIDR]
        var fqdnLiteral: String?
        var fqdnGlob: Glob?
        var processes: [String]
        var users: [String]
    }

    /// Rules as shared references (a candidate is looked at without copying its strings).
    final class Compiled {
        /// Whether two rules take exactly the same endpoints on each side.
        static func sameSelectors(_ a: Compiled, _ b: Compiled) -> Bool {
            CompiledSelector.same(a.from, b.from) && CompiledSelector.same(a.to, b.to)
        }
        /// The two sides, `from` then `to`, out of line: matching reads them through this
        /// pointer (reading a struct stored in a class would copy it, retaining its lists).
        let sides: UnsafeMutablePointer<CompiledSelector>
        var from: CompiledSelector { sides[0] }
        var to: CompiledSelector { sides[1] }
        let ports: [CompiledPort]
        let schedule: Schedule?
        init(from: CompiledSelector, to: CompiledSelector, ports: [CompiledPort], schedule: Schedule?) {
            sides = .allocate(capacity: 2)
            sides.initialize(to: from)
            (sides + 1).initialize(to: to)
            self.ports = ports; self.schedule = schedule
        }
        deinit {
            sides.deinitialize(count: 2)
            sides.deallocate()
        }
    }
    private var compiled: [Compiled] = []
    /// For each inventory index, the first index with the same name (what a selector names).
    private var canonical: [Int32] = []

    /// What one side of a rule names exactly, as one word (cheap to hash and compare): any
    /// (0), a workload (by index), a DNS name (by id, names interned when the policy is read),
    /// or one address (by a 62-bit hash: a rule found through a colliding hash is still
    /// checked against the endpoint, selector by selector, before it counts). 1 is no key.
    typealias EndKey = UInt64
    static let anyKey: EndKey = 0
    static let noKey: EndKey = 1
    private static let kindShift: UInt64 = 62
    @inline(__always) static func workloadKey(_ i: Int) -> EndKey { 1 << kindShift | UInt64(i) }
    @inline(__always) static func addressKey(_ a: IPAddress) -> EndKey {
        3 << kindShift | (quickHash(a.hi, a.lo, 0xADD4) & (1 << kindShift - 1))
    }
    /// Literal DNS names that some rule's side names exactly, by id.
    private var nameKeys: [String: EndKey] = [:]
    /// The key of each of the resolver's name ids, filled as ids are met (UInt64.max: not yet).
    private var resolverKeys: [EndKey] = []

    @inline(__always) private func nameKey(_ n: String) -> EndKey? { nameKeys.isEmpty ? nil : nameKeys[n] }

    /// The rule key of the resolver's name `id` (noKey when no rule names it).
    private func nameKey(id: Int32) -> EndKey {
        guard id >= 0 else { return PolicyEvaluator.noKey }
        let i = Int(id)
        if i < resolverKeys.count, resolverKeys[i] != UInt64.max { return resolverKeys[i] }
        if i >= resolverKeys.count { resolverKeys.append(contentsOf: repeatElement(UInt64.max, count: i + 1 - resolverKeys.count)) }
        let k = names.string(id).flatMap { nameKeys[$0] } ?? PolicyEvaluator.noKey
        resolverKeys[i] = k
        return k
    }

    private func endKey(_ s: Selector, workloadIndex: [String: Int]) -> EndKey {
        if let w = s.workload, s.labels.isEmpty, s.fqdn == nil, s.cidrs.isEmpty, let i = workloadIndex[w] {
            return PolicyEvaluator.workloadKey(i)
        }
        if let f = s.fqdn, s.workload == nil, s.labels.isEmpty, s.cidrs.isEmpty, PolicyEvaluator.isLiteral(f) {
            // Resolver names are lower case; selectors match names without regard to case.
            let f = f.lowercased()
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

    private func compile(_ s: Selector, workloadIndex: [String: Int]) -> CompiledSelector {
        var c = CompiledSelector(workload: -1, labels: s.labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
                                 cidrs: s.cidrs, fqdnLiteral: nil, fqdnGlob: nil, processes: s.processes, users: s.users)
        if let w = s.workload { c.workload = workloadIndex[w].map(Int32.init) ?? -2 }
        if let f = s.fqdn {
            if PolicyEvaluator.isLiteral(f) { c.fqdnLiteral = f.lowercased() } else { c.fqdnGlob = Glob(f, caseInsensitive: true) }
        }
        return c
    }

    /// Addresses and names that some rule selects (to tell "in no workload" apart).
    private var selectedAddresses = WordIndex()
    private var wideBlocks: [CIDR] = []
    private var selectedNames: Set<String> = []
    private var nameGlobs: [Glob] = []
    private var anyEndpoint = false
    private var workloadCache: WorkloadCache
    private var hasFQDNKeys: Bool { !nameKeys.isEmpty }
    private let inventoryPorts: Set<UInt16>
    private let usesHosts: Bool

    /// `cacheBits`: the workload cache has 2^cacheBits entries of 32 bytes (each endpoint's
    /// workload, by address, port class and names): small for an agent, large (20) to replay a
    /// store of a million flows.
    public init(policy: Policy, names: NameResolver = NameResolver(), cacheBits: Int = 12,
                utcOffset: @escaping (String, Double) -> Int = { _, _ in 0 }) {
        self.policy = policy
        workloadCache = WorkloadCache(bits: cacheBits)
        self.inventory = policy.inventory
        self.names = names
        self.utcOffset = utcOffset
        inventoryPorts = Set(inventory.workloads.flatMap(\.match.ports))
        usesHosts = inventory.workloads.contains { !$0.match.hosts.isEmpty }
        var workloadIndex: [String: Int] = [:]
        for (i, w) in inventory.workloads.enumerated() {
            if workloadIndex[w.name] == nil { workloadIndex[w.name] = i }
            canonical.append(Int32(workloadIndex[w.name]!))
        }
        var portEntries: [KeyedLists.Entry] = []
        var pairEntries: [KeyedLists.Entry] = []
        portEntries.reserveCapacity(policy.rules.count)
        pairEntries.reserveCapacity(policy.rules.count)
        compiled.reserveCapacity(policy.rules.count)
        let rules = policy.rules
        for i in rules.indices {
            // Fields read in place (a whole rule is a dozen references to copy).
            let from = endKey(rules[i].from, workloadIndex: workloadIndex), to = endKey(rules[i].to, workloadIndex: workloadIndex)
            fromKeys.insert(from)
            toKeys.insert(to)
            if from == PolicyEvaluator.anyKey { wildFrom = true }
            if to == PolicyEvaluator.anyKey { wildTo = true }
            pairEntries.append(KeyedLists.Entry(a: from, b: to, c: 0, item: Int32(i)))
            var ports: [CompiledPort] = []
            ports.reserveCapacity(rules[i].ports.count)
            var rangedProtos: [Int32] = []
            for spec in rules[i].ports {
                let proto = PolicyEvaluator.protocolNumber(spec.proto)
                if let l = spec.low, let h = spec.high {
                    ports.append(CompiledPort(proto: proto, low: Int32(l), high: Int32(h)))
                } else {
                    ports.append(CompiledPort(proto: proto, low: -1, high: -1))
                }
                if let l = spec.low, l == spec.high {
                    portEntries.append(KeyedLists.Entry(a: from, b: to, c: PolicyEvaluator.portWord(proto, Int32(l)), item: Int32(i)))
                } else if !rangedProtos.contains(proto) {
                    rangedProtos.append(proto)
                }
            }
            for proto in rangedProtos.sorted() {
                portEntries.append(KeyedLists.Entry(a: from, b: to, c: PolicyEvaluator.portWord(proto, -1), item: Int32(i)))
            }
            compiled.append(Compiled(from: compile(rules[i].from, workloadIndex: workloadIndex),
                                     to: compile(rules[i].to, workloadIndex: workloadIndex), ports: ports, schedule: rules[i].schedule))
            note(rules[i].from)
            note(rules[i].to)
        }
        byPort = KeyedLists(portEntries)
        // Rules between the same two selectors answer "do the endpoints match?" alike: one
        // representative each is enough (rules between the same selectors are usually
        // neighbours, as suggest writes them: the last two kept are compared).
        let compiled = self.compiled
        byPair = KeyedLists(pairEntries) { kept, i in
            kept.suffix(2).contains { Compiled.sameSelectors(compiled[Int($0)], compiled[Int(i)]) }
        }
    }

    /// An evaluator for another thread: the same policy and rule index (shared, read only),
    /// caches of its own. `names` must not change while both evaluate.
    public init(sharing other: PolicyEvaluator, cacheBits: Int = 12) {
        workloadCache = WorkloadCache(bits: cacheBits)
        policy = other.policy; inventory = other.inventory; names = other.names; utcOffset = other.utcOffset
        byPort = other.byPort; byPair = other.byPair; wildFrom = other.wildFrom; wildTo = other.wildTo
        fromKeys = other.fromKeys; toKeys = other.toKeys; compiled = other.compiled; canonical = other.canonical
        nameKeys = other.nameKeys
        selectedAddresses = other.selectedAddresses; wideBlocks = other.wideBlocks; selectedNames = other.selectedNames
        nameGlobs = other.nameGlobs; anyEndpoint = other.anyEndpoint
        inventoryPorts = other.inventoryPorts; usesHosts = other.usesHosts
    }

    /// Records what a selector selects (to tell "in no workload" apart).
    private func note(_ s: Selector) {
        // As `Selector.matchesEverything`, without building a glob.
        if let f = s.fqdn {
            if PolicyEvaluator.isEverything(f) { anyEndpoint = true }
        } else if s.workload == nil && s.labels.isEmpty && s.cidrs.isEmpty {
            anyEndpoint = true
        }
        for c in s.cidrs { if c.hostBits == 0 { selectedAddresses.findOrInsert(c.network.hi, c.network.lo, 0, 0, next: 0) } else { wideBlocks.append(c) } }
        if let f = s.fqdn { if PolicyEvaluator.isLiteral(f) { selectedNames.insert(f) } else { nameGlobs.append(Glob(f, caseInsensitive: true)) } }
    }

    /// What `Glob(f).isLiteral` says, without building the glob.
    static func isLiteral(_ f: String) -> Bool { !f.utf8.contains { $0 == 42 || $0 == 63 || $0 == 91 } }
    /// What `Glob(f).matchesEverything` says ("*", "**", …).
    static func isEverything(_ f: String) -> Bool { !f.isEmpty && f.utf8.allSatisfy { $0 == 42 } }

    @inline(__always) static func portWord(_ proto: Int32, _ port: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: proto)) << 32 | UInt64(UInt32(bitPattern: port))
    }

    /// One endpoint of one flow, with what is known of it; its DNS names are looked up only
    /// if something asks (most flows need none).
    struct Endpoint {
        var address: IPAddress
        var process: ProcessAttribution?
        var client: IPAddress?
        var t: Double
        var workload: Int?
        /// The resolver's id of the preferred name (-3: not looked up yet).
        var preferredID: Int32 = -3
        var names: [String]?
    }

    /// Every DNS name of `e` at its time, the preferred (the client's own) first.
    private func names(_ e: inout Endpoint) -> [String] {
        if let n = e.names { return n }
        var out: [String] = []
        if !names.isEmpty && names.knows(e.address) {
            if let p = names.name(for: e.address, client: e.client, at: e.t) { out.append(p) }
            for n in names.names(for: e.address, client: nil, at: e.t) where !out.contains(n) { out.append(n) }
        }
        e.names = out
        return out
    }

    private func preferredID(_ e: inout Endpoint) -> Int32 {
        if e.preferredID == -3 { e.preferredID = names.isEmpty ? -2 : names.preferredID(for: e.address, client: e.client, at: e.t) }
        return e.preferredID
    }

    private func endpoint(_ a: IPAddress, servedPort: UInt16?, client: IPAddress?, t: Double,
                          process: ProcessAttribution?) -> Endpoint {
        var e = Endpoint(address: a, process: process, client: client, t: t)
        let resolver = names
        if process == nil {
            // Decided by the address, the port class (only ports the workloads name matter)
            // and, with host globs, the names valid at `t`: cached on exactly that.
            let port: Int32 = servedPort.map { inventoryPorts.contains($0) ? Int32($0) : -3 } ?? -1
            // An answer found without looking at names holds at any time (key name 0).
            if let hit = workloadCache.find(a, port, 0) {
                e.workload = hit >= 0 ? Int(hit) : nil
                return e
            }
            // Key 2: names were looked at and the address had none (it may get some later).
            var name: UInt64 = 2
            if usesHosts && resolver.knows(a) {
                // The names a host glob sees: those valid at `t`, and the client's own.
                let own = UInt64(bitPattern: Int64(preferredID(&e)))
                name = (resolver.validSetSignature(for: a, at: t) ^ (own &* 0x9E37_79B9_7F4A_7C15)) | 1
            }
            if let hit = workloadCache.find(a, port, name) {
                e.workload = hit >= 0 ? Int(hit) : nil
            } else {
                // Whether names are looked at depends on the address and port alone (the
                // workloads before the first match are tried in order either way).
                final class Consulted { var yes = false }
                let consulted = Consulted()
                var copy = e
                let w = inventory.workloadIndex(address: a, servedPort: servedPort, process: nil, names: {
                    consulted.yes = true
                    return self.names(&copy)
                })
                e.workload = w
                workloadCache.store(a, port, consulted.yes ? name : 0, Int32(w ?? -1))
            }
        } else {
            var copy = e
            e.workload = inventory.workloadIndex(address: a, servedPort: servedPort, process: process, names: { self.names(&copy) })
        }
        return e
    }

    private func matches(_ s: UnsafePointer<CompiledSelector>, _ e: inout Endpoint) -> Bool {
        if s.pointee.workload != -1 {
            guard let i = e.workload, canonical[i] == s.pointee.workload else { return false }
        }
        if !s.pointee.labels.isEmpty {
            guard let i = e.workload else { return false }
            let wl = inventory.workloads[i]
            for (k, v) in s.pointee.labels where wl.label(k) != v { return false }
        }
        if !s.pointee.cidrs.isEmpty && !s.pointee.cidrs.contains(where: { $0.contains(e.address) }) { return false }
        if let lit = s.pointee.fqdnLiteral {
            guard names(&e).contains(where: { $0 == lit || $0.lowercased() == lit }) else { return false }
        } else if let g = s.pointee.fqdnGlob {
            guard names(&e).contains(where: { g.matches($0) }) else { return false }
        }
        if !s.pointee.processes.isEmpty || !s.pointee.users.isEmpty {
            guard let p = e.process else { return false }
            if !s.pointee.processes.isEmpty {
                let exe = p.exe.map { $0.split(separator: "/").last.map(String.init) ?? $0 }
                guard s.pointee.processes.contains(where: { $0 == p.comm || $0 == exe }) else { return false }
            }
            if !s.pointee.users.isEmpty {
                guard let u = p.user, s.pointee.users.contains(u) else { return false }
            }
        }
        return true
    }

    private func isKnown(_ e: inout Endpoint) -> Bool {
        if e.workload != nil || anyEndpoint { return true }
        if selectedAddresses.find(e.address.hi, e.address.lo, 0, 0) >= 0 || wideBlocks.contains(where: { $0.contains(e.address) }) { return true }
        if !selectedNames.isEmpty || !nameGlobs.isEmpty {
            for n in names(&e) where selectedNames.contains(n) || nameGlobs.contains(where: { $0.matches(n) }) { return true }
        }
        return false
    }

    /// The rule keys an endpoint can meet: only keys that some rule's side has (any other
    /// finds no rule). FQDN keys: first only the preferred name (the name suggest would have
    /// used); every valid name only if that allows nothing.
    private func keys(_ e: inout Endpoint, wild: Bool, allNames: Bool, present: KeySet) -> KeyList {
        var k = KeyList()
        @inline(__always) func add(_ key: EndKey) { if present.contains(key) { k.append(key) } }
        add(PolicyEvaluator.addressKey(e.address))
        if let i = e.workload { add(PolicyEvaluator.workloadKey(i)) }
        if hasFQDNKeys {
            if allNames {
                for n in names(&e) { if let id = nameKey(n) { add(id) } }
            } else {
                let id = nameKey(id: preferredID(&e))
                if id != PolicyEvaluator.noKey { add(id) }
            }
        }
        if wild { add(PolicyEvaluator.anyKey) }
        return k
    }

    /// The verdict for a client → server flow on (proto, port) at time t.
    private func decide(client c: inout Endpoint, server s: inout Endpoint, proto: Int32, port: UInt16?, t: Double) -> Verdict {
        var ck = KeyList(), sk = KeyList()
        // Whether some rule took both endpoints and the port, but its schedule was closed.
        var scheduleClosed = false
        let portKey: Int32 = port.map(Int32.init) ?? -1
        for pass in 0..<(hasFQDNKeys ? 2 : 1) {
            ck = keys(&c, wild: wildFrom, allNames: pass == 1, present: fromKeys)
            sk = keys(&s, wild: wildTo, allNames: pass == 1, present: toKeys)
            scheduleClosed = false
            // The common path: the first rule (in file order) that allows the flow.
            var best = Int.max
            for ai in 0..<ck.count {
                let a = ck[ai]
                for bi in 0..<sk.count {
                    let b = sk[bi]
                    // Exact port first, then ranges and every-port rules (port -1); a
                    // port-less flow looks only at the latter.
                    for ranged in 0..<(port == nil ? 1 : 2) {
                        let list = byPort.find(a, b, PolicyEvaluator.portWord(proto, ranged == 1 ? -1 : portKey))
                        for j in list {
                            let i = Int(byPort.items[j])
                            if i >= best { break }
                            let r = compiled[i]
                            guard r.ports.contains(where: { $0.contains(proto: proto, port: portKey) }),
                                  matches(r.sides + 1, &s), matches(r.sides, &c) else { continue }
                            if let sch = r.schedule, !sch.contains(t, utcOffset: utcOffset(sch.tz, t)) {
                                scheduleClosed = true
                                continue
                            }
                            best = i
                            break
                        }
                    }
                }
            }
            if best != Int.max { return .allowed(rule: best) }
        }
        if policy.defaultAction == .allow { return .allowed(rule: -1) }
        if scheduleClosed { return .blocked(.outsideSchedule) }
        // Blocked: does any rule between the endpoints take them both (on other ports)?
        for ai in 0..<ck.count {
            for bi in 0..<sk.count {
                for j in byPair.find(ck[ai], sk[bi], 0) {
                    let r = compiled[Int(byPair.items[j])]
                    if matches(r.sides + 1, &s), matches(r.sides, &c) { return .blocked(.portNotAllowed) }
                }
            }
        }
        if !isKnown(&c) || !isKnown(&s) { return .blocked(.noWorkload) }
        return .blocked(.noRule)
    }

    /// The verdict on one flow.
    public func evaluate(_ f: GraphFlow) -> Verdict {
        let proto = Int32(f.ipProto.rawValue)
        let port = f.servicePort
        var client = endpoint(f.origH, servedPort: nil, client: nil, t: f.ts, process: f.origProcess)
        var server = endpoint(f.respH, servedPort: port, client: f.origH, t: f.ts, process: f.respProcess)
        let v = decide(client: &client, server: &server, proto: proto, port: port, t: f.ts)
        if !v.isBlocked || f.directionKnown { return v }
        // Direction unknown: the other orientation, with the originator's port as the service.
        let altPort: UInt16? = f.ipProto.rawValue == 6 || f.ipProto.rawValue == 17 ? f.origP : port
        var c2 = endpoint(f.respH, servedPort: nil, client: nil, t: f.ts, process: f.respProcess)
        var s2 = endpoint(f.origH, servedPort: altPort, client: f.respH, t: f.ts, process: f.origProcess)
        let v2 = decide(client: &c2, server: &s2, proto: proto, port: altPort, t: f.ts)
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

/// A handful of rule keys, inline (an endpoint has at most an address, a workload, the
/// preferred name and "any"; every name only on the second pass).
struct KeyList {
    private var inline: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private var more: [UInt64] = []
    private(set) var count = 0

    @inline(__always) mutating func append(_ k: UInt64) {
        switch count {
        case 0: inline.0 = k
        case 1: inline.1 = k
        case 2: inline.2 = k
        case 3: inline.3 = k
        default: more.append(k)
        }
        count += 1
    }

    @inline(__always) subscript(i: Int) -> UInt64 {
        switch i {
        case 0: return inline.0
        case 1: return inline.1
        case 2: return inline.2
        case 3: return inline.3
        default: return more[i - 4]
        }
    }
}

/// A set of words, by open addressing (no hashing through `Hasher`).
struct KeySet {
    private var slots: [UInt64] = [UInt64.max]
    private var mask = 0
    private var count = 0
    /// UInt64.max is the empty slot; it is kept aside.
    private var hasMax = false

    @inline(__always) private static func slot(_ k: UInt64, _ mask: Int) -> Int { Int(truncatingIfNeeded: quickHash(k, 0x4B5, 0)) & mask }

    mutating func insert(_ k: UInt64) {
        if k == UInt64.max { hasMax = true; return }
        if (count + 1) * 2 > slots.count { grow() }
        var i = KeySet.slot(k, mask)
        while slots[i] != UInt64.max {
            if slots[i] == k { return }
            i = (i + 1) & mask
        }
        slots[i] = k
        count += 1
    }

    @inline(__always) func contains(_ k: UInt64) -> Bool {
        if k == UInt64.max { return hasMax }
        var i = KeySet.slot(k, mask)
        while true {
            let s = slots[i]
            if s == k { return true }
            if s == UInt64.max { return false }
            i = (i + 1) & mask
        }
    }

    private mutating func grow() {
        let old = slots
        slots = [UInt64](repeating: UInt64.max, count: max(16, old.count * 2))
        mask = slots.count - 1
        count = 0
        for k in old where k != UInt64.max { insert(k) }
    }
}

/// Lists of items (rule indices) under keys of three words, in one flat array, found by
/// open addressing. Built once; each list keeps its items in the order they were given.
struct KeyedLists {
    struct Entry { var a: UInt64; var b: UInt64; var c: UInt64; var item: Int32 }
    private struct Slot { var a: UInt64 = 0; var b: UInt64 = 0; var c: UInt64 = 0; var start: Int32 = 0; var count: Int32 = 0 }
    private var slots: [Slot] = [Slot()]
    private var mask = 0
    private(set) var items: [Int32] = []

    init() {}

    /// `skip(kept, item)`: leave `item` out of a list that already holds `kept`.
    init(_ entries: [Entry], skip: ((ArraySlice<Int32>, Int32) -> Bool)? = nil) {
        var cap = 16
        while cap < entries.count * 2 { cap <<= 1 }
        slots = [Slot](repeating: Slot(), count: cap)
        mask = cap - 1
        // Count per key, lay the lists out one after another, then fill them.
        var at = [Int](repeating: 0, count: entries.count)
        for (n, e) in entries.enumerated() {
            let i = findOrInsert(e.a, e.b, e.c)
            slots[i].count += 1
            at[n] = i
        }
        var start: Int32 = 0
        for i in slots.indices where slots[i].count > 0 {
            slots[i].start = start
            start += slots[i].count
            slots[i].count = 0
        }
        items = [Int32](repeating: 0, count: Int(start))
        for (n, e) in entries.enumerated() {
            let i = at[n]
            let s = Int(slots[i].start), c = Int(slots[i].count)
            if let skip, skip(items[s..<(s + c)], e.item) { continue }
            items[s + c] = e.item
            slots[i].count += 1
        }
    }

    @inline(__always) private static func hash(_ a: UInt64, _ b: UInt64, _ c: UInt64) -> Int {
        Int(truncatingIfNeeded: quickHash(a, b, c))
    }

    private mutating func findOrInsert(_ a: UInt64, _ b: UInt64, _ c: UInt64) -> Int {
        var i = KeyedLists.hash(a, b, c) & mask
        while slots[i].count > 0 {
            if slots[i].a == a && slots[i].b == b && slots[i].c == c { return i }
            i = (i + 1) & mask
        }
        slots[i].a = a; slots[i].b = b; slots[i].c = c
        return i
    }

    /// The positions in `items` of the list under (a, b, c); empty when there is none.
    @inline(__always) func find(_ a: UInt64, _ b: UInt64, _ c: UInt64) -> Range<Int> {
        var i = KeyedLists.hash(a, b, c) & mask
        while true {
            let s = slots[i]
            if s.count == 0 { return 0..<0 }
            if s.a == a && s.b == b && s.c == c { return Int(s.start)..<Int(s.start + s.count) }
            i = (i + 1) & mask
        }
    }
}

/// The workload of an endpoint by (address, port class, name-set signature): a direct-mapped
/// cache (a miss recomputes; entries are overwritten, never wrong).
struct WorkloadCache {
    private struct Slot { var hi: UInt64 = 0; var lo: UInt64 = 0; var name: UInt64 = 0; var port: Int32 = Int32.min; var value: Int32 = 0 }
    private var slots: [Slot]
    private let mask: Int

    /// 2^bits slots of 32 bytes.
    init(bits: Int = 12) {
        slots = [Slot](repeating: Slot(), count: 1 << bits)
        mask = (1 << bits) - 1
    }

    @inline(__always) private func index(_ a: IPAddress, _ port: Int32, _ name: UInt64) -> Int {
        Int(truncatingIfNeeded: quickHash(a.hi, a.lo, name ^ UInt64(UInt32(bitPattern: port)))) & mask
    }

    @inline(__always) func find(_ a: IPAddress, _ port: Int32, _ name: UInt64) -> Int32? {
        let s = slots[index(a, port, name)]
        return s.port == port && s.hi == a.hi && s.lo == a.lo && s.name == name ? s.value : nil
    }

    @inline(__always) mutating func store(_ a: IPAddress, _ port: Int32, _ name: UInt64, _ value: Int32) {
        slots[index(a, port, name)] = Slot(hi: a.hi, lo: a.lo, name: name, port: port, value: value)
    }
}

/// A fast mix of three words for in-memory tables (multiply and xor-shift per word; not
/// stable across versions, never written anywhere).
@inline(__always) func quickHash(_ a: UInt64, _ b: UInt64, _ c: UInt64) -> UInt64 {
    var h = (a ^ 0x9E37_79B9_7F4A_7C15) &* 0xBF58_476D_1CE4_E5B9
    h = (h ^ (h >> 31) ^ b) &* 0x94D0_49BB_1331_11EB
    h = (h ^ (h >> 29) ^ c) &* 0xBF58_476D_1CE4_E5B9
    return h ^ (h >> 32)
}

