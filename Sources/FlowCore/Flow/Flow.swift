/// Inactivity timeouts and TCP timers, in seconds of packet time. Defaults are Zeek's
/// (init-bare.zeek): tcp_inactivity_timeout 5 min; udp, icmp and unknown_ip 1 min;
/// tcp_attempt_delay, tcp_close_delay, tcp_reset_delay and tcp_SYN_timeout 5 s;
/// tcp_session_timer 6 s; tcp_connection_linger 5 s.
public struct Timeouts: Sendable, Equatable {
    public var tcpInactivity: Double = 300
    public var udpInactivity: Double = 60
    public var icmpInactivity: Double = 60
    public var otherInactivity: Double = 60
    public var tcpAttemptDelay: Double = 5
    public var tcpCloseDelay: Double = 5
    public var tcpResetDelay: Double = 5
    public var tcpSYNTimeout: Double = 5
    public var tcpSessionTimer: Double = 6
    public var tcpConnectionLinger: Double = 5
    /// Zeek's dns_session_timeout: the DNS analyzer shortens UDP DNS flows' inactivity timeout.
    public var dnsInactivity: Double = 10
    public init() {}
}

/// A flow's identity: two 64-bit hashes of its content, printed Zeek-style ("C" + base62).
public struct FlowID: Hashable, Sendable {
    public var a: UInt64
    public var b: UInt64
    public init(a: UInt64, b: UInt64) { self.a = a; self.b = b }
    public var text: String { FlowUID.format(a, b) }
}

/// Up to 24 history letters, inline (no allocation per flow). Zeek's letters repeat only on
/// a new SYN/FIN/RST sequence number and at 1, 10, 100… retransmissions or zero windows.
struct HistoryLetters {
    var w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0
    var count: UInt8 = 0

    @inline(__always)
    mutating func append(_ c: UInt8) {
        guard count < 24 else { return }
        let shift = UInt64(count % 8) * 8
        switch count / 8 {
        case 0: w0 |= UInt64(c) << shift
        case 1: w1 |= UInt64(c) << shift
        default: w2 |= UInt64(c) << shift
        }
        count += 1
    }

    @inline(__always)
    func letter(_ i: Int) -> UInt8 {
        let w = i < 8 ? w0 : i < 16 ? w1 : w2
        return UInt8(truncatingIfNeeded: w >> (UInt64(i % 8) * 8))
    }

    var string: String {
        if count == 0 { return "" }
        return String(unsafeUninitializedCapacity: Int(count)) { buf in
            for i in 0..<Int(count) { buf[i] = letter(i) }
            return Int(count)
        }
    }

    var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Int(count))
        for i in 0..<Int(count) { out.append(letter(i)) }
        return out
    }
}

/// Per-flow state: plain values only, stored inline in the table's slot array, so that the
/// per-packet path does no reference counting and no allocation.
struct FlowState {
    var key: FlowKey
    /// Creation order and identity: the index of the packet that opened the flow × 8 + its
    /// tunnel depth (one packet opens at most one flow per depth).
    var serial: UInt64
    /// True when the originator is the key's first endpoint (addresses and ports live only in
    /// the key).
    var origIsA: Bool
    /// Set when the flow has ended (its index entry may still be waiting to be removed); in the
    /// key's cache line, since lookups check it.
    var removed = false
    /// The VLAN tags of the flow's first packet (logged as vlan / inner_vlan), packed into the
    /// padding after `origIsA`: tag count << 24 | outer << 12 | inner.
    private var vlanPacked: UInt32 = 0
    var start: Double
    var last: Double
    var origPkts: UInt64 = 0
    var respPkts: UInt64 = 0
    var origIPBytes: UInt64 = 0
    var respIPBytes: UInt64 = 0
    var origPayload: UInt64 = 0
    var respPayload: UInt64 = 0
    var history = HistoryLetters()
    var histSeen: UInt32 = 0
    var flipped = false
    var origSent = false
    var respSent = false
    /// A UDP flow to a DNS port (53, 137, 5353, 5355): Zeek's DNS analyzer times it out sooner.
    var isDNS = false
    /// Index of this flow's TCP state in the table's TCP slots, or -1 (not TCP).
    var tcp: Int32 = -1
    var scheduledAt = Double.infinity
    var timerToken: UInt32 = 0
    /// The id of the name the originator resolved for the responder (DNSNameTable), or -1.
    var respName: Int32 = -1
    /// Index into the table's tunnel-parent lists, or -1.
    var parents: Int32 = -1

    init(key: FlowKey, serial: UInt64, origH: IPAddress, origP: UInt16, start: Double) {
        self.key = key
        self.serial = serial
        origIsA = key.addrA == origH && key.portA == origP
        self.start = start
        self.last = start
    }

    /// The flow's content-derived id (computed when needed, not stored).
    var id: FlowID {
        let tsBits = start.bitPattern
        let ports = UInt64(origP) << 32 | UInt64(respP) << 8 | UInt64(key.proto.rawValue)
        let (oh, ol) = origH.idWords, (rh, rl) = respH.idWords
        return FlowID(a: FlowUID.mix(oh, ol, rh, rl, ports, tsBits),
                      b: FlowUID.mix(tsBits, serial >> 3, ports, ol ^ rl))
    }

    var vlans: VLANTags {
        get {
            var v = VLANTags()
            v.count = UInt8(vlanPacked >> 24)
            v.outer = UInt16((vlanPacked >> 12) & 0xFFF)
            v.inner = UInt16(vlanPacked & 0xFFF)
            return v
        }
        set {
            vlanPacked = UInt32(min(newValue.count, 255)) << 24 | UInt32(newValue.outer & 0xFFF) << 12
                | UInt32(newValue.inner & 0xFFF)
        }
    }

    var origH: IPAddress { origIsA ? key.addrA : key.addrB }
    var respH: IPAddress { origIsA ? key.addrB : key.addrA }
    var origP: UInt16 { origIsA ? key.portA : key.portB }
    var respP: UInt16 { origIsA ? key.portB : key.portA }

    /// Zeek's Connection::CheckHistory: records `code` once per mask and direction.
    /// Returns true if the mask had already been seen.
    @inline(__always)
    mutating func checkHistory(_ mask0: UInt32, _ code: UInt8, isOrig: Bool) -> Bool {
        let mask = isOrig ? mask0 : mask0 << 16
        if histSeen & mask != 0 { return true }
        histSeen |= mask
        history.append(isOrig ? code : code | 0x20)
        return false
    }

    @inline(__always)
    mutating func addHistory(_ code: UInt8, isOrig: Bool) {
        history.append(isOrig ? code : code | 0x20)
    }

    /// Swaps originator and responder (Zeek's Connection::FlipRoles).
    mutating func flipRoles() {
        origIsA.toggle()
        swap(&origPkts, &respPkts)
        swap(&origIPBytes, &respIPBytes)
        swap(&origPayload, &respPayload)
        swap(&origSent, &respSent)
        histSeen = (histSeen >> 16) | (histSeen << 16)
        history.append(UInt8(ascii: "^"))
        flipped.toggle()
    }
}

/// TCP-only state, kept apart so that UDP and ICMP flows do not carry it.
struct TCPState {
    var orig = TCPEndpoint()
    var resp = TCPEndpoint()
    /// Zeek's TCP adapter `is_active`: cleared once the connection finished or was reset.
    var isActive = true
    var attemptAt = Double.infinity
    var deleteAt = Double.infinity
    var resetAt = Double.infinity
    var expireAt = Double.infinity
    /// Bytes acknowledged but never seen, both directions (content gaps).
    var missed: UInt64 = 0
}

/// History masks (Zeek's HIST_* bits); the responder's are shifted left by 16.
enum Hist {
    static let syn: UInt32 = 0x1
    static let fin: UInt32 = 0x2
    static let rst: UInt32 = 0x4
    static let finRst: UInt32 = 0x8
    static let data: UInt32 = 0x10
    static let ack: UInt32 = 0x20
    static let multiFlag: UInt32 = 0x40
    static let gap: UInt32 = 0x400
}

/// Ports that Zeek's default analyzers register as `likely_server_ports`; they decide the
/// originator of a flow whose first packet is not a pure SYN (and of UDP flows).
public enum LikelyServerPorts {
    public static let tcp: Set<UInt16> = [
        21, 22, 23, 25, 53, 79, 80, 81, 88, 110, 113, 135, 139, 143, 179, 389, 443, 445, 502, 513, 514,
        563, 585, 587, 614, 631, 636, 989, 990, 992, 993, 995, 1080, 1433, 1434, 1883, 2811, 3128, 3268,
        3306, 3389, 5222, 5223, 5269, 5432, 6379, 6666, 6667, 6668, 6669, 8000, 8080, 8443, 8888, 20000,
    ]
    public static let udp: Set<UInt16> = [
        53, 67, 69, 88, 123, 137, 138, 161, 162, 443, 514, 1812, 1813, 2123, 2152, 3544, 4789, 5060,
        5072, 5353, 5355, 6081, 20000,
    ]
    static let tcpBits: [Bool] = bits(tcp)
    static let udpBits: [Bool] = bits(udp)
    private static func bits(_ s: Set<UInt16>) -> [Bool] {
        var b = [Bool](repeating: false, count: 65536)
        for p in s { b[Int(p)] = true }
        return b
    }
}
