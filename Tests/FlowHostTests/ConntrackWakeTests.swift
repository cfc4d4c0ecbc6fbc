import CConntrack
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
    func message(from src: String, to dst: String, seq: UInt32) -> [UInt8] {
        func bytes(_ a: IPAddress) -> (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) {
            var t: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)
                = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            withUnsafeMutableBytes(of: &t) { b in
                for i in 0..<8 { b[i] = UInt8(truncatingIfNeeded: a.hi >> UInt64(56 - 8 * i)) }
                for i in 0..<8 { b[8 + i] = UInt8(truncatingIfNeeded: a.lo >> UInt64(56 - 8 * i)) }
            }
            return t
        }
        var q = fm_ct_query()
        q.proto = 6; q.sport = 40000; q.dport = 443
        q.src = bytes(IPAddress(src)!)
        q.dst = bytes(IPAddress(dst)!)
        var buf = [UInt8](repeating: 0, count: Int(FM_CT_QUERY_MAX))
        let n = fm_ct_put_query(&buf, &q, seq)
        return Array(buf[..<Int(n)])
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
