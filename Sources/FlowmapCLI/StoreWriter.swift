import FlowCore
import FlowStore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Writes the agent's flush batches to the store on a thread of its own, in order, so that the
/// event loop never waits for SQLite (a slow write would let the kernel's event buffer fill).
final class StoreWriter: @unchecked Sendable {
    struct Batch {
        var rows: [(FlowRecord, AgentFlowExtras)]
        var first: Double?
        var last: Double?
        var complete: Bool
        var warning: String?
    }

    private let store: FlowStore
    private let source: Int64
    private let kind: SourceKind
    private let hostID: String
    private let ring = BlockingQueue<Batch>(capacity: 2)
    private var worker: WorkerThread?
    /// Rows inserted so far (not updates of rows already there).
    let recorded = Atomic<Int>(0)
    private let failed = Mutex<StoreError?>(nil)
    private var trimmedAt = Terminal.monotonic()
    static let trimEvery = 5.0

    init(store: FlowStore, source: Int64, kind: SourceKind, hostID: String) {
        self.store = store; self.source = source; self.kind = kind; self.hostID = hostID
        worker = WorkerThread { [self] in self.loop() }
    }

    private func loop() {
        while var b = ring.pop() {
            if failed.withLock({ $0 != nil }) { continue }
            do throws(StoreError) { try save(b) } catch { failed.withLock { $0 = error } }
            // The batch's records are freed now: hand the freed pages back to the kernel, so
            // that the agent's resident memory follows what it holds, not its busiest second.
            b.rows = []
            // Not after every batch: trimming hands back pages the next batch faults in again
            // (a tenth of the agent's CPU at 1,000 connections/s when done twice a second).
            let now = Terminal.monotonic()
            if now - trimmedAt >= StoreWriter.trimEvery || b.complete {
                _ = glibcMallocTrim(0)
                trimmedAt = now
            }
        }
    }

    private func save(_ b: Batch) throws(StoreError) {
        // The rows and the source's running totals in one transaction.
        let totals = FlowStore.SourceTotals(firstTimestamp: b.first, lastTimestamp: b.last, complete: b.complete,
                                            warning: b.warning, flowsBefore: recorded.load(ordering: .relaxed))
        let added = try store.upsert(b.rows, source: source, kind: kind, hostID: hostID, totals: totals)
        recorded.add(added, ordering: .relaxed)
    }

    /// Queues a batch (waits only while two batches are already waiting: memory stays small). Throws the first store
    /// error the writer met.
    func write(_ b: Batch) throws(UserError) {
        if let e = failed.withLock({ $0 }) { throw UserError(message: e.description) }
        if worker == nil {  // no thread could be made: write here
            do throws(StoreError) { try save(b) } catch { throw UserError(message: error.description) }
            return
        }
        ring.push(b)
    }

    /// Waits until everything queued is written.
    func finish() throws(UserError) {
        ring.close()
        worker?.join()
        worker = nil
        if let e = failed.withLock({ $0 }) { throw UserError(message: e.description) }
    }
}

/// A bounded queue whose waiting sides sleep (pthread mutex and condition variables), for
/// threads that are idle most of the time (no spinning).
final class BlockingQueue<Element>: @unchecked Sendable {
    private var items: [Element?] = []
    private var head = 0
    private var closed = false
    private let capacity: Int
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init(capacity: Int) {
        self.capacity = capacity
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        changed.deallocate()
    }

    func push(_ e: Element) {
        pthread_mutex_lock(mutex)
        while items.count - head >= capacity { pthread_cond_wait(changed, mutex) }
        items.append(e)
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
    }

    /// The next element, waiting for one; nil once closed and drained.
    func pop() -> Element? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while head >= items.count {
            if closed { return nil }
            pthread_cond_wait(changed, mutex)
        }
        let e = items[head]
        items[head] = nil  // the queue must not keep what it handed out
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 64 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        pthread_cond_broadcast(changed)
        return e!
    }

    func close() {
        pthread_mutex_lock(mutex)
        closed = true
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
    }
}

/// glibc's malloc_trim(3); <malloc.h> is not part of the Glibc module.
@_silgen_name("malloc_trim")
private func glibcMallocTrim(_ pad: Int) -> Int32
