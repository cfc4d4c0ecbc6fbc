import XCTest
@testable import FlowCore

final class FormatTests: XCTestCase {
    func testFixedAndTimes() {
        XCTAssertEqual(Fmt.fixed(1258562636.2234501), "1258562636.223450")
        XCTAssertEqual(Fmt.fixed(0.1), "0.100000")
        XCTAssertEqual(Fmt.fixed(2.5, digits: 0), "3")
        XCTAssertEqual(Fmt.iso8601(0), "1970-01-01T00:00:00.000000Z")
        XCTAssertEqual(Fmt.iso8601(1258562636.5), "2009-11-18T16:43:56.500000Z")
        XCTAssertEqual(Fmt.zeekStamp(951782400), "2000-02-29-00-00-00")
        XCTAssertEqual(Fmt.iso8601(1258562636.223450, fractionDigits: 3), "2009-11-18T16:43:56.223Z")
        XCTAssertEqual(Fmt.iso8601(1258562636.9, fractionDigits: 0), "2009-11-18T16:43:56Z")
        XCTAssertEqual(Fmt.iso8601(-0.5), "1969-12-31T23:59:59.500000Z")
        XCTAssertEqual(Fmt.iso8601(951868799.000001), "2000-02-29T23:59:59.000001Z")
        XCTAssertEqual(Fmt.iso8601(253402300800), "10000-01-01T00:00:00.000000Z", "past year 9999: the general path")
        // Every second of a leap day and its neighbours round-trips through the parser.
        for t in stride(from: 951_696_000.0, to: 951_955_200, by: 997.25) {
            XCTAssertEqual(Fmt.parseTime(Fmt.iso8601(t)), t)
        }
        XCTAssertEqual(Fmt.parseTime("2009-11-18T16:43:56Z"), 1258562636)
        XCTAssertEqual(Fmt.parseTime("2009-11-18 16:43:56"), 1258562636)
        XCTAssertEqual(Fmt.parseTime("2009-11-18T18:43:56+02:00"), 1258562636)
        XCTAssertEqual(Fmt.parseTime("1258562636.25"), 1258562636.25)
        XCTAssertEqual(Fmt.parseTime("2000-02-29"), 951782400)
        XCTAssertNil(Fmt.parseTime("yesterday"))
        XCTAssertNil(Fmt.parseTime("2009-13-01"))
    }

    func testAddresses() {
        XCTAssertEqual(IPAddress("2001:0:4137:9e50:8000:f12a:b9c8:2815")?.description, "2001:0:4137:9e50:8000:f12a:b9c8:2815")
        XCTAssertEqual(IPAddress("2001:db8:0:0:1:0:0:1")?.description, "2001:db8::1:0:0:1")
        XCTAssertEqual(IPAddress("::")?.description, "::")
        XCTAssertEqual(IPAddress("::1")?.description, "::1")
        XCTAssertEqual(IPAddress("fe80::")?.description, "fe80::")
        XCTAssertEqual(IPAddress("ff02::1:ff00:3")?.description, "ff02::1:ff00:3")
        // IPv4-mapped addresses are IPv4, as in Zeek.
        XCTAssertEqual(IPAddress("::ffff:1.2.3.4")?.description, "1.2.3.4")
        XCTAssertEqual(IPAddress("::ffff:1.2.3.4"), IPAddress("1.2.3.4"))
        XCTAssertEqual(IPAddress("192.168.0.1")?.description, "192.168.0.1")
        XCTAssertNil(IPAddress("1.2.3"))
        XCTAssertNil(IPAddress("1.2.3.256"))
        XCTAssertNil(IPAddress("1::2::3"))
        XCTAssertNil(IPAddress("12345::"))
        XCTAssertTrue(IPAddress("10.1.2.3")!.isPrivate)
        XCTAssertFalse(IPAddress("8.8.8.8")!.isPrivate)
        XCTAssertTrue(IPAddress("255.255.255.255")!.isBroadcastOrMulticast)
    }

    func testSHA256KnownVectors() {
        var h = SHA256()
        h.update(Array("abc".utf8))
        XCTAssertEqual(SHA256.hex(h.finalize()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        var e = SHA256()
        XCTAssertEqual(SHA256.hex(e.finalize()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        var long = SHA256()
        for _ in 0..<1000 { long.update(Array("a".utf8)) }  // byte-at-a-time across block boundaries
        var once = SHA256()
        once.update([UInt8](repeating: 0x61, count: 1000))
        XCTAssertEqual(long.finalize(), once.finalize())
    }

    func testFlowKeyIsSymmetric() {
        var f1 = false, f2 = false
        let a = IPAddress("10.0.0.1")!, b = IPAddress("10.0.0.2")!
        let k1 = FlowKey(src: a, sport: 1, dst: b, dport: 2, proto: .tcp, flipped: &f1)
        let k2 = FlowKey(src: b, sport: 2, dst: a, dport: 1, proto: .tcp, flipped: &f2)
        XCTAssertEqual(k1, k2)
        XCTAssertEqual(k1.hashValue, k2.hashValue)
        XCTAssertNotEqual(f1, f2)
    }
}

final class ByteWriterSinkTests: XCTestCase {
    /// Decimal digits at every length boundary, up to UInt64.max.
    func testDecimalDigitsAtEveryLength() {
        var values: [UInt64] = [0, 1, 9, UInt64.max, UInt64.max - 1]
        var p: UInt64 = 10
        for _ in 1...19 {  // 10 … 10^19
            values += [p - 1, p, p + 1]
            let (triple, overflow) = p.multipliedReportingOverflow(by: 3)
            if !overflow { values.append(triple - 1) }
            if p <= UInt64.max / 10 { p *= 10 }
        }
        for v in values {
            let w = ByteWriter(capacity: 8)
            w.decimal(v)
            XCTAssertEqual(String(decoding: w.bytes, as: UTF8.self), String(v))
        }
    }

    /// A writer with a sink hands over the same bytes, in order, as one that grows, whatever
    /// the sizes of the writes (including one larger than its buffer).
    func testSinkSeesExactlyWhatAGrowingWriterHolds() {
        var handed: [UInt8] = []
        var handOffs = 0
        let streamed = ByteWriter(capacity: 64) { p in handed.append(contentsOf: p); handOffs += 1 }
        let grown = ByteWriter(capacity: 64)
        let big = [UInt8](repeating: UInt8(ascii: "z"), count: 300)
        for w in [streamed, grown] {
            for i in 0..<200 {
                w.decimal(UInt64(i) * 1_000_003)
                w.byte(UInt8(ascii: ","))
                w.text("name-\(i)")
                w.address(IPAddress("2001:db8::\(i)")!)
                if i == 50 { big.withUnsafeBytes { w.raw($0) } }
                w.fixed6(Double(i) / 7)
                w.ascii("\n")
            }
        }
        streamed.drain()
        XCTAssertEqual(handed, grown.bytes)
        XCTAssertEqual(streamed.count, 0)
        XCTAssertGreaterThan(handOffs, 10)
        streamed.drain()
        XCTAssertEqual(handed.count, grown.count, "draining an empty writer hands nothing over")
    }
}
