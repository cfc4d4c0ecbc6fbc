import XCTest
@testable import FlowCore

typealias PB = PacketBuilder

final class DecoderTests: XCTestCase {
    /// A SYN, as `tcpdump -X` shows it:
    ///   0x0000: 0001 0203 0405 0607 0809 0a0b 0800 4500  ..............E.
    ///   0x0010: 0028 0001 0000 4006 0000 0a00 0001 0a00  .(....@.........
    ///   0x0020: 0002 c350 0050 0000 03e8 0000 0000 5002  ...P.P........P.
    ///   0x0030: 2000 0000 0000                           ......
    let syn = PB.ether(PB.ipv4(src: "10.0.0.1", dst: "10.0.0.2", proto: 6,
                               PB.tcp(sport: 50000, dport: 80, seq: 1000, ack: 0, flags: TCPFlag.syn)))

    func decodeAll(_ frame: [UInt8], _ lt: LinkType = .ethernet) -> (LinkResult, IPView?, TransportView?, Anomaly?) {
        frame.withUnsafeBytes { b in
            let link = LinkDecoder.decode(lt, b)
            guard case .ip(let o) = link else { return (link, nil, nil, nil) }
            var ip = IPView()
            if let a = IPDecoder.decode(b, at: o, wireEnd: b.count, into: &ip) { return (link, nil, nil, a) }
            var tp = TransportView()
            let a = IPDecoder.transport(b, ip: ip, into: &tp)
            return (link, ip, tp, a)
        }
    }

    func testEthernetIPv4TCP() {
        let (link, ip, tp, a) = decodeAll(syn)
        XCTAssertEqual(link, .ip(offset: 14))
        XCTAssertNil(a)
        XCTAssertEqual(ip?.src, IPAddress("10.0.0.1"))
        XCTAssertEqual(ip?.dst, IPAddress("10.0.0.2"))
        XCTAssertEqual(ip?.ipBytes, 40)
        XCTAssertEqual(tp?.sport, 50000)
        XCTAssertEqual(tp?.dport, 80)
        XCTAssertEqual(tp?.tcpFlags, TCPFlag.syn)
        XCTAssertEqual(tp?.seq, 1000)
    }

    func testVLANAndQinQ() {
        let inner = PB.ipv4(src: "1.2.3.4", dst: "5.6.7.8", proto: 17, PB.udp(sport: 1, dport: 2, payload: [1, 2, 3]))
        XCTAssertEqual(decodeAll(PB.ether(inner, vlans: [10])).0, .ip(offset: 18))
        XCTAssertEqual(decodeAll(PB.ether(inner, vlans: [10, 20])).0, .ip(offset: 22))
        XCTAssertEqual(decodeAll(PB.ether(inner, vlans: [10, 20])).2?.payloadLength, 3)
    }

    func testMPLSAndPPPoE() {
        let inner = PB.ipv4(src: "1.2.3.4", dst: "5.6.7.8", proto: 17, PB.udp(sport: 1, dport: 2, payload: []))
        // Two labels, the second with bottom-of-stack.
        let mpls: [UInt8] = [0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40] + inner
        XCTAssertEqual(decodeAll(PB.ether(mpls, type: 0x8847)).0, .ip(offset: 22))
        // PPPoE session: ver/type, code, session id, length, PPP protocol 0x0021.
        let pppoe: [UInt8] = [0x11, 0x00, 0x00, 0x01] + PB.be16(inner.count + 2) + [0x00, 0x21] + inner
        XCTAssertEqual(decodeAll(PB.ether(pppoe, type: 0x8864)).0, .ip(offset: 22))
        // PPPoE carrying LCP is not IP.
        let lcp: [UInt8] = [0x11, 0x00, 0x00, 0x01, 0x00, 0x04, 0xC0, 0x21, 1, 1]
        XCTAssertEqual(decodeAll(PB.ether(lcp, type: 0x8864)).0, .nonIP)
    }

    func testOtherLinkTypes() {
        let ip = PB.ipv4(src: "1.2.3.4", dst: "5.6.7.8", proto: 6, PB.tcp(sport: 1, dport: 2, seq: 1, ack: 0, flags: 2))
        XCTAssertEqual(decodeAll(ip, .raw).0, .ip(offset: 0))
        XCTAssertEqual(decodeAll(ip, .ipv4).0, .ip(offset: 0))
        XCTAssertEqual(decodeAll([2, 0, 0, 0] + ip, .null).0, .ip(offset: 4))  // little-endian host
        XCTAssertEqual(decodeAll([0, 0, 0, 2] + ip, .null).0, .ip(offset: 4))  // big-endian host
        XCTAssertEqual(decodeAll([0, 0, 0, 2] + ip, .loop).0, .ip(offset: 4))
        let sll: [UInt8] = [0, 0, 0, 1, 0, 6] + [UInt8](repeating: 0, count: 8) + [0x08, 0x00]
        XCTAssertEqual(decodeAll(sll + ip, .linuxSLL).0, .ip(offset: 16))
        let sll2: [UInt8] = [0x08, 0x00, 0, 0] + [UInt8](repeating: 0, count: 16)
        XCTAssertEqual(decodeAll(sll2 + ip, .linuxSLL2).0, .ip(offset: 20))
        XCTAssertEqual(decodeAll([0xFF, 0x03, 0x00, 0x21] + ip, .ppp).0, .ip(offset: 4))
        XCTAssertEqual(decodeAll([0x21] + ip, .ppp).0, .ip(offset: 1))
        XCTAssertEqual(decodeAll([0x0F, 0x00, 0x08, 0x00] + ip, .ciscoHDLC).0, .ip(offset: 4))
        // 802.11 data frame (To-DS), LLC/SNAP, IPv4.
        let wifi: [UInt8] = [0x08, 0x01] + [UInt8](repeating: 0, count: 22) + [0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00]
        XCTAssertEqual(decodeAll(wifi + ip, .ieee80211).0, .ip(offset: 32))
        // QoS data with radiotap (8-byte radiotap header).
        let radiotap: [UInt8] = [0, 0, 8, 0, 0, 0, 0, 0]
        let qos: [UInt8] = [0x88, 0x01] + [UInt8](repeating: 0, count: 24) + [0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00]
        XCTAssertEqual(decodeAll(radiotap + qos + ip, .ieee80211Radiotap).0, .ip(offset: 42))
        // A beacon is not a data frame.
        XCTAssertEqual(decodeAll([0x80, 0x00] + [UInt8](repeating: 0, count: 30), .ieee80211).0, .nonIP)
        // Protected data cannot be decoded.
        let protected: [UInt8] = [0x08, 0x41] + [UInt8](repeating: 0, count: 30)
        XCTAssertEqual(decodeAll(protected, .ieee80211).0, .anomaly(.protected80211Frame))
        // NFLOG: header, a prefix TLV, then the payload TLV (type 9).
        let tlvLen = 4 + ip.count
        let nf: [UInt8] = [2, 0, 0, 0] + [8, 0, 10, 0, 0x61, 0x62, 0x63, 0]
            + [UInt8(tlvLen & 0xFF), UInt8(tlvLen >> 8), 9, 0]
        XCTAssertEqual(decodeAll(nf + ip, .nflog).0, .ip(offset: 16))
        // SLIP: 16-byte pseudo-header.
        XCTAssertEqual(decodeAll([UInt8](repeating: 0, count: 16) + ip, .slip).0, .ip(offset: 16))
        // Frame Relay: Q.922 address (2 bytes), UI, NLPID 0xCC; and with SNAP.
        XCTAssertEqual(decodeAll([0x18, 0x41, 0x03, 0xCC] + ip, .frameRelay).0, .ip(offset: 4))
        XCTAssertEqual(decodeAll([0x18, 0x41, 0x03, 0x00, 0x80, 0, 0, 0, 0x08, 0x00] + ip, .frameRelay).0, .ip(offset: 10))
        XCTAssertEqual(decodeAll([0x18, 0x41, 0x03, 0x08] + ip, .frameRelay).0, .nonIP)  // Q.933 signalling
        XCTAssertEqual(decodeAll([0x48, 0xE1, 0x08, 0x00] + ip, .frameRelay).0, .ip(offset: 4))  // Cisco encapsulation
    }

    func testIPv6ExtensionHeadersAndFragments() {
        let tcp = PB.tcp(sport: 1234, dport: 443, seq: 7, ack: 0, flags: TCPFlag.syn)
        // hop-by-hop (8 bytes) → destination options (8 bytes) → TCP
        let hbh: [UInt8] = [60, 0, 1, 4, 0, 0, 0, 0]
        let dst: [UInt8] = [6, 0, 1, 4, 0, 0, 0, 0]
        let pkt = PB.ipv6(src: "2001:db8::1", dst: "2001:db8::2", next: 0, hbh + dst + tcp)
        let (_, ip, tp, a) = decodeAll(PB.ether(pkt, type: 0x86DD))
        XCTAssertNil(a)
        XCTAssertEqual(ip?.proto, .tcp)
        XCTAssertEqual(ip?.ipBytes, 40 + 16 + 20)
        XCTAssertEqual(tp?.dport, 443)
        // Fragment header: first fragment has ports, a later one has none.
        let frag0: [UInt8] = [17, 0, 0x00, 0x01, 0, 0, 0, 9]
        let udp = PB.udp(sport: 53, dport: 9999, payload: [UInt8](repeating: 1, count: 16))
        let f0 = PB.ipv6(src: "2001:db8::1", dst: "2001:db8::2", next: 44, frag0 + udp)
        let (_, ip0, tp0, _) = decodeAll(PB.ether(f0, type: 0x86DD))
        XCTAssertEqual(ip0?.isFragment, true)
        XCTAssertEqual(ip0?.fragmentOffset, 0)
        XCTAssertEqual(tp0?.sport, 53)
        let frag1: [UInt8] = [17, 0, 0x00, 0x20, 0, 0, 0, 9]  // offset 4 (×8 bytes), last
        let f1 = PB.ipv6(src: "2001:db8::1", dst: "2001:db8::2", next: 44, frag1 + [UInt8](repeating: 2, count: 8))
        let (_, ip1, tp1, _) = decodeAll(PB.ether(f1, type: 0x86DD))
        XCTAssertEqual(ip1?.fragmentOffset, 32)
        XCTAssertEqual(tp1?.hasHeader, false)
    }

    func testIPv4OptionsAndLengthChecks() {
        let opts: [UInt8] = [0x94, 0x04, 0, 0]  // router alert
        let pkt = PB.ipv4(src: "1.1.1.1", dst: "2.2.2.2", proto: 17, PB.udp(sport: 5, dport: 6, payload: [9]), options: opts)
        let (_, ip, tp, a) = decodeAll(PB.ether(pkt))
        XCTAssertNil(a)
        XCTAssertEqual(ip?.l4Offset, 14 + 24)
        XCTAssertEqual(tp?.payloadLength, 1)
        // A total length larger than the frame on the wire is not counted.
        var bad = PB.ether(pkt)
        bad[16] = 0x05; bad[17] = 0xDC
        XCTAssertEqual(decodeAll(bad).3, .ipLengthExceedsFrame)
    }

    /// Every prefix of every test frame decodes to an anomaly or a result — never a trap.
    func testEveryPrefixIsSafe() {
        let ip4 = PB.ipv4(src: "1.2.3.4", dst: "5.6.7.8", proto: 6, PB.tcp(sport: 1, dport: 2, seq: 1, ack: 0, flags: 2, payload: 5))
        let ip6 = PB.ipv6(src: "::1", dst: "::2", next: 0, [17, 0, 1, 4, 0, 0, 0, 0] + PB.udp(sport: 1, dport: 2, payload: [1]))
        let frames: [([UInt8], LinkType)] = [
            (syn, .ethernet), (PB.ether(ip4, vlans: [1, 2]), .ethernet), (PB.ether(ip6, type: 0x86DD), .ethernet),
            (ip4, .raw), ([2, 0, 0, 0] + ip4, .null), ([0xFF, 0x03, 0x00, 0x21] + ip4, .ppp),
            ([0, 0, 8, 0, 0, 0, 0, 0, 0x88, 0x01] + [UInt8](repeating: 0, count: 24)
                + [0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00] + ip4, .ieee80211Radiotap),
            (PB.ether([0x11, 0, 0, 1, 0, 0, 0, 0x21] + ip4, type: 0x8864), .ethernet),
            (PB.ether([0, 1, 1, 0x40] + ip4, type: 0x8847), .ethernet),
            ([0, 0, 0, 1, 0, 6] + [UInt8](repeating: 0, count: 8) + [0x08, 0x00] + ip4, .linuxSLL),
            ([0x08, 0x00, 0, 0] + [UInt8](repeating: 0, count: 16) + ip4, .linuxSLL2),
            ([0x0F, 0x00, 0x08, 0x00] + ip4, .ciscoHDLC),
            ([0x08, 0x01] + [UInt8](repeating: 0, count: 22) + [0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00] + ip4, .ieee80211),
            ([0x50] + [UInt8](repeating: 0, count: 12) + [0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00] + ip4, .fddi),
            ([2, 0, 0, 0] + [UInt8(4 + ip4.count), 0, 9, 0] + ip4, .nflog),
            ([0x18, 0x41, 0x03, 0xCC] + ip4, .frameRelay),
            ([UInt8](repeating: 0, count: 16) + ip4, .slip),
            // Tunnels: GRE, VXLAN, Geneve, Teredo, GTP-U, 6in4.
            (PB.ether(PB.ipv4(src: "9.9.9.1", dst: "9.9.9.2", proto: 47, [0, 0, 0x08, 0x00] + ip4)), .ethernet),
            (PB.ether(PB.ipv4(src: "9.9.9.1", dst: "9.9.9.2", proto: 17,
                              PB.udp(sport: 1, dport: 4789, payload: [0x08, 0, 0, 0, 0, 0, 1, 0] + PB.ether(ip4)))), .ethernet),
            (PB.ether(PB.ipv4(src: "9.9.9.1", dst: "9.9.9.2", proto: 17,
                              PB.udp(sport: 1, dport: 6081, payload: [0, 0, 0x08, 0x00, 0, 0, 1, 0] + ip4))), .ethernet),
            (PB.ether(PB.ipv4(src: "9.9.9.1", dst: "9.9.9.2", proto: 17,
                              PB.udp(sport: 1, dport: 3544, payload: ip6))), .ethernet),
            (PB.ether(PB.ipv4(src: "9.9.9.1", dst: "9.9.9.2", proto: 17,
                              PB.udp(sport: 2152, dport: 2152, payload: [0x30, 0xFF] + PB.be16(ip4.count) + [0, 0, 0, 1] + ip4))), .ethernet),
            (PB.ether(PB.ipv4(src: "9.9.9.1", dst: "9.9.9.2", proto: 41, ip6)), .ethernet),
        ]
        for (frame, lt) in frames {
            for n in 0...frame.count {
                let prefix = Array(frame.prefix(n))
                let h = Harness()
                // Wire length is the full frame: a snap length cut the rest.
                prefix.withUnsafeBytes { h.analyzer.process(linkType: lt, timestamp: 1, wireLength: frame.count, bytes: $0) }
                _ = decodeAll(prefix, lt)
                let recs = h.finish()
                // A tunnelled frame gives the outer flow (UDP tunnels) and the inner one.
                XCTAssertLessThanOrEqual(recs.count, 2)
                if n == frame.count { XCTAssertGreaterThanOrEqual(recs.count, 1, "full frame of \(lt) must decode") }
            }
        }
    }
}
