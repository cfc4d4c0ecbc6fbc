import CConntrack
@testable import FlowConntrack
import FlowCore
import FlowHost
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Lookups on the dump socket (read-only queries of the kernel's table; needs root and
/// conntrack, which CI has).
final class ConntrackLookupTests: XCTestCase {
    func socket() throws -> ConntrackSocket {
        guard getuid() == 0, ConntrackSettings.available else { throw XCTSkip("needs root and conntrack") }
        return try ConntrackSocket(events: false)
    }

    /// A tuple no connection has (TEST-NET addresses): looked up, it is missing.
    func made(port: UInt16) -> ConntrackEntry {
        ConntrackEntry(id: 1, orig: ConntrackTuple(src: IPAddress("192.0.2.1")!, dst: IPAddress("192.0.2.2")!, proto: 6, sport: port, dport: 9),
                       reply: ConntrackTuple(src: IPAddress("192.0.2.2")!, dst: IPAddress("192.0.2.1")!, proto: 6, sport: 9, dport: port))
    }

    func testLookupsOfUnknownConnectionsAreMissing() throws {
        let s = try socket()
        // More than one request datagram's worth.
        let entries = (0..<40).map { made(port: 40000 + UInt16($0)) }
        var seen: [Int: ConntrackSocket.Lookup] = [:]
        try s.lookUp(entries) { i, found in seen[i] = found }
        XCTAssertEqual(seen.count, 40)
        XCTAssertTrue(seen.values.allSatisfy { $0 == .missing }, "\(seen)")
    }

    /// An answer left unread on the socket (a lookup that gave up waiting) does not break the
    /// next dump, which shares the socket.
    func testAStaleAnswerDoesNotBreakTheNextDump() throws {
        let s = try socket()
        var q = fm_ct_query()
        q.proto = 6; q.sport = 40000; q.dport = 9
        withUnsafeMutableBytes(of: &q.src) { $0[10] = 0xff; $0[11] = 0xff; $0[12] = 192; $0[14] = 2; $0[15] = 1 }
        withUnsafeMutableBytes(of: &q.dst) { $0[10] = 0xff; $0[11] = 0xff; $0[12] = 192; $0[14] = 2; $0[15] = 2 }
        var buf = [UInt8](repeating: 0, count: Int(FM_CT_QUERY_MAX))
        let len = fm_ct_put_query(&buf, &q, 7)
        var kernel = sockaddr_nl()
        kernel.nl_family = sa_family_t(AF_NETLINK)
        let sent = withUnsafePointer(to: &kernel) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(s.fd, buf, Int(len), 0, $0, socklen_t(MemoryLayout<sockaddr_nl>.size)) }
        }
        XCTAssertEqual(sent, Int(len))
        var entries = 0
        XCTAssertNoThrow(try s.dump { _ in entries += 1 })
        // And lookups still work after it.
        var seen: ConntrackSocket.Lookup?
        try s.lookUp([made(port: 40001)]) { _, found in seen = found }
        XCTAssertEqual(seen, .missing)
    }
}
