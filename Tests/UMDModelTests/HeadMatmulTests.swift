import Testing
import UMDCore
@testable import UMDModel

/// The attention-head products against a Double reference, on strided views the way
/// `MultiHeadAttention` calls them, with row counts that leave remainders of the 4-row
/// blocks and column counts that leave tails of the 16-column blocks.
struct HeadMatmulTests {
    /// Random values, fixed by `seed`.
    func values(_ count: Int, seed: UInt64) -> [Float] {
        (0..<count).map { Float(CounterRandom.normal(seed, UInt64($0))) }
    }

    /// Checks c[i·ldc + j] against Σ_p A(i,p) B(p,j) · alpha in Double; the bound is the
    /// standard one for a float dot product of length k: k·ε·Σ|A(i,p) B(p,j)| (·2 for alpha).
    func check(m: Int, n: Int, k: Int, alpha: Float, c: [Float], ldc: Int,
               a: (Int, Int) -> Float, b: (Int, Int) -> Float, _ label: String) {
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0, magnitude = 0.0
                for p in 0..<k {
                    let product = Double(a(i, p)) * Double(b(p, j))
                    sum += product
                    magnitude += abs(product)
                }
                let bound = Double(k + 2) * Double(Float.ulpOfOne) * magnitude * Double(abs(alpha))
                let error = abs(Double(c[i * ldc + j]) - Double(alpha) * sum)
                let ratio = error / max(bound, .leastNormalMagnitude)
                worst = ratio.isNaN ? .infinity : max(worst, ratio)   // an unwritten (NaN) output fails
            }
        }
        #expect(worst <= 1, "\(label) m \(m) n \(n) k \(k): error \(worst) × the rounding bound")
    }

    @Test(arguments: [(1, 1, 16), (17, 17, 32), (65, 65, 32), (30, 41, 64), (7, 33, 48), (11, 200, 16)])
    func productsMatchTheReference(shape: (Int, Int, Int)) {
        let (Lq, Lk, hd) = shape
        let W = hd * 3 + 16        // heads side by side, rows W apart; this head starts at column 16
        let queries = values(Lq * W, seed: 1), keys = values(Lk * W, seed: 2), probs = values(Lq * Lk, seed: 3)
        let packed = FloatBuffer()
        queries.withUnsafeBufferPointer { qb in
            keys.withUnsafeBufferPointer { kb in
                probs.withUnsafeBufferPointer { pb in
                    let q = qb.baseAddress! + 16, k = kb.baseAddress! + 16, p = pb.baseAddress!
                    // Scores: S = alpha Q Kᵀ  [Lq, Lk]
                    var s = [Float](repeating: .nan, count: Lq * Lk)
                    HeadMatmul.nt(m: Lq, n: Lk, k: hd, alpha: 0.25, q, lda: W, k, ldb: W, &s, ldc: Lk, packed: packed)
                    check(m: Lq, n: Lk, k: hd, alpha: 0.25, c: s, ldc: Lk, a: { q[$0 * W + $1] }, b: { k[$1 * W + $0] }, "nt")
                    // Context: C = P V  [Lq, hd] into a strided output; other columns untouched.
                    var out = [Float](repeating: 7, count: Lq * W)
                    out.withUnsafeMutableBufferPointer { ob in
                        HeadMatmul.nn(m: Lq, n: hd, k: Lk, p, lda: Lk, k, ldb: W, ob.baseAddress! + 16, ldc: W, packed: packed)
                    }
                    check(m: Lq, n: hd, k: Lk, alpha: 1, c: Array(out.dropFirst(16)) + [Float](repeating: 0, count: 16), ldc: W,
                          a: { p[$0 * Lk + $1] }, b: { k[$0 * W + $1] }, "nn")
                    #expect((0..<Lq).allSatisfy { i in (0..<16).allSatisfy { out[i * W + $0] == 7 } })
                    // dV = alpha Pᵀ dC  [Lk, hd]
                    var dv = [Float](repeating: .nan, count: Lk * W)
                    dv.withUnsafeMutableBufferPointer { db in
                        HeadMatmul.tn(m: Lk, n: hd, k: Lq, alpha: 0.5, p, lda: Lk, q, ldb: W, db.baseAddress!, ldc: W, packed: packed)
                    }
                    check(m: Lk, n: hd, k: Lq, alpha: 0.5, c: dv, ldc: W, a: { p[$1 * Lk + $0] }, b: { q[$0 * W + $1] }, "tn")
                }
            }
        }
    }

    @Test func theShapeRuleKeepsSgemmForLongSums() {
        #expect(HeadMatmul.takesTN(n: 32, k: 65))
        #expect(HeadMatmul.takesTN(n: 64, k: 128))
        #expect(!HeadMatmul.takesTN(n: 64, k: 325))   // base image tokens: sgemm is faster
        #expect(!HeadMatmul.takesTN(n: 24, k: 16))    // head width not a multiple of 16
        #expect(HeadMatmul.takesNN(n: 64) && !HeadMatmul.takesNN(n: 40))
    }
}
