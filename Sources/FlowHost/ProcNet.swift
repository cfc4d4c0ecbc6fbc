import FlowCore

/// The transport of a socket table (`/proc/net/tcp`, `udp`, and their IPv6 twins).
public enum SocketProtocol: UInt8, Sendable, Hashable, CaseIterable {
    case tcp = 6
    case udp = 17

    public var name: String { self == .tcp ? "tcp" : "udp" }
}

/// One row of a kernel socket table.
public struct SocketEntry: Sendable, Equatable {
    public var proto: SocketProtocol
    public var localAddress: IPAddress
    public var localPort: UInt16
    public var remoteAddress: IPAddress
    public var remotePort: UInt16
    /// The kernel's TCP state number (1 ESTABLISHED … 10 LISTEN); for UDP, 7 means unconnected.
    public var state: UInt8
    public var uid: Int
    /// 0 for sockets no process holds any more (TIME_WAIT, orphans).
    public var inode: UInt64

    public init(proto: SocketProtocol, localAddress: IPAddress, localPort: UInt16, remoteAddress: IPAddress,
                remotePort: UInt16, state: UInt8, uid: Int, inode: UInt64) {
        self.proto = proto; self.localAddress = localAddress; self.localPort = localPort
        self.remoteAddress = remoteAddress; self.remotePort = remotePort; self.state = state; self.uid = uid
        self.inode = inode
    }

    public static let tcpListen: UInt8 = 10
    public static let udpUnconnected: UInt8 = 7

    /// A socket that serves a port: TCP LISTEN, or UDP bound with no peer.
    public var isListening: Bool {
        proto == .tcp ? state == SocketEntry.tcpListen : (state == SocketEntry.udpUnconnected && remotePort == 0)
    }
}

/// Why a socket table line could not be read.
public struct ProcParseError: Error, Equatable, CustomStringConvertible, Sendable {
    public var line: Int
    public var reason: String
    public var description: String { "line \(line): \(reason)" }
    public init(line: Int, reason: String) { self.line = line; self.reason = reason }
}

/// Parses `/proc/net/{tcp,tcp6,udp,udp6}` (pure: the caller reads the file).
///
/// Addresses are printed as the kernel's in-memory 32-bit words in hex, so their byte order is
/// the host's; `littleEndianHost` says which (true on x86-64 and arm64). IPv4-mapped IPv6
/// addresses (an AF_INET6 socket talking IPv4) become plain IPv4 addresses.
public enum ProcNetParser {
    public static func parse(_ text: String, proto: SocketProtocol, littleEndianHost: Bool = hostIsLittleEndian)
        throws(ProcParseError) -> [SocketEntry] {
        var out: [SocketEntry] = []
        var lineNo = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            if lineNo == 1 { continue }  // the header
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.isEmpty { continue }
            guard f.count >= 10 else { throw ProcParseError(line: lineNo, reason: "expected at least 10 fields") }
            guard let (la, lp) = endpoint(f[1], littleEndianHost),
                  let (ra, rp) = endpoint(f[2], littleEndianHost) else {
                throw ProcParseError(line: lineNo, reason: "bad address \(f[1]) or \(f[2])")
            }
            guard let st = UInt8(f[3], radix: 16), let uid = Int(f[7]), let inode = UInt64(f[9]) else {
                throw ProcParseError(line: lineNo, reason: "bad state, uid or inode")
            }
            out.append(SocketEntry(proto: proto, localAddress: la, localPort: lp, remoteAddress: ra, remotePort: rp,
                                   state: st, uid: uid, inode: inode))
        }
        return out
    }

    public static var hostIsLittleEndian: Bool { UInt16(1).bigEndian != 1 }

    /// "0100007F:0050" → 127.0.0.1, 80.
    static func endpoint(_ s: Substring, _ le: Bool) -> (IPAddress, UInt16)? {
        guard let colon = s.firstIndex(of: ":") else { return nil }
        let hex = s[..<colon]
        guard let port = UInt16(s[s.index(after: colon)...], radix: 16) else { return nil }
        func word(_ w: Substring) -> UInt32? {
            guard let v = UInt32(w, radix: 16) else { return nil }
            return le ? v.byteSwapped : v
        }
        switch hex.count {
        case 8:
            guard let v = word(hex) else { return nil }
            return (IPAddress(v4: v), port)
        case 32:
            var words: [UInt32] = []
            var i = hex.startIndex
            for _ in 0..<4 {
                let j = hex.index(i, offsetBy: 8)
                guard let w = word(hex[i..<j]) else { return nil }
                words.append(w)
                i = j
            }
            let hi = UInt64(words[0]) << 32 | UInt64(words[1]), lo = UInt64(words[2]) << 32 | UInt64(words[3])
            // IPAddress stores IPv4 as the IPv4-mapped IPv6 address already.
            return (IPAddress(v6hi: hi, v6lo: lo), port)
        default:
            return nil
        }
    }
}

/// `/proc/PID/fd/N` link targets: "socket:[12345]" → 12345.
public enum FDLink {
    public static func socketInode(_ target: String) -> UInt64? {
        guard target.hasPrefix("socket:["), target.hasSuffix("]") else { return nil }
        return UInt64(target.dropFirst(8).dropLast())
    }
}
