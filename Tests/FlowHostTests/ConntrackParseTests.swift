@testable import FlowConntrack
import FlowCore
import FlowHost
import XCTest

/// The event stream's own reading of ctnetlink messages gives what libnetfilter_conntrack's
/// gives, on messages built here attribute by attribute, and never crashes on a cut or
/// corrupted one.
final class ConntrackParseTests: XCTestCase {
    // Netlink attributes, in host order for the headers and network order for the values.
    func attr(_ type: Int, _ payload: [UInt8], nested: Bool = false) -> [UInt8] {
        let len = 4 + payload.count
        let t = UInt16(type) | (nested ? 0x8000 : 0)
        var out = withUnsafeBytes(of: UInt16(len).littleEndian, Array.init) + withUnsafeBytes(of: t.littleEndian, Array.init)
        out += payload
        while out.count % 4 != 0 { out.append(0) }
        return out
    }
    func nest(_ type: Int, _ children: [[UInt8]]) -> [UInt8] { attr(type, children.flatMap { $0 }, nested: true) }
    func be16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v.bigEndian, Array.init) }
    func be32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.bigEndian, Array.init) }
    func be64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.bigEndian, Array.init) }

    /// A conntrack event message: nlmsghdr (type IPCTNL_MSG_CT_NEW or _DELETE), nfgenmsg, attributes.
    func message(family: UInt8, delete: Bool = false, _ attrs: [[UInt8]]) -> [UInt8] {
        let body = attrs.flatMap { $0 }
        let len = UInt32(16 + 4 + body.count)
        let type = UInt16(1 << 8 | (delete ? 2 : 0)), flags = UInt16(delete ? 0 : 0x600)
        var m = withUnsafeBytes(of: len.littleEndian, Array.init) + withUnsafeBytes(of: type.littleEndian, Array.init)
        m += withUnsafeBytes(of: flags.littleEndian, Array.init) + [UInt8](repeating: 0, count: 8)
        m += [family, 0, 0, 0]
        return m + body
    }

    func tuple(v4 src: [UInt8], _ dst: [UInt8], proto: UInt8, _ l4: [[UInt8]]) -> [[UInt8]] {
        [nest(1, [attr(1, src), attr(2, dst)]), nest(2, [attr(1, [proto])] + l4)]
    }
    func tuple(v6 src: [UInt8], _ dst: [UInt8], proto: UInt8, _ l4: [[UInt8]]) -> [[UInt8]] {
        [nest(1, [attr(3, src), attr(4, dst)]), nest(2, [attr(1, [proto])] + l4)]
    }
    func counters(_ type: Int, _ p: UInt64, _ b: UInt64, wide: Bool = true) -> [UInt8] {
        wide ? nest(type, [attr(1, be64(p)), attr(2, be64(b))])
             : nest(type, [attr(3, be32(UInt32(p))), attr(4, be32(UInt32(b)))])
    }

    var samples: [[UInt8]] {
        let a: [UInt8] = [10, 213, 0, 1], b: [UInt8] = [10, 213, 0, 2], vip: [UInt8] = [10, 214, 0, 100]
        let a6: [UInt8] = [0xfd, 0x42, 2, 0x13] + [UInt8](repeating: 0, count: 11) + [1]
        let b6: [UInt8] = [0xfd, 0x42, 2, 0x13] + [UInt8](repeating: 0, count: 11) + [2]
        // A DNATed TCP connection ending: both tuples, counters, state, timestamps, zone, mark.
        let tcpDestroy = message(family: 2, delete: true, [
            nest(1, tuple(v4: a, vip, proto: 6, [attr(2, be16(40000)), attr(3, be16(80))])),
            nest(2, tuple(v4: b, a, proto: 6, [attr(2, be16(8080)), attr(3, be16(40000))])),
            attr(3, be32(0x18e)), attr(7, be32(0)), attr(8, be32(0xbeef)),
            nest(4, [nest(1, [attr(1, [7]), attr(2, [7]), attr(3, [7])])]),
            counters(9, 17, 972), counters(10, 16, 201_044),
            attr(12, be32(0xdead_beef)), attr(18, be16(7)),
            nest(20, [attr(1, be64(1_795_000_000_123_456_789)), attr(2, be64(1_795_000_010_000_000_000))]),
        ])
        // A new UDP flow over IPv6, 32-bit counters, no protocol info.
        let udpNew = message(family: 10, [
            nest(1, tuple(v6: a6, b6, proto: 17, [attr(2, be16(5353)), attr(3, be16(53))])),
            nest(2, tuple(v6: b6, a6, proto: 17, [attr(2, be16(53)), attr(3, be16(5353))])),
            attr(3, be32(0x8)), attr(12, be32(42)), counters(9, 1, 70, wide: false), counters(10, 0, 0, wide: false),
        ])
        // An ICMP echo: type, code and id in the tuples (the reply's type differs).
        let icmp = message(family: 2, [
            nest(1, tuple(v4: a, b, proto: 1, [attr(4, be16(0x1234)), attr(5, [8]), attr(6, [0])])),
            nest(2, tuple(v4: b, a, proto: 1, [attr(4, be16(0x1234)), attr(5, [0]), attr(6, [0])])),
            attr(3, be32(0xa)), attr(12, be32(9)),
        ])
        // An ICMPv6 echo.
        let icmp6 = message(family: 10, [
            nest(1, tuple(v6: a6, b6, proto: 58, [attr(7, be16(77)), attr(8, [128]), attr(9, [0])])),
            nest(2, tuple(v6: b6, a6, proto: 58, [attr(7, be16(77)), attr(8, [129]), attr(9, [0])])),
            attr(12, be32(10)),
        ])
        // A TCP update with a state only, and one without protocol info.
        let tcpUpdate = message(family: 2, [
            nest(1, tuple(v4: a, b, proto: 6, [attr(2, be16(1)), attr(3, be16(2))])),
            nest(2, tuple(v4: b, a, proto: 6, [attr(2, be16(2)), attr(3, be16(1))])),
            nest(4, [nest(1, [attr(1, [3])])]), attr(3, be32(0x6)), attr(12, be32(1)),
        ])
        let tcpBare = message(family: 2, [
            nest(1, tuple(v4: a, b, proto: 6, [attr(2, be16(1)), attr(3, be16(2))])),
            nest(2, tuple(v4: b, a, proto: 6, [attr(2, be16(2)), attr(3, be16(1))])),
        ])
        return [tcpDestroy, udpNew, icmp, icmp6, tcpUpdate, tcpBare]
    }

    func testOurReadingMatchesTheLibrary() throws {
        for (i, m) in samples.enumerated() {
            let (ours, lib) = ConntrackSocket.parseBoth(m)
            XCTAssertNotNil(lib, "sample \(i): the library takes it")
            XCTAssertEqual(ours, lib, "sample \(i)")
        }
        let d = try XCTUnwrap(ConntrackSocket.parseBoth(samples[0]).ours)
        XCTAssertEqual(d.origPackets, 17)
        XCTAssertEqual(d.replyBytes, 201_044)
        XCTAssertEqual(d.tcpState, 7)
        XCTAssertEqual(d.reply.src, IPAddress("10.213.0.2"))
        XCTAssertEqual(d.dnat?.0, IPAddress("10.214.0.100"))
        XCTAssertEqual(d.zone, 7)
        XCTAssertEqual(d.mark, 0xbeef)
        XCTAssertEqual(d.id, 0xdead_beef)
        XCTAssertEqual(d.start ?? 0, 1_795_000_000.123_456_789, accuracy: 1e-6)
        let icmp = try XCTUnwrap(ConntrackSocket.parseBoth(samples[2]).ours)
        XCTAssertEqual([icmp.orig.sport, icmp.orig.dport, icmp.orig.icmpID, icmp.reply.sport], [8, 0, 0x1234, 8])
    }

    /// Every cut of every sample, and bytes changed anywhere after the headers: never a crash.
    /// (Only our reading: libnetfilter_conntrack aborts the process on some of these.)
    func testCutAndCorruptedMessagesAreReadSafely() {
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        for m in samples {
            for cut in stride(from: 0, to: m.count, by: 1) {
                var c = Array(m[..<cut])
                guard c.count >= 4 else { _ = ConntrackSocket.parseBoth(c + [0, 0, 0, 0], library: false); continue }
                c.replaceSubrange(0..<4, with: withUnsafeBytes(of: UInt32(c.count).littleEndian, Array.init))
                _ = ConntrackSocket.parseBoth(c, library: false)
            }
            for _ in 0..<400 {
                var c = m
                for _ in 0..<3 {
                    x = x &* 6364136223846793005 &+ 1442695040888963407
                    let at = 20 + Int((x >> 33) % UInt64(m.count - 20))  // keep the headers: lengths inside are fair game
                    c[at] = UInt8(truncatingIfNeeded: x >> 17)
                }
                _ = ConntrackSocket.parseBoth(c, library: false)
            }
        }
    }
}
