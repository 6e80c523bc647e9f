import COpenBLAS

/// Matrix products on row-major Float memory, all through `cblas_sgemm` (DESIGN.md idea 3).
/// `accumulate` = true adds into C (beta 1), false overwrites it (beta 0).
public enum Matmul {
    /// C[M,N] = alpha · A[M,K] · B[N,K]^T (+ C).  The Linear forward: y = x W^T.
    @inline(__always)
    public static func nt(m: Int, n: Int, k: Int, alpha: Float = 1,
                          _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                          _ c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
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

    /// dW[outF, inF] += dy[rows, outF]^T · x[rows, inF];  db[outF] += Σ_rows dy.
    public static func linearParameterGradients(_ dWeight: UnsafeMutablePointer<Float>,
                                                _ dBias: UnsafeMutablePointer<Float>?,
                                                _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
                                                rows: Int, inFeatures: Int, outFeatures: Int) {
        tn(m: outFeatures, n: inFeatures, k: rows, dy, lda: outFeatures, x, ldb: inFeatures,
           dWeight, ldc: inFeatures, accumulate: true)
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
