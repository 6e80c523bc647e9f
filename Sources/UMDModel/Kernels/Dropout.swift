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
        KernelProfile.measure(.dropout) { applyMask(UnsafePointer(x), into: x, offset: 0, count: batch * perItem) }
    }

    /// out = dropout(x), leaving x as it is — one pass instead of a copy and an in-place pass.
    public func forward(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, batch: Int, perItem: Int,
                        _ context: ForwardContext) {
        record(perItem: perItem, context)
        guard active else { out.update(from: x, count: batch * perItem); return }
        KernelProfile.measure(.dropout) { applyMask(x, into: out, offset: 0, count: batch * perItem) }
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
        KernelProfile.measure(.dropout) { applyMask(x, into: out, offset: offset, count: count) }
    }

    /// The mask (0 or 1/(1-p)) of elements offset ..< offset + count of the recorded forward,
    /// multiplied into x: 8 lanes at a time within each item, as the keys are per item.
    private func applyMask(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, offset: Int, count: Int) {
        let scale = 1 / (1 - context.dropout)
        // keep ⟺ uniform = u·2⁻⁵³ ≥ p ⟺ u ≥ ⌈p·2⁵³⌉ for the integer u = bits >> 11: the
        // same decision as `CounterRandom.uniform(key, i) >= p`, in integers, 8 lanes at a time.
        let threshold = UInt64((Double(context.dropout) * 0x1p53).rounded(.up))
        var j = 0
        while j < count {
            let b = (offset + j) / perItem, first = (offset + j) % perItem
            let n = min(count - j, perItem - first)         // elements of item b in this range
            let key = context.key(site: site, batchItem: b)
            let (xs, outs) = (x + j, out + j)
            var i = 0
            while i + 8 <= n {
                let counters = SIMD8<UInt64>(repeating: UInt64(first + i)) &+ Self.laneOffsets
                let u = CounterRandom.bits(key, counters: counters) &>> 11
                // 1 where dropped: u − threshold wraps below zero exactly when u < threshold.
                let dropped = SIMD8<Float>(SIMD8<Int32>(truncatingIfNeeded: (u &- threshold) &>> 63))
                let lanes = scale * (1 - dropped)
                let xi = UnsafeRawPointer(xs + i).loadUnaligned(as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(outs + i).storeBytes(of: xi * lanes, as: SIMD8<Float>.self)
                i += 8
            }
            for i in i..<n {
                let keep = CounterRandom.bits(key, UInt64(first + i)) >> 11 >= threshold
                outs[i] = xs[i] * (keep ? scale : 0)
            }
            j += n
        }
    }

    private static let laneOffsets = SIMD8<UInt64>(0, 1, 2, 3, 4, 5, 6, 7)

    /// Backward in place on the gradient: dy *= mask[offset ..< offset + count] (no-op when
    /// dropout was off). `offset`: where dy's part starts in the site's output (one head's
    /// probabilities in attention).
    public func backward(_ dy: UnsafeMutablePointer<Float>, count: Int, offset: Int = 0) {
        guard active else { return }
        KernelProfile.measure(.dropout) { applyMask(UnsafePointer(dy), into: dy, offset: offset, count: count) }
    }

    /// The gradient through this site when the incoming one must be kept: `scratch` =
    /// dy · mask in one pass (not a copy and an in-place pass); dy itself when dropout was off.
    public func backward(_ dy: UnsafePointer<Float>, scratch: FloatBuffer, count: Int) -> UnsafePointer<Float> {
        guard active else { return dy }
        let out = scratch.ensure(count)
        KernelProfile.measure(.dropout) { applyMask(dy, into: out, offset: 0, count: count) }
        return UnsafePointer(out)
    }
}
