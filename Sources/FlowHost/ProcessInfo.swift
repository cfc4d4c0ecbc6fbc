import FlowCore

/// What `/proc/PID/cgroup` says about where a process runs.
public struct CgroupPlacement: Sendable, Equatable {
    /// The cgroup path (the unified hierarchy's, else the first v1 hierarchy that names one).
    public var path: String
    /// "docker://…", "containerd://…", "cri-o://…" or "podman://…" with the full container id.
    public var container: String?
    /// The Kubernetes pod UID (with dashes), when the path is under kubepods.
    public var pod: String?
    /// The innermost systemd unit that is not a container's own scope ("nginx.service").
    public var unit: String?

    public init(path: String, container: String? = nil, pod: String? = nil, unit: String? = nil) {
        self.path = path; self.container = container; self.pod = pod; self.unit = unit
    }
}

/// Pure parsers for the per-process files under /proc.
public enum ProcFiles {
    /// `/proc/PID/status`: the real uid (first number of the `Uid:` line).
    public static func uid(status: String) -> Int? {
        for line in status.split(separator: "\n") where line.hasPrefix("Uid:") {
            return line.dropFirst(4).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { Int($0) }
        }
        return nil
    }

    /// `/proc/PID/comm`, without its newline.
    public static func comm(_ text: String) -> String {
        var s = Substring(text)
        while s.last == "\n" { s = s.dropLast() }
        return String(s)
    }

    /// `/proc/PID/cmdline`: NUL-separated arguments, joined by spaces (empty for kernel threads).
    public static func cmdline(_ bytes: [UInt8]) -> String {
        var parts: [String] = []
        var cur: [UInt8] = []
        for b in bytes {
            if b == 0 {
                parts.append(String(decoding: cur, as: UTF8.self)); cur = []
            } else {
                cur.append(b)
            }
        }
        if !cur.isEmpty { parts.append(String(decoding: cur, as: UTF8.self)) }
        while parts.last == "" { parts.removeLast() }
        return parts.joined(separator: " ")
    }

    /// `/proc/PID/stat`: the start time in clock ticks since boot (field 22), which tells a
    /// reused pid from the process that had it before. The command may contain spaces and
    /// parentheses, so fields are counted after the last ')'.
    public static func startTime(stat: String) -> UInt64? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let rest = stat[stat.index(after: close)...].split(separator: " ")
        // rest[0] is field 3 (state); field 22 is rest[19].
        guard rest.count > 19 else { return nil }
        return UInt64(rest[19])
    }

    /// `/etc/passwd`: uid → user name (the first entry wins, as getpwuid does).
    public static func users(passwd: String) -> [Int: String] {
        var out: [Int: String] = [:]
        for line in passwd.split(separator: "\n") where !line.hasPrefix("#") {
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            guard f.count >= 3, let uid = Int(f[2]), out[uid] == nil else { continue }
            out[uid] = String(f[0])
        }
        return out
    }

    /// `/proc/PID/cgroup` (v2 "0::/path" or v1 "N:controllers:/path").
    public static func cgroup(_ text: String) -> CgroupPlacement {
        var path: String?
        for line in text.split(separator: "\n") {
            let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard f.count == 3 else { continue }
            if f[0] == "0" && f[1].isEmpty { path = String(f[2]); break }  // unified hierarchy
            if path == nil || f[1].contains("name=systemd") || f[1].contains("pids") { path = String(f[2]) }
        }
        return classify(path ?? "/")
    }

    /// Container id, pod UID and systemd unit from a cgroup path.
    public static func classify(_ path: String) -> CgroupPlacement {
        var p = CgroupPlacement(path: path)
        let parts = path.split(separator: "/").map(String.init)
        for (i, c) in parts.enumerated() {
            // Kubernetes: "kubepods-burstable-pod<uid_with_underscores>.slice" or "pod<uid>".
            if c.hasPrefix("kubepods") || (i > 0 && parts[i - 1].hasPrefix("kubepods")) || c.hasPrefix("pod") {
                if let r = c.range(of: "pod", options: .backwards) {
                    var uid = c[r.upperBound...]
                    if uid.hasSuffix(".slice") { uid = uid.dropLast(6) }
                    let norm = uid.replacingOccurrences(of: "_", with: "-")
                    if norm.count == 36 && norm.filter({ $0 == "-" }).count == 4 { p.pod = norm }
                }
            }
            if let c = container(component: c, parent: i > 0 ? parts[i - 1] : "") {
                p.container = c
                continue
            }
            if c.hasSuffix(".service") || (c.hasSuffix(".scope") && !c.hasPrefix("docker-")) {
                p.unit = c
            }
        }
        return p
    }

    private static let runtimes: [(prefix: String, name: String)] = [
        ("docker-", "docker"), ("cri-containerd-", "containerd"), ("crio-", "cri-o"), ("libpod-", "podman"),
    ]

    private static func container(component c: String, parent: String) -> String? {
        for (prefix, name) in runtimes where c.hasPrefix(prefix) && c.hasSuffix(".scope") {
            let id = c.dropFirst(prefix.count).dropLast(6)
            if isContainerID(id) { return "\(name)://\(id)" }
        }
        // cgroupfs drivers: "/docker/<id>", "/kubepods/besteffort/pod<uid>/<id>", "/libpod_parent/libpod-<id>".
        if isContainerID(Substring(c)) {
            if parent == "docker" { return "docker://\(c)" }
            if parent.hasPrefix("pod") { return "containerd://\(c)" }
            return "container://\(c)"
        }
        return nil
    }

    private static func isContainerID(_ s: Substring) -> Bool {
        s.count == 64 && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }
}

private extension Substring {
    func replacingOccurrences(of a: Character, with b: Character) -> String {
        String(map { $0 == a ? b : $0 })
    }
}

private extension String {
    func range(of needle: String, options: BackwardsOption) -> Range<String.Index>? {
        var i = endIndex
        while i > startIndex {
            i = index(before: i)
            if self[i...].hasPrefix(needle) { return i..<index(i, offsetBy: needle.count) }
        }
        return nil
    }
}

private enum BackwardsOption { case backwards }
