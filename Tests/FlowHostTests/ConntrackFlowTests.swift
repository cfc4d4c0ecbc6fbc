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
        flows.apply(.update, tcp(state: 7, status: ConntrackEntry.seenReply | ConntrackEntry.assured), at: 100.5)
        flows.apply(.destroy, tcp(state: 7, status: ConntrackEntry.seenReply | ConntrackEntry.assured, counters: (6, 400, 5, 4000)), at: 220)
        XCTAssert(flows.activeCount == 0)
        let done = flows.takeChanges()
        XCTAssert(done.count == 1 && done[0].ended && done[0].uid == uid)
        let r = done[0].record
        XCTAssert(r.origPkts == 6 && r.origIPBytes == 400 && r.respPkts == 5 && r.respIPBytes == 4000)
        XCTAssert(r.connState == "SF")
        XCTAssert(r.ts == 100)
        // The DESTROY came when TIME_WAIT expired; the last activity was the FIN exchange.
        XCTAssert(r.duration == 220 - 100)
        XCTAssert(flows.stats == .init(new: 1, updates: 3, destroys: 1, endedUnseen: 0, late: 0))
        XCTAssert(flows.takeChanges().isEmpty)
    }

    func testDestroyWithoutMovementKeepsLastActivity() throws {
        let flows = ConntrackFlows(hostID: "h1")
        let est = tcp(state: 3, status: ConntrackEntry.seenReply | ConntrackEntry.assured, counters: (3, 200, 2, 900))
        flows.apply(.new, tcp(state: 1, counters: (1, 60, 0, 0)), at: 10)
        flows.apply(.update, est, at: 12)
        var closed = est
        closed.tcpState = 7
        flows.apply(.update, closed, at: 13)
        flows.apply(.destroy, closed, at: 133)
        XCTAssert(flows.takeChanges()[0].record.duration == 3)
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
}
