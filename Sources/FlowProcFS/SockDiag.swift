import FlowCore
import FlowHost

#if canImport(Glibc)
import Glibc
#endif

/// Socket lookups through netlink sock_diag (the interface `ss` uses): one request names the
/// exact socket, and the kernel answers with that socket — or, for an address that has no
/// connected socket, the listening (TCP) or bound (UDP) socket that would take its packets —
/// with its inode, uid and state. Much cheaper than reading `/proc/net/tcp` on a host with many
/// sockets, which makes the kernel print every one of them.
public final class SockDiag {
    private let fd: Int32
    private var seq: UInt32 = 0
    private var buffer = [UInt8](repeating: 0, count: 8192)
    public private(set) var requests = 0

    /// One socket as the kernel describes it.
    public struct Answer: Equatable, Sendable {
        public var inode: UInt64
        public var uid: Int
        /// TCP state number (10 LISTEN, 6 TIME_WAIT …); 7 for an unconnected UDP socket.
        public var state: UInt8
        public var localPort: UInt16
    }

    /// Nil when the kernel offers no sock_diag (then /proc/net is read instead).
    public init?() {
        fd = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 4 /* NETLINK_SOCK_DIAG */)
        guard fd >= 0 else { return nil }
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// The socket whose local end is `local`:`lport` talking to `remote`:`rport` (use the
    /// unspecified address and port 0 to ask for the listener).
    public func lookup(proto: SocketProtocol, local: IPAddress, lport: UInt16, remote: IPAddress, rport: UInt16) -> Answer? {
        if let a = request(proto: proto, src: local, sport: lport, dst: remote, dport: rport), a.localPort == lport {
            return a
        }
        // The UDP lookup reads the request's addresses the other way round (udp_dump_one).
        if proto == .udp, let a = request(proto: proto, src: remote, sport: rport, dst: local, dport: lport), a.localPort == lport {
            return a
        }
        return nil
    }

    private func request(proto: SocketProtocol, src: IPAddress, sport: UInt16, dst: IPAddress, dport: UInt16) -> Answer? {
        requests += 1
        seq &+= 1
        let v6 = src.isV6 || dst.isV6
        // nlmsghdr (16) + inet_diag_req_v2 (56)
        var msg = [UInt8](repeating: 0, count: 72)
        func put32(_ v: UInt32, at o: Int) { withUnsafeBytes(of: v) { for i in 0..<4 { msg[o + i] = $0[i] } } }
        func put16(_ v: UInt16, at o: Int) { withUnsafeBytes(of: v) { for i in 0..<2 { msg[o + i] = $0[i] } } }
        put32(72, at: 0)                    // nlmsg_len
        put16(20, at: 4)                    // SOCK_DIAG_BY_FAMILY
        put16(1, at: 6)                     // NLM_F_REQUEST
        put32(seq, at: 8)
        msg[16] = UInt8(v6 ? AF_INET6 : AF_INET)
        msg[17] = proto.rawValue
        put32(0xFFFF_FFFF, at: 20)          // idiag_states: any
        // inet_diag_sockid at 24: sport, dport (network order), src[16], dst[16], if, cookie[2]
        msg[24] = UInt8(sport >> 8); msg[25] = UInt8(sport & 0xFF)
        msg[26] = UInt8(dport >> 8); msg[27] = UInt8(dport & 0xFF)
        func address(_ a: IPAddress, at o: Int) {
            if v6 {
                for i in 0..<8 { msg[o + i] = UInt8((a.hi >> (56 - 8 * UInt64(i))) & 0xFF) }
                for i in 0..<8 { msg[o + 8 + i] = UInt8((a.lo >> (56 - 8 * UInt64(i))) & 0xFF) }
            } else {
                let v = a.v4
                msg[o] = UInt8(v >> 24); msg[o + 1] = UInt8((v >> 16) & 0xFF)
                msg[o + 2] = UInt8((v >> 8) & 0xFF); msg[o + 3] = UInt8(v & 0xFF)
            }
        }
        address(src, at: 28)
        address(dst, at: 44)
        put32(0xFFFF_FFFF, at: 64)          // cookie: INET_DIAG_NOCOOKIE
        put32(0xFFFF_FFFF, at: 68)
        // sockaddr_nl {family, pad, pid 0 (the kernel), groups 0}
        var kernel = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: UInt16(AF_NETLINK)) { kernel[0] = $0[0]; kernel[1] = $0[1] }
        let sent = kernel.withUnsafeBytes { k in
            sendto(fd, msg, msg.count, 0, k.baseAddress!.assumingMemoryBound(to: sockaddr.self), 12)
        }
        guard sent == msg.count else { return nil }
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 && errno == EINTR { continue }
            guard n >= 16 else { return nil }
            let r: Answer?? = buffer.withUnsafeBytes { b -> Answer?? in
                var off = 0
                while off + 16 <= n {
                    let len = Int(b.loadUnaligned(fromByteOffset: off, as: UInt32.self))
                    let type = b.loadUnaligned(fromByteOffset: off + 4, as: UInt16.self)
                    let mseq = b.loadUnaligned(fromByteOffset: off + 8, as: UInt32.self)
                    guard len >= 16, off + len <= n else { return .some(nil) }
                    if mseq == seq {
                        if type == 2 /* NLMSG_ERROR */ || type == 3 /* NLMSG_DONE */ { return .some(nil) }
                        if type == 20, len >= 16 + 72 {
                            let m = off + 16
                            let state = b[m + 1]
                            let lport = UInt16(b[m + 4]) << 8 | UInt16(b[m + 5])
                            let uid = b.loadUnaligned(fromByteOffset: m + 64, as: UInt32.self)
                            let inode = b.loadUnaligned(fromByteOffset: m + 68, as: UInt32.self)
                            return .some(Answer(inode: UInt64(inode), uid: Int(uid), state: state, localPort: lport))
                        }
                    }
                    off += (len + 3) & ~3
                }
                return nil  // an answer to an earlier request: read on
            }
            if let r { return r }
        }
    }
}
