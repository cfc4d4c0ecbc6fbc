/// Flow slots: plain `FlowState` values in fixed-size chunks (growing never moves a flow, so
/// there is no copy spike), with a free list, and an open-addressing (linear probing) index
/// from `FlowKey` to slot. No per-flow object, no reference counting on the packet path.
struct FlowSlots {
    private var store = ValueSlots<FlowState>()
    private(set) var count = 0
    /// Removed flows whose index entries are still to be removed (slot and hash).
    private var pending = UnsafeMutablePointer<(slot: Int32, hash: UInt32)>.allocate(capacity: FlowSlots.pendingCapacity)
    private var pendingCount = 0
    private static var pendingCapacity: Int { 16 }
    /// One word per index entry (one cache line fetch per probe): the high 32 bits are the
    /// entry's hash (its home position and a filter before comparing keys), the low 32 bits
    /// its slot + 1; 0 is empty.
    private var index: UnsafeMutablePointer<UInt64>
    private var indexSize: Int
    private var mask: Int

    init(capacity: Int = 1024) {
        indexSize = capacity * 2
        index = .allocate(capacity: indexSize)
        index.initialize(repeating: 0, count: indexSize)
        mask = indexSize - 1
    }

    func deallocate() {
        store.deallocate()
        index.deallocate()
        pending.deallocate()
    }

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
                if store[s].pointee.key == k && !store[s].pointee.removed { return s }
            }
            i = (i + 1) & mask
        }
    }

    @inline(__always)
    subscript(_ slot: Int32) -> UnsafeMutablePointer<FlowState> { store[slot] }

    /// Starts loading the index entry where a lookup of `h64` begins.
    @inline(__always)
    func prefetchIndex(_ h64: UInt64) {
        prefetch(index + (Int(UInt32(truncatingIfNeeded: h64)) & mask))
    }

    /// The slot of the first entry whose hash matches `h64` within a few probes, or nil: a
    /// guess at the lookup's result (keys are not compared), for prefetching only.
    @inline(__always)
    func guessSlot(_ h64: UInt64) -> Int32? {
        let h = UInt32(truncatingIfNeeded: h64)
        var i = Int(h) & mask
        for _ in 0..<4 {
            let e = index[i]
            if e == 0 { return nil }
            if UInt32(truncatingIfNeeded: e >> 32) == h { return Int32(truncatingIfNeeded: e & 0xFFFF_FFFF) - 1 }
            i = (i + 1) & mask
        }
        return nil
    }

    /// The address of `slot` when it is within the store (live or free): for prefetching, and
    /// for hints that are checked (a freed slot keeps its last flow's bytes, `removed` set).
    @inline(__always)
    func addressIfAllocated(_ slot: Int32) -> UnsafeMutablePointer<FlowState>? { store.addressIfAllocated(slot) }

    /// Stores a new flow and indexes it; returns its slot.
    mutating func insert(_ f: FlowState, hash h64: UInt64) -> Int32 {
        let h = UInt32(truncatingIfNeeded: h64)
        if (count + 1) * 2 > indexSize { growIndex() }
        let slot = store.insert(f)
        var i = Int(h) & mask
        while index[i] != 0 { i = (i + 1) & mask }
        index[i] = FlowSlots.entry(h, slot)
        count += 1
        return slot
    }

    /// Removes a flow that is marked `removed`. Its index entry, which lookups then pass over,
    /// is unindexed later with others (their index lines requested together, so that their
    /// cache misses overlap); only then is the slot freed for reuse.
    mutating func remove(_ slot: Int32) {
        let h = FlowSlots.hash(store[slot].pointee.key)
        prefetchIndex(h)
        pending[pendingCount] = (slot, UInt32(truncatingIfNeeded: h))
        pendingCount += 1
        count -= 1
        if pendingCount == FlowSlots.pendingCapacity { unindexPending() }
    }

    /// Unindexes and frees every flow whose removal is pending.
    mutating func unindexPending() {
        for i in 0..<pendingCount { unindex(pending[i].slot, hash: pending[i].hash) }
        pendingCount = 0
    }

    /// Unindexes a flow and frees its slot (backward-shift deletion keeps probes short).
    private mutating func unindex(_ slot: Int32, hash h: UInt32) {
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
    }

    /// Forgets every flow at once (their values need no deinitialization).
    mutating func removeAll() {
        index.update(repeating: 0, count: indexSize)
        pendingCount = 0
        count = 0
        store.removeAll()
    }

    /// Every live slot, in ascending order (so that reading the flows walks memory in order),
    /// from a bitmap of the index's entries: no sort.
    mutating func liveSlotsInOrder() -> [Int32] {
        unindexPending()
        let words = (store.allocated + 63) / 64
        var bits = [UInt64](repeating: 0, count: words)
        for i in 0..<indexSize where index[i] != 0 {
            let s = Int(Int32(truncatingIfNeeded: index[i] & 0xFFFF_FFFF) - 1)
            bits[s >> 6] |= 1 << UInt64(s & 63)
        }
        var out: [Int32] = []
        out.reserveCapacity(count)
        for w in 0..<words {
            var b = bits[w]
            while b != 0 {
                out.append(Int32(w * 64 + b.trailingZeroBitCount))
                b &= b - 1
            }
        }
        return out
    }

    /// Every live slot.
    mutating func liveSlots() -> [Int32] {
        unindexPending()
        var out: [Int32] = []
        out.reserveCapacity(count)
        for i in 0..<indexSize where index[i] != 0 { out.append(Int32(truncatingIfNeeded: index[i] & 0xFFFF_FFFF) - 1) }
        return out
    }

    private mutating func growIndex() {
        let newSize = indexSize * 2
        let ni = UnsafeMutablePointer<UInt64>.allocate(capacity: newSize)
        ni.initialize(repeating: 0, count: newSize)
        let nmask = newSize - 1
        for i in 0..<indexSize where index[i] != 0 {
            let e = index[i]
            var j = Int(UInt32(truncatingIfNeeded: e >> 32)) & nmask
            while ni[j] != 0 { j = (j + 1) & nmask }
            ni[j] = e
        }
        index.deallocate()
        index = ni
        indexSize = newSize
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

    /// How many elements have ever been allocated (live or free): slots are below this.
    var allocated: Int { used }

    /// Forgets every value at once, keeping the chunks (for plain values only: none is
    /// deinitialized).
    mutating func removeAll() {
        precondition(_isPOD(Element.self), "removeAll() skips deinitialization")
        used = 0
        free.removeAll()
    }

    /// The address of element `i` if it lies in an allocated chunk (its value may be live or
    /// freed, plain data either way): for prefetching, or for a value that is then checked.
    @inline(__always)
    func addressIfAllocated(_ i: Int32) -> UnsafeMutablePointer<Element>? {
        i >= 0 && Int(i) < used ? self[i] : nil
    }
}
