import FlowCapture
import FlowCore

#if canImport(Glibc)
import Glibc
#endif

/// The outcome of reading one or more captures through one flow table.
struct CaptureRun {
    var stats: AnalysisStats
    /// One line per capture that ended early (the flows before the cut were kept).
    var warnings: [String]
    var flows: Int
    var names: DNSNameTable
    var peakActiveFlows: Int
}

/// Opens every capture first (so a bad path fails before any output), then reads them in
/// order through one analyzer, emitting flows as they expire.
enum CaptureRunner {
    static func open(_ paths: [String]) throws(UserError) -> [PcapReader] {
        var readers: [PcapReader] = []
        for p in paths {
            do {
                let r = try PcapReader(path: p)
                guard r.linkType.isSupported || r.isPcapNG else {
                    throw UserError(message: "\(p): unsupported link type \(r.linkType.rawValue) (\(r.linkType))")
                }
                readers.append(r)
            } catch let e as CaptureError {
                throw UserError(message: e.description)
            } catch let e as UserError {
                throw e
            } catch {
                throw UserError(message: "\(p): \(error)")
            }
        }
        return readers
    }

    /// Reads the captures; flows reach `onFlow` in the order they end, on the calling thread.
    /// With `learnNames` false, flows carry no DNS names (for output that has none). With
    /// `onSnapshot`, ended flows reach it instead, as the table's snapshots (no records built).
    static func run(_ readers: [PcapReader], timeouts: Timeouts, quiet: Bool, keepNames: Bool = false,
                    learnNames: Bool = true, threads: Int = 1, vlanAware: Bool = false,
                    onNames: (([DNSObservation]) -> Void)? = nil,
                    onSnapshot: ((FlowSnapshot, _ firstPacketTime: Double?) -> Void)? = nil,
                    onFlow: @escaping (FlowRecord, _ firstPacketTime: Double?) -> Void) -> CaptureRun {
        let names = DNSNameTable()
        names.keepObservations = keepNames
        final class Counter: @unchecked Sendable { var emitted = 0 }
        let counter = Counter()
        var tableRef: FlowTable?
        let table = FlowTable(timeouts: timeouts, names: names, vlanAware: vlanAware) { r in
            counter.emitted += 1
            onFlow(r, tableRef?.firstTime)
        }
        tableRef = table
        let learns = learnNames || keepNames
        let snapshots = onSnapshot.map { deliver in
            { (s: FlowSnapshot) in
                counter.emitted += 1
                deliver(s, tableRef?.firstTime)
            }
        }
        let pipeline = threads > 1 ? Pipeline(table: table, onSnapshot: snapshots) { r in
            counter.emitted += 1
            onFlow(r, tableRef?.firstTime)
        } : nil
        if pipeline == nil, let snapshots { table.onSnapshot = snapshots }
        let analyzer = pipeline?.analyzer ?? PacketAnalyzer(table: table)
        analyzer.onNames = onNames
        analyzer.learnsNames = learns
        var warnings: [String] = []
        for r in readers {
            let progress = Progress(label: r.path == "-" ? "<stdin>" : r.path, total: r.fileSize, enabled: !quiet)
            var n: UInt64 = 0
            let outcome = r.forEachPacket { lt, ts, wire, bytes in
                analyzer.process(linkType: lt, timestamp: ts, wireLength: wire, bytes: bytes)
                n &+= 1
                if n & 0xFFFF == 0 { progress.update(position: r.position, packets: n) }
            }
            progress.finish()
            for (lt, count) in r.unsupportedLinkTypes {
                warnings.append("\(r.path): \(count) packets on interfaces with unsupported link type \(lt.rawValue) (\(lt)), counted as unknown_link_frame")
            }
            if case .cutShort(let reason) = outcome {
                warnings.append("\(r.path == "-" ? "<stdin>" : r.path): capture cut short after \(n) packets (\(reason)); keeping the flows read so far")
            }
        }
        if let pipeline { pipeline.finish() } else { analyzer.finish() }
        // Diagnostics for benchmarking: CPU time of each stage.
        if getenv("FLOWMAP_THREAD_TIMES") != nil {
            let mine = threadCPUSeconds()
            if let pipeline {
                let w = pipeline.waits
                Terminal.stderr("thread_cpu_seconds\treader=\(Fmt.fixed(mine, digits: 3))\ttable=\(Fmt.fixed(pipeline.tableThreadCPU.seconds, digits: 3))\n")
                Terminal.stderr("thread_wait_seconds\treader=\(Fmt.fixed(w.reader, digits: 3))\ttable=\(Fmt.fixed(w.table, digits: 3))\n")
            } else {
                Terminal.stderr("thread_cpu_seconds\tsingle=\(Fmt.fixed(mine, digits: 3))\n")
            }
        }
        tableRef = nil
        return CaptureRun(stats: analyzer.stats, warnings: warnings, flows: counter.emitted, names: names,
                          peakActiveFlows: table.peakActiveFlows)
    }

    static func statsText(_ s: AnalysisStats, flows: Int, peakActive: Int) -> String {
        var out = "packets_read\t\(s.packetsRead)\npackets_decoded\t\(s.packetsDecoded)\n"
        out += "non_ip_frames\t\(s.nonIPFrames)\nsnaplen_truncated\t\(s.snaplenTruncated)\nflows\t\(flows)\n"
        out += "flows_peak_active\t\(peakActive)\n"
        for a in Anomaly.allCases {
            out += "anomaly.\(a.name)\t\(s.anomalies[a])\n"
        }
        return out
    }
}
