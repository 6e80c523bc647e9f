import CBuildTarget

/// SIMD versions of the transcendental functions the element-wise kernels need (exp, the
/// normal CDF Φ behind exact GELU, the logistic σ), on 16 lanes at a time: one AVX-512
/// register, two AVX2 ones, four SSE ones — the same numbers on every CPU, since no step
/// is contracted or reordered between lanes. One exception, chosen when the program is
/// built: on a build for a CPU with FMA (the Makefile's release build, `TARGET_CPU`) every
/// a·b + c here is one fused instruction (`fused`, one rounding instead of two: 1.5x fewer
/// floating-point instructions in the polynomials); a portable build (and the debug build
/// the tests use) multiplies and adds. Both are within the accuracy below (the tests check
/// both); they differ in the last bits, so per-sample activations differ between the two
/// builds. Nothing replicated across ranks depends on it (the GM-Coord noise, which is,
/// always multiplies and adds).
///
/// Accuracy (measured by `VectorMathTests` against Double-precision references):
/// - `exp`: ≤ 3 ulp (relative 3.6e-7) on [-87, 88]; 0 below Cephes' bound -87.34 (libm
///   returns subnormals < 1.2e-38 there), 2.4e38 above 88.38 (libm: up to ∞; no kernel
///   here exponentiates large positive numbers); NaN stays NaN.
/// - `normalCDF`: relative ≤ 5e-6 for x ≥ -6.3 (Φ ≥ 1.5e-10), ≤ 2e-5 in the far left tail
///   (x ≥ -12, Φ ≥ 1e-33): exp(−x²/2) inherits the rounding of x² in Float.
/// The polynomials were fitted for this file (least squares on Chebyshev nodes against
/// mpmath, relative weighting); the exp polynomial is the classic Cephes one.
public typealias FloatLanes = SIMD16<Float>

public enum VectorMath {
    /// Whether this build's target CPU has fused multiply-add (folded to a constant in
    /// optimised code). Without FMA, `fused: true` still computes the fused result, by a
    /// libm call per lane — correct, slow; the tests use it to check the fused variants.
    @inline(__always)
    public static var targetHasFMA: Bool { umd_target_has_fma() != 0 }

    /// a·b + c lane by lane: one fused operation (one rounding) or a product and a sum.
    @inline(__always)
    public static func multiplyAdd(_ a: FloatLanes, _ b: FloatLanes, _ c: FloatLanes, fused: Bool) -> FloatLanes {
        fused ? c.addingProduct(a, b) : a * b + c
    }

    // MARK: Loading and storing lanes

    /// Lanes i..<i+16 of `p` (unaligned).
    @inline(__always)
    public static func load(_ p: UnsafePointer<Float>, _ i: Int) -> FloatLanes {
        UnsafeRawPointer(p + i).loadUnaligned(as: FloatLanes.self)
    }

    @inline(__always)
    public static func store(_ v: FloatLanes, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
        UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: FloatLanes.self)
    }

    /// The first `n` (< 16) elements of `p + i`, the other lanes `fill`.
    @inline(__always)
    public static func loadPartial(_ p: UnsafePointer<Float>, _ i: Int, _ n: Int, fill: Float = 0) -> FloatLanes {
        var v = FloatLanes(repeating: fill)
        for j in 0..<n { v[j] = p[i + j] }
        return v
    }

    /// `count` elements at i: a full load when count is 16, else padded with zeros.
    @inline(__always)
    public static func loadPartialOrFull(_ p: UnsafePointer<Float>, _ i: Int, _ count: Int) -> FloatLanes {
        count == FloatLanes.scalarCount ? load(p, i) : loadPartial(p, i, count)
    }

    @inline(__always)
    public static func storePartialOrFull(_ v: FloatLanes, _ p: UnsafeMutablePointer<Float>, _ i: Int, _ count: Int) {
        if count == FloatLanes.scalarCount { store(v, p, i) } else { storePartial(v, p, i, count) }
    }

    @inline(__always)
    public static func storePartial(_ v: FloatLanes, _ p: UnsafeMutablePointer<Float>, _ i: Int, _ n: Int) {
        for j in 0..<n { p[i + j] = v[j] }
    }

    // MARK: Functions

    /// `negative ? a : b` lane by lane, by the sign bit of `s` (−0 and NaNs with the sign
    /// bit count as negative) — in integer bit operations. The standard library's
    /// comparisons return `SIMDMask`, which LLVM turns into per-lane shuffles (10× slower
    /// than the arithmetic here), so no function in this file compares lanes.
    @inline(__always)
    public static func select(signOf s: FloatLanes, negative a: FloatLanes, otherwise b: FloatLanes) -> FloatLanes {
        let m = unsafeBitCast(unsafeBitCast(s, to: SIMD16<Int32>.self) &>> 31, to: SIMD16<UInt32>.self)
        let ai = unsafeBitCast(a, to: SIMD16<UInt32>.self), bi = unsafeBitCast(b, to: SIMD16<UInt32>.self)
        return unsafeBitCast((ai & m) | (bi & ~m), to: FloatLanes.self)
    }

    /// The largest of the 16 lanes, by a tree of vector maxima (`umd_largest_lane16` in
    /// CBuildTarget): the standard library's `max()` reduction and lane subscripts in a loop
    /// both compile to a chain of per-lane compares that costs a third of a softmax row.
    @inline(__always)
    public static func largestLane(_ v: FloatLanes) -> Float { umd_largest_lane16(v) }

    /// The sum of the 16 lanes by a tree (`umd_lane_sum16`): 4 dependent additions, not 15.
    @inline(__always)
    public static func laneSum(_ v: FloatLanes) -> Float { umd_lane_sum16(v) }

    /// |x| (sign bit cleared).
    @inline(__always)
    public static func magnitude(_ x: FloatLanes) -> FloatLanes {
        unsafeBitCast(unsafeBitCast(x, to: SIMD16<UInt32>.self) & 0x7FFF_FFFF, to: FloatLanes.self)
    }

    /// eˣ: x = n ln 2 + r with |r| ≤ ln2/2, eʳ by a degree-7 polynomial, 2ⁿ built in the
    /// exponent bits. Rounding to n uses the 1.5·2²³ trick, so no float→int conversion
    /// (which could trap on NaN) is needed.
    @inline(__always)
    public static func exp(_ x: FloatLanes, fused: Bool = targetHasFMA) -> FloatLanes {
        let hi: Float = 88.376_262_66, lo: Float = -87.336_54   // Cephes' bounds: 2ⁿ stays normal
        let clamped = pointwiseMax(pointwiseMin(x, FloatLanes(repeating: hi)), FloatLanes(repeating: lo))
        let magic: Float = 12_582_912           // 1.5 · 2²³: adding it rounds to an integer
        let shifted = multiplyAdd(clamped, FloatLanes(repeating: 1.442_695_04), FloatLanes(repeating: magic), fused: fused)
        let n = shifted - magic
        var r = multiplyAdd(n, FloatLanes(repeating: -0.693_359_375), clamped, fused: fused)   // ln 2 in two parts (Cody–Waite)
        r = multiplyAdd(n, FloatLanes(repeating: 2.121_944_4e-4), r, fused: fused)
        var p: FloatLanes = FloatLanes(repeating: 1.987_569_15e-4)
        p = multiplyAdd(p, r, FloatLanes(repeating: 1.398_199_95e-3), fused: fused)
        p = multiplyAdd(p, r, FloatLanes(repeating: 8.333_451_9e-3), fused: fused)
        p = multiplyAdd(p, r, FloatLanes(repeating: 4.166_579_59e-2), fused: fused)
        p = multiplyAdd(p, r, FloatLanes(repeating: 1.666_666_55e-1), fused: fused)
        p = multiplyAdd(p, r, FloatLanes(repeating: 5.000_000_12e-1), fused: fused)
        p = multiplyAdd(p, r * r, r, fused: fused) + 1
        // n + 127 into the exponent field: the integer n sits in shifted's low mantissa bits.
        let shiftedBits = unsafeBitCast(shifted, to: SIMD16<UInt32>.self)
        let twoToN = unsafeBitCast((shiftedBits &- magic.bitPattern &+ 127) &<< 23, to: FloatLanes.self)
        // Below Cephes' bound the result is 0 (libm: a subnormal < 1.2e-38 or 0), so a masked
        // key (−1e9) weighs exactly nothing. The test is done on the bit pattern in integer
        // lanes, so a NaN input (any sign) is never taken for "below" and stays NaN.
        let xBits = unsafeBitCast(x, to: SIMD16<Int32>.self)
        let xMagnitude = xBits & 0x7FFF_FFFF
        let below = (xBits &>> 31)                                           // negative
            & ((Int32(bitPattern: (-lo).bitPattern) &- xMagnitude) &>> 31)   // |x| > |lo|
            & ((xMagnitude &- 0x7F80_0001) &>> 31)                           // not NaN
        // min/max dropped a NaN lane for the bound: put it back (all bits set is a NaN).
        let isNaN = (0x7F80_0000 &- xMagnitude) &>> 31
        let result = (unsafeBitCast(p * twoToN, to: SIMD16<Int32>.self) & ~below) | isNaN
        return unsafeBitCast(result, to: FloatLanes.self)
    }

    /// σ(x) = 1 / (1 + e^(−x)).
    @inline(__always)
    public static func sigmoid(_ x: FloatLanes, fused: Bool = targetHasFMA) -> FloatLanes {
        1 / (1 + exp(-x, fused: fused))
    }

    /// Φ(x), the standard normal CDF = ½ erfc(−x/√2), from one formula for every x (no
    /// branches): with z = x/√2, a = |z|, t = 1/(1 + a/2),
    ///     erfc(a) = t · e^(−a²) · Q(t),  Q of degree 8 (fitted by scripts/fit/erfc_scaled.py:
    ///     relative error 5e-8 on a ∈ [0, 10]; below e^(−a²)'s underflow at a ≈ 9.35 it is 0;
    ///     one polynomial and one exp, where Numerical Recipes' exp(P(t) − a²) form needs a
    ///     polynomial of the same degree),
    /// Φ = 1 − ½ erfc(a) for z > 0 and ½ erfc(a) for z ≤ 0 — no cancellation on the left
    /// tail, unlike ½(1 + erf(z)) (libm's erff there loses all digits below Φ ≈ 1e-8).
    @inline(__always)
    public static func normalCDF(_ x: FloatLanes, fused: Bool = targetHasFMA) -> FloatLanes {
        let a = magnitude(x * 0.707_106_78)
        let t = 1 / multiplyAdd(a, FloatLanes(repeating: 0.5), FloatLanes(repeating: 1), fused: fused)
        var q = FloatLanes(repeating: -6.010_870_773e-02)
        q = multiplyAdd(q, t, FloatLanes(repeating: 2.894_461_006e-01), fused: fused)
        q = multiplyAdd(q, t, FloatLanes(repeating: -4.968_295_764e-01), fused: fused)
        q = multiplyAdd(q, t, FloatLanes(repeating: 2.885_151_458e-01), fused: fused)
        q = multiplyAdd(q, t, FloatLanes(repeating: -3.339_901_991e-02), fused: fused)
        q = multiplyAdd(q, t, FloatLanes(repeating: 2.053_604_290e-01), fused: fused)
        q = multiplyAdd(q, t, FloatLanes(repeating: 2.424_793_787e-01), fused: fused)
        q = multiplyAdd(q, t, FloatLanes(repeating: 2.824_538_421e-01), fused: fused)
        q = multiplyAdd(q, t, FloatLanes(repeating: 2.820_823_575e-01), fused: fused)
        let halfErfc = 0.5 * t * q * exp(-a * a, fused: fused)
        return select(signOf: x, negative: halfErfc, otherwise: 1 - halfErfc)
    }

    /// ln x for finite x > 0 (what the noise generator needs: x ∈ (0, 1)), Cephes' logf:
    /// x = m·2ᵉ with m ∈ [√½, √2), ln m = z − z²/2 + z³ P(z) with z = m − 1, P of degree 8.
    @inline(__always)
    public static func log(_ x: FloatLanes) -> FloatLanes {
        let bits = unsafeBitCast(x, to: SIMD16<Int32>.self)
        var e = FloatLanes(((bits &>> 23) & 0xFF) &- 126)
        let m = unsafeBitCast((bits & Int32(bitPattern: 0x807F_FFFF)) | 0x3F00_0000, to: FloatLanes.self)   // [½, 1)
        // m < √½: use 2m − 1 and e − 1, else m − 1 (the sign of m − √½ picks, no comparison).
        let below = m - 0.707_106_781_186_547_524
        let z = select(signOf: below, negative: m + m - 1, otherwise: m - 1)
        e = select(signOf: below, negative: e - 1, otherwise: e)
        var p = FloatLanes(repeating: 7.037_683_629_2e-2)
        p = p * z + -1.151_461_031_0e-1
        p = p * z + 1.167_699_874_0e-1
        p = p * z + -1.242_014_084_6e-1
        p = p * z + 1.424_932_278_7e-1
        p = p * z + -1.666_805_766_5e-1
        p = p * z + 2.000_071_476_5e-1
        p = p * z + -2.499_999_399_3e-1
        p = p * z + 3.333_333_117_4e-1
        let z2 = z * z
        var y = p * z * z2
        y = y + e * -2.121_944_40e-4
        y = y - 0.5 * z2
        return z + y + e * 0.693_359_375
    }

    /// cos(2πu) for u ∈ [0, 1]: t = u − ½ ∈ [−½, ½], cos(2πu) = −cos(2πt), an even
    /// polynomial of degree 12 in t (fitted here; absolute error 7e-7).
    @inline(__always)
    public static func cosTwoPi(_ u: FloatLanes) -> FloatLanes {
        let t = u - 0.5
        let t2 = t * t
        var p = FloatLanes(repeating: 6.547_549_502)
        p = p * t2 + -2.598_241_047e+01
        p = p * t2 + 6.017_204_547e+01
        p = p * t2 + -8.545_075_933e+01
        p = p * t2 + 6.493_915_836e+01
        p = p * t2 + -1.973_920_558e+01
        p = p * t2 + 9.999_999_955e-01
        return -p
    }

    /// √x, IEEE (exactly rounded: lane for lane `Float.squareRoot()`), as vector square-root
    /// instructions (`umd_square_root16` in CBuildTarget: the stdlib's SIMD `squareRoot()`
    /// is lowered to 16 scalar roots).
    @inline(__always)
    public static func squareRoot(_ x: FloatLanes) -> FloatLanes { umd_square_root16(x) }

    /// √x for x ≥ 0 without the standard library's per-lane `squareRoot()` (which LLVM
    /// leaves as 16 scalar square roots): the 0x5F375A86 estimate of 1/√x refined by three
    /// Newton steps, times x (relative error ~2e-7; √0 = 0). For the noise generator, where
    /// IEEE rounding does not matter (kept so its replicated noise does not change); AdamW
    /// uses the exact `squareRoot`.
    @inline(__always)
    public static func approximateSquareRoot(_ x: FloatLanes) -> FloatLanes {
        let estimate = 0x5F37_5A86 &- (unsafeBitCast(x, to: SIMD16<UInt32>.self) &>> 1)
        var r = unsafeBitCast(estimate, to: FloatLanes.self)
        let half = 0.5 * x
        r = r * (1.5 - half * r * r)
        r = r * (1.5 - half * r * r)
        r = r * (1.5 - half * r * r)
        return x * r
    }

    /// 16 uniforms from 16 random 32-bit lanes, built in the exponent/mantissa bits (no
    /// integer-to-float conversion): 1 + (top 23 bits)·2⁻²³ ∈ [1, 2).
    @inline(__always)
    static func oneToTwo(_ bits: SIMD16<UInt32>) -> FloatLanes {
        unsafeBitCast((bits &>> 9) | 0x3F80_0000, to: FloatLanes.self)
    }

    /// Standard normals for the 16 elements counted c0 … c0+15 under `key`, by Box–Muller:
    /// the 32-bit halves of SplitMix64 outputs 2c0 … 2c0+7 of the generator seeded with
    /// `key` give u₁ of the 16 elements, outputs 2c0+8 … 2c0+15 their u₂, 23 bits each;
    /// u₁ ∈ (0, 1] so ln u₁ is finite, u₂ ∈ [0, 1); n = √(−2 ln u₁) cos(2π u₂). A pure
    /// function of (key, c0): the same on every rank and after a resume. |n| ≤ 5.65
    /// (u₁ ≥ 2⁻²³; a standard normal exceeds that with probability 1.6e-8).
    @inline(__always)
    public static func normals(key: UInt64, firstCounter c0: UInt64) -> FloatLanes {
        normals(NormalStates(key: key, firstCounter: c0))
    }

    /// The SplitMix64 states behind `normals(key:firstCounter:)` for one group of 16
    /// elements. Walking an array, `advance()` moves them to the next 16 elements with an
    /// addition (32 draws on: + 32γ) instead of a 64-bit multiply per lane, which AVX2 does
    /// not have (five instructions per 4 lanes). Same values, bit for bit.
    public struct NormalStates {
        var first: SIMD8<UInt64>    // states of draws 2c0 … 2c0+7 (u₁ of the 16 elements)
        var second: SIMD8<UInt64>   // draws 2c0+8 … 2c0+15 (u₂)
        @inline(__always)
        public init(key: UInt64, firstCounter c0: UInt64) {
            let counters = SIMD8<UInt64>(repeating: 2 &* c0) &+ SIMD8<UInt64>(0, 1, 2, 3, 4, 5, 6, 7)
            first = CounterRandom.splitMixState(key, counters: counters)
            second = CounterRandom.splitMixState(key, counters: counters &+ 8)
        }
        /// To the states of the next 16 elements (c0 + 16).
        @inline(__always)
        public mutating func advance() {
            let step = SIMD8<UInt64>(repeating: 32 &* CounterRandom.splitMixGamma)
            first &+= step
            second &+= step
        }
    }

    /// `normals(key:firstCounter:)` from its SplitMix64 states.
    @inline(__always)
    public static func normals(_ states: NormalStates) -> FloatLanes {
        let first = unsafeBitCast(CounterRandom.mix(states.first), to: SIMD16<UInt32>.self)
        let second = unsafeBitCast(CounterRandom.mix(states.second), to: SIMD16<UInt32>.self)
        let u1 = 2 - oneToTwo(first)          // (0, 1]
        let u2 = oneToTwo(second) - 1         // [0, 1)
        return approximateSquareRoot(-2 * log(u1)) * cosTwoPi(u2)
    }
}
