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

/// The oneDNN backend (issue 22) computes what sgemm computes: within the same error bound
/// as `BLASCheck` (fp32), and bf16 products equal to the emulation's up to summation order.
struct OneDNNBackendTests {
    static func product(_ backend: OneDNNBackend) -> BLASCheck.Product { BLASCheck.product(of: backend) }

    @Test func fp32ProductsStayWithinTheErrorBound() throws {
        let backend = try OneDNNBackend()
        #expect(BLASCheck.problems(Self.product(backend)).isEmpty, "\(BLASCheck.problems(Self.product(backend)))")
        #expect(!OneDNNBackend.instructionSet.isEmpty && OneDNNBackend.instructionSet != "unknown")
    }

    @Test(.enabled(if: OneDNNBackend.hasBFloat16, "the CPU has no AVX512-BF16 or AMX"))
    func bf16ProductsMatchTheEmulation() throws {
        let backend = try OneDNNBackend(bf16: true)
        let (m, n, k) = (37, 50, 300)
        var state: UInt64 = 9
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)
        }
        let a = (0..<(m * k)).map { _ in next() }, b = (0..<(n * k)).map { _ in next() }
        var hardware = [Float](repeating: 0, count: m * n), emulated = hardware, exact = hardware
        Self.product(backend)(false, true, m, n, k, 1, a, k, b, k, 0, &hardware, n)
        Self.product(try OneDNNBackend())(false, true, m, n, k, 1, a, k, b, k, 0, &exact, n)
        Matmul.threadBackend = BFloat16Products.backend
        Matmul.nt(m: m, n: n, k: k, a, lda: k, b, ldb: k, &emulated, ldc: n, accumulate: false)
        Matmul.threadBackend = nil
        // Same rounded inputs, fp32 sums in another order: far closer to each other than to fp32.
        let toEmulation = zip(hardware, emulated).map { abs($0 - $1) }.max()!
        let toExact = zip(hardware, exact).map { abs($0 - $1) }.max()!
        #expect(toEmulation < 1e-4 && toExact > 10 * toEmulation, "bf16 vs emulation \(toEmulation), vs fp32 \(toExact)")
    }

    @Test(.enabled(if: !OneDNNBackend.hasBFloat16, "the CPU has bf16 instructions: nothing to refuse here"))
    func bf16IsRefusedWithoutTheInstructions() {
        #expect { try OneDNNBackend(bf16: true) } throws: { "\($0)".contains("needs AVX512-BF16 or AMX") && "\($0)".contains("--matmul onednn") }
    }
}
