import FlowCore

/// Which DNS names an address had, and when: built from the DNS answers seen on the wire
/// (the name a client asked for, not the CNAME target), asked per flow at the flow's time, so
/// that an address that changes hands never carries its old name into new flows.
///
/// An answer run (the same name for the same address, answered again and again) is valid from
/// its first answer until its last answer plus the TTL plus `grace`. A client's own answers
/// are preferred: for (client, address) the most recent run that began at or before the flow.
/// Otherwise any client's runs valid at the flow's time, the most recently begun first.
public final class NameResolver {
    struct Run {
        var name: Int32
        var first: Double
        var last: Double
        var ttl: Double
        var validUntil: Double { last + ttl }
    }
    private var strings: [String] = []
    private var ids = StringIndex()
    /// Per (client, address): runs in order of their first answer.
    private var clientRuns: [[Run]] = []
    private var clientIndex = WordIndex()
    /// Per address, any client: runs in order of their first answer.
    private var addressRuns: [[Run]] = []
    private var addressIndex = WordIndex()
    /// How long after its TTL an answer still names an address for clients that did not ask.
    public let grace: Double

    public init(grace: Double = 3600) { self.grace = grace }

    public var isEmpty: Bool { addressRuns.isEmpty }

    /// True when some answer named `address` (at any time).
    public func knows(_ address: IPAddress) -> Bool { !addressRuns.isEmpty && addressIndex.find(address.hi, address.lo, 0, 0) >= 0 }
    public var answerCount: Int { addressRuns.reduce(0) { $0 + $1.count } }

    /// The runs of `address` (any client), or nil.
    @inline(__always) private func runsOf(_ address: IPAddress) -> [Run]? {
        if addressRuns.isEmpty { return nil }
        let i = addressIndex.find(address.hi, address.lo, 0, 0)
        return i >= 0 ? addressRuns[Int(i)] : nil
    }

    /// The runs of `address` from `client`'s own answers, or nil.
    @inline(__always) private func runsOf(_ address: IPAddress, client c: IPAddress) -> [Run]? {
        if clientRuns.isEmpty { return nil }
        let i = clientIndex.find(c.hi, c.lo, address.hi, address.lo)
        return i >= 0 ? clientRuns[Int(i)] : nil
    }

    private func intern(_ s: String) -> Int32 {
        if let i = ids.find(s, strings) { return i }
        let i = Int32(strings.count)
        strings.append(s)
        ids.insert(s, i, strings)
        return i
    }

    /// Adds one answer (or an aggregate of repeated answers from first to last).
    public func add(client: IPAddress?, name: String, address: IPAddress, ttl: UInt32, first: Double, last: Double) {
        // DNS names on the wire are nearly always lower-case ASCII already: no new string then.
        let lower = name.utf8.allSatisfy { $0 < 0x80 && !($0 >= 65 && $0 <= 90) } ? name : name.lowercased()
        let id = intern(lower)
        let ttl = Double(ttl)
        if let c = client {
            let i = clientIndex.findOrInsert(c.hi, c.lo, address.hi, address.lo, next: Int32(clientRuns.count))
            if Int(i) == clientRuns.count { clientRuns.append([]) }
            NameResolver.merge(&clientRuns[Int(i)], id, first, last, ttl)
        }
        let i = addressIndex.findOrInsert(address.hi, address.lo, 0, 0, next: Int32(addressRuns.count))
        if Int(i) == addressRuns.count { addressRuns.append([]) }
        NameResolver.merge(&addressRuns[Int(i)], id, first, last, ttl)
    }

    public func add(_ o: DNSObservation) {
        add(client: o.client, name: o.name, address: o.address, ttl: o.ttl, first: o.ts, last: o.lastSeen)
    }

    /// Extends the latest run of the same name, or starts a new run (kept in order of first).
    private static func merge(_ runs: inout [Run], _ id: Int32, _ first: Double, _ last: Double, _ ttl: Double) {
        // Answers in time order (a store's, a capture's): no run began after this one, so it
        // extends the latest run if that has its name, else it is the latest (what the general
        // case below does, without scanning).
        if let l = runs.last, l.first <= first {
            if l.name == id {
                runs[runs.count - 1].last = max(l.last, last)
                runs[runs.count - 1].ttl = max(l.ttl, ttl)
            } else {
                runs.append(Run(name: id, first: first, last: last, ttl: ttl))
            }
            return
        }
        // Extend the most recent run with this name if the answer does not begin before it
        // and no other name began in between.
        if let i = runs.lastIndex(where: { $0.name == id }), runs[i].first <= first,
           !runs[(i + 1)...].contains(where: { $0.first <= first }) {
            runs[i].last = max(runs[i].last, last)
            runs[i].ttl = max(runs[i].ttl, ttl)
            return
        }
        let r = Run(name: id, first: first, last: last, ttl: ttl)
        var lo = 0, hi = runs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if runs[mid].first <= first { lo = mid + 1 } else { hi = mid }
        }
        runs.insert(r, at: lo)
    }

    /// The names of `address` at time `t` for `client` (nil: any client), preferred first:
    /// the client's own latest name, then other names valid at `t` (latest begun first, then
    /// alphabetical).
    public func names(for address: IPAddress, client: IPAddress?, at t: Double) -> [String] {
        var out: [Int32] = []
        if let c = client, let runs = runsOf(address, client: c) {
            let i = NameResolver.lastBegun(runs, by: t)
            if i >= 0 { out.append(runs[i].name) }
        }
        if let runs = runsOf(address) {
            let valid = runs[0..<(NameResolver.lastBegun(runs, by: t) + 1)].filter { t <= $0.validUntil + grace }
            let ordered = valid.sorted { a, b in a.first != b.first ? a.first > b.first : strings[Int(a.name)] < strings[Int(b.name)] }
            for r in ordered where !out.contains(r.name) { out.append(r.name) }
        }
        return out.map { strings[Int($0)] }
    }

    /// The preferred name of `address` at `t` for `client`.
    public func name(for address: IPAddress, client: IPAddress?, at t: Double) -> String? {
        string(preferredID(for: address, client: client, at: t))
    }

    /// The id of the preferred name (as `names(...).first`): -1 when none is valid at `t`, -2
    /// when no answer ever named the address; no allocation.
    public func preferredID(for address: IPAddress, client: IPAddress?, at t: Double) -> Int32 {
        guard let runs = runsOf(address) else { return -2 }
        if let c = client, let own = runsOf(address, client: c) {
            let i = NameResolver.lastBegun(own, by: t)
            if i >= 0 { return own[i].name }
        }
        var i = NameResolver.lastBegun(runs, by: t)
        var best: Int32 = -1
        var bestFirst = -Double.infinity
        while i >= 0 {
            let r = runs[i]
            if r.first < bestFirst { break }  // sorted by first: nothing later can win
            if t <= r.validUntil + grace {
                if best < 0 || r.first > bestFirst || strings[Int(r.name)] < strings[Int(best)] {
                    best = r.name
                    bestFirst = r.first
                }
            }
            i -= 1
        }
        return best
    }

    /// Every name valid for `address` at `t` from any client's answers, unordered.
    func validNames(for address: IPAddress, at t: Double) -> [String] {
        guard let runs = runsOf(address) else { return [] }
        var out: [String] = []
        var i = NameResolver.lastBegun(runs, by: t)
        while i >= 0 {
            if t <= runs[i].validUntil + grace { out.append(strings[Int(runs[i].name)]) }
            i -= 1
        }
        return out
    }

    public func string(_ id: Int32) -> String? { id >= 0 && Int(id) < strings.count ? strings[Int(id)] : nil }

    /// A hash of every name valid for `address` at `t` (any client), to tell apart moments
    /// whose name sets differ; no allocation.
    public func validSetSignature(for address: IPAddress, at t: Double) -> UInt64 {
        guard let runs = runsOf(address) else { return 0 }
        var sig: UInt64 = 0
        var i = NameResolver.lastBegun(runs, by: t)
        while i >= 0 {
            if t <= runs[i].validUntil + grace { sig = sig &+ mix64(UInt64(runs[i].name), 0x5157) }
            i -= 1
        }
        return sig
    }

    /// The index of the last run that began at or before `t` (runs are sorted by first), or -1.
    @inline(__always)
    static func lastBegun(_ runs: [Run], by t: Double) -> Int {
        var lo = 0, hi = runs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if runs[mid].first <= t { lo = mid + 1 } else { hi = mid }
        }
        return lo - 1
    }
}

/// Keys of up to four words → dense indices (0, 1, 2, … in order of insertion), by open
/// addressing (no `Hasher`: one multiply-xorshift mix per lookup).
public struct WordIndex: Sendable {
    private struct Slot: Sendable { var a: UInt64 = 0, b: UInt64 = 0, c: UInt64 = 0, d: UInt64 = 0; var index: Int32 = -1 }
    private var slots = [Slot](repeating: Slot(), count: 16)
    public private(set) var count = 0

    public init() {}

    /// Forgets every key (keeps the table's size).
    public mutating func removeAll() {
        for i in slots.indices { slots[i].index = -1 }
        count = 0
    }

    @inline(__always) private static func hash(_ a: UInt64, _ b: UInt64, _ c: UInt64, _ d: UInt64) -> Int {
        Int(truncatingIfNeeded: mix64(a ^ (c &* 0x9E37_79B9_7F4A_7C15), b ^ (d &* 0xC2B2_AE3D_27D4_EB4F)))
    }

    /// The index of the key, or -1.
    @inline(__always) public func find(_ a: UInt64, _ b: UInt64, _ c: UInt64, _ d: UInt64) -> Int32 {
        let mask = slots.count - 1
        var i = WordIndex.hash(a, b, c, d) & mask
        while true {
            let s = slots[i]
            if s.index < 0 { return -1 }
            if s.a == a && s.b == b && s.c == c && s.d == d { return s.index }
            i = (i + 1) & mask
        }
    }

    /// The index of the key, inserting it with index `next` if absent.
    @discardableResult
    public mutating func findOrInsert(_ a: UInt64, _ b: UInt64, _ c: UInt64, _ d: UInt64, next: Int32) -> Int32 {
        if (count + 1) * 2 > slots.count { grow() }
        let mask = slots.count - 1
        var i = WordIndex.hash(a, b, c, d) & mask
        while slots[i].index >= 0 {
            if slots[i].a == a && slots[i].b == b && slots[i].c == c && slots[i].d == d { return slots[i].index }
            i = (i + 1) & mask
        }
        slots[i] = Slot(a: a, b: b, c: c, d: d, index: next)
        count += 1
        return next
    }

    private mutating func grow() {
        let old = slots
        slots = [Slot](repeating: Slot(), count: old.count * 2)
        let mask = slots.count - 1
        for s in old where s.index >= 0 {
            var i = WordIndex.hash(s.a, s.b, s.c, s.d) & mask
            while slots[i].index >= 0 { i = (i + 1) & mask }
            slots[i] = s
        }
    }
}

/// Strings → their index in a caller's array, by open addressing on a hash of their bytes.
struct StringIndex {
    private var slots = [Int32](repeating: -1, count: 16)
    private var count = 0

    static func hash(_ s: String) -> Int { TextHash.of(s) }

    func find(_ s: String, _ strings: [String]) -> Int32? {
        let mask = slots.count - 1
        var i = StringIndex.hash(s) & mask
        while slots[i] >= 0 {
            if strings[Int(slots[i])] == s { return slots[i] }
            i = (i + 1) & mask
        }
        return nil
    }

    /// Adds `s` (not present) as index `id`.
    mutating func insert(_ s: String, _ id: Int32, _ strings: [String]) {
        if (count + 1) * 2 > slots.count {
            slots = [Int32](repeating: -1, count: slots.count * 2)
            let mask = slots.count - 1
            for (k, t) in strings.enumerated() where k != Int(id) {
                var i = StringIndex.hash(t) & mask
                while slots[i] >= 0 { i = (i + 1) & mask }
                slots[i] = Int32(k)
            }
        }
        let mask = slots.count - 1
        var i = StringIndex.hash(s) & mask
        while slots[i] >= 0 { i = (i + 1) & mask }
        slots[i] = id
        count += 1
    }
}

/// A fast hash of a string's UTF-8 bytes (eight at a time) for in-memory tables; not stable
/// across versions, never written anywhere.
public enum TextHash {
    public static func of(_ s: String) -> Int {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        var t = s
        t.withUTF8 { b in
            var i = 0
            while i + 8 <= b.count {
                h = (h ^ UInt64(littleEndian: UnsafeRawPointer(b.baseAddress! + i).loadUnaligned(as: UInt64.self))) &* 0x100_0000_01B3
                h ^= h >> 29
                i += 8
            }
            while i < b.count { h = (h ^ UInt64(b[i])) &* 0x100_0000_01B3; i += 1 }
        }
        return Int(truncatingIfNeeded: mix64(h, UInt64(s.utf8.count)))
    }
}
