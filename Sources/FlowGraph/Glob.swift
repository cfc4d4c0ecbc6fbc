/// A shell-style pattern: `*` any run of characters, `?` one character, `[abc]` / `[a-z]` /
/// `[!x]` a set; everything else literal. Matching is on Unicode scalars; `caseInsensitive`
/// folds ASCII letters (DNS names).
public struct Glob: Hashable, Sendable, CustomStringConvertible {
    public let pattern: String
    private let scalars: [Unicode.Scalar]
    private let caseInsensitive: Bool
    /// True when the pattern has no wildcard (a plain string comparison).
    public let isLiteral: Bool

    public init(_ pattern: String, caseInsensitive: Bool = false) {
        self.pattern = pattern
        self.caseInsensitive = caseInsensitive
        let s = Array((caseInsensitive ? pattern.lowercased() : pattern).unicodeScalars)
        scalars = s
        isLiteral = !s.contains { $0 == "*" || $0 == "?" || $0 == "[" }
    }

    public var description: String { pattern }

    /// True when the pattern matches every string ("*", "**", …).
    public var matchesEverything: Bool { !scalars.isEmpty && scalars.allSatisfy { $0 == "*" } }

    public func matches(_ text: String) -> Bool {
        let t = Array((caseInsensitive ? text.lowercased() : text).unicodeScalars)
        if isLiteral { return t == scalars }
        // Iterative matcher with backtracking to the last star: linear for patterns with one
        // star, never exponential.
        var p = 0, i = 0
        var starP = -1, starI = 0
        while i < t.count {
            if p < scalars.count {
                let c = scalars[p]
                if c == "*" {
                    starP = p; starI = i; p += 1
                    continue
                }
                if c == "[", let (ok, next) = matchSet(at: p, t[i]) {
                    if ok { p = next; i += 1; continue }
                } else if c == "?" || (c == t[i] && c != "[") || (c == "[" && t[i] == "[" && setEnd(p) == nil) {
                    p += 1; i += 1
                    continue
                }
            }
            if starP >= 0 {
                p = starP + 1
                starI += 1
                i = starI
                continue
            }
            return false
        }
        while p < scalars.count && scalars[p] == "*" { p += 1 }
        return p == scalars.count
    }

    /// Index of the `]` closing the set that opens at `p`, or nil if the set is not closed.
    private func setEnd(_ p: Int) -> Int? {
        var j = p + 1
        if j < scalars.count && (scalars[j] == "!" || scalars[j] == "^") { j += 1 }
        if j < scalars.count && scalars[j] == "]" { j += 1 }
        while j < scalars.count {
            if scalars[j] == "]" { return j }
            j += 1
        }
        return nil
    }

    /// Matches `c` against the set at `p`: (matched, index after the set), or nil if `[` is literal.
    private func matchSet(at p: Int, _ c: Unicode.Scalar) -> (Bool, Int)? {
        guard let end = setEnd(p) else { return nil }
        var j = p + 1
        var negate = false
        if scalars[j] == "!" || scalars[j] == "^" { negate = true; j += 1 }
        var found = false
        while j < end {
            let lo = scalars[j]
            if j + 2 < end && scalars[j + 1] == "-" {
                let hi = scalars[j + 2]
                if lo.value <= c.value && c.value <= hi.value { found = true }
                j += 3
            } else {
                if lo == c { found = true }
                j += 1
            }
        }
        return (found != negate, end + 1)
    }
}
