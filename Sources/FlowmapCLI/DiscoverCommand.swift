import ArgumentParser
import FlowConntrack
import FlowCore
import FlowGraph
import FlowHost
import FlowPolicy
import FlowProcFS
import FlowStore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `flowmap discover`: the host agent. Records every connection with the process, user,
/// container or unit at each local end, into the same store as `ingest`, from conntrack or
/// from live capture.
struct DiscoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "discover",
        abstract: "Run the discovery agent on this host: conntrack or live-capture flows with /proc process attribution.",
        discussion: """
            Reads the kernel's connection tracker (an initial dump, then NEW/UPDATE/DESTROY events) \
            and attributes each local end of every connection to its process through /proc, at the \
            moment the connection appears. Flows are written to the store every --flush-interval, \
            long-lived ones updated in place. SIGINT and SIGTERM write everything and exit 0. \
            With --interface, packets are captured live instead (libpcap, same decoder and flow \
            table as `flows`). See docs/agent.md.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The flowmap SQLite store to write (created mode 0600 if missing).", valueName: "file"))
    var db: String

    @Option(name: .long, help: ArgumentHelp("Stop after this long (e.g. 90s, 10m, 2h); default: until SIGINT/SIGTERM.", valueName: "duration"))
    var duration: String?

    @Flag(name: .long, help: "Read conntrack (the default when the kernel has it).")
    var conntrack = false

    @Option(name: .long, parsing: .singleValue, help: ArgumentHelp("Live capture on this interface ('any' for all); repeat for several.", valueName: "if"))
    var interface: [String] = []

    @Option(name: .long, help: ArgumentHelp("BPF filter for live capture (pcap-filter(7)).", valueName: "expr"))
    var bpf: String?

    @Flag(name: .long, help: "Live capture in promiscuous mode (a mirror port).")
    var promiscuous = false

    @Option(name: .customLong("flush-interval"), help: ArgumentHelp("How often flows are written to the store.", valueName: "duration"))
    var flushInterval = "10s"

    @Option(name: .customLong("refresh-interval"), help: ArgumentHelp("How often the counters of long-lived flows are refreshed from conntrack.", valueName: "duration"))
    var refreshInterval = "60s"

    @Option(name: .long, help: ArgumentHelp("Monitor mode: print (and count in the store) each flow this policy would block.", valueName: "file"))
    var policy: String?

    @Option(name: .long, help: "Monitor lines: text or json.")
    var format: MonitorFormat = .text

    @Option(name: .customLong("log-format"), help: "Status and summary on stderr: text or json (one object per line).")
    var logFormat: MonitorFormat = .text

    @Option(name: .customLong("host-id"), help: "Host id recorded with these flows (default: the host name).")
    var hostID: String?

    @Option(name: .customLong("proc-root"), help: ArgumentHelp("Where /proc is (a host's /proc mounted into a container).", valueName: "dir"))
    var procRoot = "/proc"

    @Option(name: .customLong("netlink-buffer"), help: ArgumentHelp("Receive buffer for conntrack events, in bytes (a bigger one survives longer bursts).", valueName: "bytes"))
    var netlinkBuffer = 8 << 20

    @Flag(name: .shortAndLong, help: "No status line and no text summary (warnings and errors still print).")
    var quiet = false

    enum MonitorFormat: String, ExpressibleByArgument, CaseIterable { case text, json }

    init() {}

    func validate() throws {
        if bpf != nil && interface.isEmpty { throw ValidationError("--bpf applies to live capture: give --interface too.") }
        if promiscuous && interface.isEmpty { throw ValidationError("--promiscuous applies to live capture: give --interface too.") }
        var st = stat()
        if stat(procRoot + "/self", &st) != 0 && stat(procRoot + "/1", &st) != 0 {
            throw ValidationError("--proc-root: '\(procRoot)' is not a /proc (no 'self' or '1' in it).")
        }
        if let d = duration, Durations.parse(d) == nil { throw ValidationError("--duration: '\(d)' is not a duration (e.g. 30s, 10m, 1h).") }
        guard let f = Durations.parse(flushInterval), f > 0 else {
            throw ValidationError("--flush-interval: '\(flushInterval)' is not a positive duration.")
        }
        if netlinkBuffer < 4096 { throw ValidationError("--netlink-buffer: at least 4096 bytes.") }
        guard let r = Durations.parse(refreshInterval), r > 0 else {
            throw ValidationError("--refresh-interval: '\(refreshInterval)' is not a positive duration.")
        }
    }

    func run() throws {
        do throws(UserError) {
            // The source: what was asked for; else conntrack when the kernel has it, else live
            // capture on every interface.
            if !interface.isEmpty {
                if conntrack { throw UserError(message: "give either --conntrack or --interface, not both") }
                try LiveAgent(self, interfaces: interface).run()
            } else if conntrack || ConntrackSettings.available {
                try ConntrackAgent(self).run()
            } else {
                try LiveAgent(self, interfaces: ["any"]).run()
            }
        } catch { throw fail(error.message) }
    }
}

/// Durations as people write them: "250ms", "30s", "10m", "2h", "1d", or plain seconds.
enum Durations {
    static func parse(_ s: String) -> Double? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
        for (u, k) in units where s.hasSuffix(u) {
            let n = s.dropLast(u.count)
            if let v = Double(n), v >= 0, !(u == "s" && n.hasSuffix("m")) { return v * k }
        }
        if let v = Double(s), v >= 0 { return v }
        return nil
    }
}

/// Set by SIGINT/SIGTERM; the agent's loop stops at its next turn.
let agentStop = Atomic<Int32>(0)

/// What both agents share: the store, /proc attribution, monitor mode, status and summary.
class DiscoveryAgent {
    let cmd: DiscoverCommand
    let store: FlowStore
    let host: ProcHost
    let hostID: String
    var sourceID: Int64 = 0
    var evaluator: PolicyEvaluator?
    var counters = Counters()
    var firstSeen: Double?
    var lastSeen: Double?
    let started = Terminal.monotonic()
    /// Writes flush batches on its own thread (set once the source row exists).
    var writer: StoreWriter?
    var recorded: Int { writer?.recorded.load(ordering: .relaxed) ?? 0 }

    struct Counters {
        var events = 0
        var overflows = 0
        var dumps = 0
        /// Open connections looked up by periodic refreshes.
        var lookups = 0
        /// Connections looked up when they closed (TIME_WAIT, CLOSE) for their counters.
        var closedLookups = 0
        /// New connections still open when written, looked up for their state and counters.
        var openLookups = 0
        /// Lookups that failed (the request could not be sent).
        var lookupFailures = 0
        /// Reads of the event stream, and those a connection from a local address asked for
        /// (the wake-up socket) rather than the end of a gather.
        var reads = 0
        var promptReads = 0
        var packets = 0
        var localFlows = 0
        var attributedFlows = 0
        var localEnds = 0
        var attributedEnds = 0
        var userOnlyEnds = 0
        var blocked = 0
    }

    init(_ cmd: DiscoverCommand) throws(UserError) {
        self.cmd = cmd
        hostID = cmd.hostID ?? DiscoveryAgent.hostName()
        do { store = try FlowStore.openPrivate(path: cmd.db) } catch { throw UserError(message: error.description) }
        // sock_diag unless /proc is another host's, or FLOWMAP_SOCKETS=procfs asks for the
        // socket tables (to compare the two: bench/agent).
        let procfs = getenv("FLOWMAP_SOCKETS").map { String(cString: $0) == "procfs" } ?? false
        host = ProcHost(procRoot: cmd.procRoot, sockDiag: cmd.procRoot == "/proc" && !procfs)
        // Two threads allocate (the loop and the store writer): one malloc arena keeps freed
        // memory reusable by both instead of growing a second one.
        _ = agentMallopt(-8 /* M_ARENA_MAX */, 1)
        if let p = cmd.policy {
            let pol = try PolicyFiles.load(p)
            evaluator = PolicyEvaluator(policy: pol, names: NameResolver()) { TimeZones.offset($0, $1) ?? 0 }
        }
    }

    static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, 255) == 0 else { return "localhost" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Attributes the local ends of a connection: the client's socket is (client → what the
    /// client addressed), the server's is (server → whom the server sees). Counts coverage.
    func attributeEnds(proto p: UInt8, client: (IPAddress, UInt16), clientPeer: (IPAddress, UInt16),
                       server: (IPAddress, UInt16), serverPeer: (IPAddress, UInt16))
        -> (client: ProcessAttribution?, server: ProcessAttribution?, serverListening: Bool) {
        guard let proto = SocketProtocol(rawValue: p) else { return (nil, nil, false) }
        let clientLocal = host.isLocal(client.0), serverLocal = host.isLocal(server.0)
        var c: ProcessAttribution?, s: ProcessAttribution?, listening = false
        if clientLocal {
            counters.localEnds += 1
            c = host.attribute(proto: proto, local: client.0, lport: client.1, remote: clientPeer.0, rport: clientPeer.1)
            count(c)
        }
        if serverLocal {
            counters.localEnds += 1
            (s, listening) = host.attributeServer(proto: proto, local: server.0, lport: server.1, remote: serverPeer.0,
                                                  rport: serverPeer.1)
            count(s)
        }
        if clientLocal || serverLocal {
            counters.localFlows += 1
            if (!clientLocal || c?.pid != nil) && (!serverLocal || s?.pid != nil) { counters.attributedFlows += 1 }
        }
        return (c, s, listening)
    }

    /// Counts one local end: attributed to a process, or only to the socket's user.
    func count(_ p: ProcessAttribution?) {
        if p?.pid != nil { counters.attributedEnds += 1 } else if p != nil { counters.userOnlyEnds += 1 }
    }

    /// Monitor mode: the reason the policy would block this flow (printed and counted), or nil.
    func verdict(_ r: FlowRecord) -> String? {
        guard let evaluator else { return nil }
        let g = GraphFlow(r, hostID: hostID)
        guard case .blocked(let why) = evaluator.evaluate(g) else { return nil }
        counters.blocked += 1
        let from = evaluator.displayName(g.origH, client: nil, t: g.ts, servedPort: nil, process: g.origProcess)
        let to = evaluator.displayName(g.respH, client: g.origH, t: g.ts, servedPort: g.servicePort, process: g.respProcess)
        let proto = protocolName(g.ipProto)
        switch cmd.format {
        case .text:
            Terminal.out("\(Fmt.iso8601(g.ts)) BLOCKED \(proto) \(g.origH):\(g.origP) \(from) -> \(g.respH):\(g.respP) \(to): \(why.rawValue)\n")
        case .json:
            var s = "{\"ts\":\(Fmt.fixed(g.ts)),\"uid\":\(jsonQuote(g.uid)),\"proto\":\(jsonQuote(proto)),"
            s += "\"orig_h\":\"\(g.origH)\",\"orig_p\":\(g.origP),\"resp_h\":\"\(g.respH)\",\"resp_p\":\(g.respP),"
            s += "\"from\":\(jsonQuote(from)),\"to\":\(jsonQuote(to)),\"verdict\":\"blocked\",\"reason\":\(jsonQuote(why.rawValue))}\n"
            Terminal.out(s)
        }
        Terminal.flush()
        return why.rawValue
    }

    var coverage: Double {
        counters.localFlows == 0 ? 100 : 100 * Double(counters.attributedFlows) / Double(counters.localFlows)
    }

    func status(flows total: Int, new: Int, active: Int) {
        let elapsed = max(Terminal.monotonic() - started, 0.001)
        let mb = Double(store.sizeOnDisk) / 1e6
        let line = "flows \(total) (\(String(format1: Double(new) / elapsed))/s), active \(active), attributed \(String(format1: coverage))%, store \(String(format1: mb)) MB"
        Terminal.stderr("\r\u{1B}[K" + line)
    }

    /// The summary's fields; each agent adds its own.
    func summaryFields() -> [(String, String)] {
        [("flows_recorded", "\(recorded)"), ("local_flows", "\(counters.localFlows)"),
         ("attributed_flows", "\(counters.attributedFlows)"), ("local_ends", "\(counters.localEnds)"),
         ("attributed_ends", "\(counters.attributedEnds)"), ("user_only_ends", "\(counters.userOnlyEnds)"),
         ("attribution_pct", String(format1: coverage)), ("blocked", "\(counters.blocked)"),
         ("fd_scans", "\(host.stats.fdScans)")]
    }

    func summary() {
        let fields = summaryFields()
        switch cmd.logFormat {
        case .text:
            if !cmd.quiet {
                Terminal.stderr("flowmap discover: " + fields.map { "\($0.0)=\($0.1)" }.joined(separator: " ") + "\n")
            }
        case .json:
            let body = fields.map { k, v in
                let raw = Double(v) != nil || v == "true" || v == "false"
                return "\"\(k)\":" + (raw ? v : jsonQuote(v))
            }
            Terminal.stderr("{\"level\":\"info\",\"msg\":\"summary\"," + body.joined(separator: ",") + "}\n")
        }
    }

    func log(_ level: String, _ message: String) {
        switch cmd.logFormat {
        case .text: Terminal.stderr("flowmap: \(level == "warning" ? "warning: " : "")\(message)\n")
        case .json: Terminal.stderr("{\"level\":\(jsonQuote(level)),\"msg\":\(jsonQuote(message))}\n")
        }
    }

    func installSignalHandlers() {
        agentStop.store(0, ordering: .relaxed)
        for sig in [SIGINT, SIGTERM] {
            var sa = sigaction()
            sa.__sigaction_handler.sa_handler = { _ in agentStop.store(1, ordering: .relaxed) }
            sigemptyset(&sa.sa_mask)
            sa.sa_flags = 0
            sigaction(sig, &sa, nil)
        }
    }
}

/// The conntrack agent: an initial dump, then events; dumps again after an overflow and now
/// and then to refresh the counters of long-lived flows.
/// When the agent flushes: every interval, and sooner when many flows wait (memory stays small
/// under load). An early flush does not move the interval's: under load, early flushes come
/// every few seconds, and the interval's own work (lookups of connections still in their
/// handshake, held-back final counters) would otherwise never be done.
struct FlushSchedule {
    /// When the next interval's flush is due.
    private(set) var next: Double
    let every: Double
    /// Flows waiting that bring a flush early.
    let early: Int

    init(start: Double, every: Double, early: Int) {
        next = start + every
        self.every = every
        self.early = early
    }

    /// Whether to flush at `t` with `pending` flows waiting: nil for no, else whether it is the
    /// interval's flush.
    mutating func take(at t: Double, pending: Int) -> Bool? {
        let due = t >= next
        if due { next = t + every }
        return due || pending >= early ? due : nil
    }
}

final class ConntrackAgent: DiscoveryAgent {
    /// Flows waiting to be written that trigger a flush before the interval ends.
    static let flushAt = 1024
    /// How long events may gather in the socket before they are read (100 ms), unless a
    /// connection from a local address comes (the wake-up socket).
    static let gather = 0.1
    /// The shortest time between two reads (25 ms): a stream of connections from local
    /// addresses is read in batches, not one wake-up each; and the gather when busy.
    static let minimumGather = 0.025
    /// A read of more events than a quarter of what the events socket holds (about a kilobyte
    /// each) makes the next gather the shortest: at tens of thousands of events a second, a
    /// gather's worth would not fit. So does an overflow, for the next 10 s: the kernel
    /// re-delivers the DESTROYs it could not deliver as the socket empties.
    static func busyEvents(bufferBytes: Int) -> Int { max(16, bufferBytes / 4096) }
    /// How late the event loop's timers may fire (the thread's timer slack).
    static let timerSlackNanoseconds = 4_000_000
    let flows: ConntrackFlows
    var accounting = true

    let events: ConntrackSocket
    let dumper: ConntrackSocket
    /// Hears the NEWs of connections from local addresses (nil when it could not be opened:
    /// events are then read every `minimumGather`).
    let wakeSocket: ConntrackWakeSocket?
    /// Why it could not be opened.
    let wakeSocketError: String?

    /// Opens conntrack before the store, so that a host without it (or a user without the
    /// right) gets its error and no store file.
    override init(_ cmd: DiscoverCommand) throws(UserError) {
        guard ConntrackSettings.available else {
            throw UserError(message: "conntrack: the kernel has no connection tracking here (nf_conntrack is not loaded)")
        }
        // Events first, then the dump: nothing can fall between them.
        do {
            // FLOWMAP_CT_UPDATES=all keeps every UPDATE event (for comparing; docs/agent.md).
            let all = getenv("FLOWMAP_CT_UPDATES").map { String(cString: $0) == "all" } ?? false
            events = try ConntrackSocket(events: true, receiveBuffer: cmd.netlinkBuffer, onlyDecisiveTCPUpdates: !all)
            dumper = try ConntrackSocket(events: false)
        } catch { throw UserError(message: error.description) }
        do throws(ConntrackError) {
            wakeSocket = try ConntrackWakeSocket()
            wakeSocketError = nil
        } catch {
            wakeSocket = nil
            wakeSocketError = error.description
        }
        flows = ConntrackFlows(hostID: cmd.hostID ?? DiscoveryAgent.hostName())
        try super.init(cmd)
    }

    func run() throws(UserError) {
        if !events.reliableDestroyEvents {
            log("warning", "conntrack: reliable delivery of DESTROY events is not available: a connection that ends while events overflow may be missed")
        }
        accounting = ConntrackSettings.enable("nf_conntrack_acct")
        ConntrackSettings.enable("nf_conntrack_timestamp")
        if !accounting {
            log("warning", "conntrack accounting is off and cannot be turned on (net.netfilter.nf_conntrack_acct): packet and byte counters will be 0")
        }
        var info = SourceInfo(kind: .conntrack, hostID: hostID, path: "conntrack:\(hostID)", sha256: nil, linkType: nil)
        info.complete = false
        do { sourceID = try store.beginSource(info) } catch { throw UserError(message: error.description) }
        writer = StoreWriter(store: store, source: sourceID, kind: .conntrack, hostID: hostID)

        installSignalHandlers()
        flows.onNew = { [unowned self] f in self.attribute(&f) }
        // A restart: connections an earlier run recorded keep their flow.
        let store = self.store, host = hostID, source = sourceID
        flows.adopt = { e in
            guard let r = try? store.conntrackFlow(hostID: host, id: e.id, zone: e.zone, proto: e.orig.proto, origH: e.orig.src,
                                                   origP: e.orig.sport, startedBy: e.start, notFrom: source)
            else { return nil }
            return (r.uid, r.ts)
        }

        try dump(dumper, reconcile: false)
        if let why = wakeSocketError {
            log("warning", "conntrack: no wake-up socket for local clients' connections (\(why)): events are read every \(Int(ConntrackAgent.minimumGather * 1000)) ms")
        }
        listenForLocalClients()
        DiscoveryAgent.releaseStartupPages()
        // The event loop's timers (the gathers, poll's timeouts) may fire up to 4 ms late (one
        // tick at HZ=250): the kernel then serves them with a timer it fires anyway instead of
        // one of their own. About 4 % of the agent's CPU at 1,000 connections/s when it woke
        // every 25 ms (each wake-up in a virtual machine costs a timer to program and an
        // interrupt). A connection from a local address is still read at once (25 ms at most).
        _ = agentPrctl(29 /* PR_SET_TIMERSLACK */, UInt(ConntrackAgent.timerSlackNanoseconds))
        if !cmd.quiet || cmd.logFormat == .json {
            log("info", "discover: recording conntrack events into \(cmd.db) (host \(hostID), \(flows.activeCount) connections open)")
        }
        let flushEvery = Durations.parse(cmd.flushInterval) ?? 10
        let refreshEvery = Durations.parse(cmd.refreshInterval) ?? 60
        let deadline = cmd.duration.flatMap(Durations.parse).map { started + $0 }
        var flushes = FlushSchedule(start: started, every: flushEvery, early: ConntrackAgent.flushAt)
        var nextRefresh = started + refreshEvery
        var nextStatus = started + 1
        let showStatus = !cmd.quiet && Terminal.stderrIsTerminal && cmd.logFormat == .text
        var pfds = [pollfd(fd: events.fd, events: Int16(POLLIN), revents: 0),
                    pollfd(fd: wakeSocket?.fd ?? -1, events: Int16(POLLIN), revents: 0)]
        var readAt = -Double.infinity
        var gather = ConntrackAgent.gather
        var busyUntil = -Double.infinity
        let busyEvents = ConntrackAgent.busyEvents(bufferBytes: events.receiveBufferBytes)

        while agentStop.load(ordering: .relaxed) == 0 {
            let mono = Terminal.monotonic()
            if let d = deadline, mono >= d { break }
            var wake = min(flushes.next, nextRefresh, showStatus ? nextStatus : .infinity)
            if let d = deadline { wake = min(wake, d) }
            if poll(&pfds, 2, ConntrackAgent.milliseconds(until: wake)) > 0 {
                // Events are queued. A connection from a local address is read at once: its
                // client end's socket must be looked up while it exists. The others may wait
                // and gather (a wake-up costs the agent more than reading what gathered: a
                // fifth of its CPU at 1,000 connections/s between waking every 25 ms and every
                // 100 ms); their server ends are attributed through the listening socket.
                var local = pfds[1].revents & Int16(POLLIN) != 0
                if !local && wakeSocket != nil {
                    var one = pfds[1]
                    let until = min(wake, Terminal.monotonic() + gather)
                    local = poll(&one, 1, ConntrackAgent.milliseconds(until: until)) > 0
                }
                if local { counters.promptReads += 1 }
                if local || wakeSocket == nil {
                    // Not more often than every `minimumGather`.
                    let ready = readAt + ConntrackAgent.minimumGather - Terminal.monotonic()
                    if ready > 0 {
                        var pause = timespec(tv_sec: 0, tv_nsec: Int(ready * 1e9))
                        nanosleep(&pause, nil)
                    }
                    wakeSocket?.drain()
                }
                // One clock reading for what is queued now: the events waited in the socket
                // for up to the gather anyway.
                let (outcome, n) = try readEvents(at: DiscoveryAgent.now())
                readAt = Terminal.monotonic()
                counters.reads += 1
                if outcome == .overflow { busyUntil = readAt + 10 }
                gather = n >= busyEvents || readAt < busyUntil ? ConntrackAgent.minimumGather : ConntrackAgent.gather
                lookUpClosed()
                listenForLocalClients()
                if outcome == .overflow {
                    counters.overflows += 1
                    log("warning", "conntrack events were lost (netlink buffer overflow): dumping to reconcile")
                    try dump(dumper, reconcile: true)
                }
            }
            let t = Terminal.monotonic()
            if t >= nextRefresh {
                // A periodic refresh of the open connections' counters. When the kernel
                // re-delivers lost DESTROYs, nothing needs reconciling: the agent asks about
                // each open connection instead of dumping the whole table (a busy host tracks
                // a hundred thousand entries, nearly all of them in TIME_WAIT).
                if events.reliableDestroyEvents {
                    refreshOpen()
                } else {
                    try dump(dumper, reconcile: true)
                }
                nextRefresh = t + refreshEvery
            }
            // (One transaction per interval, early batches joining it, wrote a fifth less when
            // each connection was written twice, and made no difference once it was written
            // once: not kept.)
            if let interval = flushes.take(at: t, pending: flows.pendingChanges) {
                try flush(final: false, interval: interval)
            }
            if showStatus && t >= nextStatus {
                status(flows: recorded + flows.activeCount, new: flows.stats.new, active: flows.activeCount)
                nextStatus = t + 1
            }
        }
        // Read what is queued, refresh counters of open flows, write everything.
        _ = try? readEvents(at: DiscoveryAgent.now())
        try dump(dumper, reconcile: true)
        try flush(final: true)
        if showStatus { Terminal.stderr("\r\u{1B}[K") }
        summary()
    }

    /// Reads and applies the queued events, observed at `t`. Each is applied as it is read (no
    /// copy of the batch is held: after a stall, thousands wait). The socket tables are read
    /// once, before the first event that can start a flow (whose ends are then looked up).
    func readEvents(at t: Double) throws(UserError) -> (ConntrackSocket.ReadOutcome, Int) {
        var refreshed = false
        var n = 0
        let flows = self.flows, host = self.host
        let outcome: ConntrackSocket.ReadOutcome
        do {
            outcome = try events.readEvents { kind, e in
                if !refreshed && (kind != .destroy || !flows.isActive(e)) {
                    host.refreshSockets()
                    host.allowRescan()
                    refreshed = true
                }
                flows.apply(kind, e, at: t)
                n += 1
            }
        } catch { throw UserError(message: error.description) }
        if n > 0 {
            counters.events += n
            if firstSeen == nil { firstSeen = t }
            lastSeen = t
        }
        return (outcome, n)
    }

    /// Points the wake-up socket's kernel filter at the host's addresses, when they changed
    /// (the socket tables re-read them at most once a second).
    func listenForLocalClients() {
        guard let w = wakeSocket else { return }
        let local = host.localAddresses
        guard local != w.localSources else { return }
        if !w.wake(forSources: local) && !wakeFilterRefused {
            wakeFilterRefused = true
            log("warning", "conntrack: the kernel did not take the wake-up filter for \(local.count) local addresses: events are read every \(Int(ConntrackAgent.minimumGather * 1000)) ms")
        }
    }
    var wakeFilterRefused = false

    /// poll(2)'s timeout until monotonic time `t` (at most a second, at least 0).
    static func milliseconds(until t: Double) -> Int32 {
        Int32(max(0, min(1000, (t - Terminal.monotonic()) * 1000)).rounded(.up))
    }

    /// Asks the kernel for the entry of each open connection: its counters are updated, and a
    /// connection it no longer has is ended (its DESTROY, on its way, updates the same flow).
    func refreshOpen() {
        let t = DiscoveryAgent.now()
        let open = flows.openEntries
        let flows = self.flows
        lookUp(open) { i, found in
            switch found {
            case .found(let e): flows.applyLookup(e, at: t)
            case .missing: flows.endMissing(open[i])
            case .unanswered: break
            }
        }
        counters.lookups += open.count
        lastSeen = t
    }

    /// Looks up the counters of the connections that just closed (TIME_WAIT, CLOSE): events
    /// other than DESTROY carry none, and the DESTROY comes when the entry times out (two
    /// minutes later by default). With them, the flow is written once; its DESTROY, bringing
    /// the same, writes nothing. (Without, each closed connection was written twice: the
    /// second write, to a page written a while before, cost the store as much as the first.)
    func lookUpClosed() {
        guard accounting else { return }
        let closed = flows.takeAwaitingCounters()
        guard !closed.isEmpty else { return }
        let flows = self.flows
        lookUp(closed) { i, found in
            if case .found(let e) = found { flows.applyClosedLookup(e, entry: i) }
        }
        flows.endClosedLookups()
        counters.closedLookups += closed.count
    }

    /// Looks entries up on the dump socket. A failure is not fatal: what was not looked up
    /// comes later (a DESTROY brings a closed connection's counters; the next refresh, an open
    /// one's). It is counted (`lookup_failures`) and said once.
    func lookUp(_ entries: [ConntrackEntry], _ body: (Int, ConntrackSocket.Lookup) -> Void) {
        do {
            try dumper.lookUp(entries, body)
        } catch {
            counters.lookupFailures += 1
            if counters.lookupFailures == 1 {
                log("warning", "\(error.description): counters come with the DESTROY or the next refresh instead")
            }
        }
    }

    func dump(_ s: ConntrackSocket, reconcile: Bool) throws(UserError) {
        counters.dumps += 1
        host.refreshSockets()
        host.allowRescan()
        let t = DiscoveryAgent.now()
        // Entries are applied as the dump delivers them: the table is never held whole.
        let flows = self.flows
        flows.beginDump()
        do {
            try s.dump { e in flows.applyDumpEntry(e, at: t) }
        } catch {
            flows.endDump(reconcile: false)
            throw UserError(message: error.description)
        }
        flows.endDump(reconcile: reconcile)
        if firstSeen == nil { firstSeen = t }
        lastSeen = t
    }

    /// Attributes the local ends of a new flow while its sockets exist, and in monitor mode
    /// judges it.
    func attribute(_ f: inout ConntrackFlows.Flow) {
        let e = f.entry
        let ends = attributeEnds(proto: e.orig.proto, client: (e.orig.src, e.orig.sport), clientPeer: (e.orig.dst, e.orig.dport),
                                 server: (e.reply.src, e.reply.sport), serverPeer: (e.reply.dst, e.reply.dport))
        f.origProcess = ends.client
        f.respProcess = ends.server
        f.serverListening = ends.serverListening
        if evaluator != nil { f.blocked = verdict(ConntrackAgent.record(f)) }
    }

    /// A conntrack flow as a record, with TCP history letters for the handshake conntrack saw.
    static func record(_ f: ConntrackFlows.Flow) -> FlowRecord {
        var r = f.record
        if f.entry.orig.proto == 6 { r.history = f.history }
        return r
    }

    /// Final counters (from DESTROY events) of rows already written, held back until the
    /// interval's flush or until `deferAt` of them wait.
    ///
    /// DESTROYs come in the order the kernel's garbage collector reaps entries, not in the order
    /// connections closed: written as they come, nearly every one rewrote a page of an older
    /// part of the table. Held back and written in uid order (the agent's uids sort by time,
    /// as the rows were written), the updates of neighbouring rows share their page writes.
    private var finalCounters: [(FlowRecord, AgentFlowExtras)] = []
    static let deferAt = 4096

    func flush(final: Bool, interval: Bool = true) throws(UserError) {
        // The event filter drops TCP's handshake: connections that are still open are looked
        // up before they are written (state, counters), and at each interval those still in
        // their handshake when last seen. Those that closed already brought their state
        // (TIME_WAIT, CLOSE) and were looked up then.
        if events.filtersTCPUpdates && !final {
            let open = flows.tcpEntriesToLookUp(handshaking: interval)
            if !open.isEmpty {
                let t = DiscoveryAgent.now()
                let flows = self.flows
                lookUp(open) { _, found in
                    if case .found(let e) = found { flows.applyLookup(e, at: t) }
                }
                counters.openLookups += open.count
                lastSeen = t
            }
        }
        var rows: [(FlowRecord, AgentFlowExtras)] = []
        for f in flows.takeChanges() {
            let e = f.entry
            let x = AgentFlowExtras(conntrackID: e.id, zone: e.zone, mark: e.mark, dnat: e.dnat, snat: e.snat,
                                    open: !f.ended, blocked: f.blocked, isNew: f.isNew)
            let r = ConntrackAgent.record(f)
            if f.ended && FlowStore.isCounterUpdate(r, x) {
                finalCounters.append((r, x))
            } else {
                rows.append((r, x))
            }
        }
        if final || interval || finalCounters.count >= ConntrackAgent.deferAt {
            // Stable: two updates of one row keep their order.
            let order = finalCounters.indices.sorted { a, b in
                let (u, v) = (finalCounters[a].0.uid, finalCounters[b].0.uid)
                return u != v ? u < v : a < b
            }
            rows += order.map { finalCounters[$0] }
            finalCounters = []
        }
        try writer?.write(.init(rows: rows, first: firstSeen, last: lastSeen, complete: final,
                                warning: accounting ? nil : "conntrack accounting off: counters are 0"))
        if final { try writer?.finish() }
        let now = Terminal.monotonic()
        if now - prunedAt > 60 {
            host.pruneProcesses()
            prunedAt = now
        }
    }
    private var prunedAt = Terminal.monotonic()

    override func summaryFields() -> [(String, String)] {
        let st = flows.stats
        return super.summaryFields() + [
            ("events", "\(counters.events)"), ("new", "\(st.new)"), ("destroyed", "\(st.destroys)"),
            ("reads", "\(counters.reads)"), ("prompt_reads", "\(counters.promptReads)"), ("dumps", "\(counters.dumps)"), ("refresh_lookups", "\(counters.lookups)"), ("closed_lookups", "\(counters.closedLookups)"), ("open_lookups", "\(counters.openLookups)"), ("lookup_failures", "\(counters.lookupFailures)"), ("unchanged_destroys", "\(st.unchanged)"), ("overflows", "\(counters.overflows)"), ("ended_unseen", "\(st.endedUnseen)"),
            ("late", "\(st.late)"), ("after_close", "\(st.afterClose)"), ("adopted", "\(st.adopted)"),
            ("held_active", "\(flows.sizes.active)"), ("held_closing", "\(flows.sizes.closing)"),
            ("held_replaced", "\(flows.sizes.replaced)"), ("held_ended", "\(flows.sizes.recentlyEnded)"),
            ("accounting", accounting ? "true" : "false"),
            ("tcp_update_filter", events.filtersTCPUpdates ? "true" : "false"),
        ]
    }
}

extension ConntrackFlows.Flow {
    /// TCP history letters for the part of the handshake conntrack saw: "S" when the flow was
    /// seen from its SYN; "h" once the responder answered; "A" once established. A flow that
    /// was already open when the agent started gets "ShA" only when the responder's port is a
    /// local listening socket (which confirms the direction); otherwise none, so the graph
    /// treats its direction as unknown.
    var history: String {
        let e = entry
        let replied = e.status & ConntrackEntry.seenReply != 0
        let established = (e.tcpState ?? 0) >= 3 || e.status & ConntrackEntry.assured != 0
        if preexisting { return serverListening ? "ShA" : "" }
        var h = "S"
        if replied { h += "h" }
        if replied && established { h += "A" }
        return h
    }
}

private extension String {
    init(format1 v: Double) {
        let r = (v * 10).rounded() / 10
        self = r == r.rounded() ? "\(Int(r)).0" : "\(r)"
    }
}

extension DiscoveryAgent {
    /// Hands the pages of flowmap's own binary that starting touched back to the kernel
    /// (madvise MADV_PAGEOUT on its read-only mappings). Starting runs code and reads data
    /// spread over the binary (argument parsing, Foundation, the Swift runtime's type lookups),
    /// and each first touch maps its neighbours too: most of the agent's resident memory. The
    /// pages the event loop needs come back on first use; the rest stay on disk.
    static func releaseStartupPages() {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return }
        let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let f = fopen("/proc/self/maps", "r") else { return }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 8192)
        while fgets(&line, Int32(line.count), f) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                .split(separator: " ", omittingEmptySubsequences: true)
            guard text.count >= 6, text[5].hasPrefix(exe), !text[1].contains("w") else { continue }
            let range = text[0].split(separator: "-")
            guard range.count == 2, let lo = UInt(range[0], radix: 16), let hi = UInt(range[1], radix: 16), hi > lo,
                  let p = UnsafeMutableRawPointer(bitPattern: lo) else { continue }
            _ = madvise(p, Int(hi - lo), 21 /* MADV_PAGEOUT */)
        }
    }
}

/// glibc's mallopt(3).
@_silgen_name("mallopt")
private func agentMallopt(_ param: Int32, _ value: Int32) -> Int32

/// prctl(2) with one argument (variadic in C, so not imported).
@_silgen_name("prctl")
private func agentPrctl(_ option: Int32, _ arg: UInt) -> Int32
