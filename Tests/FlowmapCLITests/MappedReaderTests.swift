import FlowCapture
import Foundation
import XCTest

/// Classic pcap records are read from a memory mapping, and libpcap reads on from the first
/// record the mapping does not take as it is. Either way the result must be libpcap's.
final class MappedReaderTests: XCTestCase {
    /// A classic pcap file: either byte order, µs or ns, with records given as (seconds,
    /// fraction, captured bytes, original length); `tail` is appended raw (a cut-short record).
    static func pcap(bigEndian: Bool, nanos: Bool, snaplen: Int, records: [(Int, Int, [UInt8], Int)],
                     tail: [UInt8] = []) -> [UInt8] {
        func u32(_ v: Int) -> [UInt8] {
            let b = (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) }
            return bigEndian ? b.reversed() : b
        }
        func u16(_ v: Int) -> [UInt8] {
            let b = [UInt8(v & 0xFF), UInt8(v >> 8)]
            return bigEndian ? b.reversed() : b
        }
        var out = u32(nanos ? 0xA1B2_3C4D : 0xA1B2_C3D4) + u16(2) + u16(4) + u32(0) + u32(0) + u32(snaplen) + u32(1)
        for (sec, frac, data, len) in records { out += u32(sec) + u32(frac) + u32(data.count) + u32(len) + data }
        return out + tail
    }

    /// Ethernet + IPv4 + UDP, `pad` payload bytes.
    static func udpFrame(_ src: UInt8, _ sport: Int, pad: Int) -> [UInt8] {
        let udpLen = 8 + pad
        let ip: [UInt8] = [0x45, 0, UInt8((20 + udpLen) >> 8), UInt8((20 + udpLen) & 0xFF), 0, 1, 0, 0, 64, 17, 0, 0,
                           10, 0, 0, src, 10, 0, 0, 200]
        let udp: [UInt8] = [UInt8(sport >> 8), UInt8(sport & 0xFF), 0x1F, 0x90, UInt8(udpLen >> 8), UInt8(udpLen & 0xFF), 0, 0]
        return [UInt8](repeating: 0xAA, count: 12) + [0x08, 0x00] + ip + udp + [UInt8](repeating: 7, count: pad)
    }

    func both(_ bytes: [UInt8], _ name: String) throws -> (mapped: RunResult, libpcap: RunResult) {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("flowmap-\(name)-\(getpid()).pcap")
        try Data(bytes).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let args = ["flows", "--format", "json", "--stats", "-q", url.path]
        return (try runFlowmap(args), try runFlowmap(args, environment: ["FLOWMAP_READER": "libpcap"]))
    }

    func testEveryVariantReadsAsLibpcapReadsIt() throws {
        for bigEndian in [false, true] {
            for nanos in [false, true] {
                // Seconds past 2^31 and fractions past one second (and past 2^31).
                let records = [(1_700_000_000, nanos ? 123_456_789 : 123_456, Self.udpFrame(1, 5000, pad: 10), 52),
                               (1_700_000_001, 999_999, Self.udpFrame(2, 5001, pad: 30), 72),
                               (0xF000_0000, 1_500_000, Self.udpFrame(3, 5002, pad: 0), 42),
                               (1_700_000_003, 0x8000_0010, Self.udpFrame(5, 5003, pad: 0), 42),
                               (1_700_000_002, 5, Array(Self.udpFrame(1, 5000, pad: 40).prefix(50)), 82)]  // snaplen-cut
                let r = try both(Self.pcap(bigEndian: bigEndian, nanos: nanos, snaplen: 65535, records: records),
                                 "variant-\(bigEndian)-\(nanos)")
                XCTAssertEqual(r.mapped.status, 0, r.mapped.stderr)
                XCTAssertEqual(r.mapped.stdout, r.libpcap.stdout, "big-endian \(bigEndian), ns \(nanos)")
                XCTAssertEqual(r.mapped.stderr, r.libpcap.stderr)
                XCTAssertTrue(r.mapped.stderr.contains("packets_read\t5\n"), r.mapped.stderr)
                XCTAssertTrue(r.mapped.stderr.contains("snaplen_truncated\t1\n"), r.mapped.stderr)
            }
        }
    }

    /// A record longer than the snap length mid-file (libpcap cuts it to the snap length) and a
    /// last record cut short (libpcap's "truncated dump file" warning; the flows before it kept).
    func testLibpcapTakesOverAtTheFirstOddRecord() throws {
        let long = Self.udpFrame(4, 6000, pad: 200)
        let records = [(1_700_000_000, 0, Self.udpFrame(1, 5000, pad: 10), 52),
                       (1_700_000_001, 0, long, long.count),  // 242 bytes with a snap length of 128
                       (1_700_000_002, 0, Self.udpFrame(2, 5001, pad: 10), 52)]
        var cut = [UInt8]()
        for v in [1_700_000_003, 0, 100, 100] { cut += (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
        cut += [UInt8](repeating: 0, count: 20)  // 20 of the 100 bytes promised
        let r = try both(Self.pcap(bigEndian: false, nanos: false, snaplen: 128, records: records, tail: cut), "odd")
        XCTAssertEqual(r.mapped.status, r.libpcap.status)
        XCTAssertEqual(r.mapped.stdout, r.libpcap.stdout)
        XCTAssertEqual(r.mapped.stderr, r.libpcap.stderr)
        XCTAssertEqual(r.mapped.stdout.split(separator: "\n").count, 3, r.mapped.stdout)
        XCTAssertTrue(r.mapped.stderr.contains("truncated dump file"), r.mapped.stderr)
        XCTAssertTrue(r.mapped.stderr.contains("packets_read\t3\n"), r.mapped.stderr)
    }

    func testTheShippedTruncatedCaptureReadsAsLibpcapReadsIt() throws {
        let path = Repo.fixtures.appendingPathComponent("captures/ftp-ipv4-truncated.pcap").path
        let args = ["flows", "--format", "zeek", "--stats", "-q", path]
        let m = try runFlowmap(args), l = try runFlowmap(args, environment: ["FLOWMAP_READER": "libpcap"])
        XCTAssertEqual(m.status, 0, m.stderr)
        XCTAssertEqual(m.stdout, l.stdout)
        XCTAssertEqual(m.stderr, l.stderr)
        XCTAssertTrue(m.stderr.contains("warning:"), m.stderr)
    }

    /// The comparisons above would pass if the mapping were never used: check that it is, and
    /// that libpcap reads on where it stops.
    func testARegularPcapIsReadInPlaceAndLibpcapReadsOnFromTheFirstOddRecord() throws {
        let long = Self.udpFrame(4, 6000, pad: 200)
        let records = [(1_700_000_000, 0, Self.udpFrame(1, 5000, pad: 10), 52),
                       (1_700_000_001, 0, long, long.count),  // longer than the snap length: libpcap's
                       (1_700_000_002, 0, Self.udpFrame(2, 5001, pad: 10), 52)]
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("flowmap-inplace-\(getpid()).pcap")
        try Data(Self.pcap(bigEndian: false, nanos: false, snaplen: 128, records: records)).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }

        let mapped = try PcapReader(path: url.path)
        XCTAssertTrue(mapped.readsInPlace)
        var lengths: [Int] = []
        XCTAssertEqual(mapped.forEachPacket { _, _, _, bytes in lengths.append(bytes.count) }, .complete)
        XCTAssertEqual(lengths, [52, 128, 52])  // the long record cut to the snap length by libpcap
        XCTAssertEqual(mapped.position, Int64(try FileManager.default.attributesOfItem(atPath: url.path)[.size] as! Int))

        setenv("FLOWMAP_READER", "libpcap", 1)
        defer { unsetenv("FLOWMAP_READER") }
        XCTAssertFalse(try PcapReader(path: url.path).readsInPlace)
    }
}
