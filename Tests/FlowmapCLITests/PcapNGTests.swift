import FlowCapture
import FlowCore
import Foundation
import XCTest

/// flowmap's own pcapng reader: several interfaces with different link types and snap lengths,
/// several sections with different byte orders, timestamp resolutions and offsets.
final class PcapNGTests: XCTestCase {
    struct Writer {
        var bytes: [UInt8] = []
        var big = false
        mutating func u16(_ v: UInt16) { bytes += big ? [UInt8(v >> 8), UInt8(v & 0xFF)] : [UInt8(v & 0xFF), UInt8(v >> 8)] }
        mutating func u32(_ v: UInt32) {
            let b = [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
            bytes += big ? b : b.reversed()
        }
        mutating func block(_ type: UInt32, _ body: [UInt8]) {
            let padded = body + [UInt8](repeating: 0, count: (4 - body.count % 4) % 4)
            u32(type); u32(UInt32(12 + padded.count)); bytes += padded; u32(UInt32(12 + padded.count))
        }
        func enc16(_ v: UInt16) -> [UInt8] { big ? [UInt8(v >> 8), UInt8(v & 0xFF)] : [UInt8(v & 0xFF), UInt8(v >> 8)] }
        func enc32(_ v: UInt32) -> [UInt8] {
            let b = [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
            return big ? b : b.reversed()
        }
        mutating func section() {
            block(0x0A0D_0D0A, enc32(0x1A2B_3C4D) + enc16(1) + enc16(0) + [UInt8](repeating: 0xFF, count: 8))
        }
        mutating func interface(_ lt: UInt16, snaplen: UInt32, tsresol: UInt8? = nil, offset: Int64? = nil) {
            var body = enc16(lt) + enc16(0) + enc32(snaplen)
            if let r = tsresol { body += enc16(9) + enc16(1) + [r, 0, 0, 0] }
            if let o = offset {
                let u = UInt64(bitPattern: o)
                body += enc16(14) + enc16(8)
                body += big ? enc32(UInt32(u >> 32)) + enc32(UInt32(u & 0xFFFF_FFFF)) : enc32(UInt32(u & 0xFFFF_FFFF)) + enc32(UInt32(u >> 32))
            }
            body += enc16(0) + enc16(0)
            block(1, body)
        }
        mutating func packet(_ iface: UInt32, ts: UInt64, _ data: [UInt8]) {
            block(6, enc32(iface) + enc32(UInt32(ts >> 32)) + enc32(UInt32(ts & 0xFFFF_FFFF)) + enc32(UInt32(data.count))
                  + enc32(UInt32(data.count)) + data)
        }
    }

    func udp(_ src: String, _ sport: Int) -> [UInt8] {
        // IPv4 + UDP, built by hand (20 + 8 + 4 bytes).
        let a = src.split(separator: ".").map { UInt8($0)! }
        return [0x45, 0, 0, 32, 0, 1, 0, 0, 64, 17, 0, 0] + a + [10, 0, 0, 99]
            + [UInt8(sport >> 8), UInt8(sport & 0xFF), 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]
    }

    func testMixedLinkTypesAndSections() throws {
        var w = Writer()
        w.section()
        w.interface(1, snaplen: 65535)  // Ethernet, microseconds
        w.interface(101, snaplen: 128, tsresol: 9)  // raw IP, nanoseconds
        let eth: [UInt8] = [UInt8](repeating: 1, count: 12) + [0x08, 0x00] + udp("10.0.0.1", 1000)
        w.packet(0, ts: 1_000_000_000_000_000, eth)  // 1e9 s in µs
        w.packet(1, ts: 1_000_000_001_000_000_000, udp("10.0.0.2", 2000))  // 1e9 + 1 s in ns
        // A second section, big-endian, with a loopback interface and a time offset.
        w.big = true
        w.section()
        w.interface(0, snaplen: 0, offset: 1_000_000_000)
        w.packet(0, ts: 2_000_000, [2, 0, 0, 0] + udp("10.0.0.3", 3000))  // NULL family is host order
        // A block type flowmap ignores (name resolution) is skipped.
        w.block(4, [0, 0, 0, 0])
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("flowmap-\(UUID().uuidString).pcapng")
        try Data(w.bytes).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }

        let reader = try PcapReader(path: url.path)
        XCTAssertTrue(reader.isPcapNG)
        var seen: [(LinkType, Double)] = []
        let outcome = reader.forEachPacket { lt, ts, _, _ in seen.append((lt, ts)) }
        XCTAssertEqual(outcome, .complete)
        XCTAssertEqual(seen.map(\.0), [.ethernet, .raw, .null])
        XCTAssertEqual(seen[0].1, 1e9, accuracy: 1e-6)
        XCTAssertEqual(seen[1].1, 1e9 + 1, accuracy: 1e-6)
        XCTAssertEqual(seen[2].1, 1e9 + 2, accuracy: 1e-6)

        let (records, stats) = try analyze([url.path])
        XCTAssertEqual(stats.packetsDecoded, 3)
        XCTAssertEqual(Set(records.map { $0.origH.description }), ["10.0.0.1", "10.0.0.2", "10.0.0.3"])

        // Cut the file inside the last packet block: the packets before the cut are kept.
        try Data(w.bytes.prefix(w.bytes.count - 30)).write(to: url)
        let cut = try PcapReader(path: url.path)
        var n = 0
        if case .cutShort = cut.forEachPacket({ _, _, _, _ in n += 1 }) {} else { XCTFail("expected a cut-short read") }
        XCTAssertEqual(n, 2)
    }

    func testMalformedHeadersAreOneLineErrors() throws {
        var w = Writer()
        w.section()
        w.interface(1, snaplen: 0, tsresol: 0x80 | 72)  // 2^-72: too fine
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("flowmap-\(UUID().uuidString).pcapng")
        try Data(w.bytes).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        XCTAssertThrowsError(try PcapReader(path: url.path)) { e in
            XCTAssertTrue("\(e)".contains("if_tsresol resolution is too high"), "\(e)")
        }
        let r = try runFlowmap(["flows", url.path])
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1)
    }
}
