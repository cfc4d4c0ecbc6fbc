/// One address learned from a DNS answer.
public struct DNSObservation: Sendable, Equatable {
    /// The client that asked (the answer's destination); nil for multicast DNS.
    public var client: IPAddress?
    /// The name the client asked for (first name of the CNAME chain).
    public var name: String
    /// The CNAME chain from the asked name to the final owner, when there was one.
    public var chain: [String]
    public var address: IPAddress
    public var ttl: UInt32
    /// When the answer was first seen.
    public var ts: Double
    /// When the same (client, name, address) answer was last seen, and how many times.
    public var lastSeen: Double
    public var answers: Int

    public init(client: IPAddress?, name: String, chain: [String], address: IPAddress, ttl: UInt32, ts: Double) {
        self.client = client; self.name = name; self.chain = chain; self.address = address; self.ttl = ttl
        self.ts = ts; lastSeen = ts; answers = 1
    }
}

/// Which DNS names resolved to which addresses, per client and globally.
///
/// A flow's responder gets the name that its own client asked for before the flow started
/// (the first name of a CNAME chain, not the CDN's target); otherwise any name seen for the
/// address. Several names for one address are all kept.
public final class DNSNameTable {
    /// What one client resolved for one address: the first name it asked for (by id), and when.
    /// Further names for the same pair are rare; they are only counted in the global table.
    struct Binding {
        var first: Int32
        var learnedAt: Double
    }
    /// Keyed by a 64-bit hash of (client, address): 8 bytes a key instead of 32 (a collision
    /// needs two 64-bit hashes to meet; with a million pairs the chance is about 1 in 10^7).
    private var perClient: [UInt64: Binding] = [:]

    @inline(__always)
    private static func clientKey(_ client: IPAddress, _ address: IPAddress) -> UInt64 {
        FlowUID.mix(client.hi, client.lo, address.hi, address.lo)
    }
    /// Every name seen for an address, sorted (shared interned strings; handed out as is).
    private var global: [IPAddress: [String]] = [:]
    /// Interned names: each distinct name is stored once.
    private var strings: [String] = []
    private var ids: [String: Int32] = [:]
    /// Every distinct (client, name, address) answer, in the order first seen, with its count
    /// and last time: memory grows with distinct answers, not with DNS traffic.
    public private(set) var observations: [DNSObservation] = []
    private var observationIndex: [ObservationKey: Int] = [:]
    struct ObservationKey: Hashable {
        var client: IPAddress?
        var name: Int32
        var address: IPAddress
    }
    public var keepObservations = true

    public init() {}

    public var isEmpty: Bool { global.isEmpty }

    private func intern(_ name: String) -> Int32 {
        if let i = ids[name] { return i }
        let i = Int32(strings.count)
        strings.append(name)
        ids[name] = i
        return i
    }

    func learn(_ o: DNSObservation) {
        let id = intern(o.name)
        if keepObservations {
            let k = ObservationKey(client: o.client, name: id, address: o.address)
            if let i = observationIndex[k] {
                observations[i].lastSeen = max(observations[i].lastSeen, o.ts)
                observations[i].answers += 1
                observations[i].ttl = o.ttl
            } else {
                observationIndex[k] = observations.count
                observations.append(o)
            }
        }
        if let c = o.client {
            let k = DNSNameTable.clientKey(c, o.address)
            if perClient[k] == nil { perClient[k] = Binding(first: id, learnedAt: o.ts) }
        }
        global[o.address, default: []].insertSorted(strings[Int(id)])
    }

    /// The name `client` resolved for `address` at or before `t` (the first it asked for), as
    /// the interned name's id (see `name(_:)`).
    func nameIDAsked(by client: IPAddress, for address: IPAddress, before t: Double) -> Int32? {
        guard !perClient.isEmpty, let b = perClient[DNSNameTable.clientKey(client, address)],
              b.learnedAt <= t else { return nil }
        return b.first
    }

    /// The interned name with this id.
    func name(_ id: Int32) -> String { strings[Int(id)] }

    /// Every name seen for `address`, sorted.
    public func allNames(for address: IPAddress) -> [String] {
        guard !global.isEmpty, let names = global[address] else { return [] }
        return names
    }
}

/// A DNS message parser for responses (RFC 1035): A, AAAA and CNAME answers.
public enum DNSParser {
    /// Parses a DNS response in `b[o..<end]`; returns the (name, address, ttl, chain) answers, or
    /// nil if the message is malformed. Queries and empty responses return [].
    public static func answers(_ b: UnsafeRawBufferPointer, from o: Int, to end0: Int)
        -> [(name: String, chain: [String], address: IPAddress, ttl: UInt32)]? {
        let end = min(end0, b.count)
        guard end - o >= 12 else { return nil }
        let flags = b.u16be(o + 2)
        guard flags & 0x8000 != 0 else { return [] }  // a query
        let qd = Int(b.u16be(o + 4)), an = Int(b.u16be(o + 6))
        if an == 0 { return [] }
        var p = o + 12
        var question = -1
        for _ in 0..<qd {
            guard let next = skipName(b, at: p, end: end), next + 4 <= end else { return nil }
            if question < 0 { question = p }
            p = next + 4
        }
        // First pass without building strings: where each address's owner name is.
        var addrs: [(owner: Int, address: IPAddress, ttl: UInt32)] = []
        var cnames: [(owner: Int, target: Int, end: Int)] = []
        for _ in 0..<an {
            guard let next = skipName(b, at: p, end: end), next + 10 <= end else { return nil }
            let type = b.u16be(next), ttl = b.u32be(next + 4), rdlen = Int(b.u16be(next + 8))
            let rd = next + 10
            guard rd + rdlen <= end else { return nil }
            switch type {
            case 1 where rdlen == 4:
                addrs.append((p, IPAddress(v4: b.u32be(rd)), ttl))
            case 28 where rdlen == 16:
                addrs.append((p, IPAddress(v6hi: b.u64be(rd), v6lo: b.u64be(rd + 8)), ttl))
            case 5:
                cnames.append((p, rd, rd + rdlen))
            default:
                break
            }
            p = rd + rdlen
        }
        if addrs.isEmpty { return [] }
        if cnames.isEmpty {
            // The common answer: addresses owned by the asked name, which is decoded once.
            var asked: String?
            var out: [(name: String, chain: [String], address: IPAddress, ttl: UInt32)] = []
            out.reserveCapacity(addrs.count)
            for a in addrs {
                if question >= 0 && sameName(b, msg: o, a.owner, question, end: end) {
                    if asked == nil { asked = name(b, msg: o, at: question, end: end)?.0 }
                    guard let n = asked else { return nil }
                    out.append((n, [], a.address, a.ttl))
                } else {
                    guard let (n, _) = name(b, msg: o, at: a.owner, end: end) else { return nil }
                    out.append((n, [], a.address, a.ttl))
                }
            }
            return out
        }
        // With CNAMEs: walk each address's owner back up the chain to the asked name.
        var reverse: [String: String] = [:]  // target → owner (lower-cased)
        for c in cnames {
            guard let (owner, _) = name(b, msg: o, at: c.owner, end: end),
                  let (target, _) = name(b, msg: o, at: c.target, end: c.end) else { return nil }
            reverse[target] = owner
        }
        var out: [(name: String, chain: [String], address: IPAddress, ttl: UInt32)] = []
        for a in addrs {
            guard let (owner, _) = name(b, msg: o, at: a.owner, end: end) else { return nil }
            var chain = [owner]
            var cur = owner
            var hops = 0
            while let up = reverse[cur], hops < 16, !chain.contains(up) {
                chain.insert(up, at: 0)
                cur = up
                hops += 1
            }
            out.append((chain.first ?? owner, chain.count > 1 ? chain : [], a.address, a.ttl))
        }
        return out
    }

    /// The offset after a (possibly compressed) name, without decoding it.
    static func skipName(_ b: UnsafeRawBufferPointer, at start: Int, end: Int) -> Int? {
        var p = start
        var labels = 0
        while true {
            guard p < end else { return nil }
            let len = Int(b.u8(p))
            if len == 0 { return p + 1 }
            if len & 0xC0 == 0xC0 { return p + 2 <= end ? p + 2 : nil }
            guard len & 0xC0 == 0 else { return nil }
            p += 1 + len
            labels += 1
            if labels > 127 { return nil }
        }
    }

    /// Whether the names at `x` and `y` are equal (case-insensitively), following compression
    /// pointers; no allocation.
    static func sameName(_ b: UnsafeRawBufferPointer, msg: Int, _ x0: Int, _ y0: Int, end: Int) -> Bool {
        var x = x0, y = y0
        var jumps = 0
        while true {
            // Follow pointers on either side.
            while x < end, b.u8(x) & 0xC0 == 0xC0 {
                guard x + 1 < end, jumps < 64 else { return false }
                x = msg + (Int(b.u8(x) & 0x3F) << 8 | Int(b.u8(x + 1)))
                jumps += 1
            }
            while y < end, b.u8(y) & 0xC0 == 0xC0 {
                guard y + 1 < end, jumps < 64 else { return false }
                y = msg + (Int(b.u8(y) & 0x3F) << 8 | Int(b.u8(y + 1)))
                jumps += 1
            }
            guard x < end, y < end else { return false }
            if x == y { return true }
            let lx = Int(b.u8(x)), ly = Int(b.u8(y))
            guard lx == ly, lx & 0xC0 == 0 else { return false }
            if lx == 0 { return true }
            guard x + 1 + lx <= end, y + 1 + ly <= end else { return false }
            for i in 1...lx {
                var cx = b.u8(x + i), cy = b.u8(y + i)
                if cx >= 65 && cx <= 90 { cx |= 0x20 }
                if cy >= 65 && cy <= 90 { cy |= 0x20 }
                if cx != cy { return false }
            }
            x += 1 + lx
            y += 1 + ly
        }
    }

    /// Reads a possibly compressed name; returns it lower-cased and the offset after it.
    static func name(_ b: UnsafeRawBufferPointer, msg: Int, at start: Int, end: Int) -> (String, Int)? {
        var labels: [UInt8] = []
        var p = start
        var after = -1
        var jumps = 0
        while true {
            guard p < end, p < b.count else { return nil }
            let len = Int(b.u8(p))
            if len == 0 {
                if after < 0 { after = p + 1 }
                break
            }
            if len & 0xC0 == 0xC0 {
                guard p + 1 < end else { return nil }
                let ptr = msg + (Int(len & 0x3F) << 8 | Int(b.u8(p + 1)))
                if after < 0 { after = p + 2 }
                jumps += 1
                guard jumps < 32, ptr < p else { return nil }
                p = ptr
                continue
            }
            guard len & 0xC0 == 0, p + 1 + len <= b.count else { return nil }
            if !labels.isEmpty { labels.append(UInt8(ascii: ".")) }
            for i in 0..<len {
                var c = b.u8(p + 1 + i)
                if c >= 65 && c <= 90 { c |= 0x20 }
                labels.append(c)
            }
            guard labels.count <= 255 else { return nil }
            p += 1 + len
        }
        return (String(decoding: labels, as: UTF8.self), after)
    }
}

extension Array where Element == String {
    /// Inserts `name` keeping the array sorted and free of duplicates.
    mutating func insertSorted(_ name: String) {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if self[mid] < name { lo = mid + 1 } else { hi = mid }
        }
        if lo < count && self[lo] == name { return }
        insert(name, at: lo)
    }
}
