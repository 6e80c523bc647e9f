import Foundation
import UMDCore
import UMDData
import UMDModel

/// `umd-mpirun debug-step` (MODEL_SPEC.md section 12): exactly one training step of a
/// stage, dropout and GM noise off, fresh AdamW moments at the lr of step `atStep` of a
/// `totalSteps` schedule, no clipping, written as one safetensors file that external tools
/// check number for number.
///
/// It runs in one process, on a real batch (the training split of `--roco` or `--data`
/// with `--tokenizer`) or, without data, on a synthetic one; the step is the trainer's
/// (`TrainingStep`), split where the optimizer takes over so the gradients can be recorded.
public struct DebugStepOptions: Sendable {
    public var stage: Stage = .pretrain
    public var task: TaskKind = .none
    public var preset: ModelPreset = .tiny
    public var vocabularySize: Int? = nil
    public var batchSize = 4
    public var answers = 5
    public var atStep = 0
    public var totalSteps = 10
    public var peakLearningRate: Float? = nil
    public var seed: UInt64 = 0
    public var alpha: Float = 0.5
    public var beta = 0.1
    public var emaDecay: Float = 0.995
    public var configuredDropout: Float = 0.1
    public var multipliers: LearningRateMultipliers? = nil
    public var initPath: URL? = nil
    public var initOnly: [String] = []
    /// Real data: ROCO for pretraining, the task's data for calib and finetune, and the tokenizer.
    public var roco: URL? = nil
    public var taskData: (task: DownstreamTask, root: URL)? = nil
    public var tokenizer: URL? = nil
    public var output: URL

    public init(output: URL) { self.output = output }
}

public struct DebugStepError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { "debug-step: \(message)" }
}

public enum DebugStep {
    /// Runs the step and writes the file; returns the global-batch losses by name.
    @discardableResult
    public static func run(_ o: DebugStepOptions) throws -> [String: Double] {
        if o.stage == .pretrain && o.task != .none {
            throw DebugStepError(message: "pretraining has no task; leave --task unset")
        }
        if o.stage != .pretrain && o.task == .none {
            throw DebugStepError(message: "\(o.stage.rawValue) needs --task (vqa, classification or retrieval)")
        }
        if o.batchSize < 2 && (o.stage == .pretrain || o.task == .retrieval) {
            throw DebugStepError(message: "a global batch of at least 2 is needed (ITM pairs and retrieval negatives)")
        }
        let source = try inputs(o)
        let model = try StageModel(stage: o.stage, task: o.task, classes: source.classes ?? o.answers, preset: o.preset,
                                   vocabularySize: source.vocabularySize, seed: o.seed, initFrom: o.initPath,
                                   initOnly: o.initOnly, multipliers: o.multipliers, alpha: o.alpha, beta: o.beta)
        let config = model.config, student = model.student, teacher = model.teacher
        let G = o.batchSize, H = config.imageSize, L = config.preset.textLength, K = config.keptPatchCount
        let step = o.atStep
        var out: [Safetensors.Tensor] = []
        let trained = student.views.filter { o.stage.trains($0.name) }
        out += trained.map { tensor("param." + $0.name, $0, student) }
        if let teacher { out += teacher.views.map { tensor("teacher." + $0.name, $0, teacher) } }

        // The global batch through the same assembler as training, all G positions at once.
        let assembler = BatchAssembler(seed: o.seed, imageSize: H, textLength: L, patchSize: config.patchSize,
                                       vocabularySize: config.vocabularySize)
        let batch = try assembler.batch(model.batchKind, source: source.batch, positions: Array(0..<G), step: step,
                                        epoch: source.epoch)
        let all = Array(0..<G)
        out.append(.init(name: "input.pixels", shape: [G, 3, H, H], floats: try source.batch.pixels(all)))
        let (ids, attention) = source.batch.tokens(all)
        out.append(.init(name: "input.text_ids", shape: [G, L], ints: ids))
        out.append(.init(name: "input.attention", shape: [G, L], ints: attention))
        switch batch {
        case .pretrain(let b):
            out.append(.init(name: "input.masked_text_ids", shape: [G, L], ints: b.maskedTextIDs))
            out.append(.init(name: "input.mlm_labels", shape: [G, L], ints: b.mlmLabels))
            out.append(.init(name: "input.ids_keep", shape: [G, K], ints: b.idsKeep))
            if o.stage == .pretrain {
                let images = BatchPairing.itmImages(globalBatch: G, seed: o.seed, step: step)
                out.append(.init(name: "input.itm_image_index", shape: [G], ints: images.map { Int32($0) }))
                out.append(.init(name: "input.itm_labels", shape: [G], ints: b.itmLabels))
            }
        case .classification(let b):
            out.append(.init(name: "input.labels", shape: [G], ints: b.labels))
        case .retrieval:
            let negatives = BatchPairing.retrievalNegatives(globalBatch: G, seed: o.seed, step: step)
            out.append(.init(name: "input.retrieval_negatives", shape: [G, negatives.first?.count ?? 0],
                             ints: negatives.flatMap { $0.map { Int32($0) } }))
        }

        // The training step itself: dropout and GM noise off, no clipping, fresh moments.
        var settings = StepSettings(schedule: LearningRateSchedule(shape: o.stage == .pretrain ? .linear : .cosine,
                                                                   totalSteps: o.totalSteps))
        settings.seed = o.seed
        settings.dropout = 0
        settings.gmNoise = false
        settings.peakLearningRate = o.peakLearningRate ?? PaperDefaults.peakLearningRate(stage: o.stage, task: o.task)
        settings.ema = o.emaDecay
        let trainingStep = TrainingStep(model: model, settings: settings)
        var outcome = try trainingStep.gradients(batch, step: step)
        var losses = outcome.losses
        losses["total"] = losses.removeValue(forKey: "loss")
        for (name, value) in losses.sorted(by: { $0.key < $1.key }) {
            out.append(.init(name: "loss." + name, shape: [1], floats: [Float(value)]))
        }
        if let gm = outcome.coefficients {
            for (name, value) in [("S_t", gm.sumText), ("S_i", gm.sumImage), ("rho_t", gm.rhoText),
                                  ("rho_i", gm.rhoImage), ("k_t", gm.kText), ("k_i", gm.kImage)] {
                out.append(.init(name: "gm." + name, shape: [1], floats: [Float(value)]))
            }
        }
        out += trained.map { view in
            Safetensors.Tensor(name: "grad." + view.name, shape: view.shape,
                               floats: UnsafeBufferPointer(start: student.grads + view.offset, count: view.count))
        }
        try trainingStep.update(step: step, measureNorm: false, into: &outcome)
        let lr = outcome.learningRate
        out += trained.map { tensor("param_after." + $0.name, $0, student) }
        if let teacher { out += teacher.views.map { tensor("teacher_after." + $0.name, $0, teacher) } }
        let multipliers = o.multipliers ?? (o.stage == .finetune ? .downstream : .pretrain)
        out.append(.init(name: "lr.base", shape: [1], floats: [lr]))
        out.append(.init(name: "lr.fusion", shape: [1], floats: [lr * multipliers.fusion]))
        out.append(.init(name: "lr.heads", shape: [1], floats: [lr * multipliers.heads]))
        let configValues: [(String, Float)] = [
            ("heads", Float(config.preset.heads)), ("dec_heads", Float(config.preset.decoderHeads)), ("alpha", o.alpha),
            ("beta", Float(o.beta)), ("ema", o.emaDecay), ("dropout", o.configuredDropout), ("at_step", Float(step)),
            ("total_steps", Float(o.totalSteps)), ("peak_lr", settings.peakLearningRate),
            ("schedule", o.stage == .pretrain ? 0 : 1), ("stage", Float(o.stage.code)), ("task", Float(o.task.code)),
        ]
        out += configValues.map { .init(name: "config." + $0.0, shape: [1], floats: [$0.1]) }
        try Safetensors.write(out, metadata: ["format": "umd debug-step", "preset": config.preset.name,
                                              "stage": o.stage.rawValue, "task": o.task.rawValue], to: o.output)
        return losses
    }

    /// The step's global batch: where its inputs come from, the sampler's epoch, and what
    /// the model is sized by.
    struct Inputs {
        var batch: BatchSource
        var epoch: Int
        var classes: Int?
        var vocabularySize: Int
    }

    /// The global batch of step `atStep` of the training split, as the sampler orders it, or
    /// (without data) a synthetic one.
    static func inputs(_ o: DebugStepOptions) throws -> Inputs {
        guard o.roco != nil || o.taskData != nil else {
            let V = o.vocabularySize ?? o.preset.vocabularySize ?? 1000
            return Inputs(batch: InMemoryBatchSource.synthetic(globalBatch: o.batchSize, imageSize: o.preset.imageSize,
                                                               textLength: o.preset.textLength, vocabularySize: V,
                                                               classes: o.answers, seed: o.seed),
                          epoch: 0, classes: nil, vocabularySize: V)
        }
        guard let tokenizerURL = o.tokenizer else {
            throw DebugStepError(message: "real data needs --tokenizer DIR (vocab.json + merges.txt)")
        }
        let tokenizer = try ByteLevelBPE(directory: tokenizerURL)
        let table: SampleTable
        var classes: Int? = nil
        if o.stage == .pretrain {
            guard let roco = o.roco else { throw DebugStepError(message: "pretraining reads --roco DIR") }
            table = try SampleTable.pretraining(roco: roco, medicat: nil, medicatHoldout: 0, seed: o.seed, options: .init())
        } else {
            guard let (task, root) = o.taskData else { throw DebugStepError(message: "\(o.stage.rawValue) reads --data DIR") }
            guard task.kind == o.task else {
                throw DebugStepError(message: "--task \(o.task.rawValue) does not match the data set \(task.rawValue) (\(task.kind.rawValue))")
            }
            table = try SampleTable.task(task, root: root, split: .train)
            if task.kind != .retrieval { classes = table.classes.count }
        }
        let sampler = try DistributedSampler(datasetSize: table.count, globalBatch: o.batchSize, worldSize: 1, rank: 0,
                                             seed: o.seed)
        return Inputs(batch: TableBatchSource(table: table, indices: sampler.globalIndices(step: o.atStep), tokenizer: tokenizer,
                                              imageSize: o.preset.imageSize, textLength: o.preset.textLength),
                      epoch: sampler.cursor(step: o.atStep).epoch, classes: classes,
                      vocabularySize: tokenizer.vocabularySize)
    }

    static func tensor(_ name: String, _ view: TensorView, _ store: ParameterStore) -> Safetensors.Tensor {
        Safetensors.Tensor(name: name, shape: view.shape,
                           floats: UnsafeBufferPointer(start: store.values + view.offset, count: view.count))
    }
}
