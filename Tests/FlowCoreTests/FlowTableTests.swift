import XCTest
@testable import FlowCore

final class FlowTableTests: XCTestCase {
    let c = "10.0.0.1", s = "10.0.0.2"

    func tcp(_ src: String, _ dst: String, _ sp: Int, _ dp: Int, seq: UInt32, ack: UInt32, _ flags: UInt8,
             payload: Int = 0) -> [UInt8] {
        PB.ether(PB.ipv4(src: src, dst: dst, proto: 6, PB.tcp(sport: sp, dport: dp, seq: seq, ack: ack, flags: flags, payload: payload)))
    }

    func handshakeAndClose(_ h: Harness, t0: Double, cport: Int = 40000) {
        let S = TCPFlag.syn, A = TCPFlag.ack, F = TCPFlag.fin, P = TCPFlag.psh
        h.feed(tcp(c, s, cport, 80, seq: 100, ack: 0, S), at: t0)
        h.feed(tcp(s, c, 80, cport, seq: 500, ack: 101, S | A), at: t0 + 0.01)
        h.feed(tcp(c, s, cport, 80, seq: 101, ack: 501, A), at: t0 + 0.02)
        h.feed(tcp(c, s, cport, 80, seq: 101, ack: 501, A | P, payload: 10), at: t0 + 0.03)
        h.feed(tcp(s, c, 80, cport, seq: 501, ack: 111, A | P, payload: 20), at: t0 + 0.04)
        h.feed(tcp(c, s, cport, 80, seq: 111, ack: 521, A | F), at: t0 + 0.05)
        h.feed(tcp(s, c, 80, cport, seq: 521, ack: 112, A | F), at: t0 + 0.06)
        h.feed(tcp(c, s, cport, 80, seq: 112, ack: 522, A), at: t0 + 0.07)
    }

    func testCompleteTCPConnection() throws {
        let h = Harness()
        handshakeAndClose(h, t0: 100)
        let r = try XCTUnwrap(h.finish().first)
        XCTAssertEqual(r.connState, "SF")
        XCTAssertEqual(r.history, "ShADdFf")  // the server never sent a pure ACK
        XCTAssertEqual(r.origH, IPAddress(c))
        XCTAssertEqual(r.respP, 80)
        XCTAssertEqual(r.origPkts, 5)
        XCTAssertEqual(r.respPkts, 3)
        XCTAssertEqual(r.origIPBytes, 5 * 40 + 10)
        XCTAssertEqual(r.respIPBytes, 3 * 40 + 20)
        XCTAssertEqual(r.origBytes, 10)
        XCTAssertEqual(r.respBytes, 20)
        XCTAssertFalse(r.flipped)
        // The final ACK after both FINs does not extend the duration (Zeek's rule).
        XCTAssertEqual(r.duration, 0.06, accuracy: 1e-9)
    }

    func testRejectedAndReusedTuple() {
        let h = Harness()
        h.feed(tcp(c, s, 40001, 110, seq: 1, ack: 0, TCPFlag.syn), at: 10)
        h.feed(tcp(s, c, 110, 40001, seq: 0, ack: 2, TCPFlag.rst | TCPFlag.ack), at: 10.05)
        // The same 5-tuple, a new SYN three seconds later: a new flow.
        h.feed(tcp(c, s, 40001, 110, seq: 9000, ack: 0, TCPFlag.syn), at: 13)
        h.feed(tcp(s, c, 110, 40001, seq: 0, ack: 9001, TCPFlag.rst | TCPFlag.ack), at: 13.05)
        let recs = h.finish()
        XCTAssertEqual(recs.count, 2)
        XCTAssertEqual(recs.map(\.connState), ["REJ", "REJ"])
        XCTAssertEqual(recs.map(\.history), ["Sr", "Sr"])
        XCTAssertNotEqual(recs[0].uid, recs[1].uid)
    }

    func testUnansweredAttemptExpiresAfterFiveSeconds() {
        let h = Harness()
        h.feed(tcp(c, s, 40002, 22, seq: 1, ack: 0, TCPFlag.syn), at: 0)
        h.feed(tcp(c, s, 40002, 22, seq: 1, ack: 0, TCPFlag.syn), at: 3)  // retransmitted SYN: same flow
        XCTAssertTrue(h.emitted.isEmpty)
        // Later traffic without a SYN opens a new, partial flow.
        h.feed(tcp(c, s, 40002, 22, seq: 2, ack: 77, TCPFlag.ack, payload: 5), at: 20)
        XCTAssertEqual(h.emitted.count, 1)
        XCTAssertEqual(h.emitted[0].connState, "S0")
        XCTAssertEqual(h.emitted[0].origPkts, 2)
        XCTAssertEqual(h.emitted[0].history, "S")
        let recs = h.finish()
        XCTAssertEqual(recs.count, 2)
        XCTAssertEqual(recs[1].connState, "OTH")
        XCTAssertEqual(recs[1].history, "D")
    }

    func testMidstreamFlipUsesServerPort() throws {
        let h = Harness()
        // First packet seen goes server → client: the flow is flipped (history starts with ^).
        h.feed(tcp(s, c, 80, 40003, seq: 10, ack: 20, TCPFlag.ack, payload: 100), at: 1)
        h.feed(tcp(c, s, 40003, 80, seq: 20, ack: 110, TCPFlag.ack), at: 1.1)
        let r = try XCTUnwrap(h.finish().first)
        XCTAssertTrue(r.flipped)
        XCTAssertEqual(r.origH, IPAddress(c))
        XCTAssertEqual(r.respP, 80)
        XCTAssertEqual(r.history, "^dA")
        XCTAssertEqual(r.respPkts, 1)
        XCTAssertEqual(r.origPkts, 1)
    }

    func testInactivityTimeoutsSplitFlows() {
        var t = Timeouts()
        t.udpInactivity = 30
        let h = Harness(timeouts: t)
        let u = PB.ether(PB.ipv4(src: c, dst: s, proto: 17, PB.udp(sport: 5000, dport: 9000, payload: [1, 2])))
        h.feed(u, at: 0)
        h.feed(u, at: 29)
        h.feed(u, at: 60)  // 31 s idle: a new flow
        let recs = h.finish()
        XCTAssertEqual(recs.map(\.origPkts), [2, 1])
        XCTAssertEqual(recs.map(\.connState), ["S0", "S0"])
        XCTAssertEqual(recs[0].origBytes, 4)
    }

    func testTableMemoryIsBoundedByActiveFlows() {
        let h = Harness()
        for i in 0..<2000 {
            let u = PB.ether(PB.ipv4(src: c, dst: s, proto: 17, PB.udp(sport: 1000 + i, dport: 9000, payload: [1])))
            h.feed(u, at: Double(i))  // one new flow a second, each idle after
        }
        XCTAssertLessThanOrEqual(h.table.activeFlows, 62)
        XCTAssertGreaterThan(h.emitted.count, 1900)
    }

    func testICMPEchoIsOneFlowAndUDPServerFlip() throws {
        let h = Harness()
        h.feed(PB.ether(PB.ipv4(src: c, dst: s, proto: 1, PB.icmp(type: 8, code: 0, payload: 56))), at: 1)
        h.feed(PB.ether(PB.ipv4(src: s, dst: c, proto: 1, PB.icmp(type: 0, code: 0, payload: 56))), at: 1.001)
        // A DNS answer seen without its query: the server port decides the direction.
        h.feed(PB.ether(PB.ipv4(src: s, dst: c, proto: 17, PB.udp(sport: 53, dport: 33333, payload: [0, 1, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0]))), at: 2)
        let recs = h.finish().sorted(by: FlowRecord.outputOrder)
        XCTAssertEqual(recs.count, 2)
        XCTAssertEqual(recs[0].proto, "icmp")
        XCTAssertEqual(recs[0].origP, 8)
        XCTAssertEqual(recs[0].respP, 0)
        XCTAssertEqual(recs[0].origPkts, 1)
        XCTAssertEqual(recs[0].respPkts, 1)
        XCTAssertEqual(recs[0].origBytes, 56)
        XCTAssertEqual(recs[1].connState, "SHR")
        XCTAssertEqual(recs[1].history, "^d")
        XCTAssertEqual(recs[1].origH, IPAddress(c))
    }

    func testFragmentsCountAsOneDatagram() throws {
        let h = Harness()
        let payload = [UInt8](repeating: 7, count: 32)
        let udp = PB.udp(sport: 4000, dport: 5000, payload: payload)  // 40 bytes of transport
        let first = Array(udp.prefix(24)), rest = Array(udp.dropFirst(24))
        h.feed(PB.ether(PB.ipv4(src: c, dst: s, proto: 17, first, id: 77, moreFragments: true)), at: 1)
        h.feed(PB.ether(PB.ipv4(src: c, dst: s, proto: 17, rest, id: 77, fragOffset: 24)), at: 1.001)
        let r = try XCTUnwrap(h.finish().first)
        XCTAssertEqual(r.origPkts, 1)
        XCTAssertEqual(r.origIPBytes, 20 + 40)  // the reassembled datagram
        XCTAssertEqual(r.respP, 5000)
    }

    func testConnStateFunction() {
        XCTAssertEqual(FlowTable.tcpConnState(.reset, .inactive, origSize: 0, respSize: 0, history: Array("SR".utf8)), "RSTOS0")
        XCTAssertEqual(FlowTable.tcpConnState(.reset, .inactive, origSize: 0, respSize: 0, history: Array("R".utf8)), "OTH")
        XCTAssertEqual(FlowTable.tcpConnState(.established, .reset, origSize: 5, respSize: 5, history: []), "RSTR")
        XCTAssertEqual(FlowTable.tcpConnState(.partial, .reset, origSize: 0, respSize: 0, history: []), "RSTRH")
        XCTAssertEqual(FlowTable.tcpConnState(.closed, .established, origSize: 0, respSize: 0, history: []), "S2")
        XCTAssertEqual(FlowTable.tcpConnState(.established, .closed, origSize: 0, respSize: 0, history: []), "S3")
        XCTAssertEqual(FlowTable.tcpConnState(.closed, .inactive, origSize: 0, respSize: 0, history: []), "SH")
        XCTAssertEqual(FlowTable.tcpConnState(.inactive, .closed, origSize: 0, respSize: 0, history: []), "SHR")
        XCTAssertEqual(FlowTable.tcpConnState(.synSent, .inactive, origSize: 0, respSize: 0, history: []), "S0")
        XCTAssertEqual(FlowTable.tcpConnState(.established, .established, origSize: 0, respSize: 0, history: []), "S1")
        XCTAssertEqual(FlowTable.tcpConnState(.reset, .established, origSize: 1, respSize: 0, history: []), "RSTO")
    }

    func testGeneveGTPAndSixInFourInnerFlows() throws {
        let h = Harness()
        let inner = PB.ipv4(src: "172.16.0.1", dst: "172.16.0.2", proto: 17, PB.udp(sport: 7, dport: 9, payload: [1, 2]))
        // Geneve carrying IPv4 (protocol type 0x0800), no options.
        h.feed(PB.ether(PB.ipv4(src: c, dst: s, proto: 17, PB.udp(sport: 5000, dport: 6081, payload: [0, 0, 0x08, 0x00, 0, 0, 1, 0] + inner))), at: 1)
        // GTP-U G-PDU with a sequence number (S flag) and no extension headers.
        let gtp: [UInt8] = [0x32, 0xFF] + PB.be16(inner.count + 4) + [0, 0, 0, 9] + [0, 1, 0, 0] + inner
        h.feed(PB.ether(PB.ipv4(src: c, dst: s, proto: 17, PB.udp(sport: 2152, dport: 2152, payload: gtp))), at: 2)
        // 6in4: IPv6 ICMPv6 echo inside IPv4 protocol 41 (no outer flow, a tunnel parent).
        let v6 = PB.ipv6(src: "2001:db8::1", dst: "2001:db8::2", next: 58, PB.icmp(type: 128, code: 0))
        h.feed(PB.ether(PB.ipv4(src: c, dst: s, proto: 41, v6)), at: 3)
        let recs = h.finish()
        let innerUDP = recs.filter { $0.origH == IPAddress("172.16.0.1") }
        XCTAssertEqual(innerUDP.count, 1)  // the same inner 5-tuple through both tunnels
        XCTAssertEqual(innerUDP.first?.origPkts, 2)
        XCTAssertEqual(innerUDP.first?.tunnelParents.count, 2)
        XCTAssertTrue(recs.contains { $0.respP == 6081 })
        XCTAssertTrue(recs.contains { $0.respP == 2152 })
        let icmp6 = try XCTUnwrap(recs.first { $0.ipProto.rawValue == 58 })
        XCTAssertEqual(icmp6.origP, 128)
        XCTAssertEqual(icmp6.respP, 129)
        XCTAssertEqual(icmp6.tunnelParents.count, 1)
        XCTAssertFalse(recs.contains { $0.ipProto.rawValue == 41 })
    }

    /// A flow whose two ends are the same address and port (a "land" packet) counts every
    /// packet to its originator, whichever way its roles were guessed, in a batch or not; and
    /// a flow from 10.0.0.2 that starts with a SYN-ACK is turned round as usual.
    func testASameEndpointFlowCountsEveryPacketToTheOriginator() throws {
        let S = TCPFlag.syn, A = TCPFlag.ack, F = TCPFlag.fin
        let frames: [[UInt8]] = [
            tcp("10.0.0.1", "10.0.0.1", 80, 80, seq: 100, ack: 0, S | A),
            tcp("10.0.0.1", "10.0.0.1", 80, 80, seq: 101, ack: 501, A, payload: 10),
            tcp("10.0.0.1", "10.0.0.1", 80, 80, seq: 500, ack: 101, S),
            tcp("10.0.0.1", "10.0.0.1", 80, 80, seq: 501, ack: 111, F | A),
            tcp("10.0.0.2", "10.0.0.1", 80, 80, seq: 1, ack: 0, S | A),
            tcp("10.0.0.1", "10.0.0.2", 80, 80, seq: 1, ack: 2, A),
        ]
        for batched in [false, true] {
            final class Sink { var r: [FlowRecord] = [] }
            let sink = Sink()
            let table = FlowTable { sink.r.append($0) }
            let analyzer = batched ? PacketAnalyzer(batch: EventBatch(capacity: 64), names: table.names) { b in
                table.apply(b)
                b.clear()
                return b
            } : PacketAnalyzer(table: table)
            for (i, f) in frames.enumerated() {
                f.withUnsafeBytes { analyzer.process(linkType: .ethernet, timestamp: Double(i), wireLength: f.count, bytes: $0) }
            }
            analyzer.finishDecoding()
            table.flush()
            let land = try XCTUnwrap(sink.r.first { $0.origH == $0.respH })
            XCTAssertEqual(land.origPkts, 4, "batched \(batched)")
            XCTAssertEqual(land.respPkts, 0)
            let other = try XCTUnwrap(sink.r.first { $0.origH != $0.respH })
            XCTAssertEqual(other.origH, IPAddress("10.0.0.1"))  // the SYN-ACK came from the responder
            XCTAssertEqual(other.origPkts, 1)
            XCTAssertEqual(other.respPkts, 1)
        }
    }

    func testTunnelledFlowsNameTheirParents() throws {
        let h = Harness()
        // VXLAN: outer UDP to 4789, 8-byte header with the I flag, inner Ethernet + IPv4 ICMP.
        let inner = PB.ether(PB.ipv4(src: "192.168.0.1", dst: "192.168.0.2", proto: 1, PB.icmp(type: 8, code: 0)))
        let vx = [0x08, 0, 0, 0, 0, 0, 1, 0] + inner
        h.feed(PB.ether(PB.ipv4(src: c, dst: s, proto: 17, PB.udp(sport: 40000, dport: 4789, payload: vx))), at: 1)
        // GRE carrying IPv4 UDP.
        let greInner = PB.ipv4(src: "172.16.0.1", dst: "172.16.0.2", proto: 17, PB.udp(sport: 1, dport: 2, payload: [1]))
        h.feed(PB.ether(PB.ipv4(src: c, dst: s, proto: 47, [0, 0, 0x08, 0x00] + greInner)), at: 2)
        let recs = h.finish().sorted(by: FlowRecord.outputOrder)
        XCTAssertEqual(recs.count, 3)  // outer VXLAN UDP, inner ICMP, inner (GRE) UDP; no GRE row
        let outer = try XCTUnwrap(recs.first { $0.respP == 4789 })
        let icmp = try XCTUnwrap(recs.first { $0.proto == "icmp" })
        XCTAssertEqual(icmp.tunnelParents, [outer.uid])
        let greUDP = try XCTUnwrap(recs.first { $0.origH == IPAddress("172.16.0.1") })
        XCTAssertEqual(greUDP.tunnelParents.count, 1)
        XCTAssertFalse(recs.contains { $0.ipProto.rawValue == 47 })
    }
}

final class BatchingTests: XCTestCase {
    /// Events applied in small batches (as across threads) give the same flows as packet by
    /// packet, including tunnel parents resolved across batch boundaries.
    func testBatchedEventsMatchDirectAnalysis() throws {
        let inner = PB.ether(PB.ipv4(src: "192.168.0.1", dst: "192.168.0.2", proto: 1, PB.icmp(type: 8, code: 0)))
        let vx = [0x08, 0, 0, 0, 0, 0, 1, 0] + inner
        var frames: [[UInt8]] = []
        for i in 0..<40 {
            frames.append(PB.ether(PB.ipv4(src: "10.0.0.\(1 + i % 3)", dst: "10.0.0.9", proto: 17,
                                           PB.udp(sport: 40000 + i % 5, dport: 4789, payload: vx))))
            frames.append(PB.ether(PB.ipv4(src: "10.0.0.9", dst: "10.0.0.\(1 + i % 3)", proto: 6,
                                           PB.tcp(sport: 80, dport: 50000 + i, seq: 1, ack: 1, flags: TCPFlag.ack))))
        }
        func run(direct: Bool) -> [FlowRecord] {
            final class Sink { var r: [FlowRecord] = [] }
            let sink = Sink()
            let table = FlowTable { sink.r.append($0) }
            let analyzer = direct ? PacketAnalyzer(table: table) : PacketAnalyzer(batch: EventBatch(capacity: 3), names: table.names) { b in
                table.apply(b)
                b.clear()
                return b
            }
            for (i, f) in frames.enumerated() {
                f.withUnsafeBytes { analyzer.process(linkType: .ethernet, timestamp: Double(i) * 0.5, wireLength: f.count, bytes: $0) }
            }
            if direct { analyzer.finish() } else { analyzer.finishDecoding(); table.flush() }
            return sink.r
        }
        let a = run(direct: true), b = run(direct: false)
        XCTAssertEqual(a, b)
        XCTAssertTrue(a.contains { $0.proto == "icmp" && $0.tunnelParents.count == 15 })  // 3 sources × 5 ports
    }

    /// Full batches take the prefetching path, and ended flows leave the index in groups: a key
    /// that comes back while its old flow's index entry is still pending must open a new flow,
    /// and its packets must never count to the old one. Rounds of UDP and TCP flows expire (the
    /// UDP ones by inactivity, the TCP ones after their close) and their keys come back.
    func testBatchedRoundsOfExpiringAndReturningKeysMatchDirectAnalysis() throws {
        var frames: [([UInt8], Double)] = []
        let S = TCPFlag.syn, A = TCPFlag.ack, F = TCPFlag.fin
        for round in 0..<4 {
            let t0 = Double(round) * 100
            for k in 0..<37 {  // not a multiple of the removal group or of the prefetch distances
                let c = "10.1.\(k / 10).\(k % 10 + 1)", t = t0 + Double(k) * 0.01
                frames.append((PB.ether(PB.ipv4(src: c, dst: "10.2.0.1", proto: 17,
                                                PB.udp(sport: 5000 + k, dport: 53, payload: [1, 2, 3]))), t))
                frames.append((PB.ether(PB.ipv4(src: "10.2.0.1", dst: c, proto: 17,
                                                PB.udp(sport: 53, dport: 5000 + k, payload: [4]))), t + 0.001))
                let seq = UInt32(1000 * (round + 1)), sseq = UInt32(9000 + round)
                for (src, dst, sp, dp, sq, ak, fl) in [(c, "10.2.0.1", 40000 + k, 80, seq, UInt32(0), S),
                                                       ("10.2.0.1", c, 80, 40000 + k, sseq, seq + 1, S | A),
                                                       (c, "10.2.0.1", 40000 + k, 80, seq + 1, sseq + 1, A | F),
                                                       ("10.2.0.1", c, 80, 40000 + k, sseq + 1, seq + 2, A | F),
                                                       (c, "10.2.0.1", 40000 + k, 80, seq + 2, sseq + 2, A)] {
                    frames.append((PB.ether(PB.ipv4(src: src, dst: dst, proto: 6,
                                                    PB.tcp(sport: sp, dport: dp, seq: sq, ack: ak, flags: fl))), t + 0.002))
                }
            }
        }
        func run(batch: Int?) -> [FlowRecord] {
            final class Sink { var r: [FlowRecord] = [] }
            let sink = Sink()
            let table = FlowTable { sink.r.append($0) }
            let analyzer = batch.map { n in
                PacketAnalyzer(batch: EventBatch(capacity: n), names: table.names) { b in
                    table.apply(b)
                    b.clear()
                    return b
                }
            } ?? PacketAnalyzer(table: table)
            for (f, t) in frames {
                f.withUnsafeBytes { analyzer.process(linkType: .ethernet, timestamp: t, wireLength: f.count, bytes: $0) }
            }
            if batch == nil { analyzer.finish() } else { analyzer.finishDecoding(); table.flush() }
            return sink.r
        }
        let direct = run(batch: nil)
        XCTAssertEqual(direct.count, 4 * 37 * 2)
        XCTAssertTrue(direct.allSatisfy { $0.proto == "udp" ? $0.origPkts == 1 && $0.respPkts == 1 : $0.origPkts == 3 })
        XCTAssertEqual(run(batch: 1024), direct)
        XCTAssertEqual(run(batch: 64), direct)
    }
}

final class GapTests: XCTestCase {
    let c = "10.0.0.1", s = "10.0.0.2"
    func tcp(_ src: String, _ dst: String, _ sp: Int, _ dp: Int, seq: UInt32, ack: UInt32, _ flags: UInt8, payload: Int = 0) -> [UInt8] {
        PB.ether(PB.ipv4(src: src, dst: dst, proto: 6, PB.tcp(sport: sp, dport: dp, seq: seq, ack: ack, flags: flags, payload: payload)))
    }

    func run(reorder: Bool, drop: Bool) throws -> FlowRecord {
        let h = Harness()
        let S = TCPFlag.syn, A = TCPFlag.ack
        h.feed(tcp(c, s, 40000, 80, seq: 100, ack: 0, S), at: 1)
        h.feed(tcp(s, c, 80, 40000, seq: 500, ack: 101, S | A), at: 1.01)
        h.feed(tcp(c, s, 40000, 80, seq: 101, ack: 501, A), at: 1.02)
        let first = tcp(c, s, 40000, 80, seq: 101, ack: 501, A, payload: 10)
        let second = tcp(c, s, 40000, 80, seq: 111, ack: 501, A, payload: 10)
        if reorder { h.feed(second, at: 1.03); h.feed(first, at: 1.04) }
        else if drop { h.feed(second, at: 1.03) }  // the first segment was never seen
        else { h.feed(first, at: 1.03); h.feed(second, at: 1.04) }
        h.feed(tcp(s, c, 80, 40000, seq: 501, ack: 121, A), at: 1.05)
        return try XCTUnwrap(h.finish().first)
    }

    func testAckBeyondSeenDataIsAGap() throws {
        let r = try run(reorder: false, drop: true)
        XCTAssertEqual(r.missedBytes, 10)
        XCTAssertTrue(r.history.contains("G"), r.history)
        XCTAssertEqual(try run(reorder: false, drop: false).missedBytes, 0)
        // Out of order but complete: no gap.
        let reordered = try run(reorder: true, drop: false)
        XCTAssertEqual(reordered.missedBytes, 0)
        XCTAssertFalse(reordered.history.contains("G"))
    }
}

final class LookupHintTests: XCTestCase {
    func udp(_ src: String, _ dst: String, _ sport: UInt16, _ dport: UInt16) -> PacketSummary {
        var p = PacketSummary()
        p.src = IPAddress(src)!; p.dst = IPAddress(dst)!; p.proto = IPProtocol(rawValue: 17); p.hasHeader = true
        p.sport = sport; p.dport = dport; p.ipBytes = 40
        return p
    }

    /// The slot guessed while prefetching is only a hint: a hint that names another flow, an
    /// ended flow, a freed slot or no slot at all leaves the packet counted exactly as a lookup
    /// would count it.
    func testAWrongHintNeverMisdirectsAPacket() throws {
        final class Sink { var r: [FlowRecord] = [] }
        let sink = Sink()
        let table = FlowTable { sink.r.append($0) }
        let a = table.packet(t: 1, udp("10.0.0.1", "10.0.0.9", 1000, 53), packetIndex: 1, parent: nil)
        let b = table.packet(t: 1, udp("10.0.0.2", "10.0.0.9", 1000, 53), packetIndex: 2, parent: nil)
        XCTAssertNotEqual(a, b)
        // Another live flow's slot, a slot never used, and a negative one.
        XCTAssertEqual(table.packet(t: 2, udp("10.0.0.2", "10.0.0.9", 1000, 53), packetIndex: 3, parent: nil, hint: a), b)
        XCTAssertEqual(table.packet(t: 2, udp("10.0.0.9", "10.0.0.2", 53, 1000), packetIndex: 4, parent: nil, hint: 9999), b)
        XCTAssertEqual(table.packet(t: 2, udp("10.0.0.1", "10.0.0.9", 1000, 53), packetIndex: 5, parent: nil, hint: -7), a)
        // Flow a ends (DNS inactivity); its slot is then a hint for its own key: a new flow.
        table.advance(to: 100)
        XCTAssertEqual(sink.r.count, 2)
        table.packet(t: 100, udp("10.0.0.1", "10.0.0.9", 1000, 53), packetIndex: 6, parent: nil, hint: a)
        table.flush()
        XCTAssertEqual(sink.r.count, 3)
        let last = try XCTUnwrap(sink.r.last)
        XCTAssertEqual(last.origPkts, 1)
        XCTAssertEqual(last.ts, 100)
        let counts = sink.r.prefix(2).map { ($0.origH.description, $0.origPkts + $0.respPkts) }.sorted { $0.0 < $1.0 }
        XCTAssertEqual(counts.map(\.1), [2, 3])  // 10.0.0.1: two packets; 10.0.0.2: three
    }
}

final class FlushOrderTests: XCTestCase {
    /// The radix sort is a stable sort by key, whatever the key widths.
    func testRadixSortIsAStableSortByKey() {
        var rng: UInt64 = 42
        func next() -> UInt64 {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            return rng >> 11
        }
        for (n, mask) in [(0, UInt64(0)), (1, 7), (1000, 0xFF), (5000, 0xF_FFFF), (3000, UInt64.max >> 11)] as [(Int, UInt64)] {
            let items = (0..<n).map { (key: next() & mask, original: $0) }
            let radix = RadixSort.byKey(items) { $0.key }
            let reference = items.enumerated().sorted { a, b in
                a.element.key != b.element.key ? a.element.key < b.element.key : a.offset < b.offset
            }.map(\.element)
            XCTAssertEqual(radix.map(\.original), reference.map(\.original), "n \(n)")
        }
    }

    /// Flushed flows come out in (first packet time, serial) order: by serial when times follow
    /// packet order, and by time first when a capture's timestamps go back.
    func testEmissionOrderIsStartThenSerial() {
        let monotonic = [(1.0, 16), (1.0, 8), (2.0, 24), (3.5, 40), (3.5, 32)].enumerated().map {
            FlowTable.FlushEntry(start: $0.element.0, serial: UInt64($0.element.1), slot: Int32($0.offset))
        }
        XCTAssertEqual(FlowTable.emissionOrder(monotonic).map(\.serial), [8, 16, 24, 32, 40])
        let backwards = [(5.0, 8), (1.0, 16), (1.0, 24), (0.5, 40), (7.0, 32)].enumerated().map {
            FlowTable.FlushEntry(start: $0.element.0, serial: UInt64($0.element.1), slot: Int32($0.offset))
        }
        XCTAssertEqual(FlowTable.emissionOrder(backwards).map(\.serial), [40, 16, 24, 8, 32])
    }
}

final class TimerHeapTests: XCTestCase {
    /// Entries come out in (time, serial) order, with many equal times, pops between pushes,
    /// and growth well past the first buffer.
    func testPopsInTimeThenSerialOrder() {
        var heap = TimerHeap()
        defer { heap.deallocate() }
        var rng: UInt64 = 7
        func next() -> UInt64 {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            return rng >> 33
        }
        var reference: [(Double, UInt64)] = []
        var popped: [(Double, UInt64)] = []
        var serial: UInt64 = 0
        func popOne() {
            guard let e = heap.pop() else { return XCTFail("empty heap") }
            popped.append((e.time, e.serial))
            let i = reference.indices.min { a, b in
                reference[a].0 != reference[b].0 ? reference[a].0 < reference[b].0 : reference[a].1 < reference[b].1
            }!
            let expected = reference.remove(at: i)
            XCTAssertEqual(e.time, expected.0)
            XCTAssertEqual(e.serial, expected.1)
        }
        for round in 0..<3000 {
            serial += 1 + next() % 3
            let time = Double(next() % 50)  // many ties
            heap.push(.init(time: time, serial: serial, slot: Int32(round), token: 0))
            reference.append((time, serial))
            if round % 3 == 2 { popOne() }
        }
        XCTAssertEqual(heap.count, 2000)
        XCTAssertEqual(heap.topTime, reference.map(\.0).min())
        while heap.count > 0 { popOne() }
        XCTAssertNil(heap.pop())
        XCTAssertEqual(heap.topTime, .infinity)
        XCTAssertEqual(popped.count, 3000)
    }
}
