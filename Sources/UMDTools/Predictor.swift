import Collective
import Foundation
import UMDData
import UMDDistributed
import UMDModel

/// `umd-mpirun predict`: a fine-tuned model's answers — for one image and question (VQA: the
/// top answers with their probabilities), one image and caption (classification: class
/// probabilities; retrieval: the match score), or a whole split of a data set (every sample's
/// answer, as `eval --predictions` writes them). The task, classes, preset, sizes and
/// tokenizer hash come from the weights.
public enum Predictor {
    public struct Options: Sendable {
        public var weights: String
        public var tokenizer: URL
        public var task: DownstreamTask? = nil
        /// A split of a data set …
        public var data: URL? = nil
        public var split: Split = .test
        public var validationHoldout = 0.1
        public var labelColumn = "p_meth_label"
        /// … or images with their questions / captions (pairwise).
        public var images: [URL] = []
        public var texts: [String] = []
        /// JSON lines (`eval --predictions`' format) written here besides the table.
        public var out: URL? = nil
        public init(weights: String, tokenizer: URL) { self.weights = weights; self.tokenizer = tokenizer }
    }

    /// The predictions (rank 0; other ranks get none).
    @discardableResult
    public static func run(_ o: Options, world: Communicator) throws -> [Prediction] {
        let model = try TrainedModel.load(weights: o.weights, tokenizer: o.tokenizer, task: o.task, preset: nil,
                                          imageSize: nil, textLength: nil)
        let scorer: Scorer
        if let data = o.data {
            guard o.images.isEmpty && o.texts.isEmpty else {
                throw RunError("predict takes either --data (a split) or --image with --question/--text, not both")
            }
            scorer = try model.scorer(data: data, split: o.split, validationHoldout: o.validationHoldout,
                                      labelColumn: o.labelColumn)
        } else {
            guard !o.images.isEmpty, o.images.count == o.texts.count else {
                throw RunError("predict needs --image and --\(model.task.kind == .vqa ? "question" : "text") (one each, as "
                               + "many pairs as you like: \(o.images.count) image(s), \(o.texts.count) text(s) given), or "
                               + "--data DIR for a whole split")
            }
            if model.task.kind == .retrieval && o.images.count > 1 && world.rank == 0 {
                // Retrieval scores every image against every caption: pairs are read as one gallery.
                print("predict: \(o.images.count) images and captions scored as one gallery")
            }
            scorer = try model.scorer(images: o.images, texts: o.texts)
        }
        let scored = try scorer.score(params: model.params, student: model.student, world: world, keepPredictions: true)
        guard world.rank == 0 else { return [] }
        print("predict: \(model.describe)")
        let single = o.data == nil
        for p in scored.predictions {
            if single {
                print("\(p.image)\n  \(model.task.kind == .vqa ? "question" : "text"): \(p.text)")
                if model.task.kind == .retrieval {
                    print(String(format: "  match score %.4f (sigmoid of the ITM-style score)", p.probability))
                } else {
                    for (rank, t) in p.top.enumerated() {
                        print(String(format: "  %d. %@  %.4f", rank + 1, t.answer, t.probability))
                    }
                }
            } else {
                print(String(format: "%5d  %@  %.4f  truth %@  %@", p.index, p.predicted, p.probability, p.truth ?? "(unknown)",
                             p.correct ? "right" : "wrong"))
            }
        }
        if !single {
            let right = scored.predictions.filter(\.correct).count
            print(String(format: "predict %@ %@: %d of %d right (%.4f)", model.task.rawValue, o.split.rawValue, right,
                         scored.predictions.count, Double(right) / Double(max(1, scored.predictions.count))))
        }
        if let out = o.out {
            try Evaluator.write(Prediction.jsonLines(scored.predictions), to: out, what: "the predictions are printed above")
            print("wrote \(scored.predictions.count) predictions to \(out.path)")
        }
        return scored.predictions
    }
}
