/// Learning-rate multipliers per parameter group (MODEL_SPEC.md section 10): base for
/// `vision.*`, `text.*`, `fea.*`; `fusion` for `fusion.*`; `heads` for `mim.*`, `mlm.*`,
/// `itm`, `head.*` (x5 in pretraining, x50 downstream).
public struct LearningRateMultipliers: Sendable, Equatable, Codable {
    public var fusion: Float
    public var heads: Float

    public init(fusion: Float = 5, heads: Float) {
        self.fusion = fusion
        self.heads = heads
    }

    public static let pretrain = LearningRateMultipliers(heads: 5)
    public static let downstream = LearningRateMultipliers(heads: 50)

    public func multiplier(for name: String) -> Float {
        if name.hasPrefix("fusion.") { return fusion }
        if name.hasPrefix("mim.") || name.hasPrefix("mlm.") || name.hasPrefix("itm.") || name.hasPrefix("head.") {
            return heads
        }
        return 1
    }
}
