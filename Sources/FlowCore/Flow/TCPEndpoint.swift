// TCP endpoint state as Zeek tracks it (src/analyzer/protocol/tcp/TCP_Endpoint, and the
// packet-analysis TCP session adapter). The transitions and the history letters below follow
// Zeek's documented semantics so that conn_state and history match its conn.log.

/// Zeek's per-endpoint TCP state.
public enum TCPEndpointState: UInt8, Sendable {
    case inactive, synSent, synAckSent, partial, established, closed, reset
}

/// Signed distance between two sequence numbers, modulo 2^32.
@inline(__always)
func seqDelta(_ a: UInt32, _ b: UInt32) -> Int32 { Int32(bitPattern: a &- b) }

struct TCPEndpoint {
    var state: TCPEndpointState = .inactive
    var prevState: TCPEndpointState = .inactive
    var startSeq: UInt32 = 0
    var lastSeq: UInt32 = 0
    var ackSeq: UInt32 = 0
    var seqWraps: UInt32 = 0
    var ackWraps: UInt32 = 0
    var didClose = false
    var finSeen = false
    /// Relative sequence numbers (low 32 bits) of the last SYN, FIN and RST, so a repeated one
    /// at a new sequence number adds its history letter again.
    var histLastSYN: UInt32 = 0
    var histLastFIN: UInt32 = 0
    var histLastRST: UInt32 = 0
    var rxmitCount: UInt32 = 0
    var zeroWinCount: UInt32 = 0
    /// The relative sequence number after the last in-order data byte seen (1 = no data yet).
    var dataEnd: UInt64 = 1

    @inline(__always)
    mutating func setState(_ s: TCPEndpointState) {
        prevState = state
        state = s
    }

    @inline(__always)
    mutating func initSeqs(start: UInt32, last: UInt32) {
        startSeq = start
        ackSeq = start
        lastSeq = last
        dataEnd = 1
    }

    @inline(__always)
    mutating func updateLastSeq(_ s: UInt32) {
        if s < lastSeq { seqWraps &+= 1 }
        lastSeq = s
    }

    @inline(__always)
    mutating func updateAckSeq(_ s: UInt32) {
        if s < ackSeq { ackWraps &+= 1 }
        ackSeq = s
    }

    /// Sequence number relative to the start, accounting for wraps (Zeek's get_relative_seq).
    func relative(_ cur: UInt32, last: UInt32, wraps w0: UInt32, underflow: inout Bool) -> UInt64 {
        var wraps = w0
        let d = seqDelta(cur, last)
        if d < 0 {
            if wraps > 0 && cur > last { wraps -= 1 }
        } else if d > 0 {
            if cur < last { wraps += 1 }
        }
        if wraps == 0 {
            let d2 = seqDelta(cur, startSeq)
            if d2 < 0 { underflow = true }
            return UInt64(bitPattern: Int64(d2))
        }
        return ((UInt64(wraps) << 32) | UInt64(cur)) &- UInt64(startSeq)
    }

    var isActive: Bool { state != .inactive && state != .closed && state != .reset }

    /// Payload bytes from sequence space (Zeek's TCP_Endpoint::Size()).
    func size(peerState: TCPEndpointState) -> UInt64 {
        let last64 = (UInt64(seqWraps) << 32) | UInt64(lastSeq)
        let ack64 = (UInt64(ackWraps) << 32) | UInt64(ackSeq)
        let noDataAcked = ack64 == UInt64(startSeq) &+ 1 || ack64 == UInt64(startSeq)
        if prevState == .synSent && state == .reset && peerState == .inactive && !noDataAcked {
            return 0
        }
        let top = max(last64, ack64)
        var size: UInt64 = top >= UInt64(startSeq) ? top - UInt64(startSeq) : 0
        if size != 0 { size -= 1 }  // the SYN octet
        if finSeen && size != 0 { size -= 1 }  // the FIN octet
        if size > 0xFFFF_FFFF_0000 { return 0 }  // nonsense from a corrupt sequence space
        return size
    }
}

/// Zeek's scaled history letters ('T', 'W') are added at the 1st, 10th, 100th… occurrence.
@inline(__always)
func isPowerOfTen(_ n: UInt32) -> Bool {
    switch n {
    case 1, 10, 100, 1000, 10000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000: return true
    default: return false
    }
}
