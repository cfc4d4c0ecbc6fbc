// Network- and transport-layer decoding into a preallocated value (no allocation per packet).

/// One decoded IP packet: addresses, transport protocol and where the transport header is.
public struct IPView: Sendable {
    public var src = IPAddress.zeroV4
    public var dst = IPAddress.zeroV4
    /// The transport protocol after IPv6 extension headers.
    public var proto = IPProtocol(rawValue: 0)
    /// Zeek's ip_bytes: the IPv4 total length, or the IPv6 payload length + 40.
    public var ipBytes = 0
    /// Offset of the transport header in the buffer.
    public var l4Offset = 0
    /// Transport length according to the IP header (not the captured length).
    public var l4Length = 0
    public var isFragment = false
    /// Fragment offset in bytes (0 for the first fragment).
    public var fragmentOffset = 0
    public var moreFragments = false
    public var fragmentID: UInt32 = 0
    public var ttl: UInt8 = 0
    public init() {}
}

/// The transport header fields the flow table needs.
public struct TransportView: Sendable {
    public var sport: UInt16 = 0
    public var dport: UInt16 = 0
    public var tcpFlags: UInt8 = 0
    public var seq: UInt32 = 0
    public var ack: UInt32 = 0
    public var window: UInt16 = 0
    /// Application payload length per the headers (TCP/UDP payload; ICMP bytes after 8).
    public var payloadLength = 0
    /// Offset of the payload in the buffer.
    public var payloadOffset = 0
    public var icmpType: UInt8 = 0
    public var icmpCode: UInt8 = 0
    /// False for non-first fragments and port-less protocols.
    public var hasHeader = false
    public init() {}
}

/// TCP flag bits (RFC 9293).
public enum TCPFlag {
    public static let fin: UInt8 = 0x01
    public static let syn: UInt8 = 0x02
    public static let rst: UInt8 = 0x04
    public static let psh: UInt8 = 0x08
    public static let ack: UInt8 = 0x10
    public static let urg: UInt8 = 0x20
}

public enum IPDecoder {
    /// Decodes the IP header at `o`. `wireEnd` is where the frame ended on the wire (it may lie
    /// past the captured bytes when a snap length cut the packet).
    /// Returns nil with an anomaly for a packet Zeek would not count either.
    @inline(__always)
    public static func decode(_ b: UnsafeRawBufferPointer, at o: Int, wireEnd: Int, into v: inout IPView) -> Anomaly? {
        guard b.count > o else { return .truncatedIPHeader }
        let version = b.u8(o) >> 4
        if version == 4 { return decode4(b, at: o, wireEnd: wireEnd, into: &v) }
        if version == 6 { return decode6(b, at: o, wireEnd: wireEnd, into: &v) }
        return .badIPVersion
    }

    static func decode4(_ b: UnsafeRawBufferPointer, at o: Int, wireEnd: Int, into v: inout IPView) -> Anomaly? {
        guard b.count >= o + 20 else { return .truncatedIPHeader }
        let ihl = Int(b.u8(o) & 0x0F) * 4
        guard ihl >= 20 else { return .badIPHeaderLength }
        guard b.count >= o + ihl else { return .truncatedIPHeader }
        var total = Int(b.u16be(o + 2))
        if total == 0 { total = wireEnd - o }  // TSO/offloaded capture: the length field is unset
        guard total >= ihl else { return .badIPHeaderLength }
        guard total <= wireEnd - o else { return .ipLengthExceedsFrame }
        let frag = b.u16be(o + 6)
        v.fragmentOffset = Int(frag & 0x1FFF) * 8
        v.moreFragments = frag & 0x2000 != 0
        v.isFragment = v.moreFragments || v.fragmentOffset != 0
        v.fragmentID = UInt32(b.u16be(o + 4))
        v.ttl = b.u8(o + 8)
        v.proto = IPProtocol(rawValue: b.u8(o + 9))
        v.src = IPAddress(v4: b.u32be(o + 12))
        v.dst = IPAddress(v4: b.u32be(o + 16))
        v.ipBytes = total
        v.l4Offset = o + ihl
        v.l4Length = total - ihl
        return nil
    }

    static func decode6(_ b: UnsafeRawBufferPointer, at o: Int, wireEnd: Int, into v: inout IPView) -> Anomaly? {
        guard b.count >= o + 40 else { return .truncatedIPHeader }
        var payload = Int(b.u16be(o + 4))
        if payload == 0 { payload = wireEnd - o - 40 }  // jumbogram or offloaded capture
        guard payload >= 0, payload + 40 <= wireEnd - o else { return .ipLengthExceedsFrame }
        v.ipBytes = payload + 40
        v.ttl = b.u8(o + 7)
        v.src = IPAddress(v6hi: b.u64be(o + 8), v6lo: b.u64be(o + 16))
        v.dst = IPAddress(v6hi: b.u64be(o + 24), v6lo: b.u64be(o + 32))
        v.isFragment = false
        v.fragmentOffset = 0
        v.moreFragments = false
        var next = b.u8(o + 6)
        var cur = o + 40
        let end = o + 40 + payload
        var hops = 0
        // Walk extension headers: hop-by-hop, routing, fragment, destination options, AH.
        while hops < 16 {
            hops += 1
            switch next {
            case 0, 43, 60:
                guard b.count >= cur + 2, cur + 8 <= end else { return .truncatedIPv6ExtensionHeader }
                let len = (Int(b.u8(cur + 1)) + 1) * 8
                next = b.u8(cur)
                cur += len
            case 51:
                guard b.count >= cur + 2, cur + 8 <= end else { return .truncatedIPv6ExtensionHeader }
                let len = (Int(b.u8(cur + 1)) + 2) * 4
                next = b.u8(cur)
                cur += len
            case 44:
                guard b.count >= cur + 8, cur + 8 <= end else { return .truncatedIPv6ExtensionHeader }
                let off = b.u16be(cur + 2)
                v.fragmentOffset = Int(off >> 3) * 8
                v.moreFragments = off & 1 != 0
                v.isFragment = v.moreFragments || v.fragmentOffset != 0
                v.fragmentID = b.u32be(cur + 4)
                next = b.u8(cur)
                cur += 8
            default:
                hops = 99
            }
            if cur > end { return .truncatedIPv6ExtensionHeader }
        }
        v.proto = IPProtocol(rawValue: next)
        v.l4Offset = cur
        v.l4Length = end - cur
        return nil
    }

    /// Decodes the transport header of a first (or unfragmented) packet.
    /// `wireEnd` bounds the lengths; the captured buffer bounds the reads.
    @inline(__always)
    public static func transport(_ b: UnsafeRawBufferPointer, ip v: IPView, into t: inout TransportView) -> Anomaly? {
        t.hasHeader = false
        t.sport = 0; t.dport = 0; t.tcpFlags = 0; t.payloadLength = 0
        if v.isFragment && v.fragmentOffset != 0 { return nil }
        let o = v.l4Offset
        switch v.proto.rawValue {
        case 6:
            guard b.count >= o + 20, v.l4Length >= 20 else { return .truncatedTCPHeader }
            let hlen = Int(b.u8(o + 12) >> 4) * 4
            guard hlen >= 20 else { return .badTCPHeaderLength }
            guard hlen <= v.l4Length || v.isFragment else { return .badTCPHeaderLength }
            guard b.count >= o + hlen else { return .truncatedTCPHeader }
            t.sport = b.u16be(o)
            t.dport = b.u16be(o + 2)
            t.seq = b.u32be(o + 4)
            t.ack = b.u32be(o + 8)
            t.tcpFlags = b.u8(o + 13)
            t.window = b.u16be(o + 14)
            t.payloadOffset = o + hlen
            t.payloadLength = max(0, v.l4Length - hlen)
            t.hasHeader = true
            return nil
        case 17:
            guard b.count >= o + 8, v.l4Length >= 8 else { return .truncatedUDPHeader }
            t.sport = b.u16be(o)
            t.dport = b.u16be(o + 2)
            let ulen = Int(b.u16be(o + 4))
            t.payloadOffset = o + 8
            t.hasHeader = true
            if ulen >= 8 && ulen <= v.l4Length {
                t.payloadLength = ulen - 8
                if ulen != v.l4Length && !v.isFragment { return .udpLengthMismatch }
            } else {
                t.payloadLength = v.l4Length - 8
                if !v.isFragment && ulen != 0 { return .udpLengthMismatch }
            }
            return nil
        case 1, 58:
            guard b.count >= o + 4, v.l4Length >= 4 else { return .truncatedICMPHeader }
            t.icmpType = b.u8(o)
            t.icmpCode = b.u8(o + 1)
            t.payloadOffset = o + 8
            t.payloadLength = max(0, v.l4Length - 8)
            t.hasHeader = true
            return nil
        default:
            return nil
        }
    }
}

/// Zeek's ICMP "ports": the type, and the counterpart type for request/reply pairs (so both
/// halves of an exchange share one flow) or else the code.
public enum ICMPPorts {
    @inline(__always)
    public static func counterpart(v6: Bool, type: UInt8, code: UInt8) -> UInt16 {
        UInt16(twoWay(v6: v6, type: type) ?? code)
    }

    /// The other half of a request/reply type pair, or nil for a one-way message.
    @inline(__always)
    public static func twoWay(v6: Bool, type: UInt8) -> UInt8? {
        if !v6 {
            switch type {
            case 8: return 0
            case 0: return 8
            case 13: return 14
            case 14: return 13
            case 15: return 16
            case 16: return 15
            case 10: return 9
            case 9: return 10
            case 17: return 18
            case 18: return 17
            default: return nil
            }
        }
        switch type {
        case 128: return 129
        case 129: return 128
        case 133: return 134
        case 134: return 133
        case 135: return 136
        case 136: return 135
        case 130: return 131
        case 131: return 130
        case 139: return 140
        case 140: return 139
        case 144: return 145
        case 145: return 144
        case 146: return 147
        case 147: return 146
        default: return nil
        }
    }
}
