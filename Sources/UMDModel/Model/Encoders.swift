/// Vision encoder (CLIP style, pre-LN): one instance per pass that needs its own activations.
public final class VisionEncoder {
    let params: VisionParams
    let width: Int
    let patchEmbed: PatchEmbedding
    let lnPre: LayerNorm
    let blocks: [PreLNBlock]
    let lnPost: LayerNorm
    let tokens = FloatBuffer()              // [B, 1+K', D] before ln_pre
    let dTokens = FloatBuffer()             // [B, 1+K', D]
    let dPatches = FloatBuffer()            // [B, N, D]
    let gradA = FloatBuffer(), gradB = FloatBuffer()   // [B, 1+K', D] ping-pong between blocks
    private var keep: UnsafePointer<Int32>?
    private(set) var batch = 0, length = 0, patchCount = 0
    /// `--recompute blocks`: keep only each block's output; backward runs a block's forward
    /// again (from the block before's output) right before its backward.
    public var recompute = false
    /// Where a block's inside waits for the next block (one pool per encoder: its blocks'
    /// buffers have the same sizes, so each takes back exactly what the one before gave).
    let pool = BufferPool()

    public init(_ params: VisionParams, width: Int, patchSize: Int) {
        self.params = params
        self.width = width
        patchEmbed = PatchEmbedding(params.patchEmbed, channels: 3, patchSize: patchSize)
        lnPre = LayerNorm(params.lnPre)
        blocks = params.blocks.map(PreLNBlock.init)
        lnPost = LayerNorm(params.lnPost)
    }

    /// pixels [B, 3, H, H]; keep [B, K] kept patch indices in order (nil: all N patches)
    /// → [B, 1+K, D] (or [B, 1+N, D]), ln_post applied to every token.
    @discardableResult
    public func forward(_ p: ParameterStore, pixels: UnsafePointer<Float>, batch: Int, imageSize: Int,
                        keep: UnsafePointer<Int32>?, keptCount: Int) -> UnsafeMutablePointer<Float> {
        let D = width
        let embedded = patchEmbed.forward(p, pixels: pixels, batch: batch, imageSize: imageSize)  // [B, N, D]
        let N = (imageSize / patchEmbed.patchSize) * (imageSize / patchEmbed.patchSize)
        let K = keep == nil ? N : keptCount
        self.keep = keep; self.batch = batch; self.length = 1 + K; self.patchCount = N
        precondition(p.view(params.posEmbed).shape[0] == 1 + N,
                     "vision.pos_embed holds \(p.view(params.posEmbed).shape[0] - 1) patches but the image has \(N)")
        let pos = p.value(params.posEmbed), cls = p.value(params.clsToken)
        let t = tokens.ensure(batch * (1 + K) * D)
        for b in 0..<batch {
            let row0 = t + b * (1 + K) * D
            Elementwise.add(row0, cls, pos, count: D)
            for j in 0..<K {
                let n = keep.map { Int($0[b * K + j]) } ?? j
                Elementwise.add(row0 + (1 + j) * D, embedded + (b * N + n) * D, pos + (1 + n) * D, count: D)
            }
        }
        var x = UnsafePointer(lnPre.forward(p, t, rows: batch * (1 + K)))
        lendingPool(pool, if: recompute) {
            for block in blocks {
                x = UnsafePointer(block.forward(p, x, batch: batch, length: 1 + K))
                if recompute { block.releaseInternals(to: pool) }
            }
        }
        return lnPost.forward(p, x, rows: batch * (1 + K))
    }

    public var output: UnsafeMutablePointer<Float> { lnPost.output.pointer }

    /// Backward from dy [B, 1+K, D] into the vision parameters (pixels need no gradient).
    public func backward(_ p: ParameterStore, _ dy: UnsafePointer<Float>) {
        let D = width, L = length, N = patchCount, K = L - 1
        let n = batch * L * D
        var current = gradA.zeroed(n)
        lnPost.backward(p, dy, dx: current)
        for (i, block) in blocks.enumerated().reversed() {
            let next = (current == gradA.pointer ? gradB : gradA).zeroed(n)
            backwardRecomputing(recompute, in: pool,
                                forward: { _ = block.forward(p, i == 0 ? lnPre.output.pointer : blocks[i - 1].output.pointer,
                                                             batch: batch, length: L) },
                                release: { block.releaseInternals(to: pool) }) { block.backward(p, current, dx: next) }
            current = next
        }
        let dt = dTokens.zeroed(n)
        lnPre.backward(p, current, dx: dt)
        let dPos = p.grad(params.posEmbed), dCls = p.grad(params.clsToken)
        let dE = dPatches.zeroed(batch * N * D)
        for b in 0..<batch {
            let row0 = dt + b * L * D
            Elementwise.accumulate(dCls, row0, count: D)
            Elementwise.accumulate(dPos, row0, count: D)
            for j in 0..<K {
                let patch = keep.map { Int($0[b * K + j]) } ?? j
                Elementwise.accumulate(dPos + (1 + patch) * D, row0 + (1 + j) * D, count: D)
                Elementwise.accumulate(dE + (b * N + patch) * D, row0 + (1 + j) * D, count: D)
            }
        }
        patchEmbed.backward(p, dE)
    }
}

/// Converts an attention mask [B, L] (1 = token, 0 = padding) into the additive key mask.
public func additiveKeyMask(_ out: UnsafeMutablePointer<Float>, attention: UnsafePointer<Int32>, count: Int) {
    for i in 0..<count { out[i] = attention[i] != 0 ? 0 : paddingMaskValue }
}

/// Text encoder (RoBERTa style, post-LN).
public final class TextEncoder {
    let params: TextParams
    let embedding: TextEmbedding
    let layers: [PostLNLayer]
    let width: Int
    let gradA = FloatBuffer(), gradB = FloatBuffer()   // [B, L, D]
    private(set) var batch = 0, length = 0
    private var keyMask: UnsafePointer<Float>?
    private var context = ForwardContext.deterministic
    /// `--recompute blocks` (see `VisionEncoder.recompute`).
    public var recompute = false
    let pool = BufferPool()

    public init(_ params: TextParams, width: Int) {
        self.params = params
        self.width = width
        embedding = TextEmbedding(params.embedding, name: "text")
        layers = params.layers.enumerated().map { PostLNLayer($0.element, name: "text.layers.\($0.offset)") }
    }

    /// ids [B, L], keyMask [B, L] additive → [B, L, D].
    @discardableResult
    public func forward(_ p: ParameterStore, ids: UnsafePointer<Int32>, keyMask: UnsafePointer<Float>, batch: Int,
                        length: Int, _ ctx: ForwardContext) -> UnsafeMutablePointer<Float> {
        self.batch = batch; self.length = length; self.keyMask = keyMask; self.context = ctx
        var x = embedding.forward(p, ids: ids, batch: batch, length: length, ctx)
        lendingPool(pool, if: recompute) {
            for layer in layers {
                x = layer.forward(p, x, batch: batch, length: length, keyMask: keyMask, ctx)
                if recompute { layer.releaseInternals(to: pool) }
            }
        }
        return x
    }

    public var output: UnsafeMutablePointer<Float> { layers.last?.output ?? embedding.output }

    public func backward(_ p: ParameterStore, _ dy: UnsafePointer<Float>) {
        let n = batch * length * width
        var current = UnsafeMutablePointer(mutating: dy)
        var useA = true
        for (i, layer) in layers.enumerated().reversed() {
            let next = (useA ? gradA : gradB).zeroed(n)
            useA.toggle()
            backwardRecomputing(recompute, in: pool,
                                forward: { _ = layer.forward(p, i == 0 ? embedding.output : layers[i - 1].output, batch: batch,
                                                             length: length, keyMask: keyMask, context) },
                                release: { layer.releaseInternals(to: pool) }) { layer.backward(p, current, dx: next) }
            current = next
        }
        embedding.backward(p, current)
    }
}

/// Co-attention fusion: two parallel streams that read each other's previous layer, and
/// the poolers.
public final class FusionModule {
    let params: FusionParams
    let width: Int
    let textProj: Linear, imageProj: Linear
    let textLayers: [CoAttentionLayer], imageLayers: [CoAttentionLayer]
    public let textPooler: Pooler, imagePooler: Pooler
    let textIn = FloatBuffer(), imageIn = FloatBuffer()           // t0 [B, L, D], v0 [B, Li, D]
    // Gradients at t_i, v_i: the outputs' accumulators (i = layers), and two buffers that
    // layers i < layers alternate between (backward needs only layer i+1's and i's).
    let dTextOut = FloatBuffer(), dImageOut = FloatBuffer()        // [B, L, D], [B, Li, D]
    let dTextAlternate = [FloatBuffer(), FloatBuffer()], dImageAlternate = [FloatBuffer(), FloatBuffer()]
    public let dTextInput = FloatBuffer(), dImageInput = FloatBuffer()   // ∂L/∂(encoder outputs)
    public let pooled = FloatBuffer()                              // [B, 2D] = [pooled_text; pooled_image]
    let dPooledText = FloatBuffer(), dPooledImage = FloatBuffer()   // [B, D]
    private var textMask: UnsafePointer<Float>?
    private(set) var batch = 0, textLength = 0, imageLength = 0
    private var context = ForwardContext.deterministic
    /// `--recompute blocks` (see `VisionEncoder.recompute`): per layer pair.
    public var recompute = false
    let pool = BufferPool()

    /// What `pool` computes (MODEL_SPEC.md section 9 "Head input").
    public let pooling: Pooling

    public init(_ params: FusionParams, width: Int, pooling: Pooling) {
        self.params = params
        self.width = width
        self.pooling = pooling
        textProj = Linear(params.textProj)
        imageProj = Linear(params.imageProj)
        textLayers = params.textLayers.enumerated().map { CoAttentionLayer($0.element, name: "fusion.text_layers.\($0.offset)") }
        imageLayers = params.imageLayers.enumerated().map { CoAttentionLayer($0.element, name: "fusion.image_layers.\($0.offset)") }
        textPooler = Pooler(params.textPooler)
        imagePooler = Pooler(params.imagePooler)
    }

    /// text [B, L, D], image [B, Li, D], textMask [B, L] additive. Outputs Zt, Zi via
    /// `textOutput`, `imageOutput`.
    public func forward(_ p: ParameterStore, text: UnsafePointer<Float>, image: UnsafePointer<Float>,
                        textMask: UnsafePointer<Float>, batch: Int, textLength: Int, imageLength: Int,
                        _ ctx: ForwardContext) {
        self.batch = batch; self.textLength = textLength; self.imageLength = imageLength; self.textMask = textMask
        self.context = ctx
        let D = width
        let type = p.value(params.typeEmbed)
        let tp = textProj.forward(p, text, rows: batch * textLength)
        let t0 = textIn.ensure(batch * textLength * D)
        for r in 0..<(batch * textLength) { Elementwise.add(t0 + r * D, tp + r * D, type, count: D) }
        let ip = imageProj.forward(p, image, rows: batch * imageLength)
        let v0 = imageIn.ensure(batch * imageLength * D)
        for r in 0..<(batch * imageLength) { Elementwise.add(v0 + r * D, ip + r * D, type + D, count: D) }
        var t = UnsafePointer(t0), v = UnsafePointer(v0)
        lendingPool(pool, if: recompute) {
            for i in 0..<textLayers.count {
                let (tNext, vNext) = forwardLayer(p, i, text: t, image: v)
                if recompute { releaseLayer(p, i) }
                t = UnsafePointer(tNext); v = UnsafePointer(vNext)
            }
        }
    }

    private func releaseLayer(_ p: ParameterStore, _ i: Int) {
        textLayers[i].releaseInternals(to: pool); imageLayers[i].releaseInternals(to: pool)
    }

    /// Layer i of both streams, each reading the other's input t_i / v_i.
    @discardableResult
    private func forwardLayer(_ p: ParameterStore, _ i: Int, text t: UnsafePointer<Float>, image v: UnsafePointer<Float>)
        -> (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) {
        let tNext = textLayers[i].forward(p, t, v, batch: batch, length: textLength, otherLength: imageLength,
                                          ownKeyMask: textMask, otherKeyMask: nil, context)
        let vNext = imageLayers[i].forward(p, v, t, batch: batch, length: imageLength, otherLength: textLength,
                                           ownKeyMask: nil, otherKeyMask: textMask, context)
        return (tNext, vNext)
    }

    public var textOutput: UnsafeMutablePointer<Float> { textLayers.last?.output ?? textIn.pointer }
    public var imageOutput: UnsafeMutablePointer<Float> { imageLayers.last?.output ?? imageIn.pointer }

    /// pooled [B, 2D] = [z_t; z_i]: `cls` = [tanh(text_pooler(Zt[:,0])); tanh(image_pooler(Zi[:,0]))];
    /// `mean` = [mean of Zt over the non-pad tokens; mean of Zi over all its tokens].
    @discardableResult
    public func pool(_ p: ParameterStore) -> UnsafeMutablePointer<Float> {
        let D = width
        let out = pooled.ensure(batch * 2 * D)
        switch pooling {
        case .cls:
            let pt = textPooler.forward(p, textOutput, batch: batch, length: textLength)
            let pi = imagePooler.forward(p, imageOutput, batch: batch, length: imageLength)
            for b in 0..<batch {
                (out + b * 2 * D).update(from: pt + b * D, count: D)
                (out + b * 2 * D + D).update(from: pi + b * D, count: D)
            }
        case .mean:
            out.update(repeating: 0, count: batch * 2 * D)
            forEachMeanTerm { b, isText, row, share in
                Elementwise.accumulate(out + b * 2 * D + (isText ? 0 : D), (isText ? textOutput : imageOutput) + row * D,
                                       scale: share, count: D)
            }
        }
        return out
    }

    /// The terms of `mean` pooling, in order: for each sample b its pooled text tokens (those
    /// the key mask does not pad; `<s>` never is), then all its image tokens — each as its
    /// row in Zt or Zi and its weight 1/n. Forward and backward both walk these; nothing is
    /// allocated, so the step stays allocation-free once sized.
    private func forEachMeanTerm(_ body: (_ b: Int, _ isText: Bool, _ row: Int, _ share: Float) -> Void) {
        func kept(_ b: Int, _ token: Int) -> Bool { textMask.map { $0[b * textLength + token] == 0 } ?? true }
        for b in 0..<batch {
            var n = 0
            for token in 0..<textLength where kept(b, token) { n += 1 }
            precondition(n > 0, "sample \(b) has no text token that is not padding")
            for token in 0..<textLength where kept(b, token) { body(b, true, b * textLength + token, 1 / Float(n)) }
            for token in 0..<imageLength { body(b, false, b * imageLength + token, 1 / Float(imageLength)) }
        }
    }

    /// The gradient buffers at t_i and v_i.
    func dText(_ i: Int) -> FloatBuffer { i == textLayers.count ? dTextOut : dTextAlternate[i % 2] }
    func dImage(_ i: Int) -> FloatBuffer { i == textLayers.count ? dImageOut : dImageAlternate[i % 2] }

    /// Zeroes the gradients at the fusion outputs; call before adding into them.
    public func beginBackward() {
        let D = width
        dTextOut.zeroed(batch * textLength * D)
        dImageOut.zeroed(batch * imageLength * D)
    }

    /// ∂L/∂Zt and ∂L/∂Zi accumulators [B, L, D] / [B, Li, D] (after `beginBackward`).
    public var dTextOutput: UnsafeMutablePointer<Float> { dTextOut.pointer }
    public var dImageOutput: UnsafeMutablePointer<Float> { dImageOut.pointer }

    /// Backward of the pooled features dPooled [B, 2D] into the output accumulators.
    public func poolBackward(_ p: ParameterStore, _ dPooled: UnsafePointer<Float>) {
        let D = width
        let dt = dPooledText.ensure(batch * D), di = dPooledImage.ensure(batch * D)
        for b in 0..<batch {
            (dt + b * D).update(from: dPooled + b * 2 * D, count: D)
            (di + b * D).update(from: dPooled + b * 2 * D + D, count: D)
        }
        switch pooling {
        case .cls:
            textPooler.backward(p, dt, dx: dTextOutput)
            imagePooler.backward(p, di, dx: dImageOutput)
        case .mean:
            // Each pooled token receives its share 1/n of the mean's gradient.
            forEachMeanTerm { b, isText, row, share in
                Elementwise.accumulate((isText ? dTextOutput : dImageOutput) + row * D, (isText ? dt : di) + b * D,
                                       scale: share, count: D)
            }
        }
    }

    /// Backward through the layers and input projections; leaves ∂L/∂text, ∂L/∂image in
    /// `dTextInput`, `dImageInput`.
    public func backward(_ p: ParameterStore) {
        let D = width
        let nt = batch * textLength * D, ni = batch * imageLength * D
        for i in stride(from: textLayers.count - 1, through: 0, by: -1) {
            let dtPrev = dText(i).zeroed(nt), dvPrev = dImage(i).zeroed(ni)
            backwardRecomputing(recompute, in: pool,
                                forward: { forwardLayer(p, i, text: i == 0 ? textIn.pointer : textLayers[i - 1].output,
                                                        image: i == 0 ? imageIn.pointer : imageLayers[i - 1].output) },
                                release: { releaseLayer(p, i) }) {
                textLayers[i].backward(p, dText(i + 1).pointer, dx: dtPrev, dy: dvPrev)
                imageLayers[i].backward(p, dImage(i + 1).pointer, dx: dvPrev, dy: dtPrev)
            }
        }
        let dt0 = dText(0).pointer, dv0 = dImage(0).pointer
        let dType = p.grad(params.typeEmbed)
        for r in 0..<(batch * textLength) { Elementwise.accumulate(dType, dt0 + r * D, count: D) }
        for r in 0..<(batch * imageLength) { Elementwise.accumulate(dType + D, dv0 + r * D, count: D) }
        textProj.backward(p, dt0, dx: dTextInput.zeroed(nt))
        imageProj.backward(p, dv0, dx: dImageInput.zeroed(ni))
    }
}
