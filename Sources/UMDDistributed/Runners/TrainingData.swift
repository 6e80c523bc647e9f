import Collective
import Foundation
import UMDCore
import UMDData
import UMDModel

/// A stage's training data on one rank: the tokenizer, the training split as a sample
/// table (every rank reads the list; rank 0 reports bad records), the sampler whose cursor
/// is the global step, and this rank's batch of any step.
final class TrainingData: @unchecked Sendable {
    // Sendable: immutable after init; the prefetcher's thread only reads it.
    let tokenizer: ByteLevelBPE
    let table: SampleTable
    let sampler: DistributedSampler
    let assembler: BatchAssembler
    let tokenizerHash: String
    let classesHash: String
    let maxImagePixels: Int
    /// K: micro-batches per rank per step.
    let microBatches: Int
    /// The image the prefetch thread is decoding now (for the watchdog).
    let reading = FileInProgress()

    init(_ config: RunConfiguration, preset: ModelPreset, world: Communicator, watchdog: StallWatchdog,
         log: RunLog) throws {
        let tokenizerDirectory = URL(fileURLWithPath: config.tokenizer!)
        tokenizer = try ByteLevelBPE(directory: tokenizerDirectory)
        let options = config.readerOptions
        maxImagePixels = config.maxImagePixels
        if config.stage == .pretrain {
            table = try SampleTable.pretraining(roco: URL(fileURLWithPath: config.roco!),
                                                medicat: config.medicat.map { URL(fileURLWithPath: $0) },
                                                medicatHoldout: config.medicatHoldout, seed: config.seed, options: options)
        } else {
            table = try SampleTable.task(config.task!, root: URL(fileURLWithPath: config.data!), split: .train,
                                         retrievalCap: Int.max, options: options)
        }
        for report in table.reports { log.report(report) }
        if table.count < config.batchSize * config.accumulate {
            throw RunError("the training data has \(table.count) samples, fewer than one step's "
                           + "\(config.batchSize * config.accumulate) (--batch-size x --accumulate)")
        }
        let (count, vocabularySize) = (table.count, tokenizer.vocabularySize)
        try watchdog.guarding("start-up, data set size check") {
            try Consistency.requireAgreement(count: count, what: "the number of training samples", world: world)
            try Consistency.requireAgreement(count: vocabularySize, what: "the tokenizer's vocabulary size", world: world)
        }
        // With accumulation a step covers K global batches' worth of samples: the sampler
        // hands out G·K per step and each rank works through its share in K micro-batches.
        sampler = try DistributedSampler(datasetSize: table.count, globalBatch: config.batchSize * config.accumulate,
                                         worldSize: world.size, rank: world.rank, seed: config.seed)
        microBatches = config.accumulate
        assembler = BatchAssembler(seed: config.seed, imageSize: config.imageSize!, textLength: config.textLength!,
                                   patchSize: preset.patchSize, vocabularySize: tokenizer.vocabularySize)
        tokenizerHash = TokenizerIdentity.hash(tokenizerDirectory)
        classesHash = String(CounterRandom.hash(table.classes.joined(separator: "\n")), radix: 16)
    }

    /// This rank's share of the global batch of `step`, as its K micro-batches.
    func batch(step: Int, kind: BatchKind) throws -> [StepBatch] {
        let source = TableBatchSource(table: table, indices: sampler.globalIndices(step: step), tokenizer: tokenizer,
                                      imageSize: assembler.imageSize, textLength: assembler.textLength,
                                      maxImagePixels: maxImagePixels, progress: reading)
        let share = sampler.localBatch, r = sampler.rank, micro = share / microBatches
        return try (0..<microBatches).map { k in
            let start = r * share + k * micro
            return try assembler.batch(kind, source: source, positions: Array(start..<(start + micro)), step: step,
                                       epoch: sampler.cursor(step: step).epoch)
        }
    }

    /// The batch of `step`, waiting under the watchdog: a read that hangs (a stalled file
    /// system) is reported with the file being read.
    func next(from prefetcher: Prefetcher<[StepBatch]>, step: Int, watchdog: StallWatchdog) throws -> [StepBatch] {
        let reading = self.reading
        return try watchdog.guarding(describing: {
            "step \(step + 1), waiting for the batch" + (reading.current.map { " (reading \($0))" } ?? "")
        }) { try prefetcher.next() }
    }

    /// Batches from `startStep` on, prepared by a background thread.
    func prefetcher(from startStep: Int, kind: BatchKind) -> Prefetcher<[StepBatch]> {
        Prefetcher<[StepBatch]>(startStep: startStep, depth: 2) { [self] step in try batch(step: step, kind: kind) }
    }
}
