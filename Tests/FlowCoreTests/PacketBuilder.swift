@testable import FlowCore

/// Builds test frames byte by byte (lengths consistent, checksums zero: flowmap does not
/// validate them).
struct PacketBuilder {
    static func be16(_ v: Int) -> [UInt8] { [UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
    static func be32(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }
    static func v4(_ s: String) -> [UInt8] {
        s.split(separator: ".").map { UInt8($0)! }
    }
    static func v6(_ s: String) -> [UInt8] {
        let a = IPAddress(s)!
        var out: [UInt8] = []
        for i in 0..<8 { out.append(UInt8((a.hi >> (56 - 8 * UInt64(i))) & 0xFF)) }
        for i in 0..<8 { out.append(UInt8((a.lo >> (56 - 8 * UInt64(i))) & 0xFF)) }
        return out
    }

    static func tcp(sport: Int, dport: Int, seq: UInt32, ack: UInt32, flags: UInt8, payload: Int = 0,
                    window: Int = 8192) -> [UInt8] {
        var h = be16(sport) + be16(dport) + be32(seq) + be32(ack)
        h += [0x50, flags] + be16(window) + [0, 0, 0, 0]
        return h + [UInt8](repeating: 0x61, count: payload)
    }

    static func udp(sport: Int, dport: Int, payload: [UInt8]) -> [UInt8] {
        be16(sport) + be16(dport) + be16(8 + payload.count) + [0, 0] + payload
    }

    static func icmp(type: UInt8, code: UInt8, payload: Int = 8) -> [UInt8] {
        [type, code, 0, 0, 0, 1, 0, 1] + [UInt8](repeating: 0, count: payload)
    }

    static func ipv4(src: String, dst: String, proto: UInt8, _ l4: [UInt8], id: Int = 1, fragOffset: Int = 0,
                     moreFragments: Bool = false, options: [UInt8] = []) -> [UInt8] {
        let ihl = (20 + options.count) / 4
        var h: [UInt8] = [UInt8(0x40 | ihl), 0] + be16(20 + options.count + l4.count) + be16(id)
        h += be16((moreFragments ? 0x2000 : 0) | (fragOffset / 8))
        h += [64, proto, 0, 0] + v4(src) + v4(dst) + options
        return h + l4
    }

    static func ipv6(src: String, dst: String, next: UInt8, _ payload: [UInt8]) -> [UInt8] {
        [0x60, 0, 0, 0] + be16(payload.count) + [next, 64] + v6(src) + v6(dst) + payload
    }

    static func ether(_ l3: [UInt8], type: Int = 0x0800, vlans: [Int] = []) -> [UInt8] {
        var f: [UInt8] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
        for (i, v) in vlans.enumerated() {
            f += be16(i == 0 && vlans.count > 1 ? 0x88A8 : 0x8100) + be16(v)
        }
        return f + be16(type) + l3
    }
}

/// Runs frames through a fresh analyzer and collects the flows it emits.
final class Harness {
    let analyzer: PacketAnalyzer
    let table: FlowTable

    init(timeouts: Timeouts = Timeouts()) {
        let box = Box()
        table = FlowTable(timeouts: timeouts) { box.records.append($0) }
        analyzer = PacketAnalyzer(table: table)
        self.box = box
    }
    private let box: Box
    final class Box { var records: [FlowRecord] = [] }

    func feed(_ frame: [UInt8], at t: Double, linkType: LinkType = .ethernet) {
        frame.withUnsafeBytes { analyzer.process(linkType: linkType, timestamp: t, wireLength: frame.count, bytes: $0) }
    }

    func finish() -> [FlowRecord] {
        analyzer.finish()
        return box.records
    }

    var emitted: [FlowRecord] { box.records }
}
