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
public final class DropoutSite {
    public let site: UInt64
    let mask = FloatBuffer()       // [count]: 0 or 1/(1-p)
    private(set) var active = false

    /// `name` identifies the site (e.g. "text.layers.0.attn.probs") and keys its randomness.
    public init(name: String) { site = CounterRandom.hash(name) }

    /// Applies dropout in place to `batch` items of `perItem` elements each.
    public func forward(_ x: UnsafeMutablePointer<Float>, batch: Int, perItem: Int, _ context: ForwardContext) {
        active = context.isDropoutOn
        guard active else { return }
        KernelProfile.measure(.dropout) { apply(UnsafePointer(x), into: x, batch: batch, perItem: perItem, context) }
    }

    /// out = dropout(x), leaving x as it is (attention keeps its probabilities for the
    /// softmax backward) — one pass instead of a copy and an in-place pass.
    public func forward(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, batch: Int, perItem: Int,
                        _ context: ForwardContext) {
        active = context.isDropoutOn
        guard active else { out.update(from: x, count: batch * perItem); return }
        KernelProfile.measure(.dropout) { apply(x, into: out, batch: batch, perItem: perItem, context) }
    }

    private func apply(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, batch: Int, perItem: Int,
                       _ context: ForwardContext) {
        let scale = 1 / (1 - context.dropout)
        // keep ⟺ uniform = u·2⁻⁵³ ≥ p ⟺ u ≥ ⌈p·2⁵³⌉ for the integer u = bits >> 11: the
        // same decision as `CounterRandom.uniform(key, i) >= p`, in integers, 8 lanes at a time.
        let threshold = UInt64((Double(context.dropout) * 0x1p53).rounded(.up))
        let m = mask.ensure(batch * perItem)
        for b in 0..<batch {
            let key = context.key(site: site, batchItem: b)
            let base = b * perItem
            var i = 0
            while i + 8 <= perItem {
                let u = CounterRandom.bits(key, counters: SIMD8<UInt64>(repeating: UInt64(i)) &+ Self.laneOffsets) &>> 11
                // 1 where dropped: u − threshold wraps below zero exactly when u < threshold.
                let dropped = SIMD8<Float>(SIMD8<Int32>(truncatingIfNeeded: (u &- threshold) &>> 63))
                let lanes = scale * (1 - dropped)
                UnsafeMutableRawPointer(m + base + i).storeBytes(of: lanes, as: SIMD8<Float>.self)
                let xi = UnsafeRawPointer(x + base + i).loadUnaligned(as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(out + base + i).storeBytes(of: xi * lanes, as: SIMD8<Float>.self)
                i += 8
            }
            for i in i..<perItem {
                let keep = CounterRandom.bits(key, UInt64(i)) >> 11 >= threshold
                m[base + i] = keep ? scale : 0
                out[base + i] = x[base + i] * m[base + i]
            }
        }
    }

    private static let laneOffsets = SIMD8<UInt64>(0, 1, 2, 3, 4, 5, 6, 7)

    /// Backward in place on the gradient: dy *= mask[offset ..< offset + count] (no-op when
    /// dropout was off). `offset`: where dy's part starts in the site's output (one head's
    /// probabilities in attention).
    public func backward(_ dy: UnsafeMutablePointer<Float>, count: Int, offset: Int = 0) {
        guard active else { return }
        let m = mask.pointer + offset
        KernelProfile.measure(.dropout) { for i in 0..<count { dy[i] *= m[i] } }
    }

    /// The gradient through this site when the incoming one must be kept: `scratch` =
    /// dy · mask in one pass (not a copy and an in-place pass); dy itself when dropout was off.
    public func backward(_ dy: UnsafePointer<Float>, scratch: FloatBuffer, count: Int) -> UnsafePointer<Float> {
        guard active else { return dy }
        let out = scratch.ensure(count), m = mask.pointer
        KernelProfile.measure(.dropout) { for i in 0..<count { out[i] = dy[i] * m[i] } }
        return UnsafePointer(out)
    }
}
