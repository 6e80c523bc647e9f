import Testing
@testable import UMDModel

/// OpenBLAS is found through pkg-config and linked.
struct BLASLinkTests {
    @Test func threadCountCanBeSet() {
        let before = BLAS.threadCount
        BLAS.setThreadCount(1)
        #expect(BLAS.threadCount == 1)
        BLAS.setThreadCount(before)
    }
}

/// Issue 24: `selftest` checks on every rank that the BLAS computes correctly.
struct BLASCheckTests {
    @Test func theLoadedBLASPassesAndBrokenProductsAreCaught() {
        #expect(BLASCheck.problems().isEmpty, "\(BLASCheck.problems())")
        #expect(!BLASCheck.kernelFamily.isEmpty && BLASCheck.kernelFamily != "unknown")
        // One element off by 0.05 (inputs are in [-1, 1); the bound is at most ~0.02 at k = 768): caught.
        let slightlyWrong: BLASCheck.Product = { tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc in
            BLASCheck.openBLAS(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, &c, ldc)
            c[ldc * (m / 2) + n / 2] += 0.05
        }
        #expect(BLASCheck.problems(slightlyWrong).count == BLASCheck.cases.count)
        // A kernel that writes into C's leading-dimension padding: caught.
        let spills: BLASCheck.Product = { tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc in
            BLASCheck.openBLAS(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, &c, ldc)
            if ldc > n { c[n] = 42 }
        }
        #expect(BLASCheck.problems(spills).contains { $0.contains("wrote outside C") })
        // A product that ignores beta (overwrites instead of accumulating): caught.
        let ignoresBeta: BLASCheck.Product = { tA, tB, m, n, k, alpha, a, lda, b, ldb, _, c, ldc in
            BLASCheck.openBLAS(tA, tB, m, n, k, alpha, a, lda, b, ldb, 0, &c, ldc)
        }
        #expect(BLASCheck.problems(ignoresBeta).count == BLASCheck.cases.filter { $0.5 }.count)
    }
}
