/// Matrix-product FLOPs of one training step, counted from MODEL_SPEC.md's shapes (2·m·n·k
/// per product, attention's two batched products included). A trained product's backward
/// costs twice its forward (input and weight gradients), except the patch embedding, whose
/// input is pixels (weight gradient only). The teacher runs forward only. Element-wise work
/// is not counted: this is the numerator of the step's matmul utilisation.
public enum StepFlops {
    static func linear(_ rows: Int, _ inputs: Int, _ outputs: Int) -> Double {
        2 * Double(rows) * Double(inputs) * Double(outputs)
    }

    /// Attention of `q` query tokens over `k` key tokens per sample: q, o on the queries,
    /// k, v on the keys, scores QKᵀ and the weighted sum PV over all heads.
    static func attention(batch B: Int, queries q: Int, keys k: Int, width D: Int) -> Double {
        linear(B * q, D, D) * 2 + linear(B * k, D, D) * 2 + 2 * 2 * Double(B) * Double(q) * Double(k) * Double(D)
    }

    static func feedForward(rows: Int, width D: Int) -> Double { linear(rows, D, 4 * D) + linear(rows, 4 * D, D) }

    /// One forward of the vision encoder over `tokens` tokens per image (1 + kept patches);
    /// the patch embedding runs on all N patches (the spec masks after embedding).
    static func vision(_ c: ModelConfig, batch B: Int, tokens T: Int) -> (total: Double, patchEmbed: Double) {
        let D = c.width
        let patchEmbed = linear(B * c.patchCount, c.patchLength, D)
        let blocks = Double(c.preset.visionLayers)
            * (attention(batch: B, queries: T, keys: T, width: D) + feedForward(rows: B * T, width: D))
        return (patchEmbed + blocks, patchEmbed)
    }

    static func text(_ c: ModelConfig, batch B: Int, length L: Int) -> Double {
        Double(c.preset.textLayers)
            * (attention(batch: B, queries: L, keys: L, width: c.width) + feedForward(rows: B * L, width: c.width))
    }

    /// Projections into the fusion width and both streams' layers (self, cross, FFN).
    static func fusion(_ c: ModelConfig, batch B: Int, textLength L: Int, imageTokens T: Int) -> Double {
        let D = c.width
        let textStream = attention(batch: B, queries: L, keys: L, width: D) + attention(batch: B, queries: L, keys: T, width: D)
            + feedForward(rows: B * L, width: D)
        let imageStream = attention(batch: B, queries: T, keys: T, width: D) + attention(batch: B, queries: T, keys: L, width: D)
            + feedForward(rows: B * T, width: D)
        return linear(B * L, D, D) + linear(B * T, D, D) + Double(c.preset.fusionLayers) * (textStream + imageStream)
    }

    /// MR-Pretrain (or TD-Calib without ITM) on B samples of length L with M selected MLM
    /// tokens: student pass 1 (masked) and pass 3 (ITM) forward and backward, the teacher's
    /// pass 2 forward, the MIM decoder, the MLM head at the selected tokens, the feature
    /// projections (student and teacher) and the ITM head.
    public static func pretrain(_ c: ModelConfig, batch B: Int, textLength L: Int, selectedTokens M: Int,
                                itm: Bool) -> Double {
        let N = c.patchCount, K = c.keptPatchCount, D = c.width, p = c.preset
        let Dd = p.decoderWidth, Dp = p.projectionWidth
        func trained(_ forward: Double, patchEmbed: Double = 0) -> Double { 3 * forward - patchEmbed }

        let v1 = vision(c, batch: B, tokens: 1 + K)
        var student = trained(v1.total + text(c, batch: B, length: L) + fusion(c, batch: B, textLength: L, imageTokens: 1 + K),
                              patchEmbed: v1.patchEmbed)
        let mimForward = linear(B * (1 + K), D, Dd)
            + Double(p.decoderLayers) * (attention(batch: B, queries: 1 + N, keys: 1 + N, width: Dd)
                                         + feedForward(rows: B * (1 + N), width: Dd))
            + linear(B * (1 + N), Dd, c.patchLength)
        let heads = mimForward + linear(M, D, D) + linear(M, D, c.vocabularySize)
            + linear(B * L, D, Dp) + linear(B * (1 + K), D, Dp)
        student += trained(heads)
        let v2 = vision(c, batch: B, tokens: 1 + N)
        let teacher = v2.total + text(c, batch: B, length: L) + fusion(c, batch: B, textLength: L, imageTokens: 1 + N)
            + linear(B * L, D, Dp) + linear(B * (1 + K), D, Dp)
        if itm {
            student += trained(v2.total + text(c, batch: B, length: L)
                               + fusion(c, batch: B, textLength: L, imageTokens: 1 + N)
                               + 2 * linear(B, D, D) + linear(B, 2 * D, 2), patchEmbed: v2.patchEmbed)
        }
        return student + teacher
    }

    /// GM-Coord fine-tuning with a classifier head of `answers` outputs: one unmasked
    /// student pass, the poolers and the head, forward and backward.
    public static func finetuneClassifier(_ c: ModelConfig, batch B: Int, textLength L: Int, answers A: Int) -> Double {
        let N = c.patchCount, D = c.width
        let v = vision(c, batch: B, tokens: 1 + N)
        let forward = v.total + text(c, batch: B, length: L) + fusion(c, batch: B, textLength: L, imageTokens: 1 + N)
            + 2 * linear(B, D, D) + linear(B, 2 * D, 2 * D) + linear(B, 2 * D, A)
        return 3 * forward - v.patchEmbed
    }

    /// The scores products backward does again (MultiHeadAttention keeps no probabilities:
    /// it recomputes each head's QKᵀ in backward): 2·B·q·k·D per trained attention — every
    /// student attention of the step. Not in the step's useful FLOPs above; counted so the
    /// products actually made can be checked against the shapes.
    public static func recomputedScores(_ c: ModelConfig, batch B: Int, textLength L: Int, pretrain: Bool,
                                        itm: Bool) -> Double {
        let D = c.width, N = c.patchCount, K = c.keptPatchCount, p = c.preset
        func scores(_ q: Int, _ k: Int, _ width: Int) -> Double { 2 * Double(B) * Double(q) * Double(k) * Double(width) }
        func pass(imageTokens T: Int) -> Double {
            Double(p.visionLayers) * scores(T, T, D) + Double(p.textLayers) * scores(L, L, D)
                + Double(p.fusionLayers) * (scores(L, L, D) + scores(L, T, D) + scores(T, T, D) + scores(T, L, D))
        }
        guard pretrain else { return pass(imageTokens: 1 + N) }
        return pass(imageTokens: 1 + K) + Double(p.decoderLayers) * scores(1 + N, 1 + N, p.decoderWidth)
            + (itm ? pass(imageTokens: 1 + N) : 0)
    }
}
