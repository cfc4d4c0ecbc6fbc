import FlowCore
import FlowHost
import FlowProcFS
import Foundation
import XCTest

/// The fake /proc tree written by Fixtures/proc/make-tree.py.
enum FakeProc {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/proc")
    static var root: String { fixtures.appendingPathComponent("host1").path }
    static var passwd: String { fixtures.appendingPathComponent("passwd").path }
    static func text(_ rel: String) throws -> String { try String(contentsOfFile: root + "/" + rel, encoding: .utf8) }
}

func ip(_ s: String) -> IPAddress { IPAddress(s)! }

final class ProcNetTests: XCTestCase {
    func testParsesTCPv4Table() throws {
        let rows = try ProcNetParser.parse(try FakeProc.text("net/tcp"), proto: .tcp, littleEndianHost: true)
        XCTAssert(rows.count == 5)
        XCTAssert(rows[0] == SocketEntry(proto: .tcp, localAddress: ip("0.0.0.0"), localPort: 80, remoteAddress: ip("0.0.0.0"),
                                       remotePort: 0, state: 10, uid: 33, inode: 1001))
        XCTAssert(rows[0].isListening)
        XCTAssert(rows[2].localAddress == ip("10.0.0.2") && rows[2].localPort == 40000)
        XCTAssert(rows[2].remoteAddress == ip("10.0.0.5") && rows[2].remotePort == 5432 && rows[2].uid == 1000)
        XCTAssert(rows[3].state == 6 && rows[3].inode == 0)
        XCTAssert(rows[4].localAddress == ip("127.0.0.1") && rows[4].localPort == 6379)
    }

    func testParsesTCPv6TableAndMapsIPv4() throws {
        let rows = try ProcNetParser.parse(try FakeProc.text("net/tcp6"), proto: .tcp, littleEndianHost: true)
        XCTAssert(rows.count == 3)
        XCTAssert(rows[0].localAddress == ip("::") && rows[0].localPort == 8443 && rows[0].isListening)
        // An AF_INET6 socket talking IPv4 shows ::ffff:a.b.c.d; it compares equal to the IPv4 address.
        XCTAssert(rows[1].localAddress == ip("10.0.0.2") && rows[1].remoteAddress == ip("10.0.0.7"))
        XCTAssert(rows[1].remotePort == 60000)
        XCTAssert(rows[2].localAddress == ip("::1") && rows[2].localPort == 8080)
    }

    func testByteOrderIsTheHosts() throws {
        // The same word printed by a big-endian kernel reads in network order.
        let text = "header\n   0: 0A000002:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0  0 7 1\n"
        let be = try ProcNetParser.parse(text, proto: .tcp, littleEndianHost: false)
        XCTAssert(be[0].localAddress == ip("10.0.0.2"))
        let le = try ProcNetParser.parse(text, proto: .tcp, littleEndianHost: true)
        XCTAssert(le[0].localAddress == ip("2.0.0.10"))
    }

    func testUdpConnectedAndUnbound() throws {
        let rows = try ProcNetParser.parse(try FakeProc.text("net/udp"), proto: .udp, littleEndianHost: true)
        XCTAssert(rows.count == 2)
        XCTAssert(rows[0].isListening && rows[0].localPort == 5353)
        XCTAssert(!rows[1].isListening && rows[1].remotePort == 53)
        XCTAssert(try ProcNetParser.parse(try FakeProc.text("net/udp6"), proto: .udp).isEmpty)
    }

    func testBadLinesNameTheirLine() throws {
        let text = "header\n   0: 0100007F:0050 00000000:0000 0A 0 0 0 0 0 12 1\n   1: nothex:0050 00000000:0000 0A 0 0 0 0 0 12 1\n"
        XCTAssertThrowsError(try ProcNetParser.parse(text, proto: .tcp)) { e in
            XCTAssertEqual(e as? ProcParseError, ProcParseError(line: 3, reason: "bad address nothex:0050 or 00000000:0000"))
        }
        XCTAssertThrowsError(try ProcNetParser.parse("h\n 0: 0100007F:0050\n", proto: .tcp)) { e in
            XCTAssertEqual((e as? ProcParseError)?.line, 2)
        }
    }

    func testFdLinks() throws {
        XCTAssert(FDLink.socketInode("socket:[123456]") == 123456)
        XCTAssert(FDLink.socketInode("pipe:[99]") == nil)
        XCTAssert(FDLink.socketInode("/dev/null") == nil)
        XCTAssert(FDLink.socketInode("socket:[]") == nil)
    }
}

final class ProcFileTests: XCTestCase {
    func testStatusCmdlineCommStat() throws {
        XCTAssert(ProcFiles.uid(status: try FakeProc.text("200/status")) == 1000)
        XCTAssert(ProcFiles.uid(status: "Name:\tx\n") == nil)
        XCTAssert(ProcFiles.comm("nginx\n") == "nginx")
        XCTAssert(ProcFiles.cmdline(Array("java\0-jar\0/app/payments.jar\0".utf8)) == "java -jar /app/payments.jar")
        XCTAssert(ProcFiles.cmdline([]) == "")
        // A command with spaces and parentheses: fields are counted after the last ')'.
        XCTAssert(ProcFiles.startTime(stat: try FakeProc.text("400/stat")) == 1400)
        XCTAssert(ProcFiles.startTime(stat: "12 (x) S 1 2") == nil)
    }

    func testPasswd() throws {
        let users = ProcFiles.users(passwd: try String(contentsOfFile: FakeProc.passwd, encoding: .utf8))
        XCTAssert(users[0] == "root")  // the first entry for a uid wins
        XCTAssert(users[33] == "www-data")
        XCTAssert(users[1000] == "svc-pay")
        XCTAssert(users.count == 3)
    }

    func testCgroupPlacement() throws {
        let docker = "4f2a" + String(repeating: "0", count: 60)
        XCTAssert(ProcFiles.classify("/system.slice/nginx.service") == CgroupPlacement(path: "/system.slice/nginx.service", unit: "nginx.service"))
        XCTAssert(ProcFiles.classify("/system.slice/docker-\(docker).scope").container == "docker://\(docker)")
        XCTAssert(ProcFiles.classify("/system.slice/docker-\(docker).scope").unit == nil)
        XCTAssert(ProcFiles.classify("/docker/\(docker)").container == "docker://\(docker)")
        let k8s = ProcFiles.classify(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1d5c8f4e_2b7a_4c1d_9e3f_a0b1c2d3e4f5.slice/cri-containerd-\(docker).scope")
        XCTAssert(k8s.container == "containerd://\(docker)")
        XCTAssert(k8s.pod == "1d5c8f4e-2b7a-4c1d-9e3f-a0b1c2d3e4f5")
        let cgroupfs = ProcFiles.classify("/kubepods/burstable/pod1d5c8f4e-2b7a-4c1d-9e3f-a0b1c2d3e4f5/\(docker)")
        XCTAssert(cgroupfs.pod == "1d5c8f4e-2b7a-4c1d-9e3f-a0b1c2d3e4f5" && cgroupfs.container == "containerd://\(docker)")
        XCTAssert(ProcFiles.classify("/machine.slice/crio-\(docker).scope").container == "cri-o://\(docker)")
        XCTAssert(ProcFiles.classify("/machine.slice/libpod-\(docker).scope/container").container == "podman://\(docker)")
        let user = ProcFiles.classify("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service")
        XCTAssert(user.unit == "foo.service" && user.container == nil)
        XCTAssert(ProcFiles.classify("/user.slice/user-1000.slice/session-3.scope").unit == "session-3.scope")
        XCTAssert(ProcFiles.classify("/") == CgroupPlacement(path: "/"))
        // A 63-character id is not a container id.
        XCTAssert(ProcFiles.classify("/docker/\(docker.dropFirst())").container == nil)
    }

    func testCgroupFileV1AndV2() throws {
        XCTAssert(ProcFiles.cgroup("0::/system.slice/sshd.service\n").unit == "sshd.service")
        let v1 = "12:pids:/system.slice/cron.service\n5:cpu,cpuacct:/\n1:name=systemd:/system.slice/cron.service\n"
        XCTAssert(ProcFiles.cgroup(v1).path == "/system.slice/cron.service")
        XCTAssert(ProcFiles.cgroup("").path == "/")
    }
}

final class SocketIndexTests: XCTestCase {
    func entry(_ proto: SocketProtocol, _ l: String, _ lp: UInt16, _ r: String, _ rp: UInt16, state: UInt8, inode: UInt64) -> SocketEntry {
        SocketEntry(proto: proto, localAddress: ip(l), localPort: lp, remoteAddress: ip(r), remotePort: rp, state: state, uid: 0, inode: inode)
    }

    func testConnectedThenListenerThenWildcard() throws {
        let idx = SocketIndex([
            entry(.tcp, "0.0.0.0", 80, "0.0.0.0", 0, state: 10, inode: 1),
            entry(.tcp, "10.0.0.2", 80, "10.0.0.9", 5000, state: 1, inode: 2),
            entry(.tcp, "10.0.0.2", 443, "0.0.0.0", 0, state: 10, inode: 3),
            entry(.tcp, "::", 8443, "::", 0, state: 10, inode: 4),
            entry(.tcp, "10.0.0.2", 40000, "10.0.0.5", 5432, state: 6, inode: 0),
        ])
        XCTAssert(idx.owner(proto: .tcp, local: ip("10.0.0.2"), lport: 80, remote: ip("10.0.0.9"), rport: 5000)?.inode == 2)
        XCTAssert(idx.owner(proto: .tcp, local: ip("10.0.0.2"), lport: 80, remote: ip("10.0.0.8"), rport: 5000)?.inode == 1)
        XCTAssert(idx.owner(proto: .tcp, local: ip("10.0.0.2"), lport: 443, remote: ip("10.0.0.8"), rport: 1)?.inode == 3)
        XCTAssert(idx.owner(proto: .tcp, local: ip("10.0.0.3"), lport: 443, remote: ip("10.0.0.8"), rport: 1) == nil)
        // [::] takes IPv4 too.
        XCTAssert(idx.owner(proto: .tcp, local: ip("10.0.0.2"), lport: 8443, remote: ip("10.0.0.8"), rport: 1)?.inode == 4)
        // TIME_WAIT has no owner, and no listener serves an ephemeral port.
        XCTAssert(idx.owner(proto: .tcp, local: ip("10.0.0.2"), lport: 40000, remote: ip("10.0.0.5"), rport: 5432) == nil)
        XCTAssert(idx.owner(proto: .udp, local: ip("10.0.0.2"), lport: 80, remote: ip("10.0.0.9"), rport: 5000) == nil)
        XCTAssert(idx.localAddresses == [ip("10.0.0.2")])
        XCTAssert(idx.listeners.map(\.localPort) == [80, 443, 8443])
    }
}

final class ProcHostTests: XCTestCase {
    func host() -> ProcHost {
        let h = ProcHost(procRoot: FakeProc.root, passwd: FakeProc.passwd)
        h.minFullScanInterval = 0
        h.refreshSockets()
        return h
    }

    func testClientInADockerContainer() throws {
        let h = host()
        let p = h.attribute(proto: .tcp, local: ip("10.0.0.2"), lport: 40000, remote: ip("10.0.0.5"), rport: 5432)
        XCTAssert(p == ProcessAttribution(pid: 200, comm: "java", exe: "/usr/lib/jvm/java-17/bin/java",
                                        cmdline: "java -jar /app/payments.jar", user: "svc-pay", uid: 1000,
                                        cgroup: "/system.slice/docker-\(String(repeating: "4f2a", count: 16)).scope",
                                        container: "docker://\(String(repeating: "4f2a", count: 16))"))
    }

    func testServerBehindAListenerAndItsUnit() throws {
        let h = host()
        // A connection the table does not list (already closed): the listener still names nginx.
        let p = h.attribute(proto: .tcp, local: ip("10.0.0.2"), lport: 80, remote: ip("10.0.0.77"), rport: 40001)
        XCTAssert(p?.comm == "nginx" && p?.user == "www-data" && p?.unit == "nginx.service")
        XCTAssert(p?.cmdline == "nginx: master process /usr/sbin/nginx")
        XCTAssert(h.isLocal(ip("10.0.0.2")) && !h.isLocal(ip("10.0.0.5")))
    }

    /// A server end asked for at once (process and whether a socket listens) gives what the two
    /// questions give apart.
    func testAttributeServerIsAttributeAndIsListening() throws {
        let ends: [(SocketProtocol, String, UInt16, String, UInt16)] = [
            (.tcp, "10.0.0.2", 80, "10.0.0.77", 40001),     // nginx, listening
            (.tcp, "10.0.0.2", 8443, "10.0.0.7", 60000),    // envoy
            (.udp, "10.0.0.2", 33333, "10.0.0.1", 53),      // a UDP socket
            (.tcp, "127.0.0.1", 6379, "127.0.0.1", 50000),  // redis on loopback
            (.tcp, "::1", 8080, "::1", 50000),              // a listener whose process is gone
            (.tcp, "10.0.0.2", 40001, "10.0.0.5", 5432),    // nothing there
        ]
        for (proto, local, lport, remote, rport) in ends {
            let apart = host(), together = host()
            let p = apart.attribute(proto: proto, local: ip(local), lport: lport, remote: ip(remote), rport: rport, server: true)
            let l = apart.isListening(proto: proto, local: ip(local), lport: lport)
            let both = together.attributeServer(proto: proto, local: ip(local), lport: lport, remote: ip(remote), rport: rport)
            XCTAssert(both.process == p, "\(local):\(lport): \(String(describing: both.process)) != \(String(describing: p))")
            XCTAssertEqual(both.listening, l, "\(local):\(lport)")
            XCTAssertEqual(together.stats.lookups, apart.stats.lookups)
            XCTAssertEqual(together.stats.attributed, apart.stats.attributed)
        }
        XCTAssertTrue(host().attributeServer(proto: .tcp, local: ip("10.0.0.2"), lport: 80, remote: ip("10.0.0.77"), rport: 40001).listening)
    }

    func testPodUDPAndIPv6Listener() throws {
        let h = host()
        let dns = h.attribute(proto: .udp, local: ip("10.0.0.2"), lport: 33333, remote: ip("10.0.0.1"), rport: 53)
        XCTAssert(dns?.comm == "python3" && dns?.pod == "1d5c8f4e-2b7a-4c1d-9e3f-a0b1c2d3e4f5")
        XCTAssert(dns?.container == "containerd://\(String(repeating: "9be1", count: 16))")
        let envoy = h.attribute(proto: .tcp, local: ip("10.0.0.2"), lport: 8443, remote: ip("10.0.0.7"), rport: 60000)
        XCTAssert(envoy?.comm == "envoy" && envoy?.unit == "envoy.service" && envoy?.user == "svc-pay")
        XCTAssert(h.attribute(proto: .tcp, local: ip("10.0.0.2"), lport: 40001, remote: ip("10.0.0.5"), rport: 5432) == nil)
        XCTAssert(h.stats.lookups == 3 && h.stats.attributed == 2)
    }

    func testLoopbackListenerAndFDScanCaching() throws {
        let h = host()
        XCTAssert(h.attribute(proto: .tcp, local: ip("127.0.0.1"), lport: 6379, remote: ip("127.0.0.1"), rport: 50000)?.comm == "redis-server")
        // Inode 5002 has no process any more: only its user is known, from the socket table.
        XCTAssert(h.attribute(proto: .tcp, local: ip("::1"), lport: 8080, remote: ip("::1"), rport: 50000)
                  == ProcessAttribution(user: "root", uid: 0))
        XCTAssertEqual(h.stats.attributedUserOnly, 1)
        // One scan served the first lookup; the unknown inode may scan again only after allowRescan.
        let scans = h.stats.fdScans
        _ = h.owner(inode: 5002)
        XCTAssert(h.stats.fdScans == scans)
        h.allowRescan()
        _ = h.owner(inode: 5002)
        XCTAssert(h.stats.fdScans == scans + 1)
    }

    func testReusedPidIsNoticed() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("flowmap-proc-\(getpid())")
        try? FileManager.default.removeItem(at: tmp)
        try FileManager.default.copyItem(atPath: FakeProc.root, toPath: tmp.path)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let h = ProcHost(procRoot: tmp.path, passwd: FakeProc.passwd)
        h.processRecheckInterval = 0
        XCTAssert(h.process(200)?.comm == "java")
        // Same pid, a new process (another start time): the cache must not answer "java".
        try "curl\n".write(toFile: tmp.path + "/200/comm", atomically: true, encoding: .utf8)
        XCTAssert(h.process(200)?.comm == "java")
        let stat = try String(contentsOfFile: tmp.path + "/200/stat", encoding: .utf8).replacingOccurrences(of: " 1200 ", with: " 9999 ")
        try stat.write(toFile: tmp.path + "/200/stat", atomically: true, encoding: .utf8)
        XCTAssert(h.process(200)?.comm == "curl")
        // Gone: what was known stays available for flows already attributed, until pruned.
        try FileManager.default.removeItem(atPath: tmp.path + "/200")
        XCTAssert(h.process(200)?.comm == "curl")
        XCTAssert(h.cachedProcesses == 1)
        h.pruneProcesses()
        XCTAssert(h.cachedProcesses == 0)
    }
}

/// The same code against this machine's real /proc.
final class LiveProcTests: XCTestCase {
    func testFindsTheOwnerOfOwnSocketAndItsIdentity() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var st = stat()
        XCTAssertEqual(fstat(fd, &st), 0)
        let host = ProcHost()
        XCTAssertEqual(host.owner(inode: UInt64(st.st_ino)), getpid())
        let me = host.process(getpid())
        XCTAssertEqual(me?.pid, Int(getpid()))
        XCTAssertEqual(me?.uid, Int(getuid()))
        XCTAssertNotNil(me?.exe)
        XCTAssertFalse(me?.cmdline?.isEmpty ?? true)
    }
}

final class SockDiagTests: XCTestCase {
    func inode(_ fd: Int32) -> UInt64 {
        var st = stat()
        fstat(fd, &st)
        return UInt64(st.st_ino)
    }

    func port(_ fd: Int32) -> UInt16 {
        var a = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return UInt16(bigEndian: a.sin_port)
    }

    func bound(_ type: Int32) -> Int32 {
        let fd = socket(AF_INET, type, 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        return fd
    }

    func testExactAndListenerLookupsOnLoopback() throws {
        guard let diag = SockDiag() else { throw XCTSkip("no sock_diag in this kernel") }
        let lo = IPAddress("127.0.0.1")!
        let listener = bound(Int32(SOCK_STREAM.rawValue))
        defer { close(listener) }
        XCTAssertEqual(listen(listener, 4), 0)
        let lport = port(listener)
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_port = lport.bigEndian
        to.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        XCTAssertEqual(withUnsafePointer(to: &to) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }, 0)
        let cport = port(client)
        // The client's own socket, by its exact 4-tuple.
        let c = diag.lookup(proto: .tcp, local: lo, lport: cport, remote: lo, rport: lport)
        XCTAssertEqual(c?.inode, inode(client))
        XCTAssertEqual(c?.state, 1)
        XCTAssertEqual(c?.uid, Int(getuid()))
        // Not accepted yet: the server end has no process, so ask for the listener.
        let l = diag.lookup(proto: .tcp, local: lo, lport: lport, remote: IPAddress(v4: 0), rport: 0)
        XCTAssertEqual(l?.inode, inode(listener))
        XCTAssertEqual(l?.state, 10)
        XCTAssertNil(diag.lookup(proto: .tcp, local: lo, lport: 1, remote: lo, rport: 2))

        let udp = bound(Int32(SOCK_DGRAM.rawValue))
        defer { close(udp) }
        let u = diag.lookup(proto: .udp, local: lo, lport: port(udp), remote: lo, rport: 5353)
        XCTAssertEqual(u?.inode, inode(udp))
        XCTAssertEqual(u?.state, 7)

        // ProcHost with sock_diag: the same answers, down to the process.
        let host = ProcHost(sockDiag: true)
        XCTAssertEqual(host.socketSource, "sock_diag")
        host.refreshSockets()
        XCTAssertEqual(host.attribute(proto: .tcp, local: lo, lport: cport, remote: lo, rport: lport)?.pid, Int(getpid()))
        XCTAssertEqual(host.attribute(proto: .tcp, local: lo, lport: lport, remote: lo, rport: cport)?.pid, Int(getpid()))
        XCTAssertTrue(host.isListening(proto: .tcp, local: lo, lport: lport))
        XCTAssertFalse(host.isListening(proto: .tcp, local: lo, lport: cport))
    }
}
