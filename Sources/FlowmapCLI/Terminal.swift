#if canImport(Glibc)
import Glibc
#endif
import FlowCore

/// Buffered writes to standard output/error (no Foundation, no per-line syscalls).
enum Terminal {
    nonisolated(unsafe) static let writer = ByteWriter(capacity: 1 << 17)

    static func out(_ s: String) {
        writer.text(s)
        if writer.count >= 1 << 16 { flush() }
    }

    /// Lets a renderer append straight into the output buffer.
    static func out(_ render: (ByteWriter) -> Void) {
        render(writer)
        if writer.count >= 1 << 16 { flush() }
    }

    static func flush() {
        guard writer.count > 0 else { return }
        writer.withBytes { p in
            var off = 0
            while off < p.count {
                let n = write(1, p.baseAddress! + off, p.count - off)
                if n <= 0 {
                    if n < 0 && errno == EINTR { continue }
                    break
                }
                off += n
            }
        }
        writer.clear()
    }

    static func stderr(_ s: String) {
        var bytes = Array(s.utf8)
        bytes.withUnsafeMutableBytes { p in
            var off = 0
            while off < p.count {
                let n = write(2, p.baseAddress! + off, p.count - off)
                if n <= 0 { break }
                off += n
            }
        }
    }

    static var stderrIsTerminal: Bool { isatty(2) == 1 }

    /// Monotonic seconds, for progress rates only (never for flow times).
    static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

/// A one-line progress bar on stderr: share of the file and packets per second.
final class Progress {
    private let enabled: Bool
    private let label: String
    private let total: Int64?
    private let started = Terminal.monotonic()
    private var lastDraw = 0.0
    private var drawn = false

    init(label: String, total: Int64?, enabled: Bool) {
        self.label = label
        self.total = total
        self.enabled = enabled && Terminal.stderrIsTerminal
    }

    func update(position: Int64?, packets: UInt64) {
        guard enabled else { return }
        let now = Terminal.monotonic()
        if now - lastDraw < 0.2 { return }
        lastDraw = now
        let rate = Double(packets) / max(now - started, 1e-6)
        var line = "\r\(label) "
        if let total, total > 0, let position {
            let share = min(1.0, Double(position) / Double(total))
            let width = 30
            let filled = Int(share * Double(width))
            line += "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] "
            line += "\(Int(share * 100))% "
        }
        line += "\(packets) pkts, \(Int(rate)) pkts/s "
        Terminal.stderr(line)
        drawn = true
    }

    func finish() {
        if drawn { Terminal.stderr("\r\u{1B}[K") }
    }
}

/// Large values that a command has finished with just before the process exits. Freeing a
/// graph or a policy of hundreds of thousands of objects one by one takes a noticeable share
/// of the command's run; the kernel takes back the whole heap at exit at once. (Compilers do
/// the same: clang's -disable-free.)
enum KeptUntilExit {
    nonisolated(unsafe) private static var values: [Any] = []

    static func keep(_ v: Any...) { values.append(contentsOf: v) }
}
