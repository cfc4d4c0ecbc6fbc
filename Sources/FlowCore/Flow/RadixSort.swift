/// A stable least-significant-digit radix sort on an unsigned key (11-bit digits, only as
/// many passes as the largest key needs): linear time for the hundreds of thousands of flows
/// a flush orders. Elements move whole from pass to pass (no index array to gather through).
enum RadixSort {
    static func byKey<T>(_ items: [T], key: (T) -> UInt64) -> [T] {
        let n = items.count
        guard n > 1 else { return items }
        var maxKey: UInt64 = 0
        for x in items { maxKey = max(maxKey, key(x)) }
        let bitsNeeded = 64 - maxKey.leadingZeroBitCount
        let digitBits = 11, radix = 1 << digitBits, digitMask = UInt64(radix - 1)
        var a = items
        var b = items
        var counts = [Int](repeating: 0, count: radix)
        var shift: UInt64 = 0
        a.withUnsafeMutableBufferPointer { pa in
            b.withUnsafeMutableBufferPointer { pb in
                counts.withUnsafeMutableBufferPointer { c in
                    var src = pa, dst = pb
                    while shift < UInt64(bitsNeeded) {
                        for i in 0..<radix { c[i] = 0 }
                        for i in 0..<n { c[Int((key(src[i]) >> shift) & digitMask)] += 1 }
                        var total = 0
                        for i in 0..<radix {
                            let k = c[i]
                            c[i] = total
                            total += k
                        }
                        for i in 0..<n {
                            let d = Int((key(src[i]) >> shift) & digitMask)
                            dst[c[d]] = src[i]
                            c[d] += 1
                        }
                        swap(&src, &dst)
                        shift += UInt64(digitBits)
                    }
                    // An odd number of passes leaves the result in `b`'s storage.
                    if src.baseAddress != pa.baseAddress { pa.baseAddress!.update(from: src.baseAddress!, count: n) }
                }
            }
        }
        return a
    }
}
