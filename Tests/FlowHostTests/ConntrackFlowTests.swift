import FlowCore
import FlowHost
import XCTest

final class ConntrackFlowTests: XCTestCase {
    func tcp(id: UInt32 = 7, client: String = "10.0.0.1", cport: UInt16 = 40000, vip: String = "10.0.0.2", vport: UInt16 = 80,
             server: String? = nil, sport: UInt16? = nil, state: UInt8, status: UInt32 = 0,
             counters: (UInt64, UInt64, UInt64, UInt64)? = nil) -> ConntrackEntry {
        let s = server ?? vip
        return ConntrackEntry(
            id: id, orig: ConntrackTuple(src: ip(client), dst: ip(vip), proto: 6, sport: cport, dport: vport),
            reply: ConntrackTuple(src: ip(s), dst: ip(client), proto: 6, sport: sport ?? vport, dport: cport),
            origPackets: counters?.0, origBytes: counters?.1, replyPackets: counters?.2, replyBytes: counters?.3,
            tcpState: state, status: status)
    }

    /// Three TCP connections (ids 1, 2, 3; client ports 40000-40002) seen starting at 10.
    func threeNewConnections() -> ConntrackFlows {
        let f = ConntrackFlows(hostID: "h")
        for (id, port) in [(UInt32(1), UInt16(40000)), (2, 40001), (3, 40002)] {
            f.apply(.new, tcp(id: id, cport: port, state: 1), at: 10)
        }
        return f
    }

    func testLifecycleUpdatesInPlaceAndForgetsEndedFlows() throws {
        let flows = ConntrackFlows(hostID: "h1")
        var seenNew = 0
        flows.onNew = { _ in seenNew += 1 }
        flows.apply(.new, tcp(state: 1, counters: (1, 60, 0, 0)), at: 100)
        XCTAssert(seenNew == 1 && flows.activeCount == 1)
        let first = flows.takeChanges()
        XCTAssert(first.count == 1 && !first[0].ended)
        XCTAssert(first[0].record.connState == "S0")
        let uid = first[0].uid
        flows.apply(.update, tcp(state: 2, status: ConntrackEntry.seenReply, counters: (1, 60, 1, 60)), at: 100.01)
        flows.apply(.update, tcp(state: 3, status: ConntrackEntry.seenReply | ConntrackEntry.assured, counters: (3, 200, 2, 900)), at: 100.02)
        XCTAssert(flows.takeChanges().map(\.uid) == [uid])
        XCTAssert(flows.takeChanges().isEmpty)  // nothing changed since
        // An event without counters (accounting switched off meanwhile) keeps the last ones.
        flows.apply(.update, tcp(state: 5, status: ConntrackEntry.seenReply | ConntrackEntry.assured), at: 100.4)
        XCTAssert(flows.takeChanges()[0].record.origPkts == 3)
        // TIME_WAIT: the connection is over. The flow is finished now and leaves memory (a
        // small record waits for the final counters, which conntrack sends only with DESTROY
        // and in dumps).
        flows.apply(.update, tcp(state: 7, status: ConntrackEntry.seenReply | ConntrackEntry.assured), at: 100.5)
        XCTAssert(flows.activeCount == 0 && flows.closingCount == 1)
        let done = flows.takeChanges()
        XCTAssert(done.count == 1 && done[0].ended && done[0].uid == uid)
        XCTAssert(done[0].record.connState == "SF" && done[0].record.ts == 100)
        XCTAssertEqual(done[0].record.duration, 0.5, accuracy: 1e-9)
        // A dump lists the lingering entry with its counters: the same flow, updated.
        flows.applyDump([tcp(state: 7, status: ConntrackEntry.seenReply | ConntrackEntry.assured, counters: (5, 340, 5, 4000))],
                        at: 105, reconcile: true)
        let dumped = flows.takeChanges()
        XCTAssert(dumped.count == 1 && dumped[0].uid == uid && dumped[0].record.origPkts == 5 && dumped[0].ended)
        flows.apply(.update, tcp(state: 7, status: ConntrackEntry.seenReply | ConntrackEntry.assured), at: 110)
        XCTAssert(flows.takeChanges().isEmpty)
        flows.apply(.destroy, tcp(state: 7, status: ConntrackEntry.seenReply | ConntrackEntry.assured, counters: (6, 400, 5, 4000)), at: 220)
        let final = flows.takeChanges()
        XCTAssert(final.count == 1 && final[0].uid == uid && final[0].ended)
        let r = final[0].record
        XCTAssert(r.origPkts == 6 && r.origIPBytes == 400 && r.respPkts == 5 && r.respIPBytes == 4000)
        XCTAssertEqual(r.duration, 0.5, accuracy: 1e-9)  // the DESTROY came when TIME_WAIT expired
        XCTAssert(flows.closingCount == 0 && flows.activeCount == 0)
        XCTAssertEqual(flows.stats, .init(new: 1, updates: 5, destroys: 1, endedUnseen: 0, late: 0, afterClose: 2))
        // The client port and entry id reused for a new connection: a new flow.
        flows.apply(.new, tcp(state: 1, counters: (1, 60, 0, 0)), at: 300)
        let again = flows.takeChanges()
        XCTAssert(again.count == 1 && again[0].uid != uid && !again[0].ended)
    }

    func testAConnectionOpenedAndClosedBetweenTwoFlushesIsOneRow() {
        let flows = ConntrackFlows(hostID: "h1")
        flows.onNew = { f in f.respProcess = ProcessAttribution(pid: 7, comm: "nginx") }
        let done = ConntrackEntry.seenReply | ConntrackEntry.assured
        flows.apply(.new, tcp(state: 1), at: 1)
        flows.apply(.update, tcp(state: 3, status: done), at: 1.001)
        flows.apply(.update, tcp(state: 7, status: done), at: 1.002)
        flows.apply(.destroy, tcp(state: 7, status: done, counters: (5, 300, 4, 900)), at: 121)
        let changes = flows.takeChanges()
        XCTAssertEqual(changes.count, 1)
        XCTAssertTrue(changes[0].isNew && changes[0].ended)
        XCTAssertEqual(changes[0].record.origPkts, 5)
        XCTAssertEqual(changes[0].respProcess?.comm, "nginx")  // kept from the first sight
    }

    func testUDPLivesUntilItsDestroy() {
        let flows = ConntrackFlows(hostID: "h1")
        var q = tcp(state: 0)
        q.orig.proto = 17; q.reply.proto = 17; q.tcpState = nil
        flows.apply(.new, q, at: 10)
        q.status = ConntrackEntry.seenReply
        q.origPackets = 1; q.replyPackets = 1; q.origBytes = 60; q.replyBytes = 120
        flows.apply(.update, q, at: 12)
        XCTAssert(flows.activeCount == 1)
        flows.apply(.destroy, q, at: 42)
        let r = flows.takeChanges()[0].record
        XCTAssert(r.connState == "SF" && r.duration == 2 && r.respIPBytes == 120)
        XCTAssert(flows.activeCount == 0)
    }

    func testDnatIsRecordedWithTheRealBackend() throws {
        let flows = ConntrackFlows(hostID: "h1")
        let e = tcp(client: "10.0.0.1", vip: "10.96.0.10", vport: 80, server: "10.244.1.7", sport: 8080, state: 1)
        flows.apply(.new, e, at: 5)
        let f = flows.takeChanges()[0]
        XCTAssert(f.record.respH == ip("10.244.1.7") && f.record.respP == 8080)
        XCTAssert(f.record.origH == ip("10.0.0.1") && f.record.origP == 40000)
        XCTAssert(f.entry.dnat! == (ip("10.96.0.10"), 80))
        XCTAssert(f.entry.snat == nil)
        // Masquerade: the server saw another client address.
        var m = tcp(state: 1)
        m.reply.dst = ip("192.168.1.1"); m.reply.dport = 61000
        XCTAssert(m.snat! == (ip("192.168.1.1"), 61000))
        XCTAssert(m.dnat == nil)
    }

    func testOverflowReconcileEndsVanishedFlowsAndAddsMissedOnes() throws {
        let flows = ConntrackFlows(hostID: "h1")
        flows.apply(.new, tcp(id: 1, cport: 1001, state: 1), at: 1)
        flows.apply(.new, tcp(id: 2, cport: 1002, state: 1), at: 1)
        _ = flows.takeChanges()
        // Events were lost; the dump shows flow 2 still open and a flow 3 never announced.
        flows.applyDump([tcp(id: 2, cport: 1002, state: 3, status: ConntrackEntry.seenReply), tcp(id: 3, cport: 1003, state: 3)],
                        at: 9, reconcile: true)
        let changes = flows.takeChanges()
        XCTAssert(changes.count == 3)
        let byPort = Dictionary(uniqueKeysWithValues: changes.map { ($0.entry.orig.sport, $0) })
        XCTAssert(byPort[1001]!.ended && !byPort[1002]!.ended && !byPort[1003]!.ended)
        XCTAssert(byPort[1003]!.preexisting && !byPort[1002]!.preexisting)
        XCTAssert(flows.stats.endedUnseen == 1 && flows.activeCount == 2)
        // A plain refresh dump never ends flows.
        flows.applyDump([], at: 10, reconcile: false)
        XCTAssert(flows.activeCount == 2)
    }

    func testLateEventsAndIdentity() throws {
        let a = ConntrackFlows(hostID: "h1"), b = ConntrackFlows(hostID: "h1"), c = ConntrackFlows(hostID: "h2")
        for f in [a, b, c] { f.apply(.destroy, tcp(state: 7), at: 50) }
        let (fa, fb, fc) = (a.takeChanges()[0], b.takeChanges()[0], c.takeChanges()[0])
        XCTAssert(fa.ended && fa.preexisting && a.stats.late == 1)
        XCTAssert(fa.uid == fb.uid && fa.uid != fc.uid)  // stable per host, distinct across hosts
        XCTAssert(fa.uid.count == 18 && fa.uid.hasPrefix("C"))
    }

    func testConnStates() throws {
        let replied = ConntrackEntry.seenReply, assured = ConntrackEntry.assured
        XCTAssert(tcp(state: 1).connState == "S0")
        XCTAssert(tcp(state: 8, status: replied).connState == "REJ")
        // A SYN answered by a reset: conntrack ends the entry without marking it replied, but
        // its DESTROY counts the reset.
        var refused = tcp(state: 1)
        refused.origPackets = 1; refused.origBytes = 60; refused.replyPackets = 1; refused.replyBytes = 40
        XCTAssert(refused.connState == "REJ")
        refused.tcpState = 8
        XCTAssert(refused.connState == "REJ")
        refused.replyPackets = 0
        XCTAssert(refused.connState == "S0")
        XCTAssert(tcp(state: 8, status: replied | assured).connState == "RSTO")
        XCTAssert(tcp(state: 3, status: replied | assured).connState == "S1")
        XCTAssert(tcp(state: 7, status: replied | assured).connState == "SF")
        var udp = tcp(state: 0)
        udp.orig.proto = 17; udp.reply.proto = 17; udp.tcpState = nil
        XCTAssert(udp.connState == "S0")
        udp.status = replied
        XCTAssert(udp.connState == "SF")
        let icmp = ConntrackEntry(id: 9, orig: ConntrackTuple(src: ip("10.0.0.1"), dst: ip("10.0.0.2"), proto: 1, sport: 8, dport: 0, icmpID: 77),
                                  reply: ConntrackTuple(src: ip("10.0.0.2"), dst: ip("10.0.0.1"), proto: 1, sport: 8, dport: 0, icmpID: 77))
        let flows = ConntrackFlows(hostID: "h")
        flows.apply(.new, icmp, at: 1)
        let r = flows.takeChanges()[0].record
        // Zeek's convention: orig_p is the type, resp_p the counterpart (echo reply 0).
        XCTAssert(r.ipProto.rawValue == 1 && r.origP == 8 && r.respP == 0 && r.connState == "OTH")
    }

    func testMonitorVerdictsAreKept() throws {
        let flows = ConntrackFlows(hostID: "h1")
        flows.onNew = { f in f.blocked = "no rule between these workloads" }
        flows.apply(.new, tcp(state: 1), at: 1)
        XCTAssert(flows.takeChanges()[0].blocked == "no rule between these workloads")
    }
    /// A reconcile dump writes a finished connection's counters from the dump, and forgets one
    /// the dump no longer shows into the bounded memory of ended flows (its late DESTROY still
    /// lands on the same flow). Applying a dump entry by entry is applying it whole.
    func testReconcileDumpsStreamedOrWhole() throws {
        let replied = ConntrackEntry.seenReply | ConntrackEntry.assured
        func closedFlows() -> ConntrackFlows {
            let f = ConntrackFlows(hostID: "h")
            f.apply(.new, tcp(id: 1, state: 1), at: 10)
            f.apply(.update, tcp(id: 1, state: 7, status: replied), at: 11)
            f.apply(.new, tcp(id: 2, cport: 40001, state: 1), at: 12)
            _ = f.takeChanges()
            return f
        }
        let inDump = [tcp(id: 1, state: 7, status: replied, counters: (5, 300, 4, 900)),
                      tcp(id: 2, cport: 40001, state: 3, status: replied, counters: (3, 180, 2, 120))]
        let whole = closedFlows()
        whole.applyDump(inDump, at: 20, reconcile: true)
        XCTAssertEqual(whole.takeChanges().map { $0.record.origPkts }, [5, 3])

        let streamed = closedFlows()
        streamed.beginDump()
        for e in inDump { streamed.applyDumpEntry(e, at: 20) }
        streamed.endDump(reconcile: true)
        XCTAssertEqual(streamed.takeChanges().map { $0.record.origPkts }, [5, 3])

        let gone = closedFlows()
        gone.applyDump([inDump[1]], at: 20, reconcile: true)
        XCTAssertEqual(gone.closingCount, 0)
        XCTAssertEqual(gone.sizes.recentlyEnded, 1)
        _ = gone.takeChanges()
        gone.apply(.destroy, tcp(id: 1, state: 7, status: replied, counters: (6, 360, 5, 960)), at: 21)
        let late = gone.takeChanges()
        XCTAssertEqual(late.count, 1)
        XCTAssertEqual(late.first?.record.respIPBytes, 960)
        XCTAssertEqual(gone.stats.late, 0)
    }

    /// A refresh by lookups: an open connection's counters are taken (and it closes when the
    /// kernel says TIME_WAIT); one the kernel no longer has is ended, and its late DESTROY
    /// updates the same flow; a lookup for a flow that is no longer open changes nothing.
    func testRefreshLookupsUpdateOrEndOpenFlows() throws {
        let replied = ConntrackEntry.seenReply | ConntrackEntry.assured
        let f = threeNewConnections()
        _ = f.takeChanges()
        XCTAssertEqual(Set(f.openEntries.map(\.id)), [1, 2, 3])

        f.applyLookup(tcp(id: 1, state: 3, status: replied, counters: (4, 240, 3, 180)), at: 20)
        f.applyLookup(tcp(id: 3, cport: 40002, state: 7, status: replied, counters: (9, 540, 8, 480)), at: 20)
        f.endMissing(tcp(id: 2, cport: 40001, state: 1))
        var out = Dictionary(uniqueKeysWithValues: f.takeChanges().map { ($0.key.id, $0) })
        XCTAssertEqual(out[1]?.ended, false)
        XCTAssertEqual(out[1]?.record.origPkts, 4)
        XCTAssertEqual(out[1]?.record.connState, "S1")
        XCTAssertEqual(out[3]?.ended, true)
        XCTAssertEqual(out[3]?.record.connState, "SF")
        XCTAssertEqual(out[2]?.ended, true)
        XCTAssertEqual(f.stats.endedUnseen, 1)
        XCTAssertEqual(Set(f.openEntries.map(\.id)), [1])

        f.apply(.destroy, tcp(id: 2, cport: 40001, state: 1, counters: (2, 120, 0, 0)), at: 21)
        out = Dictionary(uniqueKeysWithValues: f.takeChanges().map { ($0.key.id, $0) })
        XCTAssertEqual(out[2]?.record.origPkts, 2, "the late DESTROY lands on the ended flow")
        XCTAssertEqual(f.stats.late, 0)
        f.applyLookup(tcp(id: 2, cport: 40001, state: 1, counters: (7, 420, 0, 0)), at: 22)
        f.endMissing(tcp(id: 3, cport: 40002, state: 7))
        XCTAssertTrue(f.takeChanges().isEmpty)
        XCTAssertEqual(f.stats.endedUnseen, 1)
    }

    /// A connection that closes (TIME_WAIT) on an event, which carries no counters: the agent
    /// looks it up, the flow is written once with what the lookup found, and a DESTROY that
    /// brings the same writes nothing. One that brings more is written.
    func testClosedConnectionsLookedUpAreWrittenOnce() throws {
        let replied = ConntrackEntry.seenReply | ConntrackEntry.assured
        let f = threeNewConnections()
        // New and still open TCP flows, for the lookup before their first write.
        XCTAssertEqual(Set(f.tcpEntriesToLookUp(handshaking: false).map(\.id)), [1, 2, 3])
        f.apply(.update, tcp(id: 1, state: 7, status: replied), at: 10.2)
        f.apply(.update, tcp(id: 2, cport: 40001, state: 7, status: replied), at: 10.3)
        XCTAssertEqual(Set(f.tcpEntriesToLookUp(handshaking: false).map(\.id)), [3])
        let closed = f.takeAwaitingCounters()
        XCTAssertEqual(Set(closed.map(\.id)), [1, 2])
        // The lookups: id 1 found (still in TIME_WAIT), id 2 not (its DESTROY is on its way).
        f.applyClosedLookup(tcp(id: 1, state: 7, status: replied, counters: (5, 300, 4, 900)), entry: closed.firstIndex { $0.id == 1 }!)
        f.endClosedLookups()
        XCTAssertTrue(f.takeAwaitingCounters().isEmpty, "handed out once")
        var out = Dictionary(uniqueKeysWithValues: f.takeChanges().map { ($0.key.id, $0) })
        XCTAssertEqual(out[1]?.record.origPkts, 5)
        XCTAssertEqual(out[1]?.record.respIPBytes, 900)
        XCTAssertEqual(out[1]?.ended, true)
        XCTAssertEqual(try XCTUnwrap(out[1]).record.duration, 0.2, accuracy: 1e-9, "a lookup does not move the last activity")
        XCTAssertEqual(out[2]?.record.origPkts, 0)
        XCTAssertTrue(f.tcpEntriesToLookUp(handshaking: false).isEmpty, "id 3 was written: no longer new")
        XCTAssertEqual(f.tcpEntriesToLookUp(handshaking: true).map(\.id), [3], "its handshake is not known to be over")
        f.applyLookup(tcp(id: 3, cport: 40002, state: 3, status: replied, counters: (3, 180, 2, 120)), at: 10.5)
        _ = f.takeChanges()
        XCTAssertTrue(f.tcpEntriesToLookUp(handshaking: true).isEmpty, "established")

        f.apply(.destroy, tcp(id: 1, state: 7, status: replied, counters: (5, 300, 4, 900)), at: 130)
        f.apply(.destroy, tcp(id: 2, cport: 40001, state: 7, status: replied, counters: (6, 360, 5, 1000)), at: 130)
        out = Dictionary(uniqueKeysWithValues: f.takeChanges().map { ($0.key.id, $0) })
        XCTAssertNil(out[1], "the DESTROY brought what was written")
        XCTAssertEqual(out[2]?.record.origPkts, 6)
        XCTAssertEqual(f.stats.unchanged, 1)
        XCTAssertEqual(f.closingCount, 0)

        // A lookup that found more than the DESTROY later brings (a retransmission counted in
        // TIME_WAIT): written again.
        f.apply(.update, tcp(id: 3, cport: 40002, state: 7, status: replied), at: 11)
        XCTAssertEqual(f.takeAwaitingCounters().map(\.id), [3])
        f.applyClosedLookup(tcp(id: 3, cport: 40002, state: 7, status: replied, counters: (5, 300, 4, 900)), entry: 0)
        f.endClosedLookups()
        XCTAssertEqual(f.takeChanges().first?.record.origPkts, 5)
        f.apply(.destroy, tcp(id: 3, cport: 40002, state: 7, status: replied, counters: (6, 352, 4, 900)), at: 131)
        XCTAssertEqual(f.takeChanges().first?.record.origPkts, 6)
        XCTAssertEqual(f.stats.unchanged, 1)
    }

    /// A lookup that comes after its flow was written, or after the DESTROY, changes nothing.
    func testStaleClosedLookupsAreIgnored() {
        let replied = ConntrackEntry.seenReply | ConntrackEntry.assured
        let f = ConntrackFlows(hostID: "h")
        f.apply(.new, tcp(id: 1, state: 1), at: 10)
        f.apply(.update, tcp(id: 1, state: 7, status: replied), at: 10.2)
        let closed = f.takeAwaitingCounters()
        XCTAssertEqual(closed.count, 1)
        f.apply(.destroy, tcp(id: 1, state: 7, status: replied, counters: (5, 300, 4, 900)), at: 10.3)
        f.applyClosedLookup(tcp(id: 1, state: 7, status: replied, counters: (4, 240, 3, 800)), entry: 0)
        f.endClosedLookups()
        let out = f.takeChanges()
        XCTAssertEqual(out.count, 1, "the flow, with the DESTROY's counters merged in")
        XCTAssertEqual(out.first?.record.origPkts, 5)
        f.applyClosedLookup(tcp(id: 1, state: 7, status: replied, counters: (9, 9, 9, 9)), entry: 0)
        XCTAssertTrue(f.takeChanges().isEmpty)
    }

    /// A client port reused at once, within one read: the kernel kills the old entry (a SYN on
    /// a tuple in TIME_WAIT) and gives the new one the same id. Both connections are seen at
    /// the same instant (one clock reading per read; events carry no start time), and each is
    /// its own flow.
    func testTwoConnectionsWithOneIdAndTupleInOneReadAreTwoFlows() {
        let replied = ConntrackEntry.seenReply | ConntrackEntry.assured
        let f = ConntrackFlows(hostID: "h")
        f.apply(.new, tcp(id: 9, state: 1), at: 50)
        f.apply(.update, tcp(id: 9, state: 7, status: replied), at: 50)
        f.apply(.destroy, tcp(id: 9, state: 7, status: replied, counters: (5, 300, 4, 900)), at: 50)
        f.apply(.new, tcp(id: 9, state: 1), at: 50)
        f.apply(.update, tcp(id: 9, state: 7, status: replied), at: 50)
        // Both closed in TIME_WAIT; only the second still lingers, and a lookup by its tuple
        // finds it: the answer goes to it alone.
        let closed = f.takeAwaitingCounters()
        XCTAssertEqual(closed.count, 1)
        f.applyClosedLookup(tcp(id: 9, state: 7, status: replied, counters: (7, 420, 6, 1200)), entry: 0)
        f.endClosedLookups()
        let out = f.takeChanges()
        XCTAssertEqual(out.count, 2, "\(out.map(\.uid))")
        XCTAssertEqual(Set(out.map(\.uid)).count, 2)
        XCTAssertEqual(out.map(\.record.origPkts).sorted(), [5, 7])
    }
}

final class ConntrackReuseTests: XCTestCase {
    /// A client port reused at once: the kernel gives the new connection the old entry's id and
    /// tuple, and the old entry's DESTROY (with its final counters) can come after the new NEW.
    func testLateDestroyOfAReplacedConnectionDoesNotEndTheNewOne() {
        func e(state: UInt8, counters: (UInt64, UInt64, UInt64, UInt64)? = nil, start: Double? = nil, stop: Double? = nil) -> ConntrackEntry {
            ConntrackEntry(id: 42, orig: ConntrackTuple(src: ip("10.0.0.1"), dst: ip("10.0.0.2"), proto: 6, sport: 5555, dport: 80),
                           reply: ConntrackTuple(src: ip("10.0.0.2"), dst: ip("10.0.0.1"), proto: 6, sport: 80, dport: 5555),
                           origPackets: counters?.0, origBytes: counters?.1, replyPackets: counters?.2, replyBytes: counters?.3,
                           tcpState: state, status: ConntrackEntry.seenReply | ConntrackEntry.assured, start: start, stop: stop)
        }
        let flows = ConntrackFlows(hostID: "h")
        flows.apply(.new, e(state: 1), at: 10.000)
        flows.apply(.update, e(state: 7), at: 10.001)        // old: closed, waits for counters
        flows.apply(.new, e(state: 1), at: 10.500)           // the same id and tuple, a new connection
        flows.apply(.destroy, e(state: 7, counters: (5, 300, 4, 900), start: 9.9999, stop: 10.4999), at: 10.501)
        flows.apply(.update, e(state: 3), at: 10.502)        // the new one goes on
        let changes = flows.takeChanges()
        let uids = Set(changes.map(\.uid))
        XCTAssertEqual(uids.count, 2)
        let old = changes.filter { $0.firstSeen == 10.0 }
        XCTAssertTrue(old.allSatisfy(\.ended))
        XCTAssertEqual(old.last?.record.origPkts, 5)
        XCTAssertEqual(flows.activeCount, 1)
        XCTAssertEqual(flows.activeFlows.first?.firstSeen, 10.5)
        XCTAssertEqual(flows.stats.late, 0)
    }

}
