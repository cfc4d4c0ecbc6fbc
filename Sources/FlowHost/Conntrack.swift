import FlowCore

/// One direction of a conntrack entry, as the kernel keeps it.
public struct ConntrackTuple: Sendable, Hashable {
    public var src: IPAddress
    public var dst: IPAddress
    public var proto: UInt8
    /// Ports for TCP, UDP, SCTP, DCCP, UDP-Lite; for ICMP the type and code (`sport`, `dport`)
    /// and the echo id in `icmpID`.
    public var sport: UInt16
    public var dport: UInt16
    public var icmpID: UInt16

    public init(src: IPAddress, dst: IPAddress, proto: UInt8, sport: UInt16 = 0, dport: UInt16 = 0, icmpID: UInt16 = 0) {
        self.src = src; self.dst = dst; self.proto = proto; self.sport = sport; self.dport = dport; self.icmpID = icmpID
    }
}

/// A conntrack entry (from a dump or an event), in plain values.
public struct ConntrackEntry: Sendable, Equatable {
    /// The kernel's id of the entry (unique among live entries).
    public var id: UInt32
    /// Original direction: the client's view (before NAT).
    public var orig: ConntrackTuple
    /// Reply direction: the server's view (after NAT; its `src` is the real server).
    public var reply: ConntrackTuple
    /// Packet and byte counters (IP bytes) per direction; nil when accounting is off.
    public var origPackets: UInt64?
    public var origBytes: UInt64?
    public var replyPackets: UInt64?
    public var replyBytes: UInt64?
    /// TCP state number (1 SYN_SENT … 7 TIME_WAIT, 8 CLOSE), nil for other protocols.
    public var tcpState: UInt8?
    /// IPS_* status bits.
    public var status: UInt32
    public var zone: UInt16
    public var mark: UInt32
    /// Start and stop times from `nf_conntrack_timestamp`, seconds since the epoch, when on.
    public var start: Double?
    public var stop: Double?

    public init(id: UInt32, orig: ConntrackTuple, reply: ConntrackTuple, origPackets: UInt64? = nil,
                origBytes: UInt64? = nil, replyPackets: UInt64? = nil, replyBytes: UInt64? = nil, tcpState: UInt8? = nil,
                status: UInt32 = 0, zone: UInt16 = 0, mark: UInt32 = 0, start: Double? = nil, stop: Double? = nil) {
        self.id = id; self.orig = orig; self.reply = reply; self.origPackets = origPackets; self.origBytes = origBytes
        self.replyPackets = replyPackets; self.replyBytes = replyBytes; self.tcpState = tcpState; self.status = status
        self.zone = zone; self.mark = mark; self.start = start; self.stop = stop
    }

    public static let seenReply: UInt32 = 1 << 1   // IPS_SEEN_REPLY
    public static let assured: UInt32 = 1 << 2     // IPS_ASSURED

    /// The destination the client used, when DNAT sent it elsewhere (a VIP, a port forward).
    public var dnat: (IPAddress, UInt16)? {
        reply.src != orig.dst || reply.sport != orig.dport ? (orig.dst, orig.dport) : nil
    }

    /// The source the server saw, when SNAT/masquerade rewrote the client.
    public var snat: (IPAddress, UInt16)? {
        reply.dst != orig.src || reply.dport != orig.sport ? (reply.dst, reply.dport) : nil
    }

    /// Zeek-style conn_state from what conntrack knows (documented in docs/agent.md).
    public var connState: String {
        let replied = status & ConntrackEntry.seenReply != 0
        switch orig.proto {
        case 6:
            // A reset as the only answer to a SYN: conntrack ends the entry at once, without
            // marking it replied (nor moving it to CLOSE), but it counted the reset.
            let refused = !replied && (replyPackets ?? 0) > 0
            guard let st = tcpState else { return replied ? "OTH" : refused ? "REJ" : "S0" }
            switch st {
            case 1: return replied ? "OTH" : refused ? "REJ" : "S0"  // SYN_SENT
            case 2: return "OTH"                         // SYN_RECV: answered, not yet established
            case 3, 4, 5, 6: return "S1"                 // ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK
            case 7: return "SF"                          // TIME_WAIT: closed by FINs
            case 8:                                      // CLOSE: ended by a reset
                if status & ConntrackEntry.assured != 0 { return "RSTO" }
                return replied || refused ? "REJ" : "S0"
            default: return "OTH"
            }
        case 17, 136:
            return replied ? "SF" : "S0"
        default:
            return "OTH"
        }
    }
}

/// What a conntrack message says happened to an entry.
public enum ConntrackEventKind: String, Sendable {
    case new, update, destroy
}

/// Flows built from conntrack: one per conntrack entry, updated in place while it lives and
/// finished when it is destroyed (pure; the agent feeds it dumps and events).
///
/// Client and server come from conntrack's original direction. The server is the reply
/// tuple's source, so a DNATed connection is recorded with the real backend, and the address
/// the client used is kept as `dnat`.
public final class ConntrackFlows {
    /// A connection's identity: conntrack's entry id and zone, and its original tuple (as a
    /// 64-bit hash: an id is only ever reused with a different tuple, and two tuples that share
    /// an id, a zone and a 64-bit hash are not to be expected). 16 bytes: tens of thousands of
    /// keys are held for connections in TIME_WAIT.
    public struct Key: Hashable, Sendable {
        public var id: UInt32
        public var zone: UInt16
        public var tuple: UInt64

        public init(id: UInt32, orig t: ConntrackTuple, zone: UInt16) {
            self.id = id
            self.zone = zone
            tuple = FlowUID.mix(t.src.hi, t.src.lo, t.dst.hi, t.dst.lo,
                                UInt64(t.proto) << 48 | UInt64(t.sport) << 32 | UInt64(t.dport) << 16 | UInt64(t.icmpID))
        }
    }

    /// One tracked connection.
    public struct Flow: Sendable {
        public var key: Key
        public var entry: ConntrackEntry
        /// The flow's uid, held packed (no string until it is written).
        var compactUID: CompactUID
        public var uid: String { compactUID.string }
        public var firstSeen: Double
        public var lastSeen: Double
        public var ended: Bool
        /// True when the flow was not seen from its start (open when the agent started, or its
        /// NEW event was lost).
        public var preexisting: Bool
        public var origProcess: ProcessAttribution?
        public var respProcess: ProcessAttribution?
        public var blocked: String?
        /// True when the responder's port is a local listening socket (the agent's check of
        /// conntrack's direction for flows it did not see start).
        public var serverListening = false
        /// True until the flow is first handed out by `takeChanges` (then its row exists).
        public var isNew = false
        /// True while the flow has changes `takeChanges` has not handed out (its key is then in
        /// `changedKeys`).
        var pending = false
    }

    /// The open flows.
    private let active = KeyTable<Flow>()
    /// Keys of flows changed since the last `takeChanges` (each flow's `pending` says whether
    /// its key here is still due: a flow that ended since is handed out as finished instead).
    @exclusivity(unchecked) private var changedKeys: [Key] = []
    /// How many open flows are `pending`.
    private var changedCount = 0
    /// Finished flows not yet taken (they leave memory once taken).
    @exclusivity(unchecked) private var finished: [Flow] = []
    public let hostID: String
    private let hostHash: UInt64
    @exclusivity(unchecked) public private(set) var stats = Stats()

    public struct Stats: Sendable, Equatable {
        public var new = 0
        public var updates = 0
        public var destroys = 0
        /// Flows that ended while events were lost and were found missing by a later dump.
        public var endedUnseen = 0
        /// DESTROY or UPDATE events for entries never seen (their NEW was lost).
        public var late = 0
        /// Events for connections already finished in TIME_WAIT or CLOSE (nothing to change).
        public var afterClose = 0
        /// Connections found in a dump that an earlier run had recorded (same uid kept).
        public var adopted = 0
        /// DESTROY events that brought what the flow was written with (looked up when it
        /// closed): nothing written again.
        public var unchanged = 0

        public init(new: Int = 0, updates: Int = 0, destroys: Int = 0, endedUnseen: Int = 0, late: Int = 0,
                    afterClose: Int = 0) {
            self.new = new; self.updates = updates; self.destroys = destroys; self.endedUnseen = endedUnseen
            self.late = late; self.afterClose = afterClose
        }
    }

    public init(hostID: String) {
        self.hostID = hostID
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in hostID.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        hostHash = h
    }

    /// Called when a flow is first seen (at its NEW event or in a dump), so that the caller can
    /// attribute its local ends while the sockets still exist.
    public var onNew: ((inout Flow) -> Void)?

    /// For a connection first seen in a dump: the uid and first-seen time an earlier run gave
    /// it, if it recorded it (the agent asks its store), so that a restart does not record the
    /// same connection twice.
    public var adopt: ((ConntrackEntry) -> (uid: String, firstSeen: Double)?)?

    public func key(_ e: ConntrackEntry) -> Key { Key(id: e.id, orig: e.orig, zone: e.zone) }

    /// Whether the connection of `e` is open here.
    public func isActive(_ e: ConntrackEntry) -> Bool { active.contains(key(e)) }

    /// The open flows (a copy, in no particular order).
    public var activeFlows: [Flow] { active.values }

    /// Notes that the open flow in slot `i` changed.
    @inline(__always)
    private func markChanged(_ i: Int) {
        guard !active[slot: i].pending else { return }
        active[slot: i].pending = true
        changedKeys.append(active.key(at: i))
        changedCount += 1
    }

    /// Applies one event observed at `t` (seconds since the epoch).
    public func apply(_ kind: ConntrackEventKind, _ e: ConntrackEntry, at t: Double) {
        let k = key(e)
        switch kind {
        case .new:
            stats.new += 1
            let ci = closing.slot(of: k)
            if let ci, closing[slot: ci].preexisting {
                // A dump brought this connection in and saw it closed; its NEW was still queued.
                stats.afterClose += 1
                break
            }
            let held = active.slot(of: k)
            if let i = held, active[slot: i].preexisting {
                // A dump (taken after an overflow) already brought this connection in; its
                // NEW event was still queued.
                update(at: i, e, at: t)
                break
            }
            // The same id and tuple as a connection we know: the kernel reused both for a new
            // connection (a client port reused at once). The old one is over; its DESTROY
            // may still come, after this NEW, with its final counters.
            if let ci { replaced[k] = closing.remove(at: ci) }
            if let i = held {
                let old = end(at: i)
                replaced[k] = Closing(old)
            }
            create(k, e, at: t, preexisting: false)
        case .update:
            stats.updates += 1
            guard let i = active.slot(of: k) else {
                if closing.contains(k) { stats.afterClose += 1; return }
                if applyToFinished(k, e, from: recentlyEnded, remove: false) { return }
                stats.late += 1
                create(k, e, at: t, preexisting: true)
                closeIfOver(k)
                return
            }
            active[slot: i].merge(e, at: t)
            if active[slot: i].isOver {
                // TIME_WAIT or CLOSE: finished now; a small record waits for the DESTROY. An
                // event brings no counters: the agent can look them up (`awaitingCounters`).
                let f = end(at: i)
                closing[k] = Closing(f)
                if e.origPackets == nil { awaiting.append((k, finished.count - 1)) }
            } else {
                markChanged(i)
            }
        case .destroy:
            stats.destroys += 1
            // The DESTROY of an older entry with the same id and tuple (it stopped before the
            // flow we hold began): it belongs to the connection that was replaced.
            if !replaced.isEmpty, let stop = e.stop, replaced.contains(k),
               (active[k]?.firstSeen ?? closing[k]?.firstSeen).map({ stop < $0 }) ?? true {
                _ = applyToFinished(k, e, from: replaced, remove: true)
                return
            }
            // The final counters of a connection finished in TIME_WAIT or CLOSE (most DESTROYs
            // are of these; a key is never both closing and active).
            if applyToFinished(k, e, from: closing, remove: true) { return }
            if let i = active.slot(of: k) {
                active[slot: i].merge(e, at: t)
                _ = end(at: i)  // the stop time is when the entry timed out, not its last packet
                return
            }
            // Or of one a reconcile ended while its events were lost (delivered again).
            if applyToFinished(k, e, from: recentlyEnded, remove: true) { return }
            stats.late += 1
            create(k, e, at: t, preexisting: true)
            finish(k, at: nil)
        }
    }

    /// Ends the flow in slot `i` (last active at `t` when that is known) and returns it.
    private func end(at i: Int, lastActive t: Double? = nil) -> Flow {
        var f = active.remove(at: i)
        if f.pending {
            f.pending = false
            changedCount -= 1
        }
        f.ended = true
        if let t { f.lastSeen = max(f.lastSeen, t) }
        finished.append(f)
        return f
    }

    /// An event for a connection already finished: if `records` knows it, its flow is written
    /// again (same uid) with what the event brings. Returns whether it was known.
    private func applyToFinished(_ k: Key, _ e: ConntrackEntry, from records: KeyTable<Closing>, remove: Bool) -> Bool {
        guard let c = remove ? records.removeValue(forKey: k) : records[k] else { return false }
        stats.afterClose += 1
        // Written already with these counters and this state (looked up when it closed):
        // nothing to write again.
        if c.written != 0 && c.written == ConntrackFlows.signature(e) {
            stats.unchanged += 1
            return true
        }
        finished.append(c.flow(k, e))
        return true
    }

    /// What a row's final update would change (counters, state), hashed to 32 bits; 0 when the
    /// entry has no counters.
    static func signature(_ e: ConntrackEntry) -> UInt32 {
        guard let op = e.origPackets else { return 0 }
        let h = FlowUID.mix(op, e.origBytes ?? 0, e.replyPackets ?? 0, e.replyBytes ?? 0,
                            UInt64(e.tcpState ?? 0) << 32 | UInt64(e.status & (ConntrackEntry.seenReply | ConntrackEntry.assured)))
        return UInt32(truncatingIfNeeded: h) | 1
    }

    /// Flows that closed (TIME_WAIT, CLOSE) on an event, which carries no counters, since the
    /// last `takeChanges`: (key, index in `finished`).
    @exclusivity(unchecked) private var awaiting: [(Key, Int)] = []

    /// The entries of the connections that closed without counters since the last call (the
    /// agent looks them up, so that the flow is written once, with its counters, instead of
    /// again when the DESTROY brings them). What the lookups find goes to `applyClosedLookup`,
    /// then `endClosedLookups`, before the next call.
    public func takeAwaitingCounters() -> [ConntrackEntry] {
        var out: [ConntrackEntry] = []
        out.reserveCapacity(awaiting.count)
        lookupSlots.removeAll(keepingCapacity: true)
        for (k, i) in awaiting where i < finished.count && finished[i].key == k && isClosing(finished[i]) {
            out.append(finished[i].entry)
            lookupSlots.append(i)
        }
        awaiting.removeAll(keepingCapacity: true)
        return out
    }
    /// Where in `finished` the flows of the last `takeAwaitingCounters` are.
    @exclusivity(unchecked) private var lookupSlots: [Int] = []

    /// Whether `f` is the finished flow whose entry lingers now under its key (not one that its
    /// DESTROY ended, nor an older one whose id and tuple a new connection took).
    private func isClosing(_ f: Flow) -> Bool {
        guard let c = closing.slot(of: f.key) else { return false }
        return closing[slot: c].compactUID == f.compactUID
    }

    /// What the lookup of entry `n` of the last `takeAwaitingCounters` found: its counters are
    /// taken (the flow is still to be written), and its DESTROY, when it brings the same,
    /// writes nothing. (The kernel answers a lookup by tuple with the connection that holds
    /// the tuple now: when two of one batch share it, only the later one takes the answer.)
    public func applyClosedLookup(_ e: ConntrackEntry, entry n: Int) {
        guard n < lookupSlots.count, lookupSlots[n] < finished.count else { return }
        let i = lookupSlots[n]
        guard let c = closing.slot(of: finished[i].key), closing[slot: c].compactUID == finished[i].compactUID
        else { return }
        finished[i].merge(e, at: finished[i].lastSeen)
        closing[slot: c].written = ConntrackFlows.signature(finished[i].entry)
    }

    /// Forgets the lookups of `takeAwaitingCounters`.
    public func endClosedLookups() { lookupSlots.removeAll(keepingCapacity: true) }

    /// A finished TCP connection whose entry lingers (TIME_WAIT, CLOSE) until its DESTROY, which
    /// brings the final counters (conntrack sends counters only with DESTROY and in dumps).
    /// Only what that update needs is kept: about a fifth of a flow's memory.
    struct Closing {
        var compactUID: CompactUID
        var uid: String { compactUID.string }
        var firstSeen: Double
        var lastSeen: Double
        var preexisting: Bool
        var serverListening: Bool
        /// The `signature` of the counters and state the flow was written with, 0 when unknown.
        var written: UInt32 = 0

        init(uid: CompactUID, firstSeen: Double, lastSeen: Double, preexisting: Bool, serverListening: Bool) {
            compactUID = uid; self.firstSeen = firstSeen; self.lastSeen = lastSeen
            self.preexisting = preexisting; self.serverListening = serverListening
        }

        init(_ f: Flow) {
            self.init(uid: f.compactUID, firstSeen: f.firstSeen, lastSeen: f.lastSeen,
                      preexisting: f.preexisting, serverListening: f.serverListening)
            written = ConntrackFlows.signature(f.entry)
        }

        func flow(_ k: Key, _ e: ConntrackEntry) -> Flow {
            var f = Flow(key: k, entry: e, compactUID: compactUID, firstSeen: firstSeen, lastSeen: lastSeen,
                         ended: true, preexisting: preexisting)
            f.serverListening = serverListening
            return f
        }
    }
    private let closing = KeyTable<Closing>()
    /// Connections whose id and tuple a new connection took before their DESTROY came.
    private let replaced = KeyTable<Closing>()

    /// A TCP connection in TIME_WAIT or CLOSE is over: its flow is finished at once (written
    /// at the next flush) and only a small `Closing` record waits for the final counters.
    private func closeIfOver(_ k: Key) {
        guard let i = active.slot(of: k), active[slot: i].isOver else { return }
        let f = end(at: i)
        closing[k] = Closing(f)
    }

    /// Connections finished in TIME_WAIT or CLOSE whose entries still exist.
    public var closingCount: Int { closing.count }
    /// What the table holds, by kind (for the agent's summary: memory follows these).
    public var sizes: (active: Int, closing: Int, replaced: Int, recentlyEnded: Int) {
        (active.count, closing.count, replaced.count, recentlyEnded.count)
    }

    /// Applies a full dump taken at `t`. With `reconcile`, flows that are not in the dump ended
    /// while events were being lost: they are finished with their last known counters.
    public func applyDump(_ entries: [ConntrackEntry], at t: Double, reconcile: Bool) {
        beginDump()
        for e in entries { applyDumpEntry(e, at: t) }
        endDump(reconcile: reconcile)
    }

    /// The same, one entry at a time as the dump delivers them (no array of the whole table:
    /// a host with 100,000 tracked connections would hold 17 MB of it at once): `beginDump`,
    /// then `applyDumpEntry` for each entry, then `endDump`. A dump that failed part way ends
    /// with `reconcile: false` (what it did not deliver did not end).
    public func beginDump() {
        dumpSeen = Set()
        dumpSeen.reserveCapacity(active.count + closing.count)
    }

    public func applyDumpEntry(_ e: ConntrackEntry, at t: Double) {
        let k = key(e)
        dumpSeen.insert(k)
        if let i = active.slot(of: k) {
            update(at: i, e, at: t)
        } else {
            // Finished already; the dump brings its counters.
            if let c = closing[k] { finished.append(c.flow(k, e)); return }
            create(k, e, at: t, preexisting: true)
        }
        closeIfOver(k)
    }

    public func endDump(reconcile: Bool) {
        let seen = dumpSeen
        dumpSeen = []
        guard reconcile else { return }
        // Finished connections whose entries are gone: their DESTROY was lost, and may
        // still come (re-delivered). (The keys are gathered first: removing while iterating
        // would copy the whole map.)
        for k in closing.allKeys where !seen.contains(k) {
            if let c = closing.removeValue(forKey: k) { remember(k, c) }
        }
        for k in replaced.allKeys where !seen.contains(k) { replaced[k] = nil }
        for k in active.allKeys.sorted(by: ConntrackFlows.keyOrder) where !seen.contains(k) { endUnseen(k) }
    }
    private var dumpSeen = Set<Key>()

    /// The conntrack entries of the open flows, as last known (for a refresh that asks the
    /// kernel about each instead of dumping the whole table).
    public var openEntries: [ConntrackEntry] { active.values.map(\.entry) }

    /// The entries of the open TCP flows to look up before a write, when the agent does not
    /// hear of handshakes (its event filter drops them): those first seen since the last
    /// `takeChanges`, so that they are written with their state and counters, and with
    /// `handshaking`, those whose handshake was not complete when last seen (a SYN still
    /// unanswered is looked up at each interval until it is answered, reset, or times out).
    public func tcpEntriesToLookUp(handshaking: Bool) -> [ConntrackEntry] {
        var out: [ConntrackEntry] = []
        for k in changedKeys {
            guard let i = active.slot(of: k), active[slot: i].pending else { continue }
            let f = active[slot: i]
            if f.isNew && f.entry.orig.proto == 6 { out.append(f.entry) }
        }
        if handshaking {
            active.forEachSlot { i in
                let f = active[slot: i]
                if !f.isNew && f.entry.orig.proto == 6 && (f.entry.tcpState ?? 3) < 3 { out.append(f.entry) }
            }
        }
        return out
    }

    /// What the kernel says now of an open flow's entry (a refresh's lookup): its counters and
    /// state are taken; nothing happens when the flow is no longer open.
    public func applyLookup(_ e: ConntrackEntry, at t: Double) {
        let k = key(e)
        guard let i = active.slot(of: k) else { return }
        update(at: i, e, at: t)
        closeIfOver(k)
    }

    /// Ends an open flow whose entry the kernel no longer has (its DESTROY is on its way; when
    /// it comes, it updates the same flow), as a reconcile does.
    public func endMissing(_ e: ConntrackEntry) {
        let k = key(e)
        if active.contains(k) { endUnseen(k) }
    }

    private func endUnseen(_ k: Key) {
        stats.endedUnseen += 1
        finish(k, at: nil, unseen: true)
    }

    static func keyOrder(_ a: Key, _ b: Key) -> Bool { a.id != b.id ? a.id < b.id : a.zone < b.zone }

    /// Flows a reconcile dump ended because their entry was gone, by key: a late event for one
    /// (its DESTROY, re-delivered after the overflow) updates the same flow instead of starting
    /// another. Bounded, oldest first out.
    private let recentlyEnded = KeyTable<Closing>()
    private var endedOrder: [Key] = []
    private var endedHead = 0
    public var recentlyEndedCapacity = 65536

    private func remember(_ k: Key, _ c: Closing) {
        if recentlyEnded.updateValue(c, forKey: k) == nil { endedOrder.append(k) }
        while recentlyEnded.count > recentlyEndedCapacity, endedHead < endedOrder.count {
            recentlyEnded[endedOrder[endedHead]] = nil
            endedHead += 1
        }
        if endedHead > 4096 && endedHead * 2 > endedOrder.count {
            endedOrder.removeFirst(endedHead)
            endedHead = 0
        }
        // Keys whose DESTROY came are gone from the map but not from the order: drop them
        // now and then, so the order stays as small as the map.
        if endedOrder.count - endedHead > 2 * recentlyEndedCapacity {
            endedOrder = endedOrder[endedHead...].filter { recentlyEnded.contains($0) }
            endedHead = 0
        }
    }

    private func create(_ k: Key, _ e: ConntrackEntry, at t: Double, preexisting: Bool) {
        if preexisting, let known = adopt?(e) {
            // Recorded by an earlier run of the agent (a restart): the same flow, updated.
            var f = Flow(key: k, entry: e, compactUID: CompactUID(known.uid), firstSeen: known.firstSeen, lastSeen: max(known.firstSeen, t),
                         ended: false, preexisting: true)
            onNew?(&f)
            f.pending = true
            insert(f, k)
            stats.adopted += 1
            return
        }
        let first = e.start ?? t
        let o = e.orig
        let a = FlowUID.mix(hostHash, o.src.hi ^ o.dst.hi, o.src.lo, o.dst.lo,
                            UInt64(o.sport) << 24 | UInt64(o.dport) << 8 | UInt64(o.proto),
                            UInt64(e.id) << 16 | UInt64(e.zone))
        // The count of flows made tells apart two connections with the same entry id and tuple
        // seen at the same instant: events carry no start time (only a DESTROY does), and the
        // agent reads the clock once per read, so a client port reused at once, with the
        // kernel giving the new entry the old one's id, would otherwise get the same uid (and
        // the two would be written as one row).
        made &+= 1
        let b = FlowUID.mix(a, first.bitPattern, UInt64(o.icmpID) | made << 16)
        let (hi, lo) = FlowUID.timeOrderedDigits(first, b)
        var f = Flow(key: k, entry: e, compactUID: CompactUID(packed: hi, lo), firstSeen: first, lastSeen: max(first, t), ended: false,
                     preexisting: preexisting)
        f.isNew = true
        f.pending = true
        onNew?(&f)
        insert(f, k)
    }

    /// Adds an open flow, changed (`pending` set).
    private func insert(_ f: Flow, _ k: Key) {
        changedKeys.append(k)
        changedCount += 1
        if let old = active.updateValue(f, forKey: k), old.pending { changedCount -= 1 }
    }

    /// Flows made so far (a part of each uid).
    private var made: UInt64 = 0

    private func update(at i: Int, _ e: ConntrackEntry, at t: Double) {
        active[slot: i].merge(e, at: t)  // in place: a flow is not copied out and back
        markChanged(i)
    }

    /// Ends a flow; `t` is when it was last known active (the kernel's stop time, or nil
    /// when it vanished unseen and its last activity stays as known).
    private func finish(_ k: Key, at t: Double?, unseen: Bool = false) {
        guard let i = active.slot(of: k) else { return }
        let f = end(at: i, lastActive: t)
        if unseen { remember(k, Closing(f)) }
    }

    /// Flows changed or finished since the last call, in (first seen, uid) order; finished
    /// flows are forgotten, so memory follows the active flows.
    public func takeChanges() -> [Flow] {
        var out = finished
        finished = []
        awaiting.removeAll(keepingCapacity: true)
        lookupSlots.removeAll(keepingCapacity: true)
        for k in changedKeys {
            guard let i = active.slot(of: k), active[slot: i].pending else { continue }
            active[slot: i].pending = false
            out.append(active[slot: i])
            active[slot: i].isNew = false
        }
        changedKeys.removeAll(keepingCapacity: true)
        changedCount = 0
        // Stable: a flow finished and then updated again (its DESTROY's counters) within one
        // batch appears twice, in that order; it is written once, merged. The order is found on
        // small keys (a flow is a few hundred bytes: a sort that moves flows costs more).
        var order = out.indices.map { (out[$0].firstSeen, out[$0].compactUID, $0) }
        order.sort { a, b in a.0 != b.0 ? a.0 < b.0 : a.1 != b.1 ? a.1 < b.1 : a.2 < b.2 }
        var merged: [Flow] = []
        merged.reserveCapacity(out.count)
        for (_, _, i) in order {
            let f = out[i]
            if let last = merged.last, last.compactUID == f.compactUID {
                var m = f
                m.origProcess = f.origProcess ?? last.origProcess
                m.respProcess = f.respProcess ?? last.respProcess
                m.blocked = f.blocked ?? last.blocked
                m.isNew = f.isNew || last.isNew
                merged[merged.count - 1] = m
            } else {
                merged.append(f)
            }
        }
        return merged
    }

    public var activeCount: Int { active.count }

    /// How many flows `takeChanges` would return now (the agent flushes early when many wait).
    public var pendingChanges: Int { changedCount + finished.count }
}

extension ConntrackFlows.Flow {
    /// A TCP connection in TIME_WAIT or CLOSE: over, though its entry lingers.
    var isOver: Bool { entry.orig.proto == 6 && (entry.tcpState == 7 || entry.tcpState == 8) }

    /// Takes what an event or a dump says of the connection observed at `t`.
    mutating func merge(_ e: ConntrackEntry, at t: Double) {
        // Counters only grow; an event without them (accounting off) keeps the last ones.
        var n = e
        n.origPackets = max(e.origPackets ?? 0, entry.origPackets ?? 0)
        n.origBytes = max(e.origBytes ?? 0, entry.origBytes ?? 0)
        n.replyPackets = max(e.replyPackets ?? 0, entry.replyPackets ?? 0)
        n.replyBytes = max(e.replyBytes ?? 0, entry.replyBytes ?? 0)
        if e.origPackets == nil && entry.origPackets == nil {
            n.origPackets = nil; n.origBytes = nil; n.replyPackets = nil; n.replyBytes = nil
        }
        n.tcpState = e.tcpState ?? entry.tcpState
        n.status = e.status | entry.status
        n.start = entry.start ?? e.start
        // Conntrack has no last-packet time: the flow was last active when its counters or
        // state last moved (a dump that finds it unchanged says nothing new).
        let moved = n.origPackets != entry.origPackets || n.replyPackets != entry.replyPackets
            || n.tcpState != entry.tcpState || n.status != entry.status
        entry = n
        if moved { lastSeen = max(lastSeen, t) }
    }

    /// The flow as a record: client → real server, IP bytes each way.
    public var record: FlowRecord {
        let e = entry
        let isICMP = e.orig.proto == 1 || e.orig.proto == 58
        return FlowRecord(
            ts: firstSeen, uid: uid, origH: e.orig.src, origP: e.orig.sport, respH: e.reply.src,
            respP: isICMP ? ICMPPorts.counterpart(v6: e.orig.proto == 58, type: UInt8(truncatingIfNeeded: e.orig.sport),
                                                  code: UInt8(truncatingIfNeeded: e.orig.dport)) : e.reply.sport, ipProto: IPProtocol(rawValue: e.orig.proto),
            duration: max(0, lastSeen - firstSeen), origBytes: 0, respBytes: 0, connState: e.connState,
            missedBytes: 0, history: "", origPkts: e.origPackets ?? 0, origIPBytes: e.origBytes ?? 0,
            respPkts: e.replyPackets ?? 0, respIPBytes: e.replyBytes ?? 0, tunnelParents: [], flipped: false,
            respName: nil, respNames: [], origProcess: origProcess, respProcess: respProcess)
    }
}


/// A flow uid held without a heap allocation when it has the form flowmap gives uids ("C" and
/// 17 base-62 digits, longer than Swift keeps inline): the digits packed into two words. Any
/// other uid (one an earlier run adopted from elsewhere) is kept as text.
struct CompactUID: Equatable, Comparable {
    private enum Storage: Equatable {
        case packed(UInt64, UInt64)
        case text(String)
    }
    private let storage: Storage

    @inline(__always)
    private static func value(_ c: UInt8) -> UInt64? {
        switch c {
        case 48...57: return UInt64(c - 48)
        case 65...90: return UInt64(c - 65 + 10)
        case 97...122: return UInt64(c - 97 + 36)
        default: return nil
        }
    }

    /// A uid of flowmap's form from its digits (`FlowUID.timeOrderedDigits`).
    init(packed hi: UInt64, _ lo: UInt64) { storage = .packed(hi, lo) }

    /// The order of the strings (packed digits sort as their characters do).
    static func < (a: CompactUID, b: CompactUID) -> Bool {
        if case .packed(let ah, let al) = a.storage, case .packed(let bh, let bl) = b.storage {
            return ah != bh ? ah < bh : al < bl
        }
        return a.string < b.string
    }

    init(_ s: String) {
        var hi: UInt64 = 0, lo: UInt64 = 0
        var n = 0
        var ok = true
        for c in s.utf8 {
            if n == 0 {
                ok = c == UInt8(ascii: "C")
            } else if n <= 18, let v = CompactUID.value(c) {
                // Digits 1–9 in `hi` (62^9 < 2^54), 10–17 in `lo` (62^8 < 2^48).
                if n <= 9 { hi = hi * 62 + v } else { lo = lo * 62 + v }
            } else {
                ok = false
            }
            if !ok { break }
            n += 1
        }
        storage = ok && n == 18 ? .packed(hi, lo) : .text(s)
    }

    var string: String {
        switch storage {
        case .text(let s): return s
        case .packed(let hi, let lo):
            return FlowUID.packedUID(hi, lo)
        }
    }
}
