import Foundation

/// Hugging Face / OpenAI weights → umd's MODEL_SPEC names (`umd-mpirun convert`).
///
/// Vision: a CLIP vision tower, as Hugging Face's `CLIPVisionModel` or `CLIPModel` (with or
/// without `vision_model.`), or OpenAI/open_clip naming (`visual.` optional; fused
/// `attn.in_proj_weight`, `mlp.c_fc`/`c_proj`). Text: RoBERTa as `RobertaModel` or
/// `RobertaForMaskedLM` (with or without `roberta.`); `lm_head.*` becomes the MLM head.
/// Blocks beyond the preset's count are dropped (base keeps 11 of CLIP's 12, as the
/// reference code); the position table is resized bicubically to the target image size.
public enum PretrainedConversion {
    /// One input file with its Hugging Face `config.json` when one lies beside it.
    public struct Source {
        public var path: String
        public var file: Safetensors.File
        public var config: [String: Any]?
        public init(path: String, file: Safetensors.File, config: [String: Any]?) {
            self.path = path; self.file = file; self.config = config
        }
    }

    /// What a conversion did, tensor by tensor.
    public struct Report: Sendable {
        public var converted: [(from: String, to: String)] = []
        public var reshaped: [String] = []
        public var resized: [String] = []
        /// Source tensors not used, with why.
        public var unused: [String] = []
        /// umd tensors the sources do not provide (they start fresh).
        public var notProvided: [String] = []
    }

    public struct Result {
        public var tensors: [Safetensors.Tensor]
        public var report: Report
        public var vocabularySize: Int?
    }

    /// Converts the given sources for `preset` at `imageSize`.
    public static func convert(clip: Source?, roberta: Source?, preset: ModelPreset, imageSize: Int) throws -> Result {
        var out: [Safetensors.Tensor] = []
        var report = Report()
        var vocabulary: Int? = nil
        if let clip { out += try vision(clip, preset: preset, imageSize: imageSize, report: &report) }
        if let roberta {
            let (tensors, v) = try text(roberta, preset: preset, report: &report)
            out += tensors
            vocabulary = v
        }
        // What the model has that no source gave (fusion, MIM, feature projections, ITM …).
        let model = UMDParameters(ModelConfig(preset: preset, vocabularySize: vocabulary ?? preset.vocabularySize,
                                              imageSize: imageSize))
        let provided = Set(out.map(\.name))
        report.notProvided = model.layout.specs.map(\.name).filter { !provided.contains($0) }
        return Result(tensors: out, report: report, vocabularySize: vocabulary)
    }

    // MARK: - Custom presets

    /// The preset of the sources' own sizes (`convert --preset custom[:key=value,…]`): width,
    /// heads, patch, image size and vision layers from CLIP's config.json (else its tensors'
    /// shapes), text layers, position table and vocabulary from RoBERTa's; what neither file
    /// decides follows the paper's base model's proportions — fusion layers = text layers / 2,
    /// decoder width = projection = width / 2, decoder heads = heads / 2, decoder layers = text
    /// layers / 3 (at most 4), text length 64 — unless `given` names it. A given size that
    /// contradicts a file is an error naming both (fewer vision layers than CLIP's is allowed:
    /// the rest are dropped, as base keeps 11 of 12).
    public static func customPreset(_ given: [ModelPreset.CustomKey: Int], clip: Source?, roberta: Source?) throws
        -> ModelPreset {
        typealias Key = ModelPreset.CustomKey
        var found: [Key: (value: Int, from: String)] = [:]
        var problems: [String] = []
        func record(_ key: Key, _ value: Int?, _ from: String) {
            guard let value else { return }
            if let earlier = found[key], earlier.value != value {
                problems.append("\(key.rawValue): \(earlier.value) in \(earlier.from) but \(value) in \(from)")
            } else if found[key] == nil {
                found[key] = (value, from)
            }
        }
        func int(_ c: [String: Any]?, _ key: String) -> Int? { (c?[key] as? NSNumber)?.intValue }
        if let clip {
            let vc = clip.config.map { ($0["vision_config"] as? [String: Any]) ?? $0 }
            let names = Set(clip.file.tensors.map(\.name))
            let patchEmbed = ["vision_model.embeddings.patch_embedding.weight", "embeddings.patch_embedding.weight",
                              "visual.conv1.weight", "conv1.weight"].first { names.contains($0) }.flatMap { clip.file[$0] }
            let positions = ["vision_model.embeddings.position_embedding.weight", "embeddings.position_embedding.weight",
                             "visual.positional_embedding", "positional_embedding"].first { names.contains($0) }
                .flatMap { clip.file[$0] }
            let shape = patchEmbed?.shape ?? []
            let patch = int(vc, "patch_size") ?? (shape.count == 4 ? shape[3] : nil)
            let grid = positions.flatMap { $0.shape.first }.flatMap { ModelIO.gridSide($0 - 1) }
            let blocks = ["vision_model.encoder.layers.", "encoder.layers.", "visual.transformer.resblocks.",
                          "transformer.resblocks."].map { prefix in
                (0...).prefix { i in names.contains { $0.hasPrefix(prefix + "\(i).") } }.count
            }.max() ?? 0
            let from = clip.config == nil ? clip.path : clip.path + " (config.json)"
            record(.width, int(vc, "hidden_size") ?? shape.first, from)
            record(.heads, int(vc, "num_attention_heads"), from)
            record(.patch, patch, from)
            record(.image, int(vc, "image_size") ?? grid.flatMap { g in patch.map { g * $0 } }, from)
            record(.visionLayers, int(vc, "num_hidden_layers") ?? (blocks > 0 ? blocks : nil), from)
        }
        if let roberta {
            let names = Set(roberta.file.tensors.map(\.name))
            let prefix = names.contains("roberta.embeddings.word_embeddings.weight") ? "roberta." : ""
            let words = roberta.file[prefix + "embeddings.word_embeddings.weight"]?.shape ?? []
            let positions = roberta.file[prefix + "embeddings.position_embeddings.weight"]?.shape.first
            let layers = (0...).prefix { i in names.contains { $0.hasPrefix(prefix + "encoder.layer.\(i).") } }.count
            let c = roberta.config
            let from = c == nil ? roberta.path : roberta.path + " (config.json)"
            record(.width, int(c, "hidden_size") ?? (words.count == 2 ? words[1] : nil), from)
            record(.heads, int(c, "num_attention_heads"), from)
            record(.textLayers, int(c, "num_hidden_layers") ?? (layers > 0 ? layers : nil), from)
            record(.maxTextLength, (int(c, "max_position_embeddings") ?? positions).map { $0 - 2 }, from)
            record(.vocabulary, int(c, "vocab_size") ?? words.first, from)
        }
        var values = given
        for (key, file) in found {
            guard let wanted = given[key] else { values[key] = file.value; continue }
            let fewerBlocks = key == .visionLayers && wanted < file.value
            if wanted != file.value && !fewerBlocks && key != .image {
                problems.append("\(key.rawValue)=\(wanted) was given but \(file.from) has \(file.value)")
            }
        }
        guard problems.isEmpty else {
            throw ModelError.conversion("the sources do not describe one model: " + problems.joined(separator: "; "))
        }
        // What no file decides: the base model's proportions.
        if let D = values[.width] {
            values[.decoderWidth] = values[.decoderWidth] ?? D / 2
            values[.projection] = values[.projection] ?? D / 2
        }
        if let H = values[.heads] { values[.decoderHeads] = values[.decoderHeads] ?? (H % 2 == 0 ? H / 2 : H) }
        if let T = values[.textLayers] {
            values[.fusionLayers] = values[.fusionLayers] ?? max(1, T / 2)
            values[.decoderLayers] = values[.decoderLayers] ?? min(4, max(1, T / 3))
        }
        if let maxL = values[.maxTextLength] { values[.textLength] = values[.textLength] ?? min(64, maxL) }
        let missing = ModelPreset.CustomKey.allCases.filter { $0 != .vocabulary && values[$0] == nil }
        guard missing.isEmpty else {
            throw ModelError.conversion("custom preset: the sources do not give " + missing.map(\.rawValue).joined(separator: ", ")
                                        + " (a config.json beside the file holds them); give them as --preset custom:"
                                        + missing.map { "\($0.rawValue)=N" }.joined(separator: ","))
        }
        do { return try ModelPreset.custom(values) } catch { throw ModelError.conversion("\(error)") }
    }

    // MARK: - Vision

    static func vision(_ s: Source, preset: ModelPreset, imageSize: Int, report: inout Report) throws -> [Safetensors.Tensor] {
        let names = Set(s.file.tensors.map(\.name))
        let openAI = names.contains("visual.conv1.weight") || names.contains("conv1.weight")
        let prefix: String
        if openAI {
            prefix = names.contains("visual.conv1.weight") ? "visual." : ""
        } else if names.contains("vision_model.embeddings.patch_embedding.weight") {
            prefix = "vision_model."
        } else if names.contains("embeddings.patch_embedding.weight") {
            prefix = ""
        } else {
            throw ModelError.conversion("\(s.path): no CLIP vision tower found (looked for "
                                  + "vision_model.embeddings.patch_embedding.weight, embeddings.patch_embedding.weight, "
                                  + "visual.conv1.weight, conv1.weight)")
        }
        let D = preset.width, P = preset.patchSize
        if let c = s.config {
            let vc = (c["vision_config"] as? [String: Any]) ?? c
            var problems = [("hidden_size", D, false), ("patch_size", P, false), ("num_attention_heads", preset.heads, false),
                            ("intermediate_size", 4 * D, false), ("num_hidden_layers", preset.visionLayers, true)]
                .compactMap { mismatch(vc, $0.0, $0.1, atLeast: $0.2) }
            if let act = vc["hidden_act"] as? String, act != "quick_gelu" {
                problems.append("hidden_act = \(act) (umd's vision encoder uses quick_gelu)")
            }
            try refuse(s.path, problems, preset: preset)
        }
        var m = Mapper(source: s, report: report)
        let blocks: Int
        if openAI {
            m.take(prefix + "conv1.weight", as: "vision.patch_embed.weight", shape: [D, 3 * P * P])
            m.take(prefix + "class_embedding", as: "vision.cls_token", shape: [D])
            m.takePositions(prefix + "positional_embedding", imageSize: imageSize, patchSize: P, width: D)
            m.takeNorm(prefix + "ln_pre", as: "vision.ln_pre", width: D)
            m.takeNorm(prefix + "ln_post", as: "vision.ln_post", width: D)
            blocks = m.count(prefix + "transformer.resblocks.", ".ln_1.weight")
            for i in 0..<min(blocks, preset.visionLayers) {
                let a = prefix + "transformer.resblocks.\(i).", b = "vision.blocks.\(i)."
                m.takeNorm(a + "ln_1", as: b + "ln1", width: D)
                m.takeNorm(a + "ln_2", as: b + "ln2", width: D)
                m.takeFused(a + "attn.in_proj_weight", a + "attn.in_proj_bias", as: [b + "attn.q", b + "attn.k", b + "attn.v"],
                            width: D)
                m.takeLinear(a + "attn.out_proj", as: b + "attn.o", out: D, in: D)
                m.takeLinear(a + "mlp.c_fc", as: b + "mlp.fc1", out: 4 * D, in: D)
                m.takeLinear(a + "mlp.c_proj", as: b + "mlp.fc2", out: D, in: 4 * D)
            }
            m.drop(prefix + "transformer.resblocks.", from: preset.visionLayers, count: blocks)
            m.unused(prefix + "proj", because: "CLIP's image projection; umd projects in the fusion module")
        } else {
            let e = prefix + "embeddings."
            m.take(e + "patch_embedding.weight", as: "vision.patch_embed.weight", shape: [D, 3 * P * P])
            m.take(e + "class_embedding", as: "vision.cls_token", shape: [D])
            m.takePositions(e + "position_embedding.weight", imageSize: imageSize, patchSize: P, width: D)
            m.unused(e + "position_ids", because: "a buffer of position indices")
            m.takeNorm(prefix + "pre_layrnorm", as: "vision.ln_pre", width: D)
            m.takeNorm(prefix + "post_layernorm", as: "vision.ln_post", width: D)
            blocks = m.count(prefix + "encoder.layers.", ".layer_norm1.weight")
            for i in 0..<min(blocks, preset.visionLayers) {
                let a = prefix + "encoder.layers.\(i).", b = "vision.blocks.\(i)."
                m.takeNorm(a + "layer_norm1", as: b + "ln1", width: D)
                m.takeNorm(a + "layer_norm2", as: b + "ln2", width: D)
                for (from, to) in [("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"), ("out_proj", "o")] {
                    m.takeLinear(a + "self_attn." + from, as: b + "attn." + to, out: D, in: D)
                }
                m.takeLinear(a + "mlp.fc1", as: b + "mlp.fc1", out: 4 * D, in: D)
                m.takeLinear(a + "mlp.fc2", as: b + "mlp.fc2", out: D, in: 4 * D)
            }
            m.drop(prefix + "encoder.layers.", from: preset.visionLayers, count: blocks)
        }
        guard blocks >= preset.visionLayers else {
            throw ModelError.conversion("\(s.path): the CLIP tower has \(blocks) blocks; preset \(preset.name) needs "
                                  + "\(preset.visionLayers)")
        }
        m.markOthersUnused(because: openAI ? "not part of the vision tower" : "not part of the vision tower")
        try m.finish()
        report = m.report
        return m.out
    }

    // MARK: - Text

    static func text(_ s: Source, preset: ModelPreset, report: inout Report) throws -> ([Safetensors.Tensor], Int) {
        let names = Set(s.file.tensors.map(\.name))
        let prefix: String
        if names.contains("roberta.embeddings.word_embeddings.weight") { prefix = "roberta." }
        else if names.contains("embeddings.word_embeddings.weight") { prefix = "" }
        else {
            throw ModelError.conversion("\(s.path): no RoBERTa model found (looked for "
                                  + "embeddings.word_embeddings.weight with or without roberta.)")
        }
        let D = preset.width
        guard let words = s.file[prefix + "embeddings.word_embeddings.weight"], words.shape.count == 2 else {
            throw ModelError.conversion("\(s.path): embeddings.word_embeddings.weight is not a matrix")
        }
        let V = words.shape[0]
        if let c = s.config {
            var problems = [("hidden_size", D), ("num_attention_heads", preset.heads), ("intermediate_size", 4 * D),
                            ("num_hidden_layers", preset.textLayers), ("max_position_embeddings", preset.maxTextLength + 2),
                            ("vocab_size", V)].compactMap { mismatch(c, $0.0, $0.1) }
            if let act = c["hidden_act"] as? String, act != "gelu" {
                problems.append("hidden_act = \(act) (umd's text encoder uses gelu, the erf form)")
            }
            try refuse(s.path, problems, preset: preset)
        }
        var m = Mapper(source: s, report: report)
        let e = prefix + "embeddings."
        m.take(e + "word_embeddings.weight", as: "text.word_embed", shape: [V, D])
        m.take(e + "position_embeddings.weight", as: "text.pos_embed", shape: [preset.maxTextLength + 2, D])
        m.take(e + "token_type_embeddings.weight", as: "text.type_embed", shape: [1, D])
        m.takeNorm(e + "LayerNorm", as: "text.ln_embed", width: D)
        m.unused(e + "position_ids", because: "a buffer of position indices")
        m.unused(e + "token_type_ids", because: "a buffer of token type indices")
        let layers = m.count(prefix + "encoder.layer.", ".attention.self.query.weight")
        guard layers == preset.textLayers else {
            throw ModelError.conversion("\(s.path): the RoBERTa model has \(layers) layers; preset \(preset.name) has "
                                  + "\(preset.textLayers)")
        }
        for i in 0..<layers {
            let a = prefix + "encoder.layer.\(i).", b = "text.layers.\(i)."
            for (from, to) in [("query", "q"), ("key", "k"), ("value", "v")] {
                m.takeLinear(a + "attention.self." + from, as: b + "attn." + to, out: D, in: D)
            }
            m.takeLinear(a + "attention.output.dense", as: b + "attn.o", out: D, in: D)
            m.takeNorm(a + "attention.output.LayerNorm", as: b + "ln_attn", width: D)
            m.takeLinear(a + "intermediate.dense", as: b + "ffn.fc1", out: 4 * D, in: D)
            m.takeLinear(a + "output.dense", as: b + "ffn.fc2", out: D, in: 4 * D)
            m.takeNorm(a + "output.LayerNorm", as: b + "ln_ffn", width: D)
        }
        m.unused(prefix + "pooler.dense.weight", because: "RoBERTa's pooler; umd pools in the fusion module")
        m.unused(prefix + "pooler.dense.bias", because: "RoBERTa's pooler; umd pools in the fusion module")
        // The MLM head (RobertaForMaskedLM): the fusion width equals the text width.
        if names.contains("lm_head.dense.weight") {
            m.takeLinear("lm_head.dense", as: "mlm.dense", out: D, in: D)
            m.takeNorm("lm_head.layer_norm", as: "mlm.ln", width: D)
            if names.contains("lm_head.decoder.weight") {
                m.take("lm_head.decoder.weight", as: "mlm.out.weight", shape: [V, D])
            } else {
                // Saved with tied weights (RoBERTa's default): the decoder is the word embedding.
                m.takeTied(e + "word_embeddings.weight", as: "mlm.out.weight", shape: [V, D])
            }
            m.take("lm_head.bias", as: "mlm.bias", shape: [V])
            m.unused("lm_head.decoder.bias", because: "the same values as lm_head.bias (tied)")
        }
        m.markOthersUnused(because: "not part of the text encoder")
        try m.finish()
        report = m.report
        return (m.out, V)
    }

    // MARK: - Helpers

    /// A dimension in config.json that differs from (or, `atLeast`, falls short of) what the
    /// preset needs, as text; nil when it fits or is absent.
    static func mismatch(_ config: [String: Any], _ key: String, _ expected: Int, atLeast: Bool = false) -> String? {
        guard let value = (config[key] as? NSNumber)?.intValue else { return nil }
        guard atLeast ? value < expected : value != expected else { return nil }
        return "\(key) = \(value), the preset needs " + (atLeast ? "at least " : "") + "\(expected)"
    }

    /// Every mismatch of a config.json at once, naming the preset compared against.
    static func refuse(_ path: String, _ problems: [String], preset: ModelPreset) throws {
        guard !problems.isEmpty else { return }
        throw ModelError.conversion("\(path): config.json does not fit preset \(preset.name) (width \(preset.width), "
                                    + "\(preset.heads) heads): " + problems.joined(separator: "; ")
                                    + ". Choose the preset of this model's size (--preset)")
    }

    /// Collects converted tensors and what happened to every source tensor.
    struct Mapper {
        let source: Source
        var report: Report
        var out: [Safetensors.Tensor] = []
        var used = Set<String>()
        var problems: [String] = []

        init(source: Source, report: Report) { self.source = source; self.report = report }

        func floats(_ name: String) -> (Safetensors.Tensor, [Float])? {
            guard let t = source.file[name], let values = t.asFloats else { return nil }
            return (t, values)
        }

        mutating func emit(_ from: String, _ to: String, _ shape: [Int], _ values: [Float]) {
            out.append(Safetensors.Tensor(name: to, shape: shape, floats: values))
            report.converted.append((from, to))
        }

        /// `name` was already taken; it is also the value of `to` (tied weights).
        mutating func takeTied(_ name: String, as to: String, shape: [Int]) {
            guard let (_, values) = floats(name) else { problems.append("\(name) (for \(to)) not found"); return }
            emit(name, to, shape, values)
            report.reshaped.append("\(to): tied to \(name) (the file stores it once)")
        }

        /// Takes `name` as `to` with `shape` (a reshape of the same number of values is allowed
        /// and reported: CLIP's conv [D, C, P, P] is the linear [D, C·P·P] in (c, row, col) order).
        mutating func take(_ name: String, as to: String, shape: [Int]) {
            guard let (t, values) = floats(name) else { problems.append("\(name) (for \(to)) not found"); return }
            used.insert(name)
            guard values.count == shape.reduce(1, *) else {
                problems.append("\(name) has shape \(t.shape); \(to) needs \(shape)")
                return
            }
            if t.shape != shape { report.reshaped.append("\(name) \(t.shape) -> \(to) \(shape)") }
            emit(name, to, shape, values)
        }

        mutating func takeNorm(_ name: String, as to: String, width: Int) {
            take(name + ".weight", as: to + ".weight", shape: [width])
            take(name + ".bias", as: to + ".bias", shape: [width])
        }

        mutating func takeLinear(_ name: String, as to: String, out o: Int, in i: Int) {
            take(name + ".weight", as: to + ".weight", shape: [o, i])
            take(name + ".bias", as: to + ".bias", shape: [o])
        }

        /// OpenAI's fused attention input: rows [q; k; v] of `in_proj_weight` and `in_proj_bias`.
        mutating func takeFused(_ weight: String, _ bias: String, as targets: [String], width D: Int) {
            guard let (w, wv) = floats(weight), let (b, bv) = floats(bias) else {
                problems.append("\(weight) or \(bias) not found")
                return
            }
            used.insert(weight); used.insert(bias)
            guard w.shape == [3 * D, D], b.shape == [3 * D] else {
                problems.append("\(weight) has shape \(w.shape) and \(bias) \(b.shape); expected [\(3 * D), \(D)] and [\(3 * D)]")
                return
            }
            for (k, to) in targets.enumerated() {
                emit(weight, to + ".weight", [D, D], Array(wv[(k * D * D)..<((k + 1) * D * D)]))
                emit(bias, to + ".bias", [D], Array(bv[(k * D)..<((k + 1) * D)]))
            }
            report.reshaped.append("\(weight) [\(3 * D), \(D)] -> \(targets.map { $0 + ".weight" }.joined(separator: ", "))")
        }

        /// The position table, resized on the patch grid when the image size differs.
        mutating func takePositions(_ name: String, imageSize: Int, patchSize: Int, width: Int) {
            guard let (t, values) = floats(name) else { problems.append("\(name) (for vision.pos_embed) not found"); return }
            used.insert(name)
            let grid = imageSize / patchSize
            guard t.shape.count == 2, t.shape[1] == width, let from = ModelIO.gridSide(t.shape[0] - 1) else {
                problems.append("\(name) has shape \(t.shape); expected [1 + n², \(width)]")
                return
            }
            if from == grid {
                emit(name, "vision.pos_embed", [1 + grid * grid, width], values)
            } else {
                emit(name, "vision.pos_embed", [1 + grid * grid, width],
                     PositionResize.bicubic(values, fromGrid: from, toGrid: grid, width: width))
                report.resized.append("\(name): \(from)x\(from) -> \(grid)x\(grid) patches (image \(imageSize) px)")
            }
        }

        /// Blocks from `from` on are not part of the preset.
        mutating func drop(_ prefix: String, from: Int, count: Int) {
            guard count > from else { return }
            for t in source.file.tensors where t.name.hasPrefix(prefix) {
                let rest = t.name.dropFirst(prefix.count)
                if let index = Int(rest.prefix { $0 != "." }), index >= from {
                    used.insert(t.name)
                    report.unused.append("\(t.name): block \(index) dropped (the preset has \(from))")
                }
            }
        }

        mutating func unused(_ name: String, because why: String) {
            guard source.file[name] != nil, !used.contains(name) else { return }
            used.insert(name)
            report.unused.append("\(name): \(why)")
        }

        mutating func markOthersUnused(because why: String) {
            for t in source.file.tensors where !used.contains(t.name) {
                used.insert(t.name)
                report.unused.append("\(t.name): \(why)")
            }
        }

        /// Numbers the blocks present: indices i with `prefix` + i + `suffix`.
        func count(_ prefix: String, _ suffix: String) -> Int {
            var n = 0
            while source.file[prefix + "\(n)" + suffix] != nil { n += 1 }
            return n
        }

        func finish() throws {
            if !problems.isEmpty {
                throw ModelError.conversion("\(source.path): cannot convert: " + problems.prefix(12).joined(separator: "; ")
                                      + (problems.count > 12 ? "; … (\(problems.count) problems)" : ""))
            }
        }
    }
}
