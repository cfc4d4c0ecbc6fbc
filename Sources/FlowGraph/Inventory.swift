import FlowCore

/// Where a definition came from in its file (for messages that name file, line and column).
public struct SourceMark: Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public init(file: String, line: Int, column: Int) { self.file = file; self.line = line; self.column = column }
    public var description: String { "\(file):\(line):\(column)" }
}

/// A named workload and the endpoints that belong to it (the inventory's and the policy's
/// `workloads:` section).
public struct Workload: Sendable, Equatable {
    public var name: String
    /// Labels, sorted by key.
    public var labels: [(key: String, value: String)]
    public var match: WorkloadMatch
    public var mark: SourceMark?

    public init(name: String, labels: [(key: String, value: String)] = [], match: WorkloadMatch, mark: SourceMark? = nil) {
        self.name = name
        self.labels = labels.sorted { $0.key < $1.key }
        self.match = match
        self.mark = mark
    }

    public func label(_ key: String) -> String? { labels.first { $0.key == key }?.value }

    public static func == (a: Workload, b: Workload) -> Bool {
        a.name == b.name && a.match == b.match && a.labels.map(\.key) == b.labels.map(\.key)
            && a.labels.map(\.value) == b.labels.map(\.value)
    }
}

/// What makes an endpoint part of a workload. The identity criteria (cidrs, hosts, processes,
/// users, cgroups) are alternatives: any one that matches is enough. `ports` narrows: when
/// given, the endpoint must also be the server of the flow on one of these ports. A match with
/// only `ports` takes every server on those ports.
public struct WorkloadMatch: Sendable, Equatable {
    public var cidrs: [CIDR] = []
    /// Globs over DNS names seen on the wire for the endpoint (case-insensitive).
    public var hosts: [Glob] = []
    /// comm, or the basename of exe (exact or glob).
    public var processes: [Glob] = []
    public var users: [Glob] = []
    /// Globs over the cgroup path (container scopes, systemd units).
    public var cgroups: [Glob] = []
    public var ports: [UInt16] = []

    public init(cidrs: [CIDR] = [], hosts: [Glob] = [], processes: [Glob] = [], users: [Glob] = [],
                cgroups: [Glob] = [], ports: [UInt16] = []) {
        self.cidrs = cidrs; self.hosts = hosts; self.processes = processes; self.users = users
        self.cgroups = cgroups; self.ports = ports
    }

    public var hasIdentityCriteria: Bool {
        !cidrs.isEmpty || !hosts.isEmpty || !processes.isEmpty || !users.isEmpty || !cgroups.isEmpty
    }

    public var isEmpty: Bool { !hasIdentityCriteria && ports.isEmpty }

    func matches(_ e: EndpointFacts) -> Bool {
        if !ports.isEmpty {
            guard let p = e.servedPort, ports.contains(p) else { return false }
            if !hasIdentityCriteria { return true }
        }
        for c in cidrs where c.contains(e.address) { return true }
        if !hosts.isEmpty {
            for n in e.names.list { for g in hosts where g.matches(n) { return true } }
        }
        if let p = e.process {
            if !processes.isEmpty {
                let exeBase = p.exe.map { $0.split(separator: "/").last.map(String.init) ?? $0 }
                for g in processes {
                    if let c = p.comm, g.matches(c) { return true }
                    if let x = exeBase, g.matches(x) { return true }
                }
            }
            if let u = p.user { for g in users where g.matches(u) { return true } }
            if !cgroups.isEmpty {
                // cgroup paths from /proc start with "/"; patterns may leave it out.
                let path = p.cgroup.map { $0.hasPrefix("/") ? String($0.dropFirst()) : $0 }
                for cand in [p.cgroup, path, p.unit, p.container].compactMap({ $0 }) {
                    for g in cgroups where g.matches(cand) { return true }
                }
            }
        }
        return false
    }
}

/// What is known of one endpoint of one flow when its workload is decided.
struct EndpointFacts {
    var address: IPAddress
    /// The flow's server port, when this endpoint is the server.
    var servedPort: UInt16?
    /// DNS names valid for the address when the flow happened, computed when first asked.
    var names: LazyNames
    var process: ProcessAttribution?
}

/// The DNS names of an endpoint, looked up only if a matcher needs them (and then once).
final class LazyNames {
    private let compute: () -> [String]
    private(set) var consulted = false
    private var cached: [String] = []
    init(_ compute: @escaping () -> [String]) { self.compute = compute }
    var list: [String] {
        if !consulted { cached = compute(); consulted = true }
        return cached
    }
}

/// The inventory: workloads in file order (the first that matches wins).
public struct Inventory: Sendable, Equatable {
    public var workloads: [Workload]
    public init(workloads: [Workload] = []) { self.workloads = workloads }

    var usesPorts: Bool { workloads.contains { !$0.match.ports.isEmpty } }

    /// The index of the first workload that `e` belongs to.
    func firstMatch(_ e: EndpointFacts) -> Int? {
        for (i, w) in workloads.enumerated() where w.match.matches(e) { return i }
        return nil
    }
}

extension Inventory {
    /// The index of the first workload that an endpoint belongs to. `servedPort` is the
    /// flow's server port when the endpoint is the server; `names` (DNS names valid for the
    /// address at the flow's time) is called only if a workload with `hosts` is reached.
    public func workloadIndex(address: IPAddress, servedPort: UInt16?, process: ProcessAttribution?,
                              names: @escaping () -> [String]) -> Int? {
        firstMatch(EndpointFacts(address: address, servedPort: servedPort, names: LazyNames(names), process: process))
    }
}
