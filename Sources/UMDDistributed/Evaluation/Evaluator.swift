import Collective
import Foundation
import UMDCore
import UMDData
import UMDModel

/// `umd-mpirun eval`: every rank scores its contiguous share of the split, rank 0 gathers
/// the scores, computes MODEL_SPEC.md section 11's metrics next to the majority baseline,
/// prints them and writes `eval-<weights>-<task>-<split>.json` beside the weights.
public enum Evaluator {
    /// A flag's value and the file's must agree; either alone is taken.
    static func agree(_ name: String, _ flag: ModelPreset?, _ file: ModelPreset?, _ path: String) throws -> ModelPreset? {
        if let flag, let file, flag != file {
            throw RunError("--\(name) \(flag.name) contradicts \(path), which holds a \(file.name) model; drop --\(name)")
        }
        return flag ?? file
    }

    public struct Options: Sendable {
        /// nil: the task the weights were fine-tuned for (their metadata); given, it must agree.
        public var task: DownstreamTask?
        public var data: URL
        public var checkpoint: URL
        public var tokenizer: URL
        /// nil: the weights' own (their metadata); given, it must agree with them.
        public var preset: ModelPreset?
        public var imageSize: Int? = nil
        public var textLength: Int? = nil
        public var split: Split = .test
        public var batchSize = 16
        public var retrievalCap = 2000
        /// As the training run read the data set (`--validation-holdout`, `--label-column`).
        public var validationHoldout = 0.1
        public var labelColumn = "p_meth_label"
        public var out: URL? = nil
        /// `--predictions FILE.jsonl`: one line per sample (what the model answered, the truth,
        /// its probability, right or wrong).
        public var predictions: URL? = nil
        public init(task: DownstreamTask?, data: URL, checkpoint: URL, tokenizer: URL, preset: ModelPreset?) {
            self.task = task; self.data = data; self.checkpoint = checkpoint; self.tokenizer = tokenizer; self.preset = preset
        }
    }

    /// What an evaluation gave rank 0 (other ranks: empty metrics and predictions).
    public struct Result {
        public var task: DownstreamTask
        public var split: Split
        /// Which weights were scored (`TrainedModel.describe`).
        public var model: String
        public var classes: [String]
        public var scored: Scorer.Scored
        public var metrics: [String: Double] { scored.metrics }
    }

    /// Returns the metrics (rank 0; other ranks return an empty dictionary).
    @discardableResult
    public static func run(_ o: Options, world: Communicator) throws -> [String: Double] {
        try evaluate(o, world: world).metrics
    }

    /// Scores the split; rank 0 prints the metrics and writes the result file (and the
    /// predictions when asked). `keepPredictions` also keeps every sample's prediction
    /// in the result (a report needs them).
    public static func evaluate(_ o: Options, world: Communicator, keepPredictions: Bool = false) throws -> Result {
        let rank = world.rank
        let model = try TrainedModel.load(weights: o.checkpoint.path, tokenizer: o.tokenizer, task: o.task, preset: o.preset,
                                          imageSize: o.imageSize, textLength: o.textLength)
        let task = model.task
        let scorer = try model.scorer(data: o.data, split: o.split, validationHoldout: o.validationHoldout,
                                      labelColumn: o.labelColumn, retrievalCap: o.retrievalCap, batchSize: o.batchSize)
        if rank == 0 {
            print("eval: \(model.describe)")
        }
        let scored = try scorer.score(params: model.params, student: model.student, world: world,
                                      keepPredictions: o.predictions != nil || keepPredictions)
        let metrics = scored.metrics
        if rank == 0 {
            // The headline first (overall, accuracy, R@1 …), then the rest, baselines last.
            let headline = ["overall", "accuracy", "macro_f1", "auc", "sensitivity", "specificity", "i2t_R@1", "t2i_R@1"]
            func rank(_ key: String) -> Int {
                headline.firstIndex(of: key) ?? (key.hasPrefix("majority") || key.hasPrefix("chance") ? 200 : 100)
            }
            let text = metrics.sorted { (rank($0.key), $0.key) < (rank($1.key), $1.key) }.map { "\($0.key) \(String(format: $0.value < 2 ? "%.4f" : "%.0f", $0.value))" }
            // Printed before the file is written: a score is never lost to an unwritable folder.
            print("eval \(task.rawValue) \(o.split.rawValue): " + text.joined(separator: ", "))
            fflush(nil)
            let out = o.out ?? model.home
            // Named by the weights too, so evaluating several files in one folder keeps every result.
            let url = out.appendingPathComponent("eval-\(model.weightsName)-\(task.rawValue)-\(o.split.rawValue).json")
            var document: [String: Any] = metrics
            if let confusion = scored.confusion {
                document["confusion"] = ["classes": model.classes, "rows_are": "truth", "columns_are": "prediction",
                                         "counts": confusion] as [String: Any]
            }
            try write(JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys]), to: url,
                      what: "the scores are printed above")
            print("wrote \(url.path)")
            if let predictions = o.predictions {
                try write(Prediction.jsonLines(scored.predictions), to: predictions, what: "the scores are printed above")
                print("wrote \(scored.predictions.count) predictions to \(predictions.path)")
            }
        }
        return Result(task: task, split: o.split, model: model.describe, classes: model.classes, scored: scored)
    }

    /// Writes an output file the user named (eval's JSON, predictions, a report): atomically,
    /// creating its folder; a failure names the file and `what` is not lost.
    public static func write(_ data: Data, to url: URL, what: String) throws {
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try AtomicFileWriter.write(data, to: url)
        } catch {
            throw RunError("cannot write \(url.path) (\(FileError.describe(error, at: url))); \(what). "
                           + "Pass --out DIR (or another file name) to write it elsewhere")
        }
    }
}

/// Fine-tuned weights loaded to be run (eval, predict): the model, and what the weights say
/// about themselves — task, classes, preset, image size, text length, tokenizer — each of
/// which a flag may override only to agree.
public struct TrainedModel {
    public let params: UMDParameters
    public let student: ParameterStore
    public let task: DownstreamTask
    /// Answers (VQA) or class names (classification), in the classifier's row order; empty for retrieval.
    public let classes: [String]
    public let preset: ModelPreset
    public let imageSize: Int, textLength: Int
    public let tokenizer: ByteLevelBPE
    /// The run the weights belong to (the file's folder, or the checkpoint's run).
    public let home: URL
    /// `final`, `best`, `step-00000040`, … — which weights are scored.
    public let weightsName: String
    let path: String
    let report: ModelIO.ImportReport

    public var describe: String {
        "\(path) (\(weightsName)): \(task.rawValue), preset \(preset.name), \(imageSize) px, L = \(textLength), "
            + "\(report.loaded.count) tensors" + (report.resizeNotes.isEmpty ? "" : ", resized " + report.resizeNotes.joined(separator: ", "))
    }

    public static func load(weights path: String, tokenizer directory: URL, task given: DownstreamTask?, preset flag: ModelPreset?,
                            imageSize: Int?, textLength: Int?) throws -> TrainedModel {
        let tokenizer = try ByteLevelBPE(directory: directory)
        let (file, resolved) = try WeightsPath.load(path, includeTeacher: false)
        // The run the weights belong to (the file's folder, or the checkpoint's run) and their name.
        let (home, name): (URL, String)
        switch resolved {
        case .file(let url): (home, name) = (url.deletingLastPathComponent(), url.deletingPathExtension().lastPathComponent)
        case .checkpoint(let dir): (home, name) = (dir.deletingLastPathComponent().deletingLastPathComponent(), dir.lastPathComponent)
        }
        let described = try WeightsDescription(file: file, path: path)
        try described.requireTokenizer(directory, weights: path)
        let preset = try Evaluator.agree("preset", flag, described.preset, path) ?? .tiny
        let saved = described.task.flatMap(DownstreamTask.init(rawValue:))
        if let saved, let given, saved != given {
            throw RunError("\(path) was fine-tuned for \(saved.rawValue), not for \(given.rawValue): its answers or classes "
                           + "belong to \(saved.rawValue); drop --task or pass --task \(saved.rawValue)")
        }
        guard let task = given ?? saved else {
            throw RunError("\(path) does not name the task it was fine-tuned for (weights from before that was recorded); "
                           + "pass --task")
        }
        let H = imageSize ?? described.imageSize ?? StageDefaults.imageSize(stage: .finetune, preset: preset)
        let L = textLength ?? described.textLength ?? StageDefaults.textLength(stage: .finetune, task: task.kind, preset: preset)
        // Classes: the run's list (in the weights' metadata, or classes.json beside them) so
        // indices match training; rebuilt from the evaluated data they could name other answers.
        let classesURL = home.appendingPathComponent("classes.json")
        let classes = described.classes
            ?? (try? readWholeFile(classesURL)).flatMap { try? JSONDecoder().decode([String].self, from: $0) }
        guard task.kind == .retrieval || classes != nil else {
            throw RunError("\(path) carries no answer/class list (neither in its metadata nor as \(classesURL.path)); use a "
                           + "fine-tuning run's final.safetensors or best.safetensors, or an export of its checkpoint")
        }
        let head: TaskHead = task.kind == .retrieval ? .retrieval : .classifier(outputs: classes?.count ?? 0)
        let (params, student, report) = try RunFactory.inferenceModel(
            ModelConfig(preset: preset, vocabularySize: tokenizer.vocabularySize, imageSize: H, head: head,
                        pooling: described.effectivePooling),
            weights: file, path: path) { !$0.hasPrefix("teacher.") }
        return TrainedModel(params: params, student: student, task: task, classes: classes ?? [], preset: preset,
                            imageSize: H, textLength: L, tokenizer: tokenizer, home: home, weightsName: name, path: path,
                            report: report)
    }

    /// The scorer of images with their questions or captions, no truth known (`predict`).
    public func scorer(images: [URL], texts: [String]) throws -> Scorer {
        var scorer = Scorer(task: task, samples: SampleTable.unlabelled(images: images, texts: texts), trainLabels: [],
                            classes: classes, tokenizer: tokenizer, imageSize: imageSize, textLength: textLength)
        scorer.labelled = false
        return scorer
    }

    /// The scorer of `split` of the data set at `data`, read as the training run read it.
    public func scorer(data: URL, split: Split, validationHoldout: Double = 0.1, labelColumn: String = "p_meth_label",
                       retrievalCap: Int = 2000, batchSize: Int = 16) throws -> Scorer {
        let answers = task.kind == .vqa ? AnswerVocabulary(answers: classes) : nil
        var options = ReaderOptions()
        options.validationHoldout = validationHoldout
        options.labelColumn = labelColumn
        let samples = try SampleTable.task(task, root: data, split: split, answers: answers, retrievalCap: retrievalCap,
                                           options: options)
        options.checkImages = false
        let train = task.kind == .retrieval ? nil
            : try SampleTable.task(task, root: data, split: .train, answers: answers, options: options)
        // MELINDA's classes come from the label column: another column than training's would
        // give the classifier's rows other meanings.
        if task.kind == .classification, samples.classes != classes {
            throw RunError("\(path) was trained on \(classes.count) classes (\(classes.prefix(4).joined(separator: ", "))…), "
                           + "but --label-column \(labelColumn) of \(data.path) gives \(samples.classes.count) "
                           + "(\(samples.classes.prefix(4).joined(separator: ", "))…); pass the label column the run trained with")
        }
        guard samples.count > 0 else { throw RunError("the \(split.rawValue) split of \(task.rawValue) is empty") }
        return Scorer(task: task, samples: samples, trainLabels: train?.labels ?? [], classes: classes, tokenizer: tokenizer,
                      imageSize: imageSize, textLength: textLength, batchSize: batchSize, retrievalCap: retrievalCap)
    }
}

/// One sample's result: what the model answered, with what probability, against the truth.
public struct Prediction: Sendable {
    /// The sample's index in its split (the file order the reader kept).
    public var index: Int
    public var image: String
    /// The question (VQA) or caption (classification, retrieval).
    public var text: String
    /// The predicted answer or class (retrieval: the best-matching caption).
    public var predicted: String
    /// Softmax probability of the prediction (retrieval: the match score's sigmoid).
    public var probability: Double
    /// The true answer or class (nil when it is not one the model knows).
    public var truth: String?
    public var correct: Bool
    /// VQA: a closed question.
    public var closed: Bool?
    /// The best `k` answers with their probabilities (classification and VQA).
    public var top: [(answer: String, probability: Double)] = []
    /// GM-Coord's modality contributions at the truth (classification and VQA with a known
    /// answer): both variants, the ablation's means over the evaluated split.
    public var contributions: SampleContributions? = nil

    /// JSON lines, one object per prediction, keys sorted.
    public static func jsonLines(_ predictions: [Prediction]) throws -> Data {
        var out = Data()
        for p in predictions {
            var object: [String: Any] = ["id": p.index, "image": p.image, "text": p.text, "answer": p.predicted,
                                         "probability": p.probability, "correct": p.correct, "truth": p.truth ?? NSNull()]
            if let closed = p.closed { object["closed"] = closed }
            if !p.top.isEmpty { object["top"] = p.top.map { ["answer": $0.answer, "probability": $0.probability] } }
            if let c = p.contributions {
                object["p_text_reference"] = c.referenceText; object["p_image_reference"] = c.referenceImage
                object["p_text_ablation"] = c.ablationText; object["p_image_ablation"] = c.ablationImage
            }
            out += try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            out.append(0x0A)
        }
        return out
    }
}

/// Scores a model on one split, every rank a share, rank 0 with the metrics (other ranks
/// get an empty dictionary): what `eval` runs on a weights file and what validation during
/// training runs on the live weights.
public struct Scorer {
    let task: DownstreamTask
    let samples: SampleTable
    /// Training labels, for the majority baseline.
    let trainLabels: [Int]
    let classes: [String]
    let tokenizer: ByteLevelBPE
    let imageSize: Int, textLength: Int
    var batchSize = 16
    var retrievalCap = 2000
    /// False for samples without a truth (`predict` on an image and a question): no warning
    /// about answers outside the vocabulary.
    public var labelled = true

    init(task: DownstreamTask, samples: SampleTable, trainLabels: [Int], classes: [String], tokenizer: ByteLevelBPE,
         imageSize: Int, textLength: Int, batchSize: Int = 16, retrievalCap: Int = 2000) {
        self.task = task; self.samples = samples; self.trainLabels = trainLabels; self.classes = classes
        self.tokenizer = tokenizer; self.imageSize = imageSize; self.textLength = textLength
        self.batchSize = batchSize; self.retrievalCap = retrievalCap
    }

    /// What scoring a split gives rank 0 (other ranks: empty): the metrics, the confusion
    /// counts (truth × prediction; VQA and classification) and, when kept, every sample's prediction.
    public struct Scored {
        public var metrics: [String: Double] = [:]
        public var confusion: [[Int]]? = nil
        public var predictions: [Prediction] = []
    }

    /// The metrics only (validation during training).
    func score(params: UMDParameters, student: ParameterStore, world: Communicator) throws -> [String: Double] {
        try score(params: params, student: student, world: world, keepPredictions: false).metrics
    }

    /// How many answers a prediction lists with their probabilities.
    static let topCount = 5

    public func score(params: UMDParameters, student: ParameterStore, world: Communicator,
                      keepPredictions: Bool) throws -> Scored {
        let rank = world.rank, R = world.size
        let (H, L) = (imageSize, textLength)
        let n = samples.count
        var scored = Scored()
        var metrics: [String: Double] = [:]
        let objective = FinetuneObjective(params: params)

        if task.kind == .retrieval {
            // Cross-encoder scores of every (image, text) pair; every text is encoded once per
            // rank, each image once, and rank r scores images r, r+R, …
            let (ids, attention) = TableBatchSource.tokens(samples.texts, tokenizer: tokenizer, length: L)
            let scorer = RetrievalScorer(params: params)
            scorer.encodeTexts(student, ids: ids, attention: attention, count: n, length: L)
            var local: [Float] = []
            for i in stride(from: rank, to: n, by: R) {
                local += scorer.scores(student, image: try TableBatchSource.pixels([samples.images[i]], size: H), imageSize: H)
            }
            if let parts = try world.gatherVariable(local, root: 0) {
                var scores = [Float](repeating: 0, count: n * n)
                for (r, part) in parts.enumerated() {
                    for (k, i) in stride(from: r, to: n, by: R).enumerated() {
                        for j in 0..<n { scores[i * n + j] = part[k * n + j] }
                    }
                }
                let result = Metrics.retrieval(scores: scores, count: n)
                if keepPredictions {
                    // Image i's best caption (image-to-text), right when it is its own.
                    scored.predictions = (0..<n).map { i in
                        var best = 0
                        for j in 1..<n where scores[i * n + j] > scores[i * n + best] { best = j }
                        return Prediction(index: i, image: samples.images[i].path, text: samples.texts[i],
                                          predicted: samples.texts[best], probability: 1 / (1 + exp(-Double(scores[i * n + best]))),
                                          truth: samples.texts[i], correct: best == i)
                    }
                }
                for k in [1, 5, 10] {
                    metrics["i2t_R@\(k)"] = result.imageToText[k]; metrics["t2i_R@\(k)"] = result.textToImage[k]
                    metrics["chance_R@\(k)"] = min(1, Double(k) / Double(n))
                }
                metrics["pairs"] = Double(n)
            }
        } else {
            let A = classes.count
            let share = (n + R - 1) / R
            let mine = Array((rank * share)..<min(n, (rank + 1) * share))
            var scores: [Float] = []
            var lossSum = 0.0, lossCount = 0.0
            // With predictions kept: this rank's pooled features [mine, 2D] and labels, for the
            // per-sample contributions.
            let D = params.config.width
            var pooled: [Float] = [], pooledLabels: [Int32] = []
            for start in stride(from: 0, to: mine.count, by: batchSize) {
                let chunk = Array(mine[start..<min(mine.count, start + batchSize)])
                let source = TableBatchSource(table: samples, indices: chunk, tokenizer: tokenizer, imageSize: H,
                                              textLength: L)
                let (ids, attention) = source.tokens(Array(chunk.indices))
                // An answer outside the training vocabulary counts as wrong, and not in the loss.
                let labels = chunk.map { samples.labels[$0] >= 0 ? Int32(samples.labels[$0]) : SpecialTokens.ignoreLabel }
                let batch = ClassificationBatch(batch: chunk.count, imageSize: H, textLength: L,
                                                pixels: try source.pixels(Array(chunk.indices)), textIDs: ids,
                                                attention: attention, labels: labels, sampleIDs: chunk.map { UInt64($0) })
                let result = objective.step(student: student, batch: batch, computeGradients: false)
                lossSum += result.loss * Double(chunk.count)       // the chunk's mean times its size
                lossCount += Double(labels.filter { $0 != SpecialTokens.ignoreLabel }.count)
                scores += Array(UnsafeBufferPointer(start: objective.lastLogits.pointer, count: chunk.count * A))
                if keepPredictions {
                    pooled += Array(UnsafeBufferPointer(start: objective.lastPooled, count: chunk.count * 2 * D))
                    pooledLabels += labels
                }
            }
            var loss = [lossSum, lossCount]
            try world.allreduce(&loss, op: .sum)
            let contributions = keepPredictions
                ? try Self.contributions(objective, student: student, pooled: pooled, labels: pooledLabels, world: world)
                : nil
            if let parts = try world.gatherVariable(scores, root: 0) {
                let all = parts.flatMap { $0 }
                if loss[1] > 0 { metrics["loss"] = loss[0] / loss[1] }
                let predictions = (0..<n).map { i -> Int in
                    var best = 0
                    for a in 1..<A where all[i * A + a] > all[i * A + best] { best = a }
                    return best
                }
                var confusion = [[Int]](repeating: [Int](repeating: 0, count: A), count: A)
                for i in 0..<n where samples.labels[i] >= 0 { confusion[samples.labels[i]][predictions[i]] += 1 }
                scored.confusion = confusion
                if keepPredictions {
                    scored.predictions = (0..<n).map { i in
                        let probabilities = Self.softmax(all[(i * A)..<((i + 1) * A)])
                        let top = probabilities.indices.sorted { (probabilities[$0], -$0) > (probabilities[$1], -$1) }
                            .prefix(Self.topCount).map { (answer: classes[$0], probability: probabilities[$0]) }
                        let truth = samples.labels[i]
                        return Prediction(index: i, image: samples.images[i].path, text: samples.texts[i],
                                          predicted: classes[predictions[i]], probability: probabilities[predictions[i]],
                                          truth: truth >= 0 ? classes[truth] : nil, correct: truth == predictions[i],
                                          closed: task.kind == .vqa ? samples.closed[i] : nil, top: Array(top),
                                          contributions: contributions?[i])
                    }
                }
                // Majority baseline: the most frequent training label, predicted for every sample.
                var counts = [Int](repeating: 0, count: A)
                for l in trainLabels where l >= 0 { counts[l] += 1 }
                let majority = counts.indices.max { counts[$0] < counts[$1] } ?? 0
                let unknown = samples.labels.filter { $0 < 0 }.count
                if unknown > 0 && labelled {
                    FileHandle.standardError.write(Data(("umd-mpirun: warning: \(unknown) answer(s) of the evaluated split are not in "
                        + "the training answer vocabulary; they count as wrong\n").utf8))
                }
                if task.kind == .vqa {
                    let m = Metrics.vqaAccuracy(predictions: predictions, answers: samples.labels, isClosed: samples.closed)
                    let base = Metrics.vqaAccuracy(predictions: [Int](repeating: majority, count: n), answers: samples.labels,
                                                   isClosed: samples.closed)
                    metrics["overall"] = m.overall; metrics["closed"] = m.closed; metrics["open"] = m.open
                    metrics["majority_overall"] = base.overall
                    metrics["majority_closed"] = base.closed; metrics["majority_open"] = base.open
                } else {
                    let labels = samples.labels.map { max($0, 0) }
                    let m = Metrics.classification(scores: all, labels: labels, classes: A)
                    metrics["accuracy"] = m.accuracy; metrics["macro_f1"] = m.macroF1; metrics["auc"] = m.macroAUC
                    metrics["sensitivity"] = m.sensitivity; metrics["specificity"] = m.specificity
                    metrics["majority_accuracy"] = Double(labels.filter { $0 == majority }.count) / Double(n)
                }
                metrics["samples"] = Double(n)
            }
        }
        scored.metrics = metrics
        return scored
    }

    /// Every sample's contributions under both variants (rank 0 gets them in sample order,
    /// other ranks nil): the ablation replaces the other modality by its mean over the whole
    /// evaluated split, where training uses the global batch's.
    static func contributions(_ objective: FinetuneObjective, student: ParameterStore, pooled: [Float], labels: [Int32],
                              world: Communicator) throws -> [SampleContributions?]? {
        let reduction = RunFactory.globalReduction(world, watchdog: nil) { "the allreduce of eval's mean pooled features" }
        let local = pooled.withUnsafeBufferPointer {
            objective.sampleContributions(student, cls: $0.baseAddress, rows: labels.count, labels: labels, reduction: reduction)
        }
        // Four floats per sample, NaN for a sample without a known answer.
        let flat = local.flatMap { c -> [Float] in
            guard let c else { return [.nan, .nan, .nan, .nan] }
            return [c.referenceText, c.referenceImage, c.ablationText, c.ablationImage].map { Float($0) }
        }
        guard let parts = try world.gatherVariable(flat, root: 0) else { return nil }
        let all = parts.flatMap { $0 }
        return stride(from: 0, to: all.count, by: 4).map { k in
            all[k].isNaN ? nil : SampleContributions(referenceText: Double(all[k]), referenceImage: Double(all[k + 1]),
                                                     ablationText: Double(all[k + 2]), ablationImage: Double(all[k + 3]))
        }
    }

    /// Probabilities of one row of logits (in Double, max subtracted).
    static func softmax(_ logits: ArraySlice<Float>) -> [Double] {
        let m = Double(logits.max() ?? 0)
        let e = logits.map { exp(Double($0) - m) }
        let sum = e.reduce(0, +)
        return e.map { $0 / sum }
    }
}
