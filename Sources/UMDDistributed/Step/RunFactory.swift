import Collective
import Foundation
import UMDCore
import UMDData
import UMDModel

/// The one place where what a command trains with is built from its settings (a
/// `RunConfiguration`, the settings table's result) and the MPI world: the stage's model
/// (student, EMA teacher, AdamW sharded or not, objective), the gradient synchronizer, the
/// objectives' global reduction and the `TrainingStep` over them, and the models that
/// evaluation and feature encoding load weights into. Training, `debug-step`, `bench step`,
/// `bench checkpoint`, `eval` and `encode` build here; a new setting is a table row and its
/// use here (or in the part it configures).
public struct RunFactory {
    public let config: RunConfiguration

    /// `config` with its sizes resolved (`RunConfiguration.resolved`).
    public init(_ config: RunConfiguration) { self.config = config }

    /// The stage's model for a data set of `classes` classes (answers) and a tokenizer of
    /// `vocabularySize` tokens, initialised from the seed, then from `--init`. With a world of
    /// more than one rank, rank 0's initial weights become every rank's (under the watchdog
    /// when one is given), and `--shard-optimizer` shares AdamW's moments over it.
    public func model(classes: Int, vocabularySize: Int, world: Communicator? = nil,
                      watchdog: StallWatchdog? = nil) throws -> StageModel {
        var hyperparameters = AdamWHyperparameters()
        hyperparameters.weightDecay = config.effectiveWeightDecay
        hyperparameters.epsilon = config.effectiveAdamEpsilon
        let ranks = world?.size ?? 1
        let model = try StageModel(stage: config.stage, task: config.taskKind, classes: classes, preset: config.presetValue,
                                   vocabularySize: vocabularySize, imageSize: config.imageSize, pooling: config.pooling,
                                   seed: config.seed,
                                   initFrom: config.initFrom.map { URL(fileURLWithPath: $0) }, initOnly: config.initOnly,
                                   multipliers: config.multipliers, hyperparameters: hyperparameters,
                                   alpha: config.alpha, beta: config.beta,
                                   shardOptimizerOver: config.shardOptimizer && ranks > 1 ? world : nil)
        model.pretrain?.weights = config.lossWeights
        model.pretrain?.recompute = config.recompute == .blocks
        model.finetune?.recompute = config.recompute == .blocks
        model.finetune?.contribution = config.gmContribution
        if let world, world.size > 1 {
            let broadcast = {
                let student = model.student
                try world.broadcast(UnsafeMutableBufferPointer(start: student.values, count: student.count), root: 0)
                if let teacher = model.teacher {
                    try world.broadcast(UnsafeMutableBufferPointer(start: teacher.values, count: teacher.count), root: 0)
                }
            }
            if let watchdog { try watchdog.guarding("start-up, broadcast of the initial weights", broadcast) } else { try broadcast() }
        }
        return model
    }

    /// The step of `model`: over `world` (gradients summed in buckets as backward finishes
    /// them, the objectives' counts and sums reduced, failures abort the job — under the
    /// watchdog when one is given), or in this process alone when `world` is nil.
    /// `during` names what a failed reduction was doing. Stop it with `TrainingStep.stop()`.
    public func step(_ model: StageModel, world: Communicator?, watchdog: StallWatchdog? = nil,
                     during: @escaping @Sendable () -> String = { "the allreduce of loss sums and counts" },
                     settings: StepSettings? = nil) throws -> TrainingStep {
        let sync = try world.map {
            try GradientSynchronizer(world: $0, gradients: model.student.grads, segments: model.trainedSegments,
                                     bucketBytes: Int(config.bucketMB * 1_048_576), precision: config.syncPrecision,
                                     watchdog: watchdog)
        }
        let reduction = world.map { Self.globalReduction($0, watchdog: watchdog, during: during) } ?? .local
        return TrainingStep(model: model, settings: settings ?? config.stepSettings, sync: sync, reduction: reduction)
    }

    /// The objectives' global sums over `world`: an allreduce (under the watchdog when one
    /// is given); a failure aborts the job, since the objective cannot continue with partial
    /// counts.
    static func globalReduction(_ world: Communicator, watchdog: StallWatchdog?,
                                during: @escaping @Sendable () -> String) -> GlobalReduction {
        if world.size == 1 { return .local }
        return GlobalReduction { values in
            var v = values
            do {
                if let watchdog {
                    try watchdog.guarding(describing: during) { try world.allreduce(&v, op: .sum) }
                } else {
                    try world.allreduce(&v, op: .sum)
                }
            } catch {
                world.abort(message: "error: \(during()): \(error)")
            }
            return v
        }
    }

    /// A model to run (not train) weights in: `eval`, validation and `encode`. Parameters
    /// are initialised from seed 0 (what the weights do not hold keeps that), then the
    /// tensors of `file` that `include` accepts are loaded; non-finite weights are refused.
    public static func inferenceModel(_ config: ModelConfig, weights file: Safetensors.File, path: String,
                                      include: (String) -> Bool) throws -> (UMDParameters, ParameterStore, ModelIO.ImportReport) {
        try config.validate()
        let params = UMDParameters(config)
        let store = ParameterStore(layout: params.layout, withGradients: true)
        params.initialize(store, seed: 0)
        let report = try ModelIO.load(into: store, from: file, path: path, include: include)
        try store.requireFinite("the weights in \(path)")
        return (params, store, report)
    }
}
