/// What the data pipeline hands the model: plain arrays, one rank's share of a step
/// (MODEL_SPEC.md sections 3-5, 9). UMDData builds them, UMDModel consumes them; neither
/// imports the other, so they live here.

/// Special token ids (MODEL_SPEC.md section 3).
public enum SpecialTokens {
    public static let start: Int32 = 0      // <s>
    public static let pad: Int32 = 1        // <pad>
    public static let end: Int32 = 2        // </s>
    public static let unknown: Int32 = 3    // <unk>
    /// `<mask>` is the last id of the vocabulary.
    public static func mask(vocabularySize: Int) -> Int32 { Int32(vocabularySize - 1) }
    /// The label of a position no loss counts (MLM labels of unselected tokens), as in PyTorch.
    public static let ignoreLabel: Int32 = -100
}


/// The downstream task family (`config.task` in debug-step).
public enum TaskKind: String, Sendable, Codable {
    case none, vqa, classification, retrieval
    public var code: Int { switch self { case .none: 0; case .vqa: 1; case .classification: 2; case .retrieval: 3 } }
}

/// One rank's share of an MR-Pretrain or TD-Calib batch (MODEL_SPEC.md sections 3–5).
public struct PretrainBatch: Sendable {
    public var batch: Int                // B (this rank's samples)
    public var imageSize: Int            // H
    public var textLength: Int           // L
    public var pixels: [Float]           // [B, 3, H, H] normalised
    public var textIDs: [Int32]          // [B, L]
    public var attention: [Int32]        // [B, L] 1 = token
    public var maskedTextIDs: [Int32]    // [B, L]
    public var mlmLabels: [Int32]        // [B, L] -100 = ignore
    public var idsKeep: [Int32]          // [B, K]
    public var itmPixels: [Float]        // [B, 3, H, H] the image each text is paired with (pretrain)
    public var itmLabels: [Int32]        // [B] 1 = matched, 0 = swapped (pretrain)
    public var sampleIDs: [UInt64]       // [B] dataset index of each sample (keys dropout)

    public init(batch: Int, imageSize: Int, textLength: Int, pixels: [Float], textIDs: [Int32], attention: [Int32],
                maskedTextIDs: [Int32], mlmLabels: [Int32], idsKeep: [Int32], itmPixels: [Float] = [],
                itmLabels: [Int32] = [], sampleIDs: [UInt64]) {
        self.batch = batch; self.imageSize = imageSize; self.textLength = textLength
        self.pixels = pixels; self.textIDs = textIDs; self.attention = attention
        self.maskedTextIDs = maskedTextIDs; self.mlmLabels = mlmLabels; self.idsKeep = idsKeep
        self.itmPixels = itmPixels; self.itmLabels = itmLabels; self.sampleIDs = sampleIDs
    }
}

/// One rank's share of a VQA or classification fine-tuning batch.
public struct ClassificationBatch: Sendable {
    public var batch: Int, imageSize: Int, textLength: Int
    public var pixels: [Float]       // [B, 3, H, H]
    public var textIDs: [Int32]      // [B, L]
    public var attention: [Int32]    // [B, L]
    public var labels: [Int32]       // [B] answer / class index
    public var sampleIDs: [UInt64]   // [B]

    public init(batch: Int, imageSize: Int, textLength: Int, pixels: [Float], textIDs: [Int32], attention: [Int32],
                labels: [Int32], sampleIDs: [UInt64]) {
        self.batch = batch; self.imageSize = imageSize; self.textLength = textLength; self.pixels = pixels
        self.textIDs = textIDs; self.attention = attention; self.labels = labels; self.sampleIDs = sampleIDs
    }
}

/// One rank's share of a retrieval fine-tuning batch: B images, the T distinct texts they
/// are scored against (each encoded once), and for image n the candidate texts
/// [B, 1+R] (column 0 the positive, then R negatives) as indices into the T texts.
public struct RetrievalBatch: Sendable {
    public var batch: Int, imageSize: Int, textLength: Int
    public var pixels: [Float]        // [B, 3, H, H]
    public var textCount: Int         // T
    public var textIDs: [Int32]       // [T, L]
    public var attention: [Int32]     // [T, L]
    public var candidates: [Int32]    // [B, 1+R]
    public var sampleIDs: [UInt64]    // [B] data-set index of each image's sample
    /// [T] data-set index of each text: keys its dropout, so a text is dropped out the same
    /// way whichever rank encodes it and in whichever slot (empty: the slot index).
    public var textSampleIDs: [UInt64]

    public init(batch: Int, imageSize: Int, textLength: Int, pixels: [Float], textCount: Int, textIDs: [Int32],
                attention: [Int32], candidates: [Int32], sampleIDs: [UInt64], textSampleIDs: [UInt64] = []) {
        self.batch = batch; self.imageSize = imageSize; self.textLength = textLength; self.pixels = pixels
        self.textCount = textCount; self.textIDs = textIDs; self.attention = attention; self.candidates = candidates
        self.sampleIDs = sampleIDs; self.textSampleIDs = textSampleIDs
    }

    public var candidatesPerImage: Int { batch == 0 ? 0 : candidates.count / batch }
}
