import CPcap
import FlowCore

#if canImport(Glibc)
import Glibc
#endif

/// Why a capture could not be read.
public struct CaptureError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
}

/// How a read ended.
public enum ReadOutcome: Sendable, Equatable {
    case complete
    /// The file ended or broke mid-way; everything before `reason` was delivered.
    case cutShort(reason: String)
}

/// An offline capture (pcap or pcapng, any byte order, µs or ns).
///
/// Classic pcap, and standard input, are opened through libpcap, which validates the file
/// header; the reader owns its `pcap_t` and closes it in `deinit` (the C calls are
/// `pcap_fopen_offline_with_tstamp_precision` and `pcap_next_ex`). The records of a regular
/// pcap 2.4 file are then read in place from flowmap's own read buffer (`PcapRecords`), and
/// libpcap's `pcap_next_ex` takes over from the first record that is not well formed, so
/// errors and adjustments are libpcap's own. `FLOWMAP_READER=libpcap` reads every record
/// through libpcap. A pcapng file is read by flowmap's own block reader, because libpcap
/// refuses pcapng files whose interfaces differ in link type or snap length.
public final class PcapReader {
    private enum Backend {
        case libpcap(OpaquePointer)
        /// Records read in place, then libpcap from where that reader stopped.
        case direct(PcapRecords, OpaquePointer)
        case pcapng(PcapNGReader)
    }
    private let backend: Backend
    public let path: String
    /// The link type of the capture (of its first interface, for pcapng).
    public let linkType: LinkType
    /// The file's size in bytes, when it is a regular file (not standard input).
    public let fileSize: Int64?
    /// The stdio buffer of the capture file: 1 MiB instead of stdio's default of one 4 KiB
    /// block, so that reading costs one read(2) per MiB rather than one per 4 KiB.
    private let ioBuffer: UnsafeMutableRawPointer?
    private static let ioBufferSize = 1 << 20

    /// Opens `path` ("-" reads standard input).
    public init(path: String) throws(CaptureError) {
        self.path = path
        let shown = path == "-" ? "<stdin>" : path
        if path != "-" {
            var st = stat()
            guard stat(path, &st) == 0 else {
                throw CaptureError(path: shown, reason: errno == ENOENT ? "no such file" : PcapReader.errnoText())
            }
            if (st.st_mode & S_IFMT) == S_IFDIR { throw CaptureError(path: shown, reason: "is a directory, not a capture file") }
            fileSize = Int64(st.st_size)
            guard let f = fopen(path, "rb") else { throw CaptureError(path: shown, reason: PcapReader.errnoText()) }
            let buffer = malloc(PcapReader.ioBufferSize)
            if let buffer { setvbuf(f, buffer.assumingMemoryBound(to: CChar.self), _IOFBF, PcapReader.ioBufferSize) }
            var magic: UInt32 = 0
            let n = fread(&magic, 1, 4, f)
            if n == 4 && magic == 0x0A0D_0D0A {
                rewind(f)
                do throws(CaptureError) {
                    let r = try PcapNGReader(file: f, ownsFile: true, buffer: buffer)
                    if let reason = r.readFirstInterface() { throw CaptureError(path: shown, reason: reason) }
                    backend = .pcapng(r)
                    ioBuffer = nil
                    linkType = r.firstLinkType ?? LinkType(rawValue: 1)
                    return
                } catch {
                    throw CaptureError(path: shown, reason: error.reason)
                }
            }
            // libpcap reads the same FILE (and closes it in pcap_close).
            rewind(f)
            var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
            guard let h = pcap_fopen_offline_with_tstamp_precision(f, UInt32(PCAP_TSTAMP_PRECISION_NANO), &errbuf) else {
                fclose(f)
                free(buffer)
                let msg = String(decoding: errbuf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                throw CaptureError(path: shown, reason: PcapReader.explain(msg, path: path))
            }
            ioBuffer = buffer
            linkType = LinkType(rawValue: UInt32(bitPattern: pcap_datalink(h)))
            let libpcapOnly = getenv("FLOWMAP_READER").map { String(cString: $0) == "libpcap" } ?? false
            if !libpcapOnly, (st.st_mode & S_IFMT) == S_IFREG,
               let m = PcapRecords(fd: fileno(f), snapshot: UInt32(bitPattern: pcap_snapshot(h))) {
                backend = .direct(m, h)
            } else {
                backend = .libpcap(h)
            }
        } else {
            fileSize = nil
            ioBuffer = nil
            var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
            guard let h = pcap_open_offline_with_tstamp_precision(path, UInt32(PCAP_TSTAMP_PRECISION_NANO), &errbuf) else {
                let msg = String(decoding: errbuf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                throw CaptureError(path: shown, reason: PcapReader.explain(msg, path: path))
            }
            backend = .libpcap(h)
            linkType = LinkType(rawValue: UInt32(bitPattern: pcap_datalink(h)))
        }
    }

    deinit {
        switch backend {
        case .libpcap(let h), .direct(_, let h): pcap_close(h)
        case .pcapng: break
        }
        free(ioBuffer)  // after the FILE that used it is closed
    }

    /// Bytes consumed so far (for progress), when known.
    public var position: Int64? {
        guard fileSize != nil else { return nil }
        switch backend {
        case .pcapng(let r): return r.position
        case .direct(let m, _) where !m.handedOver: return Int64(m.offset)
        case .libpcap(let h), .direct(_, let h):
            guard let f = pcap_file(h) else { return nil }
            let p = ftello(f)
            return p >= 0 ? Int64(p) : nil
        }
    }

    /// True when this file's records are read in place by flowmap's own reader (a regular
    /// classic pcap file, unless `FLOWMAP_READER=libpcap`).
    public var readsInPlace: Bool {
        if case .direct = backend { return true }
        return false
    }

    /// True when flowmap's own pcapng reader reads this file (interfaces may differ in link type).
    public var isPcapNG: Bool {
        if case .pcapng = backend { return true }
        return false
    }

    /// Packets on interfaces whose link type flowmap cannot decode (pcapng), by link type.
    public var unsupportedLinkTypes: [(linkType: LinkType, packets: Int)] {
        guard case .pcapng(let r) = backend else { return [] }
        return r.unsupported.sorted { $0.key < $1.key }.map { (LinkType(rawValue: $0.key), $0.value) }
    }

    /// Calls `body(linkType, timestamp, wireLength, bytes)` for each packet; the bytes are lent
    /// for the call only. Returns how the read ended.
    public func forEachPacket(_ body: (LinkType, Double, Int, UnsafeRawBufferPointer) -> Void) -> ReadOutcome {
        let handle: OpaquePointer
        let lt = linkType
        switch backend {
        case .pcapng(let r): return r.forEachPacket(body)
        case .libpcap(let h): handle = h
        case .direct(let m, let h):
            m.forEachRecord { ts, wire, bytes in body(lt, ts, wire, bytes) }
            if m.atEnd { return .complete }
            // A record the direct reader does not take as it is: libpcap reads on from there.
            guard let f = pcap_file(h), fseeko(f, off_t(m.offset), SEEK_SET) == 0 else {
                return .cutShort(reason: "cannot seek to offset \(m.offset)")
            }
            m.handedOver = true
            handle = h
        }
        var hdr: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        while true {
            let rc = pcap_next_ex(handle, &hdr, &data)
            if rc == 1, let h = hdr, let d = data {
                let caplen = Int(h.pointee.caplen)
                let ts = Double(h.pointee.ts.tv_sec) + Double(h.pointee.ts.tv_usec) * 1e-9
                body(lt, ts, Int(h.pointee.len), UnsafeRawBufferPointer(start: d, count: caplen))
            } else if rc == PCAP_ERROR_BREAK || rc == -2 {
                return .complete
            } else if rc == 0 {
                continue  // live-capture timeout; not for files
            } else {
                return .cutShort(reason: String(cString: pcap_geterr(handle)))
            }
        }
    }

    private static func errnoText() -> String {
        switch errno {
        case EACCES: return "permission denied"
        case ENOENT: return "no such file"
        default: return String(cString: strerror(errno))
        }
    }

    private static func explain(_ msg: String, path: String) -> String {
        if msg.contains("No such file") { return "no such file" }
        if msg.contains("Permission denied") { return "permission denied" }
        if msg.contains("Is a directory") { return "is a directory, not a capture file" }
        if msg.contains("unknown file format") { return "not a pcap or pcapng capture (unknown file format)" }
        if msg.contains("truncated dump file") || msg.contains("truncated") {
            return "not a capture file, or its header is cut short (\(msg))"
        }
        return msg.isEmpty ? "cannot open capture" : msg
    }
}
