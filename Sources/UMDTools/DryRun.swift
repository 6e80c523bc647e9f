import Foundation
import UMDCore
import UMDData
import UMDDistributed
import UMDModel

/// `<stage> … --dry-run N`: what this run needs per rank on N ranks, found out before it
/// starts (issue 28, item 4) — to size a cluster job. One process builds the run's model
/// (preset, stage, sizes, weights, sharding as configured) and runs two steps of 2 synthetic
/// samples at the run's shapes; from them:
///
///   peak per rank ≈ peak resident of those steps − the AdamW moments a sharded rank does not
///                   hold + (local batch − 2) × the activations and scratch per sample
///                   (`MemoryLedger`) [+ the async checkpoint's staging copy]
///
/// The activations grow linearly with the batch (measured at base: 480.9 and 479.7 MiB per
/// sample at local batch 2 and 4), so two samples say what sixteen will need. Not counted: the
/// data pipeline's prefetched batches (a few MB per sample) and MPI's own buffers. Nothing is
/// read from the data set and nothing is written.
public enum DryRun {
    public struct Estimate {
        /// The run's configuration, resolved (preset from the weights, the stage's sizes).
        public var config: RunConfiguration
        public var ranks: Int
        public var localBatch: Int
        public var measuredBatch: Int
        /// Arenas of the model as this run holds them on one rank (moments: its share).
        public var parameters: Int, gradients: Int, moments: Int, teacher: Int
        /// Peak resident of the measuring process after its steps (every moment held).
        public var measuredPeak: Int
        public var momentsNotHeld: Int
        public var perSample: Int
        public var checkpointStaging: Int
        public var stepSeconds: Double
        /// Other memory of a fixed size (`--matmul bf16`'s rounded weight copies), by owner.
        public var otherFixed: [(owner: String, bytes: Int)] = []

        /// The estimated peak per rank at `batch` samples per micro-batch.
        public func peak(localBatch batch: Int) -> Int {
            measuredPeak - momentsNotHeld + (batch - measuredBatch) * perSample + checkpointStaging
        }
    }

    public static let measuredBatch = 2

    public static func estimate(_ given: RunConfiguration, ranks: Int) throws -> Estimate {
        let config = try given.resolved()
        guard config.batchSize % (ranks * config.accumulate) == 0 else {
            throw RunError("--dry-run \(ranks): --batch-size \(config.batchSize) does not split into \(ranks) ranks × "
                           + "--accumulate \(config.accumulate) micro-batches")
        }
        let localBatch = config.batchSize / ranks / config.accumulate
        let preset = try config.presetValue
        let H = config.imageSize ?? preset.imageSize, L = config.textLength ?? preset.textLength
        // The vocabulary the run will have: the tokenizer's, else the preset's.
        var vocabulary = preset.vocabularySize ?? 1000
        if let tokenizer = config.tokenizer {
            vocabulary = try ByteLevelBPE(directory: URL(fileURLWithPath: tokenizer)).vocabularySize
        }
        ThreadBudget.configure()
        Matmul.backend = try config.matmul.makeBackend()
        // One process, built as one rank of the job would be (sharding is accounted below).
        var single = config
        single.shardOptimizer = false
        let answers = 100   // the head's size is negligible next to the encoders
        let factory = RunFactory(single)
        let model = try factory.model(classes: config.stage == .finetune ? answers : 0, vocabularySize: vocabulary)
        let batch = try StepBenchmark.syntheticBatch(model, samples: measuredBatch, imageSize: H, textLength: L,
                                                     vocabularySize: vocabulary, classes: answers, seed: 0)
        let step = try factory.step(model, world: nil, settings: StepBenchmark.stepSettings(config, steps: 3))
        defer { step.stop() }
        try step.run(batch, step: 0)            // sizes every buffer
        let start = Date()
        try step.run(batch, step: 1)
        let stepSeconds = Date().timeIntervalSince(start)

        let activations = MemoryLedger.table.reduce(0) { $0 + $1.bytes }
        let floats = MemoryLayout<Float>.stride
        let parameters = model.student.count * floats
        let momentsAll = 2 * model.optimizer.owned.count * floats
        let moments = config.shardOptimizer && ranks > 1 ? (momentsAll + ranks - 1) / ranks : momentsAll
        let teacher = (model.teacher?.count ?? 0) * floats
        // The async checkpoint copies this rank's slice of the state (student, teacher, moments).
        let staging = config.asyncCheckpoint ? (parameters + teacher) / ranks + moments : 0
        return Estimate(config: config, ranks: ranks, localBatch: localBatch, measuredBatch: measuredBatch, parameters: parameters,
                        gradients: parameters, moments: moments, teacher: teacher, measuredPeak: peakResidentBytes(),
                        momentsNotHeld: momentsAll - moments, perSample: activations / measuredBatch,
                        checkpointStaging: staging, stepSeconds: stepSeconds, otherFixed: MemoryLedger.fixedTable)
    }

    /// The estimate in words, for the terminal.
    public static func describe(_ e: Estimate) -> [String] {
        let config = e.config
        func gb(_ bytes: Int) -> String { String(format: "%.2f GB", Double(bytes) / 1e9) }
        func mib(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1048576) }
        var lines = ["dry run: \(config.stage.rawValue) at preset \((try? config.presetValue)?.label ?? "?"), "
                     + "\(config.imageSize ?? 0) px, L = \(config.textLength ?? 0), on \(e.ranks) rank(s): --batch-size "
                     + "\(config.batchSize) is \(e.localBatch) sample(s) per rank per micro-batch"
                     + (config.accumulate > 1 ? " (× \(config.accumulate) accumulated)" : "")]
        lines.append("  fixed per rank: parameters \(mib(e.parameters)), gradients \(mib(e.gradients)), AdamW moments "
                     + "\(mib(e.moments))" + (e.momentsNotHeld > 0 ? " (its share)" : "") + ", EMA teacher \(mib(e.teacher))"
                     + e.otherFixed.map { ", \($0.owner) \(mib($0.bytes))" }.joined())
        lines.append("  activations and scratch: \(mib(e.perSample)) per sample (measured: 2 steps of \(e.measuredBatch) "
                     + "synthetic samples in this process)")
        if e.checkpointStaging > 0 { lines.append("  --async-checkpoint staging copy: \(mib(e.checkpointStaging))") }
        lines.append("  estimated peak resident per rank: \(gb(e.peak(localBatch: e.localBatch))) at \(e.localBatch) "
                     + "sample(s) per micro-batch (measured here at \(e.measuredBatch): \(gb(e.measuredPeak)))")
        lines.append(String(format: "  step time here at %d samples: %.1f s (%d BLAS thread%@); compute grows about linearly "
                            + "with the samples per rank", e.measuredBatch, e.stepSeconds, BLAS.threadCount,
                            BLAS.threadCount == 1 ? "" : "s"))
        lines.append("  not counted: prefetched batches (a few MB per sample) and MPI's buffers; nothing was read or written")
        return lines
    }
}
