import ArgumentParser
import FlowConfig
import FlowCore
import FlowGraph
import FlowPolicy
import Foundation

/// Loads a policy file, checking what the pure parser cannot (time zones).
enum PolicyFiles {
    static func load(_ path: String) throws(UserError) -> Policy {
        let text = try Files.readText(path)
        let p: Policy
        do { p = try PolicyParser.parse(text, file: path) { KeptUntilExit.keep($0) } } catch { throw UserError(message: error.description) }
        for r in p.rules {
            if let s = r.schedule, TimeZones.offset(s.tz, 0) == nil {
                let m = r.mark.map { "\($0.line):\($0.column): " } ?? ""
                throw UserError(message: "\(path):\(m)rule '\(r.name)': unknown time zone '\(s.tz)' (UTC, +05:30 or an IANA name like Europe/Berlin)")
            }
        }
        return p
    }
}

/// UTC offsets of time zones: UTC, fixed offsets (+05:30), or IANA names through the system's
/// time zone database (Foundation's TimeZone).
enum TimeZones {
    nonisolated(unsafe) private static var cache: [String: TimeZone] = [:]
    /// Simulation evaluates on two threads.
    private static let lock = NSLock()

    static func offset(_ name: String, _ t: Double) -> Int? {
        let n = name.trimmingCharacters(in: .whitespaces)
        if n == "UTC" || n == "Z" || n == "GMT" { return 0 }
        if let f = fixed(n) { return f }
        lock.lock()
        defer { lock.unlock() }
        if let z = cache[n] { return z.secondsFromGMT(for: Date(timeIntervalSince1970: t)) }
        guard let z = TimeZone(identifier: n) else { return nil }
        cache[n] = z
        return z.secondsFromGMT(for: Date(timeIntervalSince1970: t))
    }

    /// "+05:30", "-08:00", "UTC+2".
    static func fixed(_ s: String) -> Int? {
        var t = Substring(s)
        if t.hasPrefix("UTC") { t = t.dropFirst(3) }
        guard let sign = t.first, sign == "+" || sign == "-" else { return nil }
        let parts = t.dropFirst().split(separator: ":")
        guard parts.count == 1 || parts.count == 2, let h = Int(parts[0]), h <= 14 else { return nil }
        let m = parts.count == 2 ? Int(parts[1]) ?? 99 : 0
        guard m < 60 else { return nil }
        return (sign == "-" ? -1 : 1) * (h * 3600 + m * 60)
    }
}

/// `flowmap suggest`: the narrowest allow list that permits the observed traffic.
struct SuggestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "suggest",
        abstract: "Suggest a least-privilege policy (YAML) from observed traffic.",
        discussion: """
            One allow rule per observed (client workload, server workload, server port, protocol), \
            never broader than what was seen unless an option asks. External peers are named by the \
            DNS name their client resolved, otherwise by /32 or /128. DNS and NTP rules are labelled \
            as infrastructure. The same input gives byte-identical YAML. See docs/policy.md.
            """
    )

    @OptionGroup var source: SourceOptions
    @OptionGroup var identity: IdentityOptions
    @OptionGroup var analysis: AnalysisOptions

    @Option(name: .customLong("group-by"), help: ArgumentHelp("Write rules between groups of this label (role=web -> role=api).", valueName: "label"))
    var groupBy: String?

    @Option(name: .customLong("port-ranges"), help: ArgumentHelp("Merge N or more adjacent observed ports into one range.", valueName: "n"))
    var portRanges: Int?

    @Option(name: .customLong("min-flows"), help: ArgumentHelp("Leave edges with fewer flows out of the rules and list them under review:.", valueName: "n"))
    var minFlows: UInt64 = 0

    @Option(name: .long, help: "The policy's metadata name.")
    var name = "suggested"

    @Option(name: .shortAndLong, help: ArgumentHelp("Write the policy to this file instead of standard output.", valueName: "file"))
    var output: String?

    init() {}

    func validate() throws {
        if let n = portRanges, n < 2 { throw ValidationError("--port-ranges needs 2 or more.") }
    }

    func run() throws {
        do { try suggest() } catch { throw fail(error.message) }
    }

    func suggest() throws(UserError) {
        let inventory = try identity.loadInventory()
        var warnings: [String] = []
        let options = PolicySuggester.graphOptions(identity.graphOptions { warnings.append($0) })
        let names = NameResolver()
        let builder = GraphBuilder(inventory: inventory, names: names, options: options)
        let t0 = Terminal.monotonic()
        warnings += try FlowSourceReader.read(source, analysis: analysis, names: names) { builder.add($0) }
        let t1 = Terminal.monotonic()
        for w in warnings { Terminal.stderr("flowmap: warning: \(w)\n") }
        var o = SuggestOptions()
        o.groupBy = groupBy
        o.portRanges = portRanges
        o.minFlows = minFlows
        o.name = name
        o.sources = source.db.map { [$0] } ?? source.captures
        let graph = builder.build()
        let t2 = Terminal.monotonic()
        let policy = PolicySuggester.suggest(graph: graph, inventory: inventory, options: o)
        let t3 = Terminal.monotonic()
        // Written through a 1 MiB buffer (a large policy is tens of MB).
        let file = try output.map { path throws(UserError) in try Files.Output(path) }
        let text = ByteWriter(capacity: 1 << 20) { p in
            if let file { file.write(p) } else { Terminal.out { $0.raw(p) } }
        }
        PolicyWriter.write(policy, into: text)
        text.drain()
        if let file {
            try file.close()
        } else {
            Terminal.flush()
        }
        if getenv("FLOWMAP_TIMES") != nil {
            Terminal.stderr("suggest_seconds\tread_and_build=\(Fmt.fixed(t1 - t0, digits: 3))\tgraph=\(Fmt.fixed(t2 - t1, digits: 3))\tsuggest=\(Fmt.fixed(t3 - t2, digits: 3))\twrite=\(Fmt.fixed(Terminal.monotonic() - t3, digits: 3))\n")
        }
        if let out = output {
            Terminal.stderr("flowmap: wrote \(out) (\(policy.rules.count) rules, \(policy.review.count) to review)\n")
        }
        KeptUntilExit.keep(graph, policy, text)
    }
}

enum SimulateFormat: String, ExpressibleByArgument, CaseIterable { case table, json }
enum FlowListing: String, ExpressibleByArgument, CaseIterable { case none, blocked, all }

/// `flowmap simulate`: what a policy would block, before anyone enforces it.
struct SimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Replay traffic against a policy and report what it would block.",
        discussion: """
            Each flow is allowed (by the first rule that takes it) or blocked, with the reason: \
            endpoint in no workload, no rule between these workloads, port not allowed, or outside \
            the schedule. --fail-on-blocked exits 3 when anything would be blocked (a CI gate).
            """
    )

    @Option(name: .long, help: ArgumentHelp("The policy file.", valueName: "file"))
    var policy: String

    @OptionGroup var source: SourceOptions
    @OptionGroup var analysis: AnalysisOptions

    @Option(name: .long, help: "Output format: table or json.")
    var format: SimulateFormat = .table

    @Option(name: .long, help: "Which flows to list: none, blocked (the default) or all.")
    var flows: FlowListing = .blocked

    @Option(name: .customLong("top"), help: ArgumentHelp("How many blocked edges to list.", valueName: "n"))
    var top = 20

    @Flag(name: .customLong("fail-on-blocked"), help: "Exit 3 when any flow would be blocked.")
    var failOnBlocked = false

    init() {}

    func validate() throws {
        if top < 0 { throw ValidationError("--top must be 0 or more.") }
    }

    func run() throws {
        let blocked: UInt64
        do { blocked = try simulate() } catch { throw fail(error.message) }
        if failOnBlocked && blocked > 0 { throw ExitCode(3) }
    }

    struct EdgeKey: Hashable { var from: String; var to: String; var port: Int; var proto: String; var reason: String }

    func simulate() throws(UserError) -> UInt64 {
        let t0 = Terminal.monotonic()
        let jsonFlows = format == .json && flows != .none
        let names = NameResolver()
        // A store is read (DNS answers, then flows) while the policy is read and indexed.
        let early: StoreBatchReader<Verdict>? = try FlowSourceReader.startEarly(source.spec, names: names, uids: jsonFlows)
        let p: Policy
        do { p = try PolicyFiles.load(policy) } catch { early?.cancel(); throw error }
        let t1 = Terminal.monotonic()
        let evaluator = PolicyEvaluator(policy: p, names: names, cacheBits: 20) { TimeZones.offset($0, $1) ?? 0 }
        let t2 = Terminal.monotonic()
        defer { KeptUntilExit.keep(p, evaluator, names) }
        var hits = [UInt64](repeating: 0, count: p.rules.count)
        var hitBytes = [UInt64](repeating: 0, count: p.rules.count)
        var total: UInt64 = 0, allowed: UInt64 = 0, bytes: UInt64 = 0, allowedBytes: UInt64 = 0
        var edges: [EdgeKey: (flows: UInt64, bytes: UInt64)] = [:]
        var listed: [(GraphFlow, Verdict, String, String)] = []
        var listedCount = 0
        var started = false
        func flowJSON(_ f: GraphFlow, _ v: Verdict, _ from: String, _ to: String) -> String {
            var s = "{\"ts\":\(Fmt.fixed(f.ts)),\"uid\":\(jsonQuote(f.uid)),\"proto\":\(jsonQuote(protocolName(f.ipProto))),"
            s += "\"orig_h\":\"\(f.origH)\",\"orig_p\":\(f.origP),\"resp_h\":\"\(f.respH)\",\"resp_p\":\(f.respP),"
            s += "\"from\":\(jsonQuote(from)),\"to\":\(jsonQuote(to)),"
            switch v {
            case .allowed(let r): s += "\"verdict\":\"allowed\",\"rule\":\(r >= 0 ? jsonQuote(p.rules[r].name) : "null")}"
            case .blocked(let why): s += "\"verdict\":\"blocked\",\"reason\":\(jsonQuote(why.rawValue))}"
            }
            return s
        }
        // Options read once (through their property wrappers), not per flow.
        let listAll = flows == .all, listBlocked = flows == .blocked
        // The first evaluator stays on this thread (display names); another reads alongside.
        var evaluators = [evaluator]
        let warnings = try FlowSourceReader.read(source.spec, analysis: analysis, names: names, uids: jsonFlows, early: early, makeWorker: {
            let e = evaluators.count == 1 ? evaluator : PolicyEvaluator(sharing: evaluator, cacheBits: 20)
            evaluators.append(e)
            return { e.evaluate($0) }
        }) { f, v in
            let b = f.origIPBytes + f.respIPBytes
            total += 1; bytes += b
            var listIt = listAll
            switch v {
            case .allowed(let r):
                allowed += 1; allowedBytes += b
                if r >= 0 { hits[r] += 1; hitBytes[r] += b }
            case .blocked(let why):
                listIt = listIt || listBlocked
                let from = evaluator.displayName(f.origH, client: nil, t: f.ts, servedPort: nil, process: f.origProcess)
                let to = evaluator.displayName(f.respH, client: f.origH, t: f.ts, servedPort: f.servicePort, process: f.respProcess)
                let k = EdgeKey(from: from, to: to, port: f.servicePort.map(Int.init) ?? -1, proto: protocolName(f.ipProto), reason: why.rawValue)
                let old = edges[k] ?? (0, 0)
                edges[k] = (old.flows + 1, old.bytes + b)
            }
            if listIt {
                let from = evaluator.displayName(f.origH, client: nil, t: f.ts, servedPort: nil, process: f.origProcess)
                let to = evaluator.displayName(f.respH, client: f.origH, t: f.ts, servedPort: f.servicePort, process: f.respProcess)
                if jsonFlows {
                    // Streamed: the flows array is written as it goes.
                    Terminal.out((started ? ",\n    " : "{\n  \"flows\": [\n    ") + flowJSON(f, v, from, to))
                    started = true
                } else if listedCount < 10_000 || listAll {
                    listed.append((f, v, from, to))
                }
                listedCount += 1
            }
        }
        for w in warnings { Terminal.stderr("flowmap: warning: \(w)\n") }
        let t3 = Terminal.monotonic()
        defer {
            if getenv("FLOWMAP_TIMES") != nil {
                Terminal.stderr("simulate_seconds\tload_policy=\(Fmt.fixed(t1 - t0, digits: 3))\tindex=\(Fmt.fixed(t2 - t1, digits: 3))\tread_and_evaluate=\(Fmt.fixed(t3 - t2, digits: 3))\treport=\(Fmt.fixed(Terminal.monotonic() - t3, digits: 3))\n")
            }
        }
        let blocked = total - allowed
        let blockedEdges = edges.sorted { a, b in
            a.value.flows != b.value.flows ? a.value.flows > b.value.flows
                : (a.key.from, a.key.to, a.key.proto, a.key.port, a.key.reason) < (b.key.from, b.key.to, b.key.proto, b.key.port, b.key.reason)
        }
        let hitCount = hits.filter { $0 > 0 }.count
        let never = p.rules.indices.filter { hits[$0] == 0 }.map { p.rules[$0].name }
        func pct(_ a: UInt64, _ b: UInt64) -> String { b == 0 ? "0.0" : Fmt.fixed(Double(a) * 100 / Double(b), digits: 1) }
        let coverage = p.rules.isEmpty ? "0.0" : Fmt.fixed(Double(hitCount) * 100 / Double(p.rules.count), digits: 1)
        if format == .json {
            if jsonFlows { Terminal.out(started ? "\n  ]" : "{\n  \"flows\": []") } else { Terminal.out("{") }
            var s = jsonFlows ? ",\n" : "\n"
            s += "  \"summary\": {\"flows\":\(total),\"allowed\":\(allowed),\"blocked\":\(blocked),"
            s += "\"allowedPercent\":\(pct(allowed, total)),\"blockedPercent\":\(pct(blocked, total)),"
            s += "\"bytes\":\(bytes),\"bytesAllowed\":\(allowedBytes),\"bytesBlocked\":\(bytes - allowedBytes),"
            s += "\"bytesBlockedPercent\":\(pct(bytes - allowedBytes, bytes)),"
            s += "\"rules\":\(p.rules.count),\"rulesHit\":\(hitCount),\"coverage\":\(coverage),"
            s += "\"neverHit\":[\(never.map(jsonQuote).joined(separator: ","))]},\n"
            s += "  \"blockedEdges\": ["
            for (i, e) in blockedEdges.prefix(top).enumerated() {
                s += i == 0 ? "\n    " : ",\n    "
                s += "{\"from\":\(jsonQuote(e.key.from)),\"to\":\(jsonQuote(e.key.to)),\"port\":\(e.key.port >= 0 ? String(e.key.port) : "null"),"
                s += "\"proto\":\(jsonQuote(e.key.proto)),\"flows\":\(e.value.flows),\"bytes\":\(e.value.bytes),\"reason\":\(jsonQuote(e.key.reason))}"
            }
            s += blockedEdges.isEmpty ? "],\n" : "\n  ],\n"
            s += "  \"rules\": ["
            for (i, r) in p.rules.enumerated() {
                s += i == 0 ? "\n    " : ",\n    "
                s += "{\"name\":\(jsonQuote(r.name)),\"hits\":\(hits[i]),\"bytes\":\(hitBytes[i])}"
            }
            s += p.rules.isEmpty ? "]\n}\n" : "\n  ]\n}\n"
            Terminal.out(s)
            Terminal.flush()
            return blocked
        }
        var out = "policy \(p.metadata.name) (\(p.rules.count) rules, default \(p.defaultAction.rawValue)) on \(source.db ?? source.captures.joined(separator: " "))\n\n"
        out += "flows  \(total)  allowed \(allowed) (\(pct(allowed, total))%)  blocked \(blocked) (\(pct(blocked, total))%)\n"
        out += "bytes  \(bytes)  allowed \(allowedBytes) (\(pct(allowedBytes, bytes))%)  blocked \(bytes - allowedBytes) (\(pct(bytes - allowedBytes, bytes))%)\n"
        out += "rules  \(hitCount) of \(p.rules.count) hit (coverage \(coverage)%)\n"
        if !blockedEdges.isEmpty {
            out += "\nTOP BLOCKED EDGES\n"
            out += TextTable.render(["FROM", "TO", "SERVICE", "FLOWS", "BYTES", "REASON"],
                                    blockedEdges.prefix(top).map { e in
                                        [e.key.from, e.key.to, e.key.port >= 0 ? "\(e.key.proto)/\(e.key.port)" : e.key.proto,
                                         "\(e.value.flows)", "\(e.value.bytes)", e.key.reason]
                                    }, rightAligned: [3, 4])
        }
        out += "\nRULE HITS\n"
        out += TextTable.ruleHits(p.rules, hits, hitBytes)
        if !never.isEmpty { out += "\nRULES NEVER HIT\n" + never.map { "  \($0)\n" }.joined() }
        if !listed.isEmpty {
            out += "\n\(flows == .all ? "FLOWS" : "BLOCKED FLOWS")\(listedCount > listed.count ? " (first \(listed.count) of \(listedCount))" : "")\n"
            out += TextTable.render(["TIME (UTC)", "PROTO", "ORIGINATOR", "RESPONDER", "FROM", "TO", "VERDICT"], listed.map { f, v, from, to in
                let verdict: String
                switch v {
                case .allowed(let r): verdict = r >= 0 ? "allowed by \(p.rules[r].name)" : "allowed (default)"
                case .blocked(let why): verdict = "blocked: \(why.rawValue)"
                }
                func ep(_ a: IPAddress, _ port: UInt16) -> String { a.isV6 ? "[\(a)]:\(port)" : "\(a):\(port)" }
                return [Fmt.iso8601(f.ts), protocolName(f.ipProto), ep(f.origH, f.origP), ep(f.respH, f.respP), from, to, verdict]
            }, rightAligned: [])
        }
        Terminal.out(out)
        Terminal.flush()
        return blocked
    }
}

func jsonQuote(_ s: String) -> String { JSONLines.quote(s) }

/// Aligned text columns.
enum TextTable {
    static func render(_ header: [String], _ rows: [[String]], rightAligned: Set<Int>) -> String {
        var widths = header.map(width)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], width(c)) } }
        let spaces = String(repeating: " ", count: (widths.max() ?? 0) + 2)
        var out = ""
        func line(_ cells: [String]) {
            for (i, c) in cells.enumerated() {
                let pad = spaces.utf8.prefix(max(0, widths[i] - width(c)))
                let last = i == cells.count - 1
                if rightAligned.contains(i) {
                    out += Substring(pad); out += c
                } else {
                    out += c
                    if !last { out += Substring(pad) }
                }
                if !last { out += "  " }
            }
            out += "\n"
        }
        line(header)
        for r in rows { line(r) }
        return out
    }

    /// The RULE HITS table (what `render` makes of rule names and two counts), written
    /// straight into bytes: a policy can have hundreds of thousands of rules.
    static func ruleHits(_ rules: [Rule], _ hits: [UInt64], _ bytes: [UInt64]) -> String {
        func digits(_ v: UInt64) -> Int {
            var n = 1, x = v
            while x >= 10 { x /= 10; n += 1 }
            return n
        }
        var w0 = 4, w1 = 4, w2 = 5
        for i in rules.indices {
            w0 = max(w0, width(rules[i].name)); w1 = max(w1, digits(hits[i])); w2 = max(w2, digits(bytes[i]))
        }
        var buf: [UInt8] = []
        buf.reserveCapacity((rules.count + 1) * (w0 + w1 + w2 + 6))
        func spaces(_ n: Int) { for _ in 0..<max(0, n) { buf.append(32) } }
        func number(_ v: UInt64, _ w: Int) {
            let n = digits(v)
            spaces(w - n)
            let at = buf.count
            for _ in 0..<n { buf.append(48) }
            var x = v, k = at + n - 1
            while true { buf[k] = UInt8(48 + x % 10); x /= 10; if x == 0 { break }; k -= 1 }
        }
        buf.append(contentsOf: "RULE".utf8); spaces(w0 - 4); buf.append(contentsOf: "  ".utf8)
        spaces(w1 - 4); buf.append(contentsOf: "HITS  ".utf8); spaces(w2 - 5); buf.append(contentsOf: "BYTES\n".utf8)
        for i in rules.indices {
            buf.append(contentsOf: rules[i].name.utf8); spaces(w0 - width(rules[i].name)); buf.append(32); buf.append(32)
            number(hits[i], w1); buf.append(32); buf.append(32)
            number(bytes[i], w2); buf.append(10)
        }
        return String(decoding: buf, as: UTF8.self)
    }

    /// Characters in a cell (bytes when ASCII, which is cheaper to count).
    static func width(_ s: String) -> Int {
        s.utf8.allSatisfy { $0 < 0x80 } ? s.utf8.count : s.count
    }
}

/// `flowmap lint`: schema errors, duplicate, shadowed, overlapping and over-broad rules; with
/// traffic, orphaned rules and stale evidence. Exit 1 on errors, 0 with warnings only.
struct LintCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lint",
        abstract: "Check a policy: errors exit 1, warnings alone exit 0.",
        discussion: """
            Errors: the file does not parse (with line:column), duplicate rules, unknown time zones. \
            Warnings: shadowed and overlapping rules, over-broad rules (every port, 0.0.0.0/0 or ::/0, \
            a block wider than /16 (IPv6 /32), a selector that matches everything); with traffic \
            (captures or --db), orphaned rules (no flow in the window) and stale evidence.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The policy file.", valueName: "file"))
    var policy: String

    @Argument(help: ArgumentHelp("Traffic to check the rules against (capture files).", valueName: "capture"))
    var captures: [String] = []

    @Option(name: .long, help: ArgumentHelp("Traffic from this store instead.", valueName: "file"))
    var db: String?

    @Option(name: .customLong("stale-days"), help: "Evidence older than this many days before the traffic's end is stale.")
    var staleDays: Double = 30

    @OptionGroup var analysis: AnalysisOptions

    init() {}

    func run() throws {
        let text: String
        do { text = try Files.readText(policy) } catch { throw fail(error.message) }
        let p: Policy
        do { p = try PolicyParser.parse(text, file: policy) { KeptUntilExit.keep($0) } } catch {
            Terminal.stderr("\(error.file):\(error.line):\(error.column): error: \(error.reason)\n")
            throw ExitCode(1)
        }
        defer { KeptUntilExit.keep(p, text) }
        var findings = PolicyLinter.lint(p)
        for r in p.rules {
            if let s = r.schedule, TimeZones.offset(s.tz, 0) == nil {
                findings.append(LintFinding(severity: .error, line: r.mark?.line ?? 0, column: r.mark?.column ?? 0, rule: r.name,
                                            message: "rule '\(r.name)': unknown time zone '\(s.tz)'"))
            }
        }
        if !captures.isEmpty || db != nil {
            let source = FlowSource(captures: captures, db: db)
            let names = NameResolver()
            let evaluator = PolicyEvaluator(policy: p, names: names, cacheBits: 18) { TimeZones.offset($0, $1) ?? 0 }
            var hits = [UInt64](repeating: 0, count: p.rules.count)
            var end: Double?
            do {
                let warnings = try FlowSourceReader.read(source, analysis: analysis, names: names) { f in
                    end = max(end ?? f.ts + f.duration, f.ts + f.duration)
                    if case .allowed(let r) = evaluator.evaluate(f), r >= 0 { hits[r] += 1 }
                }
                for w in warnings { Terminal.stderr("flowmap: warning: \(w)\n") }
            } catch {
                throw fail(error.message)
            }
            findings += PolicyLinter.lint(p, hits: hits, trafficEnd: end, staleAfter: staleDays * 86400)
        }
        findings.sort()
        var out = ""
        for f in findings { out += "\(policy):\(f.line):\(f.column): \(f.severity.rawValue): \(f.message)\n" }
        let errors = findings.filter { $0.severity == .error }.count
        out += "\(policy): \(p.rules.count) rules, \(errors) error\(errors == 1 ? "" : "s"), \(findings.count - errors) warning\(findings.count - errors == 1 ? "" : "s")\n"
        Terminal.out(out)
        Terminal.flush()
        if errors > 0 { throw ExitCode(1) }
    }
}

/// `flowmap diff OLD NEW`: rules added, removed, widened and narrowed. Exit 0 when the
/// policies allow the same, 1 when they differ (like diff(1)), 2 on trouble.
struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Compare two policies: rules added, removed, widened and narrowed.",
        discussion: """
            Rules are matched by name (suggest derives names from content). Lines start with + \
            (added), - (removed), > (widened: allows more), < (narrowed) or ~ (changed both ways); \
            workload definitions that changed are listed too. Exit 0 when nothing changed, 1 when \
            something did, 2 on errors.
            """
    )

    @Argument(help: ArgumentHelp("The old policy.", valueName: "old"))
    var old: String

    @Argument(help: ArgumentHelp("The new policy.", valueName: "new"))
    var new: String

    init() {}

    func run() throws {
        let a: Policy, b: Policy
        do {
            a = try PolicyFiles.load(old)
            b = try PolicyFiles.load(new)
        } catch { throw fail(error.message) }
        let d = PolicyDiff.compare(a, b)
        if d.isEmpty {
            Terminal.out("no changes: \(a.rules.count) rules\n")
            Terminal.flush()
            return
        }
        Terminal.out(d.text)
        Terminal.flush()
        throw ExitCode(1)
    }
}
