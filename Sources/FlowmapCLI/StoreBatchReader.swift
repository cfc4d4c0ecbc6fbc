import FlowCore
import FlowGraph
import FlowStore
import Foundation

/// Reads a store on a second thread from the moment it is made, while the caller prepares
/// (reads a policy): the thread loads the DNS answers, then decodes flows in batches, up to
/// `cap` batches ahead of the consumer. Once the caller hands it a worker, the thread also runs
/// that worker on whole batches the consumer has not reached, so both CPUs work until the end.
/// The consumer gets every flow, in store order, with the worker's result on it: the same
/// results, in the same order, whichever thread computed them.
final class StoreBatchReader<R>: @unchecked Sendable {
    /// Flows per batch; `FLOWMAP_STORE_BATCH` sets another size (tests use tiny batches so
    /// that both threads take turns on a small store).
    static var batchSize: Int {
        if let v = getenv("FLOWMAP_STORE_BATCH").flatMap({ Int(String(cString: $0)) }), v > 0 { return v }
        return 2048
    }
    /// At most this many decoded batches wait for the consumer (about 160 MB of flows).
    static var cap: Int { 512 }

    private enum State { case decoded, evaluating, evaluated, taken }
    private struct CancelledError: Error {}

    private let cond = NSCondition()
    private var flows: [[GraphFlow]?] = []
    private var results: [[R]?] = []
    private var states: [State] = []
    /// Batches below this index are the consumer's.
    private var consumed = 0
    private var decodingDone = false
    private var cancelled = false
    private var work: ((GraphFlow) -> R)?
    private var readError: (any Error)?
    private var namesError: StoreError?
    private var thread: WorkerThread?
    private let path: String
    private var namesThread: WorkerThread?
    private var namesLoaded = false
    private let started: Double
    private var namesAt = 0.0, decodedAt = 0.0
    /// Help the consumer only when it is this many batches behind (decoding comes first).
    static var helpBacklog: Int { 4 }

    /// Starts reading; nil when no second thread can be made.
    init?(store: FlowStore, path: String, names: NameResolver, since: Double?, until: Double?, uids: Bool) {
        self.path = path
        started = Terminal.monotonic()
        // The DNS answers load on a thread of their own: decoding flows does not need them,
        // evaluating does.
        namesThread = WorkerThread { [self] in
            var failure: StoreError?
            do throws(StoreError) { try store.loadNames(into: names) } catch { failure = error }
            cond.lock()
            namesError = failure
            namesLoaded = true
            namesAt = Terminal.monotonic()
            cond.broadcast()
            cond.unlock()
        }
        if namesThread == nil { return nil }
        thread = WorkerThread { [self] in run(store, since, until, uids) }
        if thread == nil { namesThread?.join(); return nil }
    }

    private func run(_ store: FlowStore, _ since: Double?, _ until: Double?, _ uids: Bool) {
        let size = Self.batchSize
        var batch: [GraphFlow] = []
        batch.reserveCapacity(size)
        do {
            try store.forEachGraphFlow(since: since, until: until, uids: uids) { f in
                batch.append(f)
                if batch.count == size {
                    try publish(batch)
                    batch = []
                    batch.reserveCapacity(size)
                }
            }
            if !batch.isEmpty { try publish(batch) }
        } catch is CancelledError {
        } catch {
            cond.lock(); readError = error; cond.unlock()
        }
        cond.lock()
        decodingDone = true
        decodedAt = Terminal.monotonic()
        cond.broadcast()
        // Decoding is over: help with what is left, once there is a worker.
        while !cancelled {
            if namesLoaded, namesError == nil, let w = work, let i = claimable() {
                evaluate(i, w)
                continue
            }
            if namesError != nil || (work != nil && namesLoaded && claimable() == nil) { break }
            cond.wait()
        }
        cond.unlock()
    }

    /// The last decoded batch that nobody works on, past the consumer's (lock held): the
    /// consumer works from the front, this thread from the back, so neither waits for the other.
    private func claimable() -> Int? {
        var i = states.count - 1
        while i > consumed {
            if states[i] == .decoded { return i }
            i -= 1
        }
        return nil
    }

    /// Runs the worker on batch `i` (lock held on entry and on return).
    private func evaluate(_ i: Int, _ w: (GraphFlow) -> R) {
        states[i] = .evaluating
        let batch = flows[i]!
        cond.unlock()
        var out: [R] = []
        out.reserveCapacity(batch.count)
        for f in batch { out.append(w(f)) }
        cond.lock()
        results[i] = out
        states[i] = .evaluated
        cond.broadcast()
    }

    private func publish(_ batch: [GraphFlow]) throws {
        cond.lock()
        defer { cond.unlock() }
        flows.append(batch)
        results.append(nil)
        states.append(.decoded)
        cond.broadcast()
        // Help while the consumer is behind; wait while too far ahead.
        while true {
            if cancelled { throw CancelledError() }
            let backlog = states.count - consumed
            if backlog >= Self.helpBacklog, namesLoaded, namesError == nil, let w = work, let i = claimable() {
                evaluate(i, w)
                continue
            }
            if backlog < Self.cap { return }
            cond.wait()
        }
    }

    /// Stops the thread (the caller gave up before consuming) and waits for it.
    func cancel() {
        cond.lock(); cancelled = true; cond.broadcast(); cond.unlock()
        thread?.join()
        thread = nil
        namesThread?.join()
        namesThread = nil
    }

    /// Gives every flow to `body` with its result: `work` runs on this thread, `readerWork`
    /// on the reading thread. Throws what reading met.
    func consume(work: (GraphFlow) -> R, readerWork: @escaping (GraphFlow) -> R,
                 body: (GraphFlow, R) -> Void) throws(UserError) {
        cond.lock()
        self.work = readerWork
        cond.broadcast()
        while !namesLoaded { cond.wait() }
        if namesError != nil { cancelled = true; cond.broadcast() }
        let decodedAtStart = states.count
        var byReader = 0
        var i = 0
        while true {
            while i >= states.count && !decodingDone && !cancelled { cond.wait() }
            if i >= states.count || cancelled { break }
            switch states[i] {
            case .decoded:
                states[i] = .taken
                let batch = flows[i]!
                flows[i] = nil
                cond.unlock()
                for f in batch { body(f, work(f)) }
                cond.lock()
            case .evaluating:
                cond.wait()
                continue
            case .evaluated:
                byReader += 1
                states[i] = .taken
                let batch = flows[i]!, out = results[i]!
                flows[i] = nil
                results[i] = nil
                cond.unlock()
                for k in batch.indices { body(batch[k], out[k]) }
                cond.lock()
            case .taken:
                break
            }
            i += 1
            consumed = i
            cond.broadcast()
        }
        cond.unlock()
        thread?.join()
        thread = nil
        namesThread?.join()
        namesThread = nil
        if getenv("FLOWMAP_TIMES") != nil {
            Terminal.stderr("store_reader\tnames=\(Fmt.fixed(namesAt - started, digits: 3))\tdecoded=\(Fmt.fixed(decodedAt - started, digits: 3))\tbatches_decoded_before_consuming=\(decodedAtStart)\tevaluated_by_reader=\(byReader)\tof=\(i)\n")
        }
        if let e = namesError { throw UserError(message: e.description) }
        if let e = readError {
            if let s = e as? StoreError { throw UserError(message: s.description) }
            throw UserError(message: "\(path): \(e)")
        }
    }
}
