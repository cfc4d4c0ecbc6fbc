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

/// An offline capture (pcap or pcapng, any byte order, µs or ns) read through libpcap.
///
/// Owns its `pcap_t` and closes it in `deinit`. The corresponding C calls are
/// `pcap_open_offline_with_tstamp_precision` and `pcap_next_ex`.
public final class PcapReader {
    private let handle: OpaquePointer
    public let path: String
    public let linkType: LinkType
    /// The file's size in bytes, when it is a regular file (not standard input).
    public let fileSize: Int64?

    /// Opens `path` ("-" reads standard input).
    public init(path: String) throws(CaptureError) {
        self.path = path
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        guard let h = pcap_open_offline_with_tstamp_precision(path, UInt32(PCAP_TSTAMP_PRECISION_NANO), &errbuf) else {
            let msg = String(decoding: errbuf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw CaptureError(path: path == "-" ? "<stdin>" : path, reason: PcapReader.explain(msg, path: path))
        }
        handle = h
        linkType = LinkType(rawValue: UInt32(bitPattern: pcap_datalink(h)))
        if path != "-" {
            var st = stat()
            fileSize = stat(path, &st) == 0 ? Int64(st.st_size) : nil
        } else {
            fileSize = nil
        }
    }

    deinit { pcap_close(handle) }

    /// Bytes consumed so far (for progress), when known.
    public var position: Int64? {
        guard fileSize != nil, let f = pcap_file(handle) else { return nil }
        let p = ftello(f)
        return p >= 0 ? Int64(p) : nil
    }

    /// Calls `body(timestamp, wireLength, bytes)` for each packet; the bytes are lent for the
    /// call only. Returns how the read ended.
    public func forEachPacket(_ body: (Double, Int, UnsafeRawBufferPointer) -> Void) -> ReadOutcome {
        var hdr: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        while true {
            let rc = pcap_next_ex(handle, &hdr, &data)
            if rc == 1, let h = hdr, let d = data {
                let caplen = Int(h.pointee.caplen)
                let ts = Double(h.pointee.ts.tv_sec) + Double(h.pointee.ts.tv_usec) * 1e-9
                body(ts, Int(h.pointee.len), UnsafeRawBufferPointer(start: d, count: caplen))
            } else if rc == PCAP_ERROR_BREAK || rc == -2 {
                return .complete
            } else if rc == 0 {
                continue  // live-capture timeout; not for files
            } else {
                return .cutShort(reason: String(cString: pcap_geterr(handle)))
            }
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
