import FlowCore
import GRDB
import GRDBSQLite

#if canImport(Glibc)
import Glibc
#endif

/// What the live agent knows of a flow beyond the conn.log columns.
public struct AgentFlowExtras: Sendable {
    /// The conntrack entry's id, zone and mark.
    public var conntrackID: UInt32?
    public var zone: UInt16?
    public var mark: UInt32?
    /// The address and port the client used, when DNAT sent it to the recorded server.
    public var dnat: (IPAddress, UInt16)?
    /// The client as the server saw it, when SNAT rewrote it.
    public var snat: (IPAddress, UInt16)?
    /// True while the connection is still open (its counters will grow).
    public var open: Bool
    /// Why the monitored policy would block it, if it would.
    public var blocked: String?
    /// Whether the writer knows this is the flow's first row (nil: the store looks it up).
    public var isNew: Bool?

    public init(conntrackID: UInt32? = nil, zone: UInt16? = nil, mark: UInt32? = nil, dnat: (IPAddress, UInt16)? = nil,
                snat: (IPAddress, UInt16)? = nil, open: Bool = false, blocked: String? = nil, isNew: Bool? = nil) {
        self.conntrackID = conntrackID; self.zone = zone; self.mark = mark; self.dnat = dnat; self.snat = snat
        self.open = open; self.blocked = blocked; self.isNew = isNew
    }
}

extension FlowStore {
    /// Creates the store file readable by its owner only (mode 0600) when it does not exist
    /// yet, then opens it: flows name hosts, users and command lines.
    public static func openPrivate(path: String) throws(StoreError) -> FlowStore {
        if !fileExists(path) {
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd < 0 && errno != EEXIST {
                throw StoreError(path: path, reason: "cannot create: \(String(cString: strerror(errno)))")
            }
            if fd >= 0 { close(fd) }
        }
        // A long-running agent writes small batches: a small page cache keeps its memory low.
        return try FlowStore(path: path, cacheKiB: 256)
    }

    private static let processFields = ["pid", "comm", "exe", "cmdline", "user", "uid", "cgroup", "container", "unit", "pod"]

    /// A live source's running totals, written with a batch of its flows.
    public struct SourceTotals: Sendable {
        public var firstTimestamp: Double?
        public var lastTimestamp: Double?
        public var complete: Bool
        public var warning: String?
        /// Flows recorded before this batch (the batch's new rows are added).
        public var flowsBefore: Int

        public init(firstTimestamp: Double?, lastTimestamp: Double?, complete: Bool, warning: String?, flowsBefore: Int) {
            self.firstTimestamp = firstTimestamp; self.lastTimestamp = lastTimestamp; self.complete = complete
            self.warning = warning; self.flowsBefore = flowsBefore
        }
    }

    /// Writes agent flows in one transaction: new uids are inserted, known ones updated in
    /// place (counters, state, duration; attribution already stored is kept). With `totals`,
    /// the source's running totals are updated in the same transaction. Returns how many rows
    /// were new (as the writer says in `isNew`, else looked up).
    ///
    /// A row the writer knows exists and that brings no attribution and no verdict (the final
    /// counters of a closed connection, from a DESTROY that brought more than the lookup at its
    /// close, or a refresh's counters) is written by a narrow UPDATE of the columns that
    /// change, at a fraction of an upsert's cost.
    @discardableResult
    public func upsert(_ flows: [(FlowRecord, AgentFlowExtras)], source: Int64, kind: SourceKind,
                       hostID: String, totals: SourceTotals? = nil) throws(StoreError) -> Int {
        guard !flows.isEmpty || totals != nil else { return 0 }
        let base = ["uid", "source_id", "source_kind", "host_id", "ts", "duration", "proto", "ip_proto", "orig_h", "orig_p",
                    "resp_h", "resp_p", "orig_pkts", "orig_bytes", "orig_ip_bytes", "resp_pkts", "resp_bytes",
                    "resp_ip_bytes", "conn_state", "history", "missed_bytes", "flipped", "tunnel_parents", "resp_name",
                    "resp_names"]
        let proc = ["orig", "resp"].flatMap { s in FlowStore.processFields.map { "\(s)_\($0)" } }
        let extra = ["ct_id", "ct_zone", "ct_mark", "dnat_h", "dnat_p", "snat_h", "snat_p", "open", "policy_blocked"]
        let columns = base + proc + extra
        let grow = ["duration", "orig_pkts", "orig_bytes", "orig_ip_bytes", "resp_pkts", "resp_bytes", "resp_ip_bytes"]
        var sets = grow.map { "\($0) = max(\($0), excluded.\($0))" }
        sets += ["conn_state = excluded.conn_state", "open = excluded.open",
                 "policy_blocked = coalesce(policy_blocked, excluded.policy_blocked)"]
        sets += proc.map { "\($0) = coalesce(\($0), excluded.\($0))" }
        let sql = """
            INSERT INTO flow (\(columns.joined(separator: ", ")))
            VALUES (\(Array(repeating: "?", count: columns.count).joined(separator: ",")))
            ON CONFLICT(uid) DO UPDATE SET \(sets.joined(separator: ", "))
            """
        do {
            return try db.write { db in
                let st = try db.cachedStatement(sql: sql)
                let existing = try db.cachedStatement(sql: "SELECT 1 FROM flow WHERE uid = ?")
                let narrow = try db.cachedStatement(sql: FlowStore.counterUpdateSQL)
                var added = 0
                for (r, x) in flows {
                    if FlowStore.isCounterUpdate(r, x) {
                        var b = Binder(narrow.sqliteStatement)
                        b.real(r.duration); b.int(Int64(r.origPkts)); b.int(Int64(r.origBytes)); b.int(Int64(r.origIPBytes))
                        b.int(Int64(r.respPkts)); b.int(Int64(r.respBytes)); b.int(Int64(r.respIPBytes))
                        b.text(r.connState); b.int(x.open ? 1 : 0); b.text(r.uid)
                        let rc = sqlite3_step(narrow.sqliteStatement)
                        sqlite3_reset(narrow.sqliteStatement)
                        guard rc == SQLITE_DONE else {
                            throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: db.lastErrorMessage)
                        }
                        if sqlite3_changes(db.sqliteConnection) == 1 { continue }
                        // Not there after all: the full row below.
                    }
                    if let isNew = x.isNew {
                        if isNew { added += 1 }
                    } else if try Bool.fetchOne(existing, arguments: [r.uid]) == nil {
                        added += 1
                    }
                    // Bound straight into SQLite: GRDB's statement arguments box every value,
                    // which cost as much as the write itself at thousands of rows a second.
                    var b = Binder(st.sqliteStatement)
                    b.text(r.uid); b.int(source); b.text(kind.rawValue); b.text(hostID); b.real(r.ts); b.real(r.duration)
                    b.text(r.proto); b.int(Int64(r.ipProto.rawValue)); b.text(r.origH.description); b.int(Int64(r.origP))
                    b.text(r.respH.description); b.int(Int64(r.respP))
                    b.int(Int64(r.origPkts)); b.int(Int64(r.origBytes)); b.int(Int64(r.origIPBytes)); b.int(Int64(r.respPkts))
                    b.int(Int64(r.respBytes)); b.int(Int64(r.respIPBytes)); b.text(r.connState); b.text(r.history)
                    b.int(Int64(r.missedBytes)); b.int(r.flipped ? 1 : 0); b.text(r.tunnelParents.joined(separator: ","))
                    b.text(r.respName); b.text(r.respNames.joined(separator: ","))
                    func process(_ p: ProcessAttribution?) {
                        b.int(p?.pid.map(Int64.init)); b.text(p?.comm); b.text(p?.exe); b.text(p?.cmdline); b.text(p?.user)
                        b.int(p?.uid.map(Int64.init)); b.text(p?.cgroup); b.text(p?.container); b.text(p?.unit); b.text(p?.pod)
                    }
                    process(r.origProcess)
                    process(r.respProcess)
                    b.int(x.conntrackID.map(Int64.init)); b.int(x.zone.map(Int64.init)); b.int(x.mark.map(Int64.init))
                    b.text(x.dnat?.0.description); b.int(x.dnat.map { Int64($0.1) }); b.text(x.snat?.0.description)
                    b.int(x.snat.map { Int64($0.1) }); b.int(x.open ? 1 : 0); b.text(x.blocked)
                    let rc = sqlite3_step(st.sqliteStatement)
                    sqlite3_reset(st.sqliteStatement)
                    guard rc == SQLITE_DONE else {
                        throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: db.lastErrorMessage)
                    }
                }
                if let t = totals {
                    try db.execute(sql: """
                        UPDATE source SET first_ts = ?, last_ts = ?, complete = ?, warning = ?, flows = ? WHERE id = ?
                        """, arguments: [t.firstTimestamp, t.lastTimestamp, t.complete, t.warning, t.flowsBefore + added, source])
                }
                return added
            }
        } catch { throw StoreError(path: path, reason: "\(error)") }
    }

    /// Whether `upsert` writes this row by the narrow counter update: the writer knows the row
    /// exists, and it brings no attribution and no verdict.
    public static func isCounterUpdate(_ r: FlowRecord, _ x: AgentFlowExtras) -> Bool {
        x.isNew == false && r.origProcess == nil && r.respProcess == nil && x.blocked == nil
    }

    /// The columns a known row's later update changes (as the upsert's conflict clause sets them).
    static let counterUpdateSQL = """
        UPDATE flow SET duration = max(duration, ?), orig_pkts = max(orig_pkts, ?), orig_bytes = max(orig_bytes, ?),
          orig_ip_bytes = max(orig_ip_bytes, ?), resp_pkts = max(resp_pkts, ?), resp_bytes = max(resp_bytes, ?),
          resp_ip_bytes = max(resp_ip_bytes, ?), conn_state = ?, open = ?
        WHERE uid = ?
        """

    /// Agent columns of one flow (for tests and `flows --db` consumers that want them).
    public func agentExtras(uid: String) throws(StoreError) -> AgentFlowExtras? {
        do {
            return try db.read { db in
                guard let row = try Row.fetchOne(db, sql: """
                    SELECT ct_id, ct_zone, ct_mark, dnat_h, dnat_p, snat_h, snat_p, open, policy_blocked
                    FROM flow WHERE uid = ?
                    """, arguments: [uid]) else { return nil }
                func ep(_ h: String?, _ p: Int?) -> (IPAddress, UInt16)? {
                    guard let h, let a = IPAddress(h), let p else { return nil }
                    return (a, UInt16(truncatingIfNeeded: p))
                }
                return AgentFlowExtras(
                    conntrackID: (row[0] as Int64?).map { UInt32(truncatingIfNeeded: $0) },
                    zone: (row[1] as Int?).map { UInt16(truncatingIfNeeded: $0) },
                    mark: (row[2] as Int64?).map { UInt32(truncatingIfNeeded: $0) },
                    dnat: ep(row[3], row[4]), snat: ep(row[5], row[6]), open: row[7], blocked: row[8])
            }
        } catch { throw StoreError(path: path, reason: "\(error)") }
    }

    /// The flow an earlier run of the agent on `hostID` recorded for this conntrack entry (same
    /// id, zone and original tuple; when the entry's start is known, first seen within a second
    /// of it, else still open when that run last wrote it). Rows of `notFrom` (the asking run's
    /// own source) are not looked at: the kernel reuses an entry id with the same tuple for a
    /// later connection, and a connection the running agent meets first in a dump (its NEW still
    /// queued) is not one it recorded before.
    public func conntrackFlow(hostID: String, id: UInt32, zone: UInt16, proto: UInt8, origH: IPAddress, origP: UInt16,
                              startedBy: Double?, notFrom: Int64? = nil) throws(StoreError) -> (uid: String, ts: Double)? {
        do {
            return try db.read { db in
                var args: [any DatabaseValueConvertible] = [Int64(id), hostID, Int(zone), Int(proto), origH.description, Int(origP)]
                if let s = startedBy { args += [s - 1, s + 1] }
                if let n = notFrom { args.append(n) }
                let sql = FlowStore.adoptionSQL(byStart: startedBy != nil, notFrom: notFrom != nil)
                guard let row = try Row.fetchOne(db, sql: sql, arguments: StatementArguments(args)) else { return nil }
                return (row[0], row[1])
            }
        } catch { throw StoreError(path: path, reason: "\(error)") }
    }

    /// The adoption query: by start time (±1 s) or among open rows; both forms search an index
    /// (flow_ts on (ts, ct_id), flow_conntrack_open), never scan the table.
    static func adoptionSQL(byStart: Bool, notFrom: Bool) -> String {
        var sql = """
            SELECT uid, ts FROM flow WHERE ct_id = ? AND host_id = ? AND coalesce(ct_zone, 0) = ?
              AND ip_proto = ? AND orig_h = ? AND orig_p = ?
            """
        sql += byStart ? " AND ts BETWEEN ? AND ?" : " AND open = 1"
        if notFrom { sql += " AND source_id != ?" }
        return sql + " ORDER BY ts DESC LIMIT 1"
    }

    /// The file's size on disk with its WAL, in bytes.
    public var sizeOnDisk: Int64 {
        var total: Int64 = 0
        for p in [path, path + "-wal"] {
            var st = stat()
            if stat(p, &st) == 0 { total += Int64(st.st_size) }
        }
        return total
    }
}

/// Binds values to a prepared SQLite statement's parameters, in order. Text is handed over
/// from the string's own UTF-8 storage (SQLite copies it): no C string is made per value.
private struct Binder {
    private let stmt: OpaquePointer
    private var i: Int32 = 1
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
    private static let empty: StaticString = ""

    init(_ stmt: OpaquePointer) {
        self.stmt = stmt
        sqlite3_reset(stmt)
    }

    mutating func text(_ s: String?) {
        if var s {
            s.withUTF8 { b in
                let p = b.baseAddress ?? Binder.empty.utf8Start
                _ = p.withMemoryRebound(to: CChar.self, capacity: max(1, b.count)) {
                    sqlite3_bind_text(stmt, i, $0, Int32(b.count), Binder.transient)
                }
            }
        } else {
            sqlite3_bind_null(stmt, i)
        }
        i += 1
    }

    mutating func int(_ v: Int64?) {
        if let v { sqlite3_bind_int64(stmt, i, v) } else { sqlite3_bind_null(stmt, i) }
        i += 1
    }

    mutating func real(_ v: Double) {
        sqlite3_bind_double(stmt, i, v)
        i += 1
    }
}
