import FlowGraph
import Yams

/// A problem in a configuration file, at a line and column (both from 1).
public struct ConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    public var file: String
    public var line: Int
    public var column: Int
    public var reason: String
    public init(file: String, line: Int, column: Int, reason: String) {
        self.file = file; self.line = line; self.column = column; self.reason = reason
    }
    public var description: String { "\(file):\(line):\(column): \(reason)" }
}

/// A YAML node with the file it came from, and typed accessors whose errors point at it.
public struct YAMLValue {
    let node: YNode
    let file: String

    /// Parses the first document of `text`; nil for an empty document. The common YAML of
    /// configuration files is read by flowmap's own reader; anything else (and every error)
    /// by Yams.
    public static func parse(_ text: String, file: String) throws(ConfigError) -> YAMLValue? {
        switch FastYAML.parse(text) {
        case .empty: return nil
        case .node(let n): return YAMLValue(node: n, file: file)
        case .unsupported: break
        }
        do {
            // No tag resolution (no regular expression per scalar): every scalar is read as text
            // and typed by the accessors below.
            guard let n = try Yams.compose(yaml: text, .basic) else { return nil }
            return YAMLValue(node: try convert(n, file: file), file: file)
        } catch let e as ConfigError {
            throw e
        } catch let e as YamlError {
            throw YAMLValue.convert(e, file: file, text: text)
        } catch {
            throw ConfigError(file: file, line: 1, column: 1, reason: "not YAML: \(error)")
        }
    }

    static func convert(_ e: YamlError, file: String, text: String) -> ConfigError {
        func clean(_ s: String) -> String {
            s.split(whereSeparator: { $0 == "\n" }).joined(separator: " ")
        }
        switch e {
        case .scanner(let ctx, let problem, let mark, _), .parser(let ctx, let problem, let mark, _),
             .composer(let ctx, let problem, let mark, _):
            let context = ctx.map { " (\(clean($0.text)) at \($0.mark.line):\($0.mark.column))" } ?? ""
            return ConfigError(file: file, line: mark.line, column: mark.column, reason: "invalid YAML: \(problem)\(context)")
        case .reader(let problem, let offset, _, _):
            var line = 1, column = 1
            if let o = offset {
                for (i, c) in text.unicodeScalars.enumerated() {
                    if i >= o { break }
                    if c == "\n" { line += 1; column = 1 } else { column += 1 }
                }
            }
            return ConfigError(file: file, line: line, column: column, reason: "cannot read: \(problem)")
        case .duplicatedKeysInMapping(let dups, let ctx):
            return ConfigError(file: file, line: ctx.mark.line, column: ctx.mark.column,
                               reason: "duplicate key\(dups.count == 1 ? "" : "s") \(dups.sorted().joined(separator: ", "))")
        default:
            return ConfigError(file: file, line: 1, column: 1, reason: "invalid YAML: \(clean("\(e)"))")
        }
    }

    /// Yams' tree as flowmap's.
    static func convert(_ n: Node, file: String) throws -> YNode {
        let l = n.mark?.line ?? 1, c = n.mark?.column ?? 1
        switch n {
        case .scalar(let s): return YNode(.scalar(s.string, plain: s.style == .plain || s.style == .any), line: l, column: c)
        case .mapping(let m): return YNode(.mapping(try m.map { (try convert($0.key, file: file), try convert($0.value, file: file)) }), line: l, column: c)
        case .sequence(let q): return YNode(.sequence(try q.map { try convert($0, file: file) }), line: l, column: c)
        case .alias: throw ConfigError(file: file, line: l, column: c, reason: "aliases (*name) are not supported")
        }
    }

    public var mark: SourceMark { SourceMark(file: file, line: node.line, column: node.column) }

    public func error(_ reason: String) -> ConfigError {
        let m = mark
        return ConfigError(file: file, line: m.line, column: m.column, reason: reason)
    }

    public var isNull: Bool {
        if case .scalar(let s, let plain) = node.kind { return plain && (s == "" || s == "~" || s == "null" || s == "Null" || s == "NULL") }
        return false
    }

    /// A mapping's entries in file order; keys must be strings and unique.
    public func mapping(_ what: String) throws(ConfigError) -> [(key: String, keyValue: YAMLValue, value: YAMLValue)] {
        guard case .mapping(let m) = node.kind else { throw error("\(what) must be a mapping") }
        var out: [(key: String, keyValue: YAMLValue, value: YAMLValue)] = []
        out.reserveCapacity(m.count)
        var seen = Set<String>()  // only for large mappings; small ones are checked in place
        for (k, v) in m {
            let kv = YAMLValue(node: k, file: file)
            guard case .scalar(let s, _) = k.kind else { throw kv.error("\(what): keys must be strings") }
            let duplicate = m.count > 16 ? !seen.insert(s).inserted : out.contains { $0.key == s }
            if duplicate { throw kv.error("\(what): duplicate key '\(s)'") }
            out.append((s, kv, YAMLValue(node: v, file: file)))
        }
        return out
    }

    /// Checks that every key is one of `allowed`.
    public static func checkKeys(_ entries: [(key: String, keyValue: YAMLValue, value: YAMLValue)], allowed: [String],
                                 in what: String) throws(ConfigError) {
        for e in entries where !allowed.contains(e.key) {
            throw e.keyValue.error("\(what): unknown key '\(e.key)' (expected one of: \(allowed.joined(separator: ", ")))")
        }
    }

    public func sequence(_ what: String) throws(ConfigError) -> [YAMLValue] {
        guard case .sequence(let s) = node.kind else { throw error("\(what) must be a list") }
        return s.map { YAMLValue(node: $0, file: file) }
    }

    /// A scalar as text (numbers and booleans as written).
    public func string(_ what: String) throws(ConfigError) -> String {
        guard case .scalar(let s, _) = node.kind else { throw error("\(what) must be a string") }
        return s
    }

    /// A non-empty string.
    public func nonEmptyString(_ what: String) throws(ConfigError) -> String {
        let s = try string(what)
        if s.isEmpty { throw error("\(what) must not be empty") }
        return s
    }

    public func int(_ what: String) throws(ConfigError) -> Int {
        guard case .scalar(let s, _) = node.kind, let v = Int(s) else { throw error("\(what) must be an integer") }
        return v
    }

    /// A list of scalars; a single scalar counts as a list of one.
    public func stringList(_ what: String) throws(ConfigError) -> [(String, YAMLValue)] {
        if case .scalar = node.kind { return [(try string(what), self)] }
        return try sequence(what).map { v throws(ConfigError) in (try v.string("\(what) entry"), v) }
    }
}
