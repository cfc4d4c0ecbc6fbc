import ArgumentParser
import FlowCapture
import FlowConfig
import FlowCore
import FlowGraph
import FlowPolicy
import FlowStore

#if canImport(Glibc)
import Glibc
#endif

extension GraphFormat: ExpressibleByArgument {}
extension ExternalGrouping: ExpressibleByArgument {}

/// Image formats `--render` asks Graphviz for.
enum RenderFormat: String, ExpressibleByArgument, CaseIterable {
    case svg, png
}

/// Workload identity settings shared by `graph`, `suggest` and `simulate`.
struct IdentityOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Inventory YAML naming workloads (docs/inventory.md); a policy file works too.", valueName: "file"))
    var inventory: String?

    @Option(name: .customLong("group-external"), help: "Public endpoints the inventory does not name: name (by the DNS name their clients resolved), domain (by registrable domain), prefix (per /24 or /48), all (one 'external' workload).")
    var groupExternal: ExternalGrouping = .name

    @Option(name: .customLong("public-suffix-list"), help: ArgumentHelp("The Public Suffix List, for registrable domains.", valueName: "file"))
    var publicSuffixList = "/usr/share/publicsuffix/public_suffix_list.dat"

    /// The inventory, or a one-line error naming file, line and column.
    func loadInventory() throws(UserError) -> Inventory {
        guard let path = inventory else { return Inventory() }
        let text = try Files.readText(path)
        do { return try InventoryParser.parse(text, file: path) } catch { throw UserError(message: error.description) }
    }

    func graphOptions(warn: (String) -> Void) -> GraphOptions {
        var o = GraphOptions()
        o.groupExternal = groupExternal
        if Files.exists(publicSuffixList), let text = try? Files.readText(publicSuffixList) {
            o.publicSuffixes = PublicSuffixList(text: text)
        } else if groupExternal == .domain {
            warn("no Public Suffix List at \(publicSuffixList) (Debian: apt-get install publicsuffix); a name's last two labels are taken as its domain")
        }
        return o
    }
}

/// Reads flows (and the DNS answers that name their endpoints) from captures or a store.
enum FlowSourceReader {
    /// Streams every admitted flow to `body`; DNS answers reach `names` before the flows they
    /// name. Returns warnings (cut-short captures).
    static func read(_ source: SourceOptions, analysis: AnalysisOptions, names: NameResolver, uids: Bool = false,
                     body: @escaping (GraphFlow) -> Void) throws(UserError) -> [String] {
        try read(source.spec, analysis: analysis, names: names, uids: uids, body: body)
    }

    /// Starts reading a store on other threads right away (see `StoreBatchReader`): nil for
    /// captures, one CPU, or no thread.
    static func startEarly<R>(_ source: FlowSource, names: NameResolver, uids: Bool) throws(UserError) -> StoreBatchReader<R>? {
        guard let db = source.db, availableCPUs() >= 2 else { return nil }
        let store: FlowStore
        do { store = try FlowStore(path: db, create: false) } catch { throw UserError(message: error.description) }
        return StoreBatchReader(store: store, path: db, names: names, since: source.since, until: source.until, uids: uids)
    }

    /// Streams every admitted flow to `body` with the result of `work` on it. `makeWorker` is
    /// called once per thread and gives that thread's `work` (which may keep caches). With a
    /// store already being read (`early`), the reading thread also runs `work` on batches the
    /// consumer has not reached; `work` must depend only on the flow and what was loaded before
    /// the flows, so that `body` sees the same results in the same order either way.
    static func read<R>(_ source: FlowSource, analysis: AnalysisOptions, names: NameResolver, uids: Bool = false,
                        early: StoreBatchReader<R>?,
                        makeWorker: () -> (GraphFlow) -> R,
                        body: @escaping (GraphFlow, R) -> Void) throws(UserError) -> [String] {
        if let early {
            let work = makeWorker(), readerWork = makeWorker()
            try early.consume(work: work, readerWork: readerWork, body: body)
            return []
        }
        let work = makeWorker()
        return try read(source, analysis: analysis, names: names, uids: uids) { body($0, work($0)) }
    }

    static func read(_ source: FlowSource, analysis: AnalysisOptions, names: NameResolver, uids: Bool = false,
                     body: @escaping (GraphFlow) -> Void) throws(UserError) -> [String] {
        if let db = source.db {
            let store: FlowStore
            do { store = try FlowStore(path: db, create: false) } catch { throw UserError(message: error.description) }
            // SQLite rows are read and decoded on a second thread (with two CPUs) while this
            // one loads the DNS answers and then builds the graph: batches of flows go across a
            // bounded ring (at most 64 × 2048 flows in flight).
            final class Failure: @unchecked Sendable { var error: (any Error)? }
            let failure = Failure()
            let since = source.since, until = source.until
            let ring = SPSCRing<[GraphFlow]>(size: 64)
            let reader = availableCPUs() >= 2 ? WorkerThread {
                var batch: [GraphFlow] = []
                batch.reserveCapacity(2048)
                do {
                    try store.forEachGraphFlow(since: since, until: until, uids: uids) { f in
                        batch.append(f)
                        if batch.count == 2048 {
                            ring.push(batch)
                            batch.removeAll(keepingCapacity: true)
                        }
                    }
                } catch {
                    failure.error = error
                }
                if !batch.isEmpty { ring.push(batch) }
                ring.close()
            } : nil
            var namesError: StoreError?
            do { try store.loadNames(into: names) } catch { namesError = error }
            if let reader {
                if namesError == nil { while let b = ring.pop() { for f in b { body(f) } } } else { while ring.pop() != nil {} }
                reader.join()
            } else if namesError == nil {
                do { try store.forEachGraphFlow(since: since, until: until, uids: uids) { body($0) } } catch { failure.error = error }
            }
            if let e = namesError { throw UserError(message: e.description) }
            if let e = failure.error {
                if let s = e as? StoreError { throw UserError(message: s.description) }
                throw UserError(message: "\(db): \(e)")
            }
            return []
        }
        let readers = try CaptureRunner.open(source.captures)
        let result = CaptureRunner.run(readers, timeouts: analysis.timeouts, quiet: analysis.quiet,
                                       threads: analysis.threadCount, vlanAware: analysis.vlanAware,
                                       onNames: { for o in $0 { names.add(o) } }) { r, _ in
            if source.admits(r.ts) { body(GraphFlow(r)) }
        }
        return result.warnings
    }
}

/// `flowmap graph`: workloads and who talks to whom, as DOT, JSON or Mermaid.
struct GraphCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graph",
        abstract: "Draw the workload graph: client workload -> server workload, port, protocol.",
        discussion: """
            Endpoints become workloads by the inventory (first match wins), else by process (agent \
            data), else by the DNS name their clients resolved, else private addresses as themselves \
            and public ones as external (per /24). Flows whose direction is unknown (no handshake \
            seen, heuristic originator, peer protocols) are drawn as dotted edges without a port. \
            See docs/graph.md.
            """
    )

    @OptionGroup var source: SourceOptions
    @OptionGroup var identity: IdentityOptions
    @OptionGroup var analysis: AnalysisOptions

    @Option(name: .long, help: "Output format: dot, json or mermaid.")
    var format: GraphFormat = .dot

    @Option(name: .customLong("cluster-by"), help: ArgumentHelp("Group nodes into clusters by this label (dot, mermaid).", valueName: "label"))
    var clusterBy: String?

    @Option(name: .customLong("min-flows"), help: ArgumentHelp("Leave out edges with fewer flows.", valueName: "n"))
    var minFlows: UInt64 = 0

    @Option(name: .long, parsing: .upToNextOption, help: ArgumentHelp("Leave out these workloads (names or ids; globs) and their edges.", valueName: "workload"))
    var exclude: [String] = []

    @Option(name: .long, help: ArgumentHelp("Simulate this policy: edges with flows it would block are drawn red and dashed.", valueName: "file"))
    var policy: String?

    @Option(name: .long, help: "Render with Graphviz's dot into this image format (needs -o for png).")
    var render: RenderFormat?

    @Option(name: .shortAndLong, help: ArgumentHelp("Write to this file instead of standard output.", valueName: "file"))
    var output: String?

    init() {}

    func validate() throws {
        if render != nil && format != .dot {
            throw ValidationError("--render draws the DOT graph; leave out --format or use --format dot.")
        }
        if render == .png && output == nil {
            throw ValidationError("--render png writes an image: give -o FILE.")
        }
    }

    func run() throws {
        do { try runGraph() } catch { throw fail(error.message) }
    }

    func runGraph() throws(UserError) {
        let inventory = try identity.loadInventory()
        var warnings: [String] = []
        let options = identity.graphOptions { warnings.append($0) }
        let names = NameResolver()
        let builder = GraphBuilder(inventory: inventory, names: names, options: options)
        let evaluator = try policy.map { path throws(UserError) in
            PolicyEvaluator(policy: try PolicyFiles.load(path), names: names, cacheBits: 18) { TimeZones.offset($0, $1) ?? 0 }
        }
        let t0 = Terminal.monotonic()
        warnings += try FlowSourceReader.read(source, analysis: analysis, names: names) { f in
            builder.add(f, blocked: evaluator?.evaluate(f).isBlocked ?? false)
        }
        let t1 = Terminal.monotonic()
        // Diagnostics for the benchmark: where the time goes.
        defer {
            if getenv("FLOWMAP_GRAPH_TIMES") != nil {
                Terminal.stderr("graph_seconds\tread_and_build=\(Fmt.fixed(t1 - t0, digits: 3))\trender=\(Fmt.fixed(Terminal.monotonic() - t1, digits: 3))\n")
            }
        }
        for w in warnings { Terminal.stderr("flowmap: warning: \(w)\n") }
        let graph = builder.build().filtered(minFlows: minFlows, exclude: exclude.map { Glob($0) })
        let title = "flowmap: \(graph.nodes.count) workloads, \(graph.edges.count) edges, \(graph.flows) flows"
        if format == .json {
            // Streamed: a large graph is not held again as one string.
            let withPolicy = policy != nil
            try GraphCommand.emit(to: output) { chunk in GraphJSON.render(graph, policy: withPolicy) { chunk($0) } }
            return
        }
        let text: String
        switch format {
        case .dot: text = DOTRenderer.render(graph, clusterBy: clusterBy, title: title)
        case .mermaid: text = MermaidRenderer.render(graph, clusterBy: clusterBy)
        case .json: text = ""
        }
        if let r = render {
            try GraphCommand.renderImage(dot: text, format: r, to: output)
            if let o = output { Terminal.stderr("flowmap: wrote \(o) (\(graph.nodes.count) workloads, \(graph.edges.count) edges)\n") }
            return
        }
        if let o = output {
            try Files.write(Array(text.utf8), to: o)
        } else {
            Terminal.out(text)
            Terminal.flush()
        }
    }

    /// Hands `produce` a sink for chunks of output, writing them to `path` or standard output.
    static func emit(to path: String?, _ produce: ((ByteWriter) -> Void) -> Void) throws(UserError) {
        guard let path else {
            produce { w in w.withBytes { p in Terminal.out { $0.raw(p) } } }
            Terminal.flush()
            return
        }
        guard let f = fopen(path, "wb") else {
            throw UserError(message: "\(path): cannot write (\(String(cString: strerror(errno))))")
        }
        var ok = true
        produce { w in w.withBytes { if fwrite($0.baseAddress, 1, $0.count, f) != $0.count { ok = false } } }
        if fclose(f) != 0 || !ok { throw UserError(message: "\(path): write failed") }
    }

    /// Runs Graphviz's dot on the DOT text; a clear error when dot is not installed.
    static func renderImage(dot text: String, format: RenderFormat, to output: String?) throws(UserError) {
        guard let dot = Files.which("dot") else {
            throw UserError(message: "--render needs Graphviz's dot, which is not installed (Debian: apt-get install graphviz); --format dot -o FILE writes the source instead")
        }
        let input = try Files.temporary(Array(text.utf8))
        defer { unlink(input) }
        var args = [dot, "-T\(format.rawValue)"]
        if let o = output { args += ["-o", o] }
        if output == nil { Terminal.flush() }
        let (status, err) = Files.run(args, stdinPath: input)
        if status != 0 {
            let first = err.split(separator: "\n").first.map(String.init) ?? "exit status \(status)"
            throw UserError(message: "dot failed: \(first)")
        }
        if !err.isEmpty {
            for line in err.split(separator: "\n") { Terminal.stderr("flowmap: dot: \(line)\n") }
        }
    }
}
