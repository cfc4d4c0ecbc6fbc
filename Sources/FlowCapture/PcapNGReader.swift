import FlowCore

#if canImport(Glibc)
import Glibc
#endif

/// A pcapng reader (draft-ietf-opsawg-pcapng) for files whose interfaces have different link
/// types or snap lengths, or whose sections differ in byte order — which libpcap's offline
/// reader refuses. Reads blocks into one reusable buffer; lends each packet's bytes.
final class PcapNGReader {
    struct Interface {
        var linkType: LinkType
        var snaplen: UInt32
        /// Seconds per timestamp unit (if_tsresol; 1e-6 by default).
        var unit: Double
        /// if_tsoffset, seconds.
        var offset: Double
    }

    private let file: UnsafeMutablePointer<FILE>
    private let ownsFile: Bool
    /// The FILE's stdio buffer, freed after the FILE is closed (when the reader owns both).
    private let stdioBuffer: UnsafeMutableRawPointer?
    private var bigEndian = false
    private var interfaces: [Interface] = []
    private var buffer: UnsafeMutableRawPointer
    private var capacity: Int
    private var lastTimestamp = 0.0
    /// Packets on interfaces whose link type flowmap cannot decode, by link type.
    private(set) var unsupported: [UInt32: Int] = [:]
    private(set) var firstLinkType: LinkType?

    static let maxBlock = 256 << 20

    /// Opens `file` (positioned at the start of the first section) and reads the first
    /// section header; throws the reason if it is not a valid one.
    init(file: UnsafeMutablePointer<FILE>, ownsFile: Bool, buffer stdioBuffer: UnsafeMutableRawPointer? = nil) throws(CaptureError) {
        self.file = file
        self.ownsFile = ownsFile
        self.stdioBuffer = stdioBuffer
        capacity = 1 << 16
        buffer = .allocate(byteCount: capacity, alignment: 8)
        var type: UInt32 = 0
        guard readRaw(&type, 4), type == 0x0A0D_0D0A else {
            throw CaptureError(path: "", reason: "not a pcapng section header")
        }
        if let reason = readSectionHeader() { throw CaptureError(path: "", reason: reason) }
        // The first interface usually follows at once: learn its link type for messages.
        firstLinkType = nil
    }

    deinit {
        buffer.deallocate()
        if ownsFile {
            fclose(file)
            free(stdioBuffer)
        }
    }

    var position: Int64 { Int64(ftello(file)) }

    private func readRaw(_ p: UnsafeMutableRawPointer, _ n: Int) -> Bool { fread(p, 1, n, file) == n }

    private func readRaw<T>(_ v: inout T, _ n: Int) -> Bool {
        withUnsafeMutableBytes(of: &v) { readRaw($0.baseAddress!, n) }
    }

    @inline(__always)
    private func u32(_ raw: UInt32) -> UInt32 { bigEndian ? UInt32(bigEndian: raw) : UInt32(littleEndian: raw) }
    @inline(__always)
    private func u16(_ raw: UInt16) -> UInt16 { bigEndian ? UInt16(bigEndian: raw) : UInt16(littleEndian: raw) }

    private func ensure(_ n: Int) {
        if n <= capacity { return }
        var c = capacity
        while c < n { c *= 2 }
        buffer.deallocate()
        buffer = .allocate(byteCount: c, alignment: 8)
        capacity = c
    }

    /// Reads the rest of a section header block (its type was read). Returns an error reason.
    private func readSectionHeader() -> String? {
        var lenRaw: UInt32 = 0, magic: UInt32 = 0
        guard readRaw(&lenRaw, 4), readRaw(&magic, 4) else { return "section header cut short" }
        if magic == 0x1A2B_3C4D { bigEndian = false }  // as written on a little-endian host
        else if magic == 0x4D3C_2B1A { bigEndian = true }
        else { return "bad pcapng byte-order magic" }
        let len = Int(u32(lenRaw))
        // libpcap's sanity limit for a section header (BT_SHB_INSANE_MAX) is 1 MiB.
        guard len >= 28, len % 4 == 0, len <= 1 << 20 else {
            return "section header block has invalid length \(len)"
        }
        let rest = len - 12
        ensure(rest)
        guard readRaw(buffer, rest) else { return "section header cut short" }
        let b = UnsafeRawBufferPointer(start: buffer, count: rest)
        let major = bigEndian ? b.u16be(0) : b.u16le(0), minor = bigEndian ? b.u16be(2) : b.u16le(2)
        guard major == 1, minor == 0 || minor == 2 else { return "unsupported pcapng version \(major).\(minor)" }
        let trailer = bigEndian ? b.u32be(rest - 4) : b.u32le(rest - 4)
        guard Int(trailer) == len else { return "section header block lengths do not match" }
        interfaces.removeAll()
        return nil
    }

    private func readInterface(_ b: UnsafeRawBufferPointer) -> String? {
        guard b.count >= 8 else { return "interface description block too short" }
        let lt = bigEndian ? b.u16be(0) : b.u16le(0)
        let snap = bigEndian ? b.u32be(4) : b.u32le(4)
        var iface = Interface(linkType: LinkType(rawValue: UInt32(lt)), snaplen: snap, unit: 1e-6, offset: 0)
        // Options: code, length, value padded to 4.
        var o = 8
        var sawResolution = false, sawOffset = false
        while o + 4 <= b.count {
            let code = bigEndian ? b.u16be(o) : b.u16le(o)
            let len = Int(bigEndian ? b.u16be(o + 2) : b.u16le(o + 2))
            if code == 0 {
                guard len == 0 else { return "interface opt_endofopt option has length \(len)" }
                break
            }
            guard o + 4 + len <= b.count else { return "interface option overruns its block" }
            if code == 9 {  // if_tsresol
                guard !sawResolution else { return "interface has more than one if_tsresol option" }
                sawResolution = true
                guard len == 1 else { return "if_tsresol option has length \(len)" }
                let v = b.u8(o + 4)
                let exp = Int(v & 0x7F)
                guard (v & 0x80 == 0 && exp <= 18) || (v & 0x80 != 0 && exp <= 63) else {
                    return "if_tsresol resolution is too high"
                }
                iface.unit = v & 0x80 == 0 ? pow10(-exp) : 1.0 / Double(UInt64(1) << UInt64(exp))
            } else if code == 14 {  // if_tsoffset
                guard !sawOffset else { return "interface has more than one if_tsoffset option" }
                sawOffset = true
                guard len == 8 else { return "if_tsoffset option has length \(len)" }
                let raw = bigEndian ? b.u64be(o + 4) : UInt64(b.u32le(o + 4)) | UInt64(b.u32le(o + 8)) << 32
                iface.offset = Double(Int64(bitPattern: raw))
            }
            o += 4 + ((len + 3) & ~3)
        }
        if firstLinkType == nil { firstLinkType = iface.linkType }
        interfaces.append(iface)
        return nil
    }

    private func pow10(_ e: Int) -> Double {
        var v = 1.0
        for _ in 0..<(-e) { v /= 10 }
        return v
    }

    /// Reads up to and including the first interface description, so that the file's first
    /// link type is known before any packet (as libpcap requires it at open).
    func readFirstInterface() -> String? {
        while firstLinkType == nil {
            switch nextBlock(deliver: nil) {
            case .end: return nil  // a valid, empty capture: sections but no interfaces or packets
            case .error(let r): return r
            case .packetBeforeInterface: return "the capture file has a packet block before any Interface Description Blocks"
            case .ok: continue
            }
        }
        return nil
    }

    enum Step { case ok, end, error(String), packetBeforeInterface }

    /// Calls `body(linkType, timestamp, wireLength, bytes)` for each packet.
    func forEachPacket(_ body: (LinkType, Double, Int, UnsafeRawBufferPointer) -> Void) -> ReadOutcome {
        withoutActuallyEscaping(body) { deliver in
            while true {
                switch nextBlock(deliver: deliver) {
                case .ok: continue
                case .end: return .complete
                case .error(let r): return .cutShort(reason: r)
                case .packetBeforeInterface: return .cutShort(reason: "packet block for an undeclared interface")
                }
            }
        }
    }

    private var pendingPackets: [(LinkType, Double, Int, [UInt8])] = []

    private func nextBlock(deliver: ((LinkType, Double, Int, UnsafeRawBufferPointer) -> Void)?) -> Step {
        // Packets read while looking for the first interface are delivered first.
        if let deliver, !pendingPackets.isEmpty {
            for (lt, t, w, bytes) in pendingPackets { bytes.withUnsafeBytes { deliver(lt, t, w, $0) } }
            pendingPackets.removeAll()
        }
        var head: (UInt32, UInt32) = (0, 0)
        let n = withUnsafeMutableBytes(of: &head) { fread($0.baseAddress!, 1, 8, file) }
        if n == 0 { return ferror(file) != 0 ? .error("read error") : .end }
        guard n == 8 else { return .error("truncated block header") }
        let rawType = head.0
        if rawType == 0x0A0D_0D0A {
            // A new section: its own byte order and interfaces. Re-read the length field.
            _ = fseeko(file, -4, SEEK_CUR)
            if let r = readSectionHeader() { return .error(r) }
            return .ok
        }
        let type = u32(rawType)
        let len = Int(u32(head.1))
        guard len >= 12, len % 4 == 0 else { return .error("block has invalid length \(len)") }
        guard len <= PcapNGReader.maxBlock else { return .error("block of \(len) bytes is too large") }
        let rest = len - 8
        ensure(rest)
        guard readRaw(buffer, rest) else { return .error("truncated block") }
        let all = UnsafeRawBufferPointer(start: buffer, count: rest)
        let trailer = bigEndian ? all.u32be(rest - 4) : all.u32le(rest - 4)
        guard Int(trailer) == len else { return .error("block total length in header and trailer don't match") }
        let b = UnsafeRawBufferPointer(rebasing: all[0..<(rest - 4)])
        switch type {
        case 1:
            if let r = readInterface(b) { return .error(r) }
        case 6, 2:  // enhanced packet block; obsolete packet block
            guard b.count >= 20 else { return .error("packet block too short") }
            let iface = type == 6 ? Int(bigEndian ? b.u32be(0) : b.u32le(0)) : Int(bigEndian ? b.u16be(0) : b.u16le(0))
            guard iface < interfaces.count else {
                return firstLinkType == nil ? .packetBeforeInterface : .error("packet for undeclared interface \(iface)")
            }
            let hi = UInt64(bigEndian ? b.u32be(4) : b.u32le(4)), lo = UInt64(bigEndian ? b.u32be(8) : b.u32le(8))
            let cap = Int(bigEndian ? b.u32be(12) : b.u32le(12))
            let wire = Int(bigEndian ? b.u32be(16) : b.u32le(16))
            guard 20 + cap <= b.count else { return .error("packet data overruns its block") }
            let i = interfaces[iface]
            let t = Double(hi << 32 | lo) * i.unit + i.offset
            lastTimestamp = t
            emit(i.linkType, t, max(wire, cap), UnsafeRawBufferPointer(rebasing: b[20..<(20 + cap)]), deliver)
        case 3:  // simple packet block: interface 0, no timestamp
            guard b.count >= 4 else { return .error("simple packet block too short") }
            guard let i = interfaces.first else {
                return firstLinkType == nil ? .packetBeforeInterface : .error("simple packet without an interface")
            }
            let wire = Int(bigEndian ? b.u32be(0) : b.u32le(0))
            var cap = min(wire, b.count - 4)
            if i.snaplen > 0 { cap = min(cap, Int(i.snaplen)) }
            emit(i.linkType, lastTimestamp, wire, UnsafeRawBufferPointer(rebasing: b[4..<(4 + cap)]), deliver)
        default:
            break  // name resolution, statistics, custom and unknown blocks
        }
        return .ok
    }

    private func emit(_ lt: LinkType, _ t: Double, _ wire: Int, _ bytes: UnsafeRawBufferPointer,
                      _ deliver: ((LinkType, Double, Int, UnsafeRawBufferPointer) -> Void)?) {
        if !lt.isSupported { unsupported[lt.rawValue, default: 0] += 1 }
        if let deliver { deliver(lt, t, wire, bytes) } else { pendingPackets.append((lt, t, wire, Array(bytes))) }
    }
}
