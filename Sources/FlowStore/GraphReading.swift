import FlowCore
import FlowGraph
import GRDB
import GRDBSQLite

extension FlowStore {
    /// Streams flows in [since, until) as the graph needs them (only the columns it reads), in
    /// storage order (a graph does not depend on the order of its flows; a sequential scan is
    /// much faster than walking the time index).
    public func forEachGraphFlow(since: Double? = nil, until: Double? = nil, uids: Bool = false,
                                 _ body: (GraphFlow) throws -> Void) throws {
        let sides = ["orig", "resp"]
        let processColumns = sides.flatMap { s in
            ["pid", "comm", "exe", "cmdline", "user", "uid", "cgroup", "container", "unit", "pod"].map { "\(s)_\($0)" }
        }
        // Only agent sources (conntrack, live capture) attribute processes: with none, those
        // twenty columns are all NULL and are not read.
        let attributed = try db.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM source WHERE kind != ?)", arguments: [SourceKind.pcap.rawValue]) ?? true
        }
        var sql = """
            SELECT ts, duration, orig_h, orig_p, resp_h, resp_p, ip_proto, orig_pkts, resp_pkts,
                   orig_ip_bytes, resp_ip_bytes, history, flipped, host_id, \(uids ? "uid" : "''")\(attributed ? ", " + processColumns.joined(separator: ", ") : "")
            FROM flow
            """
        var conds: [String] = []
        var args: [any DatabaseValueConvertible] = []
        if let s = since { conds.append("ts >= ?"); args.append(s) }
        if let u = until { conds.append("ts < ?"); args.append(u) }
        if !conds.isEmpty { sql += " WHERE " + conds.joined(separator: " AND ") }
        func address(_ text: String) throws -> IPAddress {
            guard let a = IPAddress(text) else { throw StoreError(path: path, reason: "bad address '\(text)' in store") }
            return a
        }
        do {
            try db.read { db in
                if !attributed {
                    // The common case (captures): columns read straight from SQLite, addresses
                    // parsed from its text without making strings.
                    let st = try db.makeStatement(sql: sql)
                    try st.setArguments(StatementArguments(args))
                    let s = st.sqliteStatement
                    defer { sqlite3_reset(s) }
                    func text(_ i: Int32) -> String {
                        guard let p = sqlite3_column_text(s, i) else { return "" }
                        return String(decoding: UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(s, i))), as: UTF8.self)
                    }
                    func addr(_ i: Int32) throws -> IPAddress {
                        if let p = sqlite3_column_text(s, i),
                           let a = IPAddress.parse(UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(s, i)))) {
                            return a
                        }
                        throw StoreError(path: path, reason: "bad address '\(text(i))' in store")
                    }
                    while true {
                        let rc = sqlite3_step(s)
                        if rc == SQLITE_DONE { break }
                        guard rc == SQLITE_ROW else { throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: db.lastErrorMessage) }
                        var f = GraphFlow(
                            ts: sqlite3_column_double(s, 0), duration: sqlite3_column_double(s, 1), origH: try addr(2),
                            origP: UInt16(truncatingIfNeeded: sqlite3_column_int64(s, 3)), respH: try addr(4),
                            respP: UInt16(truncatingIfNeeded: sqlite3_column_int64(s, 5)),
                            ipProto: IPProtocol(rawValue: UInt8(truncatingIfNeeded: sqlite3_column_int64(s, 6))),
                            origPkts: UInt64(bitPattern: sqlite3_column_int64(s, 7)), respPkts: UInt64(bitPattern: sqlite3_column_int64(s, 8)),
                            origIPBytes: UInt64(bitPattern: sqlite3_column_int64(s, 9)),
                            respIPBytes: UInt64(bitPattern: sqlite3_column_int64(s, 10)),
                            history: text(11), flipped: sqlite3_column_int64(s, 12) != 0,
                            hostID: sqlite3_column_bytes(s, 13) == 0 ? "" : text(13))
                        if uids { f.uid = text(14) }
                        try body(f)
                    }
                    return
                }
                let cursor = try Row.fetchCursor(db, sql: sql, arguments: StatementArguments(args))
                while let row = try cursor.next() {
                    var f = GraphFlow(
                        ts: row[0], duration: row[1], origH: try address(row[2]),
                        origP: UInt16(truncatingIfNeeded: row[3] as Int64), respH: try address(row[4]),
                        respP: UInt16(truncatingIfNeeded: row[5] as Int64),
                        ipProto: IPProtocol(rawValue: UInt8(truncatingIfNeeded: row[6] as Int64)),
                        origPkts: UInt64(row[7] as Int64), respPkts: UInt64(row[8] as Int64),
                        origIPBytes: UInt64(row[9] as Int64), respIPBytes: UInt64(row[10] as Int64),
                        history: row[11], flipped: row[12], hostID: row[13])
                    if uids { f.uid = row[14] }
                    if attributed {
                        f.origProcess = FlowStore.process(row, from: 15)
                        f.respProcess = FlowStore.process(row, from: 25)
                    }
                    try body(f)
                }
            }
        } catch let e as DatabaseError {
            throw StoreError(path: path, reason: FlowStore.explain(e))
        }
    }

    /// Process attribution from ten columns starting at `i` (pid, comm, exe, cmdline, user,
    /// uid, cgroup, container, unit, pod); nil when all are NULL.
    static func process(_ row: Row, from i: Int) -> ProcessAttribution? {
        var any = false
        for k in i..<(i + 10) where !row.hasNull(atIndex: k) { any = true; break }
        guard any else { return nil }
        return ProcessAttribution(pid: row[i], comm: row[i + 1], exe: row[i + 2], cmdline: row[i + 3], user: row[i + 4],
                                  uid: row[i + 5], cgroup: row[i + 6], container: row[i + 7], unit: row[i + 8],
                                  pod: row[i + 9])
    }

    /// Every DNS answer in the store, merged per (client, name, address) and source, for
    /// time-aware naming.
    public func loadNames(into resolver: NameResolver) throws(StoreError) {
        do {
            try db.read { db in
                let cursor = try Row.fetchCursor(db, sql: """
                    SELECT client, name, address, ttl, first_seen, last_seen FROM dns_name ORDER BY first_seen, id
                    """)
                while let row = try cursor.next() {
                    let clientText: String = row[0], addrText: String = row[2]
                    guard let addr = IPAddress(addrText) else { continue }
                    resolver.add(client: clientText.isEmpty ? nil : IPAddress(clientText), name: row[1], address: addr,
                                 ttl: UInt32(clamping: row[3] as Int64), first: row[4], last: row[5])
                }
            }
        } catch let e as DatabaseError {
            throw StoreError(path: path, reason: FlowStore.explain(e))
        } catch { throw StoreError(path: path, reason: "\(error)") }
    }
}
