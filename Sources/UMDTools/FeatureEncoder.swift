import Foundation
import UMDDistributed
import UMDCore
import UMDData
import UMDModel

/// `umd-mpirun encode`: the encoders' outputs for images and texts, as safetensors — for
/// feature extraction and retrieval indexes, and to check converted weights against the
/// library they came from.
///
/// Writes `vision.tokens` [n, 1+N, D] (after `ln_post`), `text.ids` and `text.attention`
/// [m, L], `text.tokens` [m, L, D] (the text encoder's last layer), and, when the weights
/// hold a fusion module and images and texts pair up (n = m), `fusion.pooled` [n, 2D].
public enum FeatureEncoder {
    public struct Options {
        public var weights: URL
        public var tokenizer: URL?
        public var images: [URL] = []
        public var texts: [String] = []
        public var preset: ModelPreset?
        public var imageSize: Int?
        public var textLength: Int?
        public var out: URL
        public init(weights: URL, out: URL) { self.weights = weights; self.out = out }
    }

    public struct Summary: Sendable { public var written: [String: [Int]] = [:] }

    @discardableResult
    public static func run(_ o: Options) throws -> Summary {
        let file = try WeightsPath.load(o.weights.path, includeTeacher: false).file
        // The encoders, fusion and pre-training heads; a task head is not needed for features.
        let names = Set(file.tensors.map(\.name).filter { !$0.hasPrefix("teacher.") && !$0.hasPrefix("head.") })
        let description = try WeightsDescription(file: file, path: o.weights.path)
        guard let preset = o.preset ?? description.preset else {
            throw RunError("\(o.weights.path): the file does not name its preset; pass --preset")
        }
        let imageSize = o.imageSize ?? description.imageSize ?? preset.imageSize
        let L = o.textLength ?? preset.textLength
        var tokenizer: ByteLevelBPE? = nil
        if !o.texts.isEmpty {
            guard let dir = o.tokenizer else { throw RunError("texts need --tokenizer DIR (vocab.json + merges.txt)") }
            tokenizer = try ByteLevelBPE(directory: dir)
            try description.requireTokenizer(dir, weights: o.weights.path)
        }
        let vocabulary = file["text.word_embed"]?.shape.first ?? description.vocabularySize ?? tokenizer?.vocabularySize
            ?? preset.vocabularySize ?? 1000
        if let tokenizer, tokenizer.vocabularySize != vocabulary {
            throw RunError("the tokenizer has \(tokenizer.vocabularySize) tokens but \(o.weights.path) was made for "
                           + "\(vocabulary); use the tokenizer the weights were trained with")
        }
        // The pooled features are pooled as the weights were fine-tuned (`--pooling`).
        let config = ModelConfig(preset: preset, vocabularySize: vocabulary, imageSize: imageSize,
                                 pooling: description.effectivePooling)
        let (params, store, _) = try RunFactory.inferenceModel(config, weights: file, path: o.weights.path,
                                                               include: { names.contains($0) })

        var out: [Safetensors.Tensor] = []
        var summary = Summary()
        let D = config.width, N = config.patchCount
        let vision = VisionEncoder(params.vision, width: D, patchSize: config.patchSize)
        let text = TextEncoder(params.text, width: D)
        var imageTokens: [Float] = [], textTokens: [Float] = []
        if !o.images.isEmpty {
            guard names.contains("vision.patch_embed.weight") else {
                throw RunError("\(o.weights.path) holds no vision encoder (vision.*)")
            }
            let pixels = try TableBatchSource.pixels(o.images, size: imageSize)
            let n = o.images.count
            imageTokens = pixels.withUnsafeBufferPointer { px in
                Array(UnsafeBufferPointer(start: vision.forward(store, pixels: px.baseAddress!, batch: n, imageSize: imageSize,
                                                                keep: nil, keptCount: N), count: n * (1 + N) * D))
            }
            out.append(.init(name: "vision.tokens", shape: [n, 1 + N, D], floats: imageTokens))
        }
        if let tokenizer {
            guard names.contains("text.word_embed") else { throw RunError("\(o.weights.path) holds no text encoder (text.*)") }
            let m = o.texts.count
            let (ids, mask) = TableBatchSource.tokens(o.texts, tokenizer: tokenizer, length: L)
            var keyMask = [Float](repeating: 0, count: m * L)
            keyMask.withUnsafeMutableBufferPointer { km in
                mask.withUnsafeBufferPointer { additiveKeyMask(km.baseAddress!, attention: $0.baseAddress!, count: m * L) }
            }
            textTokens = ids.withUnsafeBufferPointer { idp in
                keyMask.withUnsafeBufferPointer { km in
                    Array(UnsafeBufferPointer(start: text.forward(store, ids: idp.baseAddress!, keyMask: km.baseAddress!,
                                                                  batch: m, length: L, .deterministic),
                                              count: m * L * D))
                }
            }
            out.append(.init(name: "text.ids", shape: [m, L], ints: ids))
            out.append(.init(name: "text.attention", shape: [m, L], ints: mask))
            out.append(.init(name: "text.tokens", shape: [m, L, D], floats: textTokens))
            if !imageTokens.isEmpty && o.images.count == m && names.contains("fusion.text_proj.weight") {
                let fusion = FusionModule(params.fusion, width: D, pooling: config.pooling)
                let pooled = textTokens.withUnsafeBufferPointer { t in
                    imageTokens.withUnsafeBufferPointer { i in
                        keyMask.withUnsafeBufferPointer { km -> [Float] in
                            fusion.forward(store, text: t.baseAddress!, image: i.baseAddress!, textMask: km.baseAddress!,
                                           batch: m, textLength: L, imageLength: 1 + N, .deterministic)
                            return Array(UnsafeBufferPointer(start: fusion.pool(store), count: m * 2 * D))
                        }
                    }
                }
                out.append(.init(name: "fusion.pooled", shape: [m, 2 * D], floats: pooled))
            }
        }
        guard !out.isEmpty else { throw RunError("nothing to encode: give --images and/or --texts") }
        try Safetensors.write(out, metadata: ["format": "umd encode", "weights": o.weights.path, "preset": preset.name,
                                              "image_size": String(imageSize), "text_length": String(L),
                                              "pooling": config.pooling.rawValue], to: o.out)
        for t in out { summary.written[t.name] = t.shape }
        return summary
    }
}
