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
    /// The id of `name` in the `DNSNameTable` that learned it, or -1 before that.
    public var nameID: Int32 = -1

    public init(client: IPAddress?, name: String, chain: [String], address: IPAddress, ttl: UInt32, ts: Double) {
        self.client = client; self.name = name; self.chain = chain; self.address = address; self.ttl = ttl
        self.ts = ts; lastSeen = ts; answers = 1
    }
}

/// The names seen in DNS answers: each distinct name once (its id is what flow state and the
/// flow table hold), and every distinct (client, name, address) answer.
///
/// It belongs to the decoding side: the analyzer interns each answer's name here as it decodes
/// it, and ended flows' ids become strings here when their records are built. The flow table
/// itself keeps only ids (`DNSBindings`), so with two threads the table thread never touches
/// a string.
public final class DNSNameTable {
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
    /// Every name seen for each address: ids in the order first seen (the order in which the
    /// flow table learns them, so the table's count of names is a prefix of this list), and
    /// the same names as sorted strings, shared with the records that list them.
    private struct AddressNames {
        var ids: [Int32] = []
        var sorted: [String] = []
    }
    private var addressIndex: [IPAddress: Int] = [:]
    private var addressNames: [AddressNames] = []
    private var addressPairs: Set<UInt64> = []

    public init() {}

    private func intern(_ name: String) -> Int32 {
        if let i = ids[name] { return i }
        let i = Int32(strings.count)
        strings.append(name)
        ids[name] = i
        return i
    }

    /// Interns the observation's name (setting its `nameID`) and records the answer.
    public func learn(_ o: inout DNSObservation) {
        let id = intern(o.name)
        o.nameID = id
        if addressPairs.insert(DNSBindings.pairKey(o.address, id)).inserted {
            let i: Int
            if let known = addressIndex[o.address] {
                i = known
            } else {
                i = addressNames.count
                addressIndex[o.address] = i
                addressNames.append(AddressNames())
            }
            addressNames[i].ids.append(id)
            addressNames[i].sorted.insertSorted(strings[Int(id)])
        }
        guard keepObservations else { return }
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

    /// Records an answer (the `inout` variant also sets the observation's `nameID`).
    public func learn(_ o: DNSObservation) {
        var o = o
        learn(&o)
    }

    /// The interned name with this id.
    public func name(_ id: Int32) -> String { strings[Int(id)] }

    /// The first `count` names learned for `address`, sorted. Usually all of them (decoding
    /// runs at most a few batches ahead of the table), and then the shared sorted list.
    func sortedNames(for address: IPAddress, count: Int32) -> [String] {
        guard let i = addressIndex[address] else { return [] }
        if addressNames[i].ids.count == Int(count) { return addressNames[i].sorted }
        return addressNames[i].ids.prefix(Int(count)).map { strings[Int($0)] }.sorted()
    }
}

/// What the flow table knows of DNS, as name ids: which name each client resolved for each
/// address (the first it asked for, and when), and every name seen for each address. Two
/// open-addressing tables of plain values with a cheap hash: no strings, no reference
/// counting, one or two cache lines a lookup.
struct DNSBindings {
    /// (client, address) → the first name the client asked for. `key` is a 64-bit hash of the
    /// pair (0 = empty): 8 bytes instead of 32 (a collision needs two 64-bit hashes to meet;
    /// with a million pairs the chance is about 1 in 10^7).
    private struct ClientEntry {
        var key: UInt64 = 0
        var first: Int32 = -1
        var learnedAt: Double = 0
    }
    /// address → the first name seen for it, and how many distinct names.
    private struct AddressEntry {
        var address = IPAddress.zeroV4
        var first: Int32 = -1  // -1 = empty
        var count: Int32 = 0
    }
    private var clients = [ClientEntry](repeating: ClientEntry(), count: 1024)
    private var clientCount = 0
    private var addresses = [AddressEntry](repeating: AddressEntry(), count: 1024)
    private var addressCount = 0
    /// Every (address, name) pair seen, as 64-bit hashes (0 = empty).
    private var pairs = [UInt64](repeating: 0, count: 1024)
    private var pairCount = 0

    /// The key of an (address, name id) pair; the decoding side's `DNSNameTable` uses the same
    /// keys, so both count the same distinct names.
    @inline(__always)
    static func pairKey(_ address: IPAddress, _ id: Int32) -> UInt64 {
        let k = FlowUID.mix(address.hi, address.lo, UInt64(UInt32(bitPattern: id)))
        return k == 0 ? 1 : k
    }

    var isEmpty: Bool { addressCount == 0 }

    @inline(__always)
    private static func clientKey(_ client: IPAddress, _ address: IPAddress) -> UInt64 {
        let k = FlowUID.mix(client.hi, client.lo, address.hi, address.lo)
        return k == 0 ? 1 : k
    }

    @inline(__always)
    private static func spread(_ x0: UInt64) -> Int {
        var x = x0
        x ^= x >> 31
        x = x &* 0xBF58_476D_1CE4_E5B9
        x ^= x >> 29
        return Int(truncatingIfNeeded: x)
    }

    @inline(__always)
    private static func addressHash(_ a: IPAddress) -> Int {
        spread((a.lo &* 0x9E37_79B9_7F4A_7C15) ^ (a.hi &* 0xC2B2_AE3D_27D4_EB4F))
    }

    /// Learns an answer whose name has been interned (`nameID` set); others are ignored.
    mutating func learn(_ o: DNSObservation) {
        let id = o.nameID
        guard id >= 0 else { return }
        if let c = o.client {
            let k = DNSBindings.clientKey(c, o.address)
            var i = clientSlot(k)
            if clients[i].key == 0 {
                if (clientCount + 1) * 2 > clients.count {
                    growClients()
                    i = clientSlot(k)
                }
                clients[i] = ClientEntry(key: k, first: id, learnedAt: o.ts)
                clientCount += 1
            }
        }
        var j = addressSlot(o.address)
        if addresses[j].first < 0 {
            if (addressCount + 1) * 2 > addresses.count {
                growAddresses()
                j = addressSlot(o.address)
            }
            addresses[j] = AddressEntry(address: o.address, first: id, count: 0)
            addressCount += 1
        }
        if insertPair(DNSBindings.pairKey(o.address, id)) { addresses[j].count += 1 }
    }

    /// Adds a pair key; false if it was there.
    private mutating func insertPair(_ k: UInt64) -> Bool {
        var mask = pairs.count - 1
        var i = DNSBindings.spread(k) & mask
        while pairs[i] != 0 {
            if pairs[i] == k { return false }
            i = (i + 1) & mask
        }
        if (pairCount + 1) * 2 > pairs.count {
            let old = pairs
            pairs = [UInt64](repeating: 0, count: old.count * 2)
            mask = pairs.count - 1
            for e in old where e != 0 {
                var j = DNSBindings.spread(e) & mask
                while pairs[j] != 0 { j = (j + 1) & mask }
                pairs[j] = e
            }
            i = DNSBindings.spread(k) & mask
            while pairs[i] != 0 { i = (i + 1) & mask }
        }
        pairs[i] = k
        pairCount += 1
        return true
    }

    /// The name `client` resolved for `address` at or before `t` (the first it asked for).
    @inline(__always)
    func nameAsked(by client: IPAddress, for address: IPAddress, before t: Double) -> Int32? {
        guard clientCount > 0 else { return nil }
        let e = clients[clientSlot(DNSBindings.clientKey(client, address))]
        return e.key != 0 && e.learnedAt <= t ? e.first : nil
    }

    /// The first name id seen for `address` (-1: none) and how many distinct names it has.
    @inline(__always)
    func names(for address: IPAddress) -> (first: Int32, count: Int32) {
        guard addressCount > 0 else { return (-1, 0) }
        let e = addresses[addressSlot(address)]
        return e.first >= 0 ? (e.first, e.count) : (-1, 0)
    }

    /// Where `k` is, or the empty entry where it would go.
    @inline(__always)
    private func clientSlot(_ k: UInt64) -> Int {
        let mask = clients.count - 1
        var i = DNSBindings.spread(k) & mask
        while clients[i].key != 0 && clients[i].key != k { i = (i + 1) & mask }
        return i
    }

    @inline(__always)
    private func addressSlot(_ a: IPAddress) -> Int {
        let mask = addresses.count - 1
        var i = DNSBindings.addressHash(a) & mask
        while addresses[i].first >= 0 && addresses[i].address != a { i = (i + 1) & mask }
        return i
    }

    private mutating func growClients() {
        let old = clients
        clients = [ClientEntry](repeating: ClientEntry(), count: old.count * 2)
        for e in old where e.key != 0 { clients[clientSlot(e.key)] = e }
    }

    private mutating func growAddresses() {
        let old = addresses
        addresses = [AddressEntry](repeating: AddressEntry(), count: old.count * 2)
        for e in old where e.first >= 0 { addresses[addressSlot(e.address)] = e }
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

    /// Whether `answers(b, from: o, to: end)` would parse (return non-nil), without building
    /// any name: for output that learns no names but still counts malformed answers.
    public static func isWellFormed(_ b: UnsafeRawBufferPointer, from o: Int, to end0: Int) -> Bool {
        let end = min(end0, b.count)
        guard end - o >= 12 else { return false }
        let flags = b.u16be(o + 2)
        guard flags & 0x8000 != 0 else { return true }
        let qd = Int(b.u16be(o + 4)), an = Int(b.u16be(o + 6))
        if an == 0 { return true }
        var p = o + 12
        var question = -1
        for _ in 0..<qd {
            guard let next = skipName(b, at: p, end: end), next + 4 <= end else { return false }
            if question < 0 { question = p }
            p = next + 4
        }
        // The same first pass as `answers`, remembering only what kinds of records there are.
        let first = p
        var hasAddress = false, hasCNAME = false
        for _ in 0..<an {
            guard let next = skipName(b, at: p, end: end), next + 10 <= end else { return false }
            let type = b.u16be(next), rdlen = Int(b.u16be(next + 8))
            let rd = next + 10
            guard rd + rdlen <= end else { return false }
            if (type == 1 && rdlen == 4) || (type == 28 && rdlen == 16) { hasAddress = true }
            if type == 5 { hasCNAME = true }
            p = rd + rdlen
        }
        if !hasAddress { return true }
        // Every name that `answers` would decode must decode.
        p = first
        for _ in 0..<an {
            guard let next = skipName(b, at: p, end: end) else { return false }
            let type = b.u16be(next), rdlen = Int(b.u16be(next + 8))
            let rd = next + 10
            if (type == 1 && rdlen == 4) || (type == 28 && rdlen == 16) {
                let at = !hasCNAME && question >= 0 && sameName(b, msg: o, p, question, end: end) ? question : p
                guard nameIsValid(b, msg: o, at: at, end: end) else { return false }
            } else if type == 5 && hasCNAME {
                guard nameIsValid(b, msg: o, at: p, end: end), nameIsValid(b, msg: o, at: rd, end: rd + rdlen) else {
                    return false
                }
            }
            p = rd + rdlen
        }
        return true
    }

    /// Whether `name(b, msg:, at:, end:)` would decode a name (the same checks, no string).
    static func nameIsValid(_ b: UnsafeRawBufferPointer, msg: Int, at start: Int, end: Int) -> Bool {
        var length = 0
        var p = start
        var jumps = 0
        while true {
            guard p < end, p < b.count else { return false }
            let len = Int(b.u8(p))
            if len == 0 { return true }
            if len & 0xC0 == 0xC0 {
                guard p + 1 < end else { return false }
                let ptr = msg + (Int(len & 0x3F) << 8 | Int(b.u8(p + 1)))
                jumps += 1
                guard jumps < 32, ptr < p else { return false }
                p = ptr
                continue
            }
            guard len & 0xC0 == 0, p + 1 + len <= b.count else { return false }
            length += (length > 0 ? 1 : 0) + len
            guard length <= 255 else { return false }
            p += 1 + len
        }
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
