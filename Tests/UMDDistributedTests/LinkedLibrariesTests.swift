import Testing
import UMDDistributed

/// zstd is found through pkg-config and linked; the summary names every library.
struct LinkedLibrariesTests {
    @Test func summaryNamesEveryLibrary() {
        let summary = LinkedLibraries.summary
        #expect(LinkedLibraries.zstdVersion.hasPrefix("1."))
        for name in ["zstd", "libpng", "libjpeg", "OpenBLAS"] { #expect(summary.contains(name)) }
    }
}
