@testable import FlowConfig
import Foundation
import XCTest
import Yams

/// flowmap's own YAML reader must read what it accepts exactly as Yams does (values and
/// positions), and give up on what it does not handle.
final class FastYAMLTests: XCTestCase {
    static func describe(_ n: YNode) -> String {
        switch n.kind {
        case .scalar(let s, let plain): return "\(n.line):\(n.column)\(plain ? "" : "q")'\(s)'"
        case .mapping(let m): return "\(n.line):\(n.column){" + m.map { describe($0.0) + "=" + describe($0.1) }.joined(separator: ",") + "}"
        case .sequence(let q): return "\(n.line):\(n.column)[" + q.map(describe).joined(separator: ",") + "]"
        }
    }

    func assertSame(_ text: String, _ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        guard case .node(let fast) = FastYAML.parse(text) else { XCTFail("\(name): not read by the fast reader", file: file, line: line); return }
        let y = try XCTUnwrap(try Yams.compose(yaml: text, .basic))
        XCTAssertEqual(FastYAMLTests.describe(fast), FastYAMLTests.describe(try YAMLValue.convert(y, file: name)), name, file: file, line: line)
    }

    func testEveryYAMLFileOfTheRepositoryReadsAsWithYams() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        var files: [URL] = []
        for dir in ["Fixtures", "docs", "bench"] {
            let e = FileManager.default.enumerator(at: root.appendingPathComponent(dir), includingPropertiesForKeys: nil)
            while let u = e?.nextObject() as? URL { if u.pathExtension == "yaml" { files.append(u) } }
        }
        XCTAssertGreaterThanOrEqual(files.count, 5)
        for f in files { try assertSame(String(contentsOf: f, encoding: .utf8), f.lastPathComponent) }
        try assertSame(PolicyFileTests.full, "full")
    }

    func testEdgeCases() throws {
        for (i, text) in [
            "a: 1\nb:\n  - x\n  - 'y z'\n  - \"q\\\"\\u00e9\\x41\"\nc: {d: [1, 2], e: }\n",
            "a:\n- x\n- y\nb: z # comment\n",
            "# only\n\nk: v\n",
            "- a: 1\n  b: 2\n- c: 3\n",
            "a: [\n  1,\n  2,\n]\n",
            "key with spaces: value with spaces  \n",
            "url: http://x.y/z\nt: 2026-01-05T10:00:00Z\n",
            "a: 'it''s'\n",
            "- - x\n  - y\n- z\n",
            // Quoted scalars, with and without escapes (the escape-free ones are read in place).
            "a: {b: \"2001:db8::1/128\", c: 'x\\y', d: \"\", e: '', f: 'a''', g: \"\\\\\"}\n",
            "- \"plain quoted\"\n- 'it''s' \n- \"tab\\there\"\n- \"é ü\"\n",
        ].enumerated() {
            try assertSame(text, "case \(i)")
        }
        for text in ["a: &x 1\nb: *x\n", "a: |\n  text\n", "a: !tag x\n", "---\na: 1\n---\nb: 2\n", "a: b\n  c\n", "a:\n\tb: 1\n",
                     "? complex\n: key\n", "a: b: c\n", "a: [1, 2\n"] {
            if case .node = FastYAML.parse(text) { XCTFail("should leave to Yams: \(text)") }
        }
        if case .empty = FastYAML.parse("# nothing\n\n") {} else { XCTFail("empty") }
    }
}
