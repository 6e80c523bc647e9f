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

    public static func reset() { for i in seconds.indices { seconds[i] = 0 }; gemmShapes = [:] }

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

/// Seconds an objective spends in its parts, for `bench step --phases` (the clock is read
/// a handful of times per step, so it is always on). `lap(part)` charges the time since the
/// previous lap (or `start`) to `part`.
public final class ObjectiveTiming: @unchecked Sendable {
    public enum Part: Int, CaseIterable, Sendable {
        case studentForward, teacherForward, headsAndLosses, backward
    }
    public private(set) var seconds = [Double](repeating: 0, count: Part.allCases.count)
    private var last = 0.0

    public init() {}
    func start() { last = KernelProfile.now() }
    func lap(_ part: Part) {
        let now = KernelProfile.now()
        seconds[part.rawValue] += now - last
        last = now
    }
    public func reset() { seconds = [Double](repeating: 0, count: Part.allCases.count) }
}

extension KernelProfile {
    /// Matrix-product FLOPs (2·m·n·k per sgemm) performed while `countingFlops` is on — the
    /// step benchmark's cross-check of its FLOP count from the model's shapes.
    nonisolated(unsafe) public static var countingFlops = false
    nonisolated(unsafe) public static var flops = 0.0

    @inline(__always)
    static func countGemm(_ m: Int, _ n: Int, _ k: Int) {
        if countingFlops { flops += 2 * Double(m) * Double(n) * Double(k) }
    }

    /// One sgemm shape (transposition, m, n, k) and what its calls cost while `enabled`:
    /// `bench step --phases` prints the slowest shapes, i.e. where sgemm itself runs below
    /// its large-square rate.
    public struct GemmShape: Hashable, Sendable {
        public let kind: String
        public let m: Int, n: Int, k: Int
        public var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
    }
    nonisolated(unsafe) public private(set) static var gemmShapes: [GemmShape: (calls: Int, seconds: Double)] = [:]

    @inline(__always)
    static func measureGemm(_ kind: String, _ m: Int, _ n: Int, _ k: Int, _ body: () -> Void) {
        if !enabled { return body() }
        let start = now()
        body()
        let elapsed = now() - start
        seconds[Family.gemm.rawValue] += elapsed
        let shape = GemmShape(kind: kind, m: m, n: n, k: k)
        let old = gemmShapes[shape] ?? (0, 0)
        gemmShapes[shape] = (old.calls + 1, old.seconds + elapsed)
    }
}
