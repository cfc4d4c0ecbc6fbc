/// A binary min-heap of flow deadlines, ordered by (time, flow serial) so that flows that
/// expire at the same packet time are emitted in a deterministic order. Entries name a slot
/// and carry the flow's timer token; an entry whose token is stale is skipped when popped.
struct TimerHeap {
    struct Entry {
        var time: Double
        var serial: UInt64
        var slot: Int32
        var token: UInt32
    }
    private(set) var items: [Entry] = []

    var isEmpty: Bool { items.isEmpty }
    var count: Int { items.count }

    @inline(__always)
    var topTime: Double { items.isEmpty ? .infinity : items[0].time }

    @inline(__always)
    private static func less(_ a: Entry, _ b: Entry) -> Bool {
        a.time < b.time || (a.time == b.time && a.serial < b.serial)
    }

    mutating func push(_ e: Entry) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if TimerHeap.less(items[i], items[p]) { items.swapAt(i, p); i = p } else { break }
        }
    }

    mutating func pop() -> Entry? {
        guard !items.isEmpty else { return nil }
        let out = items[0]
        let lastItem = items.removeLast()
        if !items.isEmpty {
            items[0] = lastItem
            var i = 0
            let n = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && TimerHeap.less(items[l], items[m]) { m = l }
                if r < n && TimerHeap.less(items[r], items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return out
    }

    mutating func removeAll() { items.removeAll() }
}

/// Flow slots: plain `FlowState` values in fixed-size chunks (growing never moves a flow, so
/// there is no copy spike), with a free list, and an open-addressing (linear probing) index
/// from `FlowKey` to slot. No per-flow object, no reference counting on the packet path.
struct FlowSlots {
    private var store = ValueSlots<FlowState>()
    private(set) var count = 0
    /// index[i] = slot + 1, or 0 when empty; hashes[i] keeps the low 32 bits of that entry's
    /// hash (its home position and a cheap filter before comparing keys).
    private var index: [Int32]
    private var hashes: [UInt32]
    private var mask: Int

    init(capacity: Int = 1024) {
        index = [Int32](repeating: 0, count: capacity * 2)
        hashes = [UInt32](repeating: 0, count: capacity * 2)
        mask = capacity * 2 - 1
    }

    func deallocate() { store.deallocate() }

    @inline(__always)
    static func hash(_ k: FlowKey) -> UInt64 {
        var x = k.addrA.lo &* 0x9E37_79B9_7F4A_7C15
        x ^= (k.addrB.lo &+ 0x632B_E59B_D9B4_E019) &* 0xC2B2_AE3D_27D4_EB4F
        x ^= k.addrA.hi &* 0x1656_67B1_9E37_79F9
        x ^= k.addrB.hi &* 0x27D4_EB2F_1656_67C5
        x ^= (UInt64(k.portA) << 32 | UInt64(k.portB) << 8 | UInt64(k.proto.rawValue)) &* 0xFF51_AFD7_ED55_8CCD
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
            let s = index[i]
            if s == 0 { return nil }
            if hashes[i] == h && store[s - 1].pointee.key == k { return s - 1 }
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
        index[i] = slot + 1
        hashes[i] = h
        count += 1
        return slot
    }

    /// Unindexes a flow and frees its slot (backward-shift deletion keeps probes short).
    mutating func remove(_ slot: Int32) {
        let h = UInt32(truncatingIfNeeded: FlowSlots.hash(store[slot].pointee.key))
        var i = Int(h) & mask
        while index[i] != slot + 1 {
            if index[i] == 0 { return }
            i = (i + 1) & mask
        }
        index[i] = 0
        var j = (i + 1) & mask
        while index[j] != 0 {
            let ideal = Int(hashes[j]) & mask
            // Move j back to the hole if its ideal position is not in (i, j].
            let inRange = i <= j ? (ideal > i && ideal <= j) : (ideal > i || ideal <= j)
            if !inRange {
                index[i] = index[j]; hashes[i] = hashes[j]
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
        for s in index where s != 0 { out.append(s - 1) }
        return out
    }

    private mutating func growIndex() {
        let newSize = index.count * 2
        var ni = [Int32](repeating: 0, count: newSize)
        var nh = [UInt32](repeating: 0, count: newSize)
        let nmask = newSize - 1
        for i in 0..<index.count where index[i] != 0 {
            var j = Int(hashes[i]) & nmask
            while ni[j] != 0 { j = (j + 1) & nmask }
            ni[j] = index[i]; nh[j] = hashes[i]
        }
        index = ni; hashes = nh; mask = nmask
    }
}
