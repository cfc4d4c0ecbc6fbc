/// A hash table from conntrack keys to values, for the agent's flow table: open addressing
/// with linear probing over one control byte per slot (empty, deleted, or full with seven bits
/// of the hash), the keys and the values in arrays of their own.
///
/// Why not `Dictionary`: each connection inserts and removes a few entries, thousands of times
/// a second. A key's `tuple` is already a 64-bit hash of the tuple, so one multiply spreads it
/// (no SipHash of every key, nor of every key a deletion moves); a removal leaves a marker
/// instead of moving entries back; a probe reads control bytes, not keys; and the table shrinks
/// again after a burst (a `Dictionary` never gives its capacity back).
///
/// Slots are stable while no entry is inserted: `slot(of:)`, then `self[slot:]` reads or changes
/// a value in place, `remove(at:)` takes it out. Iteration order is the slots' order (not
/// meaningful: callers that write or print sort first).
final class KeyTable<Value> {
    typealias Key = ConntrackFlows.Key

    private(set) var count = 0
    private var deleted = 0
    private(set) var capacity: Int
    private var mask: Int
    private var shift: UInt64
    private var ctrl: UnsafeMutablePointer<UInt8>
    private var keys: UnsafeMutablePointer<Key>
    private var vals: UnsafeMutablePointer<Value>

    private static var empty: UInt8 { 0 }
    private static var tombstone: UInt8 { 1 }
    private static var minimumCapacity: Int { 16 }

    init(capacity requested: Int = 16) {
        (capacity, mask, shift, ctrl, keys, vals) = KeyTable.storage(for: requested)
    }

    /// Empty storage of at least `n` slots (a power of two): capacity, mask, shift, and the
    /// control bytes (all empty), keys and values.
    private static func storage(for n: Int) -> (Int, Int, UInt64, UnsafeMutablePointer<UInt8>, UnsafeMutablePointer<Key>,
                                                UnsafeMutablePointer<Value>) {
        var c = KeyTable.minimumCapacity
        while c < n { c <<= 1 }
        let ctrl = UnsafeMutablePointer<UInt8>.allocate(capacity: c)
        ctrl.initialize(repeating: KeyTable.empty, count: c)
        return (c, c - 1, UInt64(64 - c.trailingZeroBitCount), ctrl, .allocate(capacity: c), .allocate(capacity: c))
    }

    deinit {
        for i in 0..<capacity where ctrl[i] & 0x80 != 0 { (vals + i).deinitialize(count: 1) }
        ctrl.deallocate(); keys.deallocate(); vals.deallocate()
    }

    var isEmpty: Bool { count == 0 }

    @inline(__always)
    private static func hash(_ k: Key) -> UInt64 {
        (k.tuple ^ (UInt64(k.id) << 16 | UInt64(k.zone))) &* 0x9E37_79B9_7F4A_7C15
    }

    @inline(__always)
    private static func tag(_ h: UInt64) -> UInt8 { UInt8(truncatingIfNeeded: h >> 8) | 0x80 }

    /// The slot holding `k`, if any.
    @inline(__always)
    func slot(of k: Key) -> Int? {
        let h = KeyTable.hash(k), t = KeyTable.tag(h)
        var i = Int(truncatingIfNeeded: h >> shift)
        while true {
            let c = ctrl[i]
            if c == KeyTable.empty { return nil }
            if c == t && keys[i] == k { return i }
            i = (i + 1) & mask
        }
    }

    func contains(_ k: Key) -> Bool { slot(of: k) != nil }

    /// The value in slot `i` (one `slot(of:)` returned since the last insertion), read or
    /// changed in place.
    subscript(slot i: Int) -> Value {
        get { vals[i] }
        _modify { yield &vals[i] }
    }

    func key(at i: Int) -> Key { keys[i] }

    subscript(k: Key) -> Value? {
        get { slot(of: k).map { vals[$0] } }
        set {
            if let v = newValue { updateValue(v, forKey: k) } else { removeValue(forKey: k) }
        }
    }

    /// Sets the value of `k`; returns the value it replaced.
    @discardableResult
    func updateValue(_ v: Value, forKey k: Key) -> Value? {
        if count + deleted + 1 > capacity - capacity / 4 || (capacity > 1024 && count * 8 < capacity) {
            resize(for: count + 1)
        }
        let h = KeyTable.hash(k), t = KeyTable.tag(h)
        var i = Int(truncatingIfNeeded: h >> shift)
        var free = -1
        while true {
            let c = ctrl[i]
            if c == KeyTable.empty { break }
            if c == KeyTable.tombstone {
                if free < 0 { free = i }
            } else if c == t && keys[i] == k {
                let old = (vals + i).move()
                (vals + i).initialize(to: v)
                return old
            }
            i = (i + 1) & mask
        }
        if free >= 0 {
            i = free
            deleted -= 1
        }
        ctrl[i] = t
        (keys + i).initialize(to: k)
        (vals + i).initialize(to: v)
        count += 1
        return nil
    }

    /// Takes the value out of slot `i`. No other entry moves.
    @discardableResult
    func remove(at i: Int) -> Value {
        precondition(ctrl[i] & 0x80 != 0, "KeyTable: slot \(i) is empty")
        let v = (vals + i).move()
        count -= 1
        if ctrl[(i + 1) & mask] == KeyTable.empty {
            // The end of a run: this slot and the markers before it need not stay marked.
            ctrl[i] = KeyTable.empty
            var j = (i - 1) & mask
            while ctrl[j] == KeyTable.tombstone {
                ctrl[j] = KeyTable.empty
                deleted -= 1
                j = (j - 1) & mask
            }
        } else {
            ctrl[i] = KeyTable.tombstone
            deleted += 1
        }
        return v
    }

    @discardableResult
    func removeValue(forKey k: Key) -> Value? {
        guard let i = slot(of: k) else { return nil }
        return remove(at: i)
    }

    /// The occupied slots, in slot order (valid until the next insertion).
    var slots: [Int] {
        var out: [Int] = []
        out.reserveCapacity(count)
        for i in 0..<capacity where ctrl[i] & 0x80 != 0 { out.append(i) }
        return out
    }

    /// Calls `body` with each occupied slot (no insertion from `body`; removal is allowed).
    func forEachSlot(_ body: (Int) -> Void) {
        for i in 0..<capacity where ctrl[i] & 0x80 != 0 { body(i) }
    }

    var allKeys: [Key] { slots.map { keys[$0] } }
    var values: [Value] { slots.map { vals[$0] } }

    /// Rehashes into a table sized for `n` entries (at most half full), dropping the markers.
    private func resize(for n: Int) {
        let oldCtrl = ctrl, oldKeys = keys, oldVals = vals, oldCapacity = capacity
        (capacity, mask, shift, ctrl, keys, vals) = KeyTable.storage(for: 2 * n)
        deleted = 0
        for j in 0..<oldCapacity where oldCtrl[j] & 0x80 != 0 {
            let k = oldKeys[j]
            let h = KeyTable.hash(k)
            var i = Int(truncatingIfNeeded: h >> shift)
            while ctrl[i] != KeyTable.empty { i = (i + 1) & mask }
            ctrl[i] = KeyTable.tag(h)
            (keys + i).initialize(to: k)
            (vals + i).moveInitialize(from: oldVals + j, count: 1)
        }
        oldCtrl.deallocate(); oldKeys.deallocate(); oldVals.deallocate()
    }
}
