import COpenBLAS
#if canImport(Glibc)
import Glibc
#endif

/// Matrix products on row-major Float memory, all through `cblas_sgemm` (DESIGN.md idea 3).
/// `accumulate` = true adds into C (beta 1), false overwrites it (beta 0).
public enum Matmul {
    /// Test hook: round both inputs of every product made on the calling thread to bfloat16
    /// (fp32 accumulation, fp32 output), to measure what bf16 matrix products would do to
    /// training on a machine without bf16 instructions. Off in every run; per thread, so
    /// tests running at the same time in the process are not touched. See `BFloat16Products`.
    static var bfloat16Inputs: Bool {
        @inline(__always) get { pthread_getspecific(bfloat16InputsKey) != nil }
        set { pthread_setspecific(bfloat16InputsKey, newValue ? UnsafeRawPointer(bitPattern: 1) : nil) }
    }

    /// C[M,N] = alpha · A[M,K] · B[N,K]^T (+ C).  The Linear forward: y = x W^T.
    @inline(__always)
    public static func nt(m: Int, n: Int, k: Int, alpha: Float = 1,
                          _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                          _ c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        if bfloat16Inputs {
            return BFloat16Products.product(transposeA: false, transposeB: true, m: m, n: n, k: k, alpha: alpha, a, lda: lda,
                                            b, ldb: ldb, c, ldc: ldc, accumulate: accumulate)
        }
        KernelProfile.countGemm(m, n, k)
        KernelProfile.measureGemm("nt", m, n, k) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), alpha,
                        a, Int32(lda), b, Int32(ldb), accumulate ? 1 : 0, c, Int32(ldc))
        }
    }

    /// C[M,N] = alpha · A[M,K] · B[K,N] (+ C).  The Linear input gradient: dx = dy W.
    @inline(__always)
    public static func nn(m: Int, n: Int, k: Int, alpha: Float = 1,
                          _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                          _ c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        if bfloat16Inputs {
            return BFloat16Products.product(transposeA: false, transposeB: false, m: m, n: n, k: k, alpha: alpha, a, lda: lda,
                                            b, ldb: ldb, c, ldc: ldc, accumulate: accumulate)
        }
        KernelProfile.countGemm(m, n, k)
        KernelProfile.measureGemm("nn", m, n, k) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), alpha,
                        a, Int32(lda), b, Int32(ldb), accumulate ? 1 : 0, c, Int32(ldc))
        }
    }

    /// C[M,N] = alpha · A[K,M]^T · B[K,N] (+ C).  The Linear weight gradient: dW += dy^T x.
    @inline(__always)
    public static func tn(m: Int, n: Int, k: Int, alpha: Float = 1,
                          _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                          _ c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        if bfloat16Inputs {
            return BFloat16Products.product(transposeA: true, transposeB: false, m: m, n: n, k: k, alpha: alpha, a, lda: lda,
                                            b, ldb: ldb, c, ldc: ldc, accumulate: accumulate)
        }
        KernelProfile.countGemm(m, n, k)
        KernelProfile.measureGemm("tn", m, n, k) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), alpha,
                        a, Int32(lda), b, Int32(ldb), accumulate ? 1 : 0, c, Int32(ldc))
        }
    }

    // The three products a Linear layer needs (y = x W^T + b), named for what they compute.

    /// out[rows, outF] = x[rows, inF] · W[outF, inF]^T + b.
    public static func linearForward(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                                     _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                                     rows: Int, inFeatures: Int, outFeatures: Int) {
        if let bias {
            // Seed every row with the bias, then let sgemm accumulate onto it.
            KernelProfile.measure(.elementwise) {
                for r in 0..<rows { (out + r * outFeatures).update(from: bias, count: outFeatures) }
            }
        }
        nt(m: rows, n: outFeatures, k: inFeatures, x, lda: inFeatures, weight, ldb: inFeatures,
           out, ldc: outFeatures, accumulate: bias != nil)
    }

    /// dx[rows, inF] += dy[rows, outF] · W[outF, inF]  (= when `accumulate` is false).
    public static func linearInputGradient(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>,
                                           _ weight: UnsafePointer<Float>,
                                           rows: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool = true) {
        nn(m: rows, n: inFeatures, k: outFeatures, dy, lda: outFeatures, weight, ldb: inFeatures,
           dx, ldc: inFeatures, accumulate: accumulate)
    }

    /// dW[outF, inF] += dy[rows, outF]^T · x[rows, inF] (= with `accumulate` false: dW's old
    /// contents are not read);  db[outF] += Σ_rows dy.
    public static func linearParameterGradients(_ dWeight: UnsafeMutablePointer<Float>, accumulate: Bool,
                                                _ dBias: UnsafeMutablePointer<Float>?,
                                                _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
                                                rows: Int, inFeatures: Int, outFeatures: Int) {
        tn(m: outFeatures, n: inFeatures, k: rows, dy, lda: outFeatures, x, ldb: inFeatures,
           dWeight, ldc: inFeatures, accumulate: accumulate)
        if let dBias {
            KernelProfile.measure(.elementwise) {
                for r in 0..<rows {
                    let row = dy + r * outFeatures
                    for o in 0..<outFeatures { dBias[o] += row[o] }
                }
            }
        }
    }
}

/// The thread-specific slot behind `Matmul.bfloat16Inputs` (non-nil = on).
private let bfloat16InputsKey: pthread_key_t = {
    var key = pthread_key_t()
    precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed")
    return key
}()

/// The numerics of bf16 matrix products with fp32 accumulation (what AVX512-BF16's vdpbf16ps,
/// AMX and oneDNN's bf16 GEMMs compute): inputs rounded to bfloat16 (nearest even), their
/// products exact in fp32, sums in fp32. Emulated by rounding copies of the operands and
/// calling sgemm on them — only the summation order differs from the hardware. For the
/// accuracy tests (`Matmul.bfloat16Inputs`); it is slower than fp32, never a run mode.
enum BFloat16Products {
    // Shared scratch: one test at a time turns the hook on (the tests that do are serialized).
    static let roundedA = FloatBuffer(), roundedB = FloatBuffer()

    /// rows × columns of `p` (rows `ld` apart), rounded to bf16, compact (rows `columns` apart).
    static func rounded(_ p: UnsafePointer<Float>, rows: Int, columns: Int, ld: Int, into buffer: FloatBuffer)
        -> UnsafePointer<Float> {
        let out = buffer.ensure(rows * columns)
        for r in 0..<rows {
            for c in 0..<columns { out[r * columns + c] = BFloat16.round(p[r * ld + c]) }
        }
        return UnsafePointer(out)
    }

    /// C = alpha · op(A) · op(B) (+ C) on bf16-rounded copies of A and B; `transposeA`/`B`
    /// say which of Matmul's forms it is (nt: B, nn: neither, tn: A). A is stored [k, m] when
    /// transposed, else [m, k]; B [n, k] when transposed, else [k, n].
    static func product(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                        _ c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        let (aRows, aColumns) = transposeA ? (k, m) : (m, k)
        let (bRows, bColumns) = transposeB ? (n, k) : (k, n)
        let roundedAPointer = rounded(a, rows: aRows, columns: aColumns, ld: lda, into: roundedA)
        let roundedBPointer = rounded(b, rows: bRows, columns: bColumns, ld: ldb, into: roundedB)
        KernelProfile.countGemm(m, n, k)
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, roundedAPointer, Int32(aColumns), roundedBPointer, Int32(bColumns),
                    accumulate ? 1 : 0, c, Int32(ldc))
    }
}
