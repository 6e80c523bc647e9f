/// The downstream head a model carries (MODEL_SPEC.md section 2, "Task heads").
public enum TaskHead: Sendable, Equatable, Codable {
    /// Pretraining and calibration: no `head.*`.
    case none
    /// VQA (A answers) and classification (A classes): `head.fc1`, `head.ln`, `head.fc2`.
    case classifier(outputs: Int)
    /// Retrieval: `head.score` [1, 2D].
    case retrieval
}

/// Everything that fixes the parameter layout of a UMD model.
public struct ModelConfig: Sendable, Equatable, Codable {
    public var preset: ModelPreset
    /// V: the tokenizer's vocabulary size (base: 50265, RoBERTa's).
    public var vocabularySize: Int
    /// Image side H the position table is sized for (the preset's, or the task's).
    public var imageSize: Int
    public var head: TaskHead
    /// What the task head reads as [z_t; z_i] (`--pooling`, MODEL_SPEC.md section 9 "Head
    /// input"); with `mean` the poolers are not used, so not trained.
    public var pooling: Pooling

    public init(preset: ModelPreset, vocabularySize: Int? = nil, imageSize: Int? = nil, head: TaskHead = .none,
                pooling: Pooling = .cls) {
        self.preset = preset
        self.vocabularySize = vocabularySize ?? preset.vocabularySize ?? 1000
        self.imageSize = imageSize ?? preset.imageSize
        self.head = head
        self.pooling = pooling
    }

    public var width: Int { preset.width }
    public var patchSize: Int { preset.patchSize }
    public var gridSize: Int { imageSize / preset.patchSize }
    public var patchCount: Int { gridSize * gridSize }               // N
    public var keptPatchCount: Int { patchCount / 4 }                 // K = floor(0.25 N)
    public var patchLength: Int { 3 * preset.patchSize * preset.patchSize }

    /// Throws when the configuration cannot describe a model.
    public func validate() throws {
        func fail(_ why: String) -> ModelError { .configuration(why) }
        if imageSize % preset.patchSize != 0 || imageSize <= 0 {
            throw fail("image size \(imageSize) is not a positive multiple of the patch size \(preset.patchSize)")
        }
        if patchCount < 4 { throw fail("image size \(imageSize) gives \(patchCount) patches; at least 4 are needed to keep a quarter") }
        if vocabularySize < 6 { throw fail("vocabulary size \(vocabularySize) is too small (5 special ids + 1)") }
        if case .classifier(let a) = head, a < 1 { throw fail("a classifier head needs at least 1 output, got \(a)") }
    }
}
