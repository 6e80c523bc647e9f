import Foundation
import UMDModel
import UMDData

/// `umd-mpirun debug-step` (MODEL_SPEC.md section 12): exactly one training step of a
/// stage, dropout and GM noise off, fresh AdamW moments at the lr of step `atStep` of a
/// `totalSteps` schedule, no clipping, written as one safetensors file that external tools
/// check number for number.
///
/// It runs in one process, on a real batch (the training split of `--roco` or `--data`
/// with `--tokenizer`) or, without data, on a synthetic one. Gathering several ranks'
/// inputs arrives with the distributed runner.
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
        let real = try realInputs(o)
        let (params, student, teacher) = try ModelInit.build(
            stage: o.stage, task: o.task, classes: real?.classes ?? o.answers, preset: o.preset,
            vocabularySize: real?.vocabularySize ?? o.vocabularySize ?? o.preset.vocabularySize ?? 1000, seed: o.seed,
            initFrom: o.initPath, initOnly: o.initOnly)
        let config = params.config

        let G = o.batchSize, H = config.imageSize, L = config.preset.textLength, V = config.vocabularySize
        let N = config.patchCount, K = config.keptPatchCount
        let step = o.atStep
        var out: [Safetensors.Tensor] = []
        let trained = student.views.filter { o.stage.trains($0.name) }
        out += trained.map { tensor("param." + $0.name, $0, student) }
        if let teacher { out += teacher.views.map { tensor("teacher." + $0.name, $0, teacher) } }

        // The global batch: real samples, or noise images with random token sequences.
        var pixels: [Float], ids: [Int32], attention: [Int32]
        var sampleIndices = Array(0..<G), epoch = 0
        if let real {
            (pixels, ids, attention, sampleIndices, epoch) = (real.pixels, real.ids, real.attention, real.indices, real.epoch)
        } else {
            pixels = (0..<(G * 3 * H * H)).map { Float(CounterRandom.normal(CounterRandom.key(o.seed, 101), UInt64($0))) }
            ids = [Int32](repeating: SpecialTokens.pad, count: G * L)
            attention = [Int32](repeating: 0, count: G * L)
            let textKey = CounterRandom.key(o.seed, 102)
            for b in 0..<G {
                let length = 3 + Int(CounterRandom.bits(textKey, UInt64(1_000_000 + b)) % UInt64(L - 2))
                for t in 0..<length {
                    ids[b * L + t] = t == 0 ? SpecialTokens.start : t == length - 1 ? SpecialTokens.end
                        : Int32(4 + Int(CounterRandom.bits(textKey, UInt64(b * L + t)) % UInt64(V - 5)))
                    attention[b * L + t] = 1
                }
            }
        }
        let sampleIDs = sampleIndices.map { UInt64($0) }
        out.append(.init(name: "input.pixels", shape: [G, 3, H, H], floats: pixels))
        out.append(.init(name: "input.text_ids", shape: [G, L], ints: ids))
        out.append(.init(name: "input.attention", shape: [G, L], ints: attention))

        var losses: [String: Double] = [:]
        var gm: GMCoord.Coefficients? = nil
        student.zeroGradients()
        switch o.stage {
        case .pretrain, .calib:
            var masked = [Int32](), labels = [Int32](), keep = [Int32]()
            for b in 0..<G {
                let (m, l) = Masking.maskText(Array(ids[(b * L)..<((b + 1) * L)]), vocabularySize: V, seed: o.seed,
                                              epoch: epoch, sampleIndex: sampleIndices[b])
                masked += m; labels += l
                keep += Masking.keptPatches(patchCount: N, seed: o.seed, epoch: epoch, sampleIndex: sampleIndices[b])
            }
            var batch = PretrainBatch(batch: G, imageSize: H, textLength: L, pixels: pixels, textIDs: ids,
                                      attention: attention, maskedTextIDs: masked, mlmLabels: labels, idsKeep: keep,
                                      sampleIDs: sampleIDs)
            out.append(.init(name: "input.masked_text_ids", shape: [G, L], ints: masked))
            out.append(.init(name: "input.mlm_labels", shape: [G, L], ints: labels))
            out.append(.init(name: "input.ids_keep", shape: [G, K], ints: keep))
            if o.stage == .pretrain {
                let images = BatchPairing.itmImages(globalBatch: G, seed: o.seed, step: step)
                let size = 3 * H * H
                batch.itmPixels = images.flatMap { pixels[($0 * size)..<(($0 + 1) * size)] }
                batch.itmLabels = images.enumerated().map { $0.offset == $0.element ? 1 : 0 }
                out.append(.init(name: "input.itm_image_index", shape: [G], ints: images.map { Int32($0) }))
                out.append(.init(name: "input.itm_labels", shape: [G], ints: batch.itmLabels))
            }
            let objective = PretrainObjective(params: params, includeITM: o.stage == .pretrain)
            objective.alpha = o.alpha
            let l = objective.step(student: student, teacher: teacher!, batch: batch)
            losses = ["mim": l.mim, "mlm": l.mlm, "feamim": l.feaMIM, "feamlm": l.feaMLM, "total": l.total]
            if o.stage == .pretrain { losses["itm"] = l.itm }
        case .finetune:
            let objective = FinetuneObjective(params: params)
            objective.beta = o.beta
            let result: FinetuneResult
            if o.task == .retrieval {
                let negatives = BatchPairing.retrievalNegatives(globalBatch: G, seed: o.seed, step: step)
                let candidates = (0..<G).flatMap { [Int32($0)] + negatives[$0].map { Int32($0) } }
                result = objective.retrievalStep(student: student, batch: RetrievalBatch(
                    batch: G, imageSize: H, textLength: L, pixels: pixels, textCount: G, textIDs: ids,
                    attention: attention, candidates: candidates, sampleIDs: sampleIDs))
                out.append(.init(name: "input.retrieval_negatives", shape: [G, negatives.first?.count ?? 0],
                                 ints: negatives.flatMap { $0.map { Int32($0) } }))
            } else {
                let labels = real?.labels ?? (0..<G).map {
                    Int32(CounterRandom.bits(CounterRandom.key(o.seed, 103), UInt64($0)) % UInt64(o.answers))
                }
                result = objective.step(student: student, batch: ClassificationBatch(
                    batch: G, imageSize: H, textLength: L, pixels: pixels, textIDs: ids, attention: attention,
                    labels: labels, sampleIDs: sampleIDs))
                out.append(.init(name: "input.labels", shape: [G], ints: labels))
            }
            let c = result.coefficients
            gm = c
            GMCoord.modulate(student, kText: Float(c.kText), kImage: Float(c.kImage), noise: false, seed: o.seed,
                             step: step)
            losses = ["task": result.loss, "total": result.loss]
        }
        for (name, value) in losses.sorted(by: { $0.key < $1.key }) {
            out.append(.init(name: "loss." + name, shape: [1], floats: [Float(value)]))
        }
        if let gm {
            for (name, value) in [("S_t", gm.sumText), ("S_i", gm.sumImage), ("rho_t", gm.rhoText),
                                  ("rho_i", gm.rhoImage), ("k_t", gm.kText), ("k_i", gm.kImage)] {
                out.append(.init(name: "gm." + name, shape: [1], floats: [Float(value)]))
            }
        }
        out += trained.map { view in
            Safetensors.Tensor(name: "grad." + view.name, shape: view.shape,
                               floats: UnsafeBufferPointer(start: student.grads + view.offset, count: view.count))
        }

        // AdamW with fresh moments (t = 1) at the scheduled lr of step s.
        let schedule = LearningRateSchedule(shape: o.stage == .pretrain ? .linear : .cosine, totalSteps: o.totalSteps)
        let multipliers = o.multipliers ?? (o.stage == .finetune ? .downstream : .pretrain)
        let peak = o.peakLearningRate ?? defaultPeakLearningRate(stage: o.stage, task: o.task)
        let lr = peak * Float(schedule.factor(afterSteps: step))
        let optimizer = AdamWOptimizer(store: student, multiplier: { multipliers.multiplier(for: $0.name) },
                                       isTrained: { o.stage.trains($0.name) })
        optimizer.step(baseLearningRate: lr)
        out += trained.map { tensor("param_after." + $0.name, $0, student) }
        if let teacher {
            EMA.update(teacher: teacher, student: student, lambda: o.emaDecay)
            out += teacher.views.map { tensor("teacher_after." + $0.name, $0, teacher) }
        }
        out.append(.init(name: "lr.base", shape: [1], floats: [lr]))
        out.append(.init(name: "lr.fusion", shape: [1], floats: [lr * multipliers.fusion]))
        out.append(.init(name: "lr.heads", shape: [1], floats: [lr * multipliers.heads]))
        let configValues: [(String, Float)] = [
            ("heads", Float(config.preset.heads)), ("dec_heads", Float(config.preset.decoderHeads)), ("alpha", o.alpha),
            ("beta", Float(o.beta)), ("ema", o.emaDecay), ("dropout", o.configuredDropout), ("at_step", Float(step)),
            ("total_steps", Float(o.totalSteps)), ("peak_lr", peak), ("schedule", o.stage == .pretrain ? 0 : 1),
            ("stage", Float(o.stage.code)), ("task", Float(o.task.code)),
        ]
        out += configValues.map { .init(name: "config." + $0.0, shape: [1], floats: [$0.1]) }
        try Safetensors.write(out, metadata: ["format": "umd debug-step", "preset": config.preset.name,
                                              "stage": o.stage.rawValue, "task": o.task.rawValue], to: o.output)
        return losses
    }

    struct RealInputs {
        var pixels: [Float], ids: [Int32], attention: [Int32], indices: [Int], epoch: Int
        var labels: [Int32], classes: Int?, vocabularySize: Int
    }

    /// The global batch of step `atStep` of the training split, as the sampler orders it.
    static func realInputs(_ o: DebugStepOptions) throws -> RealInputs? {
        guard o.roco != nil || o.taskData != nil else { return nil }
        guard let tokenizerURL = o.tokenizer else {
            throw DebugStepError(message: "real data needs --tokenizer DIR (vocab.json + merges.txt)")
        }
        let tokenizer = try ByteLevelBPE(directory: tokenizerURL)
        var images: [URL], texts: [String], labels: [Int] = [], classes: Int? = nil
        if o.stage == .pretrain {
            guard let roco = o.roco else { throw DebugStepError(message: "pretraining reads --roco DIR") }
            let samples = try ROCODataset.load(root: roco, split: .train).samples
            images = samples.map(\.image); texts = samples.map(\.text)
        } else {
            guard let (task, root) = o.taskData else { throw DebugStepError(message: "\(o.stage.rawValue) reads --data DIR") }
            guard task.kind == o.task else {
                throw DebugStepError(message: "--task \(o.task.rawValue) does not match the data set \(task.rawValue) (\(task.kind.rawValue))")
            }
            let samples = try TaskData.load(task: task, root: root, split: .train)
            images = samples.images; texts = samples.texts; labels = samples.labels
            if task.kind != .retrieval { classes = samples.classes.count }
        }
        let sampler = try DistributedSampler(datasetSize: texts.count, globalBatch: o.batchSize, worldSize: 1, rank: 0,
                                             seed: o.seed)
        let indices = sampler.globalIndices(step: o.atStep)
        let builder = BatchBuilder(tokenizer: tokenizer, imageSize: o.preset.imageSize, textLength: o.preset.textLength,
                                   patchSize: o.preset.patchSize, seed: o.seed)
        let (ids, attention) = builder.text(indices.map { texts[$0] })
        return RealInputs(pixels: try builder.pixels(indices.map { images[$0] }), ids: ids, attention: attention,
                          indices: indices, epoch: sampler.cursor(step: o.atStep).epoch,
                          labels: labels.isEmpty ? [] : indices.map { Int32(labels[$0]) }, classes: classes,
                          vocabularySize: tokenizer.vocabularySize)
    }

    /// The paper's defaults: pretrain 1e-5; downstream 5e-6 (VQA), 1e-5 (classification, retrieval).
    public static func defaultPeakLearningRate(stage: Stage, task: TaskKind) -> Float {
        stage == .pretrain ? 1e-5 : (task == .vqa ? 5e-6 : 1e-5)
    }

    static func tensor(_ name: String, _ view: TensorView, _ store: ParameterStore) -> Safetensors.Tensor {
        Safetensors.Tensor(name: name, shape: view.shape,
                           floats: UnsafeBufferPointer(start: store.values + view.offset, count: view.count))
    }
}
