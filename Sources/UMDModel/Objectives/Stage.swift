/// The three training stages and which parameters each trains (MODEL_SPEC.md section 8a).
public enum Stage: String, Sendable, Codable, CaseIterable {
    case pretrain, calib, finetune

    /// The number `debug-step` writes as `config.stage`.
    public var code: Int { switch self { case .pretrain: 0; case .calib: 1; case .finetune: 2 } }

    /// Pretrain: everything except `head.*`; calib: everything except `itm`, `head.*` and
    /// the poolers; finetune: `vision.*`, `text.*`, `fusion.*` and `head.*`.
    /// With `--pooling mean` fine-tuning does not reach (so does not train) the poolers.
    public func trains(_ name: String, pooling: Pooling) -> Bool {
        switch self {
        case .pretrain:
            return !name.hasPrefix("head.")
        case .calib:
            return !(name.hasPrefix("head.") || name.hasPrefix("itm.") || Pooling.isPooler(name))
        case .finetune:
            if pooling == .mean && Pooling.isPooler(name) { return false }
            return name.hasPrefix("vision.") || name.hasPrefix("text.") || name.hasPrefix("fusion.")
                || name.hasPrefix("head.")
        }
    }

    /// Whether the stage keeps an EMA teacher.
    public var hasTeacher: Bool { self != .finetune }
}

/// What the step keeps for backward (`--recompute`): everything (`off`), or only each
/// transformer block's output, running the block's forward again in backward (`blocks`,
/// activation checkpointing) — bitwise the same gradients, less memory, more time.
public enum Recompute: String, Sendable, Codable, CaseIterable {
    case off, blocks
}

/// The head input [z_t; z_i] of fine-tuning, evaluation, retrieval scoring and `encode`
/// (`--pooling`, MODEL_SPEC.md section 9 "Head input"): `cls` = each stream's pooler,
/// tanh(dense(first token)), as the reference code and M3AE; `mean` = the paper's "average
/// embeddings of Z^I and Z^T": the text stream's mean over its non-pad tokens, the image
/// stream's over all its tokens (CLS included), no pooler. Pretraining's ITM always uses
/// the poolers (section 3).
public enum Pooling: String, Sendable, Codable, CaseIterable {
    case cls, mean

    /// The number `debug-step` writes as `config.pooling`.
    public var code: Int { self == .cls ? 0 : 1 }

    /// The pooler tensors, which `mean` leaves out of the forward pass.
    public static func isPooler(_ name: String) -> Bool {
        name.hasPrefix("fusion.text_pooler.") || name.hasPrefix("fusion.image_pooler.")
    }
}
