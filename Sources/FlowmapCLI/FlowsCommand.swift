import ArgumentParser
import FlowCore
import FlowStore

extension FlowFormat: ExpressibleByArgument {}

/// `flowmap flows`: list every connection in captures (or a store), as Zeek would.
struct FlowsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flows",
        abstract: "List bidirectional flows from captures or a store.",
        discussion: """
            Formats: table (aligned, for people), json (JSON Lines; Zeek's field names), csv, and zeek \
            (a conn.log that zeek-cut reads). From captures, json/csv/zeek rows stream in the order flows \
            end (as Zeek logs them); from --db and in table format they are sorted by start time, then uid.
            """
    )

    @OptionGroup var source: SourceOptions
    @OptionGroup var analysis: AnalysisOptions

    @Option(name: .long, help: "Output format: table, json, csv or zeek.")
    var format: FlowFormat = .table

    @Flag(name: .long, help: "Print packets read and decoded and every anomaly counter on stderr.")
    var stats = false

    @Flag(name: .customLong("community-id"), help: "Add each flow's Community ID v1 (json, csv and zeek formats).")
    var communityID = false

    @Flag(name: .customLong("vlan-fields"), help: "Add vlan and inner_vlan columns to csv and zeek output (json has them whenever a flow is tagged); implied by --vlan-aware.")
    var vlanFields = false

    init() {}

    func validate() throws {
        if communityID && format == .table {
            throw ValidationError("--community-id adds a field to json, csv and zeek output, not to the table.")
        }
        if vlanFields && (format == .table || format == .json) {
            throw ValidationError("--vlan-fields adds columns to csv and zeek output (json has vlan fields whenever a flow is tagged).")
        }
    }

    func run() throws {
        var writer = FlowWriter(format: format, communityID: communityID, vlanFields: vlanFields || analysis.vlanAware)
        if let db = source.db {
            let store: FlowStore
            do { store = try FlowStore(path: db, create: false) } catch { throw fail(error.description) }
            do {
                try store.forEachFlow(since: source.sinceTime, until: source.untilTime) { writer.add($0) }
            } catch {
                throw fail("\(db): \(error)")
            }
            writer.finish(closeTime: nil)
            return
        }
        let readers: [FlowCapture.PcapReader]
        do { readers = try CaptureRunner.open(source.captures) } catch { throw fail(error.message) }
        let window = source.spec  // parsed once, not per flow
        // A conn.log without Community IDs is written straight from the table's snapshots.
        let direct: ((FlowSnapshot, Double?) -> Void)? = format == .zeek && !communityID ? { s, first in
            if writer.openTime == nil { writer.openTime = first }
            if window.admits(s.ts) { writer.add(s) }
        } : nil
        // Zeek's conn.log has no names: DNS answers are then not learned.
        let result = CaptureRunner.run(readers, timeouts: analysis.timeouts, quiet: analysis.quiet,
                                       learnNames: format != .zeek, threads: analysis.threadCount,
                                       vlanAware: analysis.vlanAware, onSnapshot: direct) { r, first in
            if writer.openTime == nil { writer.openTime = first }
            if window.admits(r.ts) { writer.add(r) }
        }
        if writer.openTime == nil { writer.openTime = result.stats.firstTimestamp }
        writer.finish(closeTime: result.stats.lastTimestamp)
        for w in result.warnings { Terminal.stderr("flowmap: warning: \(w)\n") }
        if stats { Terminal.stderr(CaptureRunner.statsText(result.stats, flows: result.flows, peakActive: result.peakActiveFlows)) }
    }
}

import FlowCapture

/// Writes records in one format; streams where the format allows.
struct FlowWriter {
    let format: FlowFormat
    let communityID: Bool
    let vlanFields: Bool
    var openTime: Double?
    private var buffered: [FlowRecord] = []
    private var started = false
    private var firstTS: Double?

    init(format: FlowFormat, communityID: Bool = false, vlanFields: Bool = false) {
        self.format = format
        self.communityID = communityID
        self.vlanFields = vlanFields
    }

    mutating func add(_ r: FlowRecord) {
        switch format {
        case .table:
            buffered.append(r)
        case .json:
            Terminal.out(JSONLines.line(r, communityID: communityID))
        case .csv:
            if !started { Terminal.out(CSVWriter.header(communityID: communityID, vlanFields: vlanFields)); started = true }
            Terminal.out(CSVWriter.row(r, communityID: communityID, vlanFields: vlanFields))
        case .zeek:
            if !started {
                Terminal.out(ZeekConnLogWriter.header(openTime: openTime, communityID: communityID, vlanFields: vlanFields))
                started = true
            }
            let cid = communityID, vf = vlanFields
            Terminal.out { ZeekConnLogWriter.write(r, into: $0, communityID: cid, vlanFields: vf) }
        }
    }

    /// A conn.log row straight from an ended flow's snapshot (zeek format without Community IDs).
    mutating func add(_ s: FlowSnapshot) {
        precondition(format == .zeek && !communityID)
        if !started {
            Terminal.out(ZeekConnLogWriter.header(openTime: openTime, communityID: false, vlanFields: vlanFields))
            started = true
        }
        let vf = vlanFields
        Terminal.out { ZeekConnLogWriter.write(s, into: $0, vlanFields: vf) }
    }

    mutating func finish(closeTime: Double?) {
        switch format {
        case .table:
            buffered.sort(by: FlowRecord.outputOrder)
            Terminal.out(TableWriter.render(buffered))
        case .csv:
            if !started { Terminal.out(CSVWriter.header(communityID: communityID, vlanFields: vlanFields)) }
        case .zeek:
            if !started {
                Terminal.out(ZeekConnLogWriter.header(openTime: openTime, communityID: communityID, vlanFields: vlanFields))
            }
            Terminal.out(ZeekConnLogWriter.footer(closeTime: closeTime ?? openTime))
        case .json:
            break
        }
        Terminal.flush()
    }
}
