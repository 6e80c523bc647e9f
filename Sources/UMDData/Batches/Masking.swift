import UMDCore

/// Counter-based masking of MODEL_SPEC.md section 4, keyed by (run seed, epoch, dataset
/// index of the sample) so a sample is masked the same way on any rank and after a resume.
public enum Masking {
    static let imageSite = CounterRandom.hash("mask.image")
    static let textSite = CounterRandom.hash("mask.text")

    /// The key of one sample's masking randomness.
    public static func sampleKey(seed: UInt64, epoch: Int, sampleIndex: Int, site: UInt64) -> UInt64 {
        CounterRandom.key(CounterRandom.key(CounterRandom.key(seed, site), UInt64(epoch)), UInt64(sampleIndex))
    }

    /// MAE random masking: noise u ~ U(0,1) per patch, ids_shuffle = argsort(u) (ties by
    /// index), keep the first K = floor(N/4) → ids_keep [K] in that order.
    public static func keptPatches(patchCount N: Int, seed: UInt64, epoch: Int, sampleIndex: Int) -> [Int32] {
        let key = sampleKey(seed: seed, epoch: epoch, sampleIndex: sampleIndex, site: imageSite)
        let noise = (0..<N).map { CounterRandom.uniform(key, UInt64($0)) }
        let order = (0..<N).sorted { noise[$0] < noise[$1] || (noise[$0] == noise[$1] && $0 < $1) }
        return order.prefix(N / 4).map { Int32($0) }
    }

    /// BERT masking of one sequence: returns (masked ids, labels with -100 = ignore).
    /// Every token other than <s>, </s>, <pad> is selected with probability 0.15; a selected
    /// token becomes <mask> (0.8), a uniform id in [4, V−2] (0.1), or stays (0.1).
    public static func maskText(_ ids: [Int32], vocabularySize V: Int, seed: UInt64, epoch: Int,
                                sampleIndex: Int, probability: Double = 0.15) -> (masked: [Int32], labels: [Int32]) {
        let key = sampleKey(seed: seed, epoch: epoch, sampleIndex: sampleIndex, site: textSite)
        var masked = ids
        var labels = [Int32](repeating: SpecialTokens.ignoreLabel, count: ids.count)
        for t in ids.indices {
            let id = ids[t]
            if id == SpecialTokens.start || id == SpecialTokens.end || id == SpecialTokens.pad { continue }
            let base = UInt64(t) &* 3
            guard CounterRandom.uniform(key, base) < probability else { continue }
            labels[t] = id
            let action = CounterRandom.uniform(key, base + 1)
            if action < 0.8 {
                masked[t] = SpecialTokens.mask(vocabularySize: V)
            } else if action < 0.9 {
                let span = UInt64(V - 2 - 4 + 1)   // ids 4 ... V-2
                masked[t] = Int32(4 + Int(CounterRandom.bits(key, base + 2) % span))
            }
        }
        return (masked, labels)
    }
}
