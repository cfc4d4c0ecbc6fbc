import FlowCapture
import Foundation
import XCTest

/// Classic pcap records are read in place from flowmap's own read buffer (`PcapRecords`), and
/// libpcap reads on from the first record that reader does not take as it is. Either way the
/// result must be libpcap's.
final class DirectReaderTests: XCTestCase {
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

    func both(_ bytes: [UInt8], _ name: String) throws -> (direct: RunResult, libpcap: RunResult) {
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
                XCTAssertEqual(r.direct.status, 0, r.direct.stderr)
                XCTAssertEqual(r.direct.stdout, r.libpcap.stdout, "big-endian \(bigEndian), ns \(nanos)")
                XCTAssertEqual(r.direct.stderr, r.libpcap.stderr)
                XCTAssertTrue(r.direct.stderr.contains("packets_read\t5\n"), r.direct.stderr)
                XCTAssertTrue(r.direct.stderr.contains("snaplen_truncated\t1\n"), r.direct.stderr)
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
        XCTAssertEqual(r.direct.status, r.libpcap.status)
        XCTAssertEqual(r.direct.stdout, r.libpcap.stdout)
        XCTAssertEqual(r.direct.stderr, r.libpcap.stderr)
        XCTAssertEqual(r.direct.stdout.split(separator: "\n").count, 3, r.direct.stdout)
        XCTAssertTrue(r.direct.stderr.contains("truncated dump file"), r.direct.stderr)
        XCTAssertTrue(r.direct.stderr.contains("packets_read\t3\n"), r.direct.stderr)
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

    /// Records that straddle the read buffer's end (every offset within a record header and
    /// its data, over a file many buffers long), and records larger than the buffer itself (the
    /// buffer grows for them), read exactly as libpcap reads them.
    func testRecordsAcrossAndBeyondTheReadBufferReadAsLibpcapReadsThem() throws {
        var records: [(Int, Int, [UInt8], Int)] = []
        var sport = 1000
        // 1,100,000 bytes of records whose sizes step through every remainder mod 64, so that
        // the 256 KiB boundaries land in headers and in data alike.
        var size = 0
        while size < 1_100_000 {
            let frame = Self.udpFrame(UInt8(sport % 200 + 1), sport, pad: (sport * 7) % 1400)
            records.append((1_700_000_000 + sport / 100, sport % 1_000_000, frame, frame.count))
            size += 16 + frame.count
            sport += 1
        }
        // Two records longer than the whole 256 KiB buffer with their headers (a datagram
        // followed by trailing bytes, up to libpcap's largest record), then an ordinary one.
        for (i, total) in [262_144, 262_140].enumerated() {
            let datagram = Self.udpFrame(9, 7000 + i, pad: 100)
            let jumbo = datagram + [UInt8](repeating: 0x5A, count: total - datagram.count)
            records.append((1_700_001_000 + i, 0, jumbo, jumbo.count))
        }
        records.append((1_700_001_005, 0, Self.udpFrame(1, 5000, pad: 3), 45))
        let r = try both(Self.pcap(bigEndian: false, nanos: false, snaplen: 262_144, records: records), "buffer")
        XCTAssertEqual(r.direct.status, 0, r.direct.stderr)
        XCTAssertEqual(r.direct.stdout, r.libpcap.stdout)
        XCTAssertEqual(r.direct.stderr, r.libpcap.stderr)
        XCTAssertTrue(r.direct.stderr.contains("packets_read\t\(records.count)\n"), r.direct.stderr)

        // A record over libpcap's largest (though within the file's snap length) is libpcap's
        // to refuse: the capture is cut short there, read either way.
        let huge = Self.udpFrame(9, 7100, pad: 100) + [UInt8](repeating: 0, count: 300_000 - 142)
        let cut = try both(Self.pcap(bigEndian: false, nanos: false, snaplen: 300_000,
                                     records: [records[0], (1_700_002_000, 0, huge, huge.count), records[1]]), "huge")
        XCTAssertEqual(cut.direct.status, 0, cut.direct.stderr)
        XCTAssertEqual(cut.direct.stdout, cut.libpcap.stdout)
        XCTAssertEqual(cut.direct.stderr, cut.libpcap.stderr)
        XCTAssertTrue(cut.direct.stderr.contains("packets_read\t1\n"), cut.direct.stderr)
    }

    /// The comparisons above would pass if the direct reader were never used: check that it is,
    /// and that libpcap reads on where it stops.
    func testARegularPcapIsReadInPlaceAndLibpcapReadsOnFromTheFirstOddRecord() throws {
        let long = Self.udpFrame(4, 6000, pad: 200)
        let records = [(1_700_000_000, 0, Self.udpFrame(1, 5000, pad: 10), 52),
                       (1_700_000_001, 0, long, long.count),  // longer than the snap length: libpcap's
                       (1_700_000_002, 0, Self.udpFrame(2, 5001, pad: 10), 52)]
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("flowmap-inplace-\(getpid()).pcap")
        try Data(Self.pcap(bigEndian: false, nanos: false, snaplen: 128, records: records)).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }

        let direct = try PcapReader(path: url.path)
        XCTAssertTrue(direct.readsInPlace)
        var lengths: [Int] = []
        XCTAssertEqual(direct.forEachPacket { _, _, _, bytes in lengths.append(bytes.count) }, .complete)
        XCTAssertEqual(lengths, [52, 128, 52])  // the long record cut to the snap length by libpcap
        XCTAssertEqual(direct.position, Int64(try FileManager.default.attributesOfItem(atPath: url.path)[.size] as! Int))

        setenv("FLOWMAP_READER", "libpcap", 1)
        defer { unsetenv("FLOWMAP_READER") }
        XCTAssertFalse(try PcapReader(path: url.path).readsInPlace)
    }
}
