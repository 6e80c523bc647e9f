import Foundation
import UMDCore
import UMDData
import UMDModel

/// `umd-mpirun debug-step` (MODEL_SPEC.md section 12): exactly one training step of a
/// stage, dropout and GM noise off, fresh AdamW moments at the lr of step `--at-step` of a
/// `--steps` schedule, no clipping, written as one safetensors file that external tools
/// check number for number.
///
/// It runs in one process, on a real batch (the training split of `--roco` or `--task` and
/// `--data`, with `--tokenizer`) or, without data, on a synthetic one. Its settings come from
/// the settings table (`SettingsScope.Tool.debugStep`); the model and step are built by
/// `RunFactory` as training builds them, the step split where the optimizer takes over so
/// the gradients can be recorded.
public enum DebugStep {
    /// debug-step's defaults where they differ from training's: a global batch of 4, a
    /// 10-step schedule, no output file until `--out` names one.
    public static var defaults: RunConfiguration {
        var c = RunConfiguration()
        c.batchSize = 4
        c.steps = 10
        c.out = ""
        return c
    }

    /// The configuration the step runs with: the preset's sizes (or the `--init` weights'
    /// preset), and the paper's learning rate of the stage unless `--lr` is given.
    static func resolve(_ given: RunConfiguration) throws -> RunConfiguration {
        if given.out.isEmpty { throw RunError("debug-step needs --out FILE (the safetensors file it writes)") }
        if given.stage == .pretrain && given.taskKind != .none {
            throw RunError("pretraining has no task; leave --task unset")
        }
        if given.stage != .pretrain && given.taskKind == .none {
            throw RunError("\(given.stage.rawValue) needs --task (vqa, classification or retrieval; or a data set with --data)")
        }
        if let kind = given.headKind, let task = given.task, kind != task.kind {
            throw RunError("--task \(kind.rawValue) does not match the data set \(task.rawValue) (\(task.kind.rawValue))")
        }
        if (given.task == nil) != (given.data == nil) {
            throw RunError("a data set is --task NAME with --data DIR; give both or neither")
        }
        if given.batchSize < 2 && (given.stage == .pretrain || given.taskKind == .retrieval) {
            throw RunError("a global batch of at least 2 is needed (ITM pairs and retrieval negatives)")
        }
        var c = try given.atPresetSizes()
        c.lr = c.lr ?? PaperDefaults.peakLearningRate(stage: c.stage, task: c.taskKind)
        return c
    }

    /// Runs the step and writes the file; returns the global-batch losses by name.
    @discardableResult
    public static func run(_ given: RunConfiguration) throws -> [String: Double] {
        let o = try resolve(given)
        let source = try inputs(o)
        let factory = RunFactory(o)
        let model = try factory.model(classes: source.classes ?? o.answers, vocabularySize: source.vocabularySize)
        let config = model.config, student = model.student, teacher = model.teacher
        let G = o.batchSize, H = config.imageSize, L = o.textLength!, K = config.keptPatchCount
        let step = o.atStep
        var out: [Safetensors.Tensor] = []
        let trained = student.views.filter { model.trains($0.name) }
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
        var settings = o.stepSettings
        settings.dropout = 0
        settings.gmNoise = false
        settings.clipNorm = nil
        let trainingStep = try factory.step(model, world: nil, settings: settings)
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
        let multipliers = o.multipliers
        out.append(.init(name: "lr.base", shape: [1], floats: [lr]))
        out.append(.init(name: "lr.fusion", shape: [1], floats: [lr * multipliers.fusion]))
        out.append(.init(name: "lr.heads", shape: [1], floats: [lr * multipliers.heads]))
        let configValues: [(String, Float)] = [
            ("heads", Float(config.preset.heads)), ("dec_heads", Float(config.preset.decoderHeads)), ("alpha", o.alpha),
            ("beta", Float(o.beta)), ("ema", o.ema), ("dropout", o.dropout), ("at_step", Float(step)),
            ("total_steps", Float(o.steps)), ("peak_lr", settings.peakLearningRate),
            ("schedule", o.scheduleShape == .linear ? 0 : 1), ("stage", Float(o.stage.code)), ("task", Float(o.taskKind.code)),
        ] + (o.stage == .finetune ? [("gm_contribution", Float(o.gmContribution.code)), ("pooling", Float(config.pooling.code))]
             : [])
        out += configValues.map { .init(name: "config." + $0.0, shape: [1], floats: [$0.1]) }
        try Safetensors.write(out, metadata: ["format": "umd debug-step", "preset": config.preset.name,
                                              "stage": o.stage.rawValue, "task": o.taskKind.rawValue],
                              to: URL(fileURLWithPath: o.out))
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
    static func inputs(_ o: RunConfiguration) throws -> Inputs {
        let preset = try o.presetValue, H = o.imageSize!, L = o.textLength!
        guard o.roco != nil || o.task != nil else {
            let V = o.vocabularySize ?? preset.vocabularySize ?? 1000
            return Inputs(batch: InMemoryBatchSource.synthetic(globalBatch: o.batchSize, imageSize: H, textLength: L,
                                                               vocabularySize: V, classes: o.answers, seed: o.seed),
                          epoch: 0, classes: nil, vocabularySize: V)
        }
        guard let tokenizerPath = o.tokenizer else {
            throw RunError("real data needs --tokenizer DIR (vocab.json + merges.txt)")
        }
        let tokenizer = try ByteLevelBPE(directory: URL(fileURLWithPath: tokenizerPath))
        let table: SampleTable
        var classes: Int? = nil
        if let roco = o.roco {
            table = try SampleTable.pretraining(roco: URL(fileURLWithPath: roco), medicat: nil, medicatHoldout: 0, seed: o.seed,
                                                options: o.readerOptions)
        } else {
            guard let task = o.task, let root = o.data else { throw RunError("\(o.stage.rawValue) reads --task NAME --data DIR") }
            table = try SampleTable.task(task, root: URL(fileURLWithPath: root), split: .train, options: o.readerOptions)
            if task.kind != .retrieval { classes = table.classes.count }
        }
        let sampler = try DistributedSampler(datasetSize: table.count, globalBatch: o.batchSize, worldSize: 1, rank: 0,
                                             seed: o.seed)
        return Inputs(batch: TableBatchSource(table: table, indices: sampler.globalIndices(step: o.atStep), tokenizer: tokenizer,
                                              imageSize: H, textLength: L),
                      epoch: sampler.cursor(step: o.atStep).epoch, classes: classes,
                      vocabularySize: tokenizer.vocabularySize)
    }

    static func tensor(_ name: String, _ view: TensorView, _ store: ParameterStore) -> Safetensors.Tensor {
        Safetensors.Tensor(name: name, shape: view.shape,
                           floats: UnsafeBufferPointer(start: store.values + view.offset, count: view.count))
    }
}
