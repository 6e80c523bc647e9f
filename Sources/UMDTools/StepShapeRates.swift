import Foundation
import UMDModel

/// The rate each matrix-product backend reaches on a step's own products: every shape the
/// step made (kind, m, n, k, calls per step), each run alone as many times as a step runs
/// it, through the same API the step calls (`Matmul`, or `HeadMatmul` for attention heads,
/// which routes to the backend where its register kernels do not apply). The step's shape
/// mix, not a large square, is what a step's products could reach at best on a backend:
/// `bench step --phases` measures its utilisation against the fastest one.
enum StepShapeRates {
    /// GFLOP/s of `choice` over `shapes` (calls per step), operands compact in memory, and each
    /// shape's seconds per step alone (to set against its time inside the step): the fastest
    /// of at least 5 repeats (and 20 ms) of a step's calls.
    static func rate(_ choice: MatmulChoice, shapes: [(KernelProfile.GemmShape, Int)], minimumSeconds: Double = 0.02)
        throws -> (rate: Double, secondsPerStep: [KernelProfile.GemmShape: Double]) {
        let chosen = Matmul.backend
        defer { Matmul.backend = chosen }
        Matmul.backend = try choice.makeBackend()
        var flops = 0.0, seconds = 0.0
        var secondsPerStep: [KernelProfile.GemmShape: Double] = [:]
        let packed = FloatBuffer()
        for (shape, calls) in shapes {
            let (m, n, k, batch) = (shape.m, shape.n, shape.k, shape.batch)
            let a = BlockBench.randomBuffer(batch * m * k), b = BlockBench.randomBuffer(batch * n * k)
            let c = BlockBench.randomBuffer(batch * m * n)
            /// A batched call over compact operands, one matrix after the other.
            func batched(_ tA: Bool, _ tB: Bool) -> () -> Void {
                { Matmul.batched(shape.kind, batch: batch, transposeA: tA, transposeB: tB, m: m, n: n, k: k, alpha: 1,
                                 a, lda: tA ? m : k, strideA: m * k, b, ldb: tB ? k : n, strideB: n * k,
                                 c, ldc: n, strideC: m * n) }
            }
            defer { for p in [a, b, c] { HugePageMemory.deallocate(p) } }
            let product: () -> Void
            switch shape.kind {
            case "nt": product = { Matmul.nt(m: m, n: n, k: k, a, lda: k, b, ldb: k, c, ldc: n, accumulate: false) }
            case "nn": product = { Matmul.nn(m: m, n: n, k: k, a, lda: k, b, ldb: n, c, ldc: n, accumulate: false) }
            case "tn": product = { Matmul.tn(m: m, n: n, k: k, a, lda: m, b, ldb: n, c, ldc: n, accumulate: false) }
            case "nt head": product = { HeadMatmul.nt(m: m, n: n, k: k, alpha: 1, a, lda: k, b, ldb: k, c, ldc: n, packed: packed) }
            case "nn head": product = { HeadMatmul.nn(m: m, n: n, k: k, a, lda: k, b, ldb: n, c, ldc: n, packed: packed) }
            case "tn head": product = { HeadMatmul.tn(m: m, n: n, k: k, a, lda: m, b, ldb: n, c, ldc: n, packed: packed) }
            case "nt heads": product = batched(false, true)
            case "nn heads": product = batched(false, false)
            case "tn heads": product = batched(true, false)
            default: continue
            }
            product()                                             // primitives created, caches warm
            // A step's worth of calls, repeated; the fastest repeat counts (the mean let one
            // disturbed repeat lower the rate, and so raise the step's utilisation against it).
            let fastest = fastestSeconds(atLeast: minimumSeconds) { for _ in 0..<calls { product() } }
            flops += shape.flops * Double(calls)
            seconds += fastest
            secondsPerStep[shape] = fastest
        }
        return (seconds > 0 ? flops / seconds / 1e9 : 0, secondsPerStep)
    }
}
