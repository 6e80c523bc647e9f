/// Patchify: images [B, C, H, W] → patch vectors [B, N, C·P·P], patch n = r·(H/P) + c
/// (row-major grid), each vector in (channel, row, col) order (MODEL_SPEC.md section 2).
public func patchify(_ out: UnsafeMutablePointer<Float>, _ pixels: UnsafePointer<Float>, batch: Int, channels: Int,
                     imageSize: Int, patchSize: Int) {
    let grid = imageSize / patchSize
    let patchLength = channels * patchSize * patchSize
    for b in 0..<batch {
        let image = pixels + b * channels * imageSize * imageSize
        for r in 0..<grid {
            for c in 0..<grid {
                var dst = out + (b * grid * grid + r * grid + c) * patchLength
                for ch in 0..<channels {
                    for i in 0..<patchSize {
                        let src = image + (ch * imageSize + r * patchSize + i) * imageSize + c * patchSize
                        dst.update(from: src, count: patchSize)
                        dst += patchSize
                    }
                }
            }
        }
    }
}

/// Patch embedding: patches [B, N, C·P·P] · `vision.patch_embed.weight`^T (no bias) → [B, N, Dv].
/// Pixels need no gradient, so backward only accumulates the weight gradient.
public final class PatchEmbedding {
    public let params: LinearParams
    public let channels: Int, patchSize: Int
    let patches = FloatBuffer()       // [B, N, C·P·P]
    let projection: Linear

    public init(_ params: LinearParams, channels: Int, patchSize: Int) {
        precondition(params.bias == nil && params.inFeatures == channels * patchSize * patchSize)
        self.params = params
        self.channels = channels
        self.patchSize = patchSize
        projection = Linear(params)
    }

    public static func declare(_ layout: ParameterLayout, _ name: String, channels: Int, patchSize: Int,
                               width: Int) -> LinearParams {
        .declare(layout, name, in: channels * patchSize * patchSize, out: width, bias: false)
    }

    /// pixels [B, C, H, H] → [B, N, Dv].
    @discardableResult
    public func forward(_ p: ParameterStore, pixels: UnsafePointer<Float>, batch: Int,
                        imageSize: Int) -> UnsafeMutablePointer<Float> {
        let n = (imageSize / patchSize) * (imageSize / patchSize)
        let x = patches.ensure(batch * n * params.inFeatures)
        patchify(x, pixels, batch: batch, channels: channels, imageSize: imageSize, patchSize: patchSize)
        return projection.forward(p, x, rows: batch * n)
    }

    public func backward(_ p: ParameterStore, _ dy: UnsafePointer<Float>) {
        projection.backward(p, dy, dx: nil)
    }
}

/// Parameters of the RoBERTa embedding: `word_embed` [V, D], `pos_embed` [Lmax+2, D],
/// `type_embed` [1, D], `ln_embed`.
public struct TextEmbeddingParams: Sendable {
    public let word: ParameterID, position: ParameterID, type: ParameterID
    public let norm: LayerNormParams
    public let vocabularySize: Int, maxLength: Int, width: Int

    public static func declare(_ layout: ParameterLayout, _ prefix: String, vocabularySize: Int, maxLength: Int,
                               width: Int) -> TextEmbeddingParams {
        TextEmbeddingParams(
            word: layout.declare(prefix + ".word_embed", shape: [vocabularySize, width],
                                 initializer: .normal(std: 0.02), role: .embedding),
            position: layout.declare(prefix + ".pos_embed", shape: [maxLength + 2, width],
                                     initializer: .normal(std: 0.02), role: .embedding),
            type: layout.declare(prefix + ".type_embed", shape: [1, width], initializer: .normal(std: 0.02),
                                 role: .embedding),
            norm: .declare(layout, prefix + ".ln_embed", width: width),
            vocabularySize: vocabularySize, maxLength: maxLength, width: width)
    }
}

/// x = ln_embed(word_embed[id] + pos_embed[t+2] + type_embed[0]), then dropout
/// (MODEL_SPEC.md section 2; position t+2 is RoBERTa's padding offset).
public final class TextEmbedding {
    public let params: TextEmbeddingParams
    let summed = FloatBuffer()          // [B, L, D]
    let dSummed = FloatBuffer()         // [B, L, D]
    let dOutputCopy = FloatBuffer()     // [B, L, D] when dropout is on
    let norm: LayerNorm
    let dropout: DropoutSite
    private var ids: UnsafePointer<Int32>?
    private var batch = 0, length = 0

    public init(_ params: TextEmbeddingParams, name: String) {
        self.params = params
        norm = LayerNorm(params.norm)
        dropout = DropoutSite(name: name + ".dropout")
    }

    /// ids [B, L] → [B, L, D]. Ids must lie in [0, V); the caller keeps `ids` alive until backward.
    @discardableResult
    public func forward(_ p: ParameterStore, ids: UnsafePointer<Int32>, batch: Int, length: Int,
                        _ ctx: ForwardContext) -> UnsafeMutablePointer<Float> {
        precondition(length <= params.maxLength, "text length \(length) exceeds the position table (\(params.maxLength))")
        self.ids = ids; self.batch = batch; self.length = length
        let D = params.width
        let x = summed.ensure(batch * length * D)
        Elementwise.embeddingLookup(x, table: p.value(params.word), ids: ids, count: batch * length, width: D)
        let pos = p.value(params.position), type = p.value(params.type)
        for b in 0..<batch {
            for t in 0..<length {
                let row = x + (b * length + t) * D
                Elementwise.accumulate(row, pos + (t + 2) * D, count: D)
                Elementwise.accumulate(row, type, count: D)
            }
        }
        let y = norm.forward(p, x, rows: batch * length)
        dropout.forward(y, batch: batch, perItem: length * D, ctx)
        return y
    }

    public var output: UnsafeMutablePointer<Float> { norm.output.pointer }

    public func backward(_ p: ParameterStore, _ dy: UnsafePointer<Float>) {
        guard let ids else { preconditionFailure("TextEmbedding.backward before forward") }
        let D = params.width, n = batch * length * D
        let dOut = dropout.backward(dy, scratch: dOutputCopy, count: n)
        let dx = dSummed.zeroed(n)
        norm.backward(p, dOut, dx: dx)
        Elementwise.embeddingScatterAdd(p.grad(params.word), dx, ids: ids, count: batch * length, width: D)
        let dPos = p.grad(params.position), dType = p.grad(params.type)
        for b in 0..<batch {
            for t in 0..<length {
                let row = dx + (b * length + t) * D
                Elementwise.accumulate(dPos + (t + 2) * D, row, count: D)
                Elementwise.accumulate(dType, row, count: D)
            }
        }
    }
}

/// pooled = tanh(pooler(token 0 of each sequence)): [B, L, D] → [B, D].
public final class Pooler {
    public let params: LinearParams
    let firstTokens = FloatBuffer()     // [B, D]
    let dFirstTokens = FloatBuffer()    // [B, D]
    let dPre = FloatBuffer()            // [B, D]
    public let output = FloatBuffer()   // [B, D]
    let dense: Linear
    private var batch = 0, length = 0

    public init(_ params: LinearParams) {
        self.params = params
        dense = Linear(params)
    }

    @discardableResult
    public func forward(_ p: ParameterStore, _ x: UnsafePointer<Float>, batch: Int,
                        length: Int) -> UnsafeMutablePointer<Float> {
        self.batch = batch; self.length = length
        let D = params.inFeatures
        let first = firstTokens.ensure(batch * D)
        for b in 0..<batch { (first + b * D).update(from: x + b * length * D, count: D) }
        let pre = dense.forward(p, first, rows: batch)
        let y = output.ensure(batch * params.outFeatures)
        Elementwise.tanhForward(y, pre, count: batch * params.outFeatures)
        return y
    }

    /// dx (the [B, L, D] sequence gradient) += ∂L/∂x at token 0.
    public func backward(_ p: ParameterStore, _ dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        let D = params.inFeatures, O = params.outFeatures
        let dpre = dPre.zeroed(batch * O)
        Elementwise.tanhBackward(dpre, dy, output.pointer, count: batch * O)
        let dfirst = dFirstTokens.zeroed(batch * D)
        dense.backward(p, dpre, dx: dfirst)
        for b in 0..<batch { Elementwise.accumulate(dx + b * length * D, dfirst + b * D, count: D) }
    }
}
