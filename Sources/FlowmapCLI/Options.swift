import ArgumentParser
import FlowCore

/// Where flows come from: capture files, or a store written by `ingest` (or the agent).
struct SourceOptions: ParsableArguments {
    @Argument(help: ArgumentHelp("Capture files (pcap or pcapng); '-' reads standard input.", valueName: "capture"))
    var captures: [String] = []

    @Option(name: .long, help: ArgumentHelp("Read flows from this flowmap SQLite store instead of captures.", valueName: "file"))
    var db: String?

    @Option(name: .long, help: ArgumentHelp("Only flows that started at or after T (epoch seconds or RFC 3339 UTC).", valueName: "T"))
    var since: String?

    @Option(name: .long, help: ArgumentHelp("Only flows that started before T.", valueName: "T"))
    var until: String?

    func validate() throws {
        if captures.isEmpty && db == nil {
            throw ValidationError("Give capture files or --db FILE.")
        }
        if !captures.isEmpty && db != nil {
            throw ValidationError("Give either capture files or --db FILE, not both.")
        }
        if let s = since, Fmt.parseTime(s) == nil { throw ValidationError("--since: '\(s)' is not a time (epoch seconds or RFC 3339).") }
        if let u = until, Fmt.parseTime(u) == nil { throw ValidationError("--until: '\(u)' is not a time (epoch seconds or RFC 3339).") }
    }

    var sinceTime: Double? { since.flatMap(Fmt.parseTime) }
    var untilTime: Double? { until.flatMap(Fmt.parseTime) }

    var spec: FlowSource { FlowSource(captures: captures, db: db, since: sinceTime, until: untilTime) }
}

/// Where flows come from, as plain values.
struct FlowSource {
    var captures: [String] = []
    var db: String?
    var since: Double?
    var until: Double?

    func admits(_ ts: Double) -> Bool {
        if let s = since, ts < s { return false }
        if let u = until, ts >= u { return false }
        return true
    }
}

/// Flow-table settings shared by every command that reads captures.
struct AnalysisOptions: ParsableArguments {
    @Option(name: .customLong("tcp-timeout"), help: ArgumentHelp("TCP inactivity timeout in seconds (Zeek's default).", valueName: "seconds"))
    var tcpTimeout: Double = 300

    @Option(name: .customLong("udp-timeout"), help: ArgumentHelp("UDP inactivity timeout in seconds.", valueName: "seconds"))
    var udpTimeout: Double = 60

    @Option(name: .customLong("icmp-timeout"), help: ArgumentHelp("ICMP inactivity timeout in seconds.", valueName: "seconds"))
    var icmpTimeout: Double = 60

    @Option(name: .customLong("other-timeout"), help: ArgumentHelp("Inactivity timeout for other IP protocols, in seconds.", valueName: "seconds"))
    var otherTimeout: Double = 60

    @Flag(name: .shortAndLong, help: "No progress bar.")
    var quiet = false

    @Flag(name: .customLong("vlan-aware"), help: "Make VLAN IDs part of the flow key (Zeek's vlan_fivetuple): the same 5-tuple in different VLANs is different flows.")
    var vlanAware = false

    @Option(name: .long, help: "Threads: 1 decodes and tracks flows on one thread; 2 (the default with two or more CPUs) decodes on one and tracks flows on another. Output is identical.")
    var threads: Int?

    var threadCount: Int { threads ?? (availableCPUs() >= 2 ? 2 : 1) }

    func validate() throws {
        if let t = threads, t != 1 && t != 2 { throw ValidationError("--threads must be 1 or 2.") }
        for (name, v) in [("tcp", tcpTimeout), ("udp", udpTimeout), ("icmp", icmpTimeout), ("other", otherTimeout)] {
            if !(v > 0) || !v.isFinite { throw ValidationError("--\(name)-timeout must be a positive number of seconds.") }
        }
    }

    var timeouts: Timeouts {
        var t = Timeouts()
        t.tcpInactivity = tcpTimeout
        t.udpInactivity = udpTimeout
        t.icmpInactivity = icmpTimeout
        t.otherInactivity = otherTimeout
        return t
    }
}
