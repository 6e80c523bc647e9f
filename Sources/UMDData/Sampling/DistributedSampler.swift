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

    public struct ConfigurationError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    public init(datasetSize: Int, globalBatch: Int, worldSize: Int, rank: Int, seed: UInt64) throws {
        guard worldSize > 0, rank >= 0, rank < worldSize else {
            throw ConfigurationError(message: "rank \(rank) is not in a world of \(worldSize)")
        }
        guard globalBatch > 0, globalBatch % worldSize == 0 else {
            throw ConfigurationError(message: "the global batch \(globalBatch) does not split evenly over \(worldSize) ranks; "
                                     + "choose a batch size that is a multiple of the rank count")
        }
        guard datasetSize >= globalBatch else {
            throw ConfigurationError(message: "the data set has \(datasetSize) samples, fewer than one global batch (\(globalBatch))")
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

/// Runs a producer for steps s, s+1, … on a background thread, keeping at most `depth`
/// results ready (bounded memory); `next()` hands them out in order.
public final class Prefetcher<Item: Sendable>: @unchecked Sendable {
    /// Everything the producer thread touches, guarded by `condition`; the thread holds it
    /// strongly, so the prefetcher may go away while the thread finishes its last item.
    private final class State: @unchecked Sendable {
        let condition = NSCondition()
        var ready: [Int: Result<Item, Error>] = [:]
        var nextToProduce: Int
        var nextToConsume: Int
        let depth: Int
        var stopped = false
        init(start: Int, depth: Int) { nextToProduce = start; nextToConsume = start; self.depth = depth }
    }

    private let state: State
    /// Seconds `next()` spent waiting for the producer (data wait time).
    public private(set) var waitSeconds = 0.0

    public init(startStep: Int, depth: Int = 2, produce: @escaping @Sendable (Int) throws -> Item) {
        precondition(depth >= 1)
        let state = State(start: startStep, depth: depth)
        self.state = state
        let thread = Thread {
            while true {
                state.condition.lock()
                while !state.stopped && state.nextToProduce - state.nextToConsume >= state.depth { state.condition.wait() }
                if state.stopped { state.condition.unlock(); return }
                let step = state.nextToProduce
                state.nextToProduce += 1
                state.condition.unlock()
                let result = Result { try produce(step) }
                state.condition.lock()
                state.ready[step] = result
                state.condition.broadcast()
                state.condition.unlock()
            }
        }
        thread.name = "umd-prefetch"
        thread.start()
    }

    /// The item of the next step, waiting for it when it is not ready; rethrows the producer's error.
    public func next() throws -> Item {
        let start = Date()
        state.condition.lock()
        defer { state.condition.unlock() }
        while state.ready[state.nextToConsume] == nil { state.condition.wait() }
        let result = state.ready.removeValue(forKey: state.nextToConsume)!
        state.nextToConsume += 1
        state.condition.broadcast()
        waitSeconds += Date().timeIntervalSince(start)
        return try result.get()
    }

    public func stop() {
        state.condition.lock()
        state.stopped = true
        state.condition.broadcast()
        state.condition.unlock()
    }

    deinit { stop() }
}
