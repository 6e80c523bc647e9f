import Foundation
import UMDCore

/// The one place a step's batch is put together (MODEL_SPEC.md sections 3-5, 9): masks
/// keyed by (seed, epoch, data-set index), ITM pairs and retrieval negatives keyed by
/// (seed, step) over the whole global batch. A rank passes the positions it owns; the
/// debug step and benchmarks pass all G positions. Because every random choice is keyed by
/// what it is for, a sample gets the same inputs on any rank and after any resume.
public struct BatchAssembler: Sendable {
    public let seed: UInt64
    public let imageSize: Int       // H
    public let textLength: Int      // L
    public let patchSize: Int
    public let vocabularySize: Int  // V (the <mask> id is V-1)

    public init(seed: UInt64, imageSize: Int, textLength: Int, patchSize: Int, vocabularySize: Int) {
        self.seed = seed; self.imageSize = imageSize; self.textLength = textLength
        self.patchSize = patchSize; self.vocabularySize = vocabularySize
    }

    public var patchCount: Int { (imageSize / patchSize) * (imageSize / patchSize) }

    /// The batch of `positions` (global-batch positions this process computes) at `step`.
    public func batch(_ kind: BatchKind, source: BatchSource, positions: [Int], step: Int, epoch: Int) throws -> StepBatch {
        let G = source.globalBatch, B = positions.count, H = imageSize, L = textLength
        let sampleIDs = positions.map { UInt64(source.datasetIndex($0)) }
        switch kind {
        case .pretrain(let withITM):
            let (ids, attention) = source.tokens(positions)
            let (masked, labels, keep) = masks(ids: ids, indices: positions.map(source.datasetIndex), epoch: epoch)
            var batch = PretrainBatch(batch: B, imageSize: H, textLength: L, pixels: try source.pixels(positions),
                                      textIDs: ids, attention: attention, maskedTextIDs: masked, mlmLabels: labels,
                                      idsKeep: keep, sampleIDs: sampleIDs)
            if withITM {
                let partner = BatchPairing.itmImages(globalBatch: G, seed: seed, step: step)
                batch.itmPixels = try source.pixels(positions.map { partner[$0] })
                batch.itmLabels = positions.map { partner[$0] == $0 ? 1 : 0 }
            }
            return .pretrain(batch)
        case .classification:
            let (ids, attention) = source.tokens(positions)
            return .classification(ClassificationBatch(batch: B, imageSize: H, textLength: L,
                                                       pixels: try source.pixels(positions), textIDs: ids,
                                                       attention: attention, labels: positions.map(source.label),
                                                       sampleIDs: sampleIDs))
        case .retrieval:
            // Each image is scored against its own text and its negatives; the distinct texts
            // are encoded once, in global-position order.
            let negatives = BatchPairing.retrievalNegatives(globalBatch: G, seed: seed, step: step)
            let textPositions = Array(Set(positions.flatMap { [$0] + negatives[$0] })).sorted()
            let slot = Dictionary(uniqueKeysWithValues: textPositions.enumerated().map { ($0.element, Int32($0.offset)) })
            let candidates = positions.flatMap { p in ([p] + negatives[p]).map { slot[$0]! } }
            let (ids, attention) = source.tokens(textPositions)
            return .retrieval(RetrievalBatch(batch: B, imageSize: H, textLength: L, pixels: try source.pixels(positions),
                                             textCount: textPositions.count, textIDs: ids, attention: attention,
                                             candidates: candidates, sampleIDs: sampleIDs,
                                             textSampleIDs: textPositions.map { UInt64(source.datasetIndex($0)) }))
        }
    }

    /// MLM-masked ids and labels [B, L] and the kept patches [B, K] of samples with these
    /// data-set indices.
    public func masks(ids: [Int32], indices: [Int], epoch: Int)
        -> (masked: [Int32], labels: [Int32], keep: [Int32]) {
        let L = textLength
        var masked: [Int32] = [], labels: [Int32] = [], keep: [Int32] = []
        for (b, index) in indices.enumerated() {
            let (m, l) = Masking.maskText(Array(ids[(b * L)..<((b + 1) * L)]), vocabularySize: vocabularySize, seed: seed,
                                          epoch: epoch, sampleIndex: index)
            masked += m; labels += l
            keep += Masking.keptPatches(patchCount: patchCount, seed: seed, epoch: epoch, sampleIndex: index)
        }
        return (masked, labels, keep)
    }
}
