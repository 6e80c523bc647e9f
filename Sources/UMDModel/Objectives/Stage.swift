/// The three training stages and which parameters each trains (MODEL_SPEC.md section 8a).
public enum Stage: String, Sendable, Codable, CaseIterable {
    case pretrain, calib, finetune

    /// The number `debug-step` writes as `config.stage`.
    public var code: Int { switch self { case .pretrain: 0; case .calib: 1; case .finetune: 2 } }

    /// Pretrain: everything except `head.*`; calib: everything except `itm`, `head.*` and
    /// the poolers; finetune: `vision.*`, `text.*`, `fusion.*` and `head.*`.
    public func trains(_ name: String) -> Bool {
        switch self {
        case .pretrain:
            return !name.hasPrefix("head.")
        case .calib:
            return !(name.hasPrefix("head.") || name.hasPrefix("itm.") || name.hasPrefix("fusion.text_pooler.")
                     || name.hasPrefix("fusion.image_pooler."))
        case .finetune:
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
