/// Output formats for flows. Each renderer turns records into text; the caller writes it.
public enum FlowFormat: String, CaseIterable, Sendable {
    case table, json, csv, zeek
}

/// Zeek conn.log (TSV) writer: header lines, one row per flow, a #close line.
public struct ZeekConnLogWriter {
    public static let fields = [
        "ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "duration",
        "orig_bytes", "resp_bytes", "conn_state", "local_orig", "local_resp", "missed_bytes", "history",
        "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes", "tunnel_parents", "ip_proto",
    ]
    public static let types = [
        "time", "string", "addr", "port", "addr", "port", "enum", "string", "interval", "count", "count",
        "string", "bool", "bool", "count", "string", "count", "count", "count", "count", "set[string]", "count",
    ]

    /// The header; `openTime` is the first packet's time (kept deterministic, unlike Zeek's wall clock).
    /// With `communityID`, a last `community_id` column, as Zeek's community-id-logging policy adds.
    /// With `vlanFields`, `vlan` and `inner_vlan` columns, as Zeek's vlan-logging policy adds.
    public static func header(openTime: Double?, communityID: Bool = false, vlanFields: Bool = false) -> String {
        var s = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
        s += "#open\t\(Fmt.zeekStamp(openTime ?? 0))\n"
        s += "#fields\t" + fields.joined(separator: "\t") + (vlanFields ? "\tvlan\tinner_vlan" : "")
            + (communityID ? "\tcommunity_id" : "") + "\n"
        s += "#types\t" + types.joined(separator: "\t") + (vlanFields ? "\tint\tint" : "")
            + (communityID ? "\tstring" : "") + "\n"
        return s
    }

    public static func footer(closeTime: Double?) -> String {
        "#close\t\(Fmt.zeekStamp(closeTime ?? 0))\n"
    }

    /// Escapes a string value the way Zeek's ASCII writer does (\xNN for separators and
    /// non-printable bytes).
    static func escape(_ s: String) -> String {
        if s.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != 0x5C }) { return s }
        var out = ""
        for b in s.utf8 {
            if b < 0x20 || b == 0x7F || b == 0x5C || b >= 0x80 {
                let h = String(b, radix: 16)
                out += "\\x" + (h.count == 1 ? "0" + h : h)
            } else {
                out.unicodeScalars.append(Unicode.Scalar(b))
            }
        }
        return out.isEmpty ? "(empty)" : out
    }

    public static func row(_ r: FlowRecord) -> String {
        let w = ByteWriter(capacity: 256)
        write(r, into: w)
        return w.withBytes { String(decoding: $0, as: UTF8.self) }
    }

    /// Appends the conn.log row of an ended flow straight from the table's snapshot (no record,
    /// no strings): the same bytes as `write(snapshot.record(names:), …)` without a Community
    /// ID (conn.log has no names, so none are needed).
    public static func write(_ s: FlowSnapshot, into w: ByteWriter, vlanFields: Bool = false) {
        let f = s.flow
        w.fixed6(f.start); w.byte(9)
        let id = s.id
        FlowUID.write(id.a, id.b, into: w); w.byte(9)
        w.address(f.origH); w.byte(9)
        w.decimal(UInt64(f.origP)); w.byte(9)
        w.address(f.respH); w.byte(9)
        w.decimal(UInt64(f.respP)); w.byte(9)
        switch f.key.proto.rawValue {
        case 6: w.ascii("tcp\t-\t")  // service: no protocol detection
        case 17: w.ascii("udp\t-\t")
        case 1, 58: w.ascii("icmp\t-\t")
        default: w.ascii("unknown_transport\t-\t")
        }
        let duration = f.last - f.start
        if duration > 0 {
            w.fixed6(duration); w.byte(9)
            w.decimal(s.origBytes); w.byte(9)
            w.decimal(s.respBytes); w.byte(9)
        } else {
            w.ascii("-\t-\t-\t")
        }
        w.ascii(s.state); w.byte(9)
        w.ascii("-\t-\t")  // local_orig/local_resp: Site::local_nets is not configured
        w.decimal(s.missed); w.byte(9)
        // History letters are printable ASCII: nothing to escape.
        let n = Int(f.history.count)
        if n == 0 { w.byte(45) } else { w.withSpace(n) { for i in 0..<n { $0[i] = f.history.letter(i) } } }
        w.byte(9)
        w.decimal(f.origPkts); w.byte(9)
        w.decimal(f.origIPBytes); w.byte(9)
        w.decimal(f.respPkts); w.byte(9)
        w.decimal(f.respIPBytes); w.byte(9)
        if s.parents.isEmpty {
            w.byte(45)
        } else {
            for (i, p) in s.parents.map(\.text).sorted().enumerated() {
                if i > 0 { w.byte(44) }
                w.text(p)
            }
        }
        w.byte(9)
        w.decimal(UInt64(f.key.proto.rawValue))
        if vlanFields {
            let v = f.vlans
            w.byte(9)
            if v.count > 0 { w.decimal(UInt64(v.outer)) } else { w.byte(45) }
            w.byte(9)
            if v.count > 1 { w.decimal(UInt64(v.inner)) } else { w.byte(45) }
        }
        w.byte(10)
    }

    /// Appends one conn.log row (with its newline) to `w`.
    public static func write(_ r: FlowRecord, into w: ByteWriter, communityID: Bool = false, vlanFields: Bool = false) {
        w.fixed6(r.ts); w.byte(9)
        w.text(r.uid); w.byte(9)
        w.address(r.origH); w.byte(9)
        w.decimal(UInt64(r.origP)); w.byte(9)
        w.address(r.respH); w.byte(9)
        w.decimal(UInt64(r.respP)); w.byte(9)
        w.text(r.proto); w.byte(9)
        w.ascii("-\t")  // service: no protocol detection
        if r.hasDuration {
            w.fixed6(r.duration); w.byte(9)
            w.decimal(r.origBytes); w.byte(9)
            w.decimal(r.respBytes); w.byte(9)
        } else {
            w.ascii("-\t-\t-\t")
        }
        w.text(r.connState); w.byte(9)
        w.ascii("-\t-\t")  // local_orig/local_resp: Site::local_nets is not configured
        w.decimal(r.missedBytes); w.byte(9)
        if r.history.isEmpty { w.byte(45) } else { w.text(escape(r.history)) }
        w.byte(9)
        w.decimal(r.origPkts); w.byte(9)
        w.decimal(r.origIPBytes); w.byte(9)
        w.decimal(r.respPkts); w.byte(9)
        w.decimal(r.respIPBytes); w.byte(9)
        if r.tunnelParents.isEmpty {
            w.byte(45)
        } else {
            for (i, p) in r.tunnelParents.enumerated() {
                if i > 0 { w.byte(44) }
                w.text(p)
            }
        }
        w.byte(9)
        w.decimal(UInt64(r.ipProto.rawValue))
        if vlanFields {
            w.byte(9)
            if let v = r.vlan { w.decimal(UInt64(v)) } else { w.byte(45) }
            w.byte(9)
            if let v = r.innerVlan { w.decimal(UInt64(v)) } else { w.byte(45) }
        }
        if communityID {
            w.byte(9)
            w.text(CommunityID.v1(r))
        }
        w.byte(10)
    }
}

/// JSON Lines: one object per flow, keys in a fixed order.
public enum JSONLines {
    public static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    static func process(_ p: ProcessAttribution) -> String {
        var parts: [String] = []
        if let v = p.pid { parts.append("\"pid\":\(v)") }
        if let v = p.comm { parts.append("\"comm\":\(quote(v))") }
        if let v = p.exe { parts.append("\"exe\":\(quote(v))") }
        if let v = p.cmdline { parts.append("\"cmdline\":\(quote(v))") }
        if let v = p.user { parts.append("\"user\":\(quote(v))") }
        if let v = p.uid { parts.append("\"uid\":\(v)") }
        if let v = p.cgroup { parts.append("\"cgroup\":\(quote(v))") }
        if let v = p.container { parts.append("\"container\":\(quote(v))") }
        if let v = p.unit { parts.append("\"unit\":\(quote(v))") }
        if let v = p.pod { parts.append("\"pod\":\(quote(v))") }
        return "{" + parts.joined(separator: ",") + "}"
    }

    public static func line(_ r: FlowRecord, communityID: Bool = false) -> String {
        var s = "{\"ts\":\(Fmt.fixed(r.ts)),\"uid\":\(quote(r.uid))"
        s += ",\"orig_h\":\(quote(r.origH.description)),\"orig_p\":\(r.origP)"
        s += ",\"resp_h\":\(quote(r.respH.description)),\"resp_p\":\(r.respP)"
        s += ",\"proto\":\(quote(r.proto)),\"ip_proto\":\(r.ipProto.rawValue)"
        s += ",\"duration\":\(Fmt.fixed(r.duration))"
        s += ",\"orig_pkts\":\(r.origPkts),\"orig_bytes\":\(r.origBytes),\"orig_ip_bytes\":\(r.origIPBytes)"
        s += ",\"resp_pkts\":\(r.respPkts),\"resp_bytes\":\(r.respBytes),\"resp_ip_bytes\":\(r.respIPBytes)"
        s += ",\"conn_state\":\(quote(r.connState)),\"history\":\(quote(r.history))"
        s += ",\"missed_bytes\":\(r.missedBytes),\"flipped\":\(r.flipped)"
        s += ",\"tunnel_parents\":[" + r.tunnelParents.map(quote).joined(separator: ",") + "]"
        s += ",\"resp_name\":" + (r.respName.map(quote) ?? "null")
        if !r.respNames.isEmpty { s += ",\"resp_names\":[" + r.respNames.map(quote).joined(separator: ",") + "]" }
        if let p = r.origProcess { s += ",\"orig_process\":" + process(p) }
        if let p = r.respProcess { s += ",\"resp_process\":" + process(p) }
        if let v = r.vlan { s += ",\"vlan\":\(v)" }
        if let v = r.innerVlan { s += ",\"inner_vlan\":\(v)" }
        if communityID { s += ",\"community_id\":" + quote(CommunityID.v1(r)) }
        return s + "}\n"
    }
}

/// RFC 4180 CSV with a header row; column names match the JSON keys.
public enum CSVWriter {
    public static let columns = [
        "ts", "uid", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "ip_proto", "duration", "orig_pkts",
        "orig_bytes", "orig_ip_bytes", "resp_pkts", "resp_bytes", "resp_ip_bytes", "conn_state", "history",
        "missed_bytes", "flipped", "tunnel_parents", "resp_name", "resp_names",
    ]
    public static var header: String { columns.joined(separator: ",") + "\n" }

    public static func header(communityID: Bool, vlanFields: Bool = false) -> String {
        columns.joined(separator: ",") + (vlanFields ? ",vlan,inner_vlan" : "") + (communityID ? ",community_id" : "") + "\n"
    }

    static func field(_ s: String) -> String {
        if s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
            return "\"" + s.replacingAll("\"", with: "\"\"") + "\""
        }
        return s
    }

    public static func row(_ r: FlowRecord, communityID: Bool = false, vlanFields: Bool = false) -> String {
        var cols: [String] = [
            Fmt.fixed(r.ts), r.uid, r.origH.description, String(r.origP), r.respH.description, String(r.respP),
            r.proto, String(r.ipProto.rawValue), Fmt.fixed(r.duration), String(r.origPkts), String(r.origBytes),
            String(r.origIPBytes), String(r.respPkts), String(r.respBytes), String(r.respIPBytes), r.connState,
            r.history, String(r.missedBytes), r.flipped ? "true" : "false", r.tunnelParents.joined(separator: ";"),
            r.respName ?? "", r.respNames.joined(separator: ";"),
        ]
        if vlanFields { cols += [r.vlan.map { String($0) } ?? "", r.innerVlan.map { String($0) } ?? ""] }
        if communityID { cols.append(CommunityID.v1(r)) }
        return cols.map(field).joined(separator: ",") + "\n"
    }
}

/// An aligned table for people: UTC times, endpoints, state, packets and bytes each way.
public enum TableWriter {
    public static func render(_ records: [FlowRecord]) -> String {
        let head = ["TIME (UTC)", "PROTO", "ORIGINATOR", "RESPONDER", "STATE", "HISTORY", "PKTS >", "PKTS <",
                    "IP BYTES >", "IP BYTES <", "DURATION", "RESPONDER NAME"]
        var rows: [[String]] = [head]
        for r in records {
            rows.append([
                Fmt.iso8601(r.ts), r.proto == "unknown_transport" ? "ip/\(r.ipProto.rawValue)" : r.proto,
                endpoint(r.origH, r.origP), endpoint(r.respH, r.respP), r.connState,
                r.history.isEmpty ? "-" : r.history, String(r.origPkts), String(r.respPkts),
                String(r.origIPBytes), String(r.respIPBytes), Fmt.fixed(r.duration, digits: 3),
                r.respName ?? "-",
            ])
        }
        var widths = [Int](repeating: 0, count: head.count)
        for row in rows { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
        let rightAligned: Set<Int> = [6, 7, 8, 9, 10]
        var out = ""
        for row in rows {
            var line = ""
            for (i, c) in row.enumerated() {
                let padding = String(repeating: " ", count: widths[i] - c.count)
                let cell = rightAligned.contains(i) ? padding + c : (i == row.count - 1 ? c : c + padding)
                line += (i == 0 ? "" : "  ") + cell
            }
            out += line + "\n"
        }
        return out
    }

    static func endpoint(_ a: IPAddress, _ p: UInt16) -> String {
        a.isV6 ? "[\(a)]:\(p)" : "\(a):\(p)"
    }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for ch in self { if ch == target { out += replacement } else { out.append(ch) } }
        return out
    }
}
