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

/// The downstream task family (`config.task` in debug-step).
public enum TaskKind: String, Sendable, Codable {
    case none, vqa, classification, retrieval
    public var code: Int { switch self { case .none: 0; case .vqa: 1; case .classification: 2; case .retrieval: 3 } }
}

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

/// Random pairings of one global batch, keyed by (seed, step) (MODEL_SPEC.md sections 5, 9).
public enum BatchPairing {
    /// ITM: floor(G/2) samples, chosen at random, get the image of another sample j ≠ n
    /// drawn uniformly; the rest keep their own. Returns the image index of each sample.
    public static func itmImages(globalBatch G: Int, seed: UInt64, step: Int) -> [Int] {
        precondition(G >= 2, "pretraining needs a global batch of at least 2 for ITM")
        let key = CounterRandom.key(CounterRandom.key(seed, CounterRandom.hash("itm.pairing")), UInt64(step))
        let order = (0..<G).sorted {
            let a = CounterRandom.bits(key, UInt64($0)), b = CounterRandom.bits(key, UInt64($1))
            return a < b || (a == b && $0 < $1)
        }
        var images = Array(0..<G)
        for n in order.prefix(G / 2) {
            let r = Int(CounterRandom.bits(key, UInt64(G + n)) % UInt64(G - 1))
            images[n] = r < n ? r : r + 1          // uniform over the other G−1 samples
        }
        return images
    }

    /// Retrieval: for each positive n, R = min(G−1, 15) negatives drawn without replacement
    /// from the other samples of the global batch. Returns [G][R] batch indices.
    public static func retrievalNegatives(globalBatch G: Int, seed: UInt64, step: Int) -> [[Int]] {
        let R = min(G - 1, 15)
        let key = CounterRandom.key(CounterRandom.key(seed, CounterRandom.hash("retrieval.negatives")), UInt64(step))
        return (0..<G).map { n in
            let others = (0..<G).filter { $0 != n }
            let sampleKey = CounterRandom.key(key, UInt64(n))
            let order = others.sorted {
                let a = CounterRandom.bits(sampleKey, UInt64($0)), b = CounterRandom.bits(sampleKey, UInt64($1))
                return a < b || (a == b && $0 < $1)
            }
            return Array(order.prefix(R))
        }
    }
}
