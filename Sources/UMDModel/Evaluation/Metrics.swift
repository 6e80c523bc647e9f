/// Evaluation arithmetic (MODEL_SPEC.md section 11).
public enum Metrics {
    /// VQA accuracy of argmax predictions: overall (micro), and over closed and open
    /// questions separately. nil for a split with no questions.
    public struct VQAAccuracy: Sendable, Equatable, Codable {
        public var overall: Double?, closed: Double?, open: Double?
        public var count: Int, closedCount: Int, openCount: Int
    }

    public static func vqaAccuracy(predictions: [Int], answers: [Int], isClosed: [Bool]) -> VQAAccuracy {
        precondition(predictions.count == answers.count && answers.count == isClosed.count)
        var right = 0, closedRight = 0, openRight = 0, closedCount = 0, openCount = 0
        for i in predictions.indices {
            let ok = predictions[i] == answers[i]
            if ok { right += 1 }
            if isClosed[i] { closedCount += 1; if ok { closedRight += 1 } } else { openCount += 1; if ok { openRight += 1 } }
        }
        func ratio(_ a: Int, _ b: Int) -> Double? { b == 0 ? nil : Double(a) / Double(b) }
        return VQAAccuracy(overall: ratio(right, predictions.count), closed: ratio(closedRight, closedCount),
                           open: ratio(openRight, openCount), count: predictions.count, closedCount: closedCount,
                           openCount: openCount)
    }

    public struct Classification: Sendable, Equatable, Codable {
        public var accuracy: Double
        /// Mean over classes of F1 (a class never predicted nor present counts as absent).
        public var macroF1: Double
        /// Mean over classes with both positives and negatives of the one-vs-rest ROC AUC.
        public var macroAUC: Double?
        /// The paper's Table 5 (MODEL_SPEC section 11): per class present in the labels, the
        /// one-vs-rest recall of the class (sensitivity) and of the rest (specificity),
        /// macro-averaged over those classes.
        public var sensitivity: Double = 0
        public var specificity: Double = 0
    }

    /// scores [n, C] (any monotone score per class, e.g. logits or probabilities), labels [n].
    public static func classification(scores: [Float], labels: [Int], classes C: Int) -> Classification {
        let n = labels.count
        precondition(scores.count == n * C)
        var predictions = [Int](repeating: 0, count: n)
        for i in 0..<n {
            var best = 0
            for c in 1..<C where scores[i * C + c] > scores[i * C + best] { best = c }
            predictions[i] = best
        }
        let accuracy = n == 0 ? 0 : Double(zip(predictions, labels).filter { $0 == $1 }.count) / Double(n)
        // Macro-F1 over the classes that occur in the labels or the predictions (sklearn's default).
        var f1s: [Double] = []
        for c in 0..<C {
            let tp = (0..<n).filter { predictions[$0] == c && labels[$0] == c }.count
            let fp = (0..<n).filter { predictions[$0] == c && labels[$0] != c }.count
            let fn = (0..<n).filter { predictions[$0] != c && labels[$0] == c }.count
            if tp + fp + fn == 0 { continue }
            f1s.append(2 * Double(tp) / Double(2 * tp + fp + fn))
        }
        var aucs: [Double] = []
        for c in 0..<C {
            let classScores = (0..<n).map { Double(scores[$0 * C + c]) }
            if let auc = rocAUC(scores: classScores, positives: labels.map { $0 == c }) { aucs.append(auc) }
        }
        var sensitivities: [Double] = [], specificities: [Double] = []
        for c in 0..<C {
            let positives = (0..<n).filter { labels[$0] == c }
            guard !positives.isEmpty else { continue }
            sensitivities.append(Double(positives.filter { predictions[$0] == c }.count) / Double(positives.count))
            let negatives = (0..<n).filter { labels[$0] != c }
            specificities.append(negatives.isEmpty ? 1
                                 : Double(negatives.filter { predictions[$0] != c }.count) / Double(negatives.count))
        }
        func mean(_ v: [Double]) -> Double { v.isEmpty ? 0 : v.reduce(0, +) / Double(v.count) }
        return Classification(accuracy: accuracy, macroF1: f1s.isEmpty ? 0 : f1s.reduce(0, +) / Double(f1s.count),
                              macroAUC: aucs.isEmpty ? nil : aucs.reduce(0, +) / Double(aucs.count),
                              sensitivity: mean(sensitivities), specificity: mean(specificities))
    }

    /// ROC AUC by the rank statistic (Mann–Whitney U), ties counted half; nil without both classes.
    public static func rocAUC(scores: [Double], positives: [Bool]) -> Double? {
        let pos = positives.filter { $0 }.count, neg = positives.count - pos
        if pos == 0 || neg == 0 { return nil }
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var ranks = [Double](repeating: 0, count: scores.count)
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
            let averageRank = Double(i + j) / 2 + 1
            for k in i...j { ranks[order[k]] = averageRank }
            i = j + 1
        }
        let rankSum = positives.indices.filter { positives[$0] }.reduce(0.0) { $0 + ranks[$1] }
        return (rankSum - Double(pos * (pos + 1)) / 2) / (Double(pos) * Double(neg))
    }

    public struct Retrieval: Sendable, Equatable, Codable {
        public var imageToText: [Int: Double]   // K → recall@K
        public var textToImage: [Int: Double]
    }

    /// scores [I, I]: image i against text j; the true text of image i is text i.
    /// Recall@K counts the true item within the K highest scores (ties broken against it).
    public static func retrieval(scores: [Float], count n: Int, ks: [Int] = [1, 5, 10]) -> Retrieval {
        precondition(scores.count == n * n)
        var i2t: [Int: Int] = [:], t2i: [Int: Int] = [:]
        for i in 0..<n {
            let truth = scores[i * n + i]
            // Rank = 1 + number of other texts scoring at least as high (pessimistic on ties).
            var rank = 1
            for j in 0..<n where j != i && scores[i * n + j] >= truth { rank += 1 }
            for k in ks where rank <= k { i2t[k, default: 0] += 1 }
        }
        for j in 0..<n {
            let truth = scores[j * n + j]
            var rank = 1
            for i in 0..<n where i != j && scores[i * n + j] >= truth { rank += 1 }
            for k in ks where rank <= k { t2i[k, default: 0] += 1 }
        }
        var result = Retrieval(imageToText: [:], textToImage: [:])
        for k in ks {
            result.imageToText[k] = n == 0 ? 0 : Double(i2t[k, default: 0]) / Double(n)
            result.textToImage[k] = n == 0 ? 0 : Double(t2i[k, default: 0]) / Double(n)
        }
        return result
    }
}
