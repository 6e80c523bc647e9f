// The three transformer block shapes of UMD (MODEL_SPEC.md section 2).

/// Parameters of a pre-LN block `name`: `ln1`, `attn`, `ln2`, `mlp.fc1`, `mlp.fc2`.
public struct PreLNBlockParams: Sendable {
    public let ln1: LayerNormParams, attn: AttentionParams, ln2: LayerNormParams, mlp: FeedForwardParams

    public static func declare(_ layout: ParameterLayout, _ name: String, width: Int, heads: Int) -> PreLNBlockParams {
        PreLNBlockParams(ln1: .declare(layout, name + ".ln1", width: width),
                         attn: .declare(layout, name + ".attn", width: width, heads: heads),
                         ln2: .declare(layout, name + ".ln2", width: width),
                         mlp: .declare(layout, name + ".mlp", width: width))
    }
}

/// CLIP / MAE-decoder block, QuickGELU, no dropout:
/// x1 = x + attn(ln1(x)); y = x1 + fc2(quickgelu(fc1(ln2(x1)))).
public final class PreLNBlock {
    let ln1: LayerNorm, attn: MultiHeadAttention, ln2: LayerNorm, mlp: FeedForward
    let width: Int
    let afterAttention = FloatBuffer()   // x1 [B, L, W]
    public let output = FloatBuffer()    // y  [B, L, W]
    private var batch = 0, length = 0

    public init(_ params: PreLNBlockParams) {
        ln1 = LayerNorm(params.ln1); attn = MultiHeadAttention(params.attn)
        ln2 = LayerNorm(params.ln2); mlp = FeedForward(params.mlp, activation: .quickGelu)
        width = params.attn.width
    }

    /// x [B, L, W] → [B, L, W].
    @discardableResult
    public func forward(_ p: ParameterStore, _ x: UnsafePointer<Float>, batch: Int, length: Int,
                        keyMask: UnsafePointer<Float>? = nil) -> UnsafeMutablePointer<Float> {
        self.batch = batch; self.length = length
        let n = batch * length * width
        let h = ln1.forward(p, x, rows: batch * length)
        let a = attn.forward(p, queries: h, keysValues: h, batch: batch, queryLength: length, keyLength: length,
                             keyMask: keyMask, .deterministic)
        let x1 = afterAttention.ensure(n)
        Elementwise.add(x1, x, a, count: n)
        let h2 = ln2.forward(p, x1, rows: batch * length)
        let m = mlp.forward(p, h2, batch: batch, perItemRows: length, .deterministic)
        let y = output.ensure(n)
        Elementwise.add(y, x1, m, count: n)
        return y
    }

    /// `--recompute blocks`: everything but the output goes to `pool`; backward needs this
    /// block's forward run again first.
    public func releaseInternals(to pool: BufferPool) {
        ln1.releaseBuffers(to: pool); attn.releaseBuffers(to: pool); afterAttention.release(to: pool)
        ln2.releaseBuffers(to: pool); mlp.releaseBuffers(to: pool)
    }

    /// dx += ∂L/∂x.
    public func backward(_ p: ParameterStore, _ dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        let n = batch * length * width
        let dx1 = p.scratch(.blockResidual, n)          // [B, L, W]
        dx1.update(from: dy, count: n)                 // residual path
        let dh = p.scratch.zeroed(.blockNormed, n)     // [B, L, W] gradient at ln2's output
        mlp.backward(p, dy, dx: dh)
        ln2.backward(p, dh, dx: dx1)
        Elementwise.accumulate(dx, dx1, count: n)      // residual path of the first half
        let dh1 = p.scratch.zeroed(.blockNormed, n)    // [B, L, W] gradient at ln1's output
        attn.backward(p, dx1, dQueries: dh1, dKeysValues: dh1)
        ln1.backward(p, dh1, dx: dx)
    }
}

/// Parameters of a RoBERTa layer `name`: `attn`, `ln_attn`, `ffn.fc1`, `ffn.fc2`, `ln_ffn`.
public struct PostLNLayerParams: Sendable {
    public let attn: AttentionParams, lnAttn: LayerNormParams, ffn: FeedForwardParams, lnFFN: LayerNormParams

    public static func declare(_ layout: ParameterLayout, _ name: String, width: Int, heads: Int) -> PostLNLayerParams {
        PostLNLayerParams(attn: .declare(layout, name + ".attn", width: width, heads: heads),
                          lnAttn: .declare(layout, name + ".ln_attn", width: width),
                          ffn: .declare(layout, name + ".ffn", width: width),
                          lnFFN: .declare(layout, name + ".ln_ffn", width: width))
    }
}

/// RoBERTa post-LN layer, GELU, BERT dropout:
/// a = ln_attn(x + attn(x)); y = ln_ffn(a + fc2(gelu(fc1(a)))).
public final class PostLNLayer {
    let attn: MultiHeadAttention, lnAttn: LayerNorm, ffn: FeedForward, lnFFN: LayerNorm
    let width: Int
    let sum1 = FloatBuffer(), sum2 = FloatBuffer()     // pre-LN sums [B, L, W]
    private var batch = 0, length = 0

    public init(_ params: PostLNLayerParams, name: String) {
        attn = MultiHeadAttention(params.attn, dropoutName: name + ".attn")
        lnAttn = LayerNorm(params.lnAttn)
        ffn = FeedForward(params.ffn, activation: .gelu, dropoutName: name + ".ffn.output")
        lnFFN = LayerNorm(params.lnFFN)
        width = params.attn.width
    }

    @discardableResult
    public func forward(_ p: ParameterStore, _ x: UnsafePointer<Float>, batch: Int, length: Int,
                        keyMask: UnsafePointer<Float>?, _ ctx: ForwardContext) -> UnsafeMutablePointer<Float> {
        self.batch = batch; self.length = length
        let n = batch * length * width
        let at = attn.forward(p, queries: x, keysValues: x, batch: batch, queryLength: length, keyLength: length,
                              keyMask: keyMask, ctx)
        let s1 = sum1.ensure(n)
        Elementwise.add(s1, x, at, count: n)
        let a = lnAttn.forward(p, s1, rows: batch * length)
        let f = ffn.forward(p, a, batch: batch, perItemRows: length, ctx)
        let s2 = sum2.ensure(n)
        Elementwise.add(s2, a, f, count: n)
        return lnFFN.forward(p, s2, rows: batch * length)
    }

    public var output: UnsafeMutablePointer<Float> { lnFFN.output.pointer }

    /// `--recompute blocks`: everything but the output goes to `pool`.
    public func releaseInternals(to pool: BufferPool) {
        attn.releaseBuffers(to: pool); sum1.release(to: pool); lnAttn.releaseBuffers(to: pool)
        ffn.releaseBuffers(to: pool); sum2.release(to: pool); lnFFN.releaseBuffers(to: pool, keepOutput: true)
    }

    public func backward(_ p: ParameterStore, _ dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        let n = batch * length * width
        let ds2 = p.scratch.zeroed(.postSum2, n)   // [B, L, W]
        lnFFN.backward(p, dy, dx: ds2)
        let da = p.scratch(.postMiddle, n)         // ∂L/∂a [B, L, W]
        da.update(from: ds2, count: n)
        ffn.backward(p, ds2, dx: da)
        let ds1 = p.scratch.zeroed(.postSum1, n)   // [B, L, W]
        lnAttn.backward(p, da, dx: ds1)
        Elementwise.accumulate(dx, ds1, count: n)
        attn.backward(p, ds1, dQueries: dx, dKeysValues: dx)
    }
}

/// Parameters of a co-attention layer `name`: `self_attn`, `ln_self`, `cross_attn`,
/// `ln_cross`, `ffn.fc1`, `ffn.fc2`, `ln_ffn`.
public struct CoAttentionLayerParams: Sendable {
    public let selfAttn: AttentionParams, lnSelf: LayerNormParams
    public let crossAttn: AttentionParams, lnCross: LayerNormParams
    public let ffn: FeedForwardParams, lnFFN: LayerNormParams

    public static func declare(_ layout: ParameterLayout, _ name: String, width: Int,
                               heads: Int) -> CoAttentionLayerParams {
        CoAttentionLayerParams(selfAttn: .declare(layout, name + ".self_attn", width: width, heads: heads),
                               lnSelf: .declare(layout, name + ".ln_self", width: width),
                               crossAttn: .declare(layout, name + ".cross_attn", width: width, heads: heads),
                               lnCross: .declare(layout, name + ".ln_cross", width: width),
                               ffn: .declare(layout, name + ".ffn", width: width),
                               lnFFN: .declare(layout, name + ".ln_ffn", width: width))
    }
}

/// BERT co-attention layer of one fusion stream (post-LN, GELU, BERT dropout):
/// x = ln_self(x + self_attn(x)); x = ln_cross(x + cross_attn(q=x, kv=y)); x = ln_ffn(x + ffn(x)).
public final class CoAttentionLayer {
    let selfAttn: MultiHeadAttention, lnSelf: LayerNorm
    let crossAttn: MultiHeadAttention, lnCross: LayerNorm
    let ffn: FeedForward, lnFFN: LayerNorm
    let width: Int
    let sum1 = FloatBuffer(), sum2 = FloatBuffer(), sum3 = FloatBuffer()   // [B, Lx, W]
    private var batch = 0, length = 0

    public init(_ params: CoAttentionLayerParams, name: String) {
        selfAttn = MultiHeadAttention(params.selfAttn, dropoutName: name + ".self_attn")
        lnSelf = LayerNorm(params.lnSelf)
        crossAttn = MultiHeadAttention(params.crossAttn, dropoutName: name + ".cross_attn")
        lnCross = LayerNorm(params.lnCross)
        ffn = FeedForward(params.ffn, activation: .gelu, dropoutName: name + ".ffn.output")
        lnFFN = LayerNorm(params.lnFFN)
        width = params.selfAttn.width
    }

    /// x [B, Lx, W] (this stream), y [B, Ly, W] (the other stream), masks [B, Lx] / [B, Ly]
    /// for keys (nil: all valid) → [B, Lx, W].
    @discardableResult
    public func forward(_ p: ParameterStore, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, batch: Int,
                        length: Int, otherLength: Int, ownKeyMask: UnsafePointer<Float>?,
                        otherKeyMask: UnsafePointer<Float>?, _ ctx: ForwardContext) -> UnsafeMutablePointer<Float> {
        self.batch = batch; self.length = length
        let n = batch * length * width
        let a = selfAttn.forward(p, queries: x, keysValues: x, batch: batch, queryLength: length, keyLength: length,
                                 keyMask: ownKeyMask, ctx)
        let s1 = sum1.ensure(n)
        Elementwise.add(s1, x, a, count: n)
        let x1 = lnSelf.forward(p, s1, rows: batch * length)
        let c = crossAttn.forward(p, queries: x1, keysValues: y, batch: batch, queryLength: length,
                                  keyLength: otherLength, keyMask: otherKeyMask, ctx)
        let s2 = sum2.ensure(n)
        Elementwise.add(s2, x1, c, count: n)
        let x2 = lnCross.forward(p, s2, rows: batch * length)
        let f = ffn.forward(p, x2, batch: batch, perItemRows: length, ctx)
        let s3 = sum3.ensure(n)
        Elementwise.add(s3, x2, f, count: n)
        return lnFFN.forward(p, s3, rows: batch * length)
    }

    public var output: UnsafeMutablePointer<Float> { lnFFN.output.pointer }

    /// `--recompute blocks`: everything but the output goes to `pool`.
    public func releaseInternals(to pool: BufferPool) {
        selfAttn.releaseBuffers(to: pool); sum1.release(to: pool); lnSelf.releaseBuffers(to: pool)
        crossAttn.releaseBuffers(to: pool); sum2.release(to: pool); lnCross.releaseBuffers(to: pool)
        ffn.releaseBuffers(to: pool); sum3.release(to: pool); lnFFN.releaseBuffers(to: pool, keepOutput: true)
    }

    /// dx += ∂L/∂x (this stream), dy += ∂L/∂y (the other stream).
    public func backward(_ p: ParameterStore, _ dOut: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
                         dy: UnsafeMutablePointer<Float>) {
        let n = batch * length * width
        // x3 = ln_ffn(s3), s3 = x2 + ffn(x2)
        let ds = p.scratch.zeroed(.coSum, n)       // [B, Lx, W]
        lnFFN.backward(p, dOut, dx: ds)
        let dx2 = p.scratch(.coAfterCross, n)      // [B, Lx, W]
        dx2.update(from: ds, count: n)
        ffn.backward(p, ds, dx: dx2)
        // x2 = ln_cross(s2), s2 = x1 + cross(x1, y)
        let ds2 = p.scratch.zeroed(.coSum, n)
        lnCross.backward(p, dx2, dx: ds2)
        let dx1 = p.scratch(.coAfterSelf, n)       // [B, Lx, W]
        dx1.update(from: ds2, count: n)
        crossAttn.backward(p, ds2, dQueries: dx1, dKeysValues: dy)
        // x1 = ln_self(s1), s1 = x + self(x)
        let ds1 = p.scratch.zeroed(.coSum, n)
        lnSelf.backward(p, dx1, dx: ds1)
        Elementwise.accumulate(dx, ds1, count: n)
        selfAttn.backward(p, ds1, dQueries: dx, dKeysValues: dx)
    }
}
