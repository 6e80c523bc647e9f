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

    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) public private(set) static var seconds = [Double](repeating: 0, count: Family.allCases.count)

    public static func reset() { for i in seconds.indices { seconds[i] = 0 } }

    @inline(__always)
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    @inline(__always)
    static func measure<T>(_ family: Family, _ body: () -> T) -> T {
        if !enabled { return body() }
        let start = now()
        let result = body()
        seconds[family.rawValue] += now() - start
        return result
    }
}
