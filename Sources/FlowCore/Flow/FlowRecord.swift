/// Where a flow was observed.
public enum SourceKind: String, Sendable, Codable, CaseIterable {
    case pcap
    case conntrack
    case liveCapture = "live"
}

/// Who owns one local end of a flow (filled by the live agent from /proc; nil from captures).
///
/// A reference type, so that a flow record without attribution stays small to copy.
public final class ProcessAttribution: Sendable, Equatable, Codable {
    public let pid: Int?
    public let comm: String?
    public let exe: String?
    public let cmdline: String?
    public let user: String?
    public let uid: Int?
    public let cgroup: String?
    public let container: String?
    public let unit: String?
    /// The Kubernetes pod UID, when the process runs in a pod.
    public let pod: String?

    public init(pid: Int? = nil, comm: String? = nil, exe: String? = nil, cmdline: String? = nil, user: String? = nil,
                uid: Int? = nil, cgroup: String? = nil, container: String? = nil, unit: String? = nil,
                pod: String? = nil) {
        self.pid = pid; self.comm = comm; self.exe = exe; self.cmdline = cmdline; self.user = user
        self.uid = uid; self.cgroup = cgroup; self.container = container; self.unit = unit; self.pod = pod
    }

    public static func == (a: ProcessAttribution, b: ProcessAttribution) -> Bool {
        a.pid == b.pid && a.comm == b.comm && a.exe == b.exe && a.cmdline == b.cmdline && a.user == b.user
            && a.uid == b.uid && a.cgroup == b.cgroup && a.container == b.container && a.unit == b.unit
            && a.pod == b.pod
    }
}

/// One finished (or flushed) bidirectional flow, as logged: Zeek's conn.log row plus our names.
public struct FlowRecord: Sendable, Equatable {
    /// First packet time, seconds since the Unix epoch (UTC).
    public var ts: Double
    public var uid: String
    public var origH: IPAddress
    public var origP: UInt16
    public var respH: IPAddress
    public var respP: UInt16
    public var ipProto: IPProtocol
    /// Last minus first packet time (trailing packets after both sides closed excluded).
    public var duration: Double
    public var origBytes: UInt64
    public var respBytes: UInt64
    public var connState: String
    public var missedBytes: UInt64
    public var history: String
    public var origPkts: UInt64
    public var origIPBytes: UInt64
    public var respPkts: UInt64
    public var respIPBytes: UInt64
    /// uids of the enclosing tunnel flows, sorted.
    public var tunnelParents: [String]
    /// True when a heuristic chose the originator (Zeek's `^`).
    public var flipped: Bool
    /// The DNS name the originator resolved for the responder (first name of the chain).
    public var respName: String?
    /// Every name seen for the responder when more than one was (sorted); empty otherwise.
    public var respNames: [String]
    public var origProcess: ProcessAttribution?
    public var respProcess: ProcessAttribution?
    /// The outermost 802.1Q/802.1ad VLAN ID of the flow's first packet, and the next one in.
    public var vlan: UInt16?
    public var innerVlan: UInt16?

    public init(ts: Double, uid: String, origH: IPAddress, origP: UInt16, respH: IPAddress, respP: UInt16,
                ipProto: IPProtocol, duration: Double, origBytes: UInt64, respBytes: UInt64, connState: String,
                missedBytes: UInt64, history: String, origPkts: UInt64, origIPBytes: UInt64, respPkts: UInt64,
                respIPBytes: UInt64, tunnelParents: [String], flipped: Bool, respName: String?, respNames: [String],
                origProcess: ProcessAttribution? = nil, respProcess: ProcessAttribution? = nil,
                vlan: UInt16? = nil, innerVlan: UInt16? = nil) {
        self.ts = ts; self.uid = uid; self.origH = origH; self.origP = origP; self.respH = respH; self.respP = respP
        self.ipProto = ipProto; self.duration = duration; self.origBytes = origBytes; self.respBytes = respBytes
        self.connState = connState; self.missedBytes = missedBytes; self.history = history
        self.origPkts = origPkts; self.origIPBytes = origIPBytes; self.respPkts = respPkts
        self.respIPBytes = respIPBytes; self.tunnelParents = tunnelParents; self.flipped = flipped
        self.respName = respName; self.respNames = respNames
        self.origProcess = origProcess; self.respProcess = respProcess
        self.vlan = vlan; self.innerVlan = innerVlan
    }

    /// Zeek's proto column.
    public var proto: String { ipProto.zeekName }

    /// Zeek logs duration and byte counts only when the duration is positive.
    public var hasDuration: Bool { duration > 0 }

    /// Canonical sort order for output: first packet time, then uid.
    public static func outputOrder(_ a: FlowRecord, _ b: FlowRecord) -> Bool {
        if a.ts != b.ts { return a.ts < b.ts }
        return a.uid < b.uid
    }
}

/// Content-derived identifiers, stable across runs (never Swift's seeded `hashValue`).
public enum FlowUID {
    private static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    /// 64-bit FNV-1a over words, finished with a SplitMix64 avalanche.
    @inline(__always)
    public static func mix(_ a: UInt64, _ b: UInt64, _ c: UInt64) -> UInt64 {
        var h = basis
        step(&h, a); step(&h, b); step(&h, c)
        return finish(h)
    }

    @inline(__always)
    public static func mix(_ a: UInt64, _ b: UInt64, _ c: UInt64, _ d: UInt64) -> UInt64 {
        var h = basis
        step(&h, a); step(&h, b); step(&h, c); step(&h, d)
        return finish(h)
    }

    @inline(__always)
    public static func mix(_ a: UInt64, _ b: UInt64, _ c: UInt64, _ d: UInt64, _ e: UInt64) -> UInt64 {
        var h = basis
        step(&h, a); step(&h, b); step(&h, c); step(&h, d); step(&h, e)
        return finish(h)
    }

    @inline(__always)
    public static func mix(_ a: UInt64, _ b: UInt64, _ c: UInt64, _ d: UInt64, _ e: UInt64, _ f: UInt64) -> UInt64 {
        var h = basis
        step(&h, a); step(&h, b); step(&h, c); step(&h, d); step(&h, e); step(&h, f)
        return finish(h)
    }

    private static let basis: UInt64 = 0xCBF2_9CE4_8422_2325

    @inline(__always)
    private static func step(_ h: inout UInt64, _ w: UInt64) {
        var x = w
        for _ in 0..<8 {
            h ^= x & 0xFF
            h = h &* 0x100_0000_01B3
            x >>= 8
        }
    }

    @inline(__always)
    private static func finish(_ h0: UInt64) -> UInt64 {
        var h = h0
        h ^= h >> 30; h = h &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 27; h = h &* 0x94D0_49BB_1331_11EB
        h ^= h >> 31
        return h
    }

    /// A Zeek-style uid: "C" then base62 digits of two 64-bit hashes (18 characters).
    public static func format(prefix: UInt8 = UInt8(ascii: "C"), _ a: UInt64, _ b: UInt64) -> String {
        String(unsafeUninitializedCapacity: 18) { buf in
            digits(prefix: prefix, a, b, into: UnsafeMutableRawBufferPointer(buf))
            return 18
        }
    }

    /// A uid whose characters sort in time order: "C", eight base62 digits of `time` (seconds
    /// since the epoch, most significant first, to 1/3,844 s), then nine digits of the hash `h`.
    /// Uids made close in time are close in a sorted index (a store appends to its uid index
    /// instead of writing a page anywhere in it for every flow).
    public static func timeOrdered(_ time: Double, _ h: UInt64) -> String {
        let (hi, lo) = timeOrderedDigits(time, h)
        return packedUID(hi, lo)
    }

    /// The digits of `timeOrdered(time, h)` as two numbers, without making the string: the
    /// values of characters 1–9 and of characters 10–17, each read as a base-62 number (most
    /// significant first). The alphabet sorts as the digit values do, so the pairs sort as
    /// the strings do.
    public static func timeOrderedDigits(_ time: Double, _ h: UInt64) -> (UInt64, UInt64) {
        let ticks = UInt64(max(0, min(time, 1.4e10)) * 3844) % 218_340_105_584_896  // 62^8
        let hi = ticks * 62 + h % 62
        var x = h / 62, lo: UInt64 = 0
        for _ in 10...17 { lo = lo * 62 + x % 62; x /= 62 }
        return (hi, lo)
    }

    /// The uid "C" + characters 1–9 (the base-62 number `hi`) + characters 10–17 (`lo`), as
    /// `timeOrderedDigits` gives them.
    public static func packedUID(_ hi: UInt64, _ lo: UInt64) -> String {
        String(unsafeUninitializedCapacity: 18) { buf in
            alphabet.withUnsafeBufferPointer { abc in
                buf[0] = UInt8(ascii: "C")
                var x = hi
                for i in stride(from: 9, through: 1, by: -1) { buf[i] = abc[Int(x % 62)]; x /= 62 }
                x = lo
                for i in stride(from: 17, through: 10, by: -1) { buf[i] = abc[Int(x % 62)]; x /= 62 }
            }
            return 18
        }
    }

    /// The same 18 characters, appended to `w` (no string).
    static func write(prefix: UInt8 = UInt8(ascii: "C"), _ a: UInt64, _ b: UInt64, into w: ByteWriter) {
        w.withSpace(18) { digits(prefix: prefix, a, b, into: $0) }
    }

    @inline(__always)
    private static func digits(prefix: UInt8, _ a: UInt64, _ b: UInt64, into buf: UnsafeMutableRawBufferPointer) {
        alphabet.withUnsafeBufferPointer { abc in
            buf[0] = prefix
            var x = a
            for i in 1...9 { buf[i] = abc[Int(x % 62)]; x /= 62 }
            x = b
            for i in 10...17 { buf[i] = abc[Int(x % 62)]; x /= 62 }
        }
    }
}

/// An ended flow as the table left it: plain values, with names as ids. `record(names:)`
/// builds the `FlowRecord` (ids and strings), wherever that is cheapest.
public struct FlowSnapshot: @unchecked Sendable {
    let flow: FlowState
    let origBytes: UInt64
    let respBytes: UInt64
    let missed: UInt64
    let state: StaticString
    /// The first name seen for the responder's address (an id, or -1) and how many names the
    /// address had when the flow ended.
    let addressName: Int32
    let addressNameCount: Int32
    let parents: [FlowID]
    /// The flow's id when the table computed it (at the final flush, where the table thread
    /// would otherwise wait for the thread that formats the flows).
    var computedID: FlowID? = nil

    /// The flow's id (a hash of its content).
    var id: FlowID { computedID ?? flow.id }

    /// The first packet's time (the record's `ts`).
    public var ts: Double { flow.start }

    /// The record, with name ids turned into strings through `names` (the table's).
    ///
    /// The responder's name is the one its client asked for (`flow.respName`), else the first
    /// in order of every name seen for the address; `respNames` lists them all, sorted, when
    /// there are several.
    public func record(names: DNSNameTable) -> FlowRecord {
        let f = flow
        var respName: String? = f.respName >= 0 ? names.name(f.respName) : nil
        var respNames: [String] = []
        if addressName >= 0 {
            if addressNameCount <= 1 {
                if respName == nil { respName = names.name(addressName) }
            } else {
                respNames = names.sortedNames(for: f.respH, count: addressNameCount)
                if respName == nil { respName = respNames[0] }
            }
        }
        return FlowRecord(
            ts: f.start, uid: id.text, origH: f.origH, origP: f.origP, respH: f.respH, respP: f.respP,
            ipProto: f.key.proto, duration: f.last - f.start, origBytes: origBytes, respBytes: respBytes,
            connState: state.description, missedBytes: missed, history: f.history.string,
            origPkts: f.origPkts, origIPBytes: f.origIPBytes, respPkts: f.respPkts, respIPBytes: f.respIPBytes,
            tunnelParents: parents.isEmpty ? [] : parents.map(\.text).sorted(), flipped: f.flipped,
            respName: respName, respNames: respNames,
            vlan: f.vlans.count > 0 ? f.vlans.outer : nil, innerVlan: f.vlans.count > 1 ? f.vlans.inner : nil)
    }
}
