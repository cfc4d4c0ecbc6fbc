import ArgumentParser
import FlowCapture
import FlowCore
import FlowStore

#if canImport(Glibc)
import Glibc
#endif

/// `flowmap ingest`: analyze captures and write flows, DNS names and source metadata to the store.
struct IngestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Analyze captures into the SQLite store (flows, DNS names, per-source metadata).",
        discussion: """
            Each capture is identified by its SHA-256: ingesting the same file again is skipped, and a \
            flow whose uid is already stored is never duplicated.
            """
    )

    @Argument(help: ArgumentHelp("Capture files (pcap or pcapng); '-' reads standard input.", valueName: "capture"))
    var captures: [String]

    @Option(name: .long, help: ArgumentHelp("The flowmap SQLite store to write (created if missing).", valueName: "file"))
    var db: String

    @Option(name: .long, help: "Host id recorded with these flows.")
    var hostID = "offline"

    @OptionGroup var analysis: AnalysisOptions

    init() {}

    func validate() throws {
        if captures.isEmpty { throw ValidationError("Give at least one capture file.") }
    }

    func run() throws {
        let store: FlowStore
        do { store = try FlowStore(path: db) } catch { throw fail(error.description) }
        // Open (and check) every capture before writing anything.
        let readers: [PcapReader]
        do { readers = try CaptureRunner.open(captures) } catch { throw fail(error.message) }
        for reader in readers {
            let digest: String?
            if reader.path == "-" {
                digest = nil
            } else {
                guard let d = IngestCommand.sha256(ofFile: reader.path) else {
                    throw fail("\(reader.path): cannot read file")
                }
                digest = d
                do {
                    if try store.hasSource(sha256: d) {
                        Terminal.stderr("flowmap: \(reader.path): already ingested (sha256 \(d.prefix(12))…), skipped\n")
                        continue
                    }
                } catch { throw fail(error.description) }
            }
            var info = SourceInfo(kind: .pcap, hostID: hostID, path: reader.path, sha256: digest,
                                  linkType: reader.linkType.description)
            let sourceID: Int64
            do { sourceID = try store.beginSource(info) } catch { throw fail(error.description) }
            var batch: [FlowRecord] = []
            batch.reserveCapacity(4096)
            var added = 0
            var storeError: StoreError?
            let result = CaptureRunner.run([reader], timeouts: analysis.timeouts, quiet: analysis.quiet,
                                           keepNames: true, threads: analysis.threadCount,
                                           vlanAware: analysis.vlanAware) { r, _ in
                batch.append(r)
                if batch.count >= 4096, storeError == nil {
                    do { added += try store.insert(batch, source: sourceID, kind: .pcap, hostID: hostID) }
                    catch let e as StoreError { storeError = e } catch { storeError = StoreError(path: "\(error)", reason: "insert failed") }
                    batch.removeAll(keepingCapacity: true)
                }
            }
            do {
                if let e = storeError { throw e }
                added += try store.insert(batch, source: sourceID, kind: .pcap, hostID: hostID)
                try store.insertNames(result.names.observations, source: sourceID)
                let s = result.stats
                info.packets = s.packetsRead
                info.decoded = s.packetsDecoded
                info.nonIP = s.nonIPFrames
                info.anomalies = s.anomalies.nonZero
                info.firstTimestamp = s.firstTimestamp
                info.lastTimestamp = s.lastTimestamp
                info.complete = result.warnings.isEmpty
                info.warning = result.warnings.first
                try store.finish(source: sourceID, info, flows: result.flows)
            } catch {
                throw fail("\(error)")
            }
            for w in result.warnings { Terminal.stderr("flowmap: warning: \(w)\n") }
            Terminal.stderr("flowmap: \(reader.path): \(result.stats.packetsRead) packets, \(result.flows) flows (\(added) new), \(result.names.observations.count) distinct DNS answers\n")
        }
    }

    static func sha256(ofFile path: String) -> String? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var h = SHA256()
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
            if n > 0 { buf.withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) } }
            if n < buf.count { break }
        }
        if ferror(f) != 0 { return nil }
        return SHA256.hex(h.finalize())
    }
}
