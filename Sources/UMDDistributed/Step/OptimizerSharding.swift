import Foundation
import Collective
import UMDModel

/// ZeRO stage 1 (`--shard-optimizer`): rank r updates one contiguous share of the parameter
/// arena, [bounds[r], bounds[r+1]), and holds AdamW's moments for that share only; after
/// its update every rank's share is gathered (MPI_Allgatherv in place), so all ranks hold
/// all parameters again before the EMA teacher (replicated) follows them.
///
/// The shares are balanced by *trained* elements (tensors a stage does not train have no
/// update and cost nothing), cut anywhere — inside a tensor too: AdamW is element-wise, so
/// a tensor split between two ranks is updated exactly as whole.
///
/// The gradients are still summed with an allreduce (every rank gets all of them), so the
/// step communicates the allreduce plus one parameter allgather: 1.5x the bytes of an
/// unsharded step. What it saves is memory (moments: 8 bytes per parameter become 8/R) and
/// optimizer time (1/R of the AdamW pass per rank).
public final class OptimizerSharding {
    /// Rank r owns arena offsets [bounds[r], bounds[r + 1]).
    public let bounds: [Int]
    let world: Communicator
    /// Seconds the last `gatherParameters` took.
    public private(set) var gatherSeconds = 0.0

    /// Collective: derives the shares and checks that every rank derived the same ones.
    public init(world: Communicator, arenaCount: Int, trainedSegments: [Range<Int>]) throws {
        self.world = world
        bounds = Self.bounds(arenaCount: arenaCount, trainedSegments: trainedSegments, ranks: world.size)
        let all = try world.allgather(bounds.map { Int64($0) })
        let mine = bounds.map { Int64($0) }
        for r in 0..<world.size where Array(all[(r * mine.count)..<((r + 1) * mine.count)]) != mine {
            throw RunError("--shard-optimizer: rank \(r) cut the parameter arena differently from rank \(world.rank) "
                           + "(another model or stage on that rank?)")
        }
    }

    /// Boundaries 0 = b0 ≤ b1 ≤ … ≤ bR = arenaCount with about 1/R of the trained elements
    /// between consecutive ones.
    public static func bounds(arenaCount: Int, trainedSegments: [Range<Int>], ranks R: Int) -> [Int] {
        let trained = trainedSegments.reduce(0) { $0 + $1.count }
        var bounds = [0]
        var seen = 0                 // trained elements before the current segment
        var segment = 0
        for r in 1..<R {
            let target = trained * r / R   // trained elements rank r-1 and those before it own
            while segment < trainedSegments.count && seen + trainedSegments[segment].count < target {
                seen += trainedSegments[segment].count
                segment += 1
            }
            let cut = segment < trainedSegments.count ? trainedSegments[segment].lowerBound + (target - seen) : arenaCount
            bounds.append(max(bounds.last!, cut))
        }
        bounds.append(arenaCount)
        return bounds
    }

    public func owned(rank: Int) -> Range<Int> { bounds[rank]..<bounds[rank + 1] }
    public var ownedByThisRank: Range<Int> { owned(rank: world.rank) }

    /// Every rank's updated share to every rank.
    public func gatherParameters(_ values: UnsafeMutablePointer<Float>) throws {
        let start = Date()
        let counts = (0..<world.size).map { bounds[$0 + 1] - bounds[$0] }
        try world.allgatherInPlace(UnsafeMutableBufferPointer(start: values, count: bounds.last!), counts: counts)
        gatherSeconds = Date().timeIntervalSince(start)
    }
}
