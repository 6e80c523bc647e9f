/// Where dropout randomness comes from in one forward pass (MODEL_SPEC.md sections 1, 10a).
///
/// The keep/drop decision of an element is a pure function of (pass key, site, the
/// dataset index of the row's sample, the element's position within that sample), so it
/// does not depend on the rank or the batch position the sample landed on.
public struct ForwardContext: Sendable {
    /// Dropout probability; 0 turns dropout off (teacher, evaluation, debug-step).
    public var dropout: Float
    /// Run seed, pass and step mixed together by the caller.
    public var passKey: UInt64
    /// Dataset index of every batch item, [B]; empty means "use the batch position".
    public var sampleIDs: [UInt64]

    public init(dropout: Float = 0, passKey: UInt64 = 0, sampleIDs: [UInt64] = []) {
        self.dropout = dropout
        self.passKey = passKey
        self.sampleIDs = sampleIDs
    }

    /// No dropout: evaluation, the teacher, finite-difference checks.
    public static let deterministic = ForwardContext()

    public var isDropoutOn: Bool { dropout > 0 }

    @inline(__always)
    func key(site: UInt64, batchItem b: Int) -> UInt64 {
        let sample = b < sampleIDs.count ? sampleIDs[b] : UInt64(b)
        return CounterRandom.key(CounterRandom.key(passKey, site), sample)
    }
}

/// Inverted dropout at one site of a layer: kept elements are scaled by 1/(1-p).
///
/// It stores no mask (issue 28: the masks of a base step's dropout sites were ~50 MiB per
/// sample): backward draws the same keep/drop decisions again from the forward's context —
/// they are a pure function of (pass key, site, sample, element) — so the gradient is
/// bitwise what a stored mask would give.
public final class DropoutSite {
    public let site: UInt64
    private(set) var active = false
    /// The forward's context and item size: what backward needs to redraw the mask.
    private var context = ForwardContext.deterministic
    private var perItem = 0

    /// `name` identifies the site (e.g. "text.layers.0.attn.probs") and keys its randomness.
    public init(name: String) { site = CounterRandom.hash(name) }

    /// Applies dropout in place to `batch` items of `perItem` elements each.
    public func forward(_ x: UnsafeMutablePointer<Float>, batch: Int, perItem: Int, _ context: ForwardContext) {
        record(perItem: perItem, context)
        guard active else { return }
        KernelProfile.measure(.dropout, elements: batch * perItem) { applyMask(UnsafePointer(x), into: x, offset: 0, count: batch * perItem) }
    }

    /// out = dropout(x), leaving x as it is — one pass instead of a copy and an in-place pass.
    public func forward(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, batch: Int, perItem: Int,
                        _ context: ForwardContext) {
        record(perItem: perItem, context)
        guard active else { out.update(from: x, count: batch * perItem); return }
        KernelProfile.measure(.dropout, elements: batch * perItem) { applyMask(x, into: out, offset: 0, count: batch * perItem) }
    }

    /// Records the forward's context without applying anything yet (attention applies the
    /// mask head by head: `apply(_:into:offset:count:)`).
    public func record(perItem: Int, _ context: ForwardContext) {
        active = context.isDropoutOn
        self.context = context
        self.perItem = perItem
    }

    /// out[j] = x[j] · mask of element offset + j of the recorded forward, for j < count
    /// (x itself copied when dropout is off).
    public func apply(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, offset: Int, count: Int) {
        guard active else { if UnsafePointer(out) != x { out.update(from: x, count: count) }; return }
        KernelProfile.measure(.dropout, elements: count) { applyMask(x, into: out, offset: offset, count: count) }
    }

    /// The mask (0 or 1/(1-p)) of elements offset ..< offset + count of the recorded forward,
    /// multiplied into x, 16 lanes at a time within each item (the keys are per item).
    ///
    /// The keep decisions of an item come from the SplitMix64 stream seeded with the item's
    /// key, two elements per 64-bit draw: element e of the item reads the 32-bit word
    /// w_e = half (e & 1) (low, then high) of draw e >> 1 = mix(key + (e >> 1)·γ), and is kept
    /// ⟺ w_e ≥ ⌈p·2³²⌉ (`Self.keeps`). One mix per two elements, where the first version
    /// hashed every element twice (`mix(key ^ mix(e))`): 0.38 → ~0.1 ns per element. A pure
    /// function of (item key, e), as MODEL_SPEC §10a asks; p is resolved to 2⁻³².
    private func applyMask(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, offset: Int, count: Int) {
        let scale = 1 / (1 - context.dropout)
        let threshold = Self.threshold(context.dropout)
        let scaleBits = SIMD16<UInt32>(repeating: scale.bitPattern)
        var j = 0
        while j < count {
            let b = (offset + j) / perItem, first = (offset + j) % perItem
            let n = min(count - j, perItem - first)         // elements of item b in this range
            let key = context.key(site: site, batchItem: b)
            let (xs, outs) = (x + j, out + j)
            var i = 0
            // Draws hold two elements: an odd first element alone, then 16 (8 draws) at a time.
            if first & 1 == 1 {
                outs[0] = xs[0] * (Self.keeps(key, element: first, threshold) ? scale : 0)
                i = 1
            }
            var states = CounterRandom.splitMixState(key, counters: SIMD8<UInt64>(repeating: UInt64((first + i) >> 1))
                                                                     &+ Self.laneOffsets)
            let step = SIMD8<UInt64>(repeating: 8 &* CounterRandom.splitMixGamma)
            while i + FloatLanes.scalarCount <= n {
                let words = unsafeBitCast(CounterRandom.mix(states), to: SIMD16<UInt32>.self)   // elements i ..< i+16
                let factors = unsafeBitCast(Self.notBelow(words, threshold) & scaleBits, to: FloatLanes.self)
                VectorMath.store(VectorMath.load(xs, i) * factors, outs, i)
                states &+= step
                i += FloatLanes.scalarCount
            }
            for i in i..<n { outs[i] = xs[i] * (Self.keeps(key, element: first + i, threshold) ? scale : 0) }
            j += n
        }
    }

    private static let laneOffsets = SIMD8<UInt64>(0, 1, 2, 3, 4, 5, 6, 7)

    /// ⌈p·2³²⌉: an element is dropped when its 32-bit word is below it.
    static func threshold(_ p: Float) -> UInt32 { UInt32(min((Double(p) * 0x1p32).rounded(.up), 0xFFFF_FFFF)) }

    /// Whether element `e` of the item keyed `key` is kept (the scalar definition).
    @inline(__always)
    static func keeps(_ key: UInt64, element e: Int, _ threshold: UInt32) -> Bool {
        let draw = CounterRandom.mix(key &+ UInt64(e >> 1) &* CounterRandom.splitMixGamma)
        return UInt32(truncatingIfNeeded: draw >> (32 * UInt64(e & 1))) >= threshold
    }

    /// All ones where w ≥ t, lane by lane, from the borrow of w − t in integer operations
    /// (a lane comparison becomes per-lane shuffles in Swift, see `VectorMath.select`).
    @inline(__always)
    static func notBelow(_ w: SIMD16<UInt32>, _ t: UInt32) -> SIMD16<UInt32> {
        let t = SIMD16<UInt32>(repeating: t)
        let borrow = ((~w & t) | (~(w ^ t) & (w &- t))) &>> 31     // 1 where w < t
        return borrow &- 1
    }

    /// Backward in place on the gradient: dy *= mask[offset ..< offset + count] (no-op when
    /// dropout was off). `offset`: where dy's part starts in the site's output (one head's
    /// probabilities in attention).
    public func backward(_ dy: UnsafeMutablePointer<Float>, count: Int, offset: Int = 0) {
        guard active else { return }
        KernelProfile.measure(.dropout, elements: count) { applyMask(UnsafePointer(dy), into: dy, offset: offset, count: count) }
    }

    /// The gradient through this site when the incoming one must be kept: `scratch` =
    /// dy · mask in one pass (not a copy and an in-place pass); dy itself when dropout was off.
    public func backward(_ dy: UnsafePointer<Float>, scratch: FloatBuffer, count: Int) -> UnsafePointer<Float> {
        guard active else { return dy }
        let out = scratch.ensure(count)
        KernelProfile.measure(.dropout, elements: count) { applyMask(dy, into: out, offset: 0, count: count) }
        return UnsafePointer(out)
    }
}
