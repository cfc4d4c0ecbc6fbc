// Link-layer decoders: find where the IP header starts in a frame.
//
// Each decoder moves an offset forward over borrowed bytes and copies nothing (Zeek's
// analyzers, gopacket's DecodingLayerParser). A frame that is too short is a named anomaly.

/// Where a link-layer frame's network-layer payload starts.
public enum LinkResult: Equatable, Sendable {
    /// An IP header (version 4 or 6, per its first nibble) starts at `offset`.
    case ip(offset: Int)
    /// A well-formed frame that carries no IP (ARP, STP, LCP, PPPoE discovery…).
    case nonIP
    /// A malformed frame.
    case anomaly(Anomaly)
}

/// The 802.1Q/802.1ad tags of a frame: the VLAN IDs of the outermost two (Zeek's vlan and
/// inner_vlan).
public struct VLANTags: Sendable, Equatable {
    public var outer: UInt16 = 0
    public var inner: UInt16 = 0
    public var count: UInt8 = 0
    public init() {}

    @inline(__always)
    mutating func push(_ vid: UInt16) {
        if count == 0 { outer = vid } else if count == 1 { inner = vid }
        count &+= 1
    }
}

public enum LinkDecoder {
    /// Decodes the link layer of `linkType` and returns where IP begins.
    public static func decode(_ linkType: LinkType, _ b: UnsafeRawBufferPointer) -> LinkResult {
        var v = VLANTags()
        return decode(linkType, b, vlans: &v)
    }

    /// Decodes the link layer and records the frame's VLAN tags in `vlans`.
    public static func decode(_ linkType: LinkType, _ b: UnsafeRawBufferPointer, vlans: inout VLANTags) -> LinkResult {
        switch linkType.rawValue {
        case 1: return ethernet(b, at: 0, vlans: &vlans)
        case 12, 14, 101, 228, 229: return rawIP(b, at: 0)
        case 0: return null(b, networkOrder: false)
        case 108: return null(b, networkOrder: true)
        case 113:
            guard b.count >= 16 else { return .anomaly(.truncatedLinkHeader) }
            return etherType(b.u16be(14), b, at: 16, vlans: &vlans)
        case 276:
            guard b.count >= 20 else { return .anomaly(.truncatedLinkHeader) }
            return etherType(b.u16be(0), b, at: 20, vlans: &vlans)
        case 9, 50: return ppp(b, at: 0)
        case 104:
            guard b.count >= 4 else { return .anomaly(.truncatedLinkHeader) }
            return etherType(b.u16be(2), b, at: 4)
        case 105: return ieee80211(b, at: 0)
        case 127:
            guard b.count >= 4 else { return .anomaly(.truncatedLinkHeader) }
            let len = Int(b.u16le(2))
            guard len >= 8, b.count >= len else { return .anomaly(.truncatedLinkHeader) }
            return ieee80211(b, at: len)
        case 10:
            // FDDI: frame control (1) + destination (6) + source (6), then 802.2 LLC.
            guard b.count >= 13 else { return .anomaly(.truncatedLinkHeader) }
            return llc(b, at: 13)
        case 239: return nflog(b)
        case 8:
            // SLIP: libpcap prepends a 16-byte pseudo-header (direction, compressed header).
            return rawIP(b, at: 16)
        case 107: return frameRelay(b)
        default: return .anomaly(.unsupportedLinkFrame)
        }
    }

    /// Ethernet II or 802.3 with LLC/SNAP, starting at `o`.
    public static func ethernet(_ b: UnsafeRawBufferPointer, at o: Int) -> LinkResult {
        var v = VLANTags()
        return ethernet(b, at: o, vlans: &v)
    }

    static func ethernet(_ b: UnsafeRawBufferPointer, at o: Int, vlans: inout VLANTags) -> LinkResult {
        guard b.count >= o + 14 else { return .anomaly(.truncatedLinkHeader) }
        let type = b.u16be(o + 12)
        if type <= 1500 { return llc(b, at: o + 14) }
        return etherType(type, b, at: o + 14, vlans: &vlans)
    }

    /// 802.2 LLC: only SNAP (AA AA 03) carries an EtherType; anything else is not IP.
    static func llc(_ b: UnsafeRawBufferPointer, at o: Int) -> LinkResult {
        guard b.count >= o + 3 else { return .anomaly(.truncatedLinkHeader) }
        guard b.u8(o) == 0xAA, b.u8(o + 1) == 0xAA, b.u8(o + 2) == 0x03 else { return .nonIP }
        guard b.count >= o + 8 else { return .anomaly(.truncatedLinkHeader) }
        return etherType(b.u16be(o + 6), b, at: o + 8)
    }

    /// Follows an EtherType through VLAN tags (802.1Q, 802.1ad, QinQ), MPLS and PPPoE sessions.
    public static func etherType(_ type0: UInt16, _ b: UnsafeRawBufferPointer, at o0: Int) -> LinkResult {
        var v = VLANTags()
        return etherType(type0, b, at: o0, vlans: &v)
    }

    static func etherType(_ type0: UInt16, _ b: UnsafeRawBufferPointer, at o0: Int,
                          vlans: inout VLANTags) -> LinkResult {
        var type = type0
        var o = o0
        var hops = 0
        while hops < 16 {
            hops += 1
            switch type {
            case 0x0800, 0x86DD:
                return .ip(offset: o)
            case 0x8100, 0x88A8, 0x9100, 0x9200:
                guard b.count >= o + 4 else { return .anomaly(.truncatedVLANHeader) }
                vlans.push(b.u16be(o) & 0x0FFF)
                type = b.u16be(o + 2)
                o += 4
            case 0x8847, 0x8848:
                // MPLS label stack; after bottom-of-stack guess the payload by its first nibble.
                var bottom = false
                var labels = 0
                while !bottom {
                    guard b.count >= o + 4, labels < 16 else { return .anomaly(.truncatedMPLSHeader) }
                    bottom = (b.u8(o + 2) & 0x01) != 0
                    o += 4
                    labels += 1
                }
                guard b.count > o else { return .anomaly(.truncatedMPLSHeader) }
                let nibble = b.u8(o) >> 4
                if nibble == 4 || nibble == 6 { return .ip(offset: o) }
                if nibble == 0 {
                    // Pseudowire control word, then an Ethernet frame.
                    return ethernet(b, at: o + 4, vlans: &vlans)
                }
                return .nonIP
            case 0x8864:
                guard b.count >= o + 8 else { return .anomaly(.truncatedPPPoEHeader) }
                return pppProtocol(b.u16be(o + 6), b, at: o + 8)
            case 0x6558:
                return ethernet(b, at: o, vlans: &vlans)
            default:
                return .nonIP
            }
        }
        return .anomaly(.truncatedVLANHeader)
    }

    /// Raw IP: the version nibble tells IPv4 from IPv6.
    static func rawIP(_ b: UnsafeRawBufferPointer, at o: Int) -> LinkResult {
        guard b.count > o else { return .anomaly(.truncatedIPHeader) }
        let v = b.u8(o) >> 4
        return (v == 4 || v == 6) ? .ip(offset: o) : .anomaly(.badIPVersion)
    }

    /// BSD loopback: a 4-byte address family, host order (NULL) or network order (LOOP).
    static func null(_ b: UnsafeRawBufferPointer, networkOrder: Bool) -> LinkResult {
        guard b.count >= 4 else { return .anomaly(.truncatedLinkHeader) }
        var fam = networkOrder ? b.u32be(0) : b.u32le(0)
        if fam > 0xFFFF { fam = fam.byteSwapped }  // written by a host of the other byte order
        switch fam {
        case 2: return rawIP(b, at: 4)
        case 10, 23, 24, 26, 28, 30: return rawIP(b, at: 4)  // AF_INET6 on Linux, BSDs, Darwin, Solaris
        default: return .nonIP
        }
    }

    /// PPP with optional HDLC address/control bytes and a 1- or 2-byte protocol field.
    static func ppp(_ b: UnsafeRawBufferPointer, at o0: Int) -> LinkResult {
        var o = o0
        guard b.count >= o + 2 else { return .anomaly(.truncatedLinkHeader) }
        if b.u8(o) == 0xFF && b.u8(o + 1) == 0x03 { o += 2 }
        guard b.count > o else { return .anomaly(.truncatedLinkHeader) }
        if b.u8(o) & 0x01 != 0 { return pppProtocol(UInt16(b.u8(o)), b, at: o + 1) }
        guard b.count >= o + 2 else { return .anomaly(.truncatedLinkHeader) }
        return pppProtocol(b.u16be(o), b, at: o + 2)
    }

    static func pppProtocol(_ proto: UInt16, _ b: UnsafeRawBufferPointer, at o: Int) -> LinkResult {
        switch proto {
        case 0x0021, 0x0057: return .ip(offset: o)
        default: return .nonIP
        }
    }

    /// IEEE 802.11 data frames (with LLC/SNAP); management and control frames carry no IP.
    static func ieee80211(_ b: UnsafeRawBufferPointer, at o: Int) -> LinkResult {
        guard b.count >= o + 2 else { return .anomaly(.truncatedLinkHeader) }
        let fc = b.u8(o), flags = b.u8(o + 1)
        guard (fc >> 2) & 0x3 == 2 else { return .nonIP }  // not a data frame
        let subtype = fc >> 4
        if subtype & 0x04 != 0 { return .nonIP }  // null-data frames carry no payload
        var len = 24
        if flags & 0x03 == 0x03 { len += 6 }  // four-address (WDS) frame
        if subtype & 0x08 != 0 {
            len += 2  // QoS control
            if flags & 0x80 != 0 { len += 4 }  // HT control
        }
        guard b.count >= o + len else { return .anomaly(.truncatedLinkHeader) }
        if flags & 0x40 != 0 { return .anomaly(.protected80211Frame) }
        return llc(b, at: o + len)
    }

    /// Frame Relay (RFC 2427): a Q.922 address (2-4 bytes, EA bit ends it), the UI control byte,
    /// optional padding, then an NLPID: IPv4 (0xCC), IPv6 (0x8E) or SNAP (0x80); or Cisco's
    /// encapsulation, an EtherType right after the address.
    static func frameRelay(_ b: UnsafeRawBufferPointer) -> LinkResult {
        var o = 0
        while o < 4 {
            guard b.count > o else { return .anomaly(.truncatedLinkHeader) }
            let last = b.u8(o) & 0x01 != 0
            o += 1
            if last { break }
        }
        guard b.count > o + 1 else { return .anomaly(.truncatedLinkHeader) }
        // Cisco's encapsulation: an EtherType straight after the address.
        if b.u8(o) != 0x03 { return etherType(b.u16be(o), b, at: o + 2) }
        o += 1
        if b.u8(o) == 0x00 { o += 1 }  // padding before the NLPID
        guard b.count > o else { return .anomaly(.truncatedLinkHeader) }
        switch b.u8(o) {
        case 0xCC, 0x8E: return rawIP(b, at: o + 1)
        case 0x80:
            guard b.count >= o + 6 else { return .anomaly(.truncatedLinkHeader) }
            return etherType(b.u16be(o + 4), b, at: o + 6)
        default: return .nonIP
        }
    }

    /// Linux NFLOG: a 4-byte header, then TLVs; the payload TLV (type 9) holds the IP packet.
    static func nflog(_ b: UnsafeRawBufferPointer) -> LinkResult {
        guard b.count >= 4 else { return .anomaly(.truncatedNFLOG) }
        var o = 4
        while o + 4 <= b.count {
            let len = Int(b.u16le(o)), type = b.u16le(o + 2)
            guard len >= 4 else { return .anomaly(.truncatedNFLOG) }
            if type == 9 {
                guard o + len <= b.count || len > 4 else { return .anomaly(.truncatedNFLOG) }
                return rawIP(b, at: o + 4)
            }
            o += (len + 3) & ~3
        }
        return .anomaly(.truncatedNFLOG)
    }
}
