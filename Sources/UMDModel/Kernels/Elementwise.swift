import RealModule
#if canImport(Glibc)
import Glibc
#endif

/// Elementwise and row-wise kernels on raw Float memory. Row pointers are hoisted and
/// reductions use `Relaxed` arithmetic so the compiler may vectorise them.
public enum Elementwise {
    // MARK: Activations (forward writes out; backward accumulates into dx)

    // Activations are lane functions (types, not closures): the two generic loops below are
    // specialised for each in the optimised build, so LLVM sees one whole loop body and keeps
    // its 16 lanes in ymm/zmm registers. (Through a closure it split the lanes into shuffled
    // halves and ran 1.6x slower.) The tail of < 16 elements goes through the same function.

    /// out = F(x).
    @inline(__always)
    static func mapLanes<F: LaneFunction>(_: F.Type, _ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                                         count: Int) {
        let full = count & ~(FloatLanes.scalarCount - 1)
        var i = 0
        while i < full {
            VectorMath.store(F.apply(VectorMath.load(x, i)), out, i)
            i += FloatLanes.scalarCount
        }
        if full < count {
            VectorMath.storePartial(F.apply(VectorMath.loadPartial(x, full, count - full)), out, full, count - full)
        }
    }

    /// dx = dy · F′(x, y) — an activation's backward from its input x and its forward
    /// output y (written, not accumulated: every caller's dx is its own buffer, so no zeroing
    /// pass is needed).
    @inline(__always)
    static func derivativeLanes<F: ActivationDerivative>(_: F.Type, _ dx: UnsafeMutablePointer<Float>,
                                                         _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
                                                         _ y: UnsafePointer<Float>, count: Int) {
        let full = count & ~(FloatLanes.scalarCount - 1)
        var i = 0
        while i < full {
            VectorMath.store(VectorMath.load(dy, i) * F.apply(VectorMath.load(x, i), output: VectorMath.load(y, i)), dx, i)
            i += FloatLanes.scalarCount
        }
        if full < count {
            let n = count - full
            let derivative = F.apply(VectorMath.loadPartial(x, full, n), output: VectorMath.loadPartial(y, full, n))
            VectorMath.storePartial(VectorMath.loadPartial(dy, full, n) * derivative, dx, full, n)
        }
    }

    /// GELU, exact erf form: x · Φ(x) (Φ from `VectorMath.normalCDF`).
    public static func geluForward(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        KernelProfile.measure(.geluForward, elements: count) { mapLanes(GELU.self, out, x, count: count) }
    }

    /// dx = dy · (Φ(x) + x φ(x)), Φ(x) read off the forward's output y = x Φ(x).
    public static func geluBackward(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>,
                                    _ x: UnsafePointer<Float>, output y: UnsafePointer<Float>, count: Int) {
        KernelProfile.measure(.geluBackward, elements: count) { derivativeLanes(GELU.Derivative.self, dx, dy, x, y, count: count) }
    }

    /// QuickGELU (CLIP): x · σ(1.702 x).
    public static func quickGeluForward(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        KernelProfile.measure(.quickGeluForward, elements: count) { mapLanes(QuickGELU.self, out, x, count: count) }
    }

    /// dx = dy · (σ + 1.702 x σ (1 − σ)), σ = σ(1.702 x) read off the forward's output y = x σ.
    public static func quickGeluBackward(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>,
                                         _ x: UnsafePointer<Float>, output y: UnsafePointer<Float>, count: Int) {
        KernelProfile.measure(.quickGeluBackward, elements: count) { derivativeLanes(QuickGELU.Derivative.self, dx, dy, x, y, count: count) }
    }

    /// tanh stays scalar libm: it runs only in the two poolers (B × 2D elements a step).
    public static func tanhForward(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        KernelProfile.measure(.tanh, elements: count) {
            for i in 0..<count { out[i] = tanhf(x[i]) }
        }
    }

    /// dx += dy · (1 − y²), from the saved output y = tanh(x).
    public static func tanhBackward(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>,
                                    _ y: UnsafePointer<Float>, count: Int) {
        KernelProfile.measure(.tanh, elements: count) {
            for i in 0..<count { dx[i] += dy[i] * (1 - y[i] * y[i]) }
        }
    }

    // MARK: Residuals and copies

    /// out = a + b.
    public static func add(_ out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                           count: Int) {
        KernelProfile.measure(.add, elements: count) {
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

    /// Rows a softmax takes through each of its passes before the next pass. A row alone is one
    /// chain of dependent steps (its largest lane, e^x, the lanes' sum, 1/sum) that the core
    /// could not overlap with the next row's; a pass over a block of rows gives it many rows'
    /// independent steps at once. With the lanes' sum by a tree, rows of 32 and 65 went from
    /// 0.60 and 0.54 to 0.35 and 0.37 ns an element in L1 (`bench elementwise`, Zen 5); 8 to 64
    /// rows a block read alike. 16 rows of base's 325 keys (21 KB) stay in L1 between passes.
    static let softmaxRowBlock = 16

    /// Row-wise softmax of `rows` rows of `width`, in place, with an optional additive
    /// per-column mask (0 for allowed, a large negative number for excluded columns).
    public static func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Int, width: Int,
                                   additiveMask: UnsafePointer<Float>? = nil) {
        KernelProfile.measure(.softmaxForward, elements: rows * width, width: width) {
            withUnsafeTemporaryAllocation(of: Float.self, capacity: softmaxRowBlock) { perRow in   // [block]
                for first in stride(from: 0, to: rows, by: softmaxRowBlock) {
                    softmaxBlock(x + first * width, rows: min(softmaxRowBlock, rows - first), width: width,
                                 additiveMask: additiveMask, perRow: perRow.baseAddress!)
                }
            }
        }
    }

    /// `softmaxRows` on one block of rows, each pass over all of them before the next; `perRow`
    /// holds each row's maximum, then 1 / its sum. (Not `@inline(__always)`: inlined into
    /// `softmaxRows`' closure, the optimiser left `VectorMath.exp`'s pointwiseMin/Max as calls
    /// and the softmax ran 6x slower; `bench elementwise` shows it.)
    private static func softmaxBlock(_ x: UnsafeMutablePointer<Float>, rows: Int, width: Int,
                                     additiveMask: UnsafePointer<Float>?, perRow: UnsafeMutablePointer<Float>) {
        let lanes = FloatLanes.scalarCount
        let full = width & ~(lanes - 1), tail = width - full
        // The mask added and each row's maximum, 16 lanes at a time. (Not `pointwiseMax`: with
        // two variables it became per-lane branches, 10x slower.)
        for r in 0..<rows {
            let row = x + r * width
            var maxLanes = FloatLanes(repeating: -.infinity)
            var j = 0
            while j < full {
                var v = VectorMath.load(row, j)
                if let additiveMask {
                    v += VectorMath.load(additiveMask, j)
                    VectorMath.store(v, row, j)
                }
                maxLanes = VectorMath.select(signOf: maxLanes - v, negative: v, otherwise: maxLanes)
                j += lanes
            }
            var maxValue = VectorMath.largestLane(maxLanes)
            while j < width {
                if let additiveMask { row[j] += additiveMask[j] }
                maxValue = max(maxValue, row[j])
                j += 1
            }
            perRow[r] = maxValue
        }
        // e^(x − max) and 1 / Σ. The tail's padding lanes are −∞ (e = 0), so the sum of the
        // lanes is the row's sum.
        for r in 0..<rows {
            let row = x + r * width
            let maxValue = perRow[r]
            var sums = FloatLanes()
            var j = 0
            while j < full {
                let e = VectorMath.exp(VectorMath.load(row, j) - maxValue)
                VectorMath.store(e, row, j)
                sums += e
                j += lanes
            }
            if tail > 0 {
                let e = VectorMath.exp(VectorMath.loadPartial(row, full, tail, fill: -.infinity) - maxValue)
                VectorMath.storePartial(e, row, full, tail)
                sums += e
            }
            perRow[r] = 1 / VectorMath.laneSum(sums)
        }
        for r in 0..<rows {
            let row = x + r * width
            let inv = perRow[r]
            var j = 0
            while j < full {
                VectorMath.store(VectorMath.load(row, j) * inv, row, j)
                j += lanes
            }
            while j < width { row[j] *= inv; j += 1 }
        }
    }

    /// Softmax backward for one row set: dz = p ⊙ (dp − Σ_j dp_j p_j), written (not accumulated) into dz.
    public static func softmaxBackwardRows(_ dz: UnsafeMutablePointer<Float>, _ dp: UnsafePointer<Float>,
                                           _ p: UnsafePointer<Float>, rows: Int, width: Int) {
        KernelProfile.measure(.softmaxBackward, elements: rows * width, width: width) {
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
        KernelProfile.measure(.layerNormForward, elements: rows * width, width: width) {
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
        KernelProfile.measure(.layerNormBackward, elements: rows * width, width: width) {
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
        KernelProfile.measure(.embedding, elements: count * width) {
            for t in 0..<count { (out + t * width).update(from: table + Int(ids[t]) * width, count: width) }
        }
    }

    /// dTable[ids[t]] += dOut[t].
    public static func embeddingScatterAdd(_ dTable: UnsafeMutablePointer<Float>, _ dOut: UnsafePointer<Float>,
                                           ids: UnsafePointer<Int32>, count: Int, width: Int) {
        KernelProfile.measure(.embedding, elements: count * width) {
            for t in 0..<count { accumulate(dTable + Int(ids[t]) * width, dOut + t * width, count: width) }
        }
    }
}

/// A function applied lane by lane (an activation).
protocol LaneFunction { static func apply(_ x: FloatLanes) -> FloatLanes }

/// An activation's derivative from its input x and its output y = x · g(x): g(x) = y / x
/// comes back for one division (g(0) from `atZero`), which saves recomputing it — the
/// erfc polynomial for GELU, the exponential for QuickGELU. y / x carries g's forward
/// value to within 2 ulp; an infinite x gives NaN (∞/∞), which the step's non-finite
/// guard stops, as it would the infinite activations anyway.
protocol ActivationDerivative { static func apply(_ x: FloatLanes, output y: FloatLanes) -> FloatLanes }

extension VectorMath {
    /// y / x lane by lane, `atZero` where x is ±0 (the 0/0 lanes), selected in integer lanes.
    @inline(__always)
    static func quotient(_ y: FloatLanes, _ x: FloatLanes, atZero: Float) -> FloatLanes {
        let magnitude = unsafeBitCast(x, to: SIMD16<Int32>.self) & 0x7FFF_FFFF
        let isZero = unsafeBitCast((magnitude &- 1) &>> 31, to: SIMD16<UInt32>.self)   // all ones where |x| = 0
        let q = unsafeBitCast(y / x, to: SIMD16<UInt32>.self)
        return unsafeBitCast((q & ~isZero) | (FloatLanes(repeating: atZero).bitPattern & isZero), to: FloatLanes.self)
    }
}

private extension FloatLanes {
    var bitPattern: SIMD16<UInt32> { unsafeBitCast(self, to: SIMD16<UInt32>.self) }
}

/// x · Φ(x); derivative Φ(x) + x φ(x) with Φ = y / x.
enum GELU: LaneFunction {
    @inline(__always) static func apply(_ x: FloatLanes) -> FloatLanes { x * VectorMath.normalCDF(x) }
    enum Derivative: ActivationDerivative {
        @inline(__always) static func apply(_ x: FloatLanes, output y: FloatLanes) -> FloatLanes {
            let cdf = VectorMath.quotient(y, x, atZero: 0.5)
            let pdf = 0.398_942_280_4 * VectorMath.exp(-0.5 * (x * x))
            return VectorMath.multiplyAdd(x, pdf, cdf, fused: VectorMath.targetHasFMA)
        }
    }
}

/// x · σ(1.702 x); derivative σ + 1.702 x σ (1 − σ) with σ = y / x.
enum QuickGELU: LaneFunction {
    @inline(__always) static func apply(_ x: FloatLanes) -> FloatLanes { x / (1 + VectorMath.exp(-1.702 * x)) }
    enum Derivative: ActivationDerivative {
        @inline(__always) static func apply(_ x: FloatLanes, output y: FloatLanes) -> FloatLanes {
            let s = VectorMath.quotient(y, x, atZero: 0.5)
            return s + 1.702 * x * s * (1 - s)
        }
    }
}
