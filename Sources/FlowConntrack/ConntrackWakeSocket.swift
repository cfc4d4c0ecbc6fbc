import CConntrack
import FlowCore

#if canImport(Glibc)
import Glibc
#endif

/// A socket that hears conntrack's NEW events of connections made from one of the host's own
/// addresses (or 127.0.0.0/8): the agent waits on it to read its event stream at once when a
/// connection has a local client end, whose socket must be looked up while it exists, and lets
/// the other events gather (each wake-up costs more than reading what gathered; a local server
/// end is attributed through its listening socket, which stays). A kernel filter keeps only
/// those NEWs: the others never wake the agent, nor cost a copy. Its messages are never parsed:
/// the events socket brings the same NEWs, in order with the rest.
public final class ConntrackWakeSocket {
    public let fd: Int32
    /// The addresses the kernel filter keeps NEWs from; nil when every NEW is kept (no filter:
    /// too many addresses for one program, or the kernel refused it).
    public private(set) var localSources: Set<IPAddress>?

    public init(receiveBuffer: Int = 1 << 20) throws(ConntrackError) {
        let fd = fm_ct_open_new_events(Int32(receiveBuffer))
        guard fd >= 0 else { throw .fromErrno("cannot open netlink socket", errno) }
        self.fd = fd
    }

    /// A wake-up socket over another descriptor (tests: one end of a socket pair), which it owns.
    init(descriptor: Int32) { fd = descriptor }

    deinit { close(fd) }

    /// Keeps only the NEW events from `addresses` (and 127.0.0.0/8). Returns false when the
    /// kernel refused the filter: every NEW then wakes the agent (as if all were local).
    @discardableResult
    public func wake(forSources addresses: Set<IPAddress>) -> Bool {
        if addresses == localSources { return true }
        let sorted = addresses.sorted()
        let v4 = sorted.filter { !$0.isV6 }.map(\.v4)
        var v6: [UInt8] = []  // 16 bytes each, in network order
        for a in sorted where a.isV6 {
            withUnsafeBytes(of: a.hi.bigEndian) { v6.append(contentsOf: $0) }
            withUnsafeBytes(of: a.lo.bigEndian) { v6.append(contentsOf: $0) }
        }
        let rc = fm_ct_attach_local_source_filter(fd, v4, Int32(v4.count), v6, Int32(v6.count / 16))
        if rc == 0 {
            localSources = addresses
            return true
        }
        // Without a filter every NEW wakes the agent: slower, never late.
        var none: Int32 = 0
        _ = setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &none, socklen_t(MemoryLayout<Int32>.size))
        localSources = nil
        return false
    }

    /// Drops what is queued; returns how many messages were.
    @discardableResult
    public func drain() -> Int { Int(fm_drain(fd)) }
}
