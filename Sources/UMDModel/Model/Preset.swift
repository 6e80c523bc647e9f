/// Model sizes (MODEL_SPEC.md section 1). `base` is the paper's model.
public struct ModelPreset: Sendable, Equatable, Codable {
    public let name: String
    public let imageSize: Int          // H = W
    public let patchSize: Int          // P
    public let width: Int              // Dv = Dt = D
    public let visionLayers: Int
    public let textLayers: Int
    public let fusionLayers: Int       // per stream
    public let heads: Int
    public let decoderWidth: Int       // Dd
    public let decoderLayers: Int
    public let decoderHeads: Int
    public let projectionWidth: Int    // Dp
    public let textLength: Int         // L for pretraining
    public let maxTextLength: Int      // L_max of the position table
    /// Vocabulary size fixed by the preset (base: RoBERTa's); nil = the tokenizer's.
    public let vocabularySize: Int?

    public var gridSize: Int { imageSize / patchSize }
    public var patchCount: Int { gridSize * gridSize }                  // N
    public var keptPatchCount: Int { patchCount / 4 }                    // K = floor(N · 0.25)
    public var patchLength: Int { 3 * patchSize * patchSize }            // C·P·P

    public static let tiny = ModelPreset(
        name: "tiny", imageSize: 32, patchSize: 8, width: 64, visionLayers: 2, textLayers: 2, fusionLayers: 2,
        heads: 4, decoderWidth: 32, decoderLayers: 1, decoderHeads: 2, projectionWidth: 32, textLength: 16,
        maxTextLength: 128, vocabularySize: nil)
    public static let small = ModelPreset(
        name: "small", imageSize: 64, patchSize: 8, width: 256, visionLayers: 4, textLayers: 4, fusionLayers: 2,
        heads: 8, decoderWidth: 128, decoderLayers: 2, decoderHeads: 4, projectionWidth: 128, textLength: 32,
        maxTextLength: 128, vocabularySize: nil)
    public static let base = ModelPreset(
        name: "base", imageSize: 288, patchSize: 16, width: 768, visionLayers: 11, textLayers: 12, fusionLayers: 6,
        heads: 12, decoderWidth: 384, decoderLayers: 4, decoderHeads: 6, projectionWidth: 384, textLength: 64,
        maxTextLength: 512, vocabularySize: 50265)

    public static let all = [tiny, small, base]

    public static func named(_ name: String) -> ModelPreset? { all.first { $0.name == name } }
}
