import Testing
import UMDModel

/// OpenBLAS is found through pkg-config and linked.
struct BLASLinkTests {
    @Test func threadCountCanBeSet() {
        let before = BLAS.threadCount
        BLAS.setThreadCount(1)
        #expect(BLAS.threadCount == 1)
        BLAS.setThreadCount(before)
    }
}
