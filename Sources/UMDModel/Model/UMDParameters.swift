/// Declares every tensor of UMD under its MODEL_SPEC.md section 2 name, in forward-use
/// order (the store lays them out reversed), and keeps their ids.
public struct VisionParams: Sendable {
    public let patchEmbed: LinearParams
    public let clsToken: ParameterID, posEmbed: ParameterID
    public let lnPre: LayerNormParams
    public let blocks: [PreLNBlockParams]
    public let lnPost: LayerNormParams
}

public struct TextParams: Sendable {
    public let embedding: TextEmbeddingParams
    public let layers: [PostLNLayerParams]
}

public struct FusionParams: Sendable {
    public let textProj: LinearParams, imageProj: LinearParams
    public let typeEmbed: ParameterID
    public let textLayers: [CoAttentionLayerParams], imageLayers: [CoAttentionLayerParams]
    public let textPooler: LinearParams, imagePooler: LinearParams
}

public struct MIMParams: Sendable {
    public let embed: LinearParams
    public let maskToken: ParameterID
    public let blocks: [PreLNBlockParams]
    public let ln: LayerNormParams
    public let out: LinearParams
}

public struct MLMParams: Sendable {
    public let dense: LinearParams
    public let ln: LayerNormParams
    public let out: LinearParams     // `mlm.out.weight` [V, D], no bias
    public let bias: ParameterID     // `mlm.bias` [V]
}

public struct TaskHeadParams: Sendable {
    public let fc1: LinearParams?, ln: LayerNormParams?, fc2: LinearParams?
    public let score: LinearParams?
}

public final class UMDParameters: @unchecked Sendable {
    // Sendable: built once, immutable afterwards.
    public let config: ModelConfig
    public let layout = ParameterLayout()
    public let vision: VisionParams
    public let text: TextParams
    public let fusion: FusionParams
    public let mim: MIMParams
    public let mlm: MLMParams
    public let feaText: LinearParams, feaImage: LinearParams
    public let itm: LinearParams
    public let head: TaskHeadParams?
    /// The last tensor declared of the vision encoder, the text encoder and the fusion
    /// layers (poolers excluded): in the reversed layout each is its group's lowest offset,
    /// with everything declared before it above (`readyOffsets`).
    let lastVisionTensor: ParameterID, lastTextTensor: ParameterID, lastFusionLayerTensor: ParameterID

    public init(_ config: ModelConfig) {
        self.config = config
        let p = config.preset, D = p.width, L = layout
        let normal = ParameterInit.normal(std: 0.02)
        vision = VisionParams(
            patchEmbed: PatchEmbedding.declare(L, "vision.patch_embed", channels: 3, patchSize: p.patchSize, width: D),
            clsToken: L.declare("vision.cls_token", shape: [D], initializer: normal, role: .embedding),
            posEmbed: L.declare("vision.pos_embed", shape: [1 + config.patchCount, D], initializer: normal,
                                role: .embedding),
            lnPre: .declare(L, "vision.ln_pre", width: D),
            blocks: (0..<p.visionLayers).map { .declare(L, "vision.blocks.\($0)", width: D, heads: p.heads) },
            lnPost: .declare(L, "vision.ln_post", width: D))
        lastVisionTensor = ParameterID(index: L.specs.count - 1)
        text = TextParams(
            embedding: .declare(L, "text", vocabularySize: config.vocabularySize, maxLength: p.maxTextLength, width: D),
            layers: (0..<p.textLayers).map { .declare(L, "text.layers.\($0)", width: D, heads: p.heads) })
        lastTextTensor = ParameterID(index: L.specs.count - 1)
        let textProj = LinearParams.declare(L, "fusion.text_proj", in: D, out: D)
        let imageProj = LinearParams.declare(L, "fusion.image_proj", in: D, out: D)
        let typeEmbed = L.declare("fusion.type_embed", shape: [2, D], initializer: normal, role: .embedding)
        var textLayers: [CoAttentionLayerParams] = [], imageLayers: [CoAttentionLayerParams] = []
        for i in 0..<p.fusionLayers {
            textLayers.append(.declare(L, "fusion.text_layers.\(i)", width: D, heads: p.heads))
            imageLayers.append(.declare(L, "fusion.image_layers.\(i)", width: D, heads: p.heads))
        }
        lastFusionLayerTensor = ParameterID(index: L.specs.count - 1)
        fusion = FusionParams(textProj: textProj, imageProj: imageProj, typeEmbed: typeEmbed,
                              textLayers: textLayers, imageLayers: imageLayers,
                              textPooler: .declare(L, "fusion.text_pooler", in: D, out: D),
                              imagePooler: .declare(L, "fusion.image_pooler", in: D, out: D))
        let Dd = p.decoderWidth
        mim = MIMParams(
            embed: .declare(L, "mim.embed", in: D, out: Dd),
            maskToken: L.declare("mim.mask_token", shape: [Dd], initializer: normal, role: .embedding),
            blocks: (0..<p.decoderLayers).map { .declare(L, "mim.blocks.\($0)", width: Dd, heads: p.decoderHeads) },
            ln: .declare(L, "mim.ln", width: Dd),
            out: .declare(L, "mim.out", in: Dd, out: config.patchLength))
        mlm = MLMParams(
            dense: .declare(L, "mlm.dense", in: D, out: D),
            ln: .declare(L, "mlm.ln", width: D),
            out: .declare(L, "mlm.out", in: D, out: config.vocabularySize, bias: false),
            bias: L.declare("mlm.bias", shape: [config.vocabularySize], initializer: .zeros, role: .bias))
        feaText = .declare(L, "fea.text", in: D, out: p.projectionWidth)
        feaImage = .declare(L, "fea.image", in: D, out: p.projectionWidth)
        itm = .declare(L, "itm", in: 2 * D, out: 2)
        switch config.head {
        case .none:
            head = nil
        case .classifier(let outputs):
            head = TaskHeadParams(fc1: .declare(L, "head.fc1", in: 2 * D, out: 2 * D),
                                  ln: .declare(L, "head.ln", width: 2 * D),
                                  fc2: .declare(L, "head.fc2", in: 2 * D, out: outputs), score: nil)
        case .retrieval:
            head = TaskHeadParams(fc1: nil, ln: nil, fc2: nil, score: .declare(L, "head.score", in: 2 * D, out: 1))
        }
    }

    /// Where backward's progress is reported (DESIGN.md idea 1): the arena holds the tensors
    /// in reverse order of declaration — heads, `itm`, `fea`, `mlm`, `mim`, the poolers, the
    /// fusion layers, the text encoder, the vision encoder — and backward finishes them in
    /// that order. Before the fusion layers' backward every gradient below `fusion` is final;
    /// before the text encoder's, every one below `text`; before the vision encoder's, below `vision`.
    public func readyOffsets(_ store: ParameterStore) -> (fusion: Int, text: Int, vision: Int) {
        (store.offset(lastFusionLayerTensor), store.offset(lastTextTensor), store.offset(lastVisionTensor))
    }

    /// What the EMA teacher holds (MODEL_SPEC.md section 7): `vision.*`, `text.*`,
    /// `fusion.*` except the two poolers, and `fea.*`.
    public static func isTeacherTensor(_ name: String) -> Bool {
        if name.hasPrefix("fusion.text_pooler") || name.hasPrefix("fusion.image_pooler") { return false }
        return name.hasPrefix("vision.") || name.hasPrefix("text.") || name.hasPrefix("fusion.") || name.hasPrefix("fea.")
    }

    /// Initialises `store` as MODEL_SPEC.md section 2 says; `head.score` copies `itm`'s
    /// "match" row (weight row 1, bias entry 1) when the store holds both.
    public func initialize(_ store: ParameterStore, seed: UInt64) {
        store.initialize(seed: seed)
        if let score = head?.score { copyMatchRowOfITM(into: score, store) }
    }

    public func copyMatchRowOfITM(into score: LinearParams, _ store: ParameterStore) {
        let w = 2 * config.width
        store.value(score.weight).update(from: store.value(itm.weight) + w, count: w)
        if let sb = score.bias, let ib = itm.bias { store.value(sb)[0] = store.value(ib)[1] }
    }
}
