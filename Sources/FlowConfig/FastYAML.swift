/// A YAML node of flowmap's own (lighter than Yams' tree): a scalar, a mapping or a sequence,
/// with the line and column (from 1) where it starts.
/// A value, not an object: a scalar lives inside its parent's array, so a tree costs an
/// allocation per collection (and per long string), not one per node.
struct YNode {
    enum Kind {
        case scalar(String, plain: Bool)
        case mapping([(YNode, YNode)])
        case sequence([YNode])
    }
    let kind: Kind
    private let line32: Int32
    private let column32: Int32
    var line: Int { Int(line32) }
    var column: Int { Int(column32) }
    init(_ kind: Kind, line: Int, column: Int) {
        self.kind = kind
        line32 = Int32(clamping: line)
        column32 = Int32(clamping: column)
    }
}

/// A fast reader for the YAML that configuration files use: block mappings and sequences,
/// one-line or multi-line flow collections, plain, single- and double-quoted scalars, comments.
/// Anything else (anchors, aliases, tags, block scalars, complex keys, several documents,
/// tabs, multi-line scalars) — and any error — makes it give up, and the caller reads the file
/// with Yams, which also words the errors. Its results are those Yams gives for the same text
/// (the basic resolver: every scalar is a string).
struct FastYAML {
    enum Outcome { case empty, node(YNode), unsupported }

    /// The text's own UTF-8 storage, for the length of `parse` (no copy of the file).
    private let b: UnsafeBufferPointer<UInt8>
    private var i = 0
    private var line = 1
    private var lineStart = 0

    private init(_ bytes: UnsafeBufferPointer<UInt8>) { b = bytes }

    static func parse(_ text: String) -> Outcome {
        var t = text
        return t.withUTF8 { bytes in
            var p = FastYAML(bytes)
            return p.document()
        }
    }

    private struct Unsupported: Error {}

    private var column: Int { i - lineStart + 1 }
    private func peek(_ k: Int = 0) -> UInt8 { i + k < b.count ? b[i + k] : 0 }
    private var atEnd: Bool { i >= b.count }

    private mutating func newline() {
        i += 1
        line += 1
        lineStart = i
    }

    /// Skips blank and comment-only lines; leaves `i` at the first significant character of
    /// the next significant line (or the end). Returns its indentation.
    private mutating func nextLine() throws -> Int? {
        while !atEnd {
            var j = i
            while j < b.count && b[j] == 32 { j += 1 }
            if j < b.count && b[j] == 9 { throw Unsupported() }  // tabs
            if j >= b.count { i = j; return nil }
            if b[j] == 10 || b[j] == 13 || b[j] == 35 {  // blank or comment line
                i = j
                while !atEnd && peek() != 10 { i += 1 }
                if !atEnd { newline() }
                continue
            }
            i = j
            return i - lineStart
        }
        return nil
    }

    /// After a value on a line: only spaces and a comment may follow, then the line ends.
    private mutating func endOfLine() throws {
        while peek() == 32 { i += 1 }
        if peek() == 35 { while !atEnd && peek() != 10 { i += 1 } }
        if peek() == 13 { i += 1 }
        if atEnd { return }
        guard peek() == 10 else { throw Unsupported() }
        newline()
    }

    private mutating func document() -> Outcome {
        do {
            guard let indent = try nextLine() else { return .empty }
            if b.count - i >= 3 && peek() == 45 && peek(1) == 45 && peek(2) == 45 { throw Unsupported() }
            let root = try block(indent: indent)
            if try nextLine() != nil { throw Unsupported() }
            return .node(root)
        } catch {
            return .unsupported
        }
    }

    /// A block node whose first character is at `i`, at column `indent` (0-based).
    private mutating func block(indent: Int) throws -> YNode {
        if peek() == 45 && (peek(1) == 32 || peek(1) == 10 || peek(1) == 0) { return try blockSequence(indent: indent) }
        if peek() == 91 || peek() == 123 {
            let n = try flow()
            try endOfLine()
            return n
        }
        // A mapping if a key and ": " come first on the line; else a lone scalar.
        if lineHasKey() { return try blockMapping(indent: indent) }
        let n = try scalar(flow: false)
        try endOfLine()
        return n
    }

    /// Whether the text from `i` starts with a mapping key (a scalar followed by ":" and a space
    /// or the end of the line).
    private func lineHasKey() -> Bool {
        var j = i
        if j < b.count && (b[j] == 34 || b[j] == 39) {
            let q = b[j]
            j += 1
            while j < b.count && b[j] != q && b[j] != 10 { j += b[j] == 92 && q == 34 ? 2 : 1 }
            j += 1
            while j < b.count && b[j] == 32 { j += 1 }
            return j < b.count && b[j] == 58
        }
        while j < b.count && b[j] != 10 {
            if b[j] == 58 && (j + 1 >= b.count || b[j + 1] == 32 || b[j + 1] == 10 || b[j + 1] == 13) { return true }
            if b[j] == 35 && j > i && b[j - 1] == 32 { return false }
            j += 1
        }
        return false
    }

    private mutating func blockSequence(indent: Int) throws -> YNode {
        let startLine = line, startCol = column
        var items: [YNode] = []
        while true {
            guard peek() == 45 else { throw Unsupported() }
            i += 1
            while peek() == 32 { i += 1 }
            if peek() == 35 || peek() == 10 || peek() == 13 || atEnd {
                try endOfLine()
                guard let ind = try nextLine(), ind > indent else { throw Unsupported() }  // "- " alone: nested below
                items.append(try block(indent: ind))
            } else {
                items.append(try block(indent: column - 1))
            }
            guard let ind = try nextLine(), ind == indent, peek() == 45 else {
                // Another item must sit at the same column; anything deeper is an error.
                if let ind = currentIndentIfAny(), ind > indent { throw Unsupported() }
                break
            }
        }
        return YNode(.sequence(items), line: startLine, column: startCol)
    }

    private func currentIndentIfAny() -> Int? { atEnd ? nil : i - lineStart }

    private mutating func blockMapping(indent: Int) throws -> YNode {
        let startLine = line, startCol = column
        var pairs: [(YNode, YNode)] = []
        while true {
            let key = try scalar(flow: false)
            while peek() == 32 { i += 1 }
            guard peek() == 58 else { throw Unsupported() }
            i += 1
            while peek() == 32 { i += 1 }
            let value: YNode
            if peek() == 35 || peek() == 10 || peek() == 13 || atEnd {
                let vLine = line, vCol = column
                try endOfLine()
                if let ind = try nextLine(), ind > indent || (ind == indent && peek() == 45 && (peek(1) == 32 || peek(1) == 10)) {
                    value = try block(indent: ind)
                } else {
                    value = YNode(.scalar("", plain: true), line: vLine, column: vCol)
                }
            } else {
                value = try inlineValue()
            }
            pairs.append((key, value))
            guard let ind = try nextLine(), ind == indent else {
                if let ind = currentIndentIfAny(), ind > indent { throw Unsupported() }
                break
            }
            if peek() == 45 && (peek(1) == 32 || peek(1) == 10) { throw Unsupported() }
        }
        return YNode(.mapping(pairs), line: startLine, column: startCol)
    }

    /// A value that starts on the line of its key: a flow collection or a scalar (a nested
    /// mapping on the same line, "a: b: c", is not YAML).
    private mutating func inlineValue() throws -> YNode {
        if peek() == 91 || peek() == 123 {
            let n = try flow()
            try endOfLine()
            return n
        }
        if lineHasKey() { throw Unsupported() }
        if peek() == 45 && peek(1) == 32 { throw Unsupported() }
        let n = try scalar(flow: false)
        try endOfLine()
        return n
    }

    private mutating func skipFlowSpace() throws {
        while !atEnd {
            if peek() == 32 { i += 1 } else if peek() == 10 { newline() } else if peek() == 13 { i += 1 }
            else if peek() == 9 || peek() == 35 { throw Unsupported() } else { break }
        }
    }

    private mutating func flow() throws -> YNode {
        let startLine = line, startCol = column
        let open = peek()
        i += 1
        if open == 91 {
            var items: [YNode] = []
            try skipFlowSpace()
            if peek() == 93 { i += 1; return YNode(.sequence([]), line: startLine, column: startCol) }
            while true {
                try skipFlowSpace()
                let item: YNode = peek() == 91 || peek() == 123 ? try flow() : try scalar(flow: true)
                try skipFlowSpace()
                if peek() == 58 { throw Unsupported() }  // a pair inside a sequence
                items.append(item)
                if peek() == 44 { i += 1; try skipFlowSpace(); if peek() == 93 { i += 1; break }; continue }
                guard peek() == 93 else { throw Unsupported() }
                i += 1
                break
            }
            return YNode(.sequence(items), line: startLine, column: startCol)
        }
        var pairs: [(YNode, YNode)] = []
        try skipFlowSpace()
        if peek() == 125 { i += 1; return YNode(.mapping([]), line: startLine, column: startCol) }
        while true {
            try skipFlowSpace()
            let key = try scalar(flow: true)
            try skipFlowSpace()
            guard peek() == 58 else { throw Unsupported() }
            i += 1
            guard peek() == 32 || peek() == 10 else { throw Unsupported() }
            try skipFlowSpace()
            let value: YNode
            if peek() == 44 || peek() == 125 {
                value = YNode(.scalar("", plain: true), line: line, column: column)
            } else {
                value = peek() == 91 || peek() == 123 ? try flow() : try scalar(flow: true)
            }
            try skipFlowSpace()
            pairs.append((key, value))
            if peek() == 44 { i += 1; try skipFlowSpace(); if peek() == 125 { i += 1; break }; continue }
            guard peek() == 125 else { throw Unsupported() }
            i += 1
            break
        }
        return YNode(.mapping(pairs), line: startLine, column: startCol)
    }

    /// A scalar at `i`: quoted, or plain up to the end of the line, a comment, ": " (keys) or,
    /// in flow context, ",", "]", "}" and ":".
    private mutating func scalar(flow: Bool) throws -> YNode {
        let l = line, c = column
        let first = peek()
        if first == 34 || first == 39 {
            i += 1
            // Most quoted scalars have no escape (nor a doubled single quote): their text is
            // the bytes between the quotes.
            var j = i
            while j < b.count {
                let ch = b[j]
                if ch == first || ch == 92 || ch == 10 || ch == 13 { break }
                j += 1
            }
            if j < b.count && b[j] == first && !(first == 39 && j + 1 < b.count && b[j + 1] == 39) {
                let text = String(decoding: UnsafeBufferPointer(rebasing: b[i..<j]), as: UTF8.self)
                i = j + 1
                return YNode(.scalar(text, plain: false), line: l, column: c)
            }
            var out: [UInt8] = []
            while true {
                guard !atEnd, peek() != 10, peek() != 13 else { throw Unsupported() }
                let ch = peek()
                if first == 39 {
                    if ch == 39 {
                        if peek(1) == 39 { out.append(39); i += 2; continue }
                        i += 1
                        break
                    }
                    out.append(ch); i += 1
                    continue
                }
                if ch == 34 { i += 1; break }
                if ch == 92 {
                    let e = peek(1)
                    i += 2
                    switch e {
                    case 34: out.append(34)
                    case 92: out.append(92)
                    case 47: out.append(47)
                    case 110: out.append(10)
                    case 116: out.append(9)
                    case 114: out.append(13)
                    case 48: out.append(0)
                    case 120, 117, 85:
                        let n = e == 120 ? 2 : e == 117 ? 4 : 8
                        var v: UInt32 = 0
                        for _ in 0..<n {
                            let h = peek()
                            guard let d = FastYAML.hex(h) else { throw Unsupported() }
                            v = v << 4 | d
                            i += 1
                        }
                        guard let u = Unicode.Scalar(v) else { throw Unsupported() }
                        out.append(contentsOf: Array(String(Character(u)).utf8))
                    default: throw Unsupported()
                    }
                    continue
                }
                out.append(ch); i += 1
            }
            return YNode(.scalar(String(decoding: out, as: UTF8.self), plain: false), line: l, column: c)
        }
        // Plain: must not start with an indicator.
        switch first {
        case 44, 91, 93, 123, 125, 35, 38, 42, 33, 124, 62, 37, 64, 96, 0, 10, 13:
            throw Unsupported()
        case 45, 63, 58:
            let next = peek(1)
            if next == 32 || next == 10 || next == 0 || (flow && (next == 44 || next == 93 || next == 125)) { throw Unsupported() }
        default: break
        }
        let start = i
        var end = i
        while !atEnd {
            let ch = peek()
            if ch == 10 || ch == 13 { break }
            if ch == 35 && i > start && b[i - 1] == 32 { break }
            if ch == 58 {
                let n = peek(1)
                if n == 32 || n == 10 || n == 13 || n == 0 || (flow && (n == 44 || n == 93 || n == 125)) { break }
            }
            if flow && (ch == 44 || ch == 93 || ch == 125 || ch == 91 || ch == 123) { break }
            i += 1
            if ch != 32 { end = i }
        }
        i = end
        if end == start { throw Unsupported() }
        let text = String(decoding: UnsafeBufferPointer(rebasing: b[start..<end]), as: UTF8.self)
        return YNode(.scalar(text, plain: true), line: l, column: c)
    }

    private static func hex(_ c: UInt8) -> UInt32? {
        switch c {
        case 48...57: return UInt32(c - 48)
        case 97...102: return UInt32(c - 87)
        case 65...70: return UInt32(c - 55)
        default: return nil
        }
    }
}
