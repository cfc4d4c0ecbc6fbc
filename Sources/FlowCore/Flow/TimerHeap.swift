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
