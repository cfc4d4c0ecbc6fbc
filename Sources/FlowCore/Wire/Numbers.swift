/// A libpcap link-layer header type (`LINKTYPE_*`, see pcap-linktype(7)).
///
/// An open number space, so a struct with documented statics rather than an enum.
public struct LinkType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue & 0xFFFF }  // LT_LINKTYPE(): upper bits are flags

    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    public static let null = LinkType(rawValue: 0)
    /// Ethernet II / 802.3.
    public static let ethernet = LinkType(rawValue: 1)
    /// PPP (RFC 1661), optionally with HDLC-like address/control bytes.
    public static let ppp = LinkType(rawValue: 9)
    /// SLIP, with libpcap's 16-byte pseudo-header.
    public static let slip = LinkType(rawValue: 8)
    /// FDDI.
    public static let fddi = LinkType(rawValue: 10)
    /// Frame Relay (RFC 2427 multiprotocol encapsulation).
    public static let frameRelay = LinkType(rawValue: 107)
    /// DLT_RAW as numbered on most BSDs (raw IP).
    public static let rawBSD12 = LinkType(rawValue: 12)
    /// DLT_RAW as numbered on OpenBSD (raw IP).
    public static let rawBSD14 = LinkType(rawValue: 14)
    /// PPP in HDLC-like framing (RFC 1662).
    public static let pppHDLC = LinkType(rawValue: 50)
    /// Raw IPv4 or IPv6.
    public static let raw = LinkType(rawValue: 101)
    /// Cisco HDLC.
    public static let ciscoHDLC = LinkType(rawValue: 104)
    /// IEEE 802.11 without radio header.
    public static let ieee80211 = LinkType(rawValue: 105)
    /// OpenBSD loopback: 4-byte address family in network byte order.
    public static let loop = LinkType(rawValue: 108)
    /// Linux cooked capture v1.
    public static let linuxSLL = LinkType(rawValue: 113)
    /// IEEE 802.11 with a radiotap header.
    public static let ieee80211Radiotap = LinkType(rawValue: 127)
    /// Raw IPv4.
    public static let ipv4 = LinkType(rawValue: 228)
    /// Raw IPv6.
    public static let ipv6 = LinkType(rawValue: 229)
    /// Linux netfilter NFLOG.
    public static let nflog = LinkType(rawValue: 239)
    /// Linux cooked capture v2.
    public static let linuxSLL2 = LinkType(rawValue: 276)

    /// Whether the decoder understands this link type.
    public var isSupported: Bool {
        switch rawValue {
        case 0, 1, 8, 9, 10, 12, 14, 50, 101, 104, 105, 107, 108, 113, 127, 228, 229, 239, 276: return true
        default: return false
        }
    }

    public var description: String {
        switch rawValue {
        case 0: return "NULL"
        case 1: return "EN10MB"
        case 8: return "SLIP"
        case 9: return "PPP"
        case 10: return "FDDI"
        case 12, 14, 101: return "RAW"
        case 50: return "PPP_HDLC"
        case 104: return "C_HDLC"
        case 105: return "IEEE802_11"
        case 107: return "FRELAY"
        case 108: return "LOOP"
        case 113: return "LINUX_SLL"
        case 127: return "IEEE802_11_RADIOTAP"
        case 228: return "IPV4"
        case 229: return "IPV6"
        case 239: return "NFLOG"
        case 276: return "LINUX_SLL2"
        default: return "linktype \(rawValue)"
        }
    }
}

/// An IP protocol number (IANA "Assigned Internet Protocol Numbers").
public struct IPProtocol: RawRepresentable, Hashable, Sendable, Comparable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static func < (a: IPProtocol, b: IPProtocol) -> Bool { a.rawValue < b.rawValue }

    public static let hopByHop = IPProtocol(rawValue: 0)
    public static let icmp = IPProtocol(rawValue: 1)
    public static let ipip = IPProtocol(rawValue: 4)
    public static let tcp = IPProtocol(rawValue: 6)
    public static let udp = IPProtocol(rawValue: 17)
    public static let ipv6 = IPProtocol(rawValue: 41)
    public static let routing = IPProtocol(rawValue: 43)
    public static let fragment = IPProtocol(rawValue: 44)
    public static let gre = IPProtocol(rawValue: 47)
    public static let esp = IPProtocol(rawValue: 50)
    public static let ah = IPProtocol(rawValue: 51)
    public static let icmpv6 = IPProtocol(rawValue: 58)
    public static let noNext = IPProtocol(rawValue: 59)
    public static let destinationOptions = IPProtocol(rawValue: 60)
    public static let mobility = IPProtocol(rawValue: 135)

    /// Zeek's `proto` column: tcp, udp, icmp (v4 and v6) or unknown_transport.
    public var zeekName: String {
        switch rawValue {
        case 6: return "tcp"
        case 17: return "udp"
        case 1, 58: return "icmp"
        default: return "unknown_transport"
        }
    }
}

/// An EtherType (IEEE 802 numbers).
public struct EtherType: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let ipv4 = EtherType(rawValue: 0x0800)
    public static let arp = EtherType(rawValue: 0x0806)
    public static let vlan = EtherType(rawValue: 0x8100)
    public static let qinq = EtherType(rawValue: 0x88A8)
    public static let qinqLegacy = EtherType(rawValue: 0x9100)
    public static let ipv6 = EtherType(rawValue: 0x86DD)
    public static let mplsUnicast = EtherType(rawValue: 0x8847)
    public static let mplsMulticast = EtherType(rawValue: 0x8848)
    public static let pppoeDiscovery = EtherType(rawValue: 0x8863)
    public static let pppoeSession = EtherType(rawValue: 0x8864)
    public static let transparentEthernet = EtherType(rawValue: 0x6558)
    public static let erspan2 = EtherType(rawValue: 0x88BE)
    public static let erspan3 = EtherType(rawValue: 0x22EB)
}
