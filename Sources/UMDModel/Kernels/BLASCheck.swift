import COpenBLAS

/// Does the BLAS this process loaded compute correctly? A node with a broken OpenBLAS (a
/// kernel picked for the wrong CPU, a bad build) gives wrong gradients, not a crash: this
/// is checked by `selftest` on every rank before a week's run starts.
///
/// Each case runs one of the four product forms `Matmul` uses on awkward shapes (odd sizes,
/// leading dimensions wider than the rows, accumulation into C) and compares every element
/// with a Double reference. Bound per element: |C − C_ref| ≤ 2·γ_k·(|α|·|A|·|B| + |β·C₀|)
/// with γ_k = k·u/(1 − k·u), u = 2⁻²⁴ — the textbook forward-error bound of a length-k
/// float dot product (any summation order, FMA or not), doubled for the final rounding and
/// the accumulation. A correct sgemm stays far inside it; a wrong kernel is off by O(1).
public enum BLASCheck {
    /// The kernel family OpenBLAS runs on this CPU (`openblas_get_corename`, e.g. "Haswell",
    /// "SkylakeX", "Zen"): `OPENBLAS_CORETYPE` can pin it.
    public static var kernelFamily: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// The OpenBLAS build's own description (`openblas_get_config`).
    public static var configuration: String {
        guard let text = openblas_get_config() else { return "unknown" }
        return String(cString: text)
    }

    /// (form, m, n, k, extra leading-dimension padding, accumulate)
    static let cases: [(String, Int, Int, Int, Int, Bool)] = [
        ("nt", 64, 48, 80, 0, false), ("nn", 37, 129, 65, 3, true), ("tn", 96, 33, 257, 5, false),
        ("tt", 17, 64, 31, 1, true), ("nt", 300, 200, 150, 0, true), ("nn", 1, 513, 768, 0, false),
    ]

    /// A row-major sgemm: (transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc).
    public typealias Product = @Sendable (Bool, Bool, Int, Int, Int, Float, [Float], Int, [Float], Int, Float, inout [Float], Int) -> Void

    /// The loaded BLAS's sgemm.
    public static let openBLAS: Product = { transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc in
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, &c, Int32(ldc))
    }

    /// A matrix-product backend's computation as a `Product` (beta 1 = accumulate).
    public static func product(of backend: any MatmulBackend) -> Product {
        { tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc in
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    c.withUnsafeMutableBufferPointer { c in
                        backend.compute(MatmulProblem(transposeA: tA, transposeB: tB, m: m, n: n, k: k, alpha: alpha,
                                                      a: a.baseAddress!, lda: lda, b: b.baseAddress!, ldb: ldb,
                                                      c: c.baseAddress!, ldc: ldc, accumulate: beta == 1))
                    }
                }
            }
        }
    }

    /// One line per case whose result exceeds the bound (empty: the BLAS is correct here).
    /// `product` is the sgemm under test (tests pass broken ones to see them caught).
    public static func problems(_ product: Product = openBLAS) -> [String] {
        var problems: [String] = []
        for (index, (form, m, n, k, pad, accumulate)) in cases.enumerated() {
            // Inputs in [-1, 1) from the project's counter-keyed random numbers, one key per case and operand.
            func values(_ operand: UInt64, _ count: Int) -> [Float] {
                let key = CounterRandom.key(0x5EED_B1A5 &+ UInt64(index), operand)
                return (0..<count).map { Float(2 * CounterRandom.uniform(key, UInt64($0)) - 1) }
            }
            let transA = form.first == "t", transB = form.last == "t"
            // Row-major storage: A is [M,K] or (transposed) [K,M]; B is [K,N] or [N,K].
            let (aRows, aCols) = transA ? (k, m) : (m, k), (bRows, bCols) = transB ? (n, k) : (k, n)
            let lda = aCols + pad, ldb = bCols + pad, ldc = n + pad
            let a = values(1, aRows * lda), b = values(2, bRows * ldb), c0 = values(3, m * ldc)
            var c = c0
            let alpha: Float = 0.75, beta: Float = accumulate ? 1 : 0
            product(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, &c, ldc)
            let u = 1.0 / 16_777_216.0, gamma = Double(k) * u / (1 - Double(k) * u)
            var worst = 0.0, worstAt = (0, 0)
            for i in 0..<m {
                for j in 0..<n {
                    var exact = 0.0, magnitude = 0.0
                    for p in 0..<k {
                        let x = Double(transA ? a[p * lda + i] : a[i * lda + p])
                        let y = Double(transB ? b[j * ldb + p] : b[p * ldb + j])
                        exact += x * y; magnitude += abs(x * y)
                    }
                    let start = Double(beta) * Double(c0[i * ldc + j])
                    let reference = Double(alpha) * exact + start
                    let bound = 2 * gamma * (Double(alpha) * magnitude + abs(start)) + 1e-30
                    let ratio = abs(Double(c[i * ldc + j]) - reference) / bound
                    if !(ratio <= worst) { worst = ratio; worstAt = (i, j) }
                }
            }
            // Elements outside the M×N block (the leading-dimension padding) must be untouched.
            let padding = (0..<m).flatMap { i in (n..<ldc).map { i * ldc + $0 } }
            if padding.contains(where: { c[$0].bitPattern != c0[$0].bitPattern }) {
                problems.append("sgemm \(form) \(m)x\(n)x\(k): wrote outside C's \(m)x\(n) block (leading dimension \(ldc))")
            }
            if !(worst <= 1) {
                problems.append(String(format: "sgemm %@ %dx%dx%d: element (%d, %d) is %.3g times the error bound off the "
                                       + "Double reference (kernel family %@)", form, m, n, k, worstAt.0, worstAt.1, worst,
                                       kernelFamily))
            }
        }
        return problems
    }
}
