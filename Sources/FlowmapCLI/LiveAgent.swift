import FlowCapture
import FlowCore
import FlowStore

#if canImport(Glibc)
import Glibc
#endif

/// The live-capture agent: libpcap on one or more interfaces, through the same decoder and
/// flow table as offline analysis. Each new flow's local ends are attributed when its first
/// packet is seen; open flows are written (and later updated) at every flush.
final class LiveAgent: DiscoveryAgent {
    let interfaces: [String]
    private var captures: [LiveCapture] = []
    private var table: FlowTable!
    private var analyzer: PacketAnalyzer!
    /// Attribution and verdicts of flows still in the table, by uid.
    private var pending: [String: (orig: ProcessAttribution?, resp: ProcessAttribution?, blocked: String?)] = [:]
    private var ended: [FlowRecord] = []
    private var newFlows = 0
    private var socketsReadAt = -Double.infinity

    /// Opens the captures before the store: a missing interface, a bad filter or a missing
    /// right gets its error and no store file.
    init(_ cmd: DiscoverCommand, interfaces: [String]) throws(UserError) {
        self.interfaces = interfaces
        for i in interfaces {
            do { captures.append(try LiveCapture(interface: i, filter: cmd.bpf, promiscuous: cmd.promiscuous)) }
            catch { throw UserError(message: "interface \(error.description)") }
        }
        try super.init(cmd)
    }

    func run() throws(UserError) {
        let linkTypes = Set(captures.map { $0.linkType.description }).sorted().joined(separator: ",")
        var info = SourceInfo(kind: .liveCapture, hostID: hostID, path: "live:\(interfaces.joined(separator: ","))",
                              sha256: nil, linkType: linkTypes)
        info.complete = false
        do { sourceID = try store.beginSource(info) } catch { throw UserError(message: error.description) }
        writer = StoreWriter(store: store, source: sourceID, kind: .liveCapture, hostID: hostID)
        table = FlowTable { [unowned self] r in self.ended.append(r) }
        table.onCreate = { [unowned self] r in self.created(r) }
        analyzer = PacketAnalyzer(table: table)
        installSignalHandlers()
        if !cmd.quiet || cmd.logFormat == .json {
            log("info", "discover: recording live capture on \(interfaces.joined(separator: ", ")) into \(cmd.db) (host \(hostID))")
        }
        let flushEvery = Durations.parse(cmd.flushInterval) ?? 10
        let deadline = cmd.duration.flatMap(Durations.parse).map { started + $0 }
        var nextFlush = started + flushEvery
        var nextStatus = started + 1
        let showStatus = !cmd.quiet && Terminal.stderrIsTerminal && cmd.logFormat == .text
        var pfds = captures.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        DiscoveryAgent.releaseStartupPages()

        while agentStop.load(ordering: .relaxed) == 0 {
            let mono = Terminal.monotonic()
            if let d = deadline, mono >= d { break }
            var wake = min(nextFlush, showStatus ? nextStatus : .infinity)
            if let d = deadline { wake = min(wake, d) }
            let timeout = Int32(max(0, min(200, (wake - mono) * 1000)).rounded(.up))
            if poll(&pfds, nfds_t(pfds.count), timeout) > 0 { try readPackets() }
            // Time passes without packets too: idle flows must time out.
            table.advance(to: DiscoveryAgent.now())
            let t = Terminal.monotonic()
            if t >= nextFlush {
                try flush(final: false)
                nextFlush = t + flushEvery
            }
            if showStatus && t >= nextStatus {
                status(flows: recorded + table.activeFlows, new: newFlows, active: table.activeFlows)
                nextStatus = t + 1
            }
        }
        try readPackets()
        try flush(final: true)
        if showStatus { Terminal.stderr("\r\u{1B}[K") }
        summary()
    }

    private func readPackets() throws(UserError) {
        for c in captures {
            do {
                counters.packets += try c.readAvailable { [analyzer] lt, ts, wire, bytes in
                    analyzer!.process(linkType: lt, timestamp: ts, wireLength: wire, bytes: bytes)
                }
            } catch { throw UserError(message: "interface \(error.description)") }
        }
        if let t = analyzer.stats.lastTimestamp {
            if firstSeen == nil { firstSeen = analyzer.stats.firstTimestamp }
            lastSeen = t
        }
    }

    /// A new flow: attribute its local ends now, while their sockets exist.
    private func created(_ r: FlowRecord) {
        newFlows += 1
        // One read of the socket tables serves every flow created within a millisecond.
        let now = Terminal.monotonic()
        if now - socketsReadAt > 0.001 {
            host.refreshSockets()
            host.allowRescan()
            socketsReadAt = now
        }
        let ends = attributeEnds(proto: r.ipProto.rawValue, client: (r.origH, r.origP), clientPeer: (r.respH, r.respP),
                                 server: (r.respH, r.respP), serverPeer: (r.origH, r.origP))
        var withProcesses = r
        withProcesses.origProcess = ends.client
        withProcesses.respProcess = ends.server
        let blocked = verdict(withProcesses)
        if ends.client != nil || ends.server != nil || blocked != nil {
            pending[r.uid] = (ends.client, ends.server, blocked)
        }
    }

    static let closedStates: Set<String> = ["SF", "REJ", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR"]

    private func row(_ r: FlowRecord, open: Bool) -> (FlowRecord, AgentFlowExtras) {
        var rec = r
        let a = pending[r.uid]
        rec.origProcess = a?.orig
        rec.respProcess = a?.resp
        return (rec, AgentFlowExtras(open: open, blocked: a?.blocked))
    }

    func flush(final: Bool) throws(UserError) {
        var rows = ended.map { row($0, open: false) }
        for r in ended { pending[r.uid] = nil }
        ended.removeAll(keepingCapacity: true)
        // A TCP flow the table still holds after both sides closed or reset is over; the
        // table only waits for stragglers.
        rows += table.openRecords().map { row($0, open: !($0.ipProto.rawValue == 6 && LiveAgent.closedStates.contains($0.connState))) }
        let drops = captures.reduce((0 as UInt64, 0 as UInt64)) { acc, c in
            let s = c.stats
            return (acc.0 + s.dropped, acc.1 + s.interfaceDropped)
        }
        let warning = drops.0 + drops.1 > 0 ? "packets dropped: \(drops.0) by the kernel, \(drops.1) by interfaces" : nil
        try writer?.write(.init(rows: rows, first: firstSeen, last: lastSeen, complete: final, warning: warning))
        if final { try writer?.finish() }
        host.pruneProcesses()
    }

    override func summaryFields() -> [(String, String)] {
        var received: UInt64 = 0, dropped: UInt64 = 0, ifDropped: UInt64 = 0
        for c in captures {
            let s = c.stats
            received += s.received; dropped += s.dropped; ifDropped += s.interfaceDropped
        }
        let a = analyzer.stats
        return super.summaryFields() + [
            ("packets", "\(counters.packets)"), ("decoded", "\(a.packetsDecoded)"), ("new", "\(newFlows)"),
            ("kernel_received", "\(received)"), ("kernel_dropped", "\(dropped)"), ("interface_dropped", "\(ifDropped)"),
        ]
    }
}
