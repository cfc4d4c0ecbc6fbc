import FlowCore

/// How a workload got its identity.
public enum WorkloadKind: String, Sendable, CaseIterable, Comparable {
    /// Named by the inventory.
    case inventory
    /// A process on a host (agent data): host + exe/comm, user, container or unit.
    case process
    /// A DNS name that the endpoint's clients resolved.
    case dns
    /// A private-range (or otherwise non-public) address, as itself.
    case address
    /// Public addresses with no other identity.
    case external

    public static func < (a: WorkloadKind, b: WorkloadKind) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// How public endpoints that the inventory does not name are grouped.
public enum ExternalGrouping: String, Sendable, CaseIterable {
    /// By the DNS name their clients resolved; unnamed ones per /24 (IPv6: /48).
    case name
    /// By the registrable domain of that name (api.stripe.com → stripe.com); unnamed per prefix.
    case domain
    /// Per /24 (IPv6: /48), names ignored.
    case prefix
    /// All in one `external` workload.
    case all
}

public struct GraphOptions: Sendable {
    public var groupExternal: ExternalGrouping = .name
    public var externalPrefixV4 = 24
    public var externalPrefixV6 = 48
    public var publicSuffixes = PublicSuffixList()
    public init() {}
}

/// One flow as the graph needs it.
public struct GraphFlow: Sendable {
    public var ts: Double
    public var duration: Double
    public var origH: IPAddress
    public var origP: UInt16
    public var respH: IPAddress
    public var respP: UInt16
    public var ipProto: IPProtocol
    public var origPkts: UInt64
    public var respPkts: UInt64
    public var origIPBytes: UInt64
    public var respIPBytes: UInt64
    public var history: String
    public var flipped: Bool
    public var origProcess: ProcessAttribution?
    public var respProcess: ProcessAttribution?
    /// The host whose agent saw the flow (names process workloads); "" for captures.
    public var hostID: String
    /// The flow's uid, when the reader asked for it (simulation reports name flows by it).
    public var uid: String = ""

    public init(ts: Double, duration: Double, origH: IPAddress, origP: UInt16, respH: IPAddress, respP: UInt16,
                ipProto: IPProtocol, origPkts: UInt64, respPkts: UInt64, origIPBytes: UInt64, respIPBytes: UInt64,
                history: String, flipped: Bool, origProcess: ProcessAttribution? = nil,
                respProcess: ProcessAttribution? = nil, hostID: String = "") {
        self.ts = ts; self.duration = duration; self.origH = origH; self.origP = origP; self.respH = respH
        self.respP = respP; self.ipProto = ipProto; self.origPkts = origPkts; self.respPkts = respPkts
        self.origIPBytes = origIPBytes; self.respIPBytes = respIPBytes; self.history = history
        self.flipped = flipped; self.origProcess = origProcess; self.respProcess = respProcess; self.hostID = hostID
    }

    public init(_ r: FlowRecord, hostID: String = "") {
        ts = r.ts; duration = r.duration; origH = r.origH; origP = r.origP; respH = r.respH; respP = r.respP
        ipProto = r.ipProto; origPkts = r.origPkts; respPkts = r.respPkts; origIPBytes = r.origIPBytes
        respIPBytes = r.respIPBytes; history = r.history; flipped = r.flipped
        origProcess = r.origProcess; respProcess = r.respProcess; self.hostID = hostID; uid = r.uid
    }

    /// Whether the flow shows who is client and who is server, without guessing:
    /// TCP when the handshake was seen (the originator's SYN, or the responder's SYN-ACK);
    /// UDP when no port heuristic chose the originator (the first packet's sender is the
    /// client); ICMP for request types (echo, timestamp, solicitations); never for other
    /// protocols (GRE, ESP, … are peer to peer).
    public var directionKnown: Bool {
        switch ipProto.rawValue {
        case 6:
            return history.utf8.contains(UInt8(ascii: "S")) || history.utf8.contains(UInt8(ascii: "h"))
        case 17:
            return !flipped
        case 1:
            return [8, 10, 13, 15, 17].contains(origP)
        case 58:
            return [128, 133, 135, 139].contains(origP)
        default:
            return false
        }
    }

    /// The service "port" of an edge: the responder's port for TCP and UDP, the request type
    /// for ICMP (Zeek's orig_p), none for other protocols.
    public var servicePort: UInt16? {
        switch ipProto.rawValue {
        case 6, 17: return respP
        case 1, 58: return origP
        default: return nil
        }
    }
}

/// The protocol's name on edges and in rules.
public func protocolName(_ p: IPProtocol) -> String {
    switch p.rawValue {
    case 6: return "tcp"
    case 17: return "udp"
    case 1: return "icmp"
    case 58: return "icmp6"
    case 47: return "gre"
    case 50: return "esp"
    case 51: return "ah"
    case 132: return "sctp"
    default: return "ip-\(p.rawValue)"
    }
}

public struct GraphNode: Sendable, Equatable {
    public var id: String
    public var name: String
    public var kind: WorkloadKind
    /// Labels, sorted by key.
    public var labels: [(key: String, value: String)]
    /// Distinct endpoint addresses seen in this workload.
    public var endpoints: Int
    /// False when `endpoints` is an estimate (more than 256 distinct).
    public var endpointsExact: Bool

    public func label(_ key: String) -> String? { labels.first { $0.key == key }?.value }

    public static func == (a: GraphNode, b: GraphNode) -> Bool {
        a.id == b.id && a.name == b.name && a.kind == b.kind && a.endpoints == b.endpoints
            && a.labels.map(\.key) == b.labels.map(\.key) && a.labels.map(\.value) == b.labels.map(\.value)
    }
}

public struct GraphEdge: Sendable, Equatable {
    /// Node ids. For an edge of unknown direction, `from` < `to` and neither is the client.
    public var from: String
    public var to: String
    /// The server port (ICMP: the request type); nil for unknown direction and portless protocols.
    public var port: UInt16?
    public var proto: String
    public var directionKnown: Bool
    public var flows: UInt64
    public var packetsToServer: UInt64
    public var packetsToClient: UInt64
    /// IP bytes (headers included), as the network carried them.
    public var bytesToServer: UInt64
    public var bytesToClient: UInt64
    public var firstSeen: Double
    public var lastSeen: Double
    /// Distinct client endpoints (for unknown direction: distinct endpoints on the `from` side).
    public var clients: Int
    public var clientsExact: Bool
    public var clientProcesses: [String]
    public var clientUsers: [String]
    public var serverProcesses: [String]
    public var serverUsers: [String]
    /// Flows on this edge that a policy would block (`graph --policy`).
    public var blockedFlows: UInt64 = 0
    /// Unknown direction only: each (originator side, responder port) seen — `fromIsOriginator`
    /// true when the flow's originator was in `from`. Empty if there were more than 32.
    public var seenAsOriginated: [(fromIsOriginator: Bool, port: UInt16)] = []

    public var packets: UInt64 { packetsToServer + packetsToClient }

    public static func == (a: GraphEdge, b: GraphEdge) -> Bool {
        a.from == b.from && a.to == b.to && a.port == b.port && a.proto == b.proto && a.directionKnown == b.directionKnown
            && a.flows == b.flows && a.packetsToServer == b.packetsToServer && a.packetsToClient == b.packetsToClient
            && a.bytesToServer == b.bytesToServer && a.bytesToClient == b.bytesToClient && a.firstSeen == b.firstSeen
            && a.lastSeen == b.lastSeen && a.clients == b.clients && a.clientProcesses == b.clientProcesses
            && a.clientUsers == b.clientUsers && a.serverProcesses == b.serverProcesses && a.serverUsers == b.serverUsers
            && a.blockedFlows == b.blockedFlows
    }
    public var bytes: UInt64 { bytesToServer + bytesToClient }
}

/// Workloads and the edges between them.
public struct WorkloadGraph: Sendable, Equatable {
    /// Sorted by id.
    public var nodes: [GraphNode]
    /// Sorted by (from, to, proto, port), edges of known direction first.
    public var edges: [GraphEdge]
    /// Flows that went into the graph.
    public var flows: UInt64

    public func node(_ id: String) -> GraphNode? { nodes.first { $0.id == id } }

    /// Drops edges with fewer than `minFlows` flows and every node (and its edges) whose name
    /// or id matches one of `exclude`; then nodes left without edges.
    public func filtered(minFlows: UInt64 = 0, exclude: [Glob] = []) -> WorkloadGraph {
        let excluded = Set(nodes.filter { n in exclude.contains { $0.matches(n.name) || $0.matches(n.id) } }.map(\.id))
        let kept = edges.filter { $0.flows >= minFlows && !excluded.contains($0.from) && !excluded.contains($0.to) }
        var used = Set<String>()
        for e in kept { used.insert(e.from); used.insert(e.to) }
        return WorkloadGraph(nodes: nodes.filter { used.contains($0.id) }, edges: kept, flows: flows)
    }
}

/// Builds a workload graph from flows, one at a time; memory grows with workloads and edges.
public final class GraphBuilder {
    public let inventory: Inventory
    public let names: NameResolver
    public let options: GraphOptions

    private struct NodeAcc {
        var id: String
        var name: String
        var kind: WorkloadKind
        var labels: [(key: String, value: String)]
        var endpoints = DistinctCounter()
    }
    private struct EdgeKey {
        var from: Int32
        var to: Int32
        var port: Int32
        var proto: UInt8
        var known: Bool
    }
    private struct EdgeAcc {
        var flows: UInt64 = 0
        var packetsToServer: UInt64 = 0, packetsToClient: UInt64 = 0
        var bytesToServer: UInt64 = 0, bytesToClient: UInt64 = 0
        var first = Double.infinity, last = -Double.infinity
        var clients = DistinctCounter()
        var clientProcesses: Set<String> = []
        var clientUsers: Set<String> = []
        var serverProcesses: Set<String> = []
        var serverUsers: Set<String> = []
        var blockedFlows: UInt64 = 0
        /// Unknown direction only: the responder ports as seen, with bit 16 set when the
        /// originator was on the `from` side (at most 32; more and `seenPortsOverflow`).
        var seenPorts: Set<UInt32> = []
        var seenPortsOverflow = false
    }
    private var nodes: [NodeAcc] = []
    private var nodeIndex: [String: Int32] = [:]
    /// Edges: keys and accumulators in arrays (a growing table moves small entries only).
    private var edgeIndex = WordIndex()
    private var edgeKeys: [EdgeKey] = []
    private var edgeAccs: [EdgeAcc] = []
    /// Workloads decided by the address (and served port) alone, when nothing else can change
    /// the answer: bounded, cleared when full.
    private var addressCache = WordIndex()
    private var nameCache = WordIndex()
    private static let addressCacheLimit = 1 << 18
    private struct AddressKey {
        var address: IPAddress
        var port: Int32
        var name: Int32
        var names: UInt64
        /// As four words (the caches' keys).
        var a: UInt64 { address.hi }
        var b: UInt64 { address.lo }
        var c: UInt64 { UInt64(UInt32(bitPattern: port)) << 32 | UInt64(UInt32(bitPattern: name)) }
        var d: UInt64 { names }
    }
    private lazy var usesHosts = inventory.workloads.contains { !$0.match.hosts.isEmpty }
    private lazy var inventoryPorts = Set(inventory.workloads.flatMap(\.match.ports))
    public private(set) var flowCount: UInt64 = 0

    public init(inventory: Inventory = Inventory(), names: NameResolver = NameResolver(), options: GraphOptions = GraphOptions()) {
        self.inventory = inventory
        self.names = names
        self.options = options
    }

    private func node(id: String, name: String, kind: WorkloadKind, labels: [(key: String, value: String)] = []) -> Int32 {
        if let i = nodeIndex[id] { return i }
        let i = Int32(nodes.count)
        nodes.append(NodeAcc(id: id, name: name, kind: kind, labels: labels))
        nodeIndex[id] = i
        return i
    }

    /// The workload of one endpoint of a flow at time `t`. `client` is the flow's client when
    /// this endpoint is its server (whose own DNS answers name it first).
    private func workload(_ address: IPAddress, servedPort: UInt16?, client: IPAddress?, t: Double,
                          process: ProcessAttribution?, host: String) -> Int32 {
        guard process == nil else {
            return resolve(address, servedPort: servedPort, client: client, t: t, process: process, host: host).node
        }
        // Without process data the answer depends on the address and the served port (when the
        // inventory has ports) — and, only if resolving it consulted DNS names, on the
        // preferred name at `t` and the set of names valid at `t`. Two caches, keyed on exactly
        // that; both bounded.
        // Only ports the inventory names can change the answer: every other port is one class.
        let port: Int32
        if let p = servedPort {
            port = inventoryPorts.contains(p) ? Int32(p) : -3
        } else {
            port = -1
        }
        let plain = AddressKey(address: address, port: port, name: -1, names: 0)
        let hit = addressCache.find(plain.a, plain.b, plain.c, plain.d)
        if hit >= 0 { return hit }
        var named = plain
        // -2: no answer ever named the address (yet: a later answer makes a different key).
        named.name = names.isEmpty ? -2 : names.preferredID(for: address, client: client, at: t)
        if usesHosts && named.name != -2 { named.names = names.validSetSignature(for: address, at: t) }
        let namedHit = nameCache.find(named.a, named.b, named.c, named.d)
        if namedHit >= 0 { return namedHit }
        let (node, usedNames) = resolve(address, servedPort: servedPort, client: client, t: t, process: nil, host: host)
        if usedNames {
            if nameCache.count >= GraphBuilder.addressCacheLimit { nameCache.removeAll() }
            _ = nameCache.findOrInsert(named.a, named.b, named.c, named.d, next: node)
        } else {
            if addressCache.count >= GraphBuilder.addressCacheLimit { addressCache.removeAll() }
            _ = addressCache.findOrInsert(plain.a, plain.b, plain.c, plain.d, next: node)
        }
        return node
    }

    /// The workload of an endpoint, and whether DNS names were consulted to decide it (if not,
    /// the answer holds for the address at any time).
    private func resolve(_ address: IPAddress, servedPort: UInt16?, client: IPAddress?, t: Double,
                         process: ProcessAttribution?, host: String) -> (node: Int32, usedNames: Bool) {
        let resolver = names
        let lazy = LazyNames { resolver.isEmpty ? [] : resolver.validNames(for: address, at: t) }
        // 1. The inventory, first match in file order.
        if !inventory.workloads.isEmpty {
            let facts = EndpointFacts(address: address, servedPort: servedPort, names: lazy, process: process)
            if let i = inventory.firstMatch(facts) {
                let w = inventory.workloads[i]
                return (node(id: "workload:" + w.name, name: w.name, kind: .inventory, labels: w.labels), lazy.consulted)
            }
        }
        // 2. Process identity (agent data).
        if let p = process, let program = p.exe.flatMap({ $0.split(separator: "/").last.map(String.init) }) ?? p.comm {
            let h = host.isEmpty ? address.description : host
            var labels: [(key: String, value: String)] = [("host", h)]
            var name = "\(program)@\(h)"
            let scope = p.container.map { "container " + String($0.prefix(12)) } ?? p.unit
            if let c = p.container { labels.append(("container", String(c.prefix(12)))) }
            if let u = p.unit { labels.append(("unit", u)) }
            if let u = p.user { labels.append(("user", u)) }
            if let s = scope { name += " (\(s))" }
            let id = "process:\(h)/\(program)/\(p.user ?? "")/\(p.container ?? p.unit ?? "")"
            return (node(id: id, name: name, kind: .process, labels: labels), lazy.consulted)
        }
        let isPublic = address.isPublic
        // 3. A DNS name its clients resolved (the flow's client's own answer first).
        if !isPublic || (options.groupExternal != .prefix && options.groupExternal != .all) {
            let preferred = resolver.isEmpty ? -1 : resolver.preferredID(for: address, client: client, at: t)
            if let n = resolver.string(preferred) {
                let domain = options.publicSuffixes.registrableDomain(n)
                let shown = isPublic && options.groupExternal == .domain ? domain : n
                let labels: [(key: String, value: String)] = [("domain", domain), ("scope", isPublic ? "external" : "internal")]
                return (node(id: "dns:" + shown, name: shown, kind: .dns, labels: labels), true)
            }
        }
        // 4. A private-range address as itself.
        if !isPublic {
            return (node(id: "ip:" + address.description, name: address.description, kind: .address), true)
        }
        // 5. Public addresses: external, per prefix (or all together).
        if options.groupExternal == .all {
            return (node(id: "external", name: "external", kind: .external, labels: [("scope", "external")]), lazy.consulted)
        }
        let len = address.isV6 ? options.externalPrefixV6 : options.externalPrefixV4
        let prefix = CIDR(network: address, length: len).description
        return (node(id: "external:" + prefix, name: "external " + prefix, kind: .external, labels: [("scope", "external")]), true)
    }

    @inline(__always)
    private static func hash(_ a: IPAddress) -> UInt64 { mix64(a.hi, a.lo) }

    private static func programName(_ p: ProcessAttribution?) -> String? {
        guard let p else { return nil }
        return p.exe.flatMap { $0.split(separator: "/").last.map(String.init) } ?? p.comm
    }

    public func add(_ f: GraphFlow, blocked: Bool = false) {
        flowCount += 1
        let known = f.directionKnown
        let port = f.servicePort
        let client = workload(f.origH, servedPort: nil, client: nil, t: f.ts, process: f.origProcess, host: f.hostID)
        let server = workload(f.respH, servedPort: known ? port : nil, client: f.origH, t: f.ts, process: f.respProcess,
                              host: f.hostID)
        nodes[Int(client)].endpoints.insert(GraphBuilder.hash(f.origH))
        nodes[Int(server)].endpoints.insert(GraphBuilder.hash(f.respH))
        var from = client, to = server
        var toServerPkts = f.origPkts, toClientPkts = f.respPkts
        var toServerBytes = f.origIPBytes, toClientBytes = f.respIPBytes
        var clientAddr = f.origH
        var cp = f.origProcess, sp = f.respProcess
        var origIsFrom = true
        if !known && nodes[Int(from)].id > nodes[Int(to)].id {
            origIsFrom = false
            // Unknown direction: a canonical order, so A–B and B–A are one edge.
            swap(&from, &to)
            swap(&toServerPkts, &toClientPkts)
            swap(&toServerBytes, &toClientBytes)
            clientAddr = f.respH
            swap(&cp, &sp)
        }
        let key = EdgeKey(from: from, to: to, port: known ? Int32(port ?? 0) - (port == nil ? 1 : 0) : -1,
                          proto: f.ipProto.rawValue, known: known)
        let w0 = UInt64(UInt32(bitPattern: key.from)) << 32 | UInt64(UInt32(bitPattern: key.to))
        let w1 = UInt64(UInt32(bitPattern: key.port)) << 16 | UInt64(key.proto) << 1 | (key.known ? 1 : 0)
        let e = Int(edgeIndex.findOrInsert(w0, w1, 0, 0, next: Int32(edgeAccs.count)))
        if e == edgeAccs.count {
            edgeKeys.append(key)
            edgeAccs.append(EdgeAcc())
        }
        GraphBuilder.count(&edgeAccs[e], f, toServerPkts, toClientPkts, toServerBytes, toClientBytes,
                           clientAddr, cp, sp, blocked: blocked, seen: known ? nil : (origIsFrom ? 1 << 16 : 0) | UInt32(f.respP))
    }

    /// Adds one flow to an edge, in place in the dictionary (no copy of the accumulator).
    private static func count(_ e: inout EdgeAcc, _ f: GraphFlow, _ toServerPkts: UInt64, _ toClientPkts: UInt64,
                              _ toServerBytes: UInt64, _ toClientBytes: UInt64, _ clientAddr: IPAddress,
                              _ cp: ProcessAttribution?, _ sp: ProcessAttribution?, blocked: Bool, seen: UInt32?) {
        e.flows += 1
        if blocked { e.blockedFlows += 1 }
        if let seen, !e.seenPortsOverflow, !e.seenPorts.contains(seen) {
            if e.seenPorts.count >= 32 { e.seenPortsOverflow = true; e.seenPorts = [] } else { e.seenPorts.insert(seen) }
        }
        e.packetsToServer &+= toServerPkts
        e.packetsToClient &+= toClientPkts
        e.bytesToServer &+= toServerBytes
        e.bytesToClient &+= toClientBytes
        e.first = min(e.first, f.ts)
        e.last = max(e.last, f.ts + f.duration)
        e.clients.insert(GraphBuilder.hash(clientAddr))
        if let cp {
            if let n = programName(cp) { e.clientProcesses.insert(n) }
            if let u = cp.user { e.clientUsers.insert(u) }
        }
        if let sp {
            if let n = programName(sp) { e.serverProcesses.insert(n) }
            if let u = sp.user { e.serverUsers.insert(u) }
        }
    }

    /// The graph so far, sorted.
    public func build() -> WorkloadGraph {
        let order = nodes.indices.sorted { nodes[$0].id < nodes[$1].id }
        var rank = [Int32](repeating: 0, count: nodes.count)
        for (r, i) in order.enumerated() { rank[i] = Int32(r) }
        let outNodes = order.map { i in
            let n = nodes[i]
            return GraphNode(id: n.id, name: n.name, kind: n.kind, labels: n.labels, endpoints: n.endpoints.count,
                             endpointsExact: n.endpoints.isExact)
        }
        // Edges in GraphEdge.order, compared on node ranks (integers) rather than id strings.
        let keys = edgeKeys
        let sorted = keys.indices.sorted { x, y in
            let a = keys[x], b = keys[y]
            if a.known != b.known { return a.known }
            if rank[Int(a.from)] != rank[Int(b.from)] { return rank[Int(a.from)] < rank[Int(b.from)] }
            if rank[Int(a.to)] != rank[Int(b.to)] { return rank[Int(a.to)] < rank[Int(b.to)] }
            let pa = protocolName(IPProtocol(rawValue: a.proto)), pb = protocolName(IPProtocol(rawValue: b.proto))
            if pa != pb { return pa < pb }
            return a.port < b.port
        }
        var outEdges: [GraphEdge] = []
        outEdges.reserveCapacity(edgeAccs.count)
        for i in sorted {
            let k = keys[i], e = edgeAccs[i]
            outEdges.append(GraphEdge(
                from: nodes[Int(k.from)].id, to: nodes[Int(k.to)].id,
                port: k.port >= 0 ? UInt16(k.port) : nil, proto: protocolName(IPProtocol(rawValue: k.proto)),
                directionKnown: k.known, flows: e.flows, packetsToServer: e.packetsToServer,
                packetsToClient: e.packetsToClient, bytesToServer: e.bytesToServer, bytesToClient: e.bytesToClient,
                firstSeen: e.first, lastSeen: e.last, clients: e.clients.count, clientsExact: e.clients.isExact,
                clientProcesses: e.clientProcesses.sorted(), clientUsers: e.clientUsers.sorted(),
                serverProcesses: e.serverProcesses.sorted(), serverUsers: e.serverUsers.sorted(),
                blockedFlows: e.blockedFlows,
                seenAsOriginated: e.seenPorts.sorted().map { ($0 >> 16 == 1, UInt16(truncatingIfNeeded: $0)) }))
        }
        return WorkloadGraph(nodes: outNodes, edges: outEdges, flows: flowCount)
    }
}

extension GraphEdge {
    /// Known direction first, then (from, to, proto, port).
    public static func order(_ a: GraphEdge, _ b: GraphEdge) -> Bool {
        if a.directionKnown != b.directionKnown { return a.directionKnown }
        if a.from != b.from { return a.from < b.from }
        if a.to != b.to { return a.to < b.to }
        if a.proto != b.proto { return a.proto < b.proto }
        return (a.port.map(Int.init) ?? -1) < (b.port.map(Int.init) ?? -1)
    }
}
