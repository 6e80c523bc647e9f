import UMDCore

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
