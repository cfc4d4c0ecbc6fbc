import FlowCore
import Foundation
import XCTest

/// The connection ids (originator, responder, ports, protocol) Zeek printed for the traces in
/// Fixtures/zeek-parity/connids: flowmap must find the same connections, in the same direction.
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
                expected.append("\(d["orig_h"] ?? "?"):\(op) > \(d["resp_h"] ?? "?"):\(rp) proto \(d["proto"] ?? "?")")
            }
            let (records, _) = try analyze([dir.appendingPathComponent("\(name).pcap").path])
            let ours = records.map { "\($0.origH):\($0.origP) > \($0.respH):\($0.respP) proto \($0.ipProto.rawValue)" }
            XCTAssertEqual(Set(ours), Set(expected), "\(name)")
        }
    }
}
