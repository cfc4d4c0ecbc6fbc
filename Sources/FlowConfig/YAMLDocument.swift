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
    let node: Node
    let file: String

    /// Parses the first document of `text`; nil for an empty document.
    public static func parse(_ text: String, file: String) throws(ConfigError) -> YAMLValue? {
        do {
            // No tag resolution (no regular expression per scalar): every scalar is read as text
            // and typed by the accessors below.
            guard let n = try Yams.compose(yaml: text, .basic) else { return nil }
            return YAMLValue(node: n, file: file)
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

    public var mark: SourceMark {
        let m = node.mark
        return SourceMark(file: file, line: m?.line ?? 1, column: m?.column ?? 1)
    }

    public func error(_ reason: String) -> ConfigError {
        let m = mark
        return ConfigError(file: file, line: m.line, column: m.column, reason: reason)
    }

    public var isNull: Bool {
        if case .scalar(let s) = node { return s.tag.description == "tag:yaml.org,2002:null" || (s.string == "" && s.style == .plain) || s.string == "~" || s.string == "null" }
        return false
    }

    /// A mapping's entries in file order; keys must be strings and unique.
    public func mapping(_ what: String) throws(ConfigError) -> [(key: String, keyValue: YAMLValue, value: YAMLValue)] {
        guard case .mapping(let m) = node else { throw error("\(what) must be a mapping") }
        var out: [(key: String, keyValue: YAMLValue, value: YAMLValue)] = []
        var seen = Set<String>()
        for (k, v) in m {
            let kv = YAMLValue(node: k, file: file)
            guard case .scalar(let s) = k else { throw kv.error("\(what): keys must be strings") }
            if !seen.insert(s.string).inserted { throw kv.error("\(what): duplicate key '\(s.string)'") }
            out.append((s.string, kv, YAMLValue(node: v, file: file)))
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
        guard case .sequence(let s) = node else { throw error("\(what) must be a list") }
        return s.map { YAMLValue(node: $0, file: file) }
    }

    /// A scalar as text (numbers and booleans as written).
    public func string(_ what: String) throws(ConfigError) -> String {
        guard case .scalar(let s) = node else { throw error("\(what) must be a string") }
        return s.string
    }

    /// A non-empty string.
    public func nonEmptyString(_ what: String) throws(ConfigError) -> String {
        let s = try string(what)
        if s.isEmpty { throw error("\(what) must not be empty") }
        return s
    }

    public func int(_ what: String) throws(ConfigError) -> Int {
        guard case .scalar(let s) = node, let v = Int(s.string) else { throw error("\(what) must be an integer") }
        return v
    }

    /// A list of scalars; a single scalar counts as a list of one.
    public func stringList(_ what: String) throws(ConfigError) -> [(String, YAMLValue)] {
        if case .scalar = node { return [(try string(what), self)] }
        return try sequence(what).map { v throws(ConfigError) in (try v.string("\(what) entry"), v) }
    }
}
