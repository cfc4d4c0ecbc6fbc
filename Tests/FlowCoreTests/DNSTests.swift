import XCTest
@testable import FlowCore

final class DNSTests: XCTestCase {
    /// A response for www.example.com: CNAME → cdn.example.net, A 93.184.216.34 (TTL 300).
    func response(id: UInt16 = 1) -> [UInt8] {
        var m: [UInt8] = PB.be16(Int(id)) + [0x81, 0x80] + PB.be16(1) + PB.be16(2) + PB.be16(0) + PB.be16(0)
        let qname: [UInt8] = [3] + Array("www".utf8) + [7] + Array("example".utf8) + [3] + Array("com".utf8) + [0]
        m += qname + PB.be16(1) + PB.be16(1)
        // answer 1: pointer to qname (offset 12), CNAME
        let target: [UInt8] = [3] + Array("cdn".utf8) + [7] + Array("example".utf8) + [3] + Array("net".utf8) + [0]
        m += [0xC0, 12] + PB.be16(5) + PB.be16(1) + PB.be32(60) + PB.be16(target.count) + target
        let targetOffset = 12 + qname.count + 4 + 12
        // answer 2: pointer to the CNAME target, A record
        m += [0xC0, UInt8(targetOffset)] + PB.be16(1) + PB.be16(1) + PB.be32(300) + PB.be16(4) + [93, 184, 216, 34]
        return m
    }

    func testParsesCNAMEChainToAskedName() throws {
        let msg = response()
        let answers = try XCTUnwrap(msg.withUnsafeBytes { DNSParser.answers($0, from: 0, to: $0.count) })
        XCTAssertEqual(answers.count, 1)
        XCTAssertEqual(answers[0].name, "www.example.com")
        XCTAssertEqual(answers[0].chain, ["www.example.com", "cdn.example.net"])
        XCTAssertEqual(answers[0].address, IPAddress("93.184.216.34"))
        XCTAssertEqual(answers[0].ttl, 300)
    }

    /// The check used when no names are learned agrees with the full parse on every prefix and
    /// on thousands of mutated responses (with and without CNAMEs, A and AAAA, pointers).
    func testWellFormedCheckAgreesWithTheParser() {
        var plain: [UInt8] = PB.be16(7) + [0x81, 0x80] + PB.be16(1) + PB.be16(2) + PB.be16(0) + PB.be16(0)
        let q: [UInt8] = [3] + Array("Api".utf8) + [2] + Array("EX".utf8) + [0]
        plain += q + PB.be16(28) + PB.be16(1)
        plain += [0xC0, 12] + PB.be16(28) + PB.be16(1) + PB.be32(30) + PB.be16(16) + [UInt8](repeating: 0x20, count: 16)
        plain += [1, 0x78, 0xC0, 12] + PB.be16(1) + PB.be16(1) + PB.be32(30) + PB.be16(4) + [10, 0, 0, 1]
        let samples = [response(), response(id: 9), plain]
        var rng: UInt64 = 0x1234_5678
        func next() -> Int {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            return Int(truncatingIfNeeded: rng >> 33)
        }
        var checked = 0, malformed = 0
        for msg in samples {
            var variants = (0...msg.count).map { Array(msg.prefix($0)) }
            for _ in 0..<3000 {
                var m = msg
                for _ in 0..<(1 + next() % 3) {
                    let i = 12 + next() % (m.count - 12)
                    m[i] = next() % 4 == 0 ? 0xC0 : UInt8(truncatingIfNeeded: next())
                }
                variants.append(m)
            }
            for v in variants {
                v.withUnsafeBytes { b in
                    let parsed = DNSParser.answers(b, from: 0, to: b.count) != nil
                    XCTAssertEqual(DNSParser.isWellFormed(b, from: 0, to: b.count), parsed, "\(v)")
                    checked += 1
                    if !parsed { malformed += 1 }
                }
            }
        }
        XCTAssertGreaterThan(malformed, 1000)  // the mutations do reach the failure paths
        XCTAssertGreaterThan(checked - malformed, 1000)
    }

    func testEveryPrefixOfAResponseIsSafe() {
        let msg = response()
        for n in 0..<msg.count {
            let p = Array(msg.prefix(n))
            _ = p.withUnsafeBytes { DNSParser.answers($0, from: 0, to: $0.count) }
        }
        // A compression loop is rejected, not followed forever.
        var loop = response()
        loop[12] = 0xC0; loop[13] = 12
        XCTAssertNil(loop.withUnsafeBytes { DNSParser.answers($0, from: 0, to: $0.count) })
    }

    func testResponderGetsTheNameItsClientAsked() throws {
        let h = Harness()
        let client = "10.1.1.5", resolver = "10.1.1.1", other = "10.1.1.9"
        h.feed(PB.ether(PB.ipv4(src: resolver, dst: client, proto: 17, PB.udp(sport: 53, dport: 5555, payload: response()))), at: 1)
        let syn = PB.tcp(sport: 40000, dport: 443, seq: 1, ack: 0, flags: TCPFlag.syn)
        h.feed(PB.ether(PB.ipv4(src: client, dst: "93.184.216.34", proto: 6, syn)), at: 2)
        h.feed(PB.ether(PB.ipv4(src: other, dst: "93.184.216.34", proto: 6, syn)), at: 3)
        let recs = h.finish()
        let mine = try XCTUnwrap(recs.first { $0.origH == IPAddress(client) && $0.respP == 443 })
        XCTAssertEqual(mine.respName, "www.example.com")
        // Another client that never asked still gets the name seen for the address.
        let theirs = try XCTUnwrap(recs.first { $0.origH == IPAddress(other) })
        XCTAssertEqual(theirs.respName, "www.example.com")
        XCTAssertEqual(h.table.names.observations.count, 1)
        // The same answer again is counted, not stored twice.
        h.table.names.learn(DNSObservation(client: IPAddress(client), name: "www.example.com", chain: [],
                                           address: IPAddress("93.184.216.34")!, ttl: 60, ts: 9))
        XCTAssertEqual(h.table.names.observations.count, 1)
        XCTAssertEqual(h.table.names.observations[0].answers, 2)
        XCTAssertEqual(h.table.names.observations[0].lastSeen, 9)
    }

    /// Decoding interns names ahead of the table (with two threads, by up to a few batches):
    /// a flow lists only the names its table had learned when it ended, sorted, and names
    /// learned later do not leak into it.
    func testAFlowListsTheNamesItsTableKnewSortedAndNoLaterOnes() throws {
        let names = DNSNameTable()
        names.keepObservations = false
        final class Sink { var r: [FlowRecord] = [] }
        let sink = Sink()
        let table = FlowTable(names: names) { sink.r.append($0) }
        let server = IPAddress("198.51.100.7")!, client = IPAddress("10.0.0.5")!
        func answer(_ name: String, at t: Double) -> DNSObservation {
            var o = DNSObservation(client: IPAddress("10.0.0.99")!, name: name, chain: [], address: server, ttl: 60, ts: t)
            names.learn(&o)  // the decoding side
            return o
        }
        let zulu = answer("zulu.example", at: 1), alpha = answer("alpha.example", at: 2)
        let late = answer("late.example", at: 3)
        XCTAssertEqual([zulu.nameID, alpha.nameID, late.nameID], [0, 1, 2])
        // The table has applied the first two answers only.
        table.dnsBindings.learn(zulu)
        table.dnsBindings.learn(alpha)
        table.dnsBindings.learn(zulu)  // again: still two names
        var p = PacketSummary()
        p.src = client; p.dst = server; p.proto = IPProtocol(rawValue: 17); p.hasHeader = true
        p.sport = 40000; p.dport = 9999; p.ipBytes = 40
        table.packet(t: 4, p, packetIndex: 1, parent: nil)
        table.flush()
        let r = try XCTUnwrap(sink.r.first)
        XCTAssertEqual(r.respNames, ["alpha.example", "zulu.example"])
        XCTAssertEqual(r.respName, "alpha.example")  // the client asked for none: the first in order
        // Once the table learns the third, the next flow lists all three.
        table.dnsBindings.learn(late)
        table.packet(t: 5, p, packetIndex: 2, parent: nil)
        table.flush()
        XCTAssertEqual(sink.r.last?.respNames, ["alpha.example", "late.example", "zulu.example"])
    }
}
