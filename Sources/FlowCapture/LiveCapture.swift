import CPcap
import FlowCore

#if canImport(Glibc)
import Glibc
#endif

/// Live packet capture on one interface (or "any") through libpcap: non-blocking, so that
/// several can be polled together; packets are lent to the caller, never copied.
public final class LiveCapture {
    private let handle: OpaquePointer
    public let interface: String
    public let linkType: LinkType
    /// A descriptor to poll for readability.
    public let fd: Int32

    /// Opens `interface` ("any" for all). `filter` is a BPF expression (pcap-filter(7)).
    public init(interface: String, filter: String?, snaplen: Int = 2048, promiscuous: Bool = false,
                bufferSize: Int = 16 << 20) throws(CaptureError) {
        self.interface = interface
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        func text(_ b: [CChar]) -> String {
            String(decoding: b.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        guard let h = pcap_create(interface, &errbuf) else {
            throw CaptureError(path: interface, reason: text(errbuf))
        }
        pcap_set_snaplen(h, Int32(snaplen))
        pcap_set_promisc(h, promiscuous ? 1 : 0)
        pcap_set_timeout(h, 100)
        pcap_set_buffer_size(h, Int32(bufferSize))
        _ = pcap_set_tstamp_precision(h, Int32(PCAP_TSTAMP_PRECISION_NANO))
        let rc = pcap_activate(h)
        if rc < 0 {
            let reason: String
            switch rc {
            case PCAP_ERROR_NO_SUCH_DEVICE: reason = "no such interface"
            case PCAP_ERROR_PERM_DENIED: reason = "permission denied (needs root or CAP_NET_RAW)"
            case PCAP_ERROR_IFACE_NOT_UP: reason = "interface is down"
            default: reason = String(cString: pcap_geterr(h))
            }
            pcap_close(h)
            throw CaptureError(path: interface, reason: reason)
        }
        if let filter {
            var prog = bpf_program()
            if pcap_compile(h, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) != 0 {
                let reason = "bad BPF filter '\(filter)': \(String(cString: pcap_geterr(h)))"
                pcap_close(h)
                throw CaptureError(path: interface, reason: reason)
            }
            let set = pcap_setfilter(h, &prog)
            pcap_freecode(&prog)
            if set != 0 {
                let reason = "cannot set BPF filter: \(String(cString: pcap_geterr(h)))"
                pcap_close(h)
                throw CaptureError(path: interface, reason: reason)
            }
        }
        if pcap_setnonblock(h, 1, &errbuf) != 0 {
            pcap_close(h)
            throw CaptureError(path: interface, reason: text(errbuf))
        }
        handle = h
        linkType = LinkType(rawValue: UInt32(bitPattern: pcap_datalink(h)))
        fd = pcap_get_selectable_fd(h)
    }

    deinit { pcap_close(handle) }

    private final class Sink {
        var body: (LinkType, Double, Int, UnsafeRawBufferPointer) -> Void = { _, _, _, _ in }
        var linkType = LinkType(rawValue: 1)
    }
    private let sink = Sink()

    /// Hands every packet queued now to `body` (link type, time, wire length, bytes); returns
    /// how many, or throws if the capture failed.
    @discardableResult
    public func readAvailable(_ body: @escaping (LinkType, Double, Int, UnsafeRawBufferPointer) -> Void) throws(CaptureError) -> Int {
        sink.body = body
        sink.linkType = linkType
        defer { sink.body = { _, _, _, _ in } }
        let ctx = Unmanaged.passUnretained(sink).toOpaque()
        let n = pcap_dispatch(handle, -1, { user, hdr, data in
            guard let user, let hdr, let data else { return }
            let s = Unmanaged<Sink>.fromOpaque(user).takeUnretainedValue()
            let ts = Double(hdr.pointee.ts.tv_sec) + Double(hdr.pointee.ts.tv_usec) * 1e-9
            s.body(s.linkType, ts, Int(hdr.pointee.len), UnsafeRawBufferPointer(start: data, count: Int(hdr.pointee.caplen)))
        }, ctx.assumingMemoryBound(to: UInt8.self))
        if n < 0 && n != PCAP_ERROR_BREAK {
            throw CaptureError(path: interface, reason: String(cString: pcap_geterr(handle)))
        }
        return max(0, Int(n))
    }

    /// Packets received, dropped by the kernel (buffer full) and by the interface.
    public var stats: (received: UInt64, dropped: UInt64, interfaceDropped: UInt64) {
        var s = pcap_stat()
        guard pcap_stats(handle, &s) == 0 else { return (0, 0, 0) }
        return (UInt64(s.ps_recv), UInt64(s.ps_drop), UInt64(s.ps_ifdrop))
    }
}
