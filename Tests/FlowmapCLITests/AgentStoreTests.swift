import FlowCore
@testable import FlowStore
import GRDB
import Foundation
import XCTest

/// How the agent's batches reach the store: full upserts for new rows, a narrow update for the
/// final counters of a row already written, and the source's totals in the same transaction.
final class AgentStoreTests: XCTestCase {
    func record(_ uid: String, pkts: UInt64, state: String, process: ProcessAttribution?) -> FlowRecord {
        FlowRecord(ts: 1_800_000_000, uid: uid, origH: IPAddress("10.0.0.1")!, origP: 40000, respH: IPAddress("10.0.0.2")!,
                   respP: 443, ipProto: .tcp, duration: Double(pkts) / 10, origBytes: 0, respBytes: 0, connState: state,
                   missedBytes: 0, history: "ShA", origPkts: pkts, origIPBytes: pkts * 60, respPkts: pkts + 1,
                   respIPBytes: pkts * 1500, tunnelParents: [], flipped: false, respName: nil, respNames: [],
                   respProcess: process)
    }

    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("flowmap-agentstore-\(getpid())-\(name.hashValue)")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// A new run of the agent on host "h": its source row.
    func run(_ store: FlowStore) throws -> Int64 {
        var info = SourceInfo(kind: .conntrack, hostID: "h", path: "conntrack:h", sha256: nil, linkType: nil)
        info.complete = false
        return try store.beginSource(info)
    }

    /// SQLite runs in multi-thread mode (GRDB serializes each connection's use): no mutex is
    /// locked around each bind and step of the agent's writes.
    func testStoreConnectionsTakeNoPerCallMutex() throws {
        let store = try FlowStore.openPrivate(path: dir.appendingPathComponent("a.db").path)
        XCTAssertEqual(FlowStore.sqliteSetup, 0, "sqlite3_config took multi-thread mode")
        XCTAssertFalse(store.sqliteLocksEachCall)
        // The store works as before.
        let source = try store.beginSource(SourceInfo(kind: .conntrack, hostID: "h", path: "conntrack:h", sha256: nil, linkType: nil))
        XCTAssertEqual(try store.upsert([(record("C1", pkts: 3, state: "SF", process: nil), AgentFlowExtras(open: false))],
                                        source: source, kind: .conntrack, hostID: "h"), 1)
    }

    func testFinalCountersUpdateTheRowAndKeepItsAttribution() throws {
        let store = try FlowStore.openPrivate(path: dir.appendingPathComponent("a.db").path)
        let source = try run(store)
        let nginx = ProcessAttribution(pid: 42, comm: "nginx", exe: "/usr/sbin/nginx", user: "www-data", uid: 33)

        // The connection closes (no counters yet); a second, unrelated row is new too.
        var added = try store.upsert(
            [(record("C0000000000000000a", pkts: 0, state: "SF", process: nginx), AgentFlowExtras(open: false, isNew: true)),
             (record("C0000000000000000b", pkts: 3, state: "S1", process: nil), AgentFlowExtras(open: true, isNew: true))],
            source: source, kind: .conntrack, hostID: "h",
            totals: .init(firstTimestamp: 1, lastTimestamp: 2, complete: false, warning: nil, flowsBefore: 0))
        XCTAssertEqual(added, 2)
        // Its DESTROY brings the counters: a row the writer knows, without attribution. A row
        // the writer wrongly believes written is inserted all the same.
        added = try store.upsert(
            [(record("C0000000000000000a", pkts: 7, state: "SF", process: nil), AgentFlowExtras(open: false, isNew: false)),
             (record("C0000000000000000c", pkts: 2, state: "S0", process: nil), AgentFlowExtras(open: false, isNew: false)),
             (record("C0000000000000000b", pkts: 1, state: "SF", process: nil), AgentFlowExtras(open: false, isNew: false))],
            source: source, kind: .conntrack, hostID: "h",
            totals: .init(firstTimestamp: 1, lastTimestamp: 3, complete: true, warning: "w", flowsBefore: 2))
        XCTAssertEqual(added, 0, "the writer said no row was new")

        let flows = Dictionary(uniqueKeysWithValues: try store.flows().map { ($0.uid, $0) })
        XCTAssertEqual(flows.count, 3)
        let a = try XCTUnwrap(flows["C0000000000000000a"])
        XCTAssertEqual(a.origPkts, 7)
        XCTAssertEqual(a.respPkts, 8)
        XCTAssertEqual(a.origIPBytes, 420)
        XCTAssertEqual(a.respIPBytes, 10500)
        XCTAssertEqual(a.duration, 0.7, accuracy: 1e-9)
        XCTAssertEqual(a.respProcess?.comm, "nginx", "attribution stored at close is kept")
        XCTAssertEqual(a.respProcess?.pid, 42)
        XCTAssertEqual(a.history, "ShA")
        // Counters never go back; the state and the open flag follow the last word.
        let b = try XCTUnwrap(flows["C0000000000000000b"])
        XCTAssertEqual(b.origPkts, 3)
        XCTAssertEqual(b.connState, "SF")
        XCTAssertEqual(try store.agentExtras(uid: "C0000000000000000b")?.open, false)
        XCTAssertEqual(flows["C0000000000000000c"]?.origPkts, 2)

        let src = try XCTUnwrap(try store.sources().first)
        XCTAssertEqual(src.flows, 2, "the totals were written with the batch")
    }

    /// Adoption after a restart finds the connection an earlier run recorded, and only that:
    /// not a row of the asking run, not an older connection that had the same entry id and
    /// tuple (the kernel reuses both).
    func testAdoptionMatchesOnlyAnEarlierRunsRecordOfTheSameConnection() throws {
        let store = try FlowStore.openPrivate(path: dir.appendingPathComponent("a.db").path)
        let first = try run(store)
        var old = record("C0000000000000000o", pkts: 1, state: "SF", process: nil)
        old.ts = 1_800_000_000
        var recent = record("C0000000000000000r", pkts: 1, state: "SF", process: nil)
        recent.ts = 1_800_000_300.02
        let x = AgentFlowExtras(conntrackID: 77, zone: 0, open: false, isNew: true)
        try store.upsert([(old, x), (recent, x)], source: first, kind: .conntrack, hostID: "h")
        let second = try run(store)
        func find(startedBy: Double?, notFrom: Int64) throws -> String? {
            try store.conntrackFlow(hostID: "h", id: 77, zone: 0, proto: 6, origH: IPAddress("10.0.0.1")!, origP: 40000,
                                    startedBy: startedBy, notFrom: notFrom)?.uid
        }
        XCTAssertEqual(try find(startedBy: 1_800_000_300, notFrom: second), "C0000000000000000r")
        XCTAssertNil(try find(startedBy: 1_800_000_300, notFrom: first), "the asking run's own rows are not adopted")
        XCTAssertNil(try find(startedBy: 1_800_000_600, notFrom: second), "an older connection with the same id and tuple")
        XCTAssertEqual(try find(startedBy: 1_800_000_000.5, notFrom: second), "C0000000000000000o")
        // Without a start time, only a connection still open when the earlier run wrote it.
        XCTAssertNil(try find(startedBy: nil, notFrom: second))
        var open = record("C0000000000000000p", pkts: 1, state: "S1", process: nil)
        open.ts = 1_700_000_000
        try store.upsert([(open, AgentFlowExtras(conntrackID: 77, zone: 0, open: true, isNew: true))], source: first,
                         kind: .conntrack, hostID: "h")
        XCTAssertEqual(try find(startedBy: nil, notFrom: second), "C0000000000000000p")
    }

    /// A restart looks each tracked connection up: by index, never by scanning the table.
    func testAdoptionLookupsSearchAnIndex() throws {
        let store = try FlowStore.openPrivate(path: dir.appendingPathComponent("p.db").path)
        for byStart in [true, false] {
            for notFrom in [true, false] {
                let sql = FlowStore.adoptionSQL(byStart: byStart, notFrom: notFrom)
                let plan = try store.db.read { db in
                    try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql,
                                     arguments: StatementArguments(Array(repeating: 1, count: sql.filter { $0 == "?" }.count)))
                        .map { $0["detail"] as String }
                }
                XCTAssertTrue(plan.contains { $0.contains("USING INDEX") }, "\(plan)")
                XCTAssertFalse(plan.contains { $0.hasPrefix("SCAN") }, "\(plan)")
            }
        }
        // Three indexes on flows (v5), the time one carrying the conntrack id.
        let (indexes, timeColumns) = try store.db.read { db in
            (try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'flow' ORDER BY name"),
             try String.fetchAll(db, sql: "SELECT name FROM pragma_index_info('flow_ts') ORDER BY seqno"))
        }
        XCTAssertEqual(indexes, ["flow_conntrack_open", "flow_ts", "sqlite_autoindex_flow_1"])
        XCTAssertEqual(timeColumns, ["ts", "ct_id"])
    }
}
