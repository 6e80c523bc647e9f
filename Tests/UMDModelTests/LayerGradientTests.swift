import Testing
@testable import UMDModel

/// Every layer's backward against finite differences, on several shapes including odd
/// sizes, padding masks and a batch of 1.
struct LayerGradientTests {
    @Test("Linear", arguments: [(1, 3, 5), (4, 7, 2), (3, 16, 9)])
    func linear(rows: Int, inF: Int, outF: Int) {
        for hasBias in [true, false] {
            let layout = ParameterLayout()
            let params = LinearParams.declare(layout, "lin", in: inF, out: outF, bias: hasBias)
            let store = ParameterStore(layout: layout)
            TestData.randomize(store, seed: 3)
            let layer = Linear(params)
            let x = TestData.buffer(rows * inF, seed: 4), dx = TestData.zeros(rows * inF)
            var checker = GradientChecker(store: store, forward: {
                (UnsafePointer(layer.forward(store, x, rows: rows)), rows * outF)
            }, backward: { layer.backward(store, $0, dx: dx) })
            checker.inputs = [.init(name: "x", values: x, gradient: dx, count: rows * inF)]
            checker.run()
        }
    }

    @Test("LayerNorm", arguments: [(1, 5), (6, 8), (3, 33)])
    func layerNorm(rows: Int, width: Int) {
        let layout = ParameterLayout()
        let params = LayerNormParams.declare(layout, "ln", width: width)
        let store = ParameterStore(layout: layout)
        TestData.randomize(store, seed: 5)
        let layer = LayerNorm(params)
        let x = TestData.buffer(rows * width, seed: 6, scale: 2), dx = TestData.zeros(rows * width)
        var checker = GradientChecker(store: store, forward: {
            (UnsafePointer(layer.forward(store, x, rows: rows)), rows * width)
        }, backward: { layer.backward(store, $0, dx: dx) })
        checker.inputs = [.init(name: "x", values: x, gradient: dx, count: rows * width)]
        checker.run()
    }

    @Test("FeedForward with GELU and QuickGELU", arguments: [Activation.gelu, .quickGelu])
    func feedForward(activation: Activation) {
        let (batch, length, width) = (2, 3, 6)
        let layout = ParameterLayout()
        let params = FeedForwardParams.declare(layout, "ffn", width: width)
        let store = ParameterStore(layout: layout)
        TestData.randomize(store, seed: 7)
        let layer = FeedForward(params, activation: activation)
        let n = batch * length * width
        let x = TestData.buffer(n, seed: 8), dx = TestData.zeros(n)
        var checker = GradientChecker(store: store, forward: {
            (UnsafePointer(layer.forward(store, x, batch: batch, perItemRows: length, .deterministic)), n)
        }, backward: { layer.backward(store, $0, dx: dx) })
        checker.inputs = [.init(name: "x", values: x, gradient: dx, count: n)]
        checker.run()
    }

    @Test("self-attention with key padding", arguments: [(1, 5, [0]), (3, 7, [0, 2, 6]), (2, 4, [1, 3])])
    func selfAttention(batch: Int, length: Int, padding: [Int]) {
        let (width, heads) = (12, 3)
        let layout = ParameterLayout()
        let params = AttentionParams.declare(layout, "attn", width: width, heads: heads)
        let store = ParameterStore(layout: layout)
        TestData.randomize(store, seed: 9)
        let layer = MultiHeadAttention(params)
        let n = batch * length * width
        let x = TestData.buffer(n, seed: 10), dx = TestData.zeros(n)
        let mask = TestData.keyMask(batch: batch, length: length, padding: padding)
        var checker = GradientChecker(store: store, forward: {
            (UnsafePointer(layer.forward(store, queries: x, keysValues: x, batch: batch, queryLength: length,
                                         keyLength: length, keyMask: mask, .deterministic)), n)
        }, backward: { layer.backward(store, $0, dQueries: dx, dKeysValues: dx) })
        checker.inputs = [.init(name: "x", values: x, gradient: dx, count: n)]
        checker.run()
        // Padding keys get no attention at all.
        let probs = layer.probabilities()
        for b in 0..<batch {
            for h in 0..<heads {
                for i in 0..<length {
                    for j in (length - padding[b])..<length {
                        #expect(probs[((b * heads + h) * length + i) * length + j] == 0)
                    }
                }
            }
        }
    }

    @Test("cross-attention with different lengths and key padding")
    func crossAttention() {
        let (batch, lq, lk, width, heads) = (2, 5, 3, 8, 2)
        let layout = ParameterLayout()
        let params = AttentionParams.declare(layout, "cross", width: width, heads: heads)
        let store = ParameterStore(layout: layout)
        TestData.randomize(store, seed: 11)
        let layer = MultiHeadAttention(params)
        let xq = TestData.buffer(batch * lq * width, seed: 12), dq = TestData.zeros(batch * lq * width)
        let xkv = TestData.buffer(batch * lk * width, seed: 13), dkv = TestData.zeros(batch * lk * width)
        let mask = TestData.keyMask(batch: batch, length: lk, padding: [1, 0])
        var checker = GradientChecker(store: store, forward: {
            (UnsafePointer(layer.forward(store, queries: xq, keysValues: xkv, batch: batch, queryLength: lq,
                                         keyLength: lk, keyMask: mask, .deterministic)), batch * lq * width)
        }, backward: { layer.backward(store, $0, dQueries: dq, dKeysValues: dkv) })
        checker.inputs = [.init(name: "queries", values: xq, gradient: dq, count: batch * lq * width),
                          .init(name: "keysValues", values: xkv, gradient: dkv, count: batch * lk * width)]
        checker.run()
    }

    @Test("pre-LN block (CLIP / MAE decoder)", arguments: [1, 3])
    func preLNBlock(batch: Int) {
        let (length, width, heads) = (5, 8, 2)
        let layout = ParameterLayout()
        let params = PreLNBlockParams.declare(layout, "blk", width: width, heads: heads)
        let store = ParameterStore(layout: layout)
        TestData.randomize(store, seed: 14)
        let layer = PreLNBlock(params)
        let n = batch * length * width
        let x = TestData.buffer(n, seed: 15), dx = TestData.zeros(n)
        var checker = GradientChecker(store: store, forward: {
            (UnsafePointer(layer.forward(store, x, batch: batch, length: length)), n)
        }, backward: { layer.backward(store, $0, dx: dx) })
        checker.inputs = [.init(name: "x", values: x, gradient: dx, count: n)]
        checker.run()
    }

    @Test("post-LN layer (RoBERTa) with padding, dropout off and on", arguments: [Float(0), 0.1])
    func postLNLayer(dropout: Float) {
        let (batch, length, width, heads) = (2, 6, 8, 2)
        let layout = ParameterLayout()
        let params = PostLNLayerParams.declare(layout, "text.layers.0", width: width, heads: heads)
        let store = ParameterStore(layout: layout)
        TestData.randomize(store, seed: 16)
        let layer = PostLNLayer(params, name: "text.layers.0")
        let n = batch * length * width
        let x = TestData.buffer(n, seed: 17), dx = TestData.zeros(n)
        let mask = TestData.keyMask(batch: batch, length: length, padding: [0, 3])
        // Dropout masks are a pure function of (key, site, sample, element), so every
        // forward of the check draws the same mask and finite differences stay valid.
        let ctx = ForwardContext(dropout: dropout, passKey: 1234, sampleIDs: [17, 4])
        var checker = GradientChecker(store: store, forward: {
            (UnsafePointer(layer.forward(store, x, batch: batch, length: length, keyMask: mask, ctx)), n)
        }, backward: { layer.backward(store, $0, dx: dx) })
        checker.inputs = [.init(name: "x", values: x, gradient: dx, count: n)]
        checker.run()
    }

    @Test("co-attention fusion layer: both streams' gradients, both masks", arguments: [1, 2])
    func coAttentionLayer(batch: Int) {
        let (lx, ly, width, heads) = (4, 6, 8, 2)
        let layout = ParameterLayout()
        let params = CoAttentionLayerParams.declare(layout, "fusion.text_layers.0", width: width, heads: heads)
        let store = ParameterStore(layout: layout)
        TestData.randomize(store, seed: 18)
        let layer = CoAttentionLayer(params, name: "fusion.text_layers.0")
        let x = TestData.buffer(batch * lx * width, seed: 19), dx = TestData.zeros(batch * lx * width)
        let y = TestData.buffer(batch * ly * width, seed: 20), dy = TestData.zeros(batch * ly * width)
        let ownMask = TestData.keyMask(batch: batch, length: lx, padding: [1, 0])
        let otherMask = TestData.keyMask(batch: batch, length: ly, padding: [0, 2])
        var checker = GradientChecker(store: store, forward: {
            (UnsafePointer(layer.forward(store, x, y, batch: batch, length: lx, otherLength: ly, ownKeyMask: ownMask,
                                         otherKeyMask: otherMask, .deterministic)), batch * lx * width)
        }, backward: { layer.backward(store, $0, dx: dx, dy: dy) })
        checker.inputs = [.init(name: "x", values: x, gradient: dx, count: batch * lx * width),
                          .init(name: "y", values: y, gradient: dy, count: batch * ly * width)]
        checker.run()
    }

    @Test("patch embedding (weight gradient only; pixels need none)")
    func patchEmbedding() {
        let (batch, channels, size, patch, width) = (2, 3, 8, 4, 6)
        let layout = ParameterLayout()
        let params = PatchEmbedding.declare(layout, "vision.patch_embed", channels: channels, patchSize: patch,
                                            width: width)
        let store = ParameterStore(layout: layout)
        TestData.randomize(store, seed: 21)
        let layer = PatchEmbedding(params, channels: channels, patchSize: patch)
        let pixels = TestData.buffer(batch * channels * size * size, seed: 22)
        let n = batch * (size / patch) * (size / patch) * width
        let checker = GradientChecker(store: store, forward: {
            (UnsafePointer(layer.forward(store, pixels: pixels, batch: batch, imageSize: size)), n)
        }, backward: { layer.backward(store, $0) })
        checker.run()
    }

    @Test("token + position + type embedding with LayerNorm, dropout off and on", arguments: [Float(0), 0.1])
    func textEmbedding(dropout: Float) {
        let (batch, length, vocab, width) = (2, 5, 11, 6)
        let layout = ParameterLayout()
        let params = TextEmbeddingParams.declare(layout, "text", vocabularySize: vocab, maxLength: 8, width: width)
        let store = ParameterStore(layout: layout)
        TestData.randomize(store, seed: 23)
        let layer = TextEmbedding(params, name: "text")
        let ids: [Int32] = [0, 5, 7, 5, 2, 0, 9, 2, 1, 1]   // a repeated id checks scatter-add
        let ctx = ForwardContext(dropout: dropout, passKey: 99, sampleIDs: [3, 8])
        var checker = GradientChecker(store: store, forward: {
            ids.withUnsafeBufferPointer {
                (UnsafePointer(layer.forward(store, ids: $0.baseAddress!, batch: batch, length: length, ctx)),
                 batch * length * width)
            }
        }, backward: { layer.backward(store, $0) })
        checker.samplesPerTensor = 12  // word_embed is mostly unused rows; sample more of it
        checker.run()
    }

    @Test("pooler: tanh(dense(token 0))", arguments: [1, 3])
    func pooler(batch: Int) {
        let (length, width) = (4, 6)
        let layout = ParameterLayout()
        let params = LinearParams.declare(layout, "fusion.text_pooler", in: width, out: width)
        let store = ParameterStore(layout: layout)
        TestData.randomize(store, seed: 24)
        let layer = Pooler(params)
        let x = TestData.buffer(batch * length * width, seed: 25), dx = TestData.zeros(batch * length * width)
        var checker = GradientChecker(store: store, forward: {
            (UnsafePointer(layer.forward(store, x, batch: batch, length: length)), batch * width)
        }, backward: { layer.backward(store, $0, dx: dx) })
        checker.inputs = [.init(name: "x", values: x, gradient: dx, count: batch * length * width)]
        checker.run()
        // Only token 0 of each sequence receives gradient.
        for b in 0..<batch { for t in 1..<length { for j in 0..<width { #expect(dx[(b * length + t) * width + j] == 0) } } }
    }
}
