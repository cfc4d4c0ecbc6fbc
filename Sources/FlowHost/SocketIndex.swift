import FlowCore

/// The host's sockets, indexed for the question "which socket is this end of that flow?".
///
/// A connected socket matches on its full 4-tuple. Failing that, a listening TCP socket (or a
/// bound, unconnected UDP socket) on the local port matches: first one bound to the exact local
/// address, then one bound to the wildcard (`0.0.0.0`, or `::`, which also takes IPv4).
public struct SocketIndex: Sendable {
    struct Connected: Hashable {
        var proto: UInt8
        var local: IPAddress
        var lport: UInt16
        var remote: IPAddress
        var rport: UInt16
    }
    struct Bound: Hashable {
        var proto: UInt8
        var local: IPAddress
        var lport: UInt16
    }
    private var connected: [Connected: SocketEntry] = [:]
    private var bound: [Bound: SocketEntry] = [:]
    /// Every address some socket is bound to (besides wildcards): the host's own addresses.
    public private(set) var localAddresses: Set<IPAddress> = []
    public private(set) var count = 0

    public static let anyV4 = IPAddress(v4: 0)
    public static let anyV6 = IPAddress(v6hi: 0, v6lo: 0)

    public init(_ entries: [SocketEntry] = []) {
        for e in entries { add(e) }
    }

    public mutating func add(_ e: SocketEntry) {
        count += 1
        if e.localAddress != SocketIndex.anyV4 && e.localAddress != SocketIndex.anyV6 {
            localAddresses.insert(e.localAddress)
        }
        if e.isListening {
            let k = Bound(proto: e.proto.rawValue, local: e.localAddress, lport: e.localPort)
            // Keep the first socket with an owner (SO_REUSEPORT groups share the port).
            if bound[k] == nil || (bound[k]!.inode == 0 && e.inode != 0) { bound[k] = e }
        } else if e.remotePort != 0 || e.proto == .tcp {
            let k = Connected(proto: e.proto.rawValue, local: e.localAddress, lport: e.localPort,
                              remote: e.remoteAddress, rport: e.remotePort)
            if connected[k] == nil || (connected[k]!.inode == 0 && e.inode != 0) { connected[k] = e }
        }
    }

    /// The socket that is the local end (`local`:`lport`) of a conversation with
    /// `remote`:`rport`, or nil.
    public func owner(proto: SocketProtocol, local: IPAddress, lport: UInt16, remote: IPAddress, rport: UInt16)
        -> SocketEntry? {
        if let e = connected[Connected(proto: proto.rawValue, local: local, lport: lport, remote: remote, rport: rport)],
           e.inode != 0 {
            return e
        }
        return listener(proto: proto, local: local, lport: lport)
    }

    /// The socket serving `lport` on `local`.
    public func listener(proto: SocketProtocol, local: IPAddress, lport: UInt16) -> SocketEntry? {
        for a in [local, local.isV6 ? SocketIndex.anyV6 : SocketIndex.anyV4, SocketIndex.anyV6] {
            if let e = bound[Bound(proto: proto.rawValue, local: a, lport: lport)] { return e }
        }
        return nil
    }

    /// Every listening socket, ordered by (proto, port, address): which local process serves
    /// which port.
    public var listeners: [SocketEntry] {
        bound.values.sorted { a, b in
            (a.proto.rawValue, a.localPort) != (b.proto.rawValue, b.localPort)
                ? (a.proto.rawValue, a.localPort) < (b.proto.rawValue, b.localPort) : a.localAddress < b.localAddress
        }
    }
}
