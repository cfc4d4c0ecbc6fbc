@testable import FlowConntrack
import FlowCore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The wake-up socket's kernel filter, run on conntrack-shaped messages sent through a socket
/// pair (a socket filter reads a datagram the same way whatever the socket): only connections
/// from the given addresses, or from 127.0.0.0/8, get through.
final class ConntrackWakeTests: XCTestCase {
    /// A conntrack message as the kernel sends it, as far as the filter reads: the netlink and
    /// nfnetlink headers, then CTA_TUPLE_ORIG holding CTA_TUPLE_IP (source, destination) and
    /// CTA_TUPLE_PROTO. (Built here rather than with the C module's helpers: importing that
    /// module into this test target hides the socket constants from the target's other files.)
    func message(from src: String, to dst: String, seq: UInt32) -> [UInt8] {
        func attr(_ type: UInt16, _ payload: [UInt8], nested: Bool = false) -> [UInt8] {
            let len = UInt16(4 + payload.count)
            let t: UInt16 = type | (nested ? 0x8000 : 0)
            var a: [UInt8] = withUnsafeBytes(of: len) { Array($0) }  // netlink headers are in host order
            a += withUnsafeBytes(of: t) { Array($0) }
            a += payload
            while a.count % 4 != 0 { a.append(0) }
            return a
        }
        func bytes(_ a: IPAddress) -> [UInt8] {
            var all: [UInt8] = []
            for i in 0..<8 { all.append(UInt8(truncatingIfNeeded: a.hi >> UInt64(56 - 8 * i))) }
            for i in 0..<8 { all.append(UInt8(truncatingIfNeeded: a.lo >> UInt64(56 - 8 * i))) }
            return a.isV6 ? all : Array(all[12...])
        }
        let s = IPAddress(src)!, d = IPAddress(dst)!
        // CTA_IP_V4_SRC/DST (1, 2) or CTA_IP_V6_SRC/DST (3, 4), in CTA_TUPLE_IP (1); CTA_PROTO_NUM
        // in CTA_TUPLE_PROTO (2); both in CTA_TUPLE_ORIG (1).
        let ip: [UInt8] = s.isV6 ? attr(3, bytes(s)) + attr(4, bytes(d)) : attr(1, bytes(s)) + attr(2, bytes(d))
        let tupleIP: [UInt8] = attr(1, ip, nested: true)
        let tupleProto: [UInt8] = attr(2, attr(1, [6]), nested: true)
        let orig: [UInt8] = attr(1, tupleIP + tupleProto, nested: true)
        let family: UInt8 = s.isV6 ? 10 : 2
        let body: [UInt8] = [family, 0, 0, 0] + orig  // struct nfgenmsg
        func host<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
        var m: [UInt8] = host(UInt32(16 + body.count))
        m += host(UInt16(1 << 8))    // ctnetlink, IPCTNL_MSG_CT_NEW
        m += host(UInt16(0x600))     // NLM_F_CREATE | NLM_F_EXCL
        m += host(seq)
        m += host(UInt32(0))
        return m + body
    }

    func testOnlyConnectionsFromLocalAddressesWake() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &fds), 0)
        defer { close(fds[0]) }
        let wake = ConntrackWakeSocket(descriptor: fds[1])
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        let local: Set<IPAddress> = [IPAddress("10.213.0.2")!, IPAddress("192.0.2.7")!, IPAddress("2001:db8::2")!, IPAddress("fe80::1")!]
        XCTAssertTrue(wake.wake(forSources: local))
        XCTAssertEqual(wake.localSources, local)
        let cases: [(String, String, Bool)] = [
            ("10.213.0.2", "10.213.0.1", true),    // a local client
            ("10.213.0.1", "10.213.0.2", false),   // a remote client of a local server
            ("192.0.2.7", "198.51.100.1", true),
            ("192.0.2.8", "198.51.100.1", false),
            ("127.0.0.53", "127.0.0.1", true),     // loopback, any 127/8 address
            ("128.0.0.1", "10.0.0.1", false),
            ("126.255.255.255", "10.0.0.1", false),
            ("2001:db8::2", "2001:db8::1", true),
            ("2001:db8::3", "2001:db8::2", false),
            ("2001:db8:0:0:0:0:1:2", "2001:db8::1", false),  // differs in one word only
            ("fe80::1", "fe80::2", true),
        ]
        for (i, c) in cases.enumerated() {
            let m = message(from: c.0, to: c.1, seq: UInt32(i))
            XCTAssertEqual(send(fds[0], m, m.count, 0), m.count)
        }
        var got: [UInt32] = []
        var buf = [UInt8](repeating: 0, count: 512)
        while true {
            let r = recv(fds[1], &buf, buf.count, 0)
            if r <= 0 { break }
            got.append(buf.withUnsafeBytes { $0.load(fromByteOffset: 8, as: UInt32.self) })  // nlmsg_seq
        }
        XCTAssertEqual(got, cases.indices.filter { cases[$0].2 }.map(UInt32.init),
                       "woken by: \(got.map { cases[Int($0)].0 })")
        // Drained: nothing left.
        XCTAssertEqual(wake.drain(), 0)
        let again = message(from: "10.213.0.2", to: "10.213.0.1", seq: 99)
        XCTAssertEqual(send(fds[0], again, again.count, 0), again.count)
        XCTAssertEqual(wake.drain(), 1)
    }

    /// More addresses than one filter program holds: every NEW wakes (never late).
    func testTooManyAddressesKeepEveryNew() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &fds), 0)
        defer { close(fds[0]) }
        let wake = ConntrackWakeSocket(descriptor: fds[1])
        let many = Set((0..<600).map { IPAddress("2001:db8::\(String($0, radix: 16))")! })
        XCTAssertFalse(wake.wake(forSources: many))
        XCTAssertNil(wake.localSources)
        let m = message(from: "203.0.113.9", to: "10.0.0.1", seq: 1)
        XCTAssertEqual(send(fds[0], m, m.count, 0), m.count)
        XCTAssertEqual(wake.drain(), 1)
    }
}
