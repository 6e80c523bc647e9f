/// The matrix products of one attention head: scores Q_h K_hᵀ, context P V_h and their
/// backward products. They are small (m, n ≤ a few hundred tokens, k = head width or
/// tokens) and run thousands of times a step, where sgemm's per-call packing and blocking
/// cost more than the arithmetic: at the small preset OpenBLAS reaches 30–44 GFLOP/s on
/// them against 96 on a large square (`bench step --phases` lists the shapes). This kernel
/// keeps a 4-row × 16-column block of C in registers and streams k, with no packing
/// except Bᵀ for the `nt` form (a k × n copy, 1/m of the product's reads).
///
/// Same products as `Matmul.nt/nn/tn` with beta 0 (C is overwritten); the sums run in
/// another order than OpenBLAS's, so results differ from it in the last bits.
public enum HeadMatmul {
    /// Columns per register block: one `FloatLanes`.
    static let lanes = FloatLanes.scalarCount

    /// Whether `nn`/`tn` take a product of this shape: their B is read in place, 16 columns
    /// at a time, so n must be a multiple of 16 (the head width: 32 small, 64 base); and the
    /// sums run over k ≤ 128 tokens — on longer ones (325 image tokens at base) the k × 16
    /// strip of B they stream no longer stays in L1 next to A's rows and sgemm is faster
    /// (`bench kernels`: 0.75–0.8 of it). `nt` takes any shape.
    @inline(__always)
    public static func takes(n: Int, k: Int) -> Bool { n % lanes == 0 && k <= 128 }

    /// C[m, n] = alpha · A[m, k] · B[n, k]ᵀ  (scores S = scale Q Kᵀ; dP = dC Vᵀ).
    /// `packed` is scratch for Bᵀ's first n − n % 16 columns, [k, n − n % 16]. The last
    /// n % 16 columns are dot products of A's and B's rows (both contiguous): a register
    /// block of 16 for one column would waste 15/16 of its work (17 keys at the small preset).
    public static func nt(m: Int, n: Int, k: Int, alpha: Float, _ a: UnsafePointer<Float>, lda: Int,
                          _ b: UnsafePointer<Float>, ldb: Int, _ c: UnsafeMutablePointer<Float>, ldc: Int,
                          packed: FloatBuffer) {
        if Matmul.bfloat16Inputs {   // the bf16 accuracy tests round every product's inputs
            return Matmul.nt(m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, c, ldc: ldc, accumulate: false)
        }
        KernelProfile.countGemm(m, n, k)
        KernelProfile.measureGemm("nt head", m, n, k) {
            let blocked = n / lanes * lanes
            if blocked > 0 {
                let bt = packed.ensure(k * blocked)       // [k, blocked]: Bᵀ
                // Row by row of B (contiguous reads), each element to its column of Bᵀ.
                for j in 0..<blocked {
                    let row = b + j * ldb
                    for p in 0..<k { bt[p &* blocked &+ j] = row[p] }
                }
                product(m: m, n: blocked, k: k, alpha: alpha, a, aRow: lda, aColumn: 1, bt, ldb: blocked, c, ldc: ldc)
            }
            for i in 0..<m {
                for j in blocked..<n { c[i * ldc + j] = alpha * Elementwise.dot(a + i * lda, b + j * ldb, count: k) }
            }
        }
    }

    /// C[m, n] = alpha · A[m, k] · B[k, n]  (context P V; dQ = scale dS K). n % 16 == 0.
    public static func nn(m: Int, n: Int, k: Int, alpha: Float = 1, _ a: UnsafePointer<Float>, lda: Int,
                          _ b: UnsafePointer<Float>, ldb: Int, _ c: UnsafeMutablePointer<Float>, ldc: Int) {
        precondition(n % lanes == 0, "HeadMatmul.nn: n = \(n) is not a multiple of \(lanes)")
        if Matmul.bfloat16Inputs {
            return Matmul.nn(m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, c, ldc: ldc, accumulate: false)
        }
        KernelProfile.countGemm(m, n, k)
        KernelProfile.measureGemm("nn head", m, n, k) {
            product(m: m, n: n, k: k, alpha: alpha, a, aRow: lda, aColumn: 1, b, ldb: ldb, c, ldc: ldc)
        }
    }

    /// C[m, n] = alpha · A[k, m]ᵀ · B[k, n]  (dV = Pᵀ dC; dK = scale dSᵀ Q). n % 16 == 0.
    public static func tn(m: Int, n: Int, k: Int, alpha: Float = 1, _ a: UnsafePointer<Float>, lda: Int,
                          _ b: UnsafePointer<Float>, ldb: Int, _ c: UnsafeMutablePointer<Float>, ldc: Int) {
        precondition(n % lanes == 0, "HeadMatmul.tn: n = \(n) is not a multiple of \(lanes)")
        if Matmul.bfloat16Inputs {
            return Matmul.tn(m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, c, ldc: ldc, accumulate: false)
        }
        KernelProfile.countGemm(m, n, k)
        KernelProfile.measureGemm("tn head", m, n, k) {
            product(m: m, n: n, k: k, alpha: alpha, a, aRow: 1, aColumn: lda, b, ldb: ldb, c, ldc: ldc)
        }
    }

    /// C[i, j] = alpha · Σ_p A(i, p) · B[p, j] with A(i, p) = a[i·aRow + p·aColumn] and
    /// 16 columns of B readable from every column block start j < n (rows ldb apart).
    /// Columns in blocks of 16 (the outer loop: a k × 16 strip of B stays in L1 while every
    /// row block passes), rows 4 at a time, then one at a time.
    @inline(__always)
    static func product(m: Int, n: Int, k: Int, alpha: Float, _ a: UnsafePointer<Float>, aRow: Int, aColumn: Int,
                        _ b: UnsafePointer<Float>, ldb: Int, _ c: UnsafeMutablePointer<Float>, ldc: Int) {
        let fused = VectorMath.targetHasFMA
        var j = 0
        while j < n {
            let columns = min(lanes, n - j)
            var i = 0
            while i + 4 <= m {
                let a0 = a + i * aRow, a1 = a0 + aRow, a2 = a1 + aRow, a3 = a2 + aRow
                var c0 = FloatLanes(), c1 = FloatLanes(), c2 = FloatLanes(), c3 = FloatLanes()
                for p in 0..<k {
                    let bv = VectorMath.load(b + p * ldb, j)
                    let ap = p * aColumn
                    c0 = VectorMath.multiplyAdd(FloatLanes(repeating: a0[ap]), bv, c0, fused: fused)
                    c1 = VectorMath.multiplyAdd(FloatLanes(repeating: a1[ap]), bv, c1, fused: fused)
                    c2 = VectorMath.multiplyAdd(FloatLanes(repeating: a2[ap]), bv, c2, fused: fused)
                    c3 = VectorMath.multiplyAdd(FloatLanes(repeating: a3[ap]), bv, c3, fused: fused)
                }
                let row = c + i * ldc
                VectorMath.storePartialOrFull(alpha * c0, row, j, columns)
                VectorMath.storePartialOrFull(alpha * c1, row + ldc, j, columns)
                VectorMath.storePartialOrFull(alpha * c2, row + 2 * ldc, j, columns)
                VectorMath.storePartialOrFull(alpha * c3, row + 3 * ldc, j, columns)
                i += 4
            }
            while i < m {
                let ai = a + i * aRow
                var ci = FloatLanes()
                for p in 0..<k {
                    ci = VectorMath.multiplyAdd(FloatLanes(repeating: ai[p * aColumn]), VectorMath.load(b + p * ldb, j), ci,
                                                fused: fused)
                }
                VectorMath.storePartialOrFull(alpha * ci, c + i * ldc, j, columns)
                i += 1
            }
            j += lanes
        }
    }
}
