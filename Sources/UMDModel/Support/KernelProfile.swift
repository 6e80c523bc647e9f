#if canImport(Glibc)
import Glibc
#endif

/// Opt-in time accounting per kernel family, for `umd-mpirun bench kernels`' breakdown.
///
/// Off by default: then each instrumented kernel pays one predictable branch. Turned on
/// only by a benchmark running on one thread, which is why unsynchronised globals are
/// acceptable here (`nonisolated(unsafe)`).
public enum KernelProfile {
    public enum Family: Int, CaseIterable, Sendable {
        case gemm, softmax, layerNorm, activation, elementwise, dropout, embedding

        public var name: String {
            switch self {
            case .gemm: return "sgemm"
            case .softmax: return "softmax (fwd+bwd)"
            case .layerNorm: return "LayerNorm (fwd+bwd)"
            case .activation: return "GELU/QuickGELU/tanh"
            case .elementwise: return "residual adds, copies, bias"
            case .dropout: return "dropout"
            case .embedding: return "embedding lookup/scatter"
            }
        }
    }

    /// One element-wise kernel (a finer split of the families), for its elements per width:
    /// `bench step --phases` times each at the step's widths in L1 (`bench elementwise`) to
    /// bound what the step's element-wise work could cost at best.
    public enum Kernel: String, CaseIterable, Sendable {
        case geluForward, geluBackward, quickGeluForward, quickGeluBackward, tanh
        case softmaxForward, softmaxBackward, layerNormForward, layerNormBackward
        case add, dropout, embedding

        public var family: Family {
            switch self {
            case .geluForward, .geluBackward, .quickGeluForward, .quickGeluBackward, .tanh: return .activation
            case .softmaxForward, .softmaxBackward: return .softmax
            case .layerNormForward, .layerNormBackward: return .layerNorm
            case .add: return .elementwise
            case .dropout: return .dropout
            case .embedding: return .embedding
            }
        }
    }

    /// A kernel and its row width (0 for kernels that are not row-wise).
    public struct KernelWidth: Hashable, Sendable {
        public let kernel: Kernel
        public let width: Int
    }

    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) public private(set) static var seconds = [Double](repeating: 0, count: Family.allCases.count)
    /// Elements each kernel touched at each row width (a row-wise kernel: rows × width), and
    /// the seconds it took.
    nonisolated(unsafe) public private(set) static var elements: [KernelWidth: (count: Int, seconds: Double)] = [:]

    public static func reset() {
        for i in seconds.indices { seconds[i] = 0 }
        elements = [:]
        gemmShapes = [:]
    }

    @inline(__always)
    static func now() -> Double { Profiler.now() }

    @inline(__always)
    static func measure<T>(_ kernel: Kernel, elements count: Int, width: Int = 0, _ body: () -> T) -> T {
        if !enabled { return body() }
        let start = now()
        let result = body()
        let elapsed = now() - start
        seconds[kernel.family.rawValue] += elapsed
        let key = KernelWidth(kernel: kernel, width: width), old = elements[key] ?? (0, 0)
        elements[key] = (old.count + count, old.seconds + elapsed)
        return result
    }
}

extension KernelProfile {
    /// Matrix-product FLOPs (2·m·n·k per sgemm) performed while `countingFlops` is on — the
    /// step benchmark's cross-check of its FLOP count from the model's shapes.
    nonisolated(unsafe) public static var countingFlops = false
    nonisolated(unsafe) public static var flops = 0.0


    /// One sgemm shape (transposition, m, n, k) and what its calls cost while `enabled`:
    /// `bench step --phases` prints the slowest shapes, i.e. where sgemm itself runs below
    /// its large-square rate.
    public struct GemmShape: Hashable, Sendable {
        public let kind: String
        public let m: Int, n: Int, k: Int
        /// Products per call (a batched call: attention's heads of one sample), 1 otherwise.
        public var batch = 1
        public var flops: Double { 2 * Double(m) * Double(n) * Double(k) * Double(batch) }
        /// The kind, with the products per call when batched ("nt heads×8").
        public var label: String { batch > 1 ? "\(kind)×\(batch)" : kind }
    }
    nonisolated(unsafe) public private(set) static var gemmShapes: [GemmShape: (calls: Int, seconds: Double)] = [:]

    /// The matrix-product seam's accounting (`Matmul.product`, and `HeadMatmul`'s register
    /// kernels, which stand in for the backend on attention heads): FLOPs counted, time and
    /// shape recorded.
    @inline(__always)
    static func matrixProduct(_ kind: String, _ m: Int, _ n: Int, _ k: Int, batch: Int = 1, _ body: () -> Void) {
        if countingFlops { flops += 2 * Double(m) * Double(n) * Double(k) * Double(batch) }
        if !enabled { return body() }
        let start = now()
        body()
        let elapsed = now() - start
        seconds[Family.gemm.rawValue] += elapsed
        let shape = GemmShape(kind: kind, m: m, n: n, k: k, batch: batch)
        let old = gemmShapes[shape] ?? (0, 0)
        gemmShapes[shape] = (old.calls + 1, old.seconds + elapsed)
    }
}
