/// A hint to the CPU to start loading the cache line at `p` (LLVM's prefetch intrinsic: read,
/// high temporal locality, data cache). It has no effect on results and never faults.
@_silgen_name("llvm.prefetch.p0")
func _prefetch(_ p: UnsafeRawPointer, _ rw: Int32, _ locality: Int32, _ cacheType: Int32)

@inline(__always)
func prefetch(_ p: UnsafeRawPointer) { _prefetch(p, 0, 3, 1) }

