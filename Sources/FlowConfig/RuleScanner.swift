import FlowCore
import FlowGraph
import FlowPolicy

/// Reads a policy's `rules:` block straight from the file's bytes, line by line, when every
/// line of it is in exactly the layout `PolicyWriter` writes (what `suggest` produces: one
/// `  - name:` line, then `    key: value` lines with flow mappings and lists, single spaces,
/// no comments, no schedules, no escapes). No YAML tree is built for those rules.
///
/// It is all or nothing: at the first line it does not take as written it gives up, and the
/// whole file is read the general way (which words any error). What it accepts, it reads as
/// `PolicyParser.fastRule` reads the same text from the tree — tests compare the two on
/// every rule, marks included.
enum RuleScanner {
    struct Scanned {
        var rules: [Rule]
        /// Workload names the rules refer to (each must be one of the policy's).
        var workloads: Set<String>
        /// The block's byte range: after the `rules:` line, to the start of the next top-level
        /// line (or the end).
        var start: Int
        var end: Int
    }

    static func scan(_ text: String, file: String) -> Scanned? {
        var text = text
        return text.withUTF8 { b in
            var s = Scanner(b: b, file: file)
            return s.scanBlock()
        }
    }

    private struct Scanner {
        let b: UnsafeBufferPointer<UInt8>
        let file: String
        var i = 0
        var line = 1

        init(b: UnsafeBufferPointer<UInt8>, file: String) {
            self.b = b
            self.file = file
        }

        /// Whether the line at `p` starts with `rules:`.
        func isRulesLine(_ p: Int) -> Bool {
            p + 6 <= b.count && b[p] == 114 && b[p + 1] == 117 && b[p + 2] == 108 && b[p + 3] == 101 && b[p + 4] == 115
                && b[p + 5] == 58
        }

        /// Whether the line at `p` starts a new YAML document or ends one (`---`, `...`).
        func isDocumentLine(_ p: Int) -> Bool {
            p + 3 <= b.count && ((b[p] == 45 && b[p + 1] == 45 && b[p + 2] == 45) || (b[p] == 46 && b[p + 1] == 46 && b[p + 2] == 46))
        }

        /// The offset of the line after the one at `p`.
        func nextLine(_ p: Int) -> Int {
            var e = p
            while e < b.count && b[e] != 10 { e += 1 }
            return e + 1
        }

        mutating func scanBlock() -> Scanned? {
            // The first line starting with `rules:` (one YAML document before it).
            var head = 0
            while head < b.count && !isRulesLine(head) {
                if isDocumentLine(head) { return nil }
                if b[head] == 10 { line += 1; head += 1; continue }
                head = nextLine(head)
                line += 1
            }
            // Nothing after the colon.
            guard head + 6 < b.count, b[head + 6] == 10 else { return nil }
            line += 1
            i = head + 7
            let start = i
            var rules: [Rule] = []
            rules.reserveCapacity(b.count / 300)
            var workloads = Set<String>()
            // Rules until a line that does not start with two spaces (or the end).
            while i < b.count && b[i] == 32 {
                guard let r = rule(&workloads) else { return nil }
                rules.append(r)
            }
            guard !rules.isEmpty else { return nil }
            // After the block: no second `rules:` line and no other document.
            var p = i
            while p < b.count {
                if isRulesLine(p) || isDocumentLine(p) { return nil }
                p = nextLine(p)
            }
            return Scanned(rules: rules, workloads: workloads, start: start, end: i)
        }

        @inline(__always) func at(_ p: Int) -> UInt8 { p < b.count ? b[p] : 0 }

        /// Consumes `s` if the text continues with it.
        mutating func literal(_ s: StaticString) -> Bool {
            let n = s.utf8CodeUnitCount
            guard i + n <= b.count else { return false }
            let p = s.utf8Start
            for k in 0..<n where b[i + k] != p[k] { return false }
            i += n
            return true
        }

        /// The end of the current line (consumes the newline; the file's last line may lack it).
        mutating func endOfLine() -> Bool {
            if i == b.count { line += 1; return true }
            guard b[i] == 10 else { return false }
            i += 1
            line += 1
            return true
        }

        static func plainFirst(_ c: UInt8) -> Bool {
            (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)
        }

        static func plainRest(_ c: UInt8) -> Bool {
            plainFirst(c) || c == 46 || c == 47 || c == 45 || c == 95 || c == 64 || c == 43 || c == 42
        }

        /// A scalar: plain (letters, digits and `._/-@+*`, starting with a letter or digit) or
        /// double-quoted without escapes. Returns its text and whether it was plain.
        mutating func scalar() -> (String, Bool)? {
            let c = at(i)
            if c == 34 {
                var j = i + 1
                while j < b.count {
                    let ch = b[j]
                    if ch == 34 { break }
                    if ch == 92 || ch == 10 || ch == 13 || ch < 0x20 { return nil }
                    j += 1
                }
                guard j < b.count else { return nil }
                let t = String(decoding: UnsafeBufferPointer(rebasing: b[(i + 1)..<j]), as: UTF8.self)
                i = j + 1
                return (t, false)
            }
            guard Scanner.plainFirst(c) else { return nil }
            var j = i + 1
            while j < b.count && Scanner.plainRest(b[j]) { j += 1 }
            let t = String(decoding: UnsafeBufferPointer(rebasing: b[i..<j]), as: UTF8.self)
            i = j
            return (t, true)
        }

        /// A scalar or `[a, b, …]` (what a list-valued key takes).
        mutating func scalarList() -> [String]? {
            if at(i) != 91 { return scalar().map { [$0.0] } }
            i += 1
            var out: [String] = []
            if at(i) == 93 { i += 1; return out }
            while true {
                guard let (t, _) = scalar() else { return nil }
                out.append(t)
                if at(i) == 93 { i += 1; return out }
                guard literal(", ") else { return nil }
            }
        }

        /// A key of a flow mapping (letters only) and its `: `.
        mutating func key() -> String? {
            let k0 = i
            while i < b.count && ((b[i] >= 97 && b[i] <= 122) || (b[i] >= 65 && b[i] <= 90)) { i += 1 }
            guard i > k0 else { return nil }
            let k = String(decoding: UnsafeBufferPointer(rebasing: b[k0..<i]), as: UTF8.self)
            guard literal(": ") else { return nil }
            return k
        }

        /// `{key: value, …}` pairs, read by `body` (false: not taken).
        mutating func flowMapping(_ body: (inout Scanner, String) -> Bool) -> Bool {
            guard at(i) == 123 else { return false }
            i += 1
            if at(i) == 125 { i += 1; return true }
            while true {
                guard let k = key(), body(&self, k) else { return false }
                if at(i) == 125 { i += 1; return true }
                guard literal(", ") else { return false }
            }
        }

        mutating func selector(_ workloads: inout Set<String>) -> Selector? {
            var f = FastSelector()
            let ok = flowMapping { sc, k in
                let value: FastSelector.Value
                if sc.at(sc.i) == 91 {
                    guard let list = sc.scalarList() else { return false }
                    value = .list(list)
                } else {
                    guard let (t, _) = sc.scalar() else { return false }
                    value = .scalar(t)
                }
                return f.take(k, value)
            }
            guard ok, let s = f.selector else { return nil }
            for w in f.workloads { workloads.insert(w) }
            return s
        }

        mutating func evidence() -> Evidence? {
            var f = FastEvidence()
            let ok = flowMapping { sc, k in
                guard let (text, _) = sc.scalar() else { return false }
                return f.take(k, text)
            }
            return ok ? f.evidence : nil
        }

        static func isNullText(_ t: String, plain: Bool) -> Bool {
            plain && (t == "" || t == "~" || t == "null" || t == "Null" || t == "NULL")
        }

        /// One rule: `  - name: N` and its `    key: value` lines.
        mutating func rule(_ workloads: inout Set<String>) -> Rule? {
            let itemLine = line
            guard literal("  - name: "), let (name, _) = scalar(), !name.isEmpty, endOfLine() else { return nil }
            var from: Selector?, to: Selector?, ports: [PortSpec]?
            var infrastructure: String?, note: String?, evidence: Evidence?
            var seen: UInt8 = 1
            var pairs = 1
            while literal("    ") {
                guard let k = key() else { return nil }
                pairs += 1
                let bit: UInt8
                switch k {
                case "from":
                    guard let s = selector(&workloads) else { return nil }
                    from = s; bit = 2
                case "to":
                    guard let s = selector(&workloads) else { return nil }
                    to = s; bit = 4
                case "ports":
                    guard let list = scalarList(), let out = FastSelector.ports(list) else { return nil }
                    ports = out; bit = 8
                case "infrastructure":
                    guard let (t, plain) = scalar(), !Scanner.isNullText(t, plain: plain) else { return nil }
                    infrastructure = t; bit = 16
                case "note":
                    guard let (t, plain) = scalar(), !Scanner.isNullText(t, plain: plain) else { return nil }
                    note = t; bit = 32
                case "evidence":
                    guard let e = self.evidence() else { return nil }
                    evidence = e; bit = 64
                default:
                    return nil  // schedule, or an unknown key: the general way
                }
                guard seen & bit == 0, endOfLine() else { return nil }
                seen |= bit
            }
            // The next line starts another rule or ends the block.
            guard pairs <= 8, let from, let to, let ports, !ports.isEmpty else { return nil }
            if i < b.count && b[i] == 32 && !(at(i + 1) == 32 && at(i + 2) == 45 && at(i + 3) == 32) { return nil }
            return Rule(name: name, from: from, to: to, ports: ports, infrastructure: infrastructure, note: note,
                        evidence: evidence, mark: SourceMark(file: file, line: itemLine, column: 5))
        }
    }
}
