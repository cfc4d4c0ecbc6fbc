import FlowCapture
import FlowCore
import Foundation
import XCTest

/// VLAN tags against Zeek's own logs: vlan / inner_vlan logging (q-in-q, Zeek's vlan-logging
/// policy) and VLAN-aware flow keys (vlan-collisions, Zeek's vlan_fivetuple conn key).
final class VLANTests: XCTestCase {
    func rows(_ name: String) throws -> [[String: String]] {
        ZeekLog.rows(try String(contentsOf: Repo.fixtures.appendingPathComponent("zeek-parity/\(name)"), encoding: .utf8))
    }

    func analyze(_ trace: String, vlanAware: Bool) throws -> [FlowRecord] {
        final class Sink { var r: [FlowRecord] = [] }
        let sink = Sink()
        let table = FlowTable(vlanAware: vlanAware) { sink.r.append($0) }
        let analyzer = PacketAnalyzer(table: table)
        let reader = try PcapReader(path: Repo.fixtures.appendingPathComponent("zeek-parity/\(trace)").path)
        _ = reader.forEachPacket { lt, ts, wire, bytes in
            analyzer.process(linkType: lt, timestamp: ts, wireLength: wire, bytes: bytes)
        }
        analyzer.finish()
        return sink.r
    }

    func describe(_ r: FlowRecord) -> String {
        "\(r.origH):\(r.origP) > \(r.respH):\(r.respP) \(r.origPkts)/\(r.respPkts) vlan \(r.vlan.map(String.init) ?? "-")/\(r.innerVlan.map(String.init) ?? "-")"
    }

    func describe(_ d: [String: String], vlanKey: String, innerKey: String) -> String {
        "\(d["id.orig_h"] ?? "?"):\(d["id.orig_p"] ?? "?") > \(d["id.resp_h"] ?? "?"):\(d["id.resp_p"] ?? "?") "
            + "\(d["orig_pkts"] ?? "?")/\(d["resp_pkts"] ?? "?") vlan \(d[vlanKey] ?? "?")/\(d[innerKey] ?? "?")"
    }

    func testVLANLoggingMatchesZeek() throws {
        let expected = try rows("q-in-q.vlan-logging.conn.log").map { describe($0, vlanKey: "vlan", innerKey: "inner_vlan") }
        let ours = try analyze("q-in-q.pcap", vlanAware: false).map(describe)
        XCTAssertEqual(ours.sorted(), expected.sorted())
    }

    func testVLANAwareKeysMatchZeek() throws {
        let expected = try rows("vlan-collisions.vlan-aware.conn.log.cut")
            .map { describe($0, vlanKey: "id.ctx.vlan", innerKey: "id.ctx.inner_vlan") }
        let ours = try analyze("vlan-collisions.pcap", vlanAware: true).map(describe)
        XCTAssertEqual(expected.count, 3)
        XCTAssertEqual(ours.sorted(), expected.sorted())
        // Without VLAN-aware keys the three are one flow, as in Zeek's default.
        XCTAssertEqual(try analyze("vlan-collisions.pcap", vlanAware: false).count, 1)
    }

    func testVLANColumnsInOutput() throws {
        let trace = Repo.fixtures.appendingPathComponent("zeek-parity/vlan-collisions.pcap").path
        let zeek = try runFlowmap(["flows", "--format", "zeek", "--vlan-aware", "-q", trace])
        XCTAssertEqual(zeek.status, 0, zeek.stderr)
        XCTAssertTrue(zeek.stdout.contains("\tip_proto\tvlan\tinner_vlan\n"))
        XCTAssertEqual(zeek.stdout.split(separator: "\n").filter { !$0.hasPrefix("#") }.count, 3)
        let json = try runFlowmap(["flows", "--format", "json", "--vlan-aware", "-q", trace])
        XCTAssertTrue(json.stdout.contains("\"vlan\":10,\"inner_vlan\":20"), json.stdout)
    }
}
