/// A canonical, direction-free 5-tuple: the lower (address, port) endpoint is stored first, so
/// A→B and B→A give the same key (gopacket's symmetric flow hash, Zeek's IPBasedConnKey).
///
/// For ICMP the "ports" are Zeek's: the message type and its counterpart type (or the code).
public struct FlowKey: Hashable, Sendable, Comparable {
    public var addrA: IPAddress
    public var addrB: IPAddress
    public var portA: UInt16
    public var portB: UInt16
    public var proto: IPProtocol
    /// With VLAN-aware keys (Zeek's vlan_fivetuple): outer and inner VLAN IDs, 12 bits each,
    /// packed into the key's spare bytes. Zero otherwise.
    var vlanHigh: UInt8 = 0
    var vlanLow: UInt16 = 0

    /// The packed VLAN IDs: outer << 12 | inner.
    public var vlans: UInt32 { UInt32(vlanHigh) << 16 | UInt32(vlanLow) }

    /// Builds the canonical key; `flipped` is true when (src, sport) was the higher endpoint.
    @inline(__always)
    public init(src: IPAddress, sport: UInt16, dst: IPAddress, dport: UInt16, proto: IPProtocol, vlans: UInt32 = 0,
                flipped: inout Bool) {
        if src < dst || (src == dst && sport <= dport) {
            addrA = src; portA = sport; addrB = dst; portB = dport; flipped = false
        } else {
            addrA = dst; portA = dport; addrB = src; portB = sport; flipped = true
        }
        self.proto = proto
        vlanHigh = UInt8(truncatingIfNeeded: vlans >> 16)
        vlanLow = UInt16(truncatingIfNeeded: vlans)
    }

    /// The key of endpoints already in canonical order (the decoding thread ordered them).
    @inline(__always)
    init(a: IPAddress, portA: UInt16, b: IPAddress, portB: UInt16, proto: IPProtocol, vlans: UInt32) {
        addrA = a; self.portA = portA; addrB = b; self.portB = portB
        self.proto = proto
        vlanHigh = UInt8(truncatingIfNeeded: vlans >> 16)
        vlanLow = UInt16(truncatingIfNeeded: vlans)
    }

    @inline(__always)
    public static func == (a: FlowKey, b: FlowKey) -> Bool {
        a.addrA.lo == b.addrA.lo && a.addrB.lo == b.addrB.lo && a.portA == b.portA && a.portB == b.portB
            && a.proto == b.proto && a.addrA.hi == b.addrA.hi && a.addrB.hi == b.addrB.hi
            && a.vlanLow == b.vlanLow && a.vlanHigh == b.vlanHigh
    }

    @inline(__always)
    public func hash(into hasher: inout Hasher) {
        // One mixed word: cheaper than feeding every field to SipHash separately.
        var x = addrA.lo &* 0x9E37_79B9_7F4A_7C15
        x ^= addrB.lo &* 0xC2B2_AE3D_27D4_EB4F
        x ^= addrA.hi &* 0x1656_67B1_9E37_79F9
        x ^= addrB.hi &* 0x27D4_EB2F_1656_67C5
        x ^= (UInt64(portA) << 32 | UInt64(portB) << 8 | UInt64(proto.rawValue)) &* 0xFF51_AFD7_ED55_8CCD
        x ^= UInt64(vlans) &* 0x9E37_79B9
        hasher.combine(x)
    }

    public static func < (a: FlowKey, b: FlowKey) -> Bool {
        if a.addrA != b.addrA { return a.addrA < b.addrA }
        if a.portA != b.portA { return a.portA < b.portA }
        if a.addrB != b.addrB { return a.addrB < b.addrB }
        if a.portB != b.portB { return a.portB < b.portB }
        if a.proto != b.proto { return a.proto < b.proto }
        return a.vlans < b.vlans
    }
}
