/// A min-heap (4-ary) of flow deadlines, ordered by (time, flow serial) so that flows that
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

    @inline(__always)
    var topTime: Double { items.isEmpty ? .infinity : items[0].time }

    @inline(__always)
    var topSlot: Int32? { items.isEmpty ? nil : items[0].slot }

    @inline(__always)
    private static func less(_ a: Entry, _ b: Entry) -> Bool {
        a.time < b.time || (a.time == b.time && a.serial < b.serial)
    }

    /// Four children a node: half the depth of a binary heap, and a node's children sit side
    /// by side (fewer cache misses in a heap of hundreds of thousands of deadlines).
    private static var arity: Int { 4 }

    mutating func push(_ e: Entry) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / TimerHeap.arity
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
                let first = TimerHeap.arity * i + 1
                if first >= n { break }
                var m = first
                var c = first + 1
                let end = min(first + TimerHeap.arity, n)
                while c < end {
                    if TimerHeap.less(items[c], items[m]) { m = c }
                    c += 1
                }
                if !TimerHeap.less(items[m], items[i]) { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return out
    }

    mutating func removeAll() { items.removeAll() }
}
