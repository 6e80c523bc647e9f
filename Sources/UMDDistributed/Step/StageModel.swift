import Collective
import Foundation
import UMDData
import UMDModel

/// Everything a stage trains with, built in one place for the trainer, the debug step and
/// the benchmarks: the model's parameters, the student (values + gradients), the EMA
/// teacher (pretrain and calib), AdamW over the stage's trained tensors, the stage's
/// objective, and the trained segments of the gradient arena (what is synchronised,
/// clipped and updated).
public final class StageModel {
    public let stage: Stage
    public let params: UMDParameters
    public let student: ParameterStore
    public let teacher: ParameterStore?
    public let optimizer: AdamWOptimizer
    /// MR-Pretrain / TD-Calib objective (nil when fine-tuning).
    public let pretrain: PretrainObjective?
    /// Fine-tuning objective (nil before).
    public let finetune: FinetuneObjective?
    /// Sorted, disjoint arena ranges of the tensors this stage trains.
    public let trainedSegments: [Range<Int>]
    /// The rest of the gradient arena (tensors loaded but not trained).
    public let untrainedSegments: [Range<Int>]
    /// ZeRO-1 shares of the arena when the optimizer is sharded over the ranks (nil: not).
    public let sharding: OptimizerSharding?
    /// What `--init` imported, resized and left fresh (nil without `--init`).
    public let initReport: ModelInit.Report?

    /// The student is initialised from `seed`, then from `initFrom` (a safetensors file or a
    /// checkpoint directory; `initOnly` restricts it to name prefixes); the teacher is the
    /// file's when it holds one, else a copy of the student.
    public init(stage: Stage, task: TaskKind, classes: Int, preset: ModelPreset, vocabularySize: Int, imageSize: Int? = nil,
                pooling: Pooling = .cls, seed: UInt64,
                initFrom: URL? = nil, initOnly: [String] = [], multipliers: LearningRateMultipliers? = nil,
                hyperparameters: AdamWHyperparameters = .init(), alpha: Float = 0.5, beta: Double = 0.1,
                shardOptimizerOver world: Communicator? = nil) throws {
        let head: TaskHead = stage != .finetune ? .none : (task == .retrieval ? .retrieval : .classifier(outputs: classes))
        let config = ModelConfig(preset: preset, vocabularySize: vocabularySize, imageSize: imageSize, head: head,
                                 pooling: pooling)
        try config.validate()
        self.stage = stage
        params = UMDParameters(config)
        student = ParameterStore(layout: params.layout)
        params.initialize(student, seed: seed)
        teacher = stage.hasTeacher
            ? ParameterStore(layout: params.layout, withGradients: false) { UMDParameters.isTeacherTensor($0.name) } : nil
        var teacherLoaded = false
        if let initFrom {
            let report = try ModelInit.load(path: initFrom, params: params, student: student, teacher: teacher, only: initOnly)
            teacherLoaded = report.teacherLoaded
            initReport = report
        } else {
            initReport = nil
        }
        if let teacher, !teacherLoaded { teacher.copyValues(from: student) }

        let groups = multipliers ?? (stage == .finetune ? .downstream : .pretrain)
        let trains = { (name: String) in stage.trains(name, pooling: pooling) }
        trainedSegments = GradientSynchronizer.segments(student.views.filter { trains($0.name) }.map(\.range))
        untrainedSegments = GradientSynchronizer.segments(student.views.filter { !trains($0.name) }.map(\.range))
        let (arenaCount, trained) = (student.count, trainedSegments)
        sharding = try world.map { try OptimizerSharding(world: $0, arenaCount: arenaCount, trainedSegments: trained) }
        optimizer = AdamWOptimizer(store: student, hyperparameters: hyperparameters,
                                   multiplier: { groups.multiplier(for: $0.name) }, isTrained: { trains($0.name) },
                                   owned: sharding?.ownedByThisRank)
        if stage == .finetune {
            pretrain = nil
            finetune = FinetuneObjective(params: params)
            finetune!.beta = beta
        } else {
            pretrain = PretrainObjective(params: params, includeITM: stage == .pretrain)
            pretrain!.alpha = alpha
            finetune = nil
        }
    }

    public var config: ModelConfig { params.config }
    /// Whether this stage trains the tensor `name` (section 8a, and `--pooling`).
    public func trains(_ name: String) -> Bool { stage.trains(name, pooling: params.config.pooling) }
    public var trainedParameterCount: Int { trainedSegments.reduce(0) { $0 + $1.count } }

    /// What the data pipeline must build for this stage.
    public var batchKind: BatchKind {
        switch stage {
        case .pretrain: return .pretrain(itm: true)
        case .calib: return .pretrain(itm: false)
        case .finetune: return params.config.head == .retrieval ? .retrieval : .classification
        }
    }

    /// Backward reports finished arena offsets here (the gradient synchronizer launches buckets).
    public func reportGradients(to ready: ((Int) -> Void)?) {
        pretrain?.gradientsReady = ready
        finetune?.gradientsReady = ready
    }
}
