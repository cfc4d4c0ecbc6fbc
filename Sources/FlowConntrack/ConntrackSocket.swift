import CConntrack
import FlowCore
import FlowHost

#if canImport(Glibc)
import Glibc
#endif

/// Why conntrack could not be used.
public struct ConntrackError: Error, CustomStringConvertible, Sendable {
    public var reason: String
    public var description: String { "conntrack: \(reason)" }
    public init(_ reason: String) { self.reason = reason }

    static func fromErrno(_ what: String, _ e: Int32) -> ConntrackError {
        switch e {
        case EPERM, EACCES:
            return ConntrackError("\(what): permission denied (needs root or CAP_NET_ADMIN)")
        case EPROTONOSUPPORT, ENOENT, EAFNOSUPPORT:
            return ConntrackError("\(what): the kernel has no conntrack (load nf_conntrack_netlink)")
        default:
            return ConntrackError("\(what): \(String(cString: strerror(e)))")
        }
    }
}

/// A netlink socket to the kernel's connection tracker (libnetfilter_conntrack): full dumps,
/// and with `events` the NEW/UPDATE/DESTROY stream. Non-blocking: `fd` can be polled.
public final class ConntrackSocket {
    private let handle: OpaquePointer
    public let fd: Int32
    /// True when the kernel re-delivers DESTROY events that were lost (NETLINK_BROADCAST_ERROR).
    public private(set) var reliableDestroyEvents = false
    /// Receives entries while a dump or `readEvents` runs.
    private final class Sink {
        var body: (ConntrackEventKind, ConntrackEntry) -> Void = { _, _ in }
    }
    private let sink = Sink()

    /// True when the kernel drops, before queueing them, the UPDATE events of the TCP states
    /// SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT and LAST_ACK (see `init`).
    public private(set) var filtersTCPUpdates = false

    /// The socket's receive buffer as the kernel sized it (bytes; it counts each queued
    /// message's whole allocation, about a kilobyte for a conntrack event).
    public var receiveBufferBytes: Int {
        var size: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, &len) == 0 ? Int(size) : 0
    }

    /// Opens a socket; `events` subscribes to NEW, UPDATE and DESTROY. `receiveBuffer` asks
    /// for a larger netlink buffer (bytes; forced when running as root).
    ///
    /// With `onlyDecisiveTCPUpdates`, a socket filter keeps, of TCP's UPDATE events, those that
    /// enter SYN_SENT, TIME_WAIT or CLOSE (and any without a TCP state): the handshake and the
    /// steps of an orderly close are more than half of all events, and the state of a
    /// connection still open when it is written is looked up instead. NEW, DESTROY and the other
    /// protocols' events all pass. `filtersTCPUpdates` tells whether the kernel took it.
    public init(events: Bool, receiveBuffer: Int = 8 << 20, onlyDecisiveTCPUpdates: Bool = false) throws(ConntrackError) {
        errno = 0
        guard let h = nfct_open(UInt8(CONNTRACK), events ? fm_ct_event_groups() : 0) else {
            throw .fromErrno("cannot open netlink socket", errno == 0 ? EPROTONOSUPPORT : errno)
        }
        handle = h
        fd = nfct_fd(h)
        if events {
            var size = Int32(receiveBuffer)
            if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
                _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            }
            // Reliable delivery of DESTROY events (as conntrackd does): when one cannot be
            // delivered, the kernel keeps the entry and delivers it again later, so a
            // connection that ends during an overflow is still reported.
            var on: Int32 = 1
            reliableDestroyEvents = setsockopt(fd, 270 /* SOL_NETLINK */, 4 /* NETLINK_BROADCAST_ERROR */, &on,
                                               socklen_t(MemoryLayout<Int32>.size)) == 0
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            if onlyDecisiveTCPUpdates { filtersTCPUpdates = fm_ct_attach_update_filter(fd) == 0 }
        }
        let ctx = Unmanaged.passUnretained(sink).toOpaque()
        let rc = nfct_callback_register(h, NFCT_T_ALL, { type, ct, data in
            guard let ct, let data else { return Int32(NFCT_CB_CONTINUE) }
            let sink = Unmanaged<Sink>.fromOpaque(data).takeUnretainedValue()
            let kind: ConntrackEventKind
            switch type {
            case NFCT_T_NEW: kind = .new
            case NFCT_T_DESTROY: kind = .destroy
            default: kind = .update
            }
            sink.body(kind, ConntrackSocket.entry(ct))
            return Int32(NFCT_CB_CONTINUE)
        }, ctx)
        if rc != 0 {
            nfct_close(h)
            throw .fromErrno("cannot register callback", errno)
        }
    }

    deinit {
        nfct_callback_unregister(handle)
        nfct_close(handle)
        recvBuffers.deallocate()
        parsed.deallocate()
        kinds.deallocate()
        queries.deallocate()
        found.deallocate()
    }

    /// Every entry the kernel tracks now (IPv4 and IPv6), handed to `body` as the dump
    /// delivers it (the table is never held whole).
    public func dump(_ body: @escaping (ConntrackEntry) -> Void) throws(ConntrackError) {
        sink.body = { _, e in body(e) }
        defer { sink.body = { _, _ in } }
        if fm_ct_dump(handle) != 0 { throw .fromErrno("dump failed", errno) }
    }

    /// What a lookup found.
    public enum Lookup: Sendable, Equatable {
        /// The kernel's entry now.
        case found(ConntrackEntry)
        /// The kernel has no entry for this connection (or one for another connection, another
        /// id, with that tuple).
        case missing
        /// No answer came (the reply was lost, or another error): nothing is known.
        case unanswered
    }

    /// Looks many entries up, `lookupBatch` per request datagram (`fm_ct_get_many`): the kernel
    /// answers each in turn, and the answers are read many per system call. `body` gets each
    /// entry's index in `entries` and what was found, in order.
    public func lookUp(_ entries: [ConntrackEntry], _ body: (Int, Lookup) -> Void) throws(ConntrackError) {
        var base = 0
        while base < entries.count {
            let n = min(ConntrackSocket.lookupBatch, entries.count - base)
            for i in 0..<n {
                let o = entries[base + i].orig
                var q = fm_ct_query()
                q.proto = o.proto
                q.sport = o.sport; q.dport = o.dport; q.icmp_id = o.icmpID; q.zone = entries[base + i].zone
                withUnsafeMutableBytes(of: &q.src) { b in
                    b.storeBytes(of: o.src.hi.bigEndian, toByteOffset: 0, as: UInt64.self)
                    b.storeBytes(of: o.src.lo.bigEndian, toByteOffset: 8, as: UInt64.self)
                }
                withUnsafeMutableBytes(of: &q.dst) { b in
                    b.storeBytes(of: o.dst.hi.bigEndian, toByteOffset: 0, as: UInt64.self)
                    b.storeBytes(of: o.dst.lo.bigEndian, toByteOffset: 8, as: UInt64.self)
                }
                queries[i] = q
            }
            let seq = lookupSeq
            lookupSeq &+= UInt32(n)
            if fm_ct_get_many(fd, seq, queries, Int32(n), parsed, found, recvBuffers, ConntrackSocket.datagramSize,
                              Int32(ConntrackSocket.batch), 1000) != 0 {
                throw .fromErrno("looking entries up", errno)
            }
            for i in 0..<n {
                switch found[i] {
                case 1:
                    let e = ConntrackSocket.entry(parsed[i])
                    body(base + i, e.id == entries[base + i].id ? .found(e) : .missing)
                case 0: body(base + i, .missing)
                default: body(base + i, .unanswered)
                }
            }
            base += n
        }
    }

    /// Lookups per request datagram: their answers (a few hundred bytes each, in buffers of
    /// about a kilobyte) must fit in the socket's receive buffer at once.
    static let lookupBatch = 32
    private var lookupSeq: UInt32 = 0x4000_0000
    private let queries = UnsafeMutablePointer<fm_ct_query>.allocate(capacity: ConntrackSocket.lookupBatch)
    private let found = UnsafeMutablePointer<Int8>.allocate(capacity: ConntrackSocket.lookupBatch)

    public enum ReadOutcome: Sendable, Equatable {
        /// Every queued event was read.
        case drained
        /// The kernel dropped events (ENOBUFS): dump again and reconcile.
        case overflow
    }

    /// Reads the events queued now, without waiting: many per system call (recvmmsg), parsed
    /// by libnetfilter_conntrack.
    public func readEvents(_ body: (ConntrackEventKind, ConntrackEntry) -> Void) throws(ConntrackError) -> ReadOutcome {
        while true {
            let n = fm_ct_recv_events(fd, recvBuffers, ConntrackSocket.datagramSize, Int32(ConntrackSocket.batch),
                                      parsed, kinds, Int32(ConntrackSocket.batch * 4))
            if n < 0 {
                switch errno {
                case EAGAIN, EWOULDBLOCK: return .drained
                case EINTR: continue
                case ENOBUFS: return .overflow
                default: throw .fromErrno("reading events", errno)
                }
            }
            for i in 0..<Int(n) {
                let kind: ConntrackEventKind = kinds[i] == UInt8(FM_CT_NEW) ? .new : kinds[i] == UInt8(FM_CT_DESTROY) ? .destroy : .update
                body(kind, ConntrackSocket.entry(parsed[i]))
            }
            // Fewer than a full batch: the queue was emptied (a system call saved; what comes
            // meanwhile wakes the next poll).
            if n < Int32(ConntrackSocket.batch) { return .drained }
        }
    }

    private static let batch = 64
    private static let datagramSize = 8192
    private let recvBuffers = UnsafeMutablePointer<UInt8>.allocate(capacity: batch * datagramSize)
    private let parsed = UnsafeMutablePointer<fm_ct>.allocate(capacity: batch * 4)
    private let kinds = UnsafeMutablePointer<UInt8>.allocate(capacity: batch * 4)

    /// One netlink message read as the event stream reads it, and (with `library`) read through
    /// libnetfilter_conntrack (nil where either refuses it): the tests hold the first to the
    /// second. The library aborts the process on some malformed messages; this reading does not.
    static func parseBoth(_ message: [UInt8], library withLibrary: Bool = true) -> (ours: ConntrackEntry?, library: ConntrackEntry?) {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: max(message.count, 16), alignment: 8)
        defer { buf.deallocate() }
        message.withUnsafeBytes { buf.copyMemory(from: $0.baseAddress!, byteCount: message.count) }
        let nlh = buf.assumingMemoryBound(to: nlmsghdr.self)
        var a = fm_ct(), b = fm_ct()
        let ours = fm_ct_parse(nlh, &a) == 0 ? entry(a) : nil
        let library = withLibrary && fm_ct_parse_with_library(nlh, &b) == 0 ? entry(b) : nil
        return (ours, library)
    }

    static func entry(_ ct: OpaquePointer) -> ConntrackEntry {
        var c = fm_ct()
        fm_ct_read(ct, &c)
        return entry(c)
    }

    static func entry(_ c: fm_ct) -> ConntrackEntry {
        func addr(_ t: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)) -> IPAddress {
            // The 16 bytes in network order, read as two big-endian words (no allocation).
            withUnsafeBytes(of: t) { b in
                IPAddress(v6hi: UInt64(bigEndian: b.loadUnaligned(as: UInt64.self)),
                          v6lo: UInt64(bigEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
            }
        }
        func tuple(_ t: fm_ct_tuple) -> ConntrackTuple {
            ConntrackTuple(src: addr(t.src), dst: addr(t.dst), proto: c.proto, sport: t.sport, dport: t.dport,
                           icmpID: t.icmp_id)
        }
        let has = c.has_counters != 0
        return ConntrackEntry(
            id: c.id, orig: tuple(c.orig), reply: tuple(c.reply),
            origPackets: has ? c.orig_packets : nil, origBytes: has ? c.orig_bytes : nil,
            replyPackets: has ? c.reply_packets : nil, replyBytes: has ? c.reply_bytes : nil,
            tcpState: c.has_tcp_state != 0 ? c.tcp_state : nil, status: c.status, zone: c.zone, mark: c.mark,
            start: c.ts_start > 0 ? Double(c.ts_start) / 1e9 : nil, stop: c.ts_stop > 0 ? Double(c.ts_stop) / 1e9 : nil)
    }
}

/// The conntrack sysctls of the current network namespace.
public enum ConntrackSettings {
    static let dir = "/proc/sys/net/netfilter/"

    /// Whether conntrack exists here at all.
    public static var available: Bool { access(dir + "nf_conntrack_count", F_OK) == 0 }

    /// Turns a boolean sysctl on (`nf_conntrack_acct`, `nf_conntrack_timestamp`). Returns true
    /// when it is on afterwards.
    @discardableResult
    public static func enable(_ name: String) -> Bool {
        if read(name) == "1" { return true }
        let fd = open(dir + name, O_WRONLY)
        if fd >= 0 {
            _ = "1\n".withCString { write(fd, $0, 2) }
            close(fd)
        }
        return read(name) == "1"
    }

    public static func read(_ name: String) -> String? {
        let fd = open(dir + name, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = Glibc.read(fd, &buf, 64)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n], as: UTF8.self).trimmingNewlines
    }
}

private extension String {
    var trimmingNewlines: String {
        var s = Substring(self)
        while s.last == "\n" || s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
