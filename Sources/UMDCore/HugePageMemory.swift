#if canImport(Glibc)
import Glibc
#endif

/// Memory for a run's large arrays — parameters, gradients, AdamW's moments, activations,
/// bf16 weight copies — backed by transparent huge pages (2 MiB) where the kernel offers them.
///
/// Debian's default (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise`) gives huge
/// pages only to memory that asks for them with madvise(MADV_HUGEPAGE), and nothing of umd's
/// asked: every array lived in 4 KiB pages, and the products' operands and C (MBs each) and
/// the passes over the arenas (GBs at base) paid for the TLB misses. Asking cost nothing in
/// resident memory and made a step 4–7 % (small) and 6 % (base) faster on a Zen 5 (session 13).
/// Where huge pages are off (`never`) the advice is ignored; arrays under 2 MiB get ordinary
/// pages. Every pointer from `allocate` goes back through `deallocate` (it is `free`'s).
public enum HugePageMemory {
    /// x86-64's (and most AArch64 kernels') transparent huge page.
    public static let hugePageBytes = 2 << 20

    /// Uninitialised memory for `capacity` (at least 1) values of `T`: 2 MiB-aligned and
    /// advised into huge pages from 2 MiB up, else 64-byte aligned. Stops the process with the
    /// size when the system has no memory left (as `UnsafeMutablePointer.allocate` does).
    public static func allocate<T>(_: T.Type, capacity: Int) -> UnsafeMutablePointer<T> {
        let bytes = max(capacity, 1) * MemoryLayout<T>.stride
        let huge = bytes >= hugePageBytes
        var raw: UnsafeMutableRawPointer? = nil
        guard posix_memalign(&raw, huge ? hugePageBytes : 64, bytes) == 0, let raw else {
            fatalError("out of memory: cannot allocate \(bytes) bytes")
        }
        #if os(Linux)
        if huge { _ = madvise(raw, bytes, MADV_HUGEPAGE) }   // a hint: a kernel without THP ignores it
        #endif
        return raw.bindMemory(to: T.self, capacity: max(capacity, 1))
    }

    /// The kernel's transparent-huge-page setting ("always", "madvise", "never"; nil where the
    /// kernel has none): with "never" the advice does nothing. `selftest` reports it per node.
    public static var kernelSetting: String? {
        guard let text = try? String(contentsOfFile: "/sys/kernel/mm/transparent_hugepage/enabled", encoding: .utf8),
              let open = text.firstIndex(of: "["), let close = text.firstIndex(of: "]"), open < close else { return nil }
        return String(text[text.index(after: open)..<close])
    }

    /// Gives back memory from `allocate`.
    public static func deallocate<T>(_ pointer: UnsafeMutablePointer<T>) { free(pointer) }
}
