/// A named kind of malformed or unusual input, counted rather than fatal.
///
/// Names follow Zeek's weird.log where Zeek has one, so that counts can be compared.
public enum Anomaly: Int, CaseIterable, Sendable, Comparable {
    case truncatedLinkHeader
    case unsupportedLinkFrame
    case truncatedVLANHeader
    case truncatedMPLSHeader
    case truncatedPPPoEHeader
    case truncatedIPHeader
    case badIPVersion
    case badIPHeaderLength
    case ipLengthExceedsFrame
    case truncatedIPv6ExtensionHeader
    case incompleteFragmentedDatagram
    case fragmentTooLarge
    case truncatedTCPHeader
    case badTCPHeaderLength
    case truncatedUDPHeader
    case udpLengthMismatch
    case truncatedICMPHeader
    case truncatedTunnelHeader
    case tunnelDepthExceeded
    case protected80211Frame
    case malformedDNS
    case truncatedNFLOG
    case snaplenTruncated

    public static func < (a: Anomaly, b: Anomaly) -> Bool { a.rawValue < b.rawValue }

    /// The stable, public name (Zeek's weird name where one exists).
    public var name: String {
        switch self {
        case .truncatedLinkHeader: return "truncated_link_header"
        case .unsupportedLinkFrame: return "unknown_link_frame"
        case .truncatedVLANHeader: return "truncated_vlan_header"
        case .truncatedMPLSHeader: return "truncated_mpls_header"
        case .truncatedPPPoEHeader: return "truncated_pppoe_header"
        case .truncatedIPHeader: return "truncated_IP"
        case .badIPVersion: return "unknown_ip_version"
        case .badIPHeaderLength: return "bad_IP_header_len"
        case .ipLengthExceedsFrame: return "internally_truncated_header"
        case .truncatedIPv6ExtensionHeader: return "truncated_ipv6_ext_header"
        case .incompleteFragmentedDatagram: return "incomplete_fragmented_datagram"
        case .fragmentTooLarge: return "fragment_size_inconsistency"
        case .truncatedTCPHeader: return "truncated_TCP_header"
        case .badTCPHeaderLength: return "bad_TCP_header_len"
        case .truncatedUDPHeader: return "truncated_UDP_header"
        case .udpLengthMismatch: return "UDP_datagram_length_mismatch"
        case .truncatedICMPHeader: return "truncated_ICMP_header"
        case .truncatedTunnelHeader: return "truncated_tunnel_header"
        case .tunnelDepthExceeded: return "exceeded_tunnel_max_depth"
        case .protected80211Frame: return "encrypted_802_11_frame"
        case .malformedDNS: return "malformed_dns"
        case .truncatedNFLOG: return "truncated_nflog"
        case .snaplenTruncated: return "snaplen_truncated_packet"
        }
    }
}

/// Counters for every anomaly kind; a fixed array, allocated once per analysis.
public struct AnomalyCounters: Sendable, Equatable {
    public private(set) var counts: [Int]
    public init() { counts = Array(repeating: 0, count: Anomaly.allCases.count) }

    @inline(__always)
    public mutating func record(_ a: Anomaly) { counts[a.rawValue] &+= 1 }

    public subscript(_ a: Anomaly) -> Int { counts[a.rawValue] }

    public var total: Int { counts.reduce(0, +) }

    /// Non-zero counters, in a fixed order (declaration order).
    public var nonZero: [(name: String, count: Int)] {
        Anomaly.allCases.compactMap { counts[$0.rawValue] > 0 ? ($0.name, counts[$0.rawValue]) : nil }
    }

}
