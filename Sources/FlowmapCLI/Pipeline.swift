import FlowCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A bounded single-producer, single-consumer ring (lock-free; a waiting side yields the CPU,
/// running `whileWaiting` so that it can keep the other direction moving).
final class SPSCRing<Element>: @unchecked Sendable {
    private let slots: UnsafeMutablePointer<Element?>
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

    /// Seconds spent waiting to push (producer side) and to pop (consumer side).
    private(set) var pushWait = 0.0
    private(set) var popWait = 0.0

    func push(_ e: Element, whileWaiting: () -> Void = {}) {
        let t = tail.load(ordering: .relaxed)
        if t - head.load(ordering: .acquiring) >= size {
            let start = Terminal.monotonic()
            while t - head.load(ordering: .acquiring) >= size {
                whileWaiting()
                sched_yield()
            }
            pushWait += Terminal.monotonic() - start
        }
        slots[t % size] = e
        tail.store(t + 1, ordering: .releasing)
    }

    /// The next element, waiting for one; nil once the ring is closed and drained.
    func pop(whileWaiting: () -> Void = {}) -> Element? {
        let h = head.load(ordering: .relaxed)
        if h >= tail.load(ordering: .acquiring) {
            let start = Terminal.monotonic()
            defer { popWait += Terminal.monotonic() - start }
            while h >= tail.load(ordering: .acquiring) {
                if closed.load(ordering: .acquiring) && h >= tail.load(ordering: .acquiring) { return nil }
                whileWaiting()
                sched_yield()
            }
        }
        return take(h)
    }

    /// The next element if one is ready.
    func tryPop() -> Element? {
        let h = head.load(ordering: .relaxed)
        guard h < tail.load(ordering: .acquiring) else { return nil }
        return take(h)
    }

    private func take(_ h: Int) -> Element? {
        let e = slots[h % size]
        slots[h % size] = nil
        head.store(h + 1, ordering: .releasing)
        return e
    }

    func close() { closed.store(true, ordering: .releasing) }
}

/// Runs `body` on a new POSIX thread; `join()` waits for it. Nil when no thread can be made
/// (the caller then works on one thread: running `body` inline would wait for itself).
final class WorkerThread: @unchecked Sendable {
    private var thread = pthread_t()
    private let body: () -> Void

    init?(_ body: @escaping () -> Void) {
        self.body = body
        let box = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            let me = Unmanaged<WorkerThread>.fromOpaque(raw!).takeRetainedValue()
            me.body()
            return nil
        }, box)
        if rc != 0 {
            Unmanaged<WorkerThread>.fromOpaque(box).release()
            return nil
        }
    }

    func join() { pthread_join(thread, nil) }
}

/// Decoding (and output) on the calling thread, the flow table on a second one: event batches
/// go one way and finished flows come back the other way, in order, so results are identical
/// to a single-threaded run and `onFlow` always runs on the calling thread.
final class Pipeline: @unchecked Sendable {
    private(set) var analyzer: PacketAnalyzer!
    private let full: SPSCRing<EventBatch>
    private let empty: SPSCRing<EventBatch>
    private let finished: SPSCRing<[FlowSnapshot]>
    private let onFlow: (FlowRecord) -> Void
    /// When set, ended flows reach it as the table's snapshots, and no records are built.
    private let onSnapshot: ((FlowSnapshot) -> Void)?
    /// The table's names (turned into strings on this thread, which also interns them).
    private let names: DNSNameTable
    private var worker: WorkerThread!
    /// CPU time the table thread used (for diagnostics; read after `finish`).
    final class CPUBox: @unchecked Sendable { var seconds = 0.0 }
    let tableThreadCPU = CPUBox()

    /// Nil when the table thread cannot be started; the table is then left as it was.
    init?(table: FlowTable, batches: Int = 8, batchSize: Int = 1024, onSnapshot: ((FlowSnapshot) -> Void)? = nil,
          onFlow: @escaping (FlowRecord) -> Void) {
        // One malloc arena for both threads: the table thread allocates little (a record's
        // strings per flow), and a second arena would hold megabytes of free memory.
        _ = glibcMallopt(-8 /* M_ARENA_MAX, malloc.h */, 1)
        let full = SPSCRing<EventBatch>(size: batches + 1)
        let empty = SPSCRing<EventBatch>(size: batches + 1)
        let finished = SPSCRing<[FlowSnapshot]>(size: 64)
        for _ in 1..<batches { empty.push(EventBatch(capacity: batchSize)) }
        self.full = full
        self.empty = empty
        self.finished = finished
        self.onFlow = onFlow
        self.onSnapshot = onSnapshot
        names = table.names
        analyzer = PacketAnalyzer(batch: EventBatch(capacity: batchSize), names: table.names) { [unowned self] done in
            full.push(done, whileWaiting: self.drain)
            self.drain()
            return empty.pop(whileWaiting: self.drain) ?? EventBatch(capacity: batchSize)
        }
        // Finished flows travel back in small arrays, as snapshots: building the records (ids,
        // strings) is left to the reading thread.
        final class Outbox { var records: [FlowSnapshot] = [] }
        let outbox = Outbox()
        table.onSnapshot = { r in
            outbox.records.append(r)
            if outbox.records.count >= 256 {
                finished.push(outbox.records)
                outbox.records = []
                outbox.records.reserveCapacity(256)
            }
        }
        let cpu = self.tableThreadCPU
        let started = WorkerThread {
            defer { cpu.seconds = threadCPUSeconds() }
            while let b = full.pop() {
                table.apply(b)
                b.clear()
                empty.push(b)
            }
            table.flush()
            if !outbox.records.isEmpty { finished.push(outbox.records) }
            finished.close()
        }
        guard let started else {
            table.onSnapshot = nil
            return nil
        }
        worker = started
    }

    /// Writes out finished flows that have arrived (on the calling thread).
    private func drain() {
        while let rs = finished.tryPop() { deliver(rs) }
    }

    private func deliver(_ rs: [FlowSnapshot]) {
        if let onSnapshot {
            for r in rs { onSnapshot(r) }
        } else {
            for r in rs { onFlow(r.record(names: names)) }
        }
    }

    /// Seconds the reader waited for the table thread, and the table thread for the reader.
    var waits: (reader: Double, table: Double) {
        (full.pushWait + empty.popWait, full.popWait + empty.pushWait + finished.pushWait)
    }

    /// Hands off the last events, waits for the table thread to apply them and flush, writing
    /// out every flow.
    func finish() {
        analyzer.finishDecoding()
        full.close()
        while let rs = finished.pop() { deliver(rs) }
        worker.join()
    }
}

/// glibc's mallopt(3); <malloc.h> is not part of the Glibc module.
@_silgen_name("mallopt")
private func glibcMallopt(_ param: Int32, _ value: Int32) -> Int32

/// CPU seconds used by the calling thread.
func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// How many CPUs this process may use.
func availableCPUs() -> Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
