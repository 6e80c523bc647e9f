import ArgumentParser
import Foundation
import MPIBridge
import UMDData
import UMDDistributed
import UMDModel

extension Split: ExpressibleByArgument {}

enum OnOff: String, ExpressibleByArgument { case on, off }

/// Options every training stage shares; each overrides the config file, which overrides the defaults.
struct RunFlags: ParsableArguments {
    @Option(help: "Model preset: tiny, small or base.") var preset: String?
    @Option(help: "Tokenizer directory (vocab.json + merges.txt).") var tokenizer: String?
    @Option(help: "Run directory for config.json, metrics.jsonl and the weights.") var out: String?
    @Option(help: "Optimizer steps.") var steps: Int?
    @Option(help: "Global batch size G (a multiple of the rank count).") var batchSize: Int?
    @Option(help: "Peak learning rate of the base group.") var lr: Float?
    @Option(help: "Run seed.") var seed: UInt64?
    @Option(help: "Configuration file (JSON, or flat key: value YAML) applied before these flags.") var config: String?
    @Option(name: .customLong("init"), help: "Start from this safetensors file (umd's export: student, teacher.*).")
    var initFrom: String?
    @Option(help: "Comma-separated name prefixes to import from --init (e.g. vision.,text.).") var initOnly: String?
    @Option(help: "Dropout probability in the text encoder and fusion.") var dropout: Float?
    @Option(help: "MR-Pretrain / TD-Calib loss mix alpha.") var alpha: Float?
    @Option(help: "Log every N steps.") var logEvery: Int?
    @Option(help: "Compare replica checksums every N steps.") var consistencyEvery: Int?
    @Option(help: "Seconds a collective may take before the job is aborted.") var stallTimeout: Double?
    @Option(help: "Gradient bucket size in MB.") var bucketMb: Double?
    @Option(help: "Global gradient-norm clipping (off unless given).") var clipNorm: Float?
    @Flag(help: "Stop at the first bad data record instead of skipping it.") var strict = false
    @Flag(help: "Decode every image while reading the data (damaged files are skipped before training).")
    var checkImages = false
    @Option(help: "Save a checkpoint every N steps (0: at the end and on SIGTERM/SIGINT only).") var checkpointEvery: Int?
    @Option(help: "Complete checkpoints to keep.") var keepCheckpoints: Int?
    @Option(help: "zstd level of checkpoint shards.") var zstdLevel: Int?
    @Flag(help: "Write periodic checkpoints in the background from a staged copy of the state.") var asyncCheckpoint = false
    @Option(help: "Resume from the newest complete checkpoint of --out (`--resume` alone) or from this checkpoint directory.")
    var resume: String?
    @Option(help: ArgumentHelp("Testing aid: this rank hangs at step 1.", visibility: .hidden)) var debugStallRank: Int?
    @Option(help: ArgumentHelp("Testing aid: rank that dies while writing a checkpoint.", visibility: .hidden))
    var debugCrashCheckpointRank: Int?
    @Option(help: ArgumentHelp("Testing aid: the checkpoint (after this many steps) it dies in.", visibility: .hidden))
    var debugCrashCheckpointStep: Int?
    @Option(help: ArgumentHelp("Testing aid: act as if SIGTERM came after this many steps.", visibility: .hidden))
    var debugStopAfter: Int?
    @Option(help: ArgumentHelp("Testing aid: this rank's weights drift after step 1.", visibility: .hidden))
    var debugDivergeRank: Int?

    func apply(to base: RunConfiguration) throws -> RunConfiguration {
        var c = base
        if let config { c = try c.applying(file: config) }
        if let preset { c.preset = preset }
        if let tokenizer { c.tokenizer = tokenizer }
        if let out { c.out = out }
        if let steps { c.steps = steps }
        if let batchSize { c.batchSize = batchSize }
        if let lr { c.lr = lr }
        if let seed { c.seed = seed }
        if let initFrom { c.initFrom = initFrom }
        if let initOnly { c.initOnly = initOnly.split(separator: ",").map(String.init) }
        if let dropout { c.dropout = dropout }
        if let alpha { c.alpha = alpha }
        if let logEvery { c.logEvery = logEvery }
        if let consistencyEvery { c.consistencyEvery = consistencyEvery }
        if let stallTimeout { c.stallTimeout = stallTimeout }
        if let bucketMb { c.bucketMB = bucketMb }
        if let clipNorm { c.clipNorm = clipNorm }
        if strict { c.strict = true }
        if checkImages { c.checkImages = true }
        if let debugStallRank { c.debugStallRank = debugStallRank }
        if let checkpointEvery { c.checkpointEvery = checkpointEvery }
        if let keepCheckpoints { c.keepCheckpoints = keepCheckpoints }
        if let zstdLevel { c.zstdLevel = zstdLevel }
        if asyncCheckpoint { c.asyncCheckpoint = true }
        if let resume { c.resume = resume }
        if let debugCrashCheckpointRank { c.debugCrashCheckpointRank = debugCrashCheckpointRank }
        if let debugCrashCheckpointStep { c.debugCrashCheckpointStep = debugCrashCheckpointStep }
        if let debugStopAfter { c.debugStopAfter = debugStopAfter }
        if let debugDivergeRank { c.debugDivergeRank = debugDivergeRank }
        return c
    }
}

/// Runs a stage on every rank; errors end the whole job with the rank's message.
func runStage(_ config: RunConfiguration) throws {
    try runOnWorld { world in
        do {
            _ = try Trainer.run(config, world: world)
        } catch let stopped as StopSignal.Stopped {
            // Every rank got here together after the checkpoint: a clean, non-zero exit.
            if world.rank == 0 { writeToStandardError("umd-mpirun: \(stopped)\n") }
            throw ExitCode(143)
        }
    }
}

struct PretrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pretrain", abstract: "MR-Pretrain on ROCO (and MedICaT): MIM, MLM, FeaMIM, FeaMLM, ITM with the EMA teacher.")
    @Option(help: "ROCO root.") var roco: String?
    @Option(help: "MedICaT root (optional).") var medicat: String?
    @Option(help: "MedICaT texts held out for validation and for test, each.") var medicatHoldout: Int?
    @OptionGroup var flags: RunFlags

    func run() throws {
        var base = RunConfiguration()
        base.stage = .pretrain
        var c = try flags.apply(to: base)
        if let roco { c.roco = roco }
        if let medicat { c.medicat = medicat }
        if let medicatHoldout { c.medicatHoldout = medicatHoldout }
        c.stage = .pretrain
        try runStage(c)
    }
}

struct DownstreamFlags: ParsableArguments {
    @Option(help: "vqa-rad, slake, vqa-med-2019, melinda or roco-retrieval.") var task: DownstreamTask?
    @Option(help: "Root of the task's data set.") var data: String?

    /// The stage's configuration: defaults < config file < the shared flags < these.
    func configuration(_ stage: Stage, _ flags: RunFlags) throws -> RunConfiguration {
        var base = RunConfiguration()
        base.stage = stage
        var c = try flags.apply(to: base)
        c.stage = stage
        if let task { c.task = task }
        if let data { c.data = data }
        return c
    }
}

struct CalibCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calib", abstract: "TD-Calib on a downstream set: the four reconstruction losses, teacher continued.")
    @OptionGroup var downstream: DownstreamFlags
    @OptionGroup var flags: RunFlags

    func run() throws {
        try runStage(try downstream.configuration(.calib, flags))
    }
}

struct FinetuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune", abstract: "Fine-tune with gradient-guided modality coordination (GM-Coord).")
    @OptionGroup var downstream: DownstreamFlags
    @Option(help: "GM-Coord modulation on or off.") var gmCoord: OnOff?
    @Option(help: "GM-Coord noise on or off.") var gmNoise: OnOff?
    @OptionGroup var flags: RunFlags

    func run() throws {
        var c = try downstream.configuration(.finetune, flags)
        if let gmCoord { c.gmCoord = gmCoord == .on }
        if let gmNoise { c.gmNoise = gmNoise == .on }
        try runStage(c)
    }
}

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Evaluate fine-tuned weights; every rank scores part of the split.")
    @OptionGroup var downstream: DownstreamFlags
    @Option(help: "Weights to evaluate (a finetune run's final.safetensors).") var checkpoint: String
    @Option(help: "Tokenizer directory.") var tokenizer: String
    @Option(help: "Model preset.") var preset = "tiny"
    @Option(help: "Split: train, validation or test.") var split: Split = .test
    @Option(help: "Directory for eval-<task>-<split>.json (default: the checkpoint's).") var out: String?
    @Option(help: "At most this many retrieval pairs.") var retrievalCap = 2000

    func run() throws {
        guard let task = downstream.task, let data = downstream.data else { throw ValidationError("eval needs --task and --data") }
        guard let p = ModelPreset.named(preset) else { throw ValidationError("unknown preset \(preset)") }
        var o = Evaluator.Options(task: task, data: URL(fileURLWithPath: data), checkpoint: URL(fileURLWithPath: checkpoint),
                                  tokenizer: URL(fileURLWithPath: tokenizer), preset: p)
        o.split = split
        o.retrievalCap = retrievalCap
        o.out = out.map { URL(fileURLWithPath: $0) }
        try runOnWorld { world in _ = try Evaluator.run(o, world: world) }
    }
}
