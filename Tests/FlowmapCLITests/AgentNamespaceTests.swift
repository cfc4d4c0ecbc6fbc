import FlowCore
import FlowStore
import Foundation
import XCTest

/// `flowmap discover` against real traffic: two network namespaces joined by a veth pair, an
/// nft DNAT rule, a Python HTTP server running as `nobody`, curl and Python clients. Needs root
/// (CI runs as root); built and torn down by Tests/agent/netns.sh.
final class AgentNamespaceTests: XCTestCase {
    var tag = ""
    var dir: URL!

    override func setUpWithError() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root (network namespaces, nftables, conntrack)") }
        for tool in ["/usr/sbin/ip", "/usr/sbin/nft", "/usr/bin/curl", "/usr/bin/python3", "/usr/bin/setpriv"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            throw XCTSkip("\(tool) is missing (scripts/setup installs it)")
        }
        tag = "\(getpid() % 100000)"
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("flowmap-agent-\(tag)")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        // The served files must be readable by nobody.
        chmod(dir.path, 0o755)
        _ = try sh("\(netns) down \(tag)")
        let up = try sh("\(netns) up \(tag) \(dir.path)/www")
        XCTAssertEqual(up.status, 0, up.output)
    }

    override func tearDownWithError() throws {
        guard !tag.isEmpty else { return }
        _ = try sh("\(netns) down \(tag)")
        try? FileManager.default.removeItem(at: dir)
    }

    var netns: String { Repo.root.appendingPathComponent("Tests/agent/netns.sh").path }
    var srv: String { "ip netns exec fm-s-\(tag)" }
    var cli: String { "ip netns exec fm-c-\(tag)" }

    func testRecordsProcessesCountersDNATAndShortConnectionsAndFlushesOnSIGTERM() throws {
        guard let bin = Repo.binary else { throw XCTSkip("flowmap binary not built (run scripts/test)") }
        let db = dir.appendingPathComponent("agent.db").path
        let errPath = dir.appendingPathComponent("agent.err").path
        FileManager.default.createFile(atPath: errPath, contents: nil)
        let agent = Process()
        agent.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        // A long flush interval: everything reaches the store only because SIGTERM flushes.
        agent.arguments = ["netns", "exec", "fm-s-\(tag)", bin.path, "discover", "--db", db, "--flush-interval", "10m",
                           "--host-id", "test-host"]
        agent.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        agent.standardOutput = FileHandle.nullDevice
        try agent.run()
        defer { if agent.isRunning { agent.terminate() } }
        try waitFor("agent to start", timeout: 20) {
            ((try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "").contains("discover: recording")
        }

        // A remote client, directly and through the VIP; a local client; a connection that
        // lives 50 ms.
        XCTAssertEqual(try sh("\(cli) curl -sf -o /dev/null http://10.213.0.2:8080/blob").status, 0)
        XCTAssertEqual(try sh("\(cli) curl -sf -o /dev/null http://10.214.0.100/blob").status, 0)
        // The local curl talks to socat, which answers after 300 ms. (A client process that
        // exits within a few milliseconds can be gone before the agent looks; then only its
        // user is known, from the socket table. docs/agent.md.)
        XCTAssertEqual(try sh("\(srv) curl -sf -o /dev/null http://10.213.0.2:8081/").status, 0)
        let short = #"import socket,time; s=socket.create_connection(("10.213.0.2",8080)); time.sleep(0.05); s.close()"#
        XCTAssertEqual(try sh("\(srv) /usr/bin/python3 -c '\(short)'").status, 0)
        let serverPID = Int(try sh("pgrep -f 'http.server 8080 --bind 0.0.0.0 --directory \(dir.path)/www'").output
            .split(separator: "\n").first ?? "")
        XCTAssertNotNil(serverPID)

        usleep(300_000)
        agent.terminate()  // SIGTERM
        agent.waitUntilExit()
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        XCTAssertEqual(agent.terminationReason, .exit, err)
        XCTAssertEqual(agent.terminationStatus, 0, err)
        XCTAssertTrue(err.contains("attribution_pct="), err)

        var st = stat()
        XCTAssertEqual(stat(db, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600, "the store is private to its owner")

        let store = try FlowStore(path: db, create: false)
        let flows = try store.flows().filter { $0.ipProto.rawValue == 6 && $0.respP == 8080 }
        let nobodyServer = { (p: ProcessAttribution?) -> Bool in
            p?.comm == "python3" && p?.user == "nobody" && p?.uid == 65534 && p?.pid == serverPID
                && p?.exe == "/usr/bin/python3.11"
        }
        let remote = flows.filter { $0.origH == IPAddress("10.213.0.1")! }
        XCTAssertEqual(remote.count, 2, "\(flows)")
        for f in remote {
            XCTAssertEqual(f.respH, IPAddress("10.213.0.2")!)
            XCTAssertNil(f.origProcess, "the client is not on this host")
            XCTAssertTrue(nobodyServer(f.respProcess), "\(String(describing: f.respProcess))")
            // Both directions' counters, in IP bytes: the 200 000-byte body came back.
            XCTAssertGreaterThanOrEqual(f.origPkts, 4)
            XCTAssertGreaterThanOrEqual(f.respPkts, 4)
            XCTAssertGreaterThan(f.respIPBytes, 200_000)
            XCTAssertGreaterThan(f.origIPBytes, 200)
            XCTAssertEqual(f.history, "ShA")
        }
        // The VIP connection is recorded with the real backend, and the VIP kept.
        let nat = try remote.compactMap { try store.agentExtras(uid: $0.uid)?.dnat }
        XCTAssertEqual(nat.count, 1)
        XCTAssertEqual(nat.first?.0, IPAddress("10.214.0.100")!)
        XCTAssertEqual(nat.first?.1, 80)

        let local = flows.filter { $0.origH == IPAddress("10.213.0.2")! }
        XCTAssertEqual(local.count, 1, "\(flows)")
        let brief = local.first { $0.origProcess?.comm == "python3" }
        XCTAssertNotNil(brief, "a connection closed within 100 ms is attributed")
        // Read at once, not at the end of a 100 ms gather: its NEW came from a local address
        // (the wake-up socket).
        let promptReads = err.split(whereSeparator: { $0 == " " || $0 == "\n" }).first { $0.hasPrefix("prompt_reads=") }
            .flatMap { Int($0.dropFirst("prompt_reads=".count)) }
        XCTAssertGreaterThanOrEqual(promptReads ?? 0, 1, err)
        XCTAssertTrue(brief?.origProcess?.cmdline?.contains("create_connection") ?? false)
        XCTAssertTrue(nobodyServer(brief?.respProcess))
        let curl = try store.flows().first { $0.respP == 8081 }
        XCTAssertEqual(curl?.origProcess?.comm, "curl", err)
        XCTAssertEqual(curl?.origProcess?.exe, "/usr/bin/curl")
        XCTAssertEqual(curl?.origProcess?.user, "root")
        XCTAssertEqual(curl?.respProcess?.comm, "socat")
        XCTAssertEqual(curl?.respProcess?.uid, 0)

        // `flows --db` shows the attribution in JSON.
        let json = try runFlowmap(["flows", "--db", db, "--format", "json"])
        XCTAssertEqual(json.status, 0, json.stderr)
        XCTAssertTrue(json.stdout.contains(#""orig_process":{"pid":"#), json.stdout)
        XCTAssertTrue(json.stdout.contains(#""comm":"curl","exe":"/usr/bin/curl""#), json.stdout)
        XCTAssertTrue(json.stdout.contains(#""user":"nobody","uid":65534"#), json.stdout)
    }

    /// Starts the agent in the server namespace; returns it once it records.
    func startAgent(_ extra: [String], db: String, err: String, out: String? = nil,
                    environment: [String: String] = [:]) throws -> Process {
        guard let bin = Repo.binary else { throw XCTSkip("flowmap binary not built (run scripts/test)") }
        FileManager.default.createFile(atPath: err, contents: nil)
        let agent = Process()
        agent.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        agent.arguments = ["netns", "exec", "fm-s-\(tag)", bin.path, "discover", "--db", db] + extra
        if !environment.isEmpty {
            agent.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        agent.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
        if let out {
            FileManager.default.createFile(atPath: out, contents: nil)
            agent.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        } else {
            agent.standardOutput = FileHandle.nullDevice
        }
        try agent.run()
        try waitFor("agent to start", timeout: 20) {
            ((try? String(contentsOfFile: err, encoding: .utf8)) ?? "").contains("discover: recording")
        }
        return agent
    }

    func stop(_ agent: Process, err: String) -> String {
        agent.terminate()
        agent.waitUntilExit()
        let text = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
        XCTAssertEqual(agent.terminationReason, .exit, text)
        XCTAssertEqual(agent.terminationStatus, 0, text)
        return text
    }

    func testIPv6ConnectionsAreRecordedAndAttributed() throws {
        // Conntrack tracks IPv6 in this namespace too (the nft table is ip-only, so add an
        // inet rule that needs conntrack).
        XCTAssertEqual(try sh("\(srv) nft add table inet fmtest6").status, 0)
        XCTAssertEqual(try sh("\(srv) nft 'add chain inet fmtest6 in { type filter hook input priority 0; }'").status, 0)
        XCTAssertEqual(try sh("\(srv) nft add rule inet fmtest6 in ct state new counter accept").status, 0)
        let db = dir.appendingPathComponent("v6.db").path, err = dir.appendingPathComponent("v6.err").path
        let agent = try startAgent(["--flush-interval", "10m"], db: db, err: err)
        defer { if agent.isRunning { agent.terminate() } }
        XCTAssertEqual(try sh("\(cli) curl -sf -g -o /dev/null 'http://[fd42:213::2]:8082/'").status, 0)
        XCTAssertEqual(try sh("\(srv) curl -sf -g -o /dev/null 'http://[fd42:213::2]:8082/'").status, 0)
        usleep(200_000)
        _ = stop(agent, err: err)
        let flows = try FlowStore(path: db, create: false).flows().filter { $0.respP == 8082 }
        XCTAssertEqual(flows.count, 2, "\(flows)")
        let remote = try XCTUnwrap(flows.first { $0.origH == IPAddress("fd42:213::1")! })
        XCTAssertEqual(remote.respH, IPAddress("fd42:213::2")!)
        XCTAssertEqual(remote.respProcess?.comm, "socat")
        XCTAssertGreaterThan(remote.respIPBytes, 100)
        let local = try XCTUnwrap(flows.first { $0.origH == IPAddress("fd42:213::2")! })
        XCTAssertEqual(local.origProcess?.comm, "curl")
        XCTAssertEqual(local.respProcess?.comm, "socat")
    }

    func testMonitorModePrintsAndStoresWhatThePolicyWouldBlock() throws {
        let policy = dir.appendingPathComponent("policy.yaml")
        try """
            apiVersion: flowmap/v1
            kind: Policy
            metadata: {name: web-only}
            workloads:
              - name: clients
                match: {cidrs: [10.213.0.1/32]}
              - name: web
                match: {cidrs: [10.213.0.2/32]}
            defaultAction: deny
            rules:
              - name: clients-to-web
                from: {workload: clients}
                to: {workload: web}
                ports: [8080/tcp]
            """.write(to: policy, atomically: true, encoding: .utf8)
        let db = dir.appendingPathComponent("monitor.db").path
        let err = dir.appendingPathComponent("monitor.err").path, out = dir.appendingPathComponent("monitor.out").path
        let agent = try startAgent(["--policy", policy.path, "--format", "json", "--flush-interval", "10m"], db: db, err: err, out: out)
        defer { if agent.isRunning { agent.terminate() } }
        XCTAssertEqual(try sh("\(cli) curl -sf -o /dev/null http://10.213.0.2:8080/blob").status, 0)  // allowed
        XCTAssertEqual(try sh("\(srv) curl -sf -o /dev/null http://10.213.0.2:8081/").status, 0)        // web -> web: no rule
        usleep(200_000)
        let text = stop(agent, err: err)
        let lines = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n")
        XCTAssertEqual(lines.count, 1, text)
        XCTAssertTrue(lines.first?.contains(#""resp_p":8081"#) ?? false, "\(lines)")
        XCTAssertTrue(lines.first?.contains(#""verdict":"blocked","reason":"no rule between these workloads""#) ?? false, "\(lines)")
        XCTAssertTrue(text.contains("blocked=1"), text)
        let store = try FlowStore(path: db, create: false)
        let flows = try store.flows()
        XCTAssertEqual(flows.count, 2)
        for f in flows {
            let blocked = try store.agentExtras(uid: f.uid)?.blocked
            XCTAssertEqual(blocked, f.respP == 8081 ? "no rule between these workloads" : nil)
        }
    }

    func testNetlinkOverflowIsSurvivedWithoutLosingConnections() throws {
        let db = dir.appendingPathComponent("overflow.db").path, err = dir.appendingPathComponent("overflow.err").path
        // A tiny event buffer and a burst of 1500 connection attempts (each refused by a reset,
        // so each leaves a conntrack entry for 10 s): events are lost, the dump recovers them.
        let agent = try startAgent(["--netlink-buffer", "65536", "--flush-interval", "10m"], db: db, err: err)
        defer { if agent.isRunning { agent.terminate() } }
        let burst = """
            import socket
            for i in range(1500):
                s = socket.socket()
                try: s.connect(("10.213.0.2", 9))
                except OSError: pass
                s.close()
            """
        try burst.write(to: dir.appendingPathComponent("burst.py"), atomically: true, encoding: .utf8)
        XCTAssertEqual(try sh("\(srv) /usr/bin/python3 \(dir.appendingPathComponent("burst.py").path)").status, 0)
        usleep(3_000_000)
        let text = stop(agent, err: err)
        let overflows = text.split(separator: " ").first { $0.hasPrefix("overflows=") }.flatMap { Int($0.dropFirst(10)) }
        XCTAssertGreaterThan(overflows ?? 0, 0, "the buffer was meant to overflow: \(text)")
        let store = try FlowStore(path: db, create: false)
        let refused = try store.flows().filter { $0.respP == 9 }
        XCTAssertEqual(refused.count, 1500, text)
        XCTAssertEqual(Set(refused.map(\.uid)).count, 1500, "one flow per connection, none twice")
        let states = Dictionary(grouping: refused, by: \.connState).mapValues(\.count)
        XCTAssertTrue(states.keys.allSatisfy { ["REJ", "S0"].contains($0) }, "\(states)")
        print("overflow test: states \(states.sorted { $0.key < $1.key }); \(text)")
    }

    /// The kernel-side filter of TCP UPDATE events: an agent with it and one without, side by
    /// side, record the same connections with the same states and counters; the filtered one
    /// reads fewer events.
    func testTheUpdateFilterKeepsEveryFlowStateAndCounterWithFewerEvents() throws {
        func path(_ n: String) -> String { dir.appendingPathComponent(n).path }
        let args = ["--flush-interval", "10m", "--log-format", "json", "--host-id", "h"]
        let filtered = try startAgent(args, db: path("f.db"), err: path("f.err"))
        defer { if filtered.isRunning { filtered.terminate() } }
        let all = try startAgent(args, db: path("a.db"), err: path("a.err"), environment: ["FLOWMAP_CT_UPDATES": "all"])
        defer { if all.isRunning { all.terminate() } }
        // Closed by FINs (twice), refused by a reset, and one left open while the agents stop.
        XCTAssertEqual(try sh("\(cli) curl -sf -o /dev/null http://10.213.0.2:8080/blob").status, 0)
        XCTAssertEqual(try sh("\(cli) curl -sf -o /dev/null http://10.214.0.100/blob").status, 0)
        XCTAssertNotEqual(try sh("\(cli) curl -s -o /dev/null http://10.213.0.2:9/").status, 0)
        let hold = #"import socket,time; s=socket.create_connection(("10.213.0.2",8081)); time.sleep(3)"#
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        holder.arguments = ["netns", "exec", "fm-c-\(tag)", "/usr/bin/python3", "-c", hold]
        try holder.run()
        defer { if holder.isRunning { holder.terminate() } }
        usleep(700_000)
        let fText = stop(filtered, err: path("f.err")), aText = stop(all, err: path("a.err"))
        func summary(_ text: String) -> [String: Any] {
            let line = text.split(separator: "\n").last { $0.contains(#""msg":"summary""#) } ?? ""
            return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
        }
        let fs = summary(fText), ast = summary(aText)
        XCTAssertEqual(fs["tcp_update_filter"] as? Bool, true, fText)
        XCTAssertEqual(ast["tcp_update_filter"] as? Bool, false, aText)
        let fEvents = fs["events"] as? Int ?? 0, aEvents = ast["events"] as? Int ?? 0
        XCTAssertGreaterThan(fEvents, 0)
        XCTAssertLessThan(fEvents, aEvents, "SYN_RECV and FIN_WAIT..LAST_ACK updates are dropped in the kernel")

        struct Seen: Hashable { var conn: String; var state: String; var history: String; var counters: [UInt64] }
        func seen(_ db: String) throws -> [Seen] {
            try FlowStore(path: db, create: false).flows().filter { $0.ipProto == .tcp }.map {
                Seen(conn: "\($0.origH) \($0.respH):\($0.respP)", state: $0.connState, history: $0.history,
                     counters: [$0.origPkts, $0.origIPBytes, $0.respPkts, $0.respIPBytes])
            }.sorted { "\($0)" < "\($1)" }
        }
        let f = try seen(path("f.db")), a = try seen(path("a.db"))
        XCTAssertEqual(f, a)
        XCTAssertEqual(Set(f.map(\.state)), ["SF", "REJ", "S1"], "\(f)")
        XCTAssertEqual(f.count, 4, "\(f)")
    }

    /// A long-lived connection's counters reach the store while it is open: each periodic
    /// refresh asks the kernel for its entry.
    func testRefreshesBringTheCountersOfOpenConnections() throws {
        func path(_ n: String) -> String { dir.appendingPathComponent(n).path }
        let agent = try startAgent(["--flush-interval", "1s", "--refresh-interval", "1s", "--log-format", "json"],
                                   db: path("r.db"), err: path("r.err"))
        defer { if agent.isRunning { agent.terminate() } }
        // A client that trickles a request, one byte every 200 ms, for 4 s.
        let trickle = #"import socket,time; s=socket.create_connection(("10.213.0.2",8080)); [(s.send(b"G"), time.sleep(0.2)) for _ in range(20)]"#
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        client.arguments = ["netns", "exec", "fm-c-\(tag)", "/usr/bin/python3", "-c", trickle]
        try client.run()
        defer { if client.isRunning { client.terminate() } }
        var seen: FlowRecord?
        try waitFor("the open connection's counters", timeout: 3.5) {
            let flows = (try? FlowStore(path: path("r.db"), create: false).flows()) ?? []
            seen = flows.first { $0.respP == 8080 && $0.origPkts >= 6 }
            return seen != nil
        }
        XCTAssertEqual(try FlowStore(path: path("r.db"), create: false).agentExtras(uid: seen!.uid)?.open, true,
                       "counted while still open")
        XCTAssertTrue(client.isRunning)
        let text = stop(agent, err: path("r.err"))
        let summary = text.split(separator: "\n").last { $0.contains(#""msg":"summary""#) } ?? ""
        XCTAssertTrue(summary.contains(#""refresh_lookups":"#) && !summary.contains(#""refresh_lookups":0"#), text)
    }

    /// Rows are written with their state and counters the first time: a connection that
    /// closed is looked up in TIME_WAIT (its DESTROY, which brings counters, comes two minutes
    /// later), and one still open is looked up before it is written (the event filter drops
    /// the handshake's events).
    func testRowsAreWrittenWithStateAndCountersBeforeTheEntryEnds() throws {
        func path(_ n: String) -> String { dir.appendingPathComponent(n).path }
        let agent = try startAgent(["--flush-interval", "1s", "--refresh-interval", "10m", "--log-format", "json"],
                                   db: path("w.db"), err: path("w.err"))
        defer { if agent.isRunning { agent.terminate() } }
        let hold = #"import socket,time; s=socket.create_connection(("10.213.0.2",8081)); s.send(b"GET / HTTP/1.0\r\n\r\n"); time.sleep(4)"#
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        holder.arguments = ["netns", "exec", "fm-c-\(tag)", "/usr/bin/python3", "-c", hold]
        try holder.run()
        defer { if holder.isRunning { holder.terminate() } }
        XCTAssertEqual(try sh("\(cli) curl -sf -o /dev/null http://10.213.0.2:8080/blob").status, 0)
        var closed: FlowRecord?, open: FlowRecord?
        try waitFor("both rows with state and counters", timeout: 3) {
            let flows = (try? FlowStore(path: path("w.db"), create: false).flows()) ?? []
            closed = flows.first { $0.respP == 8080 && $0.connState == "SF" && $0.respIPBytes > 10_000 }
            open = flows.first { $0.respP == 8081 && $0.connState == "S1" && $0.origPkts >= 3 }
            return closed != nil && open != nil
        }
        XCTAssertEqual(closed?.history, "ShA")
        XCTAssertEqual(open?.history, "ShA")
        XCTAssertTrue(holder.isRunning, "the held connection was still open")
        // The event loop's timers may fire 4 ms late (served by timers the kernel fires anyway).
        let slack = try String(contentsOfFile: "/proc/\(agent.processIdentifier)/timerslack_ns", encoding: .utf8)
        XCTAssertEqual(slack.trimmingCharacters(in: .whitespacesAndNewlines), "4000000")
        let text = stop(agent, err: path("w.err"))
        let summary = text.split(separator: "\n").last { $0.contains(#""msg":"summary""#) } ?? ""
        XCTAssertTrue(summary.contains(#""tcp_update_filter":true"#), text)
        XCTAssertFalse(summary.contains(#""closed_lookups":0"#), text)
        XCTAssertFalse(summary.contains(#""open_lookups":0"#), text)
    }

    func testLiveCaptureWithAFilterAttributesBothEnds() throws {
        let db = dir.appendingPathComponent("live.db").path, err = dir.appendingPathComponent("live.err").path
        let agent = try startAgent(["--interface", "fms\(tag)", "--interface", "lo", "--bpf", "tcp", "--flush-interval", "10m"],
                                   db: db, err: err)
        defer { if agent.isRunning { agent.terminate() } }
        XCTAssertEqual(try sh("\(cli) curl -sf -o /dev/null http://10.213.0.2:8080/blob").status, 0)
        XCTAssertEqual(try sh("\(srv) curl -sf -o /dev/null http://10.213.0.2:8081/").status, 0)
        usleep(200_000)
        let text = stop(agent, err: err)
        XCTAssertTrue(text.contains("kernel_dropped=0"), text)
        let store = try FlowStore(path: db, create: false)
        let flows = try store.flows()
        // The filter kept only TCP (no neighbour discovery, no multicast listener reports).
        XCTAssertEqual(flows.map(\.respP).sorted(), [8080, 8081], "\(flows)")
        let remote = try XCTUnwrap(flows.first { $0.respP == 8080 })
        XCTAssertTrue(remote.history.hasPrefix("ShADad") && remote.history.contains("F") && remote.history.contains("f"),
                      remote.history)
        XCTAssertEqual(remote.connState, "SF")
        XCTAssertGreaterThan(remote.respBytes, 200_000)  // payload bytes: the packets were seen
        XCTAssertNil(remote.origProcess)
        XCTAssertEqual(remote.respProcess?.user, "nobody")
        let local = try XCTUnwrap(flows.first { $0.respP == 8081 })
        XCTAssertEqual(local.origProcess?.comm, "curl")
        XCTAssertEqual(local.respProcess?.comm, "socat")
        XCTAssertEqual(try store.agentExtras(uid: local.uid)?.open, false)
    }

    func testClearErrorsForAMissingInterfaceAndABadFilter() throws {
        let db = dir.appendingPathComponent("err.db").path
        let missing = try runFlowmap(["discover", "--db", db, "--interface", "nosuch\(tag)", "--duration", "1s"])
        XCTAssertEqual(missing.status, 2)
        XCTAssertEqual(missing.stderr, "flowmap: interface nosuch\(tag): no such interface\n")
        let bad = try runFlowmap(["discover", "--db", db, "--interface", "lo", "--bpf", "tcp and and", "--duration", "1s"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.hasPrefix("flowmap: interface lo: bad BPF filter 'tcp and and': "), bad.stderr)
        XCTAssertEqual(bad.stderr.split(separator: "\n").count, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: db), "a failed start leaves no store behind")
    }

    func testARestartAppendsAndTheOtherCommandsReadTheStore() throws {
        let db = dir.appendingPathComponent("restart.db").path
        for round in 1...2 {
            let err = dir.appendingPathComponent("restart-\(round).err").path
            let agent = try startAgent(["--flush-interval", "10m", "--host-id", "web-1"], db: db, err: err)
            defer { if agent.isRunning { agent.terminate() } }
            XCTAssertEqual(try sh("\(cli) curl -sf -o /dev/null http://10.213.0.2:8080/blob").status, 0)
            usleep(200_000)
            _ = stop(agent, err: err)
        }
        let store = try FlowStore(path: db, create: false)
        let sources = try store.sources()
        XCTAssertEqual(sources.map(\.path), ["conntrack:web-1", "conntrack:web-1"])
        // The second run found the first run's connection still in conntrack (TIME_WAIT) and
        // kept its flow: two connections, two flows.
        XCTAssertEqual(sources.map(\.flows), [1, 1])
        XCTAssertEqual(try store.flows().filter { $0.respP == 8080 }.count, 2)
        // The graph names the server by its process; suggest and simulate read the same store.
        let graph = try runFlowmap(["graph", "--db", db, "--format", "json"])
        XCTAssertEqual(graph.status, 0, graph.stderr)
        XCTAssertTrue(graph.stdout.contains("python3"), graph.stdout)
        let policy = dir.appendingPathComponent("suggested.yaml").path
        let suggest = try runFlowmap(["suggest", "--db", db, "-o", policy])
        XCTAssertEqual(suggest.status, 0, suggest.stderr)
        let policyText = try String(contentsOfFile: policy, encoding: .utf8)
        XCTAssertTrue(policyText.contains("8080/tcp"), policyText)
        XCTAssertTrue(policyText.contains("users: [nobody]") || policyText.contains("nobody"), policyText)
        let simulate = try runFlowmap(["simulate", "--db", db, "--policy", policy, "--fail-on-blocked"])
        XCTAssertEqual(simulate.status, 0, simulate.stdout + simulate.stderr)
    }

    func testWithoutPrivilegesTheErrorSaysWhatIsMissing() throws {
        guard let bin = Repo.binary else { throw XCTSkip("flowmap binary not built (run scripts/test)") }
        let db = dir.appendingPathComponent("nobody.db").path
        chmod(dir.path, 0o777)
        let r = try sh("\(srv) setpriv --reuid=65534 --regid=65534 --clear-groups \(bin.path) discover --db \(db) --duration 1s")
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertEqual(r.output, "flowmap: conntrack: cannot open netlink socket: permission denied (needs root or CAP_NET_ADMIN)\n")
        let live = try sh("\(srv) setpriv --reuid=65534 --regid=65534 --clear-groups \(bin.path) discover --db \(db) --interface lo --duration 1s")
        XCTAssertEqual(live.status, 2, live.output)
        XCTAssertEqual(live.output, "flowmap: interface lo: permission denied (needs root or CAP_NET_RAW)\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: db), "a failed start leaves no store behind")
    }

    // MARK: helpers

    struct Shell { var status: Int32; var output: String }

    func sh(_ command: String) throws -> Shell {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command + " 2>&1"]
        let out = dir.appendingPathComponent("sh-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: out) }
        let h = try FileHandle(forWritingTo: out)
        p.standardOutput = h
        p.standardInput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        try h.close()
        return Shell(status: p.terminationStatus, output: (try? String(contentsOf: out, encoding: .utf8)) ?? "")
    }

    func waitFor(_ what: String, timeout: Double, _ cond: () -> Bool) throws {
        let end = Date().addingTimeInterval(timeout)
        while !cond() {
            if Date() > end { XCTFail("timed out waiting for \(what)"); throw XCTSkip("gave up") }
            usleep(20_000)
        }
    }
}
