import RealModule
#if canImport(Glibc)
import Glibc
#endif

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
            var s: Float = 0
            if noise {
                var sum = 0.0
                for i in 0..<n { sum = Relaxed.sum(sum, Double(g[i])) }
                let mean = sum / Double(n)
                var sq = 0.0
                for i in 0..<n {
                    let d = Double(g[i]) - mean
                    sq = Relaxed.multiplyAdd(d, d, sq)
                }
                s = Float((sq / Double(n - 1)).squareRoot())
            }
            let lanes = FloatLanes.scalarCount
            var i = 0
            while i < n {
                let count = min(lanes, n - i)
                var value = k * VectorMath.loadPartialOrFull(g, i, count)
                if noise { value += s * VectorMath.normals(key: key, firstCounter: UInt64(view.offset + i)) }
                VectorMath.storePartialOrFull(value, g, i, count)
                i += lanes
            }
        }
    }
}
