/// The Public Suffix List (publicsuffix.org): which part of a DNS name is a registry suffix
/// ("com", "co.uk", "*.ck"), so that names group by registrable domain ("example.co.uk").
///
/// Parsed from the list's text (Debian: /usr/share/publicsuffix/public_suffix_list.dat); with
/// no list, every name's last label is taken as its suffix.
public struct PublicSuffixList: Sendable {
    private var rules: Set<String> = []
    private var wildcards: Set<String> = []
    private var exceptions: Set<String> = []
    public private(set) var ruleCount = 0

    public init() {}

    /// Parses the list's format: one rule a line, `//` comments, `*.` wildcards, `!` exceptions.
    public init(text: String) {
        for raw in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = raw.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init) ?? ""
            if line.isEmpty || line.hasPrefix("//") { continue }
            let rule = line.lowercased()
            if rule.hasPrefix("!") {
                exceptions.insert(String(rule.dropFirst()))
            } else if rule.hasPrefix("*.") {
                wildcards.insert(String(rule.dropFirst(2)))
            } else {
                rules.insert(rule)
            }
            ruleCount += 1
        }
    }

    /// The number of labels of `name`'s public suffix.
    private func suffixLabels(_ labels: [Substring]) -> Int {
        let n = labels.count
        var best = 1  // the implicit "*" rule
        for k in stride(from: n, through: 1, by: -1) {
            let suffix = labels[(n - k)...].joined(separator: ".")
            if exceptions.contains(suffix) { return k - 1 }
            if rules.contains(suffix) { best = max(best, k) }
            // "*.parent" matches k labels when the last k-1 labels are "parent".
            if k >= 2 && wildcards.contains(labels[(n - k + 1)...].joined(separator: ".")) { best = max(best, k) }
        }
        return best
    }

    /// The registrable domain of `name` (its public suffix plus one label), lower-cased;
    /// the name itself when it is a suffix or has a single label.
    public func registrableDomain(_ name: String) -> String {
        var n = name.lowercased()
        if n.hasSuffix(".") { n.removeLast() }
        let labels = n.split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count > 1, !labels.contains(where: \.isEmpty) else { return n }
        let s = suffixLabels(labels)
        if s >= labels.count { return n }
        return labels[(labels.count - s - 1)...].joined(separator: ".")
    }
}
