import FlowCore
import Foundation
import XCTest

/// The connection ids (originator, responder, ports, protocol) and Community IDs Zeek printed
/// for the traces in Fixtures/zeek-parity/connids: flowmap must find the same connections, in
/// the same direction, with the same Community ID.
final class ConnIDTests: XCTestCase {
    func testConnectionIDsMatchZeek() throws {
        let dir = Repo.fixtures.appendingPathComponent("zeek-parity/connids")
        let outs = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".connids.out") }.sorted()
        XCTAssertGreaterThanOrEqual(outs.count, 7)
        for out in outs {
            let name = String(out.dropLast(".connids.out".count))
            var expected: [String] = []
            for line in try String(contentsOf: dir.appendingPathComponent(out), encoding: .utf8).split(separator: "\n")
            where line.hasPrefix("[orig_h=") {
                // [orig_h=A, orig_p=N/proto, resp_h=B, resp_p=M/proto, proto=P, ctx=[]], hash
                var d: [String: String] = [:]
                for part in line.dropFirst().split(separator: ",") {
                    let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
                    if kv.count == 2 { d[String(kv[0])] = String(kv[1]) }
                }
                let op = d["orig_p"]?.split(separator: "/").first.map(String.init) ?? "?"
                let rp = d["resp_p"]?.split(separator: "/").first.map(String.init) ?? "?"
                let hash = line.split(separator: " ").last.map(String.init) ?? "?"
                expected.append("\(d["orig_h"] ?? "?"):\(op) > \(d["resp_h"] ?? "?"):\(rp) proto \(d["proto"] ?? "?") \(hash)")
            }
            let (records, _) = try analyze([dir.appendingPathComponent("\(name).pcap").path])
            let ours = records.map {
                "\($0.origH):\($0.origP) > \($0.respH):\($0.respP) proto \($0.ipProto.rawValue) \(CommunityID.v1($0))"
            }
            XCTAssertEqual(Set(ours), Set(expected), "\(name)")
        }
    }
}

final class CommunityIDOutputTests: XCTestCase {
    /// `--community-id` adds the field to json, csv and zeek output (and nothing by default).
    func testCommunityIDField() throws {
        let tcp = Repo.fixtures.appendingPathComponent("zeek-parity/connids/tcp.pcap").path
        let json = try runFlowmap(["flows", "--format", "json", "--community-id", "-q", tcp])
        XCTAssertEqual(json.status, 0, json.stderr)
        XCTAssertTrue(json.stdout.contains("\"community_id\":\"1:LQU9qZlK+B5F3KDmev6m5PMibrg=\""), json.stdout)
        let zeek = try runFlowmap(["flows", "--format", "zeek", "--community-id", "-q", tcp])
        let fields = zeek.stdout.split(separator: "\n").first { $0.hasPrefix("#fields") } ?? ""
        XCTAssertTrue(fields.hasSuffix("\tcommunity_id"))
        XCTAssertTrue(zeek.stdout.contains("\t1:LQU9qZlK+B5F3KDmev6m5PMibrg=\n"))
        let csv = try runFlowmap(["flows", "--format", "csv", "--community-id", "-q", tcp])
        XCTAssertTrue(csv.stdout.hasPrefix(CSVWriter.columns.joined(separator: ",") + ",community_id\n"))
        let plain = try runFlowmap(["flows", "--format", "json", "-q", tcp])
        XCTAssertFalse(plain.stdout.contains("community_id"))
    }
}
