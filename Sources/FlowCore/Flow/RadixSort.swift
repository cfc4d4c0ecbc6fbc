/// A stable least-significant-digit radix sort on an unsigned key (11-bit digits, only as
/// many passes as the largest key needs): linear time for the hundreds of thousands of flows
/// a flush orders.
enum RadixSort {
    static func byKey<T>(_ items: [T], key: (T) -> UInt64) -> [T] {
        let n = items.count
        guard n > 1 else { return items }
        var keys = items.map(key)
        let maxKey = keys.max() ?? 0
        let bitsNeeded = 64 - maxKey.leadingZeroBitCount
        var order = Array(0..<n)
        var next = [Int](repeating: 0, count: n)
        var nextKeys = [UInt64](repeating: 0, count: n)
        let digitBits = 11, radix = 1 << digitBits
        var counts = [Int](repeating: 0, count: radix)
        var shift = 0
        while shift < bitsNeeded {
            for i in 0..<radix { counts[i] = 0 }
            for k in keys { counts[Int((k >> UInt64(shift)) & UInt64(radix - 1))] += 1 }
            var total = 0
            for i in 0..<radix {
                let c = counts[i]
                counts[i] = total
                total += c
            }
            for i in 0..<n {
                let d = Int((keys[i] >> UInt64(shift)) & UInt64(radix - 1))
                let to = counts[d]
                counts[d] = to + 1
                next[to] = order[i]
                nextKeys[to] = keys[i]
            }
            swap(&order, &next)
            swap(&keys, &nextKeys)
            shift += digitBits
        }
        return order.map { items[$0] }
    }
}
