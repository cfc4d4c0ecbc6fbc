/// Totals for one analysis run.
public struct AnalysisStats: Sendable, Equatable {
    /// Packets handed to the analyzer.
    public var packetsRead: UInt64 = 0
    /// Packets that carried IP and were counted to a flow.
    public var packetsDecoded: UInt64 = 0
    /// Well-formed frames with no IP (ARP, STP, LCP…).
    public var nonIPFrames: UInt64 = 0
    /// Packets whose capture was cut short by the snap length (still counted by IP length).
    public var snaplenTruncated: UInt64 = 0
    public var bytesRead: UInt64 = 0
    public var firstTimestamp: Double?
    public var lastTimestamp: Double?
    public var anomalies = AnomalyCounters()
    public init() {}
}

/// Drives one packet through link, IP, transport and tunnel decoding, producing flow events.
///
/// The adapter lends each packet's bytes for the duration of `process`; nothing escapes. Events
/// are collected in a batch; a full batch goes to `handoff`, which either applies it to a flow
/// table on this thread (`init(table:)`) or passes it to another thread and returns an empty one.
public final class PacketAnalyzer {
    /// The table events are applied to, when the analyzer drives one directly.
    public let table: FlowTable?
    private var batch: EventBatch
    private let handoff: (EventBatch) -> EventBatch
    public private(set) var stats = AnalysisStats()
    public var maxTunnelDepth = 4
    /// Called with each DNS response's answers as they are decoded, on the decoding thread
    /// (ahead of the flow table, which learns them in order with the packets).
    public var onNames: (([DNSObservation]) -> Void)?
    private var packetIndex: UInt64 = 0
    private var reassembly: [FragmentKey: Reassembly] = [:]
    private var fragmentSweepAt = 0.0

    struct FragmentKey: Hashable {
        var src: IPAddress
        var dst: IPAddress
        var id: UInt32
        var proto: UInt8
    }

    /// One IP datagram being reassembled (RFC 791, RFC 8200 §4.5). Only fragmented packets,
    /// which are rare, are copied; the datagram is analyzed once complete, counting once, as
    /// Zeek does.
    struct Reassembly {
        var header: [UInt8] = []
        var isV6 = false
        var data: [UInt8] = []
        var ranges: [(Int, Int)] = []
        var total: Int?
        var firstSeen: Double
        var lastSeen: Double
        var depth: Int
        var parent: ParentRef

        mutating func add(_ b: UnsafeRawBufferPointer, from o: Int, count: Int, at offset: Int) {
            let end = offset + count
            if data.count < end { data.append(contentsOf: repeatElement(0, count: end - data.count)) }
            let avail = max(0, min(count, b.count - o))
            for i in 0..<avail { data[offset + i] = b[o + i] }
            ranges.append((offset, offset + avail))
        }

        var isComplete: Bool {
            guard let total, !header.isEmpty else { return false }
            var covered = 0
            for (a, z) in ranges.sorted(by: { $0.0 < $1.0 }) {
                if a > covered { return false }
                covered = max(covered, z)
            }
            return covered >= total
        }

        /// The reassembled datagram: the first fragment's header, patched, and the payload.
        func datagram() -> [UInt8] {
            guard let total else { return [] }
            var out = header
            if isV6 {
                out[4] = UInt8((total >> 8) & 0xFF); out[5] = UInt8(total & 0xFF)
            } else {
                let len = header.count + total
                out[2] = UInt8((len >> 8) & 0xFF); out[3] = UInt8(len & 0xFF)
                out[6] = 0; out[7] = 0
            }
            out += data.prefix(total)
            return out
        }
    }

    /// Where the names of DNS answers are interned (the flow table's), on this thread.
    public let names: DNSNameTable
    /// False when nothing will read flows' names (Zeek's conn.log has none): DNS answers are
    /// still parsed, so malformed ones are counted, but no name is learned.
    public var learnsNames = true

    /// Decodes into `table` on the calling thread.
    public init(table: FlowTable) {
        self.table = table
        names = table.names
        batch = EventBatch()
        handoff = { b in
            table.apply(b)
            b.clear()
            return b
        }
    }

    /// Decodes into batches handed to `handoff` (which returns the next, empty batch), for a
    /// flow table whose names are `names`.
    public init(batch: EventBatch, names: DNSNameTable, handoff: @escaping (EventBatch) -> EventBatch) {
        table = nil
        self.names = names
        self.batch = batch
        self.handoff = handoff
    }

    private var packetEvents: UInt64 = 0
    /// The current packet's VLAN tags (they apply to every flow the packet carries).
    private var vlans = VLANTags()

    @inline(__always)
    private func emit(_ e: FlowEvent) {
        if e.kind == .packet { packetEvents &+= 1 }
        batch.append(e)
        if batch.isFull { batch = handoff(batch) }
    }

    /// Analyzes one packet. `wireLength` is the original length on the wire (pcap's len).
    public func process(linkType: LinkType, timestamp t: Double, wireLength: Int, bytes b: UnsafeRawBufferPointer) {
        packetIndex &+= 1
        stats.packetsRead &+= 1
        stats.bytesRead &+= UInt64(wireLength)
        if stats.firstTimestamp == nil { stats.firstTimestamp = t }
        stats.lastTimestamp = t
        if b.count < wireLength { stats.snaplenTruncated &+= 1 }
        let before = packetEvents
        vlans = VLANTags()
        switch LinkDecoder.decode(linkType, b, vlans: &vlans) {
        case .ip(let off):
            if processIP(b, at: off, wireEnd: max(wireLength, b.count), t: t, depth: 0, parent: .none) {
                stats.packetsDecoded &+= 1
            }
        case .nonIP:
            stats.nonIPFrames &+= 1
        case .anomaly(let a):
            stats.anomalies.record(a)
        }
        // Time passes even for packets that open no flow: timers must fire on them too.
        if packetEvents == before { tick(t) }
        // Driving a table directly: apply now, so that flows are emitted as they would be
        // packet by packet.
        if table != nil { batch = handoff(batch) }
        if t >= fragmentSweepAt { sweepFragments(t) }
    }

    @inline(__always)
    private func tick(_ t: Double) {
        emit(FlowEvent(kind: .tick, t: t, packet: PacketSummary(), packetIndex: 0, depth: 0, parent: .none, first: 0, count: 0))
    }

    /// Ends the input: hands off the last events and, when driving a table, emits every flow
    /// still open.
    public func finish() {
        finishDecoding()
        table?.flush()
    }

    /// Ends the input without flushing a table (the table's owner flushes it).
    public func finishDecoding() {
        for _ in reassembly { stats.anomalies.record(.incompleteFragmentedDatagram) }
        reassembly.removeAll()
        if batch.count > 0 { batch = handoff(batch) }
    }

    /// Returns true if the packet was counted to a flow.
    private func processIP(_ b: UnsafeRawBufferPointer, at off: Int, wireEnd: Int, t: Double, depth: Int,
                           parent: ParentRef) -> Bool {
        // The views are this call's own (a tunnelled packet's inner call has its own), and the
        // packet event is written from them in place.
        var ip = IPView()
        var tp = TransportView()
        if let a = IPDecoder.decode(b, at: off, wireEnd: wireEnd, into: &ip) {
            stats.anomalies.record(a)
            return false
        }
        // Fragments are held until the datagram is complete, then analyzed as one packet.
        if ip.isFragment {
            return fragment(b, at: off, ip: ip, t: t, depth: depth, parent: parent)
        }
        if let a = IPDecoder.transport(b, ip: ip, into: &tp) {
            stats.anomalies.record(a)
            if a != .udpLengthMismatch { return false }
        }
        let proto = ip.proto.rawValue
        // GRE and IP-in-IP: the inner packets are the flows; the tunnel gets a uid of its own.
        if proto == 47 || proto == 4 || proto == 41 {
            if depth >= maxTunnelDepth {
                stats.anomalies.record(.tunnelDepthExceeded)
            } else if !ip.isFragment, let inner = tunnelPayload(b, ip: ip, proto: proto) {
                let tunnelUID = self.tunnelID(ip.src, ip.dst, proto)
                let innerEnd = min(wireEnd, ip.l4Offset + ip.l4Length)
                switch inner {
                case .ip(let o):
                    return processIP(b, at: o, wireEnd: innerEnd, t: t, depth: depth + 1, parent: .tunnel(tunnelUID))
                case .nonIP:
                    return true
                case .anomaly(let a):
                    stats.anomalies.record(a)
                    return false
                }
            }
        }
        let dst = ip.dst
        packetEvents &+= 1
        FlowEvent.writePacket(batch.next, t: t, ip: &ip, tp: &tp, vlans: vlans, packetIndex: packetIndex,
                              depth: UInt8(min(depth, 7)), parent: parent)
        batch.commit()
        if batch.isFull { batch = handoff(batch) }
        guard tp.hasHeader else { return true }
        if proto == 17 {
            let payloadEnd = min(b.count, tp.payloadOffset + tp.payloadLength)
            // DNS answers name the addresses that later flows go to.
            if tp.sport == 53 || tp.sport == 5353 {
                learnDNS(b, from: tp.payloadOffset, to: payloadEnd, client: dst, t: t,
                         multicast: tp.sport == 5353)
            }
            // UDP tunnels: the outer flow stays, and the inner packet becomes a flow of its own.
            if depth < maxTunnelDepth {
                if let inner = udpTunnelPayload(b, tp: tp, end: payloadEnd) {
                    let innerEnd = min(wireEnd, tp.payloadOffset + tp.payloadLength)
                    switch inner {
                    case .ip(let o):
                        _ = processIP(b, at: o, wireEnd: innerEnd, t: t, depth: depth + 1, parent: .outer(depth: UInt8(min(depth, 7))))
                    case .nonIP: break
                    case .anomaly(let a): stats.anomalies.record(a)
                    }
                }
            }
        } else if proto == 6 && tp.sport == 53 && tp.payloadLength > 2 {
            let payloadEnd = min(b.count, tp.payloadOffset + tp.payloadLength)
            learnDNS(b, from: tp.payloadOffset + 2, to: payloadEnd, client: dst, t: t, multicast: false)
        }
        return true
    }

    private func learnDNS(_ b: UnsafeRawBufferPointer, from o: Int, to end: Int, client: IPAddress, t: Double,
                          multicast: Bool) {
        guard end > o else { return }
        // Not learning names: the answers are only checked (and counted when malformed).
        guard learnsNames else {
            if !DNSParser.isWellFormed(b, from: o, to: end) { stats.anomalies.record(.malformedDNS) }
            return
        }
        guard let answers = DNSParser.answers(b, from: o, to: end) else {
            stats.anomalies.record(.malformedDNS)
            return
        }
        let who = multicast || client.isBroadcastOrMulticast ? nil : client
        var obs = answers.map { DNSObservation(client: who, name: $0.name, chain: $0.chain, address: $0.address,
                                               ttl: $0.ttl, ts: t) }
        for i in obs.indices { names.learn(&obs[i]) }
        onNames?(obs)
        batch.appendNames(obs, t: t)
        if batch.isFull { batch = handoff(batch) }
    }

    /// GRE (RFC 2784/2890, and ERSPAN) and IP-in-IP payloads.
    private func tunnelPayload(_ b: UnsafeRawBufferPointer, ip: IPView, proto: UInt8) -> LinkResult? {
        let o = ip.l4Offset
        if proto == 4 || proto == 41 { return .ip(offset: o) }
        guard b.count >= o + 4 else {
            stats.anomalies.record(.truncatedTunnelHeader)
            return nil
        }
        let flags = b.u16be(o)
        let version = flags & 0x7
        let ptype = b.u16be(o + 2)
        var hlen = 4
        if flags & 0x8000 != 0 { hlen += 4 }  // checksum + reserved
        if flags & 0x2000 != 0 { hlen += 4 }  // key
        if flags & 0x1000 != 0 { hlen += 4 }  // sequence number
        if version == 1 && flags & 0x0080 != 0 { hlen += 4 }  // enhanced GRE acknowledgment
        guard b.count >= o + hlen else {
            stats.anomalies.record(.truncatedTunnelHeader)
            return nil
        }
        let p = o + hlen
        switch ptype {
        case 0x0800, 0x86DD: return LinkDecoder.etherType(ptype, b, at: p)
        case 0x6558: return LinkDecoder.ethernet(b, at: p)
        case 0x88BE:  // ERSPAN type II: 8-byte header, then Ethernet
            return flags & 0x1000 != 0 ? LinkDecoder.ethernet(b, at: p + 8) : LinkDecoder.ethernet(b, at: p)
        case 0x22EB:  // ERSPAN type III: 12 bytes, plus 8 with the O flag
            guard b.count >= p + 12 else { return .anomaly(.truncatedTunnelHeader) }
            let optional = b.u8(p + 11) & 0x01 != 0 ? 8 : 0
            return LinkDecoder.ethernet(b, at: p + 12 + optional)
        case 0x880B:  // PPP inside enhanced GRE (PPTP)
            guard b.count >= p + 2 else { return .anomaly(.truncatedTunnelHeader) }
            return LinkDecoder.ppp(b, at: p)
        default: return nil
        }
    }

    /// VXLAN (udp/4789), Geneve (udp/6081) and Teredo (udp/3544) payloads.
    private func udpTunnelPayload(_ b: UnsafeRawBufferPointer, tp: TransportView, end: Int) -> LinkResult? {
        let p = tp.payloadOffset
        if tp.dport == 4789 || tp.sport == 4789 {
            guard end >= p + 8 + 14 else { return nil }
            guard b.u8(p) & 0x08 != 0 else { return nil }  // the I flag: a valid VNI
            return LinkDecoder.ethernet(b, at: p + 8)
        }
        if tp.dport == 6081 || tp.sport == 6081 {
            guard end >= p + 8 else { return nil }
            guard b.u8(p) >> 6 == 0 else { return nil }
            let optLen = Int(b.u8(p) & 0x3F) * 4
            let ptype = b.u16be(p + 2)
            let q = p + 8 + optLen
            guard end > q else { return .anomaly(.truncatedTunnelHeader) }
            if ptype == 0x6558 { return LinkDecoder.ethernet(b, at: q) }
            if ptype == 0x0800 || ptype == 0x86DD { return .ip(offset: q) }
            return nil
        }
        if tp.dport == 2152 || tp.sport == 2152 {
            return gtpU(b, from: p, end: end)
        }
        if tp.dport == 3544 || tp.sport == 3544 {
            return teredo(b, from: p, end: end, strict: false)
        }
        // Teredo relays use arbitrary ports: recognise the encapsulation by content, as Zeek's
        // protocol detection does (an exact-length IPv6 packet to or from a Teredo address).
        return teredo(b, from: p, end: end, strict: true)
    }

    /// GTP-U (3GPP TS 29.281): a G-PDU carries the user's IP packet after an 8-byte header,
    /// optional sequence/N-PDU fields and a chain of extension headers.
    private func gtpU(_ b: UnsafeRawBufferPointer, from p: Int, end: Int) -> LinkResult? {
        guard end >= p + 8 else { return nil }
        let flags = b.u8(p)
        guard flags >> 5 == 1, flags & 0x10 != 0, b.u8(p + 1) == 0xFF else { return nil }
        var q = p + 8
        if flags & 0x07 != 0 {
            guard end >= q + 4 else { return .anomaly(.truncatedTunnelHeader) }
            var next = b.u8(q + 3)
            q += 4
            var hops = 0
            while next != 0 && hops < 16 {
                guard end > q else { return .anomaly(.truncatedTunnelHeader) }
                let len = Int(b.u8(q)) * 4
                guard len > 0, end >= q + len else { return .anomaly(.truncatedTunnelHeader) }
                next = b.u8(q + len - 1)
                q += len
                hops += 1
            }
        }
        guard end > q else { return .anomaly(.truncatedTunnelHeader) }
        let v = b.u8(q) >> 4
        return v == 4 || v == 6 ? .ip(offset: q) : nil
    }

    /// Teredo (RFC 4380): optional authentication and origin-indication headers, then IPv6.
    private func teredo(_ b: UnsafeRawBufferPointer, from p0: Int, end: Int, strict: Bool) -> LinkResult? {
        var p = p0
        for _ in 0..<2 {
            guard end >= p + 2 else { return nil }
            let tag = b.u16be(p)
            if tag == 0x0001 {  // authentication
                guard end >= p + 4 else { return nil }
                let idLen = Int(b.u8(p + 2)), auLen = Int(b.u8(p + 3))
                p += 4 + idLen + auLen + 9
            } else if tag == 0x0000 {  // origin indication
                p += 8
            } else { break }
        }
        guard end >= p + 40, b.u8(p) >> 4 == 6 else { return nil }
        let payload = Int(b.u16be(p + 4))
        guard p + 40 + payload <= end || payload == 0 else { return nil }
        if strict {
            guard p + 40 + payload == end else { return nil }
            // 2001:0::/32 is the Teredo prefix; fe80::/64 carries router solicitations and bubbles.
            let srcTop = b.u32be(p + 8), dstTop = b.u32be(p + 24)
            let teredoOrLinkLocal = { (top: UInt32) in top == 0x2001_0000 || top == 0xFE80_0000 }
            guard teredoOrLinkLocal(srcTop) || teredoOrLinkLocal(dstTop) else { return nil }
        }
        // A bubble (no next header, no payload) only keeps NAT state open: not a flow.
        if b.u8(p + 6) == 59 && payload == 0 { return .nonIP }
        return .ip(offset: p)
    }

    private func tunnelID(_ a: IPAddress, _ b: IPAddress, _ proto: UInt8) -> FlowID {
        let (x, y) = a < b ? (a, b) : (b, a)
        let (xh, xl) = x.idWords, (yh, yl) = y.idWords
        return FlowID(a: FlowUID.mix(xh, xl, yh, yl, UInt64(proto)), b: FlowUID.mix(yl, xl, 0x7475_6E6E_656C))
    }

    /// Adds one fragment; analyzes the datagram when it is complete.
    private func fragment(_ b: UnsafeRawBufferPointer, at off: Int, ip: IPView, t: Double, depth: Int,
                          parent: ParentRef) -> Bool {
        let k = FragmentKey(src: ip.src, dst: ip.dst, id: ip.fragmentID, proto: ip.proto.rawValue)
        var r = reassembly[k] ?? Reassembly(firstSeen: t, lastSeen: t, depth: depth, parent: parent)
        r.lastSeen = t
        let isV6 = b.u8(off) >> 4 == 6
        if ip.fragmentOffset == 0 && r.header.isEmpty {
            if isV6 {
                // A plain 40-byte header whose next header is the fragment's payload protocol.
                guard b.count >= off + 40 else { return false }
                r.header = Array(UnsafeRawBufferPointer(rebasing: b[off..<(off + 40)]))
                r.header[6] = ip.proto.rawValue
                r.isV6 = true
            } else {
                r.header = Array(UnsafeRawBufferPointer(rebasing: b[off..<ip.l4Offset]))
            }
        }
        if ip.fragmentOffset + ip.l4Length > 65535 {
            stats.anomalies.record(.fragmentTooLarge)
            reassembly.removeValue(forKey: k)
            return false
        }
        r.add(b, from: ip.l4Offset, count: ip.l4Length, at: ip.fragmentOffset)
        if !ip.moreFragments { r.total = ip.fragmentOffset + ip.l4Length }
        if b.count < ip.l4Offset + ip.l4Length { stats.anomalies.record(.snaplenTruncated) }
        guard r.isComplete else {
            reassembly[k] = r
            return true
        }
        reassembly.removeValue(forKey: k)
        let datagram = r.datagram()
        return datagram.withUnsafeBytes { d in
            processIP(d, at: 0, wireEnd: d.count, t: t, depth: r.depth, parent: r.parent)
        }
    }

    private func sweepFragments(_ t: Double) {
        fragmentSweepAt = t + 30
        guard !reassembly.isEmpty else { return }
        // Zeek's frag_timeout is 5 minutes; an incomplete datagram is then dropped, uncounted.
        for (k, r) in reassembly where t - r.lastSeen >= 300 {
            reassembly.removeValue(forKey: k)
            stats.anomalies.record(.incompleteFragmentedDatagram)
        }
    }
}
