import Collective
import Foundation
import UMDData
import UMDModel

/// A value a setting can hold, read from a flag's text or a config file's scalar.
public protocol SettingValue {
    init?(settingText: String)
    /// The value as JSON (config.json, help defaults).
    var jsonValue: Any { get }
    /// What `--help` shows in place of the value.
    static var placeholder: String { get }
}

extension Int: SettingValue {
    public init?(settingText: String) { self.init(settingText) }
    public var jsonValue: Any { self }
    public static var placeholder: String { "N" }
}
extension UInt64: SettingValue {
    public init?(settingText: String) { self.init(settingText) }
    public var jsonValue: Any { self }
    public static var placeholder: String { "N" }
}
/// Real numbers: finite values only (`nan` and `inf` are refused where they are read).
public protocol RealSettingValue: SettingValue, BinaryFloatingPoint, LosslessStringConvertible {}
extension RealSettingValue {
    public init?(settingText: String) {
        guard let v = Self(settingText), v.isFinite else { return nil }
        self = v
    }
    // Through the shortest decimal text, so a Float 1e-05 is written as 1e-05, not 9.99999974738e-06.
    public var jsonValue: Any { Double("\(self)") ?? Double(self) }
    public static var placeholder: String { "X" }
}
extension Double: RealSettingValue {}
extension Float: RealSettingValue {}
extension String: SettingValue {
    public init?(settingText: String) { self = settingText }
    public var jsonValue: Any { self }
    public static var placeholder: String { "TEXT" }
}
extension Bool: SettingValue {
    public init?(settingText: String) {
        switch settingText.lowercased() {
        case "on", "true", "yes": self = true
        case "off", "false", "no": self = false
        default: return nil
        }
    }
    public var jsonValue: Any { self }
    public static var placeholder: String { "on|off" }
}
/// A setting whose values are the cases of a string enum: the text is the case's raw value.
public protocol EnumSettingValue: SettingValue, RawRepresentable, CaseIterable where RawValue == String {}
extension EnumSettingValue {
    public init?(settingText: String) { self.init(rawValue: settingText) }
    public var jsonValue: Any { rawValue }
    public static var placeholder: String { allCases.map(\.rawValue).joined(separator: "|") }
}
extension SyncPrecision: EnumSettingValue {}
extension MatmulChoice: EnumSettingValue {}
extension Recompute: EnumSettingValue {}
extension GMContribution: EnumSettingValue {}
extension Pooling: EnumSettingValue {}
extension NonFiniteAction: EnumSettingValue {}
extension LearningRateSchedule.Shape: EnumSettingValue {}
extension DownstreamTask: EnumSettingValue {}

/// Who reads a set of settings: a training command (its stage fixed by the command), or a
/// tool that runs a stage's step without training a run (`debug-step`, `bench step`), for
/// which the stage is itself a setting (`--stage`). Both read the one table below.
public enum SettingsScope: Sendable, Equatable {
    case stage(Stage)
    case tool(Tool)

    public enum Tool: String, Sendable, Hashable {
        case debugStep = "debug-step", benchStep = "bench step"
    }

    /// What `umd-mpirun … --help` is called with, for messages.
    var command: String {
        switch self {
        case .stage(let stage): return stage.rawValue
        case .tool(let tool): return tool.rawValue
        }
    }
}

/// One setting of the training stages: its flag and config-file key (the same name), its
/// help, which stages take it, whether a resumed run must match the checkpoint in it, and
/// how it reads and reports the value in a `RunConfiguration`.
public struct Setting: Sendable {
    public enum Form: Sendable {
        /// `--name VALUE` or `--name=VALUE`.
        case value
        /// `--name` alone means on (`--name=off` also works).
        case flag
        /// A comma-separated list (`--name a,b`; a YAML list in a config file).
        case list
    }

    public let name: String
    public let help: String
    public let stages: Set<Stage>
    public let resumeMustMatch: Bool
    /// Testing aids: accepted, not shown by `--help`.
    public let hidden: Bool
    public let form: Form
    public let placeholder: String
    /// Sets the value from text; returns nil, or why the text is not an allowed value.
    let assign: @Sendable (inout RunConfiguration, String) -> String?
    /// The effective value (defaults resolved), nil when unset.
    let read: @Sendable (RunConfiguration) -> Any?
    /// The default depends on other settings (stage, preset, task): the help text says how and
    /// `--help` shows no single value.
    var defaultIsComputed = false
    /// The tools that take this setting too (`stages` empty: only they do).
    var tools: Set<SettingsScope.Tool> = []
    /// Other spellings accepted for the flag (kept for scripts written against older names).
    var aliases: [String] = []
    /// The value to compare on resume (its text).
    func comparable(_ c: RunConfiguration) -> String { read(c).map { "\($0)" } ?? "none" }

    /// A setting stored at `key`. `effective` resolves a default that depends on other settings.
    static func option<T: SettingValue>(
        _ name: String, _ key: WritableKeyPath<RunConfiguration, T> & Sendable, _ help: String,
        stages: Set<Stage> = Set(Stage.allCases), tools: Set<SettingsScope.Tool> = [], aliases: [String] = [],
        resume: Bool = false, hidden: Bool = false, allowed: Allowed<T> = .any, placeholder: String? = nil
    ) -> Setting {
        Setting(name: name, help: help, stages: stages, resumeMustMatch: resume, hidden: hidden,
                form: T.self == Bool.self ? .flag : .value, placeholder: placeholder ?? T.placeholder,
                assign: assigner(key, allowed), read: { $0[keyPath: key].jsonValue }, tools: tools, aliases: aliases)
    }

    /// An optional setting; `effective` gives the value used when it is unset (nil: none).
    static func optional<T: SettingValue>(
        _ name: String, _ key: WritableKeyPath<RunConfiguration, T?> & Sendable, _ help: String,
        stages: Set<Stage> = Set(Stage.allCases), tools: Set<SettingsScope.Tool> = [], aliases: [String] = [],
        resume: Bool = false, hidden: Bool = false, allowed: Allowed<T> = .any, placeholder: String? = nil,
        effective: (@Sendable (RunConfiguration) -> T?)? = nil, defaultInHelp: Bool = false
    ) -> Setting {
        Setting(name: name, help: help, stages: stages, resumeMustMatch: resume, hidden: hidden,
                form: T.self == Bool.self ? .flag : .value, placeholder: placeholder ?? T.placeholder,
                assign: assigner(key, allowed), read: { c in (c[keyPath: key] ?? effective?(c)).map(\.jsonValue) },
                defaultIsComputed: defaultInHelp, tools: tools, aliases: aliases)
    }

    /// Parses the text as a `T`, checks it against `allowed` and stores it at `key`.
    static func assigner<T: SettingValue, Stored>(_ key: WritableKeyPath<RunConfiguration, Stored> & Sendable,
                                                 _ allowed: Allowed<T>) -> @Sendable (inout RunConfiguration, String) -> String? {
        { c, text in
            guard let v = T(settingText: text), let stored = v as? Stored else { return "expected \(T.placeholder)" }
            if let problem = allowed.problem(v) { return problem }
            c[keyPath: key] = stored
            return nil
        }
    }
}

/// The values a setting allows, checked when it is read (flag or config file).
public struct Allowed<T>: Sendable {
    let problem: @Sendable (T) -> String?
    public static var any: Allowed<T> { Allowed { _ in nil } }
}

extension Allowed where T == String {
    /// Not empty (`--out ""` would write the run into the current directory).
    static var nonEmpty: Allowed { Allowed { $0.isEmpty ? "must not be empty" : nil } }
}

extension Allowed where T: Comparable & Sendable {
    /// lower ≤ v (or lower < v when `strictly`).
    static func atLeast(_ lower: T, strictly: Bool = false) -> Allowed {
        Allowed { v in (strictly ? v > lower : v >= lower) ? nil : "must be \(strictly ? "greater than" : "at least") \(lower)" }
    }
    /// lower ≤ v ≤ upper, or lower ≤ v < upper with `upperOpen`.
    static func within(_ lower: T, _ upper: T, upperOpen: Bool = false) -> Allowed {
        Allowed { v in
            v >= lower && (upperOpen ? v < upper : v <= upper) ? nil
                : "must be in [\(lower), \(upper)\(upperOpen ? ")" : "]")"
        }
    }
}

/// The settings of the training stages — the one source of the stage commands' flags,
/// the config-file keys, `--help` and its defaults, `RUN/config.json` and the resume check.
public enum Settings {
    static let downstream: Set<Stage> = [.calib, .finetune]
    static let withTeacher: Set<Stage> = [.pretrain, .calib]
    /// Tools that run one stage step: `debug-step` (one step written to a file), `bench step`.
    static let debugStep: Set<SettingsScope.Tool> = [.debugStep]
    static let benchStep: Set<SettingsScope.Tool> = [.benchStep]
    static let bothTools: Set<SettingsScope.Tool> = [.debugStep, .benchStep]

    public static let all: [Setting] = [
        // Data and model.
        Setting(name: "stage", help: "The stage whose step runs: pretrain, calib or finetune.", stages: [],
                resumeMustMatch: false, hidden: false, form: .value, placeholder: "pretrain|calib|finetune",
                assign: { c, text in
                    guard let stage = Stage(rawValue: text) else { return "expected pretrain, calib or finetune" }
                    c.stage = stage
                    return nil
                },
                read: { $0.stage.rawValue }, tools: bothTools),
        .optional("roco", \.roco, "ROCO root (training split).", stages: [.pretrain], tools: debugStep, resume: true,
                  placeholder: "DIR"),
        .optional("medicat", \.medicat, "MedICaT root (optional; added to ROCO).", stages: [.pretrain], resume: true,
                  placeholder: "DIR"),
        .option("medicat-holdout", \.medicatHoldout,
                "MedICaT texts held out for validation and for test, each (at most a tenth of the texts each).",
                stages: [.pretrain], resume: true, allowed: .atLeast(0)),
        .optional("medicat-references", \.medicatReferences,
                  "MedICaT's inline references (s2orc_references) are pretraining texts too, as M3AE reads them.",
                  stages: [.pretrain], resume: true, effective: { $0.medicatReferences ?? true }),
        // A data set; for the tools without data also a kind of head (vqa, classification, retrieval).
        Setting(name: "task", help: "Downstream task: vqa-rad, slake, vqa-med-2019, melinda or roco-retrieval (debug-step "
                + "without data: a kind of head, vqa, classification or retrieval).",
                stages: downstream, resumeMustMatch: true, hidden: false, form: .value,
                placeholder: DownstreamTask.placeholder,
                assign: { c, text in
                    if let task = DownstreamTask(rawValue: text) { c.task = task; return nil }
                    if let kind = TaskKind(rawValue: text), kind != .none { c.headKind = kind; return nil }
                    return "expected \(DownstreamTask.placeholder)"
                },
                read: { c in c.task?.rawValue ?? c.headKind?.rawValue }, tools: debugStep, aliases: ["dataset"]),
        .optional("data", \.data, "Root of the task's data set.", stages: downstream, tools: debugStep, resume: true,
                  placeholder: "DIR"),
        .optional("tokenizer", \.tokenizer, "Tokenizer directory (vocab.json + merges.txt).", tools: debugStep,
                  placeholder: "DIR"),
        .optional("preset", \.preset, "Model preset: tiny, small, base, or a custom preset's custom:width=…,… as convert --preset custom records it (default: the --weights' preset, else tiny).",
                  tools: bothTools, resume: true, effective: { $0.preset ?? "tiny" }, defaultInHelp: true),
        .optional("image-size", \.imageSize,
                  "Image side in pixels (default: the preset's; 384 for calib and finetune at base).",
                  resume: true, allowed: .within(1, 4096), effective: { $0.effectiveImageSize }, defaultInHelp: true),
        .optional("text-length", \.textLength,
                  "Text length L in tokens (default: the preset's; at base downstream 32 VQA, 128 classification, 40 retrieval).",
                  resume: true, allowed: .within(3, 8192), effective: { $0.effectiveTextLength }, defaultInHelp: true),
        .optional("weights", \.initFrom,
                  "Start from these weights: a run or checkpoint directory, RUN/checkpoints/latest, a .safetensors file "
                  + "or a bundle (the name every command gives its input model).",
                  tools: debugStep, aliases: ["init", "init-from"], placeholder: "WEIGHTS"),
        Setting(name: "init-only", help: "Name prefixes to import from --weights (e.g. vision.,text.).",
                stages: Set(Stage.allCases), resumeMustMatch: false, hidden: false, form: .list, placeholder: "PREFIX,…",
                assign: { c, text in
                    c.initOnly = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                        .filter { !$0.isEmpty }
                    return nil
                },
                read: { $0.initOnly }, tools: debugStep),
        Setting(name: "objectives", help: "Losses that train: mim,mlm,feamim,feamlm (+itm in pretraining).",
                stages: withTeacher, resumeMustMatch: true, hidden: false, form: .list, placeholder: "NAME,…",
                assign: { c, text in
                    let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
                        .filter { !$0.isEmpty }
                    let known = LossWeights.objectives(itm: c.stage == .pretrain)
                    if let bad = names.first(where: { !known.contains($0) }) {
                        return "\(bad) is not a \(c.stage.rawValue) objective (\(known.joined(separator: ", ")))"
                    }
                    if names.isEmpty { return "name at least one objective" }
                    c.objectives = known.filter(names.contains)
                    return nil
                },
                read: { c in c.objectives ?? LossWeights.objectives(itm: c.stage == .pretrain) }),
        .option("out", \.out, "Run directory: config.json, metrics.jsonl, checkpoints/, final.safetensors (debug-step: "
                + "the file it writes).", tools: debugStep, allowed: .nonEmpty, placeholder: "DIR"),
        .option("overwrite", \.overwrite,
                "An --out that holds another run is moved aside to OUT.old-<time> (without it, such an --out is refused)."),
        // Optimisation.
        .option("steps", \.steps, "Optimizer steps (the schedule's length; bench step: the timed steps).", tools: bothTools,
                aliases: ["total-steps"], allowed: .atLeast(1)),
        .option("batch-size", \.batchSize, "Global batch size G (a multiple of the rank count).", tools: debugStep,
                resume: true, allowed: .atLeast(1)),
        .optional("accumulate", \.accumulateSteps,
                  "Micro-batches of --batch-size per step (gradient accumulation): the step's batch is batch-size x accumulate.",
                  resume: true, allowed: .atLeast(1), effective: { $0.accumulate }),
        .optional("lr", \.lr, "Peak learning rate of the base group (default at base: the paper's — pretrain 1e-5; TD-Calib "
                  + "1e-5 VQA-RAD, ROCO, MELINDA, 5e-6 SLAKE, VQA-Med-2019; fine-tuning 5e-6; "
                  + "tiny/small: 5e-4 pretrain, 2e-4 calib, 3e-4 finetune; debug-step: the paper's at every preset).",
                  tools: debugStep, resume: true, allowed: .atLeast(0, strictly: true), effective: { $0.peakLearningRate }, defaultInHelp: true),
        .optional("schedule", \.schedule, "Learning-rate schedule (default: linear to pretrain, cosine downstream; at base "
                  + "the paper's: TD-Calib linear, fine-tuning cosine but linear for VQA-Med-2019).",
                  resume: true, effective: { $0.scheduleShape }, defaultInHelp: true),
        .optional("warmup", \.warmup, "Warm-up: a fraction of --steps below 1, else a number of steps (default 0.1).",
                  resume: true, allowed: .within(0, 1e9), effective: { $0.warmup ?? 0.1 }, defaultInHelp: true),
        .option("lr-fusion", \.lrFusion, "Learning-rate multiplier of fusion.*.", tools: debugStep, resume: true,
                allowed: .atLeast(0, strictly: true)),
        .optional("lr-heads", \.lrHeads, "Learning-rate multiplier of the heads (default 5 pretraining and TD-Calib, 50 "
                  + "fine-tuning; at base fine-tuning 5 for ROCO retrieval and 10 for MELINDA, as the reference code).",
                  tools: debugStep, resume: true, allowed: .atLeast(0, strictly: true), effective: { $0.multipliers.heads }, defaultInHelp: true),
        .optional("weight-decay", \.weightDecay, "AdamW weight decay, not on biases and LayerNorms (default 0.01; at base "
                  + "fine-tuning the paper's per task: 0.1 VQA-RAD, VQA-Med-2019, ROCO; 0.01 SLAKE, MELINDA).",
                  resume: true, allowed: .within(0, 1), effective: { $0.effectiveWeightDecay }, defaultInHelp: true),
        .optional("adam-eps", \.adamEpsilon, "AdamW's epsilon in m/(sqrt(v) + eps) (default 1e-8, the paper's; a larger one "
                  + "bounds how much a gradient near zero can move its weight).", resume: true,
                  allowed: .atLeast(0, strictly: true), effective: { $0.effectiveAdamEpsilon }, defaultInHelp: true),
        .optional("clip-norm", \.clipNorm, "Clip the global gradient norm to this (off unless given).", resume: true,
                  allowed: .atLeast(0, strictly: true)),
        .option("seed", \.seed, "Run seed: initialisation, data order, masks, pairings, dropout.", tools: debugStep,
                resume: true),
        .option("dropout", \.dropout, "Dropout in the text encoder and fusion (0 = off; debug-step records it, runs without).",
                tools: debugStep, resume: true, allowed: .within(0, 1, upperOpen: true)),
        .option("alpha", \.alpha, "MR-Pretrain / TD-Calib mix: (1-alpha)(MIM+MLM) + alpha(FeaMIM+FeaMLM).",
                stages: withTeacher, tools: debugStep, resume: true, allowed: .within(0, 1)),
        .option("ema", \.ema, "EMA decay of the teacher.", stages: withTeacher, tools: debugStep, resume: true,
                allowed: .within(0, 1)),
        .option("beta", \.beta, "GM-Coord beta.", stages: [.finetune], tools: debugStep, resume: true, allowed: .atLeast(0)),
        .option("gm-coord", \.gmCoord, "GM-Coord gradient modulation (on|off).", stages: [.finetune], resume: true),
        .option("gm-noise", \.gmNoise, "GM-Coord noise (on|off).", stages: [.finetune], resume: true),
        .option("gm-contribution", \.gmContribution,
                "How GM-Coord measures each modality's contribution: reference (fc2's column halves on the pooled "
                + "features, as the reference code) or ablation (the whole head with the other modality replaced by its "
                + "global-batch mean, as the paper's Eq. 10 describes).",
                stages: [.finetune], tools: debugStep, resume: true),
        .option("pooling", \.pooling,
                "The task head's input [z_t; z_i]: cls (each stream's pooler on its first token, as the reference code "
                + "and M3AE) or mean (the paper's average of each stream's fusion outputs, the text's non-pad tokens; "
                + "the poolers are then not trained). Recorded in the weights: eval, predict and encode pool the same way.",
                stages: [.finetune], tools: debugStep, resume: true),
        .optional("on-nonfinite", \.onNonFinite,
                  "A step whose loss or gradient is NaN/inf: stop (nothing saved) or skip-step (no update, counted).",
                  effective: { $0.onNonFinite ?? .stop }),
        .option("max-skipped-steps", \.maxSkippedSteps,
                "With --on-nonfinite skip-step: stop (as without it) once more than this many steps in a row were skipped.",
                allowed: .atLeast(0)),
        .option("eval-every", \.evalEvery,
                "Score the validation split every N steps and after the last (0: off); logged as val_* in metrics.jsonl.",
                stages: [.finetune], allowed: .atLeast(0)),
        .optional("keep-best", \.keepBest,
                  "Validation metric that picks best.safetensors (default: overall for VQA, accuracy, i2t_R@1; loss is lower-better).",
                  stages: [.finetune], defaultInHelp: true),
        .option("early-stop", \.earlyStop, "Stop after this many validations without improvement (0: never).",
                stages: [.finetune], allowed: .atLeast(0)),
        // Data choices the releases leave open (README "Data").
        .optional("validation-holdout", \.validationHoldout,
                  "Where a data set has no validation split (VQA-RAD): this fraction of its training questions, seeded "
                  + "and stratified by answer type, is the validation split (never the test set).",
                  stages: downstream, tools: debugStep, resume: true, allowed: .within(0, 0.5),
                  effective: { $0.validationHoldout ?? 0.1 }),
        .optional("label-column", \.labelColumn, "MELINDA's label column: p_meth_label or i_meth_label.",
                  stages: downstream, tools: debugStep, resume: true,
                  allowed: Allowed { MELINDADataset.labelColumns.contains($0) ? nil
                                     : "must be " + MELINDADataset.labelColumns.joined(separator: " or ") },
                  effective: { $0.labelColumn ?? "p_meth_label" }),
        // Data checks.
        .option("strict", \.strict, "Stop at the first bad data record instead of skipping it."),
        .option("check-images", \.checkImages, "Decode every image while reading (damaged files skipped up front)."),
        .optional("max-image-megapixels", \.maxImageMegapixels,
                  "Largest image decoded; a header claiming more is a bad record, refused before allocating.",
                  allowed: .within(0.001, 1000), effective: { Double($0.maxImagePixels) / 1e6 }),
        // Logging and safety nets.
        .option("log-every", \.logEvery, "Log every N steps.", allowed: .atLeast(1)),
        .option("consistency-every", \.consistencyEvery, "Compare replica checksums every N steps.", allowed: .atLeast(1)),
        .option("stall-timeout", \.stallTimeout, "Seconds a collective may take before the job is aborted.",
                allowed: .within(0.001, 1e8)),
        .option("bucket-mb", \.bucketMB, "Gradient bucket size in MB.", tools: benchStep, allowed: .within(0.25, 4096)),
        .option("sync-precision", \.syncPrecision,
                "What the gradient sum sends between ranks: fp32, or bf16 (half the bytes, each addition rounded to "
                + "bf16: for slow links; weights, optimizer and losses stay fp32).",
                tools: benchStep),
        .option("matmul", \.matmul,
                "Matrix products: openblas (the reference), onednn (fp32 at the CPU's full vector width: AVX-512 where "
                + "present), or bf16 (oneDNN, inputs rounded to bfloat16, fp32 accumulation; needs AVX512-BF16 or AMX).",
                tools: bothTools, resume: true),
        .option("profile", \.profile,
                "Time the step's phases (student and teacher forward, losses, backward, sync wait, GM-Coord, AdamW, EMA): "
                + "a table in the run log at the end (bench step: --phases, with kernels and utilisation).",
                tools: benchStep, aliases: ["phases"]),
        .option("recompute", \.recompute,
                "What a step keeps for backward: off (everything), or blocks (only each transformer block's output; "
                + "the block runs again in backward — the same gradients bit for bit, less memory, more time; "
                + "README \"Memory\").", tools: bothTools),
        .optional("dry-run", \.dryRun,
                  "Say what this run needs per rank on RANKS ranks and exit: its peak memory at its local batch "
                  + "(measured from 2 steps of 2 synthetic samples at its shapes, in this one process — run it without "
                  + "mpirun) and the step time here. Reads no data, writes nothing.",
                  allowed: .within(1, 1_000_000), placeholder: "RANKS"),
        .option("shard-optimizer", \.shardOptimizer,
                "ZeRO stage 1: each rank updates 1/R of the parameters and holds only their AdamW moments; the shares "
                + "are gathered after every step (same results; less memory and optimizer time, one more allgather).",
                tools: benchStep),
        // Checkpoints.
        .option("checkpoint-every", \.checkpointEvery, "Save a checkpoint every N steps (0: at the end and on SIGTERM/SIGINT).",
                allowed: .atLeast(0)),
        .option("keep-checkpoints", \.keepCheckpoints, "Complete checkpoints to keep.", allowed: .atLeast(1)),
        .option("zstd-level", \.zstdLevel, "zstd level of checkpoint shards.", allowed: .within(1, 19)),
        .option("async-checkpoint", \.asyncCheckpoint, "Write periodic checkpoints in the background from a staged copy."),
        .option("allow-schedule-change", \.allowScheduleChange,
                "Accept resuming with another --steps (the learning-rate schedule changes; both rates are logged)."),
        .optional("resume", \.resume, "Resume from the newest complete checkpoint of --out (`--resume` alone), from this "
                  + "checkpoint directory, or `--resume auto`: resume when --out holds a checkpoint, else start."),
        // The tools' own (no training command takes them).
        .option("at-step", \.atStep, "debug-step: the step s whose learning rate and batch are used (0 = first).",
                stages: [], tools: debugStep, allowed: .atLeast(0)),
        .option("answers", \.answers, "debug-step without data: outputs of a VQA or classification head.", stages: [],
                tools: debugStep, allowed: .atLeast(1)),
        .optional("vocabulary-size", \.vocabularySize,
                  "debug-step without data: vocabulary size (default: the preset's, else 1000).", stages: [],
                  tools: debugStep, allowed: .atLeast(2), defaultInHelp: true),
        .option("local-batch", \.localBatch, "bench step: samples per rank per step.", stages: [], tools: benchStep,
                allowed: .atLeast(1)),
        // Testing aids (hidden).
        .optional("debug-stall-rank", \.debugStallRank, "This rank hangs at --debug-stall-step.", hidden: true),
        .option("debug-stall-step", \.debugStallStep, "The step it hangs in.", hidden: true),
        .optional("debug-crash-checkpoint-rank", \.debugCrashCheckpointRank, "Rank that dies while writing a checkpoint.",
                  hidden: true),
        .option("debug-crash-checkpoint-step", \.debugCrashCheckpointStep, "The checkpoint (after N steps) it dies in.",
                hidden: true),
        .optional("debug-stop-after", \.debugStopAfter, "Act as if SIGTERM came after N steps.", hidden: true),
        .optional("debug-diverge-rank", \.debugDivergeRank, "This rank's weights drift after step 1.", hidden: true),
    ]

    /// The setting called `name` or spelled so by one of its aliases.
    public static func named(_ name: String) -> Setting? { all.first { $0.name == name || $0.aliases.contains(name) } }

    public static func of(_ stage: Stage) -> [Setting] { all.filter { $0.stages.contains(stage) } }

    /// The settings a scope takes: a stage's, or a tool's for the stage it runs.
    public static func of(_ scope: SettingsScope, stage: Stage) -> [Setting] { all.filter { takes($0, scope, stage) } }

    static func takes(_ setting: Setting, _ scope: SettingsScope, _ stage: Stage) -> Bool {
        switch scope {
        case .stage(let s): return setting.stages.contains(s)
        case .tool(let tool):
            return setting.tools.contains(tool) && (setting.stages.isEmpty || setting.stages.contains(stage))
        }
    }

    /// `--help` text of a stage: every visible setting with its default.
    public static func help(_ stage: Stage) -> String {
        var defaults = RunConfiguration()
        defaults.stage = stage
        return help(of(stage), defaults: defaults)
    }

    /// `--help` text of a tool: every setting it takes in any stage, with its defaults.
    public static func help(_ tool: SettingsScope.Tool, defaults: RunConfiguration) -> String {
        help(all.filter { $0.tools.contains(tool) }, defaults: defaults)
    }

    /// One line per setting: its flag, help and default value — unless the default depends on
    /// other settings, in which case the help text says how.
    static func help(_ settings: [Setting], defaults: RunConfiguration) -> String {
        var lines = ["Settings (flags, or the same names as keys of a --config YAML/JSON file; flags win):"]
        for s in settings where !s.hidden {
            let form = s.form == .flag ? " [on|off]" : " <\(s.placeholder)>"
            let value = s.defaultIsComputed ? nil : s.read(defaults).map(describe)
            // A no-break space keeps "(default: 1000)" on one line when --help wraps the text.
            let current = value.map { $0.isEmpty ? "" : " (default:\u{00A0}\($0))" } ?? ""
            let aliases = s.aliases.isEmpty ? "" : " (also --" + s.aliases.joined(separator: ", --") + ")"
            lines.append("  --\(s.name)\(form)\(aliases)")
            lines.append("        \(s.help)\(current)")
        }
        lines.append("  --config <FILE>")
        lines.append("        YAML or JSON file of settings (sections may group them), applied before the flags.")
        return lines.joined(separator: "\n")
    }

    static func describe(_ value: Any) -> String {
        if let list = value as? [String] { return list.isEmpty ? "none" : list.joined(separator: ",") }
        if let b = value as? Bool { return b ? "on" : "off" }
        return "\(value)"
    }

    /// Every effective value of `c` for its stage, keyed by setting name (what config.json holds).
    /// Paths are written absolute, so `--config RUN/config.json` works from any folder.
    public static func effectiveValues(_ c: RunConfiguration) -> [String: Any] {
        var out: [String: Any] = ["stage": c.stage.rawValue]
        for s in of(c.stage) where !s.hidden {
            var value = s.read(c)
            if ["DIR", "WEIGHTS"].contains(s.placeholder), let path = value as? String, !path.isEmpty {
                value = URL(fileURLWithPath: path).standardizedFileURL.path
            }
            out[s.name] = value ?? NSNull()
        }
        return out
    }
}
