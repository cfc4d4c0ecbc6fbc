/// Where a tunnelled flow's parent comes from.
public enum ParentRef: Sendable {
    case none
    /// A GRE or IP-in-IP tunnel, identified by its outer addresses.
    case tunnel(FlowID)
    /// The flow of the most recent packet at this tunnel depth (the outer UDP flow).
    case outer(depth: UInt8)
}

/// What the flow table needs of one decoded packet (compact: it crosses threads).
public struct PacketSummary: Sendable {
    public var src = IPAddress.zeroV4
    public var dst = IPAddress.zeroV4
    /// Transport ports; for ICMP, Zeek's type and counterpart-or-code.
    public var sport: UInt16 = 0
    public var dport: UInt16 = 0
    public var seq: UInt32 = 0
    public var ack: UInt32 = 0
    public var ipBytes = 0
    public var payloadLength = 0
    public var window: UInt16 = 0
    public var proto = IPProtocol(rawValue: 0)
    public var tcpFlags: UInt8 = 0
    public var hasHeader = false
    /// The frame's VLAN tags (outermost two).
    public var vlans = VLANTags()
    /// The hash of the packet's flow key without VLANs (the flow table's index hash), computed
    /// on the decoding thread; 0 when not computed (the table then computes it).
    var keyHash: UInt64 = 0
    /// With `keyHash`: whether the source is the flow key's second endpoint, and whether both
    /// endpoints are the same (address and port).
    var keyFlipped = false
    var keySymmetric = false
    public init() {}
}

extension FlowEvent {
    /// Writes a packet event into `e` (plain memory: an event holds no references) field by
    /// field, straight from the decoder's views: building the summary and the event as values
    /// and copying them in costs more than decoding the packet.
    @inline(__always)
    static func writePacket(_ e: UnsafeMutablePointer<FlowEvent>, t: Double, ip: inout IPView, tp: inout TransportView,
                            vlans: VLANTags, packetIndex: UInt64, depth: UInt8, parent: ParentRef) {
        e.pointee.kind = .packet
        e.pointee.t = t
        e.pointee.packetIndex = packetIndex
        e.pointee.depth = depth
        e.pointee.parent = parent
        e.pointee.first = 0
        e.pointee.count = 0
        let proto = ip.proto
        var sport: UInt16 = 0, dport: UInt16 = 0
        var seq: UInt32 = 0, ack: UInt32 = 0, window: UInt16 = 0, flags: UInt8 = 0
        if tp.hasHeader {
            switch proto.rawValue {
            case 1, 58:
                sport = UInt16(tp.icmpType)
                dport = ICMPPorts.counterpart(v6: proto.rawValue == 58, type: tp.icmpType, code: tp.icmpCode)
            case 6:
                sport = tp.sport; dport = tp.dport
                seq = tp.seq; ack = tp.ack; window = tp.window; flags = tp.tcpFlags
            case 17:
                sport = tp.sport; dport = tp.dport
            default:
                break
            }
        }
        let src = ip.src, dst = ip.dst
        e.pointee.packet.src = src
        e.pointee.packet.dst = dst
        e.pointee.packet.sport = sport
        e.pointee.packet.dport = dport
        e.pointee.packet.seq = seq
        e.pointee.packet.ack = ack
        e.pointee.packet.ipBytes = ip.ipBytes
        e.pointee.packet.payloadLength = tp.payloadLength
        e.pointee.packet.window = window
        e.pointee.packet.proto = proto
        e.pointee.packet.tcpFlags = flags
        e.pointee.packet.hasHeader = tp.hasHeader
        e.pointee.packet.vlans = vlans
        var flipped = false
        let key = FlowKey(src: src, sport: sport, dst: dst, dport: dport, proto: proto, flipped: &flipped)
        e.pointee.packet.keyHash = FlowSlots.hash(key)
        e.pointee.packet.keyFlipped = flipped
        e.pointee.packet.keySymmetric = key.addrA == key.addrB && key.portA == key.portB
    }
}

/// One decoded packet (or a DNS answer, or just the passing of time) for the flow table.
///
/// Decoding produces these; the flow table consumes them in order. Between the two they travel
/// in batches, on one thread or from a reader thread to a table thread.
public struct FlowEvent {
    public enum Kind: UInt8, Sendable { case packet, names, tick }
    public var kind: Kind
    public var t: Double
    public var packet: PacketSummary
    public var packetIndex: UInt64
    public var depth: UInt8
    public var parent: ParentRef
    /// For `.names`: the index of the first observation in the batch and how many.
    public var first: Int32
    public var count: Int32
}

/// A batch of events: a preallocated buffer (no allocation per packet) plus the DNS answers
/// that some events refer to.
public final class EventBatch: @unchecked Sendable {
    private let events: UnsafeMutablePointer<FlowEvent>
    public let capacity: Int
    public private(set) var count = 0
    public private(set) var observations: [DNSObservation] = []

    public init(capacity: Int = 1024) {
        self.capacity = capacity
        events = .allocate(capacity: capacity)
    }

    deinit {
        events.deinitialize(count: count)
        events.deallocate()
    }

    public var isFull: Bool { count == capacity }

    /// The next event's storage: write it (events are plain data), then `commit()`.
    @inline(__always)
    var next: UnsafeMutablePointer<FlowEvent> { events + count }

    @inline(__always)
    func commit() { count += 1 }

    @inline(__always)
    func append(_ e: FlowEvent) {
        (events + count).initialize(to: e)
        count += 1
    }

    func appendNames(_ obs: [DNSObservation], t: Double) {
        guard !obs.isEmpty else { return }
        append(FlowEvent(kind: .names, t: t, packet: PacketSummary(), packetIndex: 0, depth: 0,
                         parent: .none, first: Int32(observations.count), count: Int32(obs.count)))
        observations.append(contentsOf: obs)
    }

    @inline(__always)
    subscript(_ i: Int) -> UnsafeMutablePointer<FlowEvent> { events + i }

    public func clear() {
        events.deinitialize(count: count)
        count = 0
        if !observations.isEmpty { observations.removeAll(keepingCapacity: true) }
    }
}

extension FlowTable {
    /// Applies a batch of events in order. Tunnel parents that name "the outer flow" resolve to
    /// the flow of the latest packet at that depth.
    public func apply(_ batch: EventBatch) {
        // The table is far larger than the caches, and each packet's lookup, flow and TCP state
        // would be a cache miss in turn. A few events ahead of the one being applied, its index
        // entry is requested, then its flow's lines, then its TCP state, so that the misses of
        // several packets overlap (a handful in flight: the CPU drops prefetches beyond that).
        let n = batch.count
        let pipelined = n >= 32 && !vlanAware
        let a1 = FlowTable.indexAhead, a2 = FlowTable.flowAhead, a3 = FlowTable.tcpAhead
        if pipelined {
            for i in 0..<min(n, a1) { prefetchIndex(batch[i]) }
            for i in 0..<min(n, a2) { prefetchFlow(batch[i], at: i) }
            for i in 0..<min(n, a3) { prefetchTCP(batch[i], at: i) }
        }
        for i in 0..<n {
            if pipelined {
                if i + a1 < n { prefetchIndex(batch[i + a1]) }
                if i + a2 < n { prefetchFlow(batch[i + a2], at: i + a2) }
                if i + a3 < n { prefetchTCP(batch[i + a3], at: i + a3) }
            }
            let e = batch[i]
            switch e.pointee.kind {
            case .packet:
                advance(to: e.pointee.t)
                let parent: FlowID?
                switch e.pointee.parent {
                case .none: parent = nil
                case .tunnel(let id): parent = id
                case .outer(let d): parent = lastFlow(atDepth: Int(d))
                }
                let slot = packet(t: e.pointee.t, e.pointee.packet, packetIndex: e.pointee.packetIndex,
                                  depth: e.pointee.depth, parent: parent, hint: pipelined ? guessedSlot(at: i) : -1)
                setLastFlow(slot, atDepth: Int(e.pointee.depth))
            case .names:
                let first = Int(e.pointee.first)
                for j in first..<(first + Int(e.pointee.count)) { dnsBindings.learn(batch.observations[j]) }
            case .tick:
                advance(to: e.pointee.t)
            }
        }
    }
}
