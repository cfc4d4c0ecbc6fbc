/// Community ID v1 (corelight/community-id-spec): a hash of a flow's 5-tuple that Zeek,
/// Suricata and other tools compute identically, so that the same flow can be found in each.
public enum CommunityID {
    /// `1:` followed by the base64 SHA-1 of seed, ordered addresses, protocol, padding and ports.
    public static func v1(_ r: FlowRecord, seed: UInt16 = 0) -> String {
        v1(src: r.origH, dst: r.respH, sport: r.origP, dport: r.respP, proto: r.ipProto.rawValue, seed: seed)
    }

    public static func v1(src s0: IPAddress, dst d0: IPAddress, sport sp0: UInt16, dport dp0: UInt16, proto: UInt8,
                          seed: UInt16 = 0) -> String {
        var src = s0, dst = d0, sport = sp0, dport = dp0
        let hasPorts = proto == 6 || proto == 17 || proto == 132 || proto == 1 || proto == 58
        var oneWay = false
        if proto == 1 || proto == 58 {
            // ICMP "ports" are the type and the counterpart type (or the code, one-way).
            let type = UInt8(truncatingIfNeeded: sport)
            let counterpart = twoWayCounterpart(v6: proto == 58, type: type)
            if let c = counterpart { dport = UInt16(c) } else { oneWay = true }
        }
        if !oneWay {
            let sb = bytes(src), db = bytes(dst)
            let ordered = sb.lexicographicallyPrecedes(db) || (sb == db && sport <= dport)
            if !ordered {
                swap(&src, &dst)
                swap(&sport, &dport)
            }
        }
        var msg: [UInt8] = [UInt8(seed >> 8), UInt8(seed & 0xFF)]
        msg += bytes(src)
        msg += bytes(dst)
        msg += [proto, 0]
        if hasPorts { msg += [UInt8(sport >> 8), UInt8(sport & 0xFF), UInt8(dport >> 8), UInt8(dport & 0xFF)] }
        return "1:" + Base64.encode(SHA1.digest(msg))
    }

    /// The reply type of an ICMP request (or the request of a reply), per the spec's table:
    /// Zeek's pairs, less ICMPv6 mobile prefix solicitation/advertisement (146/147).
    static func twoWayCounterpart(v6: Bool, type: UInt8) -> UInt8? {
        if v6 && (type == 146 || type == 147) { return nil }
        return ICMPPorts.twoWay(v6: v6, type: type)
    }

    static func bytes(_ a: IPAddress) -> [UInt8] {
        if !a.isV6 {
            let v = a.v4
            return [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
        }
        var out: [UInt8] = []
        out.reserveCapacity(16)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: a.hi >> (56 - 8 * UInt64(i)))) }
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: a.lo >> (56 - 8 * UInt64(i)))) }
        return out
    }
}

/// SHA-1 (FIPS 180-4), for Community ID only (not for security).
enum SHA1 {
    static func digest(_ message: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
        var m = message
        let bitLen = UInt64(message.count) &* 8
        m.append(0x80)
        while m.count % 64 != 56 { m.append(0) }
        for s in stride(from: 56, through: 0, by: -8) { m.append(UInt8(truncatingIfNeeded: bitLen >> UInt64(s))) }
        var w = [UInt32](repeating: 0, count: 80)
        for chunk in stride(from: 0, to: m.count, by: 64) {
            for t in 0..<16 {
                let o = chunk + 4 * t
                w[t] = UInt32(m[o]) << 24 | UInt32(m[o + 1]) << 16 | UInt32(m[o + 2]) << 8 | UInt32(m[o + 3])
            }
            for t in 16..<80 {
                let x = w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]
                w[t] = (x << 1) | (x >> 31)
            }
            var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4]
            for t in 0..<80 {
                let f: UInt32, k: UInt32
                switch t {
                case 0..<20: f = (b & c) | (~b & d); k = 0x5A827999
                case 20..<40: f = b ^ c ^ d; k = 0x6ED9EBA1
                case 40..<60: f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC
                default: f = b ^ c ^ d; k = 0xCA62C1D6
                }
                let temp = ((a << 5) | (a >> 27)) &+ f &+ e &+ k &+ w[t]
                e = d; d = c; c = (b << 30) | (b >> 2); b = a; a = temp
            }
            h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e
        }
        var out: [UInt8] = []
        for v in h { out += [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
        return out
    }
}

/// Standard base64 with padding (RFC 4648).
enum Base64 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ data: [UInt8]) -> String {
        var out: [UInt8] = []
        var i = 0
        while i + 3 <= data.count {
            let n = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2])
            out += [alphabet[Int(n >> 18)], alphabet[Int((n >> 12) & 63)], alphabet[Int((n >> 6) & 63)], alphabet[Int(n & 63)]]
            i += 3
        }
        let rest = data.count - i
        if rest == 1 {
            let n = UInt32(data[i]) << 16
            out += [alphabet[Int(n >> 18)], alphabet[Int((n >> 12) & 63)], 61, 61]
        } else if rest == 2 {
            let n = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8
            out += [alphabet[Int(n >> 18)], alphabet[Int((n >> 12) & 63)], alphabet[Int((n >> 6) & 63)], 61]
        }
        return String(decoding: out, as: UTF8.self)
    }
}
