import Foundation
import UMDCore

/// DESIGN.md idea 6: a seeded global permutation per epoch; global step s covers positions
/// [p·G, (p+1)·G) of its epoch's permutation (p = s mod batches-per-epoch), and rank r takes
/// the r-th of R equal slices. The cursor is the global step alone, so a run saved on R
/// ranks resumes on R' ranks and sees exactly the remaining samples. The last partial
/// batch of an epoch is dropped.
public struct DistributedSampler: Sendable, Equatable {
    public let datasetSize: Int
    public let globalBatch: Int
    public let worldSize: Int
    public let rank: Int
    public let seed: UInt64

    public init(datasetSize: Int, globalBatch: Int, worldSize: Int, rank: Int, seed: UInt64) throws {
        guard worldSize > 0, rank >= 0, rank < worldSize else {
            throw DataError.sampler("rank \(rank) is not in a world of \(worldSize)")
        }
        guard globalBatch > 0, globalBatch % worldSize == 0 else {
            throw DataError.sampler("the global batch \(globalBatch) does not split evenly over \(worldSize) ranks; "
                                     + "choose a batch size that is a multiple of the rank count")
        }
        guard datasetSize >= globalBatch else {
            throw DataError.sampler("the data set has \(datasetSize) samples, fewer than one global batch (\(globalBatch))")
        }
        self.datasetSize = datasetSize; self.globalBatch = globalBatch; self.worldSize = worldSize
        self.rank = rank; self.seed = seed
    }

    public var batchesPerEpoch: Int { datasetSize / globalBatch }
    public var localBatch: Int { globalBatch / worldSize }

    /// Epoch and position within it of global step s.
    public func cursor(step s: Int) -> (epoch: Int, position: Int) { (s / batchesPerEpoch, s % batchesPerEpoch) }

    /// The epoch's permutation of the data set (Fisher–Yates driven by a counter-based generator).
    public func permutation(epoch: Int) -> [Int] {
        seededPermutation(datasetSize, seed: CounterRandom.key(CounterRandom.key(seed, CounterRandom.hash("sampler")),
                                                                 UInt64(epoch)))
    }

    /// All G dataset indices of global step s, in global-batch order.
    public func globalIndices(step s: Int) -> [Int] {
        let (epoch, position) = cursor(step: s)
        let order = permutation(epoch: epoch)
        return Array(order[(position * globalBatch)..<((position + 1) * globalBatch)])
    }

    /// This rank's dataset indices of global step s.
    public func localIndices(step s: Int) -> [Int] {
        let all = globalIndices(step: s)
        return Array(all[(rank * localBatch)..<((rank + 1) * localBatch)])
    }
}
