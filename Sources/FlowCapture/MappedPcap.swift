#if canImport(Glibc)
import Glibc
#endif

/// The records of a classic pcap file (format 2.4, µs or ns, either byte order), read in place
/// from a read-only memory mapping: no read(2) copy into a stdio buffer, no second copy into
/// libpcap's packet buffer, and only the bytes that decoding looks at are ever loaded.
///
/// It walks well-formed records only. At the first record it cannot take as it is (a cut-short
/// header or packet, or a capture length beyond the snap length) it stops and says where, and
/// the caller hands the rest of the file to libpcap, which then reports or adjusts exactly as
/// it would have. Consumed pages are released as it goes, so resident memory stays small even
/// for a file of many gigabytes.
final class MappedPcap {
    private let base: UnsafeRawPointer
    private let size: Int
    private let swapped: Bool
    private let nanoseconds: Bool
    /// libpcap's snapshot length for the file (its snap length, adjusted as libpcap adjusts it).
    private let snapshot: UInt32
    /// The offset of the next record.
    private(set) var offset = 24
    /// Set once libpcap reads on from `offset`.
    var handedOver = false
    /// Consumed bytes below this offset have been released.
    private var released = 0
    private static let releaseStep = 32 << 20

    /// Maps `fd` (a regular file of `size` bytes) when its header is a classic pcap 2.4 header;
    /// nil otherwise, or if it cannot be mapped (the caller then reads it through libpcap).
    init?(fd: Int32, size: Int, snapshot: UInt32) {
        guard size >= 24,
              let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else { return nil }
        let raw = UnsafeRawPointer(p)
        let magic = raw.loadUnaligned(as: UInt32.self)
        switch magic {
        case 0xA1B2_C3D4: swapped = false; nanoseconds = false
        case 0xA1B2_3C4D: swapped = false; nanoseconds = true
        case 0xD4C3_B2A1: swapped = true; nanoseconds = false
        case 0x4D3C_B2A1: swapped = true; nanoseconds = true
        default:
            munmap(p, size)
            return nil
        }
        var major = raw.loadUnaligned(fromByteOffset: 4, as: UInt16.self)
        var minor = raw.loadUnaligned(fromByteOffset: 6, as: UInt16.self)
        if swapped { major = major.byteSwapped; minor = minor.byteSwapped }
        // Older versions swap caplen and len in some writers; libpcap knows those quirks.
        guard major == 2 && minor == 4 else {
            munmap(p, size)
            return nil
        }
        base = raw
        self.size = size
        self.snapshot = snapshot
        // No MADV_SEQUENTIAL: it makes the kernel drop the file's pages from the page cache
        // behind the reader, and the next read of the same capture goes to the disk again.
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }

    /// True when every record was read (the file ends exactly after the last one).
    var atEnd: Bool { offset == size }

    /// Calls `body` for each well-formed record from the current offset; stops at the end of
    /// the file or at the first record that needs libpcap (see the type's description).
    /// Timestamps are computed exactly as from libpcap's nanosecond-precision headers.
    @inline(__always)
    func forEachRecord(_ body: (Double, Int, UnsafeRawBufferPointer) -> Void) {
        var off = offset
        let swapped = self.swapped, nanos = nanoseconds, snapshot = self.snapshot
        while off + 16 <= size {
            let h = base + off
            var sec = h.loadUnaligned(as: UInt32.self)
            var frac = h.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
            var caplen = h.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
            var len = h.loadUnaligned(fromByteOffset: 12, as: UInt32.self)
            if swapped {
                sec = sec.byteSwapped; frac = frac.byteSwapped
                caplen = caplen.byteSwapped; len = len.byteSwapped
            }
            let end = off + 16 + Int(caplen)
            guard caplen <= snapshot, end <= size else { break }
            // As libpcap (1.10) reads them: signed 32-bit fields in the host's byte order, but
            // unsigned once byte-swapped; microseconds are scaled to nanoseconds.
            let s64 = swapped ? Int64(sec) : Int64(Int32(bitPattern: sec))
            let f64 = swapped ? Int64(frac) : Int64(Int32(bitPattern: frac))
            let ts = Double(s64) + Double(f64 * (nanos ? 1 : 1000)) * 1e-9
            body(ts, Int(len), UnsafeRawBufferPointer(start: h + 16, count: Int(caplen)))
            off = end
            if off - released >= MappedPcap.releaseStep { release(upTo: off) }
        }
        offset = off
    }

    /// Drops the mapping's pages below `upTo` (page-aligned) from this process; the file's
    /// pages stay in the page cache.
    private func release(upTo: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let to = upTo / page * page
        guard to > released else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base) + released, to - released, MADV_DONTNEED)
        released = to
    }
}
