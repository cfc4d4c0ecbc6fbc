/// The bidirectional flow table: canonical 5-tuple → flow state, Zeek's TCP state machine,
/// and inactivity/TCP timers that run on packet time.
///
/// Memory is bounded by active flows: every expired flow is emitted through `onFlow` and
/// dropped. Nothing here reads the clock or does I/O.
public final class FlowTable {
    public let timeouts: Timeouts
    public var onFlow: (FlowRecord) -> Void
    /// When set, ended flows go here instead of `onFlow`, as snapshots to be turned into
    /// records elsewhere (the two-thread pipeline does that on the reading thread).
    public var onSnapshot: ((FlowSnapshot) -> Void)?
    /// The interned DNS names (strings); ended flows' name ids become strings through it.
    public let names: DNSNameTable
    /// Which names resolved to which addresses, as ids (learned in packet order).
    var dnsBindings = DNSBindings()
    private var slots = FlowSlots()
    private var tcpSlots = ValueSlots<TCPState>()
    private var heap = TimerHeap()
    /// Tunnel-parent lists, referenced from flow state by index.
    private var parentLists: [[FlowID]] = []
    /// Data segments that arrived past a hole, per TCP endpoint (rare; keyed by the endpoint's
    /// address in the TCP slots, which is stable while the flow lives).
    private var outOfOrder: [UInt: [(UInt64, UInt64)]] = [:]
    private var freeParentLists: [Int32] = []
    /// The flow (slot) of the latest packet at each tunnel depth (for `ParentRef.outer`).
    private var lastFlows = [Int32](repeating: -1, count: 8)
    /// The slots guessed for the events being prefetched (see `prefetchFlow`).
    private let guesses: UnsafeMutablePointer<Int32> = {
        let p = UnsafeMutablePointer<Int32>.allocate(capacity: 16)
        p.initialize(repeating: -1, count: 16)
        return p
    }()
    public private(set) var now: Double = -.infinity
    /// The time of the first event applied (the first packet's timestamp).
    public private(set) var firstTime: Double?

    /// VLAN IDs are part of the flow key (Zeek's vlan_fivetuple); by default they are not.
    public let vlanAware: Bool

    public init(timeouts: Timeouts = Timeouts(), names: DNSNameTable = DNSNameTable(), vlanAware: Bool = false,
                onFlow: @escaping (FlowRecord) -> Void) {
        self.timeouts = timeouts
        self.vlanAware = vlanAware
        self.names = names
        self.onFlow = onFlow
    }

    deinit {
        slots.deallocate()
        tcpSlots.deallocate()
        guesses.deallocate()
        heap.deallocate()
    }

    /// The TCP state of a TCP flow.
    @inline(__always)
    private func tcp(_ fp: UnsafeMutablePointer<FlowState>) -> UnsafeMutablePointer<TCPState> { tcpSlots[fp.pointee.tcp] }

    /// The id of the latest flow at depth `d` (the outer flow of a tunnelled packet).
    func lastFlow(atDepth d: Int) -> FlowID? {
        let s = lastFlows[min(d, 7)]
        return s >= 0 ? flowID(s) : nil
    }

    @inline(__always)
    func setLastFlow(_ slot: Int32, atDepth d: Int) { lastFlows[min(d, 7)] = slot }

    public var activeFlows: Int { slots.count }
    /// The most flows open at once so far (what memory is proportional to).
    public private(set) var peakActiveFlows = 0

    // MARK: Time

    /// Fires every timer due at or before `t` (Zeek advances timers before each packet).
    @inline(__always)
    public func advance(to t: Double) {
        if t > now {
            if firstTime == nil { firstTime = t }
            now = t
        }
        guard heap.topTime <= t else { return }
        while heap.topTime <= t, let top = heap.pop() {
            // The next due flow's first line, while this one is dealt with.
            if let next = heap.topSlot, let nf = slots.addressIfAllocated(next) { prefetch(nf) }
            let f = slots[top.slot]
            if f.pointee.removed || f.pointee.serial != top.serial || f.pointee.timerToken != top.token { continue }
            f.pointee.scheduledAt = .infinity
            if evaluate(f, at: top.time) {
                remove(top.slot)
            } else {
                schedule(f, slot: top.slot)
            }
        }
    }

    /// Emits every remaining flow, in (first packet time, serial) order, and empties the table.
    ///
    /// Hundreds of thousands of flows can be open at the end of a capture, far more than the
    /// caches hold: their sort keys are read in slot (memory) order, and while each flow is
    /// emitted, the lines of the flows a few places on are requested. The index and the stores
    /// are then cleared at once rather than flow by flow.
    public func flush() {
        let rest = FlowTable.emissionOrder(slots.liveSlotsInOrder().map {
            FlushEntry(start: slots[$0].pointee.start, serial: slots[$0].pointee.serial, slot: $0)
        })
        let n = rest.count
        for i in 0..<n {
            if i + FlowTable.flowAhead < n { prefetchLines(slots[rest[i + FlowTable.flowAhead].slot]) }
            if i + FlowTable.tcpAhead < n {
                let f = slots[rest[i + FlowTable.tcpAhead].slot]
                if let ts = tcpSlots.addressIfAllocated(f.pointee.tcp) { prefetchLines(ts) }
            }
            let f = slots[rest[i].slot]
            f.pointee.removed = true
            var snap = snapshot(f)
            snap.computedID = f.pointee.id
            if let onSnapshot { onSnapshot(snap) } else { onFlow(snap.record(names: names)) }
        }
        slots.removeAll()
        tcpSlots.removeAll()
        parentLists.removeAll()
        freeParentLists.removeAll()
        outOfOrder.removeAll()
        heap.removeAll()
    }

    struct FlushEntry {
        var start: Double
        var serial: UInt64
        var slot: Int32
    }

    /// The entries in (start, serial) order. Serials follow packet order, so for a capture whose
    /// timestamps never go back this is serial order: a radix sort on the serial, checked in one
    /// pass, and a comparison sort only when the check fails.
    static func emissionOrder(_ entries: [FlushEntry]) -> [FlushEntry] {
        let sorted = RadixSort.byKey(entries) { $0.serial }
        var monotonic = true
        var i = 1
        while i < sorted.count {
            if sorted[i - 1].start > sorted[i].start { monotonic = false; break }
            i += 1
        }
        if monotonic { return sorted }
        return sorted.sorted { a, b in a.start != b.start ? a.start < b.start : a.serial < b.serial }
    }

    /// Requests every line of a flow's (or a TCP state's) storage.
    @inline(__always)
    private func prefetchLines<T>(_ p: UnsafeMutablePointer<T>) {
        let raw = UnsafeRawPointer(p)
        var o = 0
        while o < MemoryLayout<T>.size { prefetch(raw + o); o += 64 }
        prefetch(raw + (MemoryLayout<T>.size - 1))
    }

    // MARK: Packets

    /// Counts one packet of a flow. Returns the flow's id, so tunnels can name their parent.
    @discardableResult
    func packet(t: Double, _ summary: PacketSummary, packetIndex: UInt64, depth: UInt8 = 0,
                parent: FlowID?, hint: Int32 = -1) -> Int32 {
        let ip = summary, tp = summary
        let proto = ip.proto
        let sport = tp.hasHeader ? tp.sport : 0, dport = tp.hasHeader ? tp.dport : 0
        let vl = summary.vlans
        let vlanKey: UInt32 = vlanAware && vl.count > 0 ? UInt32(vl.outer) << 12 | UInt32(vl.count > 1 ? vl.inner : 0) : 0
        // The decoding thread put the endpoints in key order and hashed them (keyHash != 0).
        let decoded = summary.keyHash != 0
        let key: FlowKey, srcIsA: Bool, symmetric: Bool
        if decoded {
            key = summary.keyFlipped
                ? FlowKey(a: ip.dst, portA: dport, b: ip.src, portB: sport, proto: proto, vlans: vlanKey)
                : FlowKey(a: ip.src, portA: sport, b: ip.dst, portB: dport, proto: proto, vlans: vlanKey)
            srcIsA = !summary.keyFlipped
            symmetric = summary.keySymmetric
        } else {
            var keyFlipped = false
            key = FlowKey(src: ip.src, sport: sport, dst: ip.dst, dport: dport, proto: proto, vlans: vlanKey,
                          flipped: &keyFlipped)
            srcIsA = !keyFlipped
            symmetric = key.addrA == key.addrB && key.portA == key.portB
        }
        let h = decoded && vlanKey == 0 ? summary.keyHash : FlowSlots.hash(key)
        // The slot guessed while prefetching, if it holds this very flow (a live flow with this
        // key is the only one find would return; ended flows are marked removed before their
        // slot is freed); else a lookup.
        var slot: Int32?
        if let f = slots.addressIfAllocated(hint), !f.pointee.removed, f.pointee.key == key {
            slot = hint
        } else {
            slot = slots.find(key, hash: h)
        }
        if let s = slot, proto.rawValue == 6, tp.hasHeader, tp.tcpFlags & TCPFlag.syn != 0,
           isReuse(slots[s], tp: tp) {
            remove(s)
            slot = nil
        }
        let s = slot ?? create(key: key, hash: h, t: t, ip: ip, tp: tp, sport: sport, dport: dport,
                               serial: packetIndex << 3 | UInt64(depth & 7))
        let f = slots[s]
        if let parent { addParent(f, parent) }
        // The packet's source is the originator when it is the key side the originator is on
        // (or when both sides are the same endpoint).
        let isOrig = f.pointee.origIsA == srcIsA || symmetric
        switch proto.rawValue {
        case 6 where tp.hasHeader && f.pointee.tcp >= 0:
            tcpPacket(f, isOrig: isOrig, t: t, tp: tp)
        case 17 where tp.hasHeader:
            if isOrig { f.pointee.origSent = true } else { f.pointee.respSent = true }
            _ = f.pointee.checkHistory(Hist.data, UInt8(ascii: "D"), isOrig: isOrig)
            addPayload(f, isOrig: isOrig, UInt64(tp.payloadLength))
            f.pointee.last = t
        case 1, 58:
            if isOrig { f.pointee.origSent = true } else { f.pointee.respSent = true }
            addPayload(f, isOrig: isOrig, UInt64(tp.payloadLength))
            f.pointee.last = t
        default:
            if isOrig { f.pointee.origSent = true } else { f.pointee.respSent = true }
            f.pointee.last = t
        }
        count(f, isOrig: isOrig, ipBytes: ip.ipBytes)
        schedule(f, slot: s)
        return s
    }

    // MARK: Prefetching (hints only: nothing here changes state or results)

    /// How many events ahead of the one being applied its index entry, its flow's lines and its
    /// TCP state are requested.
    static let indexAhead = 12
    static let flowAhead = 8
    static let tcpAhead = 4

    @inline(__always)
    func prefetchIndex(_ e: UnsafeMutablePointer<FlowEvent>) {
        if e.pointee.kind == .packet { slots.prefetchIndex(e.pointee.packet.keyHash) }
    }

    /// Requests the lines of the flow that event `i`'s packet most likely belongs to, and keeps
    /// that guess for the later stages (a ring of 16: no stage is more than 8 events ahead).
    @inline(__always)
    func prefetchFlow(_ e: UnsafeMutablePointer<FlowEvent>, at i: Int) {
        guesses[i & 15] = -1
        guard e.pointee.kind == .packet, let s = slots.guessSlot(e.pointee.packet.keyHash),
              let f = slots.addressIfAllocated(s) else { return }
        guesses[i & 15] = s
        prefetchLines(f)
    }

    /// Requests the TCP state of event `i`'s flow (whose lines were requested earlier).
    @inline(__always)
    func prefetchTCP(_ e: UnsafeMutablePointer<FlowEvent>, at i: Int) {
        guard e.pointee.kind == .packet, e.pointee.packet.proto.rawValue == 6,
              let f = slots.addressIfAllocated(guesses[i & 15]),
              let ts = tcpSlots.addressIfAllocated(f.pointee.tcp) else { return }
        prefetchLines(ts)  // 160 bytes: up to four lines, and the timers are in the third
    }

    /// The guessed slot of event `i`'s flow, or -1 (a hint for `packet`, which checks it).
    @inline(__always)
    func guessedSlot(at i: Int) -> Int32 { guesses[i & 15] }

    /// The id of the flow in `slot`.
    func flowID(_ slot: Int32) -> FlowID { slots[slot].pointee.id }

    private func addParent(_ f: UnsafeMutablePointer<FlowState>, _ p: FlowID) {
        if f.pointee.parents < 0 {
            if let i = freeParentLists.popLast() {
                parentLists[Int(i)] = [p]
                f.pointee.parents = i
            } else {
                parentLists.append([p])
                f.pointee.parents = Int32(parentLists.count - 1)
            }
        } else if !parentLists[Int(f.pointee.parents)].contains(p) {
            parentLists[Int(f.pointee.parents)].append(p)
        }
    }

    @inline(__always)
    private func count(_ f: UnsafeMutablePointer<FlowState>, isOrig: Bool, ipBytes: Int) {
        if isOrig {
            f.pointee.origPkts &+= 1; f.pointee.origIPBytes &+= UInt64(ipBytes)
        } else {
            f.pointee.respPkts &+= 1; f.pointee.respIPBytes &+= UInt64(ipBytes)
        }
    }

    @inline(__always)
    private func addPayload(_ f: UnsafeMutablePointer<FlowState>, isOrig: Bool, _ n: UInt64) {
        if isOrig { f.pointee.origPayload &+= n } else { f.pointee.respPayload &+= n }
    }

    private func create(key: FlowKey, hash h: UInt64, t: Double, ip: PacketSummary, tp: PacketSummary, sport: UInt16,
                        dport: UInt16, serial: UInt64) -> Int32 {
        var f = FlowState(key: key, serial: serial, origH: ip.src, origP: sport, start: t)
        f.vlans = ip.vlans
        var flip = false
        switch ip.proto.rawValue {
        case 6 where tp.hasHeader:
            let fl = tp.tcpFlags
            // Zeek's TCPAnalyzer::WantConnection: a flow that starts without a pure SYN is a
            // partial connection; guess the responder from the ports.
            if fl & TCPFlag.syn != 0 && fl & TCPFlag.ack != 0 {
                // A SYN-ACK comes from the responder (current Zeek flips these even when both
                // ports look like server ports).
                flip = true
            } else if fl & TCPFlag.syn == 0 {
                if LikelyServerPorts.tcpBits[Int(sport)] {
                    if LikelyServerPorts.tcpBits[Int(dport)] {
                        flip = fl & TCPFlag.syn == 0 && sport < dport
                    } else {
                        flip = true
                    }
                }
            }
            var state = TCPState()
            state.expireAt = t + timeouts.tcpSYNTimeout
            f.tcp = tcpSlots.insert(state)
        case 17 where tp.hasHeader:
            flip = LikelyServerPorts.udpBits[Int(sport)] && !LikelyServerPorts.udpBits[Int(dport)]
                && !ip.dst.isBroadcastOrMulticast
        default:
            break
        }
        if flip { f.flipRoles() }
        if ip.proto.rawValue == 17 {
            switch f.respP {
            case 53, 137, 5353, 5355: f.isDNS = true
            default: break
            }
        }
        if !dnsBindings.isEmpty, let id = dnsBindings.nameAsked(by: f.origH, for: f.respH, before: t) {
            f.respName = id
        }
        let slot = slots.insert(f, hash: h)
        if slots.count > peakActiveFlows { peakActiveFlows = slots.count }
        if let onCreate { onCreate(record(slots[slot])) }
        return slot
    }

    /// Called with each new flow as its first packet is counted (the live agent attributes
    /// local ends then, while their sockets exist). Off the offline hot path when nil.
    public var onCreate: ((FlowRecord) -> Void)?

    /// The flows still open, as records so far (ordered by first packet time, then uid).
    public func openRecords() -> [FlowRecord] {
        slots.liveSlots().map { record(slots[$0]) }.sorted(by: FlowRecord.outputOrder)
    }

    // MARK: TCP (Zeek's TCPAnalyzer::DeliverPacket and TCPSessionAdapter state machine)

    private func isReuse(_ p: UnsafeMutablePointer<FlowState>, tp: PacketSummary) -> Bool {
        let fl = tp.tcpFlags
        var connOrigStart = tcp(p).pointee.orig.startSeq
        var connOrigState = tcp(p).pointee.orig.state
        if fl & TCPFlag.ack != 0 {
            if tcp(p).pointee.orig.state != .inactive { return false }  // not a half connection
            connOrigStart = tcp(p).pointee.resp.startSeq
            connOrigState = tcp(p).pointee.resp.state
        }
        let isClosed = tcp(p).pointee.orig.didClose || tcp(p).pointee.resp.didClose
        if !isClosed {
            if tp.seq == connOrigStart { return false }
            if fl & TCPFlag.ack == 0 && connOrigState == .synAckSent && tcp(p).pointee.resp.state == .inactive
                && tp.seq == tcp(p).pointee.resp.startSeq {
                return false
            }
        }
        return true
    }

    private func tcpPacket(_ fp: UnsafeMutablePointer<FlowState>, isOrig isOrig0: Bool, t: Double, tp: PacketSummary) {
        var isOrig = isOrig0
        let fl = tp.tcpFlags
        let syn = fl & TCPFlag.syn != 0, fin = fl & TCPFlag.fin != 0
        let rst = fl & TCPFlag.rst != 0, ack = fl & TCPFlag.ack != 0
        let len = tp.payloadLength
        var segLen = len + (syn ? 1 : 0) + (fin ? 1 : 0)
        if rst { segLen -= len }
        let baseSeq = tp.seq, ackSeq = tp.ack
        let seqOnePast = baseSeq &+ UInt32(truncatingIfNeeded: segLen)
        // The two endpoints, in place (no copies of endpoint state per packet).
        let ts = tcp(fp)
        let origEP = FlowTable.endpoint(ts, orig: true), respEP = FlowTable.endpoint(ts, orig: false)
        var ep = isOrig ? origEP : respEP
        var peer = isOrig ? respEP : origEP

        // init_endpoint
        switch ep.pointee.state {
        case .inactive:
            if syn {
                ep.pointee.initSeqs(start: baseSeq, last: seqOnePast)
            } else {
                ep.pointee.initSeqs(start: baseSeq &- 1, last: baseSeq)
            }
        case .synSent, .synAckSent:
            if syn && baseSeq != ep.pointee.startSeq { ep.pointee.initSeqs(start: baseSeq, last: seqOnePast) }
        case .established, .partial:
            if syn { ep.pointee.initSeqs(start: baseSeq, last: seqOnePast) }
        case .reset:
            if syn && ep.pointee.prevState == .inactive { ep.pointee.initSeqs(start: baseSeq, last: seqOnePast) }
        case .closed:
            break
        }

        var underflow = false
        let relSeq = ep.pointee.relative(baseSeq, last: ep.pointee.lastSeq, wraps: ep.pointee.seqWraps, underflow: &underflow)

        // update_history
        let bits = (syn ? 1 : 0) + (fin ? 1 : 0) + (rst ? 1 : 0)
        if bits > 1 {
            if fin && rst { _ = fp.pointee.checkHistory(Hist.finRst, UInt8(ascii: "I"), isOrig: isOrig) }
            else { _ = fp.pointee.checkHistory(Hist.multiFlag, UInt8(ascii: "Q"), isOrig: isOrig) }
        } else if bits == 1 {
            if syn {
                let code = ack ? UInt8(ascii: "H") : UInt8(ascii: "S")
                if fp.pointee.checkHistory(Hist.syn, code, isOrig: isOrig) && UInt32(truncatingIfNeeded: relSeq) != ep.pointee.histLastSYN {
                    fp.pointee.addHistory(code, isOrig: isOrig)
                }
                ep.pointee.histLastSYN = UInt32(truncatingIfNeeded: relSeq)
            }
            if fin {
                let finSeq = relSeq &+ UInt64(len)
                if fp.pointee.checkHistory(Hist.fin, UInt8(ascii: "F"), isOrig: isOrig) && UInt32(truncatingIfNeeded: finSeq) != ep.pointee.histLastFIN {
                    fp.pointee.addHistory(UInt8(ascii: "F"), isOrig: isOrig)
                }
                ep.pointee.histLastFIN = UInt32(truncatingIfNeeded: finSeq)
            }
            if rst {
                if fp.pointee.checkHistory(Hist.rst, UInt8(ascii: "R"), isOrig: isOrig) && UInt32(truncatingIfNeeded: relSeq) != ep.pointee.histLastRST {
                    fp.pointee.addHistory(UInt8(ascii: "R"), isOrig: isOrig)
                }
                ep.pointee.histLastRST = UInt32(truncatingIfNeeded: relSeq)
            }
        } else {
            if len > 0 { _ = fp.pointee.checkHistory(Hist.data, UInt8(ascii: "D"), isOrig: isOrig) }
            else if ack { _ = fp.pointee.checkHistory(Hist.ack, UInt8(ascii: "A"), isOrig: isOrig) }
        }

        // update_window: a zero window that matters (Zeek's scaled 'W').
        if tp.window == 0 && !rst && peer.pointee.state != .closed && ep.pointee.state != .reset {
            ep.pointee.zeroWinCount &+= 1
            if isPowerOfTen(ep.pointee.zeroWinCount) {
                fp.pointee.addHistory(UInt8(ascii: "W"), isOrig: isOrig)
            }
        }

        if !(ep.pointee.didClose && peer.pointee.didClose) { fp.pointee.last = t }
        if fin { ep.pointee.finSeen = true }

        // In-order data extends what this endpoint has delivered (for content gaps); data past a
        // hole is remembered aside until the hole fills.
        if len > 0 && !rst && !underflow {
            let dataStart = syn ? relSeq &+ 1 : relSeq
            let dataEnd = dataStart &+ UInt64(len)
            if dataStart <= ep.pointee.dataEnd {
                ep.pointee.dataEnd = max(ep.pointee.dataEnd, dataEnd)
                if !outOfOrder.isEmpty { mergeOutOfOrder(ep) }
            } else if dataStart < ep.pointee.dataEnd &+ (1 << 31) {
                outOfOrder[UInt(bitPattern: ep), default: []].append((dataStart, dataEnd))
            }
        }

        var relAck: UInt64 = 0
        var ackTrusted = false
        if ack {
            if peer.pointee.state == .inactive {
                peer.pointee.initSeqs(start: ackSeq &- 1, last: ackSeq &- 1)
            } else {
                var ackUnderflow = false
                relAck = peer.pointee.relative(ackSeq, last: peer.pointee.ackSeq, wraps: peer.pointee.ackWraps, underflow: &ackUnderflow)
                ackTrusted = !ackUnderflow && !rst
                if !ackUnderflow && !rst {
                    let d = seqDelta(ackSeq, peer.pointee.ackSeq)
                    if ackSeq == 0 && d > 1_048_576 {
                        // a broken ack, more likely than a connection landing on 0
                    } else if d > 0 {
                        peer.pointee.updateAckSeq(ackSeq)
                    }
                }
            }
        }

        // update_last_seq
        let deltaLast = seqDelta(seqOnePast, ep.pointee.lastSeq)
        if (syn || rst) && (deltaLast > 1_048_576 || deltaLast < -1_048_576) {
            // don't trust wild SYN/RST sequence numbers
        } else if fin && ep.pointee.lastSeq == ep.pointee.startSeq &+ 1 {
            ep.pointee.updateLastSeq(seqOnePast)
        } else if ep.pointee.state == .reset {
            // nothing after a reset is trusted
        } else if deltaLast > 0 {
            ep.pointee.updateLastSeq(seqOnePast)
        } else if len > 0 {
            ep.pointee.rxmitCount &+= 1
            if isPowerOfTen(ep.pointee.rxmitCount) {
                fp.pointee.addHistory(UInt8(ascii: "T"), isOrig: isOrig)
            }
        }

        // UpdateStateMachine
        var doClose = false, genEvent = false
        switch ep.pointee.state {
        case .inactive:
            if syn {
                if isOrig {
                    ep.pointee.setState(ack ? .synAckSent : .synSent)
                    if timeouts.tcpAttemptDelay > 0 { tcp(fp).pointee.attemptAt = min(tcp(fp).pointee.attemptAt, t + timeouts.tcpAttemptDelay) }
                } else {
                    if !ack && peer.pointee.state == .synAckSent && baseSeq == ep.pointee.startSeq {
                        // A SYN/SYN-ACK reversal: flip the endpoints and establish.
                        peer.pointee.setState(.established)
                        fp.pointee.flipRoles()
                        swap(&tcp(fp).pointee.orig, &tcp(fp).pointee.resp)
                        isOrig = true
                        ep = origEP; peer = respEP
                    }
                    if peer.pointee.state == .synSent { peer.pointee.setState(.established) }
                    ep.pointee.setState(.established)
                }
            }
            if fin {
                ep.pointee.setState(.closed)
                doClose = true; genEvent = true
            }
            if rst {
                ep.pointee.setState(.reset)
                var isReject = false
                if isOrig {
                    if peer.pointee.state == .established { isReject = true }
                } else if peer.pointee.state == .synSent || peer.pointee.state == .synAckSent {
                    isReject = true
                }
                doClose = true
                genEvent = !isReject
            }
            if ep.pointee.state == .inactive {
                let origState = isOrig ? ep.pointee.state : peer.pointee.state
                if !isOrig && len == 0 && origState == .synSent {
                    // an eccentric stack acking the SYN before its SYN-ACK
                } else if ack && peer.pointee.state == .established {
                    ep.pointee.setState(.established)
                } else {
                    ep.pointee.setState(.partial)
                }
            }
        case .synSent, .synAckSent:
            if fin {
                ep.pointee.setState(.closed)
                doClose = true; genEvent = true
            }
            if rst {
                ep.pointee.setState(.reset)
                tcp(fp).pointee.isActive = false  // ConnectionReset
                doClose = true
            }
        case .established, .partial:
            if syn && ep.pointee.state == .partial && peer.pointee.state == .inactive && !ack {
                ep.pointee.setState(.synSent)
            }
            if fin && !rst {
                ep.pointee.setState(.closed)
                if peer.pointee.state == .reset && peer.pointee.prevState == .closed { peer.pointee.setState(.closed) }
                doClose = true; genEvent = true
            }
            if rst {
                ep.pointee.setState(.reset)
                doClose = true
                if peer.pointee.state != .reset || peer.pointee.prevState != .established { tcp(fp).pointee.isActive = false }
            }
        case .closed:
            if rst && peer.pointee.state != .closed {
                ep.pointee.setState(.reset)
                if !ep.pointee.didClose { doClose = true }
                tcp(fp).pointee.resetAt = min(tcp(fp).pointee.resetAt, t + timeouts.tcpResetDelay)
            }
        case .reset:
            break
        }

        // An acknowledgment beyond the data seen from the peer reveals a content gap (Zeek's
        // reassembler counts it in missed_bytes and marks 'G'/'g' in the history).
        if ackTrusted && relAck > peer.pointee.dataEnd && relAck < peer.pointee.dataEnd &+ (1 << 31) {
            // Bytes held aside (past an earlier hole) were seen: they are not missed.
            var seenAside: UInt64 = 0
            if !outOfOrder.isEmpty, let ranges = outOfOrder.removeValue(forKey: UInt(bitPattern: peer)) {
                var covered = peer.pointee.dataEnd
                for (a, z) in ranges.sorted(by: { $0.0 < $1.0 }) where z > covered && a < relAck {
                    let lo = max(a, covered), hi = min(z, relAck)
                    if hi > lo { seenAside &+= hi - lo; covered = hi }
                }
                let later = ranges.filter { $0.1 > relAck }
                if !later.isEmpty { outOfOrder[UInt(bitPattern: peer)] = later }
            }
            var gap = relAck - peer.pointee.dataEnd - min(seenAside, relAck - peer.pointee.dataEnd)
            if peer.pointee.finSeen && gap > 0 { gap -= 1 }  // the FIN's sequence number
            if gap > 0 {
                ts.pointee.missed &+= gap
                _ = fp.pointee.checkHistory(Hist.gap, UInt8(ascii: "G"), isOrig: !isOrig)
            }
            peer.pointee.dataEnd = relAck
        }

        if doClose { connectionClosed(fp, ep, peer, genEvent: genEvent) }
    }

    /// Extends `ep`'s in-order data over segments held aside that now connect.
    private func mergeOutOfOrder(_ ep: UnsafeMutablePointer<TCPEndpoint>) {
        let key = UInt(bitPattern: ep)
        guard var ranges = outOfOrder[key] else { return }
        ranges.sort { $0.0 < $1.0 }
        var rest: [(UInt64, UInt64)] = []
        for (a, z) in ranges {
            if a <= ep.pointee.dataEnd { ep.pointee.dataEnd = max(ep.pointee.dataEnd, z) } else { rest.append((a, z)) }
        }
        outOfOrder[key] = rest.isEmpty ? nil : rest
    }

    /// The address of a flow's originator or responder endpoint inside its slot.
    @inline(__always)
    static func endpoint(_ ts: UnsafeMutablePointer<TCPState>, orig: Bool) -> UnsafeMutablePointer<TCPEndpoint> {
        let offset = orig ? origOffset : respOffset
        return (UnsafeMutableRawPointer(ts) + offset).assumingMemoryBound(to: TCPEndpoint.self)
    }
    static let origOffset = MemoryLayout<TCPState>.offset(of: \TCPState.orig)!
    static let respOffset = MemoryLayout<TCPState>.offset(of: \TCPState.resp)!

    private func connectionClosed(_ fp: UnsafeMutablePointer<FlowState>, _ ep: UnsafeMutablePointer<TCPEndpoint>,
                                  _ peer: UnsafeMutablePointer<TCPEndpoint>,
                                  genEvent: Bool) {
        if ep.pointee.didClose { return }
        ep.pointee.didClose = true
        let closeComplete = ep.pointee.state == .reset || peer.pointee.didClose || peer.pointee.state == .inactive
        if closeComplete {
            if (ep.pointee.prevState != .inactive || peer.pointee.state != .inactive) && genEvent {
                tcp(fp).pointee.isActive = false  // ConnectionFinished
            }
            tcp(fp).pointee.attemptAt = .infinity
            tcp(fp).pointee.expireAt = .infinity
            tcp(fp).pointee.resetAt = .infinity
            tcp(fp).pointee.deleteAt = fp.pointee.last + timeouts.tcpCloseDelay
        } else if ep.pointee.prevState != .inactive {
            tcp(fp).pointee.expireAt = min(tcp(fp).pointee.expireAt, fp.pointee.last + timeouts.tcpSessionTimer)
        }
    }

    // MARK: Timers

    /// The earliest time at which something may happen to `f`.
    @inline(__always)
    private func deadline(_ f: UnsafeMutablePointer<FlowState>) -> Double {
        if f.pointee.tcp >= 0 {
            let t = tcp(f)
            return min(min(t.pointee.attemptAt, t.pointee.deleteAt),
                       min(min(t.pointee.resetAt, t.pointee.expireAt), f.pointee.last + timeouts.tcpInactivity))
        }
        switch f.pointee.key.proto.rawValue {
        case 17: return f.pointee.last + (f.pointee.isDNS ? timeouts.dnsInactivity : timeouts.udpInactivity)
        case 1, 58: return f.pointee.last + timeouts.icmpInactivity
        default: return f.pointee.last + timeouts.otherInactivity
        }
    }

    @inline(__always)
    private func schedule(_ f: UnsafeMutablePointer<FlowState>, slot: Int32) {
        let d = deadline(f)
        // The heap already holds an entry no later than the deadline: it will re-evaluate then.
        if d >= f.pointee.scheduledAt { return }
        f.pointee.timerToken &+= 1
        f.pointee.scheduledAt = d
        heap.push(.init(time: d, serial: f.pointee.serial, slot: slot, token: f.pointee.timerToken))
    }

    /// Runs the timers of `f` that are due at `t`. Returns true if the flow is to be removed.
    private func evaluate(_ fp: UnsafeMutablePointer<FlowState>, at t: Double) -> Bool {
        if fp.pointee.tcp < 0 {
            return deadline(fp) <= t
        }
        if tcp(fp).pointee.attemptAt <= t {
            tcp(fp).pointee.attemptAt = .infinity
            let os = tcp(fp).pointee.orig.state
            if tcp(fp).pointee.isActive && (os == .synSent || os == .synAckSent) && tcp(fp).pointee.resp.state == .inactive {
                tcp(fp).pointee.isActive = false
                return true
            }
        }
        if tcp(fp).pointee.deleteAt <= t { return true }
        if tcp(fp).pointee.resetAt <= t {
            tcp(fp).pointee.resetAt = .infinity
            if tcp(fp).pointee.isActive { return true }
        }
        while tcp(fp).pointee.expireAt <= t {
            let when = tcp(fp).pointee.expireAt
            if !tcp(fp).pointee.isActive { tcp(fp).pointee.expireAt = .infinity; break }
            if fp.pointee.last + timeouts.tcpConnectionLinger < when {
                let o = tcp(fp).pointee.orig, r = tcp(fp).pointee.resp
                if o.didClose || r.didClose {
                    if (o.didClose && r.didClose) || o.state == .reset || r.state == .reset
                        || o.state == .inactive || r.state == .inactive {
                        return true
                    }
                }
                if r.state == .inactive && o.state == .inactive { return true }
            }
            tcp(fp).pointee.expireAt = when + timeouts.tcpSessionTimer
        }
        return fp.pointee.last + timeouts.tcpInactivity <= t
    }

    private func remove(_ slot: Int32) {
        let f = slots[slot]
        guard !f.pointee.removed else { return }
        f.pointee.removed = true
        let snap = snapshot(f)
        if f.pointee.tcp >= 0 {
            if !outOfOrder.isEmpty {
                let ts = tcpSlots[f.pointee.tcp]
                outOfOrder[UInt(bitPattern: FlowTable.endpoint(ts, orig: true))] = nil
                outOfOrder[UInt(bitPattern: FlowTable.endpoint(ts, orig: false))] = nil
            }
            tcpSlots.remove(f.pointee.tcp)
        }
        if f.pointee.parents >= 0 {
            parentLists[Int(f.pointee.parents)] = []
            freeParentLists.append(f.pointee.parents)
        }
        slots.remove(slot)
        if let onSnapshot { onSnapshot(snap) } else { onFlow(snap.record(names: names)) }
    }

    // MARK: Records

    func record(_ fp: UnsafeMutablePointer<FlowState>) -> FlowRecord { snapshot(fp).record(names: names) }

    /// Everything a flow record needs, taken from the table's state. Turning it into a
    /// `FlowRecord` (ids, strings) can then happen on another thread.
    func snapshot(_ fp: UnsafeMutablePointer<FlowState>) -> FlowSnapshot {
        let f = fp.pointee
        var origBytes: UInt64 = 0, respBytes: UInt64 = 0, missed: UInt64 = 0
        let state: StaticString
        switch f.key.proto.rawValue {
        case 6 where f.tcp >= 0:
            let ts = tcpSlots[f.tcp].pointee
            missed = ts.missed
            origBytes = ts.orig.size(peerState: ts.resp.state)
            respBytes = ts.resp.size(peerState: ts.orig.state)
            state = FlowTable.tcpConnState(ts.orig.state, ts.resp.state, origSize: origBytes, respSize: respBytes,
                                           history: f.history)
        case 17:
            origBytes = f.origPayload; respBytes = f.respPayload
            state = f.origSent ? (f.respSent ? "SF" : "S0") : (f.respSent ? "SHR" : "OTH")
        case 1, 58:
            origBytes = f.origPayload; respBytes = f.respPayload
            state = "OTH"
        default:
            state = "OTH"
        }
        let seen = dnsBindings.names(for: f.respH)
        return FlowSnapshot(flow: f, origBytes: origBytes, respBytes: respBytes, missed: missed, state: state,
                            addressName: seen.first, addressNameCount: seen.count,
                            parents: f.parents >= 0 ? parentLists[Int(f.parents)] : [])
    }

    /// Zeek's conn_state for TCP (base/protocols/conn/main.zeek), a pure function of both
    /// endpoints' states, their sizes and the history.
    public static func tcpConnState(_ os: TCPEndpointState, _ rs: TCPEndpointState, origSize: UInt64,
                                    respSize: UInt64, history: [UInt8]) -> String {
        var h = HistoryLetters()
        for c in history { h.append(c) }
        return tcpConnState(os, rs, origSize: origSize, respSize: respSize, history: h).description
    }

    static func tcpConnState(_ os: TCPEndpointState, _ rs: TCPEndpointState, origSize: UInt64,
                             respSize: UInt64, history: HistoryLetters) -> StaticString {
        let oInactive = os == .inactive || os == .partial
        let rInactive = rs == .inactive || rs == .partial
        if rs == .reset {
            if os == .synSent || os == .synAckSent || (os == .reset && origSize == 0 && respSize == 0) {
                return "REJ"
            }
            return oInactive ? "RSTRH" : "RSTR"
        }
        if os == .reset {
            if rInactive { return historyLooksLikeSYNThenRST(history) ? "RSTOS0" : "OTH" }
            return "RSTO"
        }
        if rs == .closed && os == .closed { return "SF" }
        if os == .closed { return rInactive ? "SH" : "S2" }
        if rs == .closed { return oInactive ? "SHR" : "S3" }
        if os == .synSent && rs == .inactive { return "S0" }
        if os == .established && rs == .established { return "S1" }
        return "OTH"
    }

    /// Matches Zeek's `/\^?S[^HAFGIQ]*R.*/` against the whole history.
    static func historyLooksLikeSYNThenRST(_ letters: HistoryLetters) -> Bool {
        let h = letters.bytes
        var i = 0
        if i < h.count && h[i] == UInt8(ascii: "^") { i += 1 }
        guard i < h.count, h[i] == UInt8(ascii: "S") else { return false }
        i += 1
        while i < h.count {
            let c = h[i]
            if c == UInt8(ascii: "R") { return true }
            switch c {
            case UInt8(ascii: "H"), UInt8(ascii: "A"), UInt8(ascii: "F"), UInt8(ascii: "G"), UInt8(ascii: "I"),
                 UInt8(ascii: "Q"):
                return false
            default: i += 1
            }
        }
        return false
    }
}
