import COneDNN
import COpenBLAS
#if canImport(Glibc)
import Glibc
#endif

/// One row-major product C[m, n] = alpha · op(A) · op(B) (+ bias[n] on every row) (+ C when
/// `accumulate`), op(A) = A[m, k] or (`transposeA`) A stored [k, m]; op(B) = B[k, n] or
/// (`transposeB`) B stored [n, k]; leading dimensions `lda`, `ldb`, `ldc`. A bias comes with
/// alpha 1 (the Linear forward). What a backend computes.
public struct MatmulProblem {
    public var transposeA: Bool, transposeB: Bool
    public var m: Int, n: Int, k: Int
    public var alpha: Float
    public var a: UnsafePointer<Float>, lda: Int
    public var b: UnsafePointer<Float>, ldb: Int
    public var c: UnsafeMutablePointer<Float>, ldc: Int
    public var accumulate: Bool
    public var bias: UnsafePointer<Float>? = nil
    /// B is a parameter tensor (compact) that no one writes while a
    /// `Matmul.reusingParameterCopies` scope is open: a bf16 backend converts it once per scope.
    public var parameterB = false
    /// `batch` products of this shape in one call (attention's heads of one sample): the i-th
    /// reads A + i·batchStrideA, B + i·batchStrideB and writes C + i·batchStrideC. No bias.
    public var batch = 1
    public var batchStrideA = 0, batchStrideB = 0, batchStrideC = 0
    /// A already rounded to bf16 by the caller (`Matmul.roundToBFloat16`), in the layout a
    /// rounding backend converts A into: compact, each matrix of a batch its stored rows ×
    /// columns after the previous. A backend that `takesRoundedOperands` reads it instead of
    /// converting A (the same numbers); every other backend reads `a`, which stays valid.
    public var aRounded: UnsafePointer<UInt16>? = nil
    /// B rounded by the caller, the same way (ignored when the backend has its own copy of a
    /// `parameterB`).
    public var bRounded: UnsafePointer<UInt16>? = nil

    /// For backends without batched products: each product of a batch, alone, through `compute`.
    /// Returns false (nothing done) for a single product.
    func forEachOfBatch(_ compute: (MatmulProblem) -> Void) -> Bool {
        guard batch > 1 else { return false }
        for i in 0..<batch {
            var one = self
            one.batch = 1
            one.a = a + i * batchStrideA; one.b = b + i * batchStrideB; one.c = c + i * batchStrideC
            // Rounded operands are compact: matrix i starts after i whole matrices.
            one.aRounded = aRounded.map { $0 + i * m * k }
            one.bRounded = bRounded.map { $0 + i * k * n }
            compute(one)
        }
        return true
    }

    /// OpenBLAS has no bias: each row of C starts as the bias (added to C's old contents when
    /// accumulating) and sgemm adds the product onto it (beta 1). Returns sgemm's beta.
    func seedBias() -> Float {
        guard let bias else { return accumulate ? 1 : 0 }
        for r in 0..<m {
            let row = c + r * ldc
            if accumulate { for j in 0..<n { row[j] += bias[j] } } else { row.update(from: bias, count: n) }
        }
        return 1
    }
}

/// How the model's matrix products are computed: the one seam every product goes through
/// (`Matmul`). OpenBLAS's sgemm is the default and the reference; the bf16 emulation of
/// the accuracy tests is another; oneDNN (fp32 at the core's full width, bf16) is to come
/// (issue 22).
public protocol MatmulBackend: AnyObject, Sendable {
    /// A short name for logs and benchmarks ("openblas", …).
    var name: String { get }
    /// Whether it computes in fp32 throughout (inputs not rounded).
    var isFloat32: Bool { get }
    func compute(_ p: MatmulProblem)
    /// A scope in which products marked `parameterB` may reuse what the backend made of B the
    /// first time (bf16: its rounded copy); `end` forgets it all. Default: nothing to reuse.
    func beginParameterReuse()
    func endParameterReuse()
    /// A scope (nestable) in which an operand the backend had to convert (bf16: rounded) is
    /// converted once and reused by the scope's later products that read the same matrix.
    /// Default: nothing to share.
    func beginOperandSharing()
    func endOperandSharing()
    /// Whether it reads `MatmulProblem.aRounded` and `bRounded` when given (bf16); callers round only then.
    var takesRoundedOperands: Bool { get }
}

extension MatmulBackend {
    public func beginParameterReuse() {}
    public func endParameterReuse() {}
    public func beginOperandSharing() {}
    public func endOperandSharing() {}
    public var takesRoundedOperands: Bool { false }
}

/// OpenBLAS's `cblas_sgemm`: the default backend and the reference.
public final class OpenBLASBackend: MatmulBackend {
    public init() {}
    public var name: String { "openblas" }
    public var isFloat32: Bool { true }
    @inline(__always)
    public func compute(_ p: MatmulProblem) {
        if p.forEachOfBatch(compute) { return }
        let beta = p.seedBias()
        cblas_sgemm(CblasRowMajor, p.transposeA ? CblasTrans : CblasNoTrans, p.transposeB ? CblasTrans : CblasNoTrans,
                    Int32(p.m), Int32(p.n), Int32(p.k), p.alpha, p.a, Int32(p.lda), p.b, Int32(p.ldb),
                    beta, p.c, Int32(p.ldc))
    }
}

/// Matrix products on row-major Float memory (DESIGN.md idea 3), all through one backend
/// call (`product`), where they are also counted and timed (`KernelProfile`).
/// `accumulate` = true adds into C (beta 1), false overwrites it (beta 0).
public enum Matmul {
    /// The process's backend, chosen once at start-up before any product (OpenBLAS).
    nonisolated(unsafe) public static var backend: any MatmulBackend = reference

    /// Runs `body` — a step's forward and backward passes, during which no parameter changes —
    /// letting the backend keep what it made of parameter operands (the Linear weights, marked
    /// `parameterB`) across the products that use them: bf16 rounds each weight once per
    /// step instead of at every product (student forward, recomputes, backward). Nothing of
    /// it outlives the scope, so an update between two scopes is always seen.
    public static func reusingParameterCopies<T>(_ body: () throws -> T) rethrows -> T {
        let backend = current
        backend.beginParameterReuse()
        defer { backend.endParameterReuse() }
        return try body()
    }

    /// Runs `body`, a few products that read some operand more than once (a Linear's output
    /// gradient: its input-gradient and weight-gradient products; attention's q, k, dC),
    /// letting the backend convert such an operand once (bf16: 2 of a Linear backward's 3
    /// operand conversions become 1 for dY). The contract: during `body` no memory its
    /// products read is written except by its own products (whose outputs the backend
    /// watches) — element-wise kernels writing a matrix that a product already read must
    /// run outside. Products' results are bitwise those without the scope.
    @inline(__always)
    public static func sharingOperands<T>(_ body: () throws -> T) rethrows -> T {
        let backend = current
        backend.beginOperandSharing()
        defer { backend.endOperandSharing() }
        return try body()
    }

    /// The reference backend (OpenBLAS sgemm).
    public static let reference = OpenBLASBackend()

    /// A backend for the calling thread only, over `backend` (nil: none). Tests use it
    /// (`BFloat16Products.backend`) so that tests running at the same time are not touched.
    static var threadBackend: (any MatmulBackend)? {
        @inline(__always) get {
            guard let raw = pthread_getspecific(threadBackendKey) else { return nil }
            return Unmanaged<BackendBox>.fromOpaque(raw).takeUnretainedValue().backend
        }
        set {
            if let old = pthread_getspecific(threadBackendKey) { Unmanaged<BackendBox>.fromOpaque(old).release() }
            let box = newValue.map { Unmanaged.passRetained(BackendBox($0)).toOpaque() }
            pthread_setspecific(threadBackendKey, box.map { UnsafeRawPointer($0) })
        }
    }

    /// The backend products on this thread go to.
    @inline(__always)
    public static var current: any MatmulBackend { threadBackend ?? backend }

    /// Whether `HeadMatmul` may compute attention-head products in its own fp32 register
    /// kernels on this thread: with an fp32 backend (the reference, oneDNN fp32); a backend
    /// that changes the products' numerics (bf16, the emulation) must see every product.
    @inline(__always)
    static var headKernelsAllowed: Bool { current.isFloat32 }

    /// The seam: every product of the model, counted and timed here.
    @inline(__always)
    static func product(_ kind: String, transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                        _ c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
                        bias: UnsafePointer<Float>? = nil, parameterB: Bool = false,
                        aRounded: UnsafePointer<UInt16>? = nil, bRounded: UnsafePointer<UInt16>? = nil) {
        precondition(bias == nil || alpha == 1, "Matmul: a product with a bias has alpha 1")
        let backend = current
        KernelProfile.matrixProduct(kind, m, n, k) {
            var p = MatmulProblem(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                                  a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, accumulate: accumulate,
                                  bias: bias, parameterB: parameterB)
            (p.aRounded, p.bRounded) = (aRounded, bRounded)
            backend.compute(p)
        }
    }

    /// C[M,N] = alpha · A[M,K] · B[N,K]^T (+ C).  The Linear forward: y = x W^T.
    @inline(__always)
    public static func nt(m: Int, n: Int, k: Int, alpha: Float = 1,
                          _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                          _ c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        product("nt", transposeA: false, transposeB: true, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb,
                c, ldc: ldc, accumulate: accumulate)
    }

    /// C[M,N] = alpha · A[M,K] · B[K,N] (+ C).  The Linear input gradient: dx = dy W.
    @inline(__always)
    public static func nn(m: Int, n: Int, k: Int, alpha: Float = 1,
                          _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                          _ c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        product("nn", transposeA: false, transposeB: false, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb,
                c, ldc: ldc, accumulate: accumulate)
    }

    /// C[M,N] = alpha · A[K,M]^T · B[K,N] (+ C).  The Linear weight gradient: dW += dy^T x.
    /// `bRounded`: B rounded by the caller (see `MatmulProblem.bRounded`).
    @inline(__always)
    public static func tn(m: Int, n: Int, k: Int, alpha: Float = 1,
                          _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                          _ c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
                          bRounded: UnsafePointer<UInt16>? = nil) {
        product("tn", transposeA: true, transposeB: false, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb,
                c, ldc: ldc, accumulate: accumulate, bRounded: bRounded)
    }

    /// `batch` products C_i = alpha · op(A_i) · op(B_i) (beta 0) in one backend call, operand i
    /// `strideA`, `strideB`, `strideC` elements after operand 0 — attention's heads of one
    /// sample, for the backends that must see every head product (bf16): oneDNN runs them as
    /// one batched primitive, far cheaper than one call per head (`bench step --phases`).
    /// `aRounded`: A rounded by the caller (see `MatmulProblem.aRounded`).
    public static func batched(_ kind: String, batch: Int, transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                               alpha: Float, _ a: UnsafePointer<Float>, lda: Int, strideA: Int,
                               _ b: UnsafePointer<Float>, ldb: Int, strideB: Int,
                               _ c: UnsafeMutablePointer<Float>, ldc: Int, strideC: Int,
                               aRounded: UnsafePointer<UInt16>? = nil) {
        let backend = current
        KernelProfile.matrixProduct(kind, m, n, k, batch: batch) {
            var p = MatmulProblem(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                                  a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, accumulate: false)
            (p.batch, p.batchStrideA, p.batchStrideB, p.batchStrideC) = (batch, strideA, strideB, strideC)
            p.aRounded = aRounded
            backend.compute(p)
        }
    }

    /// `count` floats rounded to bfloat16 into `out`, exactly as the bf16 backend rounds its
    /// operands (nearest even; AVX512-BF16's conversion where the CPU has it): for a caller
    /// that rounds an operand while it is still in cache (`MatmulProblem.aRounded`).
    @inline(__always)
    public static func roundToBFloat16(_ x: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<UInt16>) {
        umd_onednn_to_bf16(x, Int64(count), out)
    }

    // The three products a Linear layer needs (y = x W^T + b), named for what they compute.

    /// out[rows, outF] = x[rows, inF] · W[outF, inF]^T + b: the bias goes to the backend with
    /// the product (oneDNN adds it as it writes C; OpenBLAS seeds C's rows with it).
    /// `reusedWeight`: W is a trained weight, used again by backward (see `reusingParameterCopies`).
    /// `xRounded`: x rounded by the caller (`MatmulProblem.aRounded`).
    public static func linearForward(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                                     _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                                     rows: Int, inFeatures: Int, outFeatures: Int, reusedWeight: Bool = false,
                                     xRounded: UnsafePointer<UInt16>? = nil) {
        product("nt", transposeA: false, transposeB: true, m: rows, n: outFeatures, k: inFeatures, alpha: 1,
                x, lda: inFeatures, weight, ldb: inFeatures, out, ldc: outFeatures, accumulate: false, bias: bias,
                parameterB: reusedWeight, aRounded: xRounded)
    }

    /// dx[rows, inF] += dy[rows, outF] · W[outF, inF]  (= when `accumulate` is false).
    public static func linearInputGradient(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>,
                                           _ weight: UnsafePointer<Float>,
                                           rows: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool = true) {
        product("nn", transposeA: false, transposeB: false, m: rows, n: inFeatures, k: outFeatures, alpha: 1,
                dy, lda: outFeatures, weight, ldb: inFeatures, dx, ldc: inFeatures, accumulate: accumulate,
                parameterB: true)
    }

    /// dW[outF, inF] += dy[rows, outF]^T · x[rows, inF] (= with `accumulate` false: dW's old
    /// contents are not read);  db[outF] += Σ_rows dy.  `xRounded`: x rounded by the caller.
    public static func linearParameterGradients(_ dWeight: UnsafeMutablePointer<Float>, accumulate: Bool,
                                                _ dBias: UnsafeMutablePointer<Float>?,
                                                _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
                                                rows: Int, inFeatures: Int, outFeatures: Int,
                                                xRounded: UnsafePointer<UInt16>? = nil) {
        tn(m: outFeatures, n: inFeatures, k: rows, dy, lda: outFeatures, x, ldb: inFeatures,
           dWeight, ldc: inFeatures, accumulate: accumulate, bRounded: xRounded)
        if let dBias {
            for r in 0..<rows {
                let row = dy + r * outFeatures
                for o in 0..<outFeatures { dBias[o] += row[o] }
            }
        }
    }
}

/// Holds a thread's backend behind its pthread slot.
final class BackendBox {
    let backend: any MatmulBackend
    init(_ backend: any MatmulBackend) { self.backend = backend }
}

/// The thread-specific slot behind `Matmul.threadBackend`.
private let threadBackendKey: pthread_key_t = {
    var key = pthread_key_t()
    precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed")
    return key
}()

/// The numerics of bf16 matrix products with fp32 accumulation (what AVX512-BF16's vdpbf16ps,
/// AMX and oneDNN's bf16 GEMMs compute): inputs rounded to bfloat16 (nearest even), their
/// products exact in fp32, sums in fp32. Emulated by rounding copies of the operands and
/// calling sgemm on them — only the summation order differs from the hardware. A backend
/// for the accuracy tests (set per thread with `Matmul.threadBackend`); slower than fp32,
/// never a run mode.
final class BFloat16Products: MatmulBackend, @unchecked Sendable {
    // @unchecked Sendable: the scratch is one test's at a time (the tests that use it are serialized).
    static let backend = BFloat16Products()
    let roundedA = FloatBuffer(), roundedB = FloatBuffer()

    var name: String { "bf16-emulation" }
    var isFloat32: Bool { false }
    /// Reads operands the caller rounded, as the bf16 backend does, so the paths that round in
    /// the caller (the FFN's activation, attention's probabilities and dS) run under the
    /// emulation on every CPU, not only where the CPU has bf16.
    var takesRoundedOperands: Bool { true }

    /// `count` bf16 values (a rounded operand, compact) widened to fp32.
    func widened(_ p: UnsafePointer<UInt16>, count: Int, into buffer: FloatBuffer) -> UnsafePointer<Float> {
        let out = buffer.ensure(count)
        for i in 0..<count { out[i] = BFloat16.unpack(p[i]) }
        return UnsafePointer(out)
    }

    /// rows × columns of `p` (rows `ld` apart), rounded to bf16, compact (rows `columns` apart).
    func rounded(_ p: UnsafePointer<Float>, rows: Int, columns: Int, ld: Int, into buffer: FloatBuffer)
        -> UnsafePointer<Float> {
        let out = buffer.ensure(rows * columns)
        for r in 0..<rows {
            for c in 0..<columns { out[r * columns + c] = BFloat16.round(p[r * ld + c]) }
        }
        return UnsafePointer(out)
    }

    /// The product on bf16-rounded copies of A and B, computed by the reference.
    func compute(_ p: MatmulProblem) {
        if p.forEachOfBatch(compute) { return }
        let (aRows, aColumns) = p.transposeA ? (p.k, p.m) : (p.m, p.k)
        let (bRows, bColumns) = p.transposeB ? (p.n, p.k) : (p.k, p.n)
        var q = p   // the bias stays fp32 (as oneDNN's), added by the reference
        q.a = p.aRounded.map { widened($0, count: aRows * aColumns, into: roundedA) }
            ?? rounded(p.a, rows: aRows, columns: aColumns, ld: p.lda, into: roundedA)
        q.lda = aColumns
        q.b = p.bRounded.map { widened($0, count: bRows * bColumns, into: roundedB) }
            ?? rounded(p.b, rows: bRows, columns: bColumns, ld: p.ldb, into: roundedB)
        q.ldb = bColumns
        Matmul.reference.compute(q)
    }
}
