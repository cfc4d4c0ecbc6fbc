#if canImport(Glibc)
import Glibc
#endif

/// Small file and process helpers for the commands (no Foundation).
enum Files {
    /// The whole file as UTF-8 text, or a one-line reason.
    static func readText(_ path: String) throws(UserError) -> String {
        guard let f = fopen(path, "rb") else {
            throw UserError(message: "\(path): \(errno == ENOENT ? "no such file" : String(cString: strerror(errno)))")
        }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n > 0 { bytes.append(contentsOf: buf[0..<n]) }
            if n < buf.count {
                if ferror(f) != 0 { throw UserError(message: "\(path): \(String(cString: strerror(errno)))") }
                break
            }
        }
        var st = stat()
        if stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
            throw UserError(message: "\(path): is a directory")
        }
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw UserError(message: "\(path): not UTF-8 text")
        }
        return s
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Writes `bytes` to `path` (created or truncated), or throws a one-line reason.
    static func write(_ bytes: [UInt8], to path: String) throws(UserError) {
        var failure: UserError?
        bytes.withUnsafeBytes { p in
            do throws(UserError) { try write(p, to: path) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// A file written in pieces (created or truncated when opened). A failed write is
    /// remembered and reported by `close`.
    final class Output {
        let path: String
        private let file: UnsafeMutablePointer<FILE>
        private var failed = false

        init(_ path: String) throws(UserError) {
            guard let f = fopen(path, "wb") else {
                throw UserError(message: "\(path): cannot write (\(String(cString: strerror(errno))))")
            }
            self.path = path
            file = f
        }

        func write(_ bytes: UnsafeRawBufferPointer) {
            guard !failed, !bytes.isEmpty else { return }
            if fwrite(bytes.baseAddress, 1, bytes.count, file) != bytes.count { failed = true }
        }

        func close() throws(UserError) {
            let closed = fclose(file)
            if failed || closed != 0 { throw UserError(message: "\(path): write failed") }
        }
    }

    static func write(_ bytes: UnsafeRawBufferPointer, to path: String) throws(UserError) {
        guard let f = fopen(path, "wb") else {
            throw UserError(message: "\(path): cannot write (\(String(cString: strerror(errno))))")
        }
        let n = bytes.isEmpty ? 0 : fwrite(bytes.baseAddress, 1, bytes.count, f)
        let closed = fclose(f)
        if n != bytes.count || closed != 0 { throw UserError(message: "\(path): write failed") }
    }

    /// The first executable called `name` on $PATH.
    static func which(_ name: String) -> String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") where !dir.isEmpty {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Runs `argv` with standard input from `stdinPath` and standard error captured; returns
    /// the exit status and what it wrote on standard error.
    static func run(_ argv: [String], stdinPath: String) -> (status: Int32, stderr: String) {
        var errTemplate = Array("/tmp/flowmap-stderr-XXXXXX".utf8CString)
        let errFD = mkstemp(&errTemplate)
        let errPath = errTemplate.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        defer { if errFD >= 0 { close(errFD); unlink(errPath) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdinPath, O_RDONLY, 0)
        if errFD >= 0 { posix_spawn_file_actions_adddup2(&actions, errFD, 2) }
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
        guard rc == 0 else { return (127, String(cString: strerror(rc))) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        var text = ""
        if errFD >= 0, let f = fopen(errPath, "rb") {
            var buf = [UInt8](repeating: 0, count: 4096)
            var all: [UInt8] = []
            while true {
                let n = fread(&buf, 1, buf.count, f)
                if n <= 0 { break }
                all.append(contentsOf: buf[0..<n])
            }
            fclose(f)
            text = String(decoding: all, as: UTF8.self)
        }
        let exited = (status & 0x7F) == 0
        return (exited ? (status >> 8) & 0xFF : 128 + (status & 0x7F), text)
    }

    /// A new temporary file holding `bytes`; the caller unlinks it.
    static func temporary(_ bytes: [UInt8], suffix: String = "") throws(UserError) -> String {
        var template = Array("/tmp/flowmap-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw UserError(message: "cannot create a temporary file: \(String(cString: strerror(errno)))") }
        let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        if n != bytes.count { unlink(path); throw UserError(message: "cannot write a temporary file") }
        return path
    }
}
