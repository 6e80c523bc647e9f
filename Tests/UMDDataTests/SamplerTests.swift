import Foundation
import Testing
@testable import UMDData

struct SamplerTests {
    @Test("ranks together cover the permutation prefix exactly", arguments: [1, 2, 3, 4])
    func ranksCoverThePermutation(worldSize: Int) throws {
        let G = 12, size = 100
        let samplers = try (0..<worldSize).map {
            try DistributedSampler(datasetSize: size, globalBatch: G, worldSize: worldSize, rank: $0, seed: 9)
        }
        let epochSteps = samplers[0].batchesPerEpoch
        #expect(epochSteps == 8)
        var seen: [Int] = []
        for s in 0..<epochSteps { for sampler in samplers { seen += sampler.localIndices(step: s) } }
        #expect(seen == Array(samplers[0].permutation(epoch: 0).prefix(epochSteps * G)))
        #expect(Set(seen).count == seen.count, "no duplicates within an epoch")
        // The next epoch uses another permutation.
        #expect(samplers[0].permutation(epoch: 1) != samplers[0].permutation(epoch: 0))
        #expect(Set(samplers[0].permutation(epoch: 1)) == Set(0..<size))
    }

    @Test func resumingOnAnotherWorldSizeContinuesExactly() throws {
        let G = 8
        func global(_ worldSize: Int, step: Int) throws -> [Int] {
            try (0..<worldSize).flatMap {
                try DistributedSampler(datasetSize: 50, globalBatch: G, worldSize: worldSize, rank: $0, seed: 4).localIndices(step: step)
            }
        }
        // Steps 0–4 on 2 ranks, 5–9 on 4 ranks, 10–14 on 1 rank, against 1 rank throughout.
        var pieced: [Int] = []
        for s in 0..<15 { pieced += try global(s < 5 ? 2 : s < 10 ? 4 : 1, step: s) }
        var straight: [Int] = []
        for s in 0..<15 { straight += try global(1, step: s) }
        #expect(pieced == straight)
    }

    @Test func aBatchThatDoesNotSplitOverTheRanksIsAClearError() {
        #expect { try DistributedSampler(datasetSize: 100, globalBatch: 10, worldSize: 3, rank: 0, seed: 0) } throws: {
            "\($0)".contains("does not split evenly over 3 ranks")
        }
        #expect { try DistributedSampler(datasetSize: 5, globalBatch: 8, worldSize: 2, rank: 0, seed: 0) } throws: {
            "\($0)".contains("fewer than one global batch")
        }
    }

    @Test func prefetcherDeliversInOrderAndPassesErrorsOn() throws {
        struct Boom: Error {}
        let prefetcher = Prefetcher<Int>(startStep: 5, depth: 2) { step in
            if step == 9 { throw Boom() }
            usleep(1000)
            return step * 10
        }
        for s in 5..<9 { #expect(try prefetcher.next() == s * 10) }
        #expect(throws: Boom.self) { try prefetcher.next() }
        #expect(try prefetcher.next() == 100)
    }
}
