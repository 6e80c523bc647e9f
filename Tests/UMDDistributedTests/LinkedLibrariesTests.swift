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

import TestSupport

/// The kernel benchmark runs end to end at the tiny preset (a smoke test: timing numbers
/// are not asserted, since machines here are noisy).
struct KernelBenchSmokeTests {
    @Test func kernelBenchmarkPrintsEveryBlock() throws {
        let result = try MPIJob.runDirect(["bench", "kernels", "--presets", "tiny", "--seconds", "0.01",
                                           "--gemm-size", "128"])
        #expect(result.exitCode == 0, "\(result)")
        for block in ["vision block", "text layer", "fusion image layer", "sgemm", "of sgemm"] {
            #expect(result.stdout.contains(block), "\(result)")
        }
    }
}
