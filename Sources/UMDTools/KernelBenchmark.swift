import Foundation
import UMDModel

/// `umd-mpirun bench kernels`: forward+backward of one vision encoder block, one text
/// encoder layer and one fusion layer at a preset's shapes, as GFLOP/s next to plain
/// `cblas_sgemm` on a large square matrix measured in the same run, with a per-kernel
/// breakdown. Single process; no MPI.
public struct KernelBenchmark {
    public var presets: [ModelPreset]
    public var threads = 1
    /// Square sgemm size for the baseline.
    public var gemmSize = 2048
    /// Minimum seconds of timing per measurement.
    public var seconds = 1.5
    /// Batch per preset (nil: small 8, base 2).
    public var batch: Int? = nil
    /// Run exactly this many steps per block and print nothing else (heap allocation counts under valgrind).
    public var fixedSteps: Int? = nil

    /// The backend the blocks run on (the per-backend GEMM table covers all of them).
    public var matmul: MatmulChoice = .openblas

    public init(presets: [ModelPreset]) { self.presets = presets }

    public func run() throws {
        let chosen = presets
        BLAS.setThreadCount(threads)
        OneDNNBackend.setThreadCount(threads)
        if let fixedSteps {
            for preset in chosen {
                for bench in BlockBench.all(preset: preset, batch: batch ?? 2) {
                    for _ in 0..<fixedSteps { bench.step() }
                }
            }
            return
        }
        try printBackendRates()
        Matmul.backend = try matmul.makeBackend()
        let gemm = BLAS.sgemmRate(size: gemmSize)
        print("# umd kernel benchmark: blocks on matmul \(matmul.description), \(threads) thread(s)")
        print(String(format: "# baseline: cblas_sgemm %dx%dx%d  %.2f GFLOP/s", gemmSize, gemmSize, gemmSize, gemm))
        print("# block FLOPs count the matrix products only (forward + 2x for backward)")
        for preset in chosen {
            let b = batch ?? (preset.name == "base" ? 2 : 8)
            for bench in BlockBench.all(preset: preset, batch: b) {
                let (perCall, profiledCall, breakdown) = timeBlock(bench)
                let gflops = bench.flops / perCall / 1e9
                print(padded(preset.name, 6) + " " + padded(bench.label, 48)
                      + String(format: " %9.2f ms  %7.2f GFLOP/s  %5.1f%% of sgemm", perCall * 1e3, gflops,
                               100 * gflops / gemm))
                // Shares of one profiled call (timed separately: the timers add a little).
                var accounted = 0.0
                for family in KernelProfile.Family.allCases where breakdown[family.rawValue] > 0 {
                    accounted += breakdown[family.rawValue]
                    print("         " + padded(family.name, 36)
                          + String(format: " %6.1f%%", 100 * breakdown[family.rawValue] / profiledCall))
                }
                print("         " + padded("other (accumulate, zeroing, loops)", 36)
                      + String(format: " %6.1f%%", 100 * max(0, profiledCall - accounted) / profiledCall))
            }
            printHeadProducts(preset, gemm: gemm)
        }
    }

    /// GFLOP/s of every backend this CPU runs on the shapes a step is made of (m×n×k; the
    /// Linear forward form, A·Bᵀ), measured in this run, with the fastest named.
    func printBackendRates() throws {
        let backends: [MatmulChoice] = MatmulChoice.allCases.filter { $0 != .bf16 || OneDNNBackend.hasBFloat16 }
        let shapes = [(1024, 1024, 1024), (2048, 768, 768), (650, 768, 3072), (128, 768, 768), (650, 3072, 768),
                      (65, 65, 32)]
        print("# matrix products per backend (GFLOP/s, \(threads) thread(s)): "
              + backends.map(\.description).joined(separator: ", ")
              + (OneDNNBackend.hasBFloat16 ? "" : "; bf16 not offered: no AVX512-BF16 or AMX"))
        print(padded("# m x n x k", 22) + backends.map { padded($0.rawValue, 11) }.joined() + "fastest")
        for (m, n, k) in shapes {
            let a = BlockBench.randomBuffer(m * k), b = BlockBench.randomBuffer(n * k), c = BlockBench.randomBuffer(m * n)
            defer { for p in [a, b, c] { HugePageMemory.deallocate(p) } }
            var rates: [Double] = []
            for choice in backends {
                Matmul.backend = try choice.makeBackend()
                rates.append(rate(2 * Double(m * n * k)) {
                    Matmul.nt(m: m, n: n, k: k, a, lda: k, b, ldb: k, c, ldc: n, accumulate: false)
                })
            }
            let best = rates.indices.max { rates[$0] < rates[$1] }!
            print(padded("  \(m) x \(n) x \(k)", 22) + rates.map { padded(String(format: "%.1f", $0), 11) }.joined()
                  + backends[best].rawValue + String(format: " (%.2fx openblas)", rates[best] / rates[0]))
        }
        Matmul.backend = Matmul.reference
    }

    /// One attention head's products at the preset's token counts (text; image tokens kept
    /// by MR-Pretrain's masking; all image tokens, as the teacher and fine-tuning see them):
    /// `HeadMatmul` against `cblas_sgemm` on the same operands.
    func printHeadProducts(_ preset: ModelPreset, gemm: Double) {
        let W = preset.width, hd = preset.width / preset.heads
        print("\(preset.name) attention head products (head width \(hd), rows \(W) apart): HeadMatmul vs sgemm")
        for tokens in [preset.textLength, 1 + preset.keptPatchCount, 1 + preset.patchCount] {
            let (L, packed) = (tokens, FloatBuffer())
            let q = BlockBench.randomBuffer(L * W), k = BlockBench.randomBuffer(L * W)
            let s = BlockBench.randomBuffer(L * L), out = BlockBench.randomBuffer(L * W)
            defer { for p in [q, k, s, out] { HugePageMemory.deallocate(p) } }
            let scores = 2 * Double(L * L * hd)
            let cases: [(String, () -> Void, () -> Void)] = [
                ("nt scores  Q Kᵀ  ", { HeadMatmul.nt(m: L, n: L, k: hd, alpha: 0.125, q, lda: W, k, ldb: W, s, ldc: L, packed: packed) },
                 { Matmul.nt(m: L, n: L, k: hd, alpha: 0.125, q, lda: W, k, ldb: W, s, ldc: L, accumulate: false) }),
                ("nn context P V   ", { HeadMatmul.nn(m: L, n: hd, k: L, s, lda: L, k, ldb: W, out, ldc: W, packed: packed) },
                 { Matmul.nn(m: L, n: hd, k: L, s, lda: L, k, ldb: W, out, ldc: W, accumulate: false) }),
                ("tn dV = Pᵀ dC    ", { HeadMatmul.tn(m: L, n: hd, k: L, s, lda: L, q, ldb: W, out, ldc: W, packed: packed) },
                 { Matmul.tn(m: L, n: hd, k: L, s, lda: L, q, ldb: W, out, ldc: W, accumulate: false) }),
            ]
            for (label, kernel, blas) in cases {
                let mine = rate(scores, kernel), theirs = rate(scores, blas)
                print("  " + padded("L \(L)", 7) + label + String(format: " %7.2f GFLOP/s  sgemm %7.2f  ratio %.2f  (%.0f%% of the square)",
                                                                  mine, theirs, mine / theirs, 100 * mine / gemm))
            }
        }
    }

    /// GFLOP/s of `body` doing `flops` each call, timed for about 0.3 s after a warm-up.
    func rate(_ flops: Double, _ body: () -> Void) -> Double {
        body()
        return flops / KernelBenchmark.secondsPerCall(atLeast: 0.3, body) / 1e9
    }

    /// Mean seconds per call of `body`, repeated for at least `seconds` and 3 calls.
    static func secondsPerCall(atLeast seconds: Double, _ body: () -> Void) -> Double {
        var calls = 0
        let start = now()
        repeat {
            body()
            calls += 1
        } while now() - start < seconds || calls < 3
        return (now() - start) / Double(calls)
    }

    func padded(_ text: String, _ width: Int) -> String {
        text + String(repeating: " ", count: max(0, width - text.count))
    }

    /// Mean seconds per forward+backward; the seconds of one profiled call and its
    /// seconds per kernel family.
    func timeBlock(_ bench: BlockBench) -> (Double, Double, [Double]) {
        bench.step()  // sizes the buffers
        let perCall = KernelBenchmark.secondsPerCall(atLeast: seconds) { bench.step() }
        KernelProfile.reset()
        KernelProfile.enabled = true
        let profiledStart = KernelBenchmark.now()
        bench.step()
        let profiled = KernelBenchmark.now() - profiledStart
        KernelProfile.enabled = false
        return (perCall, profiled, KernelProfile.seconds)
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

/// One layer set up at a preset's shapes, with random weights and inputs.
struct BlockBench {
    let label: String
    let flops: Double
    let step: () -> Void

    static func all(preset: ModelPreset, batch: Int) -> [BlockBench] {
        let D = preset.width, H = preset.heads
        let imageTokens = 1 + preset.patchCount, textTokens = preset.textLength
        // Matrix FLOPs per token of a transformer layer: 4 projections (8 D²) + FFN (16 D²)
        // + scores and weighted sum (4 · keys · D); backward costs twice the forward.
        func layerFlops(tokens: Int, keys: Int) -> Double {
            3 * Double(batch * tokens) * (24 * Double(D * D) + 4 * Double(keys * D))
        }

        let vision: BlockBench = {
            let layout = ParameterLayout()
            let params = PreLNBlockParams.declare(layout, "vision.blocks.0", width: D, heads: H)
            let store = ParameterStore(layout: layout)
            store.initialize(seed: 1)
            let block = PreLNBlock(params)
            let n = batch * imageTokens * D
            let x = randomBuffer(n), dy = randomBuffer(n), dx = randomBuffer(n)
            return BlockBench(label: "vision block [\(batch)x\(imageTokens)x\(D)]",
                              flops: layerFlops(tokens: imageTokens, keys: imageTokens)) {
                block.forward(store, x, batch: batch, length: imageTokens)
                block.backward(store, dy, dx: dx)
            }
        }()

        // Every text token is a key (an additive mask of zeros), for the text layer and the fusion.
        let mask = UnsafeMutablePointer<Float>.allocate(capacity: batch * textTokens)
        mask.initialize(repeating: 0, count: batch * textTokens)

        let text: BlockBench = {
            let layout = ParameterLayout()
            let params = PostLNLayerParams.declare(layout, "text.layers.0", width: D, heads: H)
            let store = ParameterStore(layout: layout)
            store.initialize(seed: 2)
            let layer = PostLNLayer(params, name: "text.layers.0")
            let n = batch * textTokens * D
            let x = randomBuffer(n), dy = randomBuffer(n), dx = randomBuffer(n)
            let ctx = ForwardContext(dropout: 0.1, passKey: 7, sampleIDs: (0..<batch).map { UInt64($0) })
            return BlockBench(label: "text layer [\(batch)x\(textTokens)x\(D)] p=0.1",
                              flops: layerFlops(tokens: textTokens, keys: textTokens)) {
                layer.forward(store, x, batch: batch, length: textTokens, keyMask: mask, ctx)
                layer.backward(store, dy, dx: dx)
            }
        }()

        let fusion: BlockBench = {
            let layout = ParameterLayout()
            let params = CoAttentionLayerParams.declare(layout, "fusion.image_layers.0", width: D, heads: H)
            let store = ParameterStore(layout: layout)
            store.initialize(seed: 3)
            let layer = CoAttentionLayer(params, name: "fusion.image_layers.0")
            let nx = batch * imageTokens * D, ny = batch * textTokens * D
            let x = randomBuffer(nx), y = randomBuffer(ny), dOut = randomBuffer(nx)
            let dx = randomBuffer(nx), dy = randomBuffer(ny)
            let ctx = ForwardContext(dropout: 0.1, passKey: 9, sampleIDs: (0..<batch).map { UInt64($0) })
            // Image stream: self-attention over image tokens, cross-attention onto the text
            // (q, o on image tokens; k, v on text tokens).
            let selfPart = 3 * Double(batch * imageTokens) * (8 * Double(D * D) + 4 * Double(imageTokens * D))
            let crossPart = 3 * (Double(batch * imageTokens) * (4 * Double(D * D) + 4 * Double(textTokens * D))
                                 + Double(batch * textTokens) * 4 * Double(D * D))
            let ffnPart = 3 * Double(batch * imageTokens) * 16 * Double(D * D)
            return BlockBench(label: "fusion image layer [\(batch)x\(imageTokens)|\(textTokens)x\(D)] p=0.1",
                              flops: selfPart + crossPart + ffnPart) {
                layer.forward(store, x, y, batch: batch, length: imageTokens, otherLength: textTokens,
                              ownKeyMask: nil, otherKeyMask: mask, ctx)
                layer.backward(store, dOut, dx: dx, dy: dy)
            }
        }()
        return [vision, text, fusion]
    }

    /// `n` normal values in memory like the step's (`HugePageMemory`: huge pages from 2 MiB),
    /// so a product alone and the same product in the step read alike; given back with
    /// `HugePageMemory.deallocate`.
    static func randomBuffer(_ n: Int) -> UnsafeMutablePointer<Float> {
        let p = HugePageMemory.allocate(Float.self, capacity: n)
        for i in 0..<n { p[i] = Float(CounterRandom.normal(42, UInt64(i))) }
        return p
    }
}
