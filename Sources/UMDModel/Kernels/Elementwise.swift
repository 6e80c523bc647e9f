import RealModule
#if canImport(Glibc)
import Glibc
#endif

/// Elementwise and row-wise kernels on raw Float memory. Row pointers are hoisted and
/// reductions use `Relaxed` arithmetic so the compiler may vectorise them.
public enum Elementwise {
    // MARK: Activations (forward writes out; backward accumulates into dx)

    /// GELU, exact erf form: x · Φ(x).
    public static func geluForward(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        KernelProfile.measure(.activation) {
            for i in 0..<count {
                let v = x[i]
                out[i] = 0.5 * v * (1 + erff(v * 0.70710678118654752))
            }
        }
    }

    /// dx += dy · (Φ(x) + x φ(x)).
    public static func geluBackward(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>,
                                    _ x: UnsafePointer<Float>, count: Int) {
        KernelProfile.measure(.activation) {
            for i in 0..<count {
                let v = x[i]
                let cdf = 0.5 * (1 + erff(v * 0.70710678118654752))
                let pdf = 0.39894228040143268 * expf(-0.5 * v * v)
                dx[i] += dy[i] * (cdf + v * pdf)
            }
        }
    }

    /// QuickGELU (CLIP): x · σ(1.702 x).
    public static func quickGeluForward(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        KernelProfile.measure(.activation) {
            for i in 0..<count {
                let v = x[i]
                out[i] = v / (1 + expf(-1.702 * v))
            }
        }
    }

    /// dx += dy · (σ + 1.702 x σ (1 − σ)), σ = σ(1.702 x).
    public static func quickGeluBackward(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>,
                                         _ x: UnsafePointer<Float>, count: Int) {
        KernelProfile.measure(.activation) {
            for i in 0..<count {
                let v = x[i]
                let s = 1 / (1 + expf(-1.702 * v))
                dx[i] += dy[i] * (s + 1.702 * v * s * (1 - s))
            }
        }
    }

    public static func tanhForward(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        KernelProfile.measure(.activation) {
            for i in 0..<count { out[i] = tanhf(x[i]) }
        }
    }

    /// dx += dy · (1 − y²), from the saved output y = tanh(x).
    public static func tanhBackward(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>,
                                    _ y: UnsafePointer<Float>, count: Int) {
        KernelProfile.measure(.activation) {
            for i in 0..<count { dx[i] += dy[i] * (1 - y[i] * y[i]) }
        }
    }

    // MARK: Residuals and copies

    /// out = a + b.
    public static func add(_ out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                           count: Int) {
        KernelProfile.measure(.elementwise) {
            for i in 0..<count { out[i] = a[i] + b[i] }
        }
    }

    /// y += x.
    public static func accumulate(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { y[i] += x[i] }
    }

    /// y += alpha · x.
    public static func accumulate(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, scale alpha: Float,
                                  count: Int) {
        for i in 0..<count { y[i] += alpha * x[i] }
    }

    /// Σ x · y in Float with relaxed (vectorisable) accumulation.
    public static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int) -> Float {
        var s: Float = 0
        for i in 0..<count { s = Relaxed.multiplyAdd(x[i], y[i], s) }
        return s
    }

    // MARK: Softmax

    /// Row-wise softmax of `rows` rows of `width`, in place, with an optional additive
    /// per-column mask (0 for allowed, a large negative number for excluded columns).
    public static func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Int, width: Int,
                                   additiveMask: UnsafePointer<Float>? = nil) {
        KernelProfile.measure(.softmax) {
            for r in 0..<rows {
                let row = x + r * width
                if let additiveMask { for j in 0..<width { row[j] += additiveMask[j] } }
                var maxValue = -Float.infinity
                for j in 0..<width { maxValue = max(maxValue, row[j]) }
                var sum: Float = 0
                for j in 0..<width {
                    let e = expf(row[j] - maxValue)
                    row[j] = e
                    sum += e
                }
                let inv = 1 / sum
                for j in 0..<width { row[j] *= inv }
            }
        }
    }

    /// Softmax backward for one row set: dz = p ⊙ (dp − Σ_j dp_j p_j), written (not accumulated) into dz.
    public static func softmaxBackwardRows(_ dz: UnsafeMutablePointer<Float>, _ dp: UnsafePointer<Float>,
                                           _ p: UnsafePointer<Float>, rows: Int, width: Int) {
        KernelProfile.measure(.softmax) {
            for r in 0..<rows {
                let pr = p + r * width, dpr = dp + r * width, dzr = dz + r * width
                let inner = dot(dpr, pr, count: width)
                for j in 0..<width { dzr[j] = pr[j] * (dpr[j] - inner) }
            }
        }
    }

    // MARK: LayerNorm

    /// out = (x − mean) / sqrt(var + eps) · w + b per row (biased variance, as PyTorch);
    /// saves mean and 1/std per row for backward.
    public static func layerNormForward(_ out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                                        rstd: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                                        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                                        rows: Int, width: Int, eps: Float = 1e-5) {
        KernelProfile.measure(.layerNorm) {
            let n = Float(width)
            for r in 0..<rows {
                let xr = x + r * width, yr = out + r * width
                var s: Float = 0
                for j in 0..<width { s = Relaxed.sum(s, xr[j]) }
                let m = s / n
                var v: Float = 0
                for j in 0..<width {
                    let d = xr[j] - m
                    v = Relaxed.multiplyAdd(d, d, v)
                }
                let rs = 1 / (v / n + eps).squareRoot()
                for j in 0..<width { yr[j] = (xr[j] - m) * rs * weight[j] + bias[j] }
                mean[r] = m
                rstd[r] = rs
            }
        }
    }

    /// LayerNorm backward (llm.c's form): dx += rstd (g − mean(g) − x̂ mean(g x̂)), g = dy · w;
    /// dw += Σ dy x̂, db += Σ dy.
    public static func layerNormBackward(_ dx: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>,
                                         dBias: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>,
                                         _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                         mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                                         rows: Int, width: Int) {
        KernelProfile.measure(.layerNorm) {
            let n = Float(width)
            for r in 0..<rows {
                let xr = x + r * width, dyr = dy + r * width, dxr = dx + r * width
                let m = mean[r], rs = rstd[r]
                var meanG: Float = 0, meanGX: Float = 0
                for j in 0..<width {
                    let xhat = (xr[j] - m) * rs
                    let g = dyr[j] * weight[j]
                    meanG = Relaxed.sum(meanG, g)
                    meanGX = Relaxed.multiplyAdd(g, xhat, meanGX)
                }
                meanG /= n
                meanGX /= n
                for j in 0..<width {
                    let xhat = (xr[j] - m) * rs
                    let g = dyr[j] * weight[j]
                    dBias[j] += dyr[j]
                    dWeight[j] += dyr[j] * xhat
                    dxr[j] += rs * (g - meanG - xhat * meanGX)
                }
            }
        }
    }

    // MARK: Embeddings

    /// out[t] = table[ids[t]] for `count` ids, rows of `width`.
    public static func embeddingLookup(_ out: UnsafeMutablePointer<Float>, table: UnsafePointer<Float>,
                                       ids: UnsafePointer<Int32>, count: Int, width: Int) {
        KernelProfile.measure(.embedding) {
            for t in 0..<count { (out + t * width).update(from: table + Int(ids[t]) * width, count: width) }
        }
    }

    /// dTable[ids[t]] += dOut[t].
    public static func embeddingScatterAdd(_ dTable: UnsafeMutablePointer<Float>, _ dOut: UnsafePointer<Float>,
                                           ids: UnsafePointer<Int32>, count: Int, width: Int) {
        KernelProfile.measure(.embedding) {
            for t in 0..<count { accumulate(dTable + Int(ids[t]) * width, dOut + t * width, count: width) }
        }
    }
}
