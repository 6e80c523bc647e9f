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
        public var task: DownstreamTask
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
        public init(task: DownstreamTask, data: URL, checkpoint: URL, tokenizer: URL, preset: ModelPreset?) {
            self.task = task; self.data = data; self.checkpoint = checkpoint; self.tokenizer = tokenizer; self.preset = preset
        }
    }

    /// Returns the metrics (rank 0; other ranks return an empty dictionary).
    @discardableResult
    public static func run(_ o: Options, world: Communicator) throws -> [String: Double] {
        let rank = world.rank, R = world.size
        let tokenizer = try ByteLevelBPE(directory: o.tokenizer)
        let (file, resolved) = try WeightsPath.load(o.checkpoint.path, includeTeacher: false)
        // The run the weights belong to: the file's folder, or the checkpoint's run.
        let home: URL
        switch resolved {
        case .file(let url): home = url.deletingLastPathComponent()
        case .checkpoint(let dir): home = dir.deletingLastPathComponent().deletingLastPathComponent()
        }
        let described = try WeightsDescription(file: file, path: o.checkpoint.path)
        try described.requireTokenizer(o.tokenizer, weights: o.checkpoint.path)
        let preset = try Self.agree("preset", o.preset, described.preset, o.checkpoint.path) ?? .tiny
        if let task = described.task, task != o.task.rawValue {
            throw RunError("\(o.checkpoint.path) was fine-tuned for \(task), not for \(o.task.rawValue): its "
                           + "answers or classes belong to \(task); evaluate it with --task \(task)")
        }
        let H = o.imageSize ?? described.imageSize ?? StageDefaults.imageSize(stage: .finetune, preset: preset)
        let L = o.textLength ?? described.textLength
            ?? StageDefaults.textLength(stage: .finetune, task: o.task.kind, preset: preset)
        // Classes: the run's list (in the weights' metadata, or classes.json beside them) so
        // indices match training.
        let classesURL = home.appendingPathComponent("classes.json")
        let savedClasses = described.classes
            ?? (try? readWholeFile(classesURL)).flatMap { try? JSONDecoder().decode([String].self, from: $0) }
        let answers = o.task.kind == .vqa ? savedClasses.map { AnswerVocabulary(answers: $0) } : nil
        var options = ReaderOptions()
        options.validationHoldout = o.validationHoldout
        options.labelColumn = o.labelColumn
        let samples = try SampleTable.task(o.task, root: o.data, split: o.split, answers: answers,
                                           retrievalCap: o.retrievalCap, options: options)
        options.checkImages = false
        let train = o.task.kind == .retrieval ? nil
            : try SampleTable.task(o.task, root: o.data, split: .train, answers: answers, options: options)
        // MELINDA's classes come from the label column: another column than training's would
        // give the classifier's rows other meanings.
        if o.task.kind == .classification, let saved = savedClasses, samples.classes != saved {
            throw RunError("\(o.checkpoint.path) was trained on \(saved.count) classes (\(saved.prefix(4).joined(separator: ", "))…), "
                           + "but --label-column \(o.labelColumn) of \(o.data.path) gives \(samples.classes.count) "
                           + "(\(samples.classes.prefix(4).joined(separator: ", "))…); pass the label column the run trained with")
        }
        // A classifier's rows stand for the training run's classes in its order: rebuilt from
        // the evaluated data they could name other answers (a silently wrong score).
        guard o.task.kind == .retrieval || savedClasses != nil else {
            throw RunError("\(o.checkpoint.path) carries no answer/class list (neither in its metadata nor as "
                           + "\(classesURL.path)); evaluate a fine-tuning run's final.safetensors or best.safetensors, "
                           + "or an export of its checkpoint")
        }
        let classes = savedClasses ?? []
        let head: TaskHead = o.task.kind == .retrieval ? .retrieval : .classifier(outputs: classes.count)
        let (params, student, loaded) = try RunFactory.inferenceModel(
            ModelConfig(preset: preset, vocabularySize: tokenizer.vocabularySize, imageSize: H, head: head),
            weights: file, path: o.checkpoint.path) { !$0.hasPrefix("teacher.") }
        if rank == 0 {
            print("eval: \(o.checkpoint.path): preset \(preset.name), \(H) px, L = \(L), \(loaded.loaded.count) tensors"
                  + (loaded.resizeNotes.isEmpty ? "" : ", resized " + loaded.resizeNotes.joined(separator: ", ")))
        }
        let n = samples.count
        guard n > 0 else { throw RunError("the \(o.split.rawValue) split of \(o.task.rawValue) is empty") }
        let out = o.out ?? home
        let scorer = Scorer(task: o.task, samples: samples, trainLabels: train?.labels ?? [], classes: classes,
                            tokenizer: tokenizer, imageSize: H, textLength: L, batchSize: o.batchSize, retrievalCap: o.retrievalCap)
        let metrics = try scorer.score(params: params, student: student, world: world)
        if rank == 0 {
            // The headline first (overall, accuracy, R@1 …), then the rest, baselines last.
            let headline = ["overall", "accuracy", "macro_f1", "auc", "i2t_R@1", "t2i_R@1"]
            func rank(_ key: String) -> Int {
                headline.firstIndex(of: key) ?? (key.hasPrefix("majority") || key.hasPrefix("chance") ? 200 : 100)
            }
            let text = metrics.sorted { (rank($0.key), $0.key) < (rank($1.key), $1.key) }.map { "\($0.key) \(String(format: $0.value < 2 ? "%.4f" : "%.0f", $0.value))" }
            // Printed before the file is written: a score is never lost to an unwritable folder.
            print("eval \(o.task.rawValue) \(o.split.rawValue): " + text.joined(separator: ", "))
            fflush(nil)
            // Named by the weights too, so evaluating several files in one folder keeps every result.
            let url = out.appendingPathComponent("eval-\(resolved.url.deletingPathExtension().lastPathComponent)-\(o.task.rawValue)-\(o.split.rawValue).json")
            do {
                try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
                try AtomicFileWriter.write(JSONSerialization.data(withJSONObject: metrics, options: [.prettyPrinted, .sortedKeys]), to: url)
            } catch {
                throw RunError("cannot write \(url.path) (\(FileError.describe(error, at: url))); the scores are printed above. "
                               + "Pass --out DIR to write the result file elsewhere")
            }
            print("wrote \(url.path)")
        }
        return metrics
    }
}

/// Scores a model on one split, every rank a share, rank 0 with the metrics (other ranks
/// get an empty dictionary): what `eval` runs on a weights file and what validation during
/// training runs on the live weights.
struct Scorer {
    let task: DownstreamTask
    let samples: SampleTable
    /// Training labels, for the majority baseline.
    let trainLabels: [Int]
    let classes: [String]
    let tokenizer: ByteLevelBPE
    let imageSize: Int, textLength: Int
    var batchSize = 16
    var retrievalCap = 2000

    init(task: DownstreamTask, samples: SampleTable, trainLabels: [Int], classes: [String], tokenizer: ByteLevelBPE,
         imageSize: Int, textLength: Int, batchSize: Int = 16, retrievalCap: Int = 2000) {
        self.task = task; self.samples = samples; self.trainLabels = trainLabels; self.classes = classes
        self.tokenizer = tokenizer; self.imageSize = imageSize; self.textLength = textLength
        self.batchSize = batchSize; self.retrievalCap = retrievalCap
    }

    func score(params: UMDParameters, student: ParameterStore, world: Communicator) throws -> [String: Double] {
        let rank = world.rank, R = world.size
        let (H, L) = (imageSize, textLength)
        let n = samples.count
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
            }
            var loss = [lossSum, lossCount]
            try world.allreduce(&loss, op: .sum)
            if let parts = try world.gatherVariable(scores, root: 0) {
                let all = parts.flatMap { $0 }
                if loss[1] > 0 { metrics["loss"] = loss[0] / loss[1] }
                let predictions = (0..<n).map { i -> Int in
                    var best = 0
                    for a in 1..<A where all[i * A + a] > all[i * A + best] { best = a }
                    return best
                }
                // Majority baseline: the most frequent training label, predicted for every sample.
                var counts = [Int](repeating: 0, count: A)
                for l in trainLabels where l >= 0 { counts[l] += 1 }
                let majority = counts.indices.max { counts[$0] < counts[$1] } ?? 0
                let unknown = samples.labels.filter { $0 < 0 }.count
                if unknown > 0 {
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
                    metrics["majority_accuracy"] = Double(labels.filter { $0 == majority }.count) / Double(n)
                }
                metrics["samples"] = Double(n)
            }
        }
        return metrics
    }
}
