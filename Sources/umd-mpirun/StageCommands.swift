import ArgumentParser
import Foundation
import UMDCore
import Collective
import UMDData
import UMDDistributed
import UMDModel
import UMDTools

extension Split: ExpressibleByArgument {}

/// Runs a stage on every rank; errors end the whole job with the rank's message.
func runStage(_ config: RunConfiguration) throws {
    if let ranks = config.dryRun {
        try runOnWorld { world in
            guard world.size == 1 else {
                throw ValidationError("--dry-run measures in one process; run it without mpirun (RANKS says how many the job will have)")
            }
            for line in DryRun.describe(try DryRun.estimate(config, ranks: ranks)) { print(line) }
        }
        return
    }
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

/// The three training stages. Their settings come from `Settings.all` (UMDDistributed):
/// the flags, the config-file keys and `--help` are generated from that one table.
protocol StageCommand: ParsableCommand {
    static var stage: Stage { get }
    var settings: [String] { get }
}

extension StageCommand {
    static func stageConfiguration(name: String, abstract: String) -> CommandConfiguration {
        CommandConfiguration(commandName: name, abstract: abstract, discussion: Settings.help(stage))
    }

    func run() throws {
        let config: RunConfiguration
        do { config = try Settings.configuration(stage: Self.stage, arguments: settings) } catch {
            writeToStandardError("umd-mpirun \(Self.stage.rawValue): error: \(error)\n")
            throw ExitCode.validationFailure
        }
        try runStage(config)
    }
}

struct PretrainCommand: StageCommand {
    static let stage = Stage.pretrain
    static let configuration = stageConfiguration(
        name: "pretrain", abstract: "MR-Pretrain on ROCO (and MedICaT): MIM, MLM, FeaMIM, FeaMLM, ITM with the EMA teacher.")
    @Argument(parsing: .allUnrecognized, help: "Settings: --name VALUE (listed above).") var settings: [String] = []
}

struct CalibCommand: StageCommand {
    static let stage = Stage.calib
    static let configuration = stageConfiguration(
        name: "calib", abstract: "TD-Calib on a downstream set: the four reconstruction losses, teacher continued.")
    @Argument(parsing: .allUnrecognized, help: "Settings: --name VALUE (listed above).") var settings: [String] = []
}

struct FinetuneCommand: StageCommand {
    static let stage = Stage.finetune
    static let configuration = stageConfiguration(
        name: "finetune", abstract: "Fine-tune with gradient-guided modality coordination (GM-Coord).")
    @Argument(parsing: .allUnrecognized, help: "Settings: --name VALUE (listed above).") var settings: [String] = []
}

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate fine-tuned weights; every rank scores part of the split.",
        discussion: "The task, classes, preset and sizes come from the weights; --task and the size flags only override "
            + "(and must agree). --weights takes a .safetensors file, a run directory (its final.safetensors), a "
            + "checkpoint directory or RUN/checkpoints/latest; eval says which weights it scores.")
    @Option(help: "vqa-rad, slake, vqa-med-2019, melinda or roco-retrieval (default: the weights' task).")
    var task: DownstreamTask?
    @Option(help: "Root of the task's data set (default: the --config run's).") var data: String?
    @Option(name: [.customLong("weights"), .customLong("checkpoint")],
            help: "Weights to evaluate (a fine-tuning run's final.safetensors, best.safetensors, the run or a checkpoint; default: the --config run's).")
    var weights: String?
    @Option(help: "A fine-tuning run's config.json (or a config file): data set, task, tokenizer, label column and hold-out as that run read them, and its weights; flags win.")
    var config: String?
    @Option(help: "Tokenizer directory (default: the one beside the weights: a bundle's, or RUN/tokenizer).")
    var tokenizer: String?
    @Option(help: "Model preset (default: the weights' own).") var preset: String?
    @Option(help: "Image size (default: the weights' own).") var imageSize: Int?
    @Option(help: "Text length (default: the weights' own).") var textLength: Int?
    @Option(help: "Split: train, validation or test.") var split: Split = .test
    @Option(help: "Directory for eval-<weights>-<task>-<split>.json (default: the weights' run).") var out: String?
    @Option(help: "Also write every sample's prediction to this JSON-lines file (id, text, answer, probability, truth, correct).")
    var predictions: String?
    @Option(help: "Also write a self-contained HTML report (metrics vs baselines, confusion matrix, accuracy by answer type or class, the most confident mistakes with their images).")
    var report: String?
    @Option(help: "At most this many retrieval pairs.") var retrievalCap = 2000
    @Option(help: "As the run trained: the validation fraction held out where the data set has none (default: the --config run's, else 0.1).")
    var validationHoldout: Double?
    @Option(help: "As the run trained: MELINDA's label column, p_meth_label or i_meth_label (default: the --config run's, else p_meth_label).")
    var labelColumn: String?

    func run() throws {
        var p: ModelPreset? = nil
        if let preset {
            p = try presetArgument(preset)
        }
        // A run's config.json gives what the flags leave out.
        var run: RunConfiguration? = nil
        if let config {
            do { run = try Settings.configuration(stage: .finetune, arguments: ["--config", config]) } catch {
                throw ValidationError("--config \(config): \(error)")
            }
        }
        guard let weights = weights ?? run?.out else { throw ValidationError("eval needs --weights (or --config of a run)") }
        guard let data = data ?? run?.data else { throw ValidationError("eval needs --data (or --config of a run)") }
        let tokenizer = try ModelBundle.tokenizer(for: weights, given: tokenizer ?? run?.tokenizer)
        let task = task ?? run?.task
        let validationHoldout = self.validationHoldout ?? run?.validationHoldout ?? 0.1
        let labelColumn = self.labelColumn ?? run?.labelColumn ?? "p_meth_label"
        var o = Evaluator.Options(task: task, data: URL(fileURLWithPath: data), checkpoint: URL(fileURLWithPath: weights),
                                  tokenizer: tokenizer, preset: p)
        o.imageSize = imageSize
        o.textLength = textLength
        o.split = split
        o.retrievalCap = retrievalCap
        o.validationHoldout = validationHoldout
        o.labelColumn = labelColumn
        o.out = out.map { URL(fileURLWithPath: $0) }
        o.predictions = predictions.map { URL(fileURLWithPath: $0) }
        let report = self.report.map { URL(fileURLWithPath: $0) }
        try runOnWorld { world in
            let result = try Evaluator.evaluate(o, world: world, keepPredictions: report != nil)
            if let report, world.rank == 0 {
                try EvaluationReport.write(result, to: report)
                print("wrote the report \(report.path)")
            }
        }
    }
}

/// `umd-mpirun predict`: the model's answers to images with questions (or captions), or to
/// a whole split; everything about the model comes from its weights.
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "A fine-tuned model's answers: top answers for an image and a question, or every sample of a split.",
        discussion: """
            Examples:
              umd-mpirun predict --weights runs/ft --tokenizer tok --image scan.png --question "is there a fracture?"
              umd-mpirun predict --weights runs/ft --tokenizer tok --data data/vqa-rad --split test --out preds.jsonl
            The task, answers or classes, preset, image size and text length come from the weights.
            """)
    @Option(name: [.customLong("weights"), .customLong("checkpoint")],
            help: "Fine-tuned weights: a .safetensors file, a run directory, a checkpoint directory.") var weights: String
    @Option(help: "Tokenizer directory (default: the one beside the weights: a bundle's, or RUN/tokenizer).")
    var tokenizer: String?
    @Option(help: "An image (repeat with --question/--text for several pairs).") var image: [String] = []
    @Option(help: "A question about the image (VQA).") var question: [String] = []
    @Option(help: "A caption (classification, retrieval).") var text: [String] = []
    @Option(help: "Check the weights' task (default: theirs).") var task: DownstreamTask?
    @Option(help: "A data set: predict every sample of --split.") var data: String?
    @Option(help: "Split: train, validation or test.") var split: Split = .test
    @Option(help: "As the run trained: the validation fraction held out where the data set has none.")
    var validationHoldout = 0.1
    @Option(help: "As the run trained: MELINDA's label column.") var labelColumn = "p_meth_label"
    @Option(help: "Also write the predictions as JSON lines (eval --predictions' format).") var out: String?

    func run() throws {
        var o = Predictor.Options(weights: weights, tokenizer: try ModelBundle.tokenizer(for: weights, given: tokenizer))
        o.task = task
        o.data = data.map { URL(fileURLWithPath: $0) }
        o.split = split
        o.validationHoldout = validationHoldout
        o.labelColumn = labelColumn
        o.images = image.map { URL(fileURLWithPath: $0) }
        o.texts = question + text
        o.out = out.map { URL(fileURLWithPath: $0) }
        try runOnWorld { world in _ = try Predictor.run(o, world: world) }
    }
}
