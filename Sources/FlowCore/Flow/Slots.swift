/// Flow slots: plain `FlowState` values in fixed-size chunks (growing never moves a flow, so
/// there is no copy spike), with a free list, and an open-addressing (linear probing) index
/// from `FlowKey` to slot. No per-flow object, no reference counting on the packet path.
struct FlowSlots {
    private var store = ValueSlots<FlowState>()
    private(set) var count = 0
    /// One word per index entry (one cache line fetch per probe): the high 32 bits are the
    /// entry's hash (its home position and a filter before comparing keys), the low 32 bits
    /// its slot + 1; 0 is empty.
    private var index: [UInt64]
    private var mask: Int

    init(capacity: Int = 1024) {
        index = [UInt64](repeating: 0, count: capacity * 2)
        mask = capacity * 2 - 1
    }

    func deallocate() { store.deallocate() }

    @inline(__always)
    private static func entry(_ h: UInt32, _ slot: Int32) -> UInt64 { UInt64(h) << 32 | UInt64(UInt32(slot + 1)) }

    @inline(__always)
    static func hash(_ k: FlowKey) -> UInt64 {
        var x = k.addrA.lo &* 0x9E37_79B9_7F4A_7C15
        x ^= (k.addrB.lo &+ 0x632B_E59B_D9B4_E019) &* 0xC2B2_AE3D_27D4_EB4F
        x ^= k.addrA.hi &* 0x1656_67B1_9E37_79F9
        x ^= k.addrB.hi &* 0x27D4_EB2F_1656_67C5
        x ^= (UInt64(k.portA) << 32 | UInt64(k.portB) << 8 | UInt64(k.proto.rawValue)) &* 0xFF51_AFD7_ED55_8CCD
        x ^= UInt64(k.vlanHigh) << 48 | UInt64(k.vlanLow) << 32
        x ^= x >> 29
        x = x &* 0xBF58_476D_1CE4_E5B9
        x ^= x >> 32
        return x
    }

    @inline(__always)
    func find(_ k: FlowKey, hash h64: UInt64) -> Int32? {
        let h = UInt32(truncatingIfNeeded: h64)
        var i = Int(h) & mask
        while true {
            let e = index[i]
            if e == 0 { return nil }
            if UInt32(truncatingIfNeeded: e >> 32) == h {
                let s = Int32(truncatingIfNeeded: e & 0xFFFF_FFFF) - 1
                if store[s].pointee.key == k { return s }
            }
            i = (i + 1) & mask
        }
    }

    @inline(__always)
    subscript(_ slot: Int32) -> UnsafeMutablePointer<FlowState> { store[slot] }

    /// Stores a new flow and indexes it; returns its slot.
    mutating func insert(_ f: FlowState, hash h64: UInt64) -> Int32 {
        let h = UInt32(truncatingIfNeeded: h64)
        if (count + 1) * 2 > index.count { growIndex() }
        let slot = store.insert(f)
        var i = Int(h) & mask
        while index[i] != 0 { i = (i + 1) & mask }
        index[i] = FlowSlots.entry(h, slot)
        count += 1
        return slot
    }

    /// Unindexes a flow and frees its slot (backward-shift deletion keeps probes short).
    mutating func remove(_ slot: Int32) {
        let h = UInt32(truncatingIfNeeded: FlowSlots.hash(store[slot].pointee.key))
        let target = FlowSlots.entry(h, slot)
        var i = Int(h) & mask
        while index[i] != target {
            if index[i] == 0 { return }
            i = (i + 1) & mask
        }
        index[i] = 0
        var j = (i + 1) & mask
        while index[j] != 0 {
            let ideal = Int(UInt32(truncatingIfNeeded: index[j] >> 32)) & mask
            // Move j back to the hole if its home position is not in (i, j].
            let inRange = i <= j ? (ideal > i && ideal <= j) : (ideal > i || ideal <= j)
            if !inRange {
                index[i] = index[j]
                index[j] = 0
                i = j
            }
            j = (j + 1) & mask
        }
        store.remove(slot)
        count -= 1
    }

    /// Every live slot.
    func liveSlots() -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(count)
        for e in index where e != 0 { out.append(Int32(truncatingIfNeeded: e & 0xFFFF_FFFF) - 1) }
        return out
    }

    private mutating func growIndex() {
        let newSize = index.count * 2
        var ni = [UInt64](repeating: 0, count: newSize)
        let nmask = newSize - 1
        for e in index where e != 0 {
            var j = Int(UInt32(truncatingIfNeeded: e >> 32)) & nmask
            while ni[j] != 0 { j = (j + 1) & nmask }
            ni[j] = e
        }
        index = ni
        mask = nmask
    }
}

/// A growable store of plain values with a free list, in fixed-size chunks: growing adds a
/// chunk and never moves existing values (no copy spike, and pointers stay valid).
struct ValueSlots<Element> {
    private static var chunkShift: Int { 14 }
    private static var chunkSize: Int { 1 << chunkShift }
    private var chunks: [UnsafeMutablePointer<Element>] = []
    private var used = 0
    private var free: [Int32] = []

    init() {}

    func deallocate() { for c in chunks { c.deallocate() } }

    @inline(__always)
    subscript(_ i: Int32) -> UnsafeMutablePointer<Element> {
        let n = Int(i)
        return chunks[n >> Self.chunkShift] + (n & (Self.chunkSize - 1))
    }

    mutating func insert(_ v: Element) -> Int32 {
        if let s = free.popLast() {
            self[s].initialize(to: v)
            return s
        }
        if used == chunks.count * Self.chunkSize {
            chunks.append(.allocate(capacity: Self.chunkSize))
        }
        let s = Int32(used)
        used += 1
        self[s].initialize(to: v)
        return s
    }

    mutating func remove(_ i: Int32) {
        _ = self[i].move()
        free.append(i)
    }
}
