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

    /// The Linear forward hands its bias to the backend with the product (oneDNN adds it as it
    /// writes C, OpenBLAS seeds C's rows): each backend's C = product (+ old C) + bias on every
    /// row — to fp32 rounding against the same backend's product without the bias — and the
    /// padding beyond n in each row of C untouched.
    @Test func aBiasIsAddedToEveryRowOnEveryBackend() throws {
        // A fresh emulation: the shared one's scratch belongs to the tests that set it per thread.
        var backends: [any MatmulBackend] = [Matmul.reference, try OneDNNBackend(), BFloat16Products()]
        if OneDNNBackend.hasBFloat16 { backends.append(try OneDNNBackend(bf16: true)) }
        let (m, n, k, ldc) = (13, 40, 70, 43)
        var state: UInt64 = 3
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)
        }
        let a = (0..<(m * k)).map { _ in next() }, b = (0..<(n * k)).map { _ in next() }
        let bias = (0..<n).map { _ in 4 * next() }, old = (0..<(m * ldc)).map { _ in next() }
        for backend in backends {
            for accumulate in [false, true] {
                func product(withBias: Bool) -> [Float] {
                    var out = old
                    a.withUnsafeBufferPointer { a in
                        b.withUnsafeBufferPointer { b in
                            bias.withUnsafeBufferPointer { bias in
                                out.withUnsafeMutableBufferPointer { out in
                                    backend.compute(MatmulProblem(transposeA: false, transposeB: true, m: m, n: n, k: k,
                                                                  alpha: 1, a: a.baseAddress!, lda: k, b: b.baseAddress!,
                                                                  ldb: k, c: out.baseAddress!, ldc: ldc,
                                                                  accumulate: accumulate,
                                                                  bias: withBias ? bias.baseAddress! : nil))
                                }
                            }
                        }
                    }
                    return out
                }
                let plain = product(withBias: false), biased = product(withBias: true)
                var worst: Float = 0
                for i in 0..<m {
                    for j in 0..<n { worst = max(worst, abs(biased[i * ldc + j] - (plain[i * ldc + j] + bias[j]))) }
                    for j in n..<ldc { #expect(biased[i * ldc + j].bitPattern == old[i * ldc + j].bitPattern) }
                }
                // |C| stays below ~20 here: a few ulps of that.
                #expect(worst < 1e-5, "\(backend.name), accumulate \(accumulate): off by \(worst)")
            }
        }
    }

    /// `Matmul.reusingParameterCopies`: inside a scope bf16 rounds a parameter operand once (the
    /// product is bitwise the one that converts B itself); a change to B between two scopes is
    /// seen; inside one scope the copy is what is used (why weights must not change there);
    /// the copy is charged to the memory ledger as fixed memory. fp32 keeps no copies.
    @Test(.enabled(if: OneDNNBackend.hasBFloat16, "the CPU has no AVX512-BF16 or AMX"))
    func bf16RoundsAParameterOncePerScope() throws {
        let backend = try OneDNNBackend(bf16: true)
        let (m, n, k) = (9, 48, 64)
        let a = (0..<(m * k)).map { Float($0 % 13) / 7 - 0.9 }
        var weight = (0..<(n * k)).map { Float($0 % 17) / 9 - 0.8 }
        func product(parameter: Bool) -> [Float] {
            var c = [Float](repeating: 0, count: m * n)
            a.withUnsafeBufferPointer { a in
                weight.withUnsafeBufferPointer { w in
                    c.withUnsafeMutableBufferPointer { c in
                        backend.compute(MatmulProblem(transposeA: false, transposeB: true, m: m, n: n, k: k, alpha: 1,
                                                      a: a.baseAddress!, lda: k, b: w.baseAddress!, ldb: k,
                                                      c: c.baseAddress!, ldc: n, accumulate: false, parameterB: parameter))
                    }
                }
            }
            return c
        }
        let fixedBefore = MemoryLedger.fixedTable.first { $0.owner == OneDNNBackend.parameterCopiesOwner }?.bytes ?? 0
        let converting = product(parameter: false)
        backend.beginParameterReuse()
        #expect(product(parameter: true).map(\.bitPattern) == converting.map(\.bitPattern))
        let fixedAfter = MemoryLedger.fixedTable.first { $0.owner == OneDNNBackend.parameterCopiesOwner }?.bytes ?? 0
        #expect(fixedAfter - fixedBefore >= 2 * n * k)   // other tests' backends may charge at the same time
        for i in weight.indices { weight[i] *= -3 }
        #expect(product(parameter: true).map(\.bitPattern) == converting.map(\.bitPattern), "the scope's copy is used")
        #expect(product(parameter: false).map(\.bitPattern) != converting.map(\.bitPattern))
        backend.endParameterReuse()
        let changed = product(parameter: false)
        backend.beginParameterReuse()
        #expect(product(parameter: true).map(\.bitPattern) == changed.map(\.bitPattern), "a new scope sees the change")
        backend.endParameterReuse()
    }

    /// `Matmul.sharingOperands`: bf16 converts an operand once per scope — a Linear backward's
    /// dy as A of the weight gradient (transposed) and of the input gradient — with results
    /// bitwise those of converting at every product; an operand changed outside a product is
    /// not seen inside the scope (the contract) but is in the next scope; a product whose
    /// output overlaps a kept operand drops it, so a later product reads the new values.
    @Test(.enabled(if: OneDNNBackend.hasBFloat16, "the CPU has no AVX512-BF16 or AMX"))
    func bf16ConvertsASharedOperandOncePerScope() throws {
        let backend = try OneDNNBackend(bf16: true)
        Matmul.threadBackend = backend
        defer { Matmul.threadBackend = nil }
        let (rows, inF, outF) = (13, 40, 24)
        var dy = (0..<(rows * outF)).map { Float($0 % 11) / 5 - 0.97 }
        let x = (0..<(rows * inF)).map { Float($0 % 7) / 3 - 1.1 }
        let w = (0..<(outF * inF)).map { Float($0 % 19) / 13 - 0.7 }
        /// dW = dyᵀ x and dx = dy W, as a Linear backward makes them.
        func gradients() -> (dW: [UInt32], dx: [UInt32]) {
            var dW = [Float](repeating: 0, count: outF * inF), dx = [Float](repeating: 0, count: rows * inF)
            dy.withUnsafeBufferPointer { dy in
                Matmul.linearParameterGradients(&dW, accumulate: false, nil, dy.baseAddress!, x, rows: rows,
                                                inFeatures: inF, outFeatures: outF)
                Matmul.linearInputGradient(&dx, dy.baseAddress!, w, rows: rows, inFeatures: inF, outFeatures: outF,
                                           accumulate: false)
            }
            return (dW.map(\.bitPattern), dx.map(\.bitPattern))
        }
        let converting = gradients()
        let shared = Matmul.sharingOperands { gradients() }
        #expect(shared.dW == converting.dW && shared.dx == converting.dx)
        // Inside a scope the first conversion is what later products read (the contract: an
        // element-wise write inside the scope is not seen).
        Matmul.sharingOperands {
            _ = gradients()
            for i in dy.indices { dy[i] *= -2 }
            #expect(gradients().dx == converting.dx, "the scope's copy is used")
        }
        let changed = gradients()
        #expect(changed.dx != converting.dx)
        #expect(Matmul.sharingOperands { gradients() }.dx == changed.dx, "a new scope sees the change")
        // A product writing over a kept operand drops it: dy's rows 0..<3 ← dy's rows 8..<11 · W
        // (C's 3 × 40 floats cover dy's first 120).
        let before = dy
        let afterOverwrite: [UInt32] = Matmul.sharingOperands {
            _ = gradients()
            dy.withUnsafeMutableBufferPointer { dy in
                Matmul.linearInputGradient(dy.baseAddress!, UnsafePointer(dy.baseAddress! + 8 * outF), w, rows: 3,
                                           inFeatures: inF, outFeatures: outF, accumulate: false)
            }
            return gradients().dx
        }
        #expect(dy != before)
        #expect(afterOverwrite == gradients().dx, "the overwritten operand is converted again")
    }

    @Test(.enabled(if: !OneDNNBackend.hasBFloat16, "the CPU has bf16 instructions: nothing to refuse here"))
    func bf16IsRefusedWithoutTheInstructions() {
        #expect { try OneDNNBackend(bf16: true) } throws: { "\($0)".contains("needs AVX512-BF16 or AMX") && "\($0)".contains("--matmul onednn") }
    }
}

/// The bf16 backend with the caller's rounding turned off: every operand converted by the
/// backend (`MatmulProblem.aRounded`, `bRounded` dropped), everything else passed on.
final class BackendRoundingOnly: MatmulBackend, @unchecked Sendable {
    let inner: any MatmulBackend
    init(_ inner: any MatmulBackend) { self.inner = inner }
    var name: String { inner.name + " (rounding in the backend only)" }
    var isFloat32: Bool { inner.isFloat32 }
    var takesRoundedOperands: Bool { false }
    func compute(_ p: MatmulProblem) { var q = p; q.aRounded = nil; q.bRounded = nil; inner.compute(q) }
    func beginOperandSharing() { inner.beginOperandSharing() }
    func endOperandSharing() { inner.endOperandSharing() }
}

/// Attention on bf16 rounds its probabilities and score gradients head by head itself, the
/// FFN its activation chunk by chunk (`MatmulProblem.aRounded`, `bRounded`): forward output,
/// input gradients and weight gradients are bitwise those of letting the backend convert
/// them — with dropout on the probabilities and padded keys, self- and cross-attention;
/// GELU and QuickGELU over more rows than one chunk.
struct CallerRoundedOperandsTests {
    @Test(.enabled(if: OneDNNBackend.hasBFloat16, "the CPU has no AVX512-BF16 or AMX"), arguments: [false, true])
    func feedForwardRoundingItsActivationIsBitwiseTheBackends(quick: Bool) throws {
        let (rows, width) = (70, 32)   // [70, 128] activations: more than one 8192-element chunk
        func run(_ backend: any MatmulBackend) -> [[UInt32]] {
            Matmul.threadBackend = backend
            defer { Matmul.threadBackend = nil }
            let layout = ParameterLayout()
            let params = FeedForwardParams.declare(layout, "text.layers.0.ffn", width: width)
            let store = ParameterStore(layout: layout)
            TestData.randomize(store, seed: 31)
            store.zeroGradients()
            let layer = FeedForward(params, activation: quick ? .quickGelu : .gelu, dropoutName: "text.layers.0.ffn")
            let x = TestData.buffer(rows * width, seed: 32), dx = TestData.zeros(rows * width)
            let dy = TestData.buffer(rows * width, seed: 33)
            let y = layer.forward(store, x, batch: 2, perItemRows: rows / 2, ForwardContext(dropout: 0.1, passKey: 3))
            let output = (0..<(rows * width)).map { y[$0].bitPattern }
            layer.backward(store, dy, dx: dx)
            return [output, (0..<(rows * width)).map { dx[$0].bitPattern }, (0..<store.count).map { store.grads[$0].bitPattern }]
        }
        let backend = try OneDNNBackend(bf16: true)
        let callerRounded = run(backend), backendRounded = run(BackendRoundingOnly(backend))
        for (i, what) in ["output", "dx", "weight gradients"].enumerated() {
            let differing = zip(callerRounded[i], backendRounded[i]).filter { $0 != $1 }.count
            #expect(differing == 0, "\(what): \(differing) of \(callerRounded[i].count) values differ")
        }
        #expect(Set(callerRounded[2]).count > 10, "the gradients are not all alike")
    }

    @Test(.enabled(if: OneDNNBackend.hasBFloat16, "the CPU has no AVX512-BF16 or AMX"), arguments: [false, true])
    func attentionRoundingItsOperandsIsBitwiseTheBackends(cross: Bool) throws {
        let (batch, lq, width, heads) = (2, 9, 32, 4)
        let lk = cross ? 13 : lq
        func run(_ backend: any MatmulBackend) -> [[UInt32]] {
            Matmul.threadBackend = backend
            defer { Matmul.threadBackend = nil }
            let layout = ParameterLayout()
            let params = AttentionParams.declare(layout, "fusion.layers.0.attn", width: width, heads: heads)
            let store = ParameterStore(layout: layout)
            TestData.randomize(store, seed: 21)
            store.zeroGradients()
            let layer = MultiHeadAttention(params, dropoutName: "fusion.layers.0.attn")
            let xq = TestData.buffer(batch * lq * width, seed: 22), xkv = cross ? TestData.buffer(batch * lk * width, seed: 23) : xq
            let dq = TestData.zeros(batch * lq * width), dkv = cross ? TestData.zeros(batch * lk * width) : dq
            let dy = TestData.buffer(batch * lq * width, seed: 24)
            let mask = TestData.keyMask(batch: batch, length: lk, padding: [0, 3])
            let y = layer.forward(store, queries: xq, keysValues: xkv, batch: batch, queryLength: lq, keyLength: lk,
                                  keyMask: mask, ForwardContext(dropout: 0.2, passKey: 99, sampleIDs: [5, 8]))
            let output = (0..<(batch * lq * width)).map { y[$0].bitPattern }
            layer.backward(store, dy, dQueries: dq, dKeysValues: dkv)
            return [output, (0..<(batch * lq * width)).map { dq[$0].bitPattern },
                    (0..<(batch * lk * width)).map { dkv[$0].bitPattern }, (0..<store.count).map { store.grads[$0].bitPattern }]
        }
        let backend = try OneDNNBackend(bf16: true)
        #expect(backend.takesRoundedOperands)
        let callerRounded = run(backend), backendRounded = run(BackendRoundingOnly(backend))
        for (i, what) in ["output", "dQueries", "dKeysValues", "weight gradients"].enumerated() {
            let differing = zip(callerRounded[i], backendRounded[i]).filter { $0 != $1 }.count
            #expect(differing == 0, "\(what): \(differing) of \(callerRounded[i].count) values differ")
        }
        #expect(Set(callerRounded[3]).count > 10, "the gradients are not all alike")
    }
}

/// `Matmul.batched` (attention's heads of one sample in one call, on the backends that must see
/// every head product): on every backend, the same as one product per head on the same strided
/// views — bitwise where the backend loops (OpenBLAS, the emulation), to float rounding where
/// oneDNN runs one batched primitive.
struct BatchedProductsTests {
    @Test func aBatchedCallEqualsOneProductPerHead() throws {
        var backends: [any MatmulBackend] = [OpenBLASBackend(), try OneDNNBackend(), BFloat16Products()]
        if OneDNNBackend.hasBFloat16 { backends.append(try OneDNNBackend(bf16: true)) }
        let (H, Lq, Lk, hd) = (3, 7, 19, 16), W = 3 * 16
        var state: UInt64 = 11
        func values(_ count: Int) -> [Float] {
            (0..<count).map { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)
            }
        }
        let q = values(Lq * W), k = values(Lk * W), p = values(H * Lq * Lk)
        // (name, transposes, m, n, k, A, lda, strideA, B, ldb, strideB, ldc, strideC): the three forms the
        // attention's products take (dP = dC Vᵀ is the scores' form, dQ the context's, dK dV's).
        let forms: [(String, Bool, Bool, Int, Int, Int, [Float], Int, Int, [Float], Int, Int, Int, Int)] = [
            ("scores Q Kᵀ", false, true, Lq, Lk, hd, q, W, hd, k, W, hd, Lk, Lq * Lk),
            ("context P V", false, false, Lq, hd, Lk, p, Lk, Lq * Lk, k, W, hd, W, hd),
            ("dV = Pᵀ dC", true, false, Lk, hd, Lq, p, Lk, Lq * Lk, q, W, hd, W, hd),
        ]
        for backend in backends {
            Matmul.threadBackend = backend
            defer { Matmul.threadBackend = nil }
            for (name, tA, tB, m, n, kk, a, lda, sA, b, ldb, sB, ldc, sC) in forms {
                let size = sC == hd ? max(Lq, Lk) * W : H * m * n
                var batched = [Float](repeating: .nan, count: size), perHead = batched
                a.withUnsafeBufferPointer { a in
                    b.withUnsafeBufferPointer { b in
                        batched.withUnsafeMutableBufferPointer { c in
                            Matmul.batched("test", batch: H, transposeA: tA, transposeB: tB, m: m, n: n, k: kk, alpha: 0.5,
                                           a.baseAddress!, lda: lda, strideA: sA, b.baseAddress!, ldb: ldb, strideB: sB,
                                           c.baseAddress!, ldc: ldc, strideC: sC)
                        }
                        perHead.withUnsafeMutableBufferPointer { c in
                            for h in 0..<H {
                                backend.compute(MatmulProblem(transposeA: tA, transposeB: tB, m: m, n: n, k: kk, alpha: 0.5,
                                                              a: a.baseAddress! + h * sA, lda: lda,
                                                              b: b.baseAddress! + h * sB, ldb: ldb,
                                                              c: c.baseAddress! + h * sC, ldc: ldc, accumulate: false))
                            }
                        }
                    }
                }
                // Elements no product writes stay NaN in both (the strided C's other columns).
                let worst = zip(batched, perHead).map { x, y -> Float in
                    x.isNaN || y.isNaN ? (x.isNaN && y.isNaN ? 0 : .infinity) : abs(x - y)
                }.max()!
                #expect(batched.contains { !$0.isNaN })
                let loops = backend is OpenBLASBackend || backend is BFloat16Products
                #expect(loops ? worst == 0 : worst < 1e-5, "\(backend.name) \(name): off by \(worst)")
            }
        }
    }
}
