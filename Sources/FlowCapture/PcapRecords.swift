#if canImport(Glibc)
import Glibc
#endif

/// The records of a classic pcap file (format 2.4, µs or ns, either byte order), read with
/// pread(2) into one buffer of a few hundred KiB and handed out in place from it: one copy per
/// byte (the kernel's, into a buffer that stays in the core's cache), no second copy into
/// libpcap's packet buffer, and no page faults or TLB misses on a mapping of the file.
///
/// It walks well-formed records only. At the first record it cannot take as it is (a cut-short
/// header or packet, a capture length beyond the snap length or beyond `largestInPlace`), or
/// at a read error, it stops and says where, and the caller hands the rest of the file to
/// libpcap, which then reports or adjusts exactly as it would have.
final class PcapRecords {
    private let fd: Int32
    private let swapped: Bool
    private let nanoseconds: Bool
    /// libpcap's snapshot length for the file (its snap length, adjusted as libpcap adjusts it).
    private let snapshot: UInt32
    /// The file offset of the next record.
    private(set) var offset = 24
    /// Set once libpcap reads on from `offset`.
    var handedOver = false
    /// True once every record was read (the file ends exactly after the last one).
    private(set) var atEnd = false
    private var buffer: UnsafeMutableRawPointer
    private var capacity: Int
    /// Longer records go to libpcap, which refuses those over its maximum for the link type
    /// (262,144 bytes for most) and cuts the rest to the snap length.
    static let largestInPlace: UInt32 = 262_144
    /// The bytes must still be in the core's L2 cache when the decoder reaches them (alongside
    /// the event batches it writes): measured here, read(2) costs the same from 128 KiB up, and
    /// walking the records slows from 512 KiB.
    static let bufferSize = 256 << 10

    /// Reads `fd` (a regular file) when its header is a classic pcap 2.4 header; nil otherwise
    /// (the caller then reads it through libpcap).
    init?(fd: Int32, snapshot: UInt32) {
        var header = (UInt32(0), UInt16(0), UInt16(0))
        let n = withUnsafeMutableBytes(of: &header) { pread(fd, $0.baseAddress, 8, 0) }
        guard n == 8 else { return nil }
        switch header.0 {
        case 0xA1B2_C3D4: swapped = false; nanoseconds = false
        case 0xA1B2_3C4D: swapped = false; nanoseconds = true
        case 0xD4C3_B2A1: swapped = true; nanoseconds = false
        case 0x4D3C_B2A1: swapped = true; nanoseconds = true
        default: return nil
        }
        let major = swapped ? header.1.byteSwapped : header.1
        let minor = swapped ? header.2.byteSwapped : header.2
        // Older versions swap caplen and len in some writers; libpcap knows those quirks.
        guard major == 2 && minor == 4 else { return nil }
        self.fd = fd
        self.snapshot = snapshot
        capacity = PcapRecords.bufferSize
        buffer = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit { buffer.deallocate() }

    /// Calls `body` for each well-formed record from the current offset; stops at the end of
    /// the file or at the first record that needs libpcap (see the type's description).
    /// Timestamps are computed exactly as from libpcap's nanosecond-precision headers.
    @inline(__always)
    func forEachRecord(_ body: (Double, Int, UnsafeRawBufferPointer) -> Void) {
        let swapped = self.swapped, nanos = nanoseconds, snapshot = self.snapshot
        var have = 0  // bytes in the buffer, from file offset `offset`
        var eof = false, failed = false
        while true {
            // Fill the buffer behind what is left of the last read.
            while !eof && have < capacity {
                let n = pread(fd, buffer + have, capacity - have, off_t(offset + have))
                if n > 0 {
                    have += n
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    // End of file, or a read error: libpcap, reading on from here, reports it.
                    eof = true
                    failed = n < 0
                }
            }
            var pos = 0
            var stop = false
            var needed = 0
            while pos + 16 <= have {
                let h = UnsafeRawPointer(buffer + pos)
                var sec = h.loadUnaligned(as: UInt32.self)
                var frac = h.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
                var caplen = h.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
                var len = h.loadUnaligned(fromByteOffset: 12, as: UInt32.self)
                if swapped {
                    sec = sec.byteSwapped; frac = frac.byteSwapped
                    caplen = caplen.byteSwapped; len = len.byteSwapped
                }
                if caplen > snapshot || caplen > PcapRecords.largestInPlace { stop = true; break }
                let end = pos + 16 + Int(caplen)
                if end > have {
                    needed = end - pos  // cut by the buffer: read on
                    break
                }
                // As libpcap (1.10) reads them: signed 32-bit fields in the host's byte order,
                // but unsigned once byte-swapped; microseconds are scaled to nanoseconds.
                let s64 = swapped ? Int64(sec) : Int64(Int32(bitPattern: sec))
                let f64 = swapped ? Int64(frac) : Int64(Int32(bitPattern: frac))
                let ts = Double(s64) + Double(f64 * (nanos ? 1 : 1000)) * 1e-9
                body(ts, Int(len), UnsafeRawBufferPointer(start: h + 16, count: Int(caplen)))
                pos = end
            }
            offset += pos
            have -= pos
            if stop { return }
            if eof {
                atEnd = have == 0 && !failed
                return
            }
            if have > 0 && pos > 0 { buffer.copyMemory(from: buffer + pos, byteCount: have) }
            // A record larger than the buffer (up to the snap length) gets a larger buffer.
            if needed > capacity { grow(to: needed, keeping: have) }
        }
    }

    private func grow(to n: Int, keeping have: Int) {
        let bigger = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
        bigger.copyMemory(from: buffer, byteCount: have)
        buffer.deallocate()
        buffer = bigger
        capacity = n
    }
}
