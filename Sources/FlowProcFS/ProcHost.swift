import FlowCore
import FlowHost

#if canImport(Glibc)
import Glibc
#endif

/// Reads /proc (or a copy of it, for tests) to find which process owns a socket.
///
/// Parsing is done by `FlowHost`'s pure parsers; this type only reads files and keeps caches:
/// socket inode → pid (rebuilt by scanning `/proc/*/fd` only when an inode is unknown) and
/// pid → process identity (kept while the pid's start time is unchanged, so a reused pid is
/// noticed).
public final class ProcHost {
    public let procRoot: String
    public let passwdPath: String
    /// Where the socket tables are read (`<procRoot>/net`, the reader's network namespace).
    public let netRoot: String
    private var inodeOwner: [UInt64: Int32] = [:]
    /// pid → identity, with the start time that identifies the process and when that was
    /// last checked (a pid is re-checked at most once a second).
    private var processes: [Int32: (start: UInt64, info: ProcessAttribution, checked: Double)] = [:]
    private var users: [Int: String] = [:]
    private var usersLoaded = false
    public private(set) var index = SocketIndex()
    public private(set) var stats = Stats()

    public struct Stats: Sendable, Equatable {
        public var tableReads = 0
        public var fdScans = 0
        public var lookups = 0
        public var attributed = 0
        /// Lookups that found the socket but not its process: only the user is known.
        public var attributedUserOnly = 0
    }

    static let debug = getenv("FLOWMAP_ATTRIBUTION_DEBUG") != nil
    static func say(_ line: String) { _ = line.withCString { Glibc.write(2, $0, strlen($0)) } }

    /// Exact socket lookups through netlink (nil: the socket tables under `netRoot` are read).
    private let diag: SockDiag?

    /// With `sockDiag`, sockets are looked up one by one through netlink sock_diag (falling
    /// back to `/proc/net` when the kernel has none); otherwise the socket tables are read
    /// (what tests with a fake /proc tree use).
    public init(procRoot: String = "/proc", netRoot: String? = nil, passwd: String = "/etc/passwd",
                sockDiag: Bool = false) {
        self.procRoot = procRoot
        self.netRoot = netRoot ?? procRoot + "/net"
        passwdPath = passwd
        diag = sockDiag ? SockDiag() : nil
    }

    /// How sockets are found: "sock_diag" or "/proc/net".
    public var socketSource: String { diag != nil ? "sock_diag" : "/proc/net" }
    private var interfacesReadAt = -Double.infinity

    /// Re-reads the four socket tables.
    public func refreshSockets() {
        if diag != nil {
            // Nothing to read ahead: each lookup asks the kernel. Interfaces change rarely.
            let now = ProcHost.monotonic()
            if now - interfacesReadAt > 1 {
                interfaceAddresses = ProcHost.interfaceAddresses()
                interfacesReadAt = now
            }
            return
        }
        var all: [SocketEntry] = []
        for (file, proto) in [("tcp", SocketProtocol.tcp), ("tcp6", .tcp), ("udp", .udp), ("udp6", .udp)] {
            guard let text = ProcHost.readText(netRoot + "/" + file) else { continue }
            if let rows = try? ProcNetParser.parse(text, proto: proto) { all += rows }
        }
        index = SocketIndex(all)
        interfaceAddresses = ProcHost.interfaceAddresses()
        stats.tableReads += 1
    }

    /// The addresses of this network namespace's interfaces (getifaddrs), from the last
    /// `refreshSockets`.
    public private(set) var interfaceAddresses: Set<IPAddress> = []

    static func interfaceAddresses() -> Set<IPAddress> {
        var out: Set<IPAddress> = []
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return out }
        defer { freeifaddrs(list) }
        var p = list
        while let ifa = p {
            if let sa = ifa.pointee.ifa_addr {
                switch Int32(sa.pointee.sa_family) {
                case AF_INET:
                    let a = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                        IPAddress(v4: UInt32(bigEndian: $0.pointee.sin_addr.s_addr))
                    }
                    out.insert(a)
                case AF_INET6:
                    sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { s6 in
                        var hi: UInt64 = 0, lo: UInt64 = 0
                        withUnsafeBytes(of: s6.pointee.sin6_addr) { b in
                            for i in 0..<8 { hi = hi << 8 | UInt64(b[i]); lo = lo << 8 | UInt64(b[i + 8]) }
                        }
                        out.insert(IPAddress(v6hi: hi, v6lo: lo))
                    }
                default: break
                }
            }
            p = ifa.pointee.ifa_next
        }
        return out
    }

    /// Scans `/proc/*/fd`, newest processes first (a new connection's owner is most often a
    /// new process), caching every socket inode it passes. With `until`, stops as soon as that
    /// inode is found. Returns true if the scan went through every process.
    @discardableResult
    public func scanFileDescriptors(until wanted: UInt64? = nil) -> Bool {
        stats.fdScans += 1
        for pid in ProcHost.pids(procRoot).reversed() {
            let fdDir = "\(procRoot)/\(pid)/fd"
            guard let d = opendir(fdDir) else { continue }
            var found = false
            while let ent = readdir(d) {
                let name = ProcHost.name(ent)
                if name.first == "." { continue }
                guard let target = ProcHost.readLink(fdDir + "/" + name), let inode = FDLink.socketInode(target) else {
                    continue
                }
                // The lowest pid wins when a socket is shared (a forking server's parent).
                if let p = inodeOwner[inode], p <= pid { continue }
                inodeOwner[inode] = pid
                if inode == wanted { found = true }
            }
            closedir(d)
            if found { return false }
        }
        fullScanDone = true
        return true
    }

    /// Set when a scan has gone through every process since the last `allowRescan`: an inode
    /// still unknown then belongs to no process now.
    private var fullScanDone = false

    /// Lets unknown inodes be looked for again (call once per batch of lookups, after the
    /// socket tables were read).
    public func allowRescan() { fullScanDone = false }

    /// The process owning socket `inode`, scanning /proc for it if it is unknown.
    public func owner(inode: UInt64) -> Int32? {
        if let p = inodeOwner[inode] { return p }
        guard !fullScanDone else { return nil }
        // A scan that finds nothing walks every process: at most one per 50 ms (a socket
        // that no process holds any more would otherwise cost a full walk each time).
        let now = ProcHost.monotonic()
        if now - lastFullScan < minFullScanInterval { return nil }
        if scanFileDescriptors(until: inode) { lastFullScan = now }
        return inodeOwner[inode]
    }

    private var lastFullScan = -Double.infinity
    struct ListenerKey: Hashable {
        var proto: UInt8
        var local: IPAddress
        var lport: UInt16
    }
    private var listeners: [ListenerKey: (inode: UInt64, at: Double)] = [:]
    /// How long a process's identity is trusted before its start time is read again.
    public var processRecheckInterval = 1.0
    public var minFullScanInterval = 0.05

    /// Who owns the local end `local`:`lport` of a conversation with `remote`:`rport`, from
    /// the last `refreshSockets`: the connected socket's process, else (a connection still in
    /// the accept queue, or already gone) the process listening on the port. Nil when no
    /// socket or no process matches.
    ///
    /// With `server`, the listening socket is asked first: it names the service (for a
    /// forking server, the parent), and it stays while accepted sockets come and go fast.
    public func attribute(proto: SocketProtocol, local: IPAddress, lport: UInt16, remote: IPAddress,
                          rport: UInt16, server: Bool = false) -> ProcessAttribution? {
        stats.lookups += 1
        if server, isLocal(local), let inode = listenerInode(proto: proto, local: local, lport: lport),
           let pid = owner(inode: inode), let info = process(pid) {
            stats.attributed += 1
            return info
        }
        var pid: Int32?
        var socketUID: Int?
        var found = "none"
        if let diag {
            if let a = diag.lookup(proto: proto, local: local, lport: lport, remote: remote, rport: rport), a.inode != 0 {
                pid = owner(inode: a.inode)
                socketUID = a.uid
                found = "\(a.inode) state \(a.state)"
            }
            if pid == nil, isLocal(local),
               let l = diag.lookup(proto: proto, local: local, lport: lport, remote: ProcHost.unspecified(local), rport: 0),
               l.inode != 0, l.state == (proto == .tcp ? SocketEntry.tcpListen : SocketEntry.udpUnconnected) {
                pid = owner(inode: l.inode)
            }
        } else {
            let socket = index.owner(proto: proto, local: local, lport: lport, remote: remote, rport: rport)
            if let s = socket, s.inode != 0 {
                pid = owner(inode: s.inode)
                socketUID = s.uid
                found = "\(s.inode) state \(s.state)"
            }
            if pid == nil, isLocal(local), let l = index.listener(proto: proto, local: local, lport: lport), l.inode != 0 {
                pid = owner(inode: l.inode)
            }
        }
        if let pid, let info = process(pid) {
            stats.attributed += 1
            return info
        }
        if ProcHost.debug {
            ProcHost.say("flowmap: attribution miss \(proto.name) \(local):\(lport) <-> \(remote):\(rport): socket \(found)\n")
        }
        // The process is gone (a client that lived less than the time to look it up), but its
        // socket still names the user.
        if let uid = socketUID {
            stats.attributedUserOnly += 1
            return ProcessAttribution(user: userName(uid), uid: uid)
        }
        return nil
    }

    /// Whether a socket listens on (TCP) or is bound to (UDP) `local`:`lport`.
    /// A local server end at once: `attribute(..., server: true)` and `isListening`, with one
    /// listener lookup for both (the agent asks both for every connection to a local server).
    public func attributeServer(proto: SocketProtocol, local: IPAddress, lport: UInt16, remote: IPAddress,
                                rport: UInt16) -> (process: ProcessAttribution?, listening: Bool) {
        let inode = listenerInode(proto: proto, local: local, lport: lport)
        if let inode, isLocal(local), let pid = owner(inode: inode), let info = process(pid) {
            stats.lookups += 1
            stats.attributed += 1
            return (info, true)
        }
        return (attribute(proto: proto, local: local, lport: lport, remote: remote, rport: rport), inode != nil)
    }

    public func isListening(proto: SocketProtocol, local: IPAddress, lport: UInt16) -> Bool {
        listenerInode(proto: proto, local: local, lport: lport) != nil
    }

    /// The inode of the socket listening on (TCP) or bound to (UDP) `local`:`lport`.
    func listenerInode(proto: SocketProtocol, local: IPAddress, lport: UInt16) -> UInt64? {
        if let diag {
            // Listeners live long: one answer serves a second of connections to that port.
            let key = ListenerKey(proto: proto.rawValue, local: local, lport: lport)
            let now = ProcHost.monotonic()
            if let c = listeners[key], now - c.at < 1 { return c.inode }
            guard let l = diag.lookup(proto: proto, local: local, lport: lport, remote: ProcHost.unspecified(local), rport: 0),
                  l.inode != 0, l.state == (proto == .tcp ? SocketEntry.tcpListen : SocketEntry.udpUnconnected)
            else { return nil }
            if listeners.count > 4096 { listeners.removeAll(keepingCapacity: true) }
            listeners[key] = (l.inode, now)
            return l.inode
        }
        guard let l = index.listener(proto: proto, local: local, lport: lport), l.inode != 0 else { return nil }
        return l.inode
    }

    static func unspecified(_ like: IPAddress) -> IPAddress {
        like.isV6 ? IPAddress(v6hi: 0, v6lo: 0) : IPAddress(v4: 0)
    }

    static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Whether `a` is one of this host's addresses (its interfaces', or bound by a socket).
    public func isLocal(_ a: IPAddress) -> Bool {
        interfaceAddresses.contains(a) || index.localAddresses.contains(a)
    }

    /// The addresses `isLocal` knows (the interfaces', and those local sockets are bound to).
    public var localAddresses: Set<IPAddress> { interfaceAddresses.union(index.localAddresses) }

    /// The identity of process `pid` (cached while its start time is the same).
    public func process(_ pid: Int32) -> ProcessAttribution? {
        let now = ProcHost.monotonic()
        if let c = processes[pid], now - c.checked < processRecheckInterval { return c.info }
        let base = "\(procRoot)/\(pid)"
        guard let stat = ProcHost.readText(base + "/stat"), let start = ProcFiles.startTime(stat: stat) else {
            return processes[pid]?.info  // gone: what was known of it
        }
        if let c = processes[pid], c.start == start {
            processes[pid] = (start, c.info, now)
            return c.info
        }
        let comm = ProcHost.readText(base + "/comm").map(ProcFiles.comm)
        let exe = ProcHost.readLink(base + "/exe")
        let cmdline = ProcHost.readBytes(base + "/cmdline").map(ProcFiles.cmdline)
        let uid = ProcHost.readText(base + "/status").flatMap(ProcFiles.uid(status:))
        let cg = ProcHost.readText(base + "/cgroup").map(ProcFiles.cgroup)
        let info = ProcessAttribution(pid: Int(pid), comm: comm, exe: exe, cmdline: cmdline,
                                      user: uid.flatMap(userName), uid: uid, cgroup: cg?.path,
                                      container: cg?.container, unit: cg?.unit, pod: cg?.pod)
        processes[pid] = (start, info, now)
        return info
    }

    /// Forgets processes that have exited (call now and then: the cache stays bounded).
    public func pruneProcesses() {
        // Socket inodes of closed sockets would pile up: the cache is rebuilt as needed.
        inodeOwner.removeAll(keepingCapacity: true)
        let live = Set(ProcHost.pids(procRoot))
        for pid in processes.keys where !live.contains(pid) { processes[pid] = nil }
    }

    public var cachedProcesses: Int { processes.count }

    private func userName(_ uid: Int) -> String? {
        if !usersLoaded {
            usersLoaded = true
            users = ProcHost.readText(passwdPath).map { ProcFiles.users(passwd: $0) } ?? [:]
        }
        return users[uid]
    }

    // MARK: File access

    static func pids(_ root: String) -> [Int32] {
        guard let d = opendir(root) else { return [] }
        defer { closedir(d) }
        var out: [Int32] = []
        while let ent = readdir(d) {
            if let p = Int32(name(ent)) { out.append(p) }
        }
        return out.sorted()
    }

    static func name(_ ent: UnsafeMutablePointer<dirent>) -> String {
        withUnsafePointer(to: &ent.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
    }

    static func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4097)
        let n = readlink(path, &buf, 4096)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func readBytes(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    public static func readText(_ path: String) -> String? {
        readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }
}
