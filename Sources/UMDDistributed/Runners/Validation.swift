import Collective
import Foundation
import UMDCore
import UMDData
import UMDModel

/// Validation during fine-tuning (`--eval-every N`): every N steps (and after the last) the
/// live weights are scored on the task's validation split the way `eval` scores a file
/// (every rank a share), the numbers go to metrics.jsonl as `val_*`, the best weights by
/// `--keep-best METRIC` are written to `best.safetensors`, and `--early-stop P` ends the run
/// after P validations without improvement.
final class Validation {
    let scorer: Scorer
    let every: Int
    let metric: String
    let patience: Int
    let tokenizerHash: String
    private(set) var best: (score: Double, step: Int)? = nil
    private var sinceBest = 0
    /// Early stopping ended the run.
    private(set) var stoppedEarly = false

    /// What a checkpoint keeps of validation (rank 0's best: it is the one that judges).
    var state: ValidationState {
        ValidationState(bestScore: best?.score, bestStep: best?.step, sinceBest: sinceBest, stoppedEarly: stoppedEarly)
    }

    /// Continues from a checkpoint's validation state: a resumed run's first validation must
    /// beat the best before the interruption to replace best.safetensors, and the early-stop
    /// patience counts on.
    func restore(_ saved: ValidationState) {
        if let score = saved.bestScore, let step = saved.bestStep { best = (score, step) }
        sinceBest = saved.sinceBest
        stoppedEarly = saved.stoppedEarly
    }

    /// The run's reader options; images are decoded as scored (no up-front decode pass).
    static func validationOptions(_ config: RunConfiguration) -> ReaderOptions {
        var options = config.readerOptions
        options.decodeImages = false
        return options
    }

    /// nil when the run does not validate.
    init?(_ config: RunConfiguration, data: TrainingData) throws {
        guard config.stage == .finetune, config.evalEvery > 0, let task = config.task else { return nil }
        let answers = task.kind == .vqa ? AnswerVocabulary(answers: data.table.classes) : nil
        let samples: SampleTable
        do {
            samples = try SampleTable.task(task, root: URL(fileURLWithPath: config.data!), split: .validation,
                                           answers: answers, retrievalCap: 2000,
                                           options: Self.validationOptions(config))
        } catch {
            throw RunError("--eval-every needs the task's validation split: \(error)")
        }
        guard samples.count > 0 else { throw RunError("--eval-every: the validation split of \(task.rawValue) is empty") }
        scorer = Scorer(task: task, samples: samples, trainLabels: data.table.labels, classes: data.table.classes,
                        tokenizer: data.tokenizer, imageSize: config.imageSize!, textLength: config.textLength!)
        every = config.evalEvery
        metric = config.keepBest ?? Self.headline(task.kind)
        patience = config.earlyStop
        tokenizerHash = data.tokenizerHash
    }

    /// The metrics `--keep-best` may name: the scores validation computes, without the
    /// baselines and counts (majority_*, chance_*, samples, pairs).
    static func selectableMetrics(_ kind: TaskKind) -> [String] {
        switch kind {
        case .vqa: return ["overall", "closed", "open", "loss"]
        case .classification: return ["accuracy", "macro_f1", "auc", "sensitivity", "specificity", "loss"]
        case .retrieval: return ["i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10"]
        case .none: return ["loss"]
        }
    }

    /// The metric a task is judged by.
    static func headline(_ kind: TaskKind) -> String {
        switch kind {
        case .vqa: return "overall"
        case .classification: return "accuracy"
        case .retrieval: return "i2t_R@1"
        case .none: return "loss"
        }
    }

    /// Validates when due after `steps` steps; returns whether early stopping ends the run.
    func after(steps: Int, model: StageModel, config: RunConfiguration, world: Communicator, watchdog: StallWatchdog,
               log: RunLog) throws -> Bool {
        guard steps % every == 0 || steps == config.steps else { return false }
        return try run(afterSteps: steps, model: model, config: config, world: world, watchdog: watchdog, log: log)
    }

    /// Scores the weights after `steps` steps; returns whether early stopping ends the run.
    /// Rank 0 decides and tells every rank.
    func run(afterSteps steps: Int, model: StageModel, config: RunConfiguration, world: Communicator,
             watchdog: StallWatchdog, log: RunLog) throws -> Bool {
        let metrics = try watchdog.guarding("validation after step \(steps)") {
            try scorer.score(params: model.params, student: model.student, world: world)
        }
        var decision = [0.0, 0.0]                 // [improved, stop]
        if world.rank == 0 {
            guard let score = metrics[metric] else {
                throw RunError("--keep-best \(metric): validation gives " + metrics.keys.sorted().joined(separator: ", "))
            }
            let lowerIsBetter = metric == "loss"
            let improved = best.map { lowerIsBetter ? score < $0.score : score > $0.score } ?? true
            decision[0] = improved ? 1 : 0
            log.metrics(Dictionary(uniqueKeysWithValues: metrics.map { ("val_" + $0.key, $0.value) })
                            .merging(["step": Double(steps)]) { a, _ in a }, stage: "validation")
            log.info(String(format: "validation after step %d: %@ %.4f", steps, metric, score)
                     + (improved ? " (best so far)" : best.map { String(format: " (best %.4f at step %d)", $0.score, $0.step) } ?? ""))
            if improved {
                best = (score, steps)
                let preset = try config.presetValue
                try ModelIO.export(student: model.student, metadata: WeightsDescription.metadata(
                    stage: "finetune", preset: preset.name, vocabularySize: scorer.tokenizer.vocabularySize,
                    imageSize: scorer.imageSize, textLength: scorer.textLength, task: scorer.task.rawValue,
                    classes: scorer.classes, tokenizerHash: tokenizerHash, pooling: config.pooling,
                    extra: ["best_step": String(steps), "best_metric": metric, "best_score": String(score)]),
                    to: URL(fileURLWithPath: config.out).appendingPathComponent("best.safetensors"))
            }
        }
        try world.broadcast(&decision, root: 0)
        sinceBest = decision[0] == 1 ? 0 : sinceBest + 1      // `best` itself is kept on rank 0, which judges
        if patience > 0 && sinceBest >= patience {
            log.info("early stop: \(patience) validation(s) without a better \(metric)")
            stoppedEarly = true
            return true
        }
        return false
    }
}
