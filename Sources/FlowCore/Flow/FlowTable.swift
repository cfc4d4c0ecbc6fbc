/// The bidirectional flow table: canonical 5-tuple → flow state, Zeek's TCP state machine,
/// and inactivity/TCP timers that run on packet time.
///
/// Memory is bounded by active flows: every expired flow is emitted through `onFlow` and
/// dropped. Nothing here reads the clock or does I/O.
public final class FlowTable {
    public let timeouts: Timeouts
    public var onFlow: (FlowRecord) -> Void
    /// Names for responders, learned from DNS answers.
    public let names: DNSNameTable
    private var flows: [FlowKey: Flow] = [:]
    private var heap = TimerHeap()
    private var nextSerial: UInt64 = 0
    public private(set) var now: Double = -.infinity
    public private(set) var flowsEmitted = 0

    public init(timeouts: Timeouts = Timeouts(), names: DNSNameTable = DNSNameTable(),
                onFlow: @escaping (FlowRecord) -> Void) {
        self.timeouts = timeouts
        self.names = names
        self.onFlow = onFlow
        flows.reserveCapacity(1024)
    }

    public var activeFlows: Int { flows.count }

    // MARK: Time

    /// Fires every timer due at or before `t` (Zeek advances timers before each packet).
    @inline(__always)
    public func advance(to t: Double) {
        if t > now { now = t }
        while let top = heap.top, top.time <= t {
            _ = heap.pop()
            let f = top.flow
            if f.removed || f.timerToken != top.token { continue }
            f.scheduledAt = .infinity
            if evaluate(f, at: top.time) {
                remove(f)
            } else {
                schedule(f)
            }
        }
    }

    /// Emits every remaining flow, in (first packet time, serial) order, and empties the table.
    public func flush() {
        let rest = flows.values.sorted { a, b in a.start != b.start ? a.start < b.start : a.serial < b.serial }
        for f in rest { remove(f) }
        heap.removeAll()
    }

    // MARK: Packets

    /// Counts one packet (or first fragment) of a flow. Returns the flow so tunnels can name
    /// their parent, and so fragments can be attributed.
    @discardableResult
    func packet(t: Double, ip: IPView, tp: TransportView, packetIndex: UInt64, parent: String?) -> Flow {
        var sport: UInt16 = 0, dport: UInt16 = 0
        let proto = ip.proto
        let isICMP = proto.rawValue == 1 || proto.rawValue == 58
        if tp.hasHeader {
            if isICMP {
                sport = UInt16(tp.icmpType)
                dport = ICMPPorts.counterpart(v6: proto.rawValue == 58, type: tp.icmpType, code: tp.icmpCode)
            } else if proto.rawValue == 6 || proto.rawValue == 17 {
                sport = tp.sport; dport = tp.dport
            }
        }
        var keyFlipped = false
        let key = FlowKey(src: ip.src, sport: sport, dst: ip.dst, dport: dport, proto: proto, flipped: &keyFlipped)
        var flow = flows[key]
        if let f = flow, proto.rawValue == 6, tp.hasHeader, tp.tcpFlags & TCPFlag.syn != 0,
           isReuse(f, tp: tp) {
            remove(f)
            flow = nil
        }
        let f: Flow
        if let existing = flow {
            f = existing
        } else {
            f = create(key: key, t: t, ip: ip, tp: tp, sport: sport, dport: dport, packetIndex: packetIndex)
        }
        if let parent, !f.tunnelParents.contains(parent) {
            f.tunnelParents.append(parent)
        }
        let isOrig = f.origH == ip.src && f.origP == sport && f.respH == ip.dst && f.respP == dport
        switch proto.rawValue {
        case 6 where tp.hasHeader:
            tcpPacket(f, isOrig: isOrig, t: t, tp: tp)
        case 17 where tp.hasHeader:
            if isOrig { f.origSent = true; _ = f.checkHistory(Hist.data, UInt8(ascii: "D"), isOrig: true) }
            else { f.respSent = true; _ = f.checkHistory(Hist.data, UInt8(ascii: "D"), isOrig: false) }
            addPayload(f, isOrig: isOrig, UInt64(tp.payloadLength))
            f.last = t
        case 1, 58:
            if isOrig { f.origSent = true } else { f.respSent = true }
            addPayload(f, isOrig: isOrig, UInt64(tp.payloadLength))
            f.last = t
        default:
            if isOrig { f.origSent = true } else { f.respSent = true }
            f.last = t
        }
        count(f, isOrig: isOrig, ipBytes: ip.ipBytes)
        schedule(f)
        return f
    }

    @inline(__always)
    private func count(_ f: Flow, isOrig: Bool, ipBytes: Int) {
        if isOrig {
            f.origPkts &+= 1; f.origIPBytes &+= UInt64(ipBytes)
        } else {
            f.respPkts &+= 1; f.respIPBytes &+= UInt64(ipBytes)
        }
    }

    @inline(__always)
    private func addPayload(_ f: Flow, isOrig: Bool, _ n: UInt64) {
        if isOrig { f.origPayload &+= n } else { f.respPayload &+= n }
    }

    private func create(key: FlowKey, t: Double, ip: IPView, tp: TransportView, sport: UInt16, dport: UInt16,
                        packetIndex: UInt64) -> Flow {
        nextSerial += 1
        let f = Flow(key: key, serial: nextSerial, origH: ip.src, origP: sport, respH: ip.dst, respP: dport,
                     start: t, packetIndex: packetIndex)
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
            f.expireAt = t + timeouts.tcpSYNTimeout
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
        f.respName = names.nameAsked(by: f.origH, for: f.respH, before: t)
        flows[key] = f
        return f
    }

    // MARK: TCP (Zeek's TCPAnalyzer::DeliverPacket and TCPSessionAdapter state machine)

    private func isReuse(_ f: Flow, tp: TransportView) -> Bool {
        let fl = tp.tcpFlags
        var connOrig = f.orig
        if fl & TCPFlag.ack != 0 {
            if f.orig.state != .inactive { return false }  // not a half connection
            connOrig = f.resp
        }
        let isClosed = f.orig.didClose || f.resp.didClose
        if !isClosed {
            if tp.seq == connOrig.startSeq { return false }
            if fl & TCPFlag.ack == 0 && connOrig.state == .synAckSent && f.resp.state == .inactive
                && tp.seq == f.resp.startSeq {
                return false
            }
        }
        return true
    }

    private func tcpPacket(_ f: Flow, isOrig isOrig0: Bool, t: Double, tp: TransportView) {
        var isOrig = isOrig0
        let fl = tp.tcpFlags
        let syn = fl & TCPFlag.syn != 0, fin = fl & TCPFlag.fin != 0
        let rst = fl & TCPFlag.rst != 0, ack = fl & TCPFlag.ack != 0
        let len = tp.payloadLength
        var segLen = len + (syn ? 1 : 0) + (fin ? 1 : 0)
        if rst { segLen -= len }
        let baseSeq = tp.seq, ackSeq = tp.ack
        let seqOnePast = baseSeq &+ UInt32(truncatingIfNeeded: segLen)
        var ep = isOrig ? f.orig : f.resp
        var peer = isOrig ? f.resp : f.orig

        // init_endpoint
        switch ep.state {
        case .inactive:
            if syn {
                ep.initSeqs(start: baseSeq, last: seqOnePast)
            } else {
                ep.initSeqs(start: baseSeq &- 1, last: baseSeq)
            }
        case .synSent, .synAckSent:
            if syn && baseSeq != ep.startSeq { ep.initSeqs(start: baseSeq, last: seqOnePast) }
        case .established, .partial:
            if syn { ep.initSeqs(start: baseSeq, last: seqOnePast) }
        case .reset:
            if syn && ep.prevState == .inactive { ep.initSeqs(start: baseSeq, last: seqOnePast) }
        case .closed:
            break
        }

        var underflow = false
        let relSeq = ep.relative(baseSeq, last: ep.lastSeq, wraps: ep.seqWraps, underflow: &underflow)

        // update_history
        let bits = (syn ? 1 : 0) + (fin ? 1 : 0) + (rst ? 1 : 0)
        if bits > 1 {
            if fin && rst { _ = f.checkHistory(Hist.finRst, UInt8(ascii: "I"), isOrig: isOrig) }
            else { _ = f.checkHistory(Hist.multiFlag, UInt8(ascii: "Q"), isOrig: isOrig) }
        } else if bits == 1 {
            if syn {
                let code = ack ? UInt8(ascii: "H") : UInt8(ascii: "S")
                if f.checkHistory(Hist.syn, code, isOrig: isOrig) && relSeq != ep.histLastSYN {
                    f.addHistory(code, isOrig: isOrig)
                }
                ep.histLastSYN = relSeq
            }
            if fin {
                let finSeq = relSeq &+ UInt64(len)
                if f.checkHistory(Hist.fin, UInt8(ascii: "F"), isOrig: isOrig) && finSeq != ep.histLastFIN {
                    f.addHistory(UInt8(ascii: "F"), isOrig: isOrig)
                }
                ep.histLastFIN = finSeq
            }
            if rst {
                if f.checkHistory(Hist.rst, UInt8(ascii: "R"), isOrig: isOrig) && relSeq != ep.histLastRST {
                    f.addHistory(UInt8(ascii: "R"), isOrig: isOrig)
                }
                ep.histLastRST = relSeq
            }
        } else {
            if len > 0 { _ = f.checkHistory(Hist.data, UInt8(ascii: "D"), isOrig: isOrig) }
            else if ack { _ = f.checkHistory(Hist.ack, UInt8(ascii: "A"), isOrig: isOrig) }
        }

        // update_window: a zero window that matters (Zeek's scaled 'W').
        if tp.window == 0 && !rst && peer.state != .closed && ep.state != .reset {
            ep.zeroWinCount &+= 1
            if ep.zeroWinCount == ep.zeroWinThreshold {
                f.addHistory(UInt8(ascii: "W"), isOrig: isOrig)
                ep.zeroWinThreshold = ep.zeroWinThreshold &* 10
            }
        }

        if !(ep.didClose && peer.didClose) { f.last = t }
        if fin { ep.finCount &+= 1 }
        if rst { ep.rstCount &+= 1 }

        if ack {
            if peer.state == .inactive {
                peer.initSeqs(start: ackSeq &- 1, last: ackSeq &- 1)
            } else {
                var ackUnderflow = false
                _ = peer.relative(ackSeq, last: peer.ackSeq, wraps: peer.ackWraps, underflow: &ackUnderflow)
                if !ackUnderflow && !rst {
                    let d = seqDelta(ackSeq, peer.ackSeq)
                    if ackSeq == 0 && d > 1_048_576 {
                        // a broken ack, more likely than a connection landing on 0
                    } else if d > 0 {
                        peer.updateAckSeq(ackSeq)
                    }
                }
            }
        }

        // update_last_seq
        let deltaLast = seqDelta(seqOnePast, ep.lastSeq)
        if (syn || rst) && (deltaLast > 1_048_576 || deltaLast < -1_048_576) {
            // don't trust wild SYN/RST sequence numbers
        } else if fin && ep.lastSeq == ep.startSeq &+ 1 {
            ep.updateLastSeq(seqOnePast)
        } else if ep.state == .reset {
            // nothing after a reset is trusted
        } else if deltaLast > 0 {
            ep.updateLastSeq(seqOnePast)
        } else if len > 0 {
            ep.rxmitCount &+= 1
            if ep.rxmitCount == ep.rxmitThreshold {
                f.addHistory(UInt8(ascii: "T"), isOrig: isOrig)
                ep.rxmitThreshold = ep.rxmitThreshold &* 10
            }
        }

        // UpdateStateMachine
        var doClose = false, genEvent = false
        switch ep.state {
        case .inactive:
            if syn {
                if isOrig {
                    ep.setState(ack ? .synAckSent : .synSent)
                    if timeouts.tcpAttemptDelay > 0 { f.attemptAt = min(f.attemptAt, t + timeouts.tcpAttemptDelay) }
                } else {
                    if !ack && peer.state == .synAckSent && baseSeq == ep.startSeq {
                        // A SYN/SYN-ACK reversal: flip the endpoints and establish.
                        peer.setState(.established)
                        writeBack(f, isOrig: isOrig, ep, peer)
                        f.flipRoles()
                        isOrig = true
                        ep = f.orig; peer = f.resp
                    }
                    if peer.state == .synSent { peer.setState(.established) }
                    ep.setState(.established)
                }
            }
            if fin {
                ep.setState(.closed)
                doClose = true; genEvent = true
            }
            if rst {
                ep.setState(.reset)
                var isReject = false
                if isOrig {
                    if peer.state == .established { isReject = true }
                } else if peer.state == .synSent || peer.state == .synAckSent {
                    isReject = true
                }
                doClose = true
                genEvent = !isReject
            }
            if ep.state == .inactive {
                let origState = isOrig ? ep.state : peer.state
                if !isOrig && len == 0 && origState == .synSent {
                    // an eccentric stack acking the SYN before its SYN-ACK
                } else if ack && peer.state == .established {
                    ep.setState(.established)
                } else {
                    ep.setState(.partial)
                }
            }
        case .synSent, .synAckSent:
            if fin {
                ep.setState(.closed)
                doClose = true; genEvent = true
            }
            if rst {
                ep.setState(.reset)
                f.isActive = false  // ConnectionReset
                doClose = true
            }
        case .established, .partial:
            if syn && ep.state == .partial && peer.state == .inactive && !ack {
                ep.setState(.synSent)
            }
            if fin && !rst {
                ep.setState(.closed)
                if peer.state == .reset && peer.prevState == .closed { peer.setState(.closed) }
                doClose = true; genEvent = true
            }
            if rst {
                ep.setState(.reset)
                doClose = true
                if peer.state != .reset || peer.prevState != .established { f.isActive = false }
            }
        case .closed:
            if rst && peer.state != .closed {
                ep.setState(.reset)
                if !ep.didClose { doClose = true }
                f.resetAt = min(f.resetAt, t + timeouts.tcpResetDelay)
            }
        case .reset:
            break
        }

        if doClose { connectionClosed(f, &ep, &peer, genEvent: genEvent) }
        writeBack(f, isOrig: isOrig, ep, peer)
    }

    @inline(__always)
    private func writeBack(_ f: Flow, isOrig: Bool, _ ep: TCPEndpoint, _ peer: TCPEndpoint) {
        if isOrig { f.orig = ep; f.resp = peer } else { f.resp = ep; f.orig = peer }
    }

    private func connectionClosed(_ f: Flow, _ ep: inout TCPEndpoint, _ peer: inout TCPEndpoint, genEvent: Bool) {
        if ep.didClose { return }
        ep.didClose = true
        let closeComplete = ep.state == .reset || peer.didClose || peer.state == .inactive
        if closeComplete {
            if (ep.prevState != .inactive || peer.state != .inactive) && genEvent {
                f.isActive = false  // ConnectionFinished
            }
            f.attemptAt = .infinity
            f.expireAt = .infinity
            f.resetAt = .infinity
            f.deleteAt = f.last + timeouts.tcpCloseDelay
        } else if ep.prevState != .inactive {
            f.expireAt = min(f.expireAt, f.last + timeouts.tcpSessionTimer)
        }
    }

    // MARK: Timers

    /// The earliest time at which something may happen to `f`.
    @inline(__always)
    private func deadline(_ f: Flow) -> Double {
        switch f.key.proto.rawValue {
        case 6:
            return min(min(f.attemptAt, f.deleteAt), min(min(f.resetAt, f.expireAt), f.last + timeouts.tcpInactivity))
        case 17: return f.last + (f.isDNS ? timeouts.dnsInactivity : timeouts.udpInactivity)
        case 1, 58: return f.last + timeouts.icmpInactivity
        default: return f.last + timeouts.otherInactivity
        }
    }

    @inline(__always)
    private func schedule(_ f: Flow) {
        let d = deadline(f)
        // The heap already holds an entry no later than the deadline: it will re-evaluate then.
        if d >= f.scheduledAt { return }
        f.timerToken &+= 1
        f.scheduledAt = d
        heap.push(.init(time: d, serial: f.serial, token: f.timerToken, flow: f))
    }

    /// Runs the timers of `f` that are due at `t`. Returns true if the flow is to be removed.
    private func evaluate(_ f: Flow, at t: Double) -> Bool {
        if f.key.proto.rawValue != 6 {
            return deadline(f) <= t
        }
        if f.attemptAt <= t {
            f.attemptAt = .infinity
            if f.isActive && (f.orig.state == .synSent || f.orig.state == .synAckSent) && f.resp.state == .inactive {
                f.isActive = false
                return true
            }
        }
        if f.deleteAt <= t { return true }
        if f.resetAt <= t {
            f.resetAt = .infinity
            if f.isActive { return true }
        }
        while f.expireAt <= t {
            let when = f.expireAt
            if !f.isActive { f.expireAt = .infinity; break }
            if f.last + timeouts.tcpConnectionLinger < when {
                let o = f.orig, r = f.resp
                if o.didClose || r.didClose {
                    if (o.didClose && r.didClose) || o.state == .reset || r.state == .reset
                        || o.state == .inactive || r.state == .inactive {
                        return true
                    }
                }
                if r.state == .inactive && o.state == .inactive { return true }
            }
            f.expireAt = when + timeouts.tcpSessionTimer
        }
        return f.last + timeouts.tcpInactivity <= t
    }

    private func remove(_ f: Flow) {
        guard !f.removed else { return }
        f.removed = true
        flows.removeValue(forKey: f.key)
        flowsEmitted += 1
        onFlow(record(f))
    }

    // MARK: Records

    func record(_ f: Flow) -> FlowRecord {
        let proto = f.key.proto
        var origBytes: UInt64 = 0, respBytes: UInt64 = 0
        let state: String
        switch proto.rawValue {
        case 6:
            origBytes = f.orig.size(peerState: f.resp.state)
            respBytes = f.resp.size(peerState: f.orig.state)
            state = FlowTable.tcpConnState(f.orig.state, f.resp.state, origSize: origBytes, respSize: respBytes,
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
        var respName = f.respName
        var respNames: [String] = []
        let all = names.allNames(for: f.respH)
        if respName == nil { respName = all.first }
        if all.count > 1 { respNames = all }
        return FlowRecord(
            ts: f.start, uid: f.uid, origH: f.origH, origP: f.origP, respH: f.respH, respP: f.respP,
            ipProto: proto, duration: f.last - f.start, origBytes: origBytes, respBytes: respBytes,
            connState: state, missedBytes: 0, history: String(decoding: f.history, as: UTF8.self),
            origPkts: f.origPkts, origIPBytes: f.origIPBytes, respPkts: f.respPkts, respIPBytes: f.respIPBytes,
            tunnelParents: f.tunnelParents.sorted(), flipped: f.flipped, respName: respName, respNames: respNames)
    }

    /// Zeek's conn_state for TCP (base/protocols/conn/main.zeek), a pure function of both
    /// endpoints' states, their sizes and the history.
    public static func tcpConnState(_ os: TCPEndpointState, _ rs: TCPEndpointState, origSize: UInt64,
                                    respSize: UInt64, history: [UInt8]) -> String {
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
    static func historyLooksLikeSYNThenRST(_ h: [UInt8]) -> Bool {
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
