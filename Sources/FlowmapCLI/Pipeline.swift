import FlowCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A bounded single-producer, single-consumer ring of event batches (lock-free; the waiting
/// side yields the CPU).
final class BatchRing: @unchecked Sendable {
    private let slots: UnsafeMutablePointer<EventBatch?>
    private let size: Int
    private let head = Atomic<Int>(0)  // next slot to read (consumer)
    private let tail = Atomic<Int>(0)  // next slot to write (producer)
    private let closed = Atomic<Bool>(false)

    init(size: Int) {
        self.size = size
        slots = .allocate(capacity: size)
        slots.initialize(repeating: nil, count: size)
    }

    deinit {
        slots.deinitialize(count: size)
        slots.deallocate()
    }

    func push(_ b: EventBatch) {
        let t = tail.load(ordering: .relaxed)
        while t - head.load(ordering: .acquiring) >= size { sched_yield() }
        slots[t % size] = b
        tail.store(t + 1, ordering: .releasing)
    }

    /// The next batch, or nil once the ring is closed and drained.
    func pop() -> EventBatch? {
        let h = head.load(ordering: .relaxed)
        while h >= tail.load(ordering: .acquiring) {
            if closed.load(ordering: .acquiring) && h >= tail.load(ordering: .acquiring) { return nil }
            sched_yield()
        }
        let b = slots[h % size]
        slots[h % size] = nil
        head.store(h + 1, ordering: .releasing)
        return b
    }

    func close() { closed.store(true, ordering: .releasing) }
}

/// Runs `body` on a new POSIX thread; `join()` waits for it.
final class WorkerThread: @unchecked Sendable {
    private var thread = pthread_t()
    private let body: () -> Void

    init(_ body: @escaping () -> Void) {
        self.body = body
        let box = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            let me = Unmanaged<WorkerThread>.fromOpaque(raw!).takeRetainedValue()
            me.body()
            return nil
        }, box)
        if rc != 0 {
            // No thread: run inline so work is never lost.
            Unmanaged<WorkerThread>.fromOpaque(box).release()
            body()
            thread = pthread_t()
        }
    }

    func join() {
        if thread != pthread_t() { pthread_join(thread, nil) }
    }
}

/// Decoding on the calling thread, the flow table (and output) on a second one: the two stages
/// meet in rings of preallocated event batches, in order, so results are identical to a
/// single-threaded run.
final class Pipeline: @unchecked Sendable {
    let analyzer: PacketAnalyzer
    private let full: BatchRing
    private let empty: BatchRing
    private let worker: WorkerThread

    init(table: FlowTable, batches: Int = 8, batchSize: Int = 1024) {
        // One malloc arena for both threads: the table thread allocates little (a record's
        // strings per flow), and a second arena would hold megabytes of free memory.
        _ = glibcMallopt(-8 /* M_ARENA_MAX, malloc.h */, 1)
        let full = BatchRing(size: batches + 1)
        let empty = BatchRing(size: batches + 1)
        for _ in 1..<batches { empty.push(EventBatch(capacity: batchSize)) }
        self.full = full
        self.empty = empty
        analyzer = PacketAnalyzer(batch: EventBatch(capacity: batchSize)) { done in
            full.push(done)
            return empty.pop() ?? EventBatch(capacity: batchSize)
        }
        worker = WorkerThread {
            while let b = full.pop() {
                table.apply(b)
                b.clear()
                empty.push(b)
            }
            table.flush()
        }
    }

    /// Hands off the last events, waits for the table thread to apply them and flush.
    func finish() {
        analyzer.finishDecoding()
        full.close()
        worker.join()
    }
}

/// glibc's mallopt(3); <malloc.h> is not part of the Glibc module.
@_silgen_name("mallopt")
private func glibcMallopt(_ param: Int32, _ value: Int32) -> Int32

/// How many CPUs this process may use.
func availableCPUs() -> Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
