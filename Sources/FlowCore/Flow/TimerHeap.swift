/// A min-heap (8-ary) of flow deadlines, ordered by (time, flow serial) so that flows that
/// expire at the same packet time are emitted in a deterministic order. Entries name a slot
/// and carry the flow's timer token; an entry whose token is stale is skipped when popped.
///
/// The heap holds one entry per open flow and more, far more than the caches: a pop walks
/// from the root to a leaf, and every level below the top few is a cache miss. Eight children
/// a node halve the levels of a binary heap (and a third fewer than four), and a node's
/// children sit side by side, so a level's lines are fetched together. The storage is a plain
/// buffer owned by the heap (no copy-on-write checks on the hot path).
struct TimerHeap {
    struct Entry {
        var time: Double
        var serial: UInt64
        var slot: Int32
        var token: UInt32
    }
    private var items: UnsafeMutablePointer<Entry>
    private var capacity: Int
    private(set) var count = 0

    init() {
        capacity = 1024
        items = TimerHeap.allocate(capacity)
    }

    /// Storage where every node's eight children (192 bytes) fill exactly three cache lines:
    /// entry 1 starts on a 64-byte boundary.
    private static func allocate(_ n: Int) -> UnsafeMutablePointer<Entry> {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: 64 + n * MemoryLayout<Entry>.stride, alignment: 64)
        return (raw + (64 - MemoryLayout<Entry>.stride)).bindMemory(to: Entry.self, capacity: n)
    }

    private static func free(_ p: UnsafeMutablePointer<Entry>) {
        (UnsafeMutableRawPointer(p) - (64 - MemoryLayout<Entry>.stride)).deallocate()
    }

    /// Frees the storage (the owner calls this once, when it is done with the heap).
    func deallocate() { TimerHeap.free(items) }

    var isEmpty: Bool { count == 0 }

    @inline(__always)
    var topTime: Double { count == 0 ? .infinity : items[0].time }

    @inline(__always)
    var topSlot: Int32? { count == 0 ? nil : items[0].slot }

    @inline(__always)
    private static func less(_ a: Entry, _ b: Entry) -> Bool {
        a.time < b.time || (a.time == b.time && a.serial < b.serial)
    }

    private static var arity: Int { 8 }

    mutating func push(_ e: Entry) {
        if count == capacity { grow() }
        var i = count
        count += 1
        // Sift up, moving parents down into the hole.
        while i > 0 {
            let p = (i - 1) / TimerHeap.arity
            guard TimerHeap.less(e, items[p]) else { break }
            items[i] = items[p]
            i = p
        }
        items[i] = e
    }

    mutating func pop() -> Entry? {
        guard count > 0 else { return nil }
        let out = items[0]
        count -= 1
        guard count > 0 else { return out }
        let last = items[count]
        let n = count
        var i = 0
        // Sift the last entry down from the root, moving the least child up into the hole.
        while true {
            let first = TimerHeap.arity * i + 1
            if first >= n { break }
            var m = first
            var c = first + 1
            let end = min(first + TimerHeap.arity, n)
            while c < end {
                if TimerHeap.less(items[c], items[m]) { m = c }
                c += 1
            }
            guard TimerHeap.less(items[m], last) else { break }
            items[i] = items[m]
            i = m
        }
        items[i] = last
        return out
    }

    mutating func removeAll() { count = 0 }

    private mutating func grow() {
        let bigger = TimerHeap.allocate(capacity * 2)
        bigger.moveInitialize(from: items, count: count)
        TimerHeap.free(items)
        items = bigger
        capacity *= 2
    }
}
