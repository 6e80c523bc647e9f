import Collective
import Foundation
import UMDData
import UMDModel
import UMDCore

/// Everything that defines a training run. Each stored value is declared as a setting in
/// `Settings.all` (flag, config-file key, help, stages, resume rule); precedence: defaults <
/// config file < command-line flags. Every effective value is written to `RUN/config.json`
/// and the configuration's hash is compared across ranks at start.
public struct RunConfiguration: Codable, Sendable, Equatable {
    public var stage: Stage = .pretrain
    /// nil: the `--init` weights' preset, else tiny (resolved at start by `resolved()`).
    public var preset: String? = nil
    /// Image side H and text length L (nil: the stage's default, `StageDefaults`).
    public var imageSize: Int? = nil
    public var textLength: Int? = nil
    public var task: DownstreamTask? = nil
    public var roco: String? = nil
    public var medicat: String? = nil
    /// MedICaT texts held out for validation and for test each (M3AE used 1000 + 1000).
    public var medicatHoldout = 1000
    public var data: String? = nil
    public var tokenizer: String? = nil
    public var out = "runs/umd"
    public var initFrom: String? = nil
    public var initOnly: [String] = []
    public var steps = 100
    public var batchSize = 8
    /// Learning-rate schedule (nil: linear for pretraining, cosine downstream, MODEL_SPEC section 10).
    public var schedule: LearningRateSchedule.Shape? = nil
    public var scheduleShape: LearningRateSchedule.Shape {
        if let schedule { return schedule }
        if stage == .pretrain { return .linear }
        if let task = paperRecipeTask { return PaperRecipe.schedule(stage, task) }
        return .cosine
    }
    /// The data set whose paper recipe gives this run's defaults (base preset, calib or finetune).
    var paperRecipeTask: DownstreamTask? {
        guard stage != .pretrain, (try? presetValue)?.name == "base" else { return nil }
        return task
    }
    /// Warm-up: a fraction of --steps when below 1, else a number of steps (nil: 10 %).
    public var warmup: Double? = nil
    /// K: micro-batches of --batch-size each step (gradient accumulation); the step's batch is G·K.
    /// Optional in storage so manifests written before it existed still decode.
    public var accumulateSteps: Int? = nil
    public var accumulate: Int { accumulateSteps ?? 1 }
    public var lr: Float? = nil
    public var seed: UInt64 = 0
    public var alpha: Float = 0.5
    public var beta = 0.1
    public var ema: Float = 0.995
    public var dropout: Float = 0.1
    public var lrFusion: Float = 5
    public var lrHeads: Float? = nil
    /// AdamW weight decay (nil: 0.01; at base fine-tuning the paper recipe's per task).
    public var weightDecay: Float? = nil
    public var effectiveWeightDecay: Float {
        weightDecay ?? (stage == .finetune ? paperRecipeTask.map(PaperRecipe.finetuneWeightDecay) : nil) ?? 0.01
    }
    public var clipNorm: Float? = nil
    /// AdamW's ε in m̂/(√v̂ + ε) (nil: MODEL_SPEC's 1e-8). Optional so manifests written before
    /// it existed still decode.
    public var adamEpsilon: Float? = nil
    public var effectiveAdamEpsilon: Float { adamEpsilon ?? AdamWHyperparameters().epsilon }
    public var gmCoord = true
    public var gmNoise = true
    public var gmContribution = GMContribution.reference
    /// Fine-tuning's head input (MODEL_SPEC.md section 9 "Head input"); recorded in the
    /// weights, which eval, predict and encode then pool by.
    public var pooling = Pooling.cls
    /// A step whose loss or gradient is not finite stops the run (nil: the default), or is
    /// skipped. Optional so manifests written before it existed still decode.
    public var onNonFinite: NonFiniteAction? = nil
    public var logEvery = 10
    public var consistencyEvery = 100
    public var stallTimeout = 300.0
    public var bucketMB = 25.0
    public var strict = false
    /// Decode every image while reading the data set (skips damaged bodies up front).
    public var checkImages = false
    /// Where a data set's release has no validation split (VQA-RAD): the fraction of its
    /// training split held out as one. Optional so manifests written before it still decode.
    public var validationHoldout: Double? = nil
    /// MELINDA's label column (nil: p_meth_label).
    public var labelColumn: String? = nil
    /// MedICaT's inline references as texts (nil: on, as M3AE).
    public var medicatReferences: Bool? = nil
    /// Largest image decoded, in megapixels (a header claiming more is a bad record).
    public var maxImageMegapixels: Double? = nil
    public var maxImagePixels: Int { Int((maxImageMegapixels ?? Double(ImageCodec.defaultMaxPixels) / 1e6) * 1e6) }
    /// Save a checkpoint every N steps (0: only at the end and on SIGTERM/SIGINT).
    public var checkpointEvery = 0
    public var keepCheckpoints = 3
    public var zstdLevel = 3
    /// Write periodic checkpoints on a background thread from a staged copy.
    public var asyncCheckpoint = false
    /// ZeRO stage 1: each rank updates and holds AdamW moments for 1/R of the parameters.
    public var shardOptimizer = false
    /// What the gradient sum sends: fp32, or bf16 (half the bytes; see SyncPrecision).
    public var syncPrecision: SyncPrecision = .fp32
    /// The matrix-product backend (`MatmulChoice`).
    public var matmul: MatmulChoice = .openblas
    /// The pretraining / calibration losses that train (nil: all of the stage's). One left out
    /// contributes neither gradient nor its term of the total (ablations).
    public var objectives: [String]? = nil
    public var lossWeights: LossWeights { objectives.map { LossWeights.only($0) } ?? LossWeights() }
    /// Validate on the task's validation split every N steps (0: off; fine-tuning).
    /// `--on-nonfinite skip-step` gives up after more than this many consecutive skips.
    public var maxSkippedSteps = 10
    public var evalEvery = 0
    /// The validation metric that picks best.safetensors (nil: the task's headline).
    public var keepBest: String? = nil
    /// Stop after this many validations without improvement (0: never).
    public var earlyStop = 0
    /// An --out holding another run is moved aside (not deleted) instead of refused.
    public var overwrite = false
    /// Resuming with another `--steps` (so another learning-rate schedule) is accepted.
    public var allowScheduleChange = false
    /// Resume from the newest complete checkpoint of `out` ("latest"), from this checkpoint
    /// directory, or ("auto") from the newest one when there is one, else start fresh.
    public var resume: String? = nil
    /// Testing aid: this rank SIGKILLs itself half-way through writing its shard at the
    /// checkpoint after `debugCrashCheckpointStep` steps.
    public var debugCrashCheckpointRank: Int? = nil
    public var debugCrashCheckpointStep = 0
    /// Testing aid: behave as if SIGTERM arrived after this many steps.
    public var debugStopAfter: Int? = nil
    /// Testing aid: this rank sleeps for an hour at step `debugStallStep`, so the stall
    /// watchdog can be seen to fire on the other ranks.
    public var debugStallRank: Int? = nil
    public var debugStallStep = 1
    /// Testing aid: this rank nudges one weight after step 1, so the replica check fires.
    public var debugDivergeRank: Int? = nil

    // The tools' own settings (`debug-step`, `bench step`; see `SettingsScope`).
    /// Without data, the kind of head a tool's step builds (`--task vqa|classification|retrieval`).
    public var headKind: TaskKind? = nil
    /// debug-step: the step whose learning rate and batch are used; outputs of a synthetic
    /// VQA/classification head; vocabulary size without a tokenizer.
    public var atStep = 0
    public var answers = 5
    public var vocabularySize: Int? = nil
    /// bench step: samples per rank per step.
    public var localBatch = 8
    /// Time the step's phases with the profiler's named spans (`Profiler`).
    public var profile = false
    public var recompute = Recompute.off
    /// `--dry-run N`: estimate the peak memory per rank of this run on N ranks and exit.
    public var dryRun: Int? = nil

    public init() {}

    /// The kind of task the stage trains: the data set's, else a tool's head kind.
    public var taskKind: TaskKind { task?.kind ?? headKind ?? .none }

    public var presetValue: ModelPreset {
        get throws {
            do { return try ModelPreset.parse(preset ?? "tiny") } catch { throw RunError("--preset: \(error)") }
        }
    }

    /// The image side this run trains at: the flag, else the stage's default.
    public var effectiveImageSize: Int? {
        (try? presetValue).map { imageSize ?? StageDefaults.imageSize(stage: stage, preset: $0) }
    }

    /// The text length this run trains at: the flag, else the stage's and task's default.
    public var effectiveTextLength: Int? {
        (try? presetValue).map { textLength ?? StageDefaults.textLength(stage: stage, task: taskKind, preset: $0) }
    }

    /// The configuration with every default that depends on something else made concrete:
    /// the preset from the `--init` weights when not given (a given one must agree with
    /// them), image size and text length from the stage. All ranks resolve the same way.
    public func resolved() throws -> RunConfiguration {
        var c = self
        if let initFrom, let described = try WeightsDescription.of(path: initFrom) {
            if let filePreset = described.preset {
                if let given = preset, try ModelPreset.parse(given) != filePreset {
                    throw RunError("--preset \(given) contradicts \(initFrom), which holds a \(filePreset.label) model; "
                                   + "drop --preset or start from other weights")
                }
                c.preset = filePreset.name
            }
        }
        // A resumed run continues at the checkpoint's sizes unless told otherwise (and a
        // contradicting value is then reported by the resume check, naming both).
        if let resume, let saved = Self.savedConfiguration(resume, run: URL(fileURLWithPath: out)) {
            c.preset = c.preset ?? saved.preset
            c.imageSize = c.imageSize ?? saved.imageSize
            c.textLength = c.textLength ?? saved.textLength
        }
        // `--resume auto`: continue when --out holds a complete checkpoint, else start (one
        // sbatch line for the first and every later submission).
        if c.resume == "auto" { c.resume = Checkpoints.complete(run: URL(fileURLWithPath: out)).isEmpty ? nil : "latest" }
        if c.preset == nil { c.preset = "tiny" }
        _ = try c.presetValue
        return try c.checkingSizes()
    }

    /// Image size and text length made concrete (the stage's defaults) and checked against
    /// the preset.
    func checkingSizes() throws -> RunConfiguration {
        var c = self
        let p = try c.presetValue
        c.imageSize = c.effectiveImageSize
        c.textLength = c.effectiveTextLength
        if let L = c.textLength, L < 3 || L > p.maxTextLength {
            throw RunError("--text-length \(L) is outside 3...\(p.maxTextLength) (the \(p.name) position table)")
        }
        if let H = c.imageSize, H <= 0 || H % p.patchSize != 0 || (H / p.patchSize) * (H / p.patchSize) < 4 {
            throw RunError("--image-size \(H) must be a positive multiple of the patch size \(p.patchSize) "
                           + "with at least 2x2 patches")
        }
        return c
    }

    /// Resolved as the tools run a step (`debug-step`, `bench step`): at the preset's image
    /// size and text length at every stage unless given (not the 384 px of base fine-tuning).
    public func atPresetSizes() throws -> RunConfiguration {
        var c = try resolved()
        let preset = try c.presetValue
        c.imageSize = imageSize ?? preset.imageSize
        c.textLength = textLength ?? preset.textLength
        return c
    }

    /// How the data readers read this run's data sets: the one place the data settings meet
    /// `ReaderOptions` (training split, validation, debug-step). `decodeImages` with --check-images.
    public var readerOptions: ReaderOptions {
        var o = ReaderOptions(strict: strict, decodeImages: checkImages, maxImagePixels: maxImagePixels)
        o.validationHoldout = validationHoldout ?? o.validationHoldout
        o.labelColumn = labelColumn ?? o.labelColumn
        o.medicatReferences = medicatReferences ?? o.medicatReferences
        return o
    }

    public var peakLearningRate: Float {
        if let lr { return lr }
        if let task = paperRecipeTask {
            return stage == .calib ? PaperRecipe.calibLearningRate(task) : PaperRecipe.finetuneLearningRate
        }
        return StageDefaults.learningRate(stage: stage, task: taskKind, preset: (try? presetValue) ?? .tiny)
    }

    /// How this run's steps are run.
    public var stepSettings: StepSettings {
        let warmupSteps = warmup.map { $0 < 1 ? Int((Double(steps) * $0).rounded(.down)) : Int($0) }
        var s = StepSettings(schedule: LearningRateSchedule(shape: scheduleShape, totalSteps: steps, warmupSteps: warmupSteps))
        s.seed = seed; s.dropout = dropout; s.gmCoord = gmCoord; s.gmNoise = gmNoise; s.clipNorm = clipNorm
        s.peakLearningRate = peakLearningRate; s.ema = ema; s.onNonFinite = onNonFinite ?? .stop
        return s
    }

    /// Whether step `s` (0-based) writes a log line: the first, every `logEvery`-th, the last.
    func logsAfter(step s: Int) -> Bool { s == 0 || (s + 1) % logEvery == 0 || s == steps - 1 }

    /// `RUN/config.json`: every effective value (defaults included) under its setting name,
    /// so the file can be passed back as `--config`.
    func effectiveJSON() throws -> Data {
        try JSONSerialization.data(withJSONObject: Settings.effectiveValues(self), options: [.prettyPrinted, .sortedKeys])
    }

    /// config.json: the effective values and which umd wrote them (`umd`, not a setting: a
    /// config file read back with `--config` ignores it).
    func configFileJSON() throws -> Data {
        var values = Settings.effectiveValues(self)
        values["umd"] = BuildInfo.description
        return try JSONSerialization.data(withJSONObject: values, options: [.prettyPrinted, .sortedKeys])
    }

    public var multipliers: LearningRateMultipliers {
        LearningRateMultipliers(fusion: lrFusion, heads: lrHeads ?? (stage == .finetune
            ? paperRecipeTask.map(PaperRecipe.headMultiplier) ?? 50 : 5))
    }

    /// A stable hash of the canonical JSON (sorted keys).
    public var hash: UInt64 {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(self)) ?? Data()
        return CounterRandom.hash(String(decoding: data, as: UTF8.self))
    }

    /// What a checkpoint must share with the run that resumes it (the settings marked so in
    /// the settings table, compared by effective value); anything else (steps, logging,
    /// timeouts, …) may change between save and resume.
    public func resumeMismatches(_ saved: RunConfiguration) -> [String] {
        var problems: [String] = []
        if stage != saved.stage { problems.append("stage \(saved.stage.rawValue) (now \(stage.rawValue))") }
        for setting in Settings.of(stage) where setting.resumeMustMatch {
            let (now, then) = (setting.comparable(self), setting.comparable(saved))
            if now != then { problems.append("\(setting.name) \(then) (now \(now))") }
        }
        return problems
    }

    /// The configuration of the checkpoint `--resume` names ("latest": the newest of `run`).
    static func savedConfiguration(_ resume: String, run: URL) -> RunConfiguration? {
        let dir: URL?
        if resume == "latest" { dir = Checkpoints.complete(run: run).first }
        else if case .checkpoint(let d)? = try? WeightsPath.resolve(resume, checkpointOnly: true) { dir = d } else { dir = nil }
        return dir.flatMap { try? Checkpoints.readManifest($0).config }
    }

    /// What a training run needs besides what each setting allows on its own (the table
    /// checks ranges when a value is read).
    public func validate() throws {
        _ = try presetValue
        if stage == .pretrain && batchSize < 2 { throw RunError("pretraining needs --batch-size of at least 2 (ITM pairs)") }
        if stage == .pretrain && roco == nil { throw RunError("pretrain needs --roco DIR") }
        if let headKind, stage != .pretrain {
            throw RunError("--task \(headKind.rawValue) names a kind of head, not a data set; \(stage.rawValue) trains on "
                           + "one: --task vqa-rad, slake, vqa-med-2019, melinda or roco-retrieval with --data DIR")
        }
        if stage != .pretrain && (task == nil || data == nil) { throw RunError("\(stage.rawValue) needs --task and --data") }
        if tokenizer == nil { throw RunError("--tokenizer DIR is needed (vocab.json + merges.txt)") }
        if let w = warmup, w >= 1, Int(w) > steps {
            throw RunError("--warmup \(Int(w)) steps is longer than the run (--steps \(steps)): the learning rate would never "
                           + "reach its peak; give fewer warm-up steps or a fraction of the run (e.g. --warmup 0.1)")
        }
        if stage == .finetune, let task {
            // Checked now, not at the first validation after hours of training.
            if let metric = keepBest {
                let choices = Validation.selectableMetrics(task.kind)
                guard choices.contains(metric) else {
                    throw RunError("--keep-best \(metric) is not a \(task.rawValue) validation metric; choose one of "
                                   + choices.joined(separator: ", "))
                }
            }
            if evalEvery == 0 && (keepBest != nil || earlyStop > 0) {
                throw RunError("--\(keepBest != nil ? "keep-best" : "early-stop") needs --eval-every N (validation every N "
                               + "steps); without it no validation runs, so no best.safetensors is written and nothing stops early")
            }
        }
        if stage == .finetune && gmContribution == .ablation && accumulate > 1 {
            throw RunError("--gm-contribution ablation measures each modality against the whole step's mean features, "
                           + "which --accumulate \(accumulate) does not have before its micro-batches run; use a local "
                           + "batch that fits without --accumulate, or --gm-contribution reference")
        }
        if shardOptimizer && asyncCheckpoint {
            throw RunError("--shard-optimizer and --async-checkpoint cannot be combined yet (the background writer stages "
                           + "one contiguous slice per rank; a sharded rank writes three); drop one of them")
        }
    }
}

/// Per-stage input sizes (MODEL_SPEC.md section 1): pretraining uses the preset's; at base
/// TD-Calib and fine-tuning use 384 px and L = 32 (VQA), 128 (classification), 40
/// (retrieval); tiny and small keep their pretraining sizes.
public enum StageDefaults {
    public static func imageSize(stage: Stage, preset: ModelPreset) -> Int {
        stage != .pretrain && preset.name == "base" ? 384 : preset.imageSize
    }

    /// The peak learning rate when --lr is not given: the paper's at base; at tiny and small,
    /// where the paper's rates barely move a model trained for hundreds of steps from scratch,
    /// rates tuned on the generated data (pretrain 5e-4, calib 2e-4, finetune 3e-4).
    public static func learningRate(stage: Stage, task: TaskKind, preset: ModelPreset) -> Float {
        if preset.name == "base" { return PaperDefaults.peakLearningRate(stage: stage, task: task) }
        switch stage {
        case .pretrain: return 5e-4
        case .calib: return 2e-4
        case .finetune: return 3e-4
        }
    }

    public static func textLength(stage: Stage, task: TaskKind, preset: ModelPreset) -> Int {
        guard stage != .pretrain && preset.name == "base" else { return preset.textLength }
        switch task {
        case .vqa: return 32
        case .classification: return 128
        case .retrieval: return 40
        case .none: return preset.textLength
        }
    }
}

/// The paper's learning rates: pretrain 1e-5; downstream 5e-6 (VQA), 1e-5 (classification,
/// retrieval) — where the data set is not known (debug-step on a synthetic batch).
public enum PaperDefaults {
    public static func peakLearningRate(stage: Stage, task: TaskKind) -> Float {
        stage == .pretrain ? 1e-5 : (task == .vqa ? 5e-6 : 1e-5)
    }
}

/// The paper's per-task recipe (its Section 4.2; MODEL_SPEC section 10's table): the base
/// preset's defaults for TD-Calib and GM-Coord fine-tuning, each overridable by its flag.
/// Warm-up 10 % and the fusion ×5 as everywhere; TD-Calib keeps pretraining's head ×5.
public enum PaperRecipe {
    public static func calibLearningRate(_ task: DownstreamTask) -> Float {
        switch task {
        case .slake, .vqaMed2019: return 5e-6
        case .vqaRad, .rocoRetrieval, .melinda: return 1e-5
        }
    }
    public static let finetuneLearningRate: Float = 5e-6
    /// TD-Calib: linear everywhere; GM-Coord: linear for VQA-Med-2019, cosine elsewhere.
    public static func schedule(_ stage: Stage, _ task: DownstreamTask) -> LearningRateSchedule.Shape {
        stage == .calib || task == .vqaMed2019 ? .linear : .cosine
    }
    /// GM-Coord's weight decay (TD-Calib: 0.01).
    public static func finetuneWeightDecay(_ task: DownstreamTask) -> Float {
        switch task {
        case .vqaRad, .vqaMed2019, .rocoRetrieval: return 0.1
        case .slake, .melinda: return 0.01
        }
    }
    /// GM-Coord's head learning-rate multiplier (the reference code's; the paper is silent).
    public static func headMultiplier(_ task: DownstreamTask) -> Float {
        switch task {
        case .vqaRad, .slake, .vqaMed2019: return 50
        case .rocoRetrieval: return 5
        case .melinda: return 10
        }
    }
}



extension RunConfiguration {
    /// A manifest saved by an older build lacks the settings added since (synthesized
    /// decoding would then refuse the whole checkpoint): those keys take today's defaults.
    /// A manifest that has every key is returned untouched (no number is re-printed).
    static func fillingNewSettings(manifest data: Data) -> Data {
        guard var object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let saved = object["config"] as? [String: Any],
              let defaultsData = try? JSONEncoder().encode(RunConfiguration()),
              var merged = (try? JSONSerialization.jsonObject(with: defaultsData)) as? [String: Any],
              merged.keys.contains(where: { saved[$0] == nil }) else { return data }
        for (key, value) in saved { merged[key] = value }
        object["config"] = merged
        return (try? JSONSerialization.data(withJSONObject: object)) ?? data
    }
}
