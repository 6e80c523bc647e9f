import RealModule
#if canImport(Glibc)
import Glibc
#endif

/// How GM-Coord measures each modality's contribution (`--gm-contribution`, MODEL_SPEC.md
/// section 9 "Contribution variants").
public enum GMContribution: String, Sendable, Codable, CaseIterable {
    /// fc2's column halves on the pooled features, as the reference code (the default: every
    /// earlier result and debug-step's contract).
    case reference
    /// The whole head with the other modality replaced by its global-batch mean (Eq. 10's
    /// "head split into image and text parts", mean ablation).
    case ablation

    /// The number `debug-step` writes as `config.gm_contribution`.
    public var code: Int { self == .reference ? 0 : 1 }
}

/// Gradient-guided modality coordination (MODEL_SPEC.md section 9).
public enum GMCoord {
    /// The modulation coefficients from the global contribution sums, β = 0.1 by default:
    /// ρ_t = S_t/S_i, ρ_i = S_i/S_t; the dominant modality u (ρ_u > 1) gets
    /// k_u = 1 − tanh(β ρ_u), the other k = 1.
    public struct Coefficients: Sendable, Equatable {
        public var sumText: Double, sumImage: Double
        public var rhoText: Double, rhoImage: Double
        public var kText: Double, kImage: Double
    }

    public static func coefficients(sumText: Double, sumImage: Double, beta: Double = 0.1) -> Coefficients {
        // Both sums are sums of probabilities, so positive unless the batch is empty.
        let rhoT = sumImage > 0 ? sumText / sumImage : 1
        let rhoI = sumText > 0 ? sumImage / sumText : 1
        var kT = 1.0, kI = 1.0
        if rhoT > 1 { kT = 1 - tanh(beta * rhoT) } else if rhoI > 1 { kI = 1 - tanh(beta * rhoI) }
        return Coefficients(sumText: sumText, sumImage: sumImage, rhoText: rhoT, rhoImage: rhoI, kText: kT, kImage: kI)
    }

    /// The text group: `text.*`, `fusion.text_proj`, `fusion.text_layers.*`.
    public static func isTextGroup(_ name: String) -> Bool {
        name.hasPrefix("text.") || name.hasPrefix("fusion.text_proj.") || name.hasPrefix("fusion.text_layers.")
    }

    /// The image group: `vision.*`, `fusion.image_proj`, `fusion.image_layers.*`.
    public static func isImageGroup(_ name: String) -> Bool {
        name.hasPrefix("vision.") || name.hasPrefix("fusion.image_proj.") || name.hasPrefix("fusion.image_layers.")
    }

    /// Modulates the averaged gradients in place: for every tensor g of group u with more
    /// than one element, s = unbiased std of g (before scaling), g = k_u g + s n with
    /// n ~ N(0, 1) from `VectorMath.normals` keyed by (run seed, step) and counted by the
    /// element's arena offset, so every rank draws the same noise. Poolers,
    /// `fusion.type_embed` and heads are untouched. (At base this runs over ~200M elements a
    /// step: the noise is drawn 16 lanes at a time — the scalar Double Box–Muller it
    /// replaced took half of a fine-tuning step.)
    public static func modulate(_ store: ParameterStore, kText: Float, kImage: Float, noise: Bool, seed: UInt64,
                                step: Int) {
        let key = CounterRandom.key(CounterRandom.key(seed, CounterRandom.hash("gm.noise")), UInt64(step))
        for view in store.views where view.count > 1 {
            let k: Float
            if isTextGroup(view.name) { k = kText } else if isImageGroup(view.name) { k = kImage } else { continue }
            let g = store.grads + view.offset, n = view.count
            let s: Float = noise ? standardDeviation(g, count: n) : 0
            // Noise counters advance by 16 per lane group (c0 = arena offset of its first
            // element), so every element's draw is fixed by its place in the arena.
            // One loop per case: with `if noise` inside the lane loop, LLVM computed 2 of the
            // 16 noise lanes in scalar registers (found in the disassembly; same numbers).
            let lanes = FloatLanes.scalarCount
            var i = 0
            if noise {
                var states = VectorMath.NormalStates(key: key, firstCounter: UInt64(view.offset))
                while i < n {
                    let count = min(lanes, n - i)
                    let value = k * VectorMath.loadPartialOrFull(g, i, count) + s * VectorMath.normals(states)
                    VectorMath.storePartialOrFull(value, g, i, count)
                    states.advance()
                    i += lanes
                }
            } else {
                while i < n {
                    let count = min(lanes, n - i)
                    VectorMath.storePartialOrFull(k * VectorMath.loadPartialOrFull(g, i, count), g, i, count)
                    i += lanes
                }
            }
        }
    }

    /// Unbiased standard deviation of `count` (> 1) values in one pass: sums and sums of
    /// squares in 16 Float lanes over blocks of 1024 elements, carried in Double across
    /// blocks; var = (Σx² − (Σx)²/n)/(n − 1). Gradients have mean ≈ 0 next to their spread,
    /// so the one-pass form loses nothing that matters for a noise scale.
    static func standardDeviation(_ g: UnsafePointer<Float>, count n: Int) -> Float {
        var sum = 0.0, squares = 0.0
        var i = 0
        while i < n {
            let end = min(n, i + 1024)
            var s = FloatLanes(), q = FloatLanes()
            while i + FloatLanes.scalarCount <= end {
                let x = VectorMath.load(g, i)
                s += x
                q += x * x
                i += FloatLanes.scalarCount
            }
            while i < end {
                s[0] += g[i]
                q[0] += g[i] * g[i]
                i += 1
            }
            sum += Double(s.sum())
            squares += Double(q.sum())
        }
        let variance = max(0, (squares - sum * sum / Double(n)) / Double(n - 1))
        return Float(variance.squareRoot())
    }
}
