/// The matrix products of one attention head: scores Q_h K_hᵀ, context P V_h and their
/// backward products. They are small (m, n ≤ a few hundred tokens, k = head width or
/// tokens) and run thousands of times a step, where sgemm's per-call packing and blocking
/// cost more than the arithmetic: at the small preset OpenBLAS reaches 30–44 GFLOP/s on
/// them against 96 on a large square (`bench step --phases` lists the shapes). This kernel
/// keeps a 6-row × 16-column block of C in registers and streams k through a contiguous
/// copy of B's 16 columns (Bᵀ for the `nt` form: a k × n copy, 1/m of the product's reads).
/// `bench kernels` prints it against sgemm at each preset's token counts.
///
/// Same products as `Matmul.nt/nn/tn` with beta 0 (C is overwritten); the sums run in
/// another order than OpenBLAS's, so results differ from it in the last bits.
public enum HeadMatmul {
    /// Columns per register block: one `FloatLanes`.
    static let lanes = FloatLanes.scalarCount

    /// Whether `nn` takes a product with n columns: its B is read 16 columns at a time in
    /// place, so n must be a multiple of 16 (the head width: 32 small, 64 base).
    @inline(__always)
    public static func takesNN(n: Int) -> Bool { n % lanes == 0 }

    /// Whether `tn` takes a product of this shape: as `nn`, and sums over k ≤ 128 tokens —
    /// over the 325 image tokens at base, Aᵀ's column blocks (6 floats from each of k rows)
    /// no longer stay in L1 and sgemm is faster (`bench kernels`: 0.88 of it).
    @inline(__always)
    public static func takesTN(n: Int, k: Int) -> Bool { n % lanes == 0 && k <= 128 }

    /// C[m, n] = alpha · A[m, k] · B[n, k]ᵀ  (scores S = scale Q Kᵀ; dP = dC Vᵀ).
    /// `packed` is scratch for Bᵀ's first n − n % 16 columns, as strips [n / 16][k, 16]. The last
    /// n % 16 columns are dot products of A's and B's rows (both contiguous): a register
    /// block of 16 for one column would waste 15/16 of its work (17 keys at the small preset).
    public static func nt(m: Int, n: Int, k: Int, alpha: Float, _ a: UnsafePointer<Float>, lda: Int,
                          _ b: UnsafePointer<Float>, ldb: Int, _ c: UnsafeMutablePointer<Float>, ldc: Int,
                          packed: FloatBuffer) {
        if !Matmul.headKernelsAllowed {   // a bf16 backend must see every product
            return Matmul.nt(m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, c, ldc: ldc, accumulate: false)
        }
        KernelProfile.matrixProduct("nt head", m, n, k) {
            let blocked = n / lanes * lanes
            if blocked > 0 {
                // Bᵀ as strips of 16 columns, each [k, 16] contiguous: row by row of B
                // (contiguous reads), each element to its place in its strip.
                let strips = packed.ensure(k * blocked)
                for j in 0..<blocked {
                    let row = b + j * ldb, strip = strips + (j / lanes) * k * lanes + j % lanes
                    for p in 0..<k { strip[p &* lanes] = row[p] }
                }
                product(m: m, n: blocked, k: k, alpha: alpha, a, aRow: lda, aColumn: 1, strips, ldb: nil, c, ldc: ldc, copy: nil)
            }
            for i in 0..<m {
                for j in blocked..<n { c[i * ldc + j] = alpha * Elementwise.dot(a + i * lda, b + j * ldb, count: k) }
            }
        }
    }

    /// C[m, n] = alpha · A[m, k] · B[k, n]  (context P V; dQ = scale dS K), through sgemm
    /// unless `takesNN`. `packed`: scratch for one 16-column strip of B, [k, 16] (as `tn`).
    public static func nn(m: Int, n: Int, k: Int, alpha: Float = 1, _ a: UnsafePointer<Float>, lda: Int,
                          _ b: UnsafePointer<Float>, ldb: Int, _ c: UnsafeMutablePointer<Float>, ldc: Int,
                          packed: FloatBuffer) {
        // The backend where this kernel does not take the shape, or where the backend is not fp32.
        if !Matmul.headKernelsAllowed || !takesNN(n: n) {
            return Matmul.nn(m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, c, ldc: ldc, accumulate: false)
        }
        KernelProfile.matrixProduct("nn head", m, n, k) {
            product(m: m, n: n, k: k, alpha: alpha, a, aRow: lda, aColumn: 1, b, ldb: ldb, c, ldc: ldc,
                    copy: packed.ensure(k * lanes))
        }
    }

    /// C[m, n] = alpha · A[k, m]ᵀ · B[k, n]  (dV = Pᵀ dC; dK = scale dSᵀ Q), through sgemm
    /// unless `takesTN`.
    public static func tn(m: Int, n: Int, k: Int, alpha: Float = 1, _ a: UnsafePointer<Float>, lda: Int,
                          _ b: UnsafePointer<Float>, ldb: Int, _ c: UnsafeMutablePointer<Float>, ldc: Int,
                          packed: FloatBuffer) {
        if !Matmul.headKernelsAllowed || !takesTN(n: n, k: k) {
            return Matmul.tn(m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, c, ldc: ldc, accumulate: false)
        }
        KernelProfile.matrixProduct("tn head", m, n, k) {
            product(m: m, n: n, k: k, alpha: alpha, a, aRow: 1, aColumn: lda, b, ldb: ldb, c, ldc: ldc,
                    copy: packed.ensure(k * lanes))
        }
    }

    /// C[i, j] = alpha · Σ_p A(i, p) · B[p, j] with A(i, p) = a[i·aRow + p·aColumn].
    /// Columns in strips of 16 (the outer loop); rows 6 at a time (the block takes 12 of
    /// AVX2's 16 vector registers). Each k × 16 strip of B is
    /// read from a contiguous copy while every row block passes: read in place, rows `ldb`
    /// apart, a strip's cache lines fall into a handful of L1 sets (a stride of W = 256 or
    /// 768 floats is a multiple of the 4 KB set span / 16) and evict each other.
    /// `ldb` nil: B already is such strips, one after another ([n / 16][k, 16]); otherwise
    /// 16 columns must be readable at every strip start j < n, and `copy` holds k × 16 floats.
    @inline(__always)
    static func product(m: Int, n: Int, k: Int, alpha: Float, _ a: UnsafePointer<Float>, aRow: Int, aColumn: Int,
                        _ b: UnsafePointer<Float>, ldb: Int?, _ c: UnsafeMutablePointer<Float>, ldc: Int,
                        copy: UnsafeMutablePointer<Float>?) {
        let fused = VectorMath.targetHasFMA
        var j = 0
        while j < n {
            let columns = min(lanes, n - j)
            let strip: UnsafePointer<Float>
            if let ldb {
                guard let copy else { preconditionFailure("HeadMatmul.product: B read in place needs the strip scratch") }
                for p in 0..<k { VectorMath.store(VectorMath.load(b + p * ldb, j), copy, p * lanes) }
                strip = UnsafePointer(copy)
            } else {
                strip = b + (j / lanes) * k * lanes
            }
            var i = 0
            while i < m {
                // The last block may hold fewer than 6 rows: its missing rows repeat the last
                // real one (same loads, nothing extra to fetch) and are not stored.
                let rows = min(6, m - i)
                func rowOfA(_ r: Int) -> UnsafePointer<Float> { a + (i + min(r, rows - 1)) * aRow }
                let a0 = rowOfA(0), a1 = rowOfA(1), a2 = rowOfA(2), a3 = rowOfA(3), a4 = rowOfA(4), a5 = rowOfA(5)
                var c0 = FloatLanes(), c1 = FloatLanes(), c2 = FloatLanes(), c3 = FloatLanes()
                var c4 = FloatLanes(), c5 = FloatLanes()
                for p in 0..<k {
                    let bv = VectorMath.load(strip, p &* lanes)
                    let ap = p * aColumn
                    c0 = VectorMath.multiplyAdd(FloatLanes(repeating: a0[ap]), bv, c0, fused: fused)
                    c1 = VectorMath.multiplyAdd(FloatLanes(repeating: a1[ap]), bv, c1, fused: fused)
                    c2 = VectorMath.multiplyAdd(FloatLanes(repeating: a2[ap]), bv, c2, fused: fused)
                    c3 = VectorMath.multiplyAdd(FloatLanes(repeating: a3[ap]), bv, c3, fused: fused)
                    c4 = VectorMath.multiplyAdd(FloatLanes(repeating: a4[ap]), bv, c4, fused: fused)
                    c5 = VectorMath.multiplyAdd(FloatLanes(repeating: a5[ap]), bv, c5, fused: fused)
                }
                let row = c + i * ldc
                VectorMath.storePartialOrFull(alpha * c0, row, j, columns)
                if rows > 1 { VectorMath.storePartialOrFull(alpha * c1, row + ldc, j, columns) }
                if rows > 2 { VectorMath.storePartialOrFull(alpha * c2, row + 2 * ldc, j, columns) }
                if rows > 3 { VectorMath.storePartialOrFull(alpha * c3, row + 3 * ldc, j, columns) }
                if rows > 4 { VectorMath.storePartialOrFull(alpha * c4, row + 4 * ldc, j, columns) }
                if rows > 5 { VectorMath.storePartialOrFull(alpha * c5, row + 5 * ldc, j, columns) }
                i += rows
            }
            j += lanes
        }
    }
}
