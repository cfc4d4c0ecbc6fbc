import CSQLiteSetup
import FlowCore
import GRDB
import GRDBSQLite

#if canImport(Glibc)
import Glibc
#endif

/// Why the store could not be used.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
}

/// Metadata about one ingested source (a capture file, or later a conntrack/live session).
public struct SourceInfo: Sendable {
    public var kind: SourceKind
    public var hostID: String
    public var path: String
    public var sha256: String?
    public var linkType: String?
    public var packets: UInt64
    public var decoded: UInt64
    public var nonIP: UInt64
    public var anomalies: [(name: String, count: Int)]
    public var firstTimestamp: Double?
    public var lastTimestamp: Double?
    public var complete: Bool
    public var warning: String?

    public init(kind: SourceKind, hostID: String, path: String, sha256: String?, linkType: String?) {
        self.kind = kind; self.hostID = hostID; self.path = path; self.sha256 = sha256; self.linkType = linkType
        packets = 0; decoded = 0; nonIP = 0; anomalies = []; complete = true
    }
}

/// The embedded SQLite store (WAL, versioned schema with named migrations).
///
/// One table per concept: `source` (what was read), `flow` (one row per flow, with room for
/// process attribution of each end), `dns_name` (names seen on the wire).
public final class FlowStore {
    public let path: String
    let db: DatabasePool

    /// Opens (and with `create`, creates) the store at `path`, migrating it to the current schema.
    /// `cacheKiB` bounds SQLite's page cache of each connection (SQLite's default is 2,000 KiB).
    public init(path: String, create: Bool = true, cacheKiB: Int? = nil) throws(StoreError) {
        self.path = path
        if !create && !FlowStore.fileExists(path) {
            throw StoreError(path: path, reason: "no such file (write one with `flowmap ingest --db`)")
        }
        _ = FlowStore.sqliteSetup
        do {
            var config = Configuration()
            config.foreignKeysEnabled = true
            if let kib = cacheKiB {
                config.prepareDatabase { db in try db.execute(sql: "PRAGMA cache_size = -\(kib)") }
            }
            db = try DatabasePool(path: path, configuration: config)
            try FlowStore.migrator.migrate(db)
        } catch let e as DatabaseError {
            throw StoreError(path: path, reason: FlowStore.explain(e))
        } catch {
            throw StoreError(path: path, reason: "cannot open database: \(error)")
        }
    }

    /// SQLite's process-wide settings, made once before the first store opens: multi-thread
    /// mode (GRDB serializes each connection's use, so SQLite's own mutex around every call,
    /// each bind included, only costs) and no memory statistics (a global mutex around every
    /// allocation). Not 0 when SQLite refused them (it then keeps its defaults: slower, as safe).
    static let sqliteSetup: Int32 = fm_sqlite_setup()

    /// Whether SQLite locks a mutex around each call on this store's writing connection
    /// (false once `sqliteSetup` took: multi-thread mode).
    public var sqliteLocksEachCall: Bool {
        (try? db.write { db in sqlite3_db_mutex(db.sqliteConnection) != nil }) ?? true
    }

    static func fileExists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    static func explain(_ e: DatabaseError) -> String {
        switch e.resultCode {
        case .SQLITE_CANTOPEN: return "cannot open database (missing directory or no permission)"
        case .SQLITE_NOTADB: return "not a flowmap database (file is not SQLite)"
        case .SQLITE_READONLY: return "database is read-only"
        case .SQLITE_CORRUPT: return "database is corrupt"
        default: return "database error: \(e.message ?? "\(e.resultCode)")"
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE source (
                  id INTEGER PRIMARY KEY,
                  kind TEXT NOT NULL,
                  host_id TEXT NOT NULL,
                  path TEXT NOT NULL,
                  sha256 TEXT,
                  link_type TEXT,
                  packets INTEGER NOT NULL DEFAULT 0,
                  decoded INTEGER NOT NULL DEFAULT 0,
                  non_ip INTEGER NOT NULL DEFAULT 0,
                  anomalies TEXT NOT NULL DEFAULT '{}',
                  first_ts REAL,
                  last_ts REAL,
                  flows INTEGER NOT NULL DEFAULT 0,
                  complete INTEGER NOT NULL DEFAULT 1,
                  warning TEXT
                );
                CREATE UNIQUE INDEX source_sha256 ON source(sha256) WHERE sha256 IS NOT NULL;
                CREATE TABLE flow (
                  id INTEGER PRIMARY KEY,
                  uid TEXT NOT NULL UNIQUE,
                  source_id INTEGER NOT NULL REFERENCES source(id) ON DELETE CASCADE,
                  source_kind TEXT NOT NULL,
                  host_id TEXT NOT NULL,
                  ts REAL NOT NULL,
                  duration REAL NOT NULL,
                  proto TEXT NOT NULL,
                  ip_proto INTEGER NOT NULL,
                  orig_h TEXT NOT NULL,
                  orig_p INTEGER NOT NULL,
                  resp_h TEXT NOT NULL,
                  resp_p INTEGER NOT NULL,
                  orig_pkts INTEGER NOT NULL,
                  orig_bytes INTEGER NOT NULL,
                  orig_ip_bytes INTEGER NOT NULL,
                  resp_pkts INTEGER NOT NULL,
                  resp_bytes INTEGER NOT NULL,
                  resp_ip_bytes INTEGER NOT NULL,
                  conn_state TEXT NOT NULL,
                  history TEXT NOT NULL,
                  missed_bytes INTEGER NOT NULL,
                  flipped INTEGER NOT NULL,
                  tunnel_parents TEXT NOT NULL,
                  resp_name TEXT,
                  resp_names TEXT NOT NULL DEFAULT '',
                  orig_pid INTEGER, orig_comm TEXT, orig_exe TEXT, orig_cmdline TEXT, orig_user TEXT,
                  orig_uid INTEGER, orig_cgroup TEXT, orig_container TEXT, orig_unit TEXT,
                  resp_pid INTEGER, resp_comm TEXT, resp_exe TEXT, resp_cmdline TEXT, resp_user TEXT,
                  resp_uid INTEGER, resp_cgroup TEXT, resp_container TEXT, resp_unit TEXT
                );
                CREATE INDEX flow_ts ON flow(ts);
                CREATE INDEX flow_service ON flow(resp_h, resp_p, proto);
                CREATE TABLE dns_name (
                  id INTEGER PRIMARY KEY,
                  source_id INTEGER NOT NULL REFERENCES source(id) ON DELETE CASCADE,
                  client TEXT NOT NULL,
                  name TEXT NOT NULL,
                  address TEXT NOT NULL,
                  chain TEXT NOT NULL,
                  ttl INTEGER NOT NULL,
                  first_seen REAL NOT NULL,
                  last_seen REAL NOT NULL,
                  answers INTEGER NOT NULL,
                  UNIQUE(source_id, client, name, address)
                );
                CREATE INDEX dns_name_address ON dns_name(address);
                """)
        }
        m.registerMigration("v2: vlan") { db in
            try db.execute(sql: """
                ALTER TABLE flow ADD COLUMN vlan INTEGER;
                ALTER TABLE flow ADD COLUMN inner_vlan INTEGER;
                """)
        }
        m.registerMigration("v3: agent") { db in
            // Pods in process attribution; what conntrack adds to a flow; monitor-mode verdicts.
            try db.execute(sql: """
                ALTER TABLE flow ADD COLUMN orig_pod TEXT;
                ALTER TABLE flow ADD COLUMN resp_pod TEXT;
                ALTER TABLE flow ADD COLUMN ct_id INTEGER;
                ALTER TABLE flow ADD COLUMN ct_zone INTEGER;
                ALTER TABLE flow ADD COLUMN ct_mark INTEGER;
                ALTER TABLE flow ADD COLUMN dnat_h TEXT;
                ALTER TABLE flow ADD COLUMN dnat_p INTEGER;
                ALTER TABLE flow ADD COLUMN snat_h TEXT;
                ALTER TABLE flow ADD COLUMN snat_p INTEGER;
                ALTER TABLE flow ADD COLUMN open INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE flow ADD COLUMN policy_blocked TEXT;
                CREATE INDEX flow_conntrack ON flow(ct_id) WHERE ct_id IS NOT NULL;
                """)
        }
        // An index keyed by the entry id alone takes every agent row at a random place: once it
        // outgrows SQLite's cache, each row cost a page read and a page write (the agent's store
        // thread doubled its CPU within a minute at 1,000 connections/s). Adoption after a
        // restart looks an entry up by its start time instead (rows are appended in that order),
        // and by id among the connections still open.
        m.registerMigration("v4: agent indexes") { db in
            try db.execute(sql: """
                DROP INDEX IF EXISTS flow_conntrack;
                CREATE INDEX flow_conntrack_time ON flow(ts, ct_id) WHERE ct_id IS NOT NULL;
                CREATE INDEX flow_conntrack_open ON flow(ct_id) WHERE ct_id IS NOT NULL AND open = 1;
                """)
        }
        // Every index is written for every row, and the agent writes thousands a second. No
        // query reads flow_service (the graph reads whole ranges of time), and (ts) and
        // (ts, ct_id) serve the same ranges: one index of time, with the conntrack id for a
        // restart's adoption, is kept.
        m.registerMigration("v5: fewer indexes") { db in
            try db.execute(sql: """
                DROP INDEX IF EXISTS flow_service;
                DROP INDEX IF EXISTS flow_conntrack_time;
                DROP INDEX IF EXISTS flow_ts;
                CREATE INDEX flow_ts ON flow(ts, ct_id);
                """)
        }
        return m
    }

    /// The ids of applied migrations, oldest first.
    public func appliedMigrations() throws -> [String] {
        try db.read { try FlowStore.migrator.appliedMigrations($0) }
    }

    /// True if a source with this SHA-256 was ingested before.
    public func hasSource(sha256: String) throws(StoreError) -> Bool {
        do {
            return try db.read { db in
                try Bool.fetchOne(db, sql: "SELECT 1 FROM source WHERE sha256 = ?", arguments: [sha256]) ?? false
            }
        } catch { throw StoreError(path: path, reason: "\(error)") }
    }

    /// Starts a source; flows are added with `insert(_:source:)` and totals set by `finish`.
    public func beginSource(_ s: SourceInfo) throws(StoreError) -> Int64 {
        do {
            return try db.write { db in
                try db.execute(sql: """
                    INSERT INTO source (kind, host_id, path, sha256, link_type) VALUES (?, ?, ?, ?, ?)
                    """, arguments: [s.kind.rawValue, s.hostID, s.path, s.sha256, s.linkType])
                return db.lastInsertedRowID
            }
        } catch { throw StoreError(path: path, reason: "\(error)") }
    }

    /// Inserts flows (a batch, in one transaction). Flows whose uid is already stored are skipped.
    /// Returns how many rows were new.
    @discardableResult
    public func insert(_ flows: [FlowRecord], source: Int64, kind: SourceKind, hostID: String) throws(StoreError) -> Int {
        guard !flows.isEmpty else { return 0 }
        do {
            return try db.write { db in
                let st = try db.cachedStatement(sql: """
                    INSERT OR IGNORE INTO flow (uid, source_id, source_kind, host_id, ts, duration, proto, ip_proto,
                      orig_h, orig_p, resp_h, resp_p, orig_pkts, orig_bytes, orig_ip_bytes, resp_pkts, resp_bytes,
                      resp_ip_bytes, conn_state, history, missed_bytes, flipped, tunnel_parents, resp_name, resp_names,
                      orig_pid, orig_comm, orig_exe, orig_cmdline, orig_user, orig_uid, orig_cgroup, orig_container, orig_unit,
                      resp_pid, resp_comm, resp_exe, resp_cmdline, resp_user, resp_uid, resp_cgroup, resp_container, resp_unit,
                      vlan, inner_vlan, orig_pod, resp_pod)
                    VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                    """)
                var added = 0
                for r in flows {
                    var args: [(any DatabaseValueConvertible)?] = [
                        r.uid, source, kind.rawValue, hostID, r.ts, r.duration, r.proto, Int(r.ipProto.rawValue),
                        r.origH.description, Int(r.origP), r.respH.description, Int(r.respP),
                        Int64(r.origPkts), Int64(r.origBytes), Int64(r.origIPBytes), Int64(r.respPkts),
                        Int64(r.respBytes), Int64(r.respIPBytes), r.connState, r.history, Int64(r.missedBytes),
                        r.flipped, r.tunnelParents.joined(separator: ","), r.respName,
                        r.respNames.joined(separator: ","),
                    ]
                    for p in [r.origProcess, r.respProcess] {
                        args += [p?.pid, p?.comm, p?.exe, p?.cmdline, p?.user, p?.uid, p?.cgroup, p?.container, p?.unit]
                    }
                    args += [r.vlan.map { Int($0) }, r.innerVlan.map { Int($0) }, r.origProcess?.pod, r.respProcess?.pod]
                    try st.execute(arguments: StatementArguments(args))
                    added += db.changesCount
                }
                return added
            }
        } catch { throw StoreError(path: path, reason: "\(error)") }
    }

    /// Records DNS observations for a source, merged per (client, name, address).
    public func insertNames(_ obs: [DNSObservation], source: Int64) throws(StoreError) {
        guard !obs.isEmpty else { return }
        do {
            try db.write { db in
                let st = try db.cachedStatement(sql: """
                    INSERT INTO dns_name (source_id, client, name, address, chain, ttl, first_seen, last_seen, answers)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(source_id, client, name, address) DO UPDATE SET
                      last_seen = max(last_seen, excluded.last_seen), ttl = excluded.ttl,
                      answers = answers + excluded.answers
                    """)
                for o in obs {
                    try st.execute(arguments: [source, o.client?.description ?? "", o.name, o.address.description,
                                               o.chain.joined(separator: ","), Int64(o.ttl), o.ts, o.lastSeen, o.answers])
                }
            }
        } catch { throw StoreError(path: path, reason: "\(error)") }
    }

    /// Writes a source's totals once its flows are in.
    public func finish(source id: Int64, _ s: SourceInfo, flows: Int) throws(StoreError) {
        let anomalies = "{" + s.anomalies.map { "\"\($0.name)\":\($0.count)" }.joined(separator: ",") + "}"
        do {
            try db.write { db in
                try db.execute(sql: """
                    UPDATE source SET packets = ?, decoded = ?, non_ip = ?, anomalies = ?, first_ts = ?, last_ts = ?,
                      flows = ?, complete = ?, warning = ? WHERE id = ?
                    """, arguments: [Int64(s.packets), Int64(s.decoded), Int64(s.nonIP), anomalies, s.firstTimestamp,
                                     s.lastTimestamp, flows, s.complete, s.warning, id])
            }
        } catch { throw StoreError(path: path, reason: "\(error)") }
    }

    /// Reads flows whose first packet lies in [since, until), ordered by (ts, uid).
    public func flows(since: Double? = nil, until: Double? = nil) throws(StoreError) -> [FlowRecord] {
        var out: [FlowRecord] = []
        do {
            try forEachFlow(since: since, until: until) { out.append($0) }
        } catch let e as StoreError { throw e } catch { throw StoreError(path: path, reason: "\(error)") }
        return out
    }

    /// Streams flows in [since, until), ordered by (ts, uid), without holding them all.
    public func forEachFlow(since: Double? = nil, until: Double? = nil, _ body: (FlowRecord) throws -> Void) throws {
        var sql = "SELECT * FROM flow"
        var conds: [String] = []
        var args: [any DatabaseValueConvertible] = []
        if let s = since { conds.append("ts >= ?"); args.append(s) }
        if let u = until { conds.append("ts < ?"); args.append(u) }
        if !conds.isEmpty { sql += " WHERE " + conds.joined(separator: " AND ") }
        sql += " ORDER BY ts, uid"
        do {
            try db.read { db in
                let cursor = try Row.fetchCursor(db, sql: sql, arguments: StatementArguments(args))
                while let row = try cursor.next() {
                    try body(FlowStore.record(row))
                }
            }
        } catch let e as DatabaseError {
            throw StoreError(path: path, reason: FlowStore.explain(e))
        }
    }

    public func sources() throws(StoreError) -> [(path: String, sha256: String?, packets: Int64, flows: Int64)] {
        do {
            return try db.read { db in
                try Row.fetchAll(db, sql: "SELECT path, sha256, packets, flows FROM source ORDER BY id").map {
                    ($0["path"], $0["sha256"], $0["packets"], $0["flows"])
                }
            }
        } catch { throw StoreError(path: path, reason: "\(error)") }
    }

    public func flowCount() throws(StoreError) -> Int {
        do { return try db.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM flow") ?? 0 } }
        catch { throw StoreError(path: path, reason: "\(error)") }
    }

    public func nameCount() throws(StoreError) -> Int {
        do { return try db.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM dns_name") ?? 0 } }
        catch { throw StoreError(path: path, reason: "\(error)") }
    }

    static func process(_ row: Row, _ side: String) -> ProcessAttribution? {
        let pid: Int? = row["\(side)_pid"]
        let comm: String? = row["\(side)_comm"], exe: String? = row["\(side)_exe"]
        let user: String? = row["\(side)_user"], cgroup: String? = row["\(side)_cgroup"]
        let pod: String? = row["\(side)_pod"]
        if pid == nil && comm == nil && exe == nil && user == nil && cgroup == nil && pod == nil { return nil }
        return ProcessAttribution(pid: pid, comm: comm, exe: exe, cmdline: row["\(side)_cmdline"], user: user,
                                  uid: row["\(side)_uid"], cgroup: cgroup, container: row["\(side)_container"],
                                  unit: row["\(side)_unit"], pod: row["\(side)_pod"])
    }

    static func record(_ row: Row) throws -> FlowRecord {
        let origText: String = row["orig_h"], respText: String = row["resp_h"]
        guard let o = IPAddress(origText), let r = IPAddress(respText) else {
            throw StoreError(path: "flow \(row["uid"] as String? ?? "?")", reason: "bad address in store")
        }
        let tp: String = row["tunnel_parents"], names: String = row["resp_names"]
        return FlowRecord(
            ts: row["ts"], uid: row["uid"], origH: o, origP: UInt16(truncatingIfNeeded: row["orig_p"] as Int),
            respH: r, respP: UInt16(truncatingIfNeeded: row["resp_p"] as Int),
            ipProto: IPProtocol(rawValue: UInt8(truncatingIfNeeded: row["ip_proto"] as Int)),
            duration: row["duration"], origBytes: UInt64(row["orig_bytes"] as Int64),
            respBytes: UInt64(row["resp_bytes"] as Int64), connState: row["conn_state"],
            missedBytes: UInt64(row["missed_bytes"] as Int64), history: row["history"],
            origPkts: UInt64(row["orig_pkts"] as Int64), origIPBytes: UInt64(row["orig_ip_bytes"] as Int64),
            respPkts: UInt64(row["resp_pkts"] as Int64), respIPBytes: UInt64(row["resp_ip_bytes"] as Int64),
            tunnelParents: tp.isEmpty ? [] : tp.split(separator: ",").map(String.init),
            flipped: row["flipped"], respName: row["resp_name"],
            respNames: names.isEmpty ? [] : names.split(separator: ",").map(String.init),
            origProcess: process(row, "orig"), respProcess: process(row, "resp"),
            vlan: (row["vlan"] as Int?).map { UInt16(truncatingIfNeeded: $0) },
            innerVlan: (row["inner_vlan"] as Int?).map { UInt16(truncatingIfNeeded: $0) })
    }
}
