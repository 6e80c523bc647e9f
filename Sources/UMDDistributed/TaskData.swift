import Foundation
import UMDData
import UMDModel

/// The downstream tasks by their command-line names.
public enum DownstreamTask: String, Sendable, CaseIterable, Codable {
    case vqaRad = "vqa-rad", slake, vqaMed2019 = "vqa-med-2019", melinda, rocoRetrieval = "roco-retrieval"

    public var kind: TaskKind {
        switch self {
        case .vqaRad, .slake, .vqaMed2019: return .vqa
        case .melinda: return .classification
        case .rocoRetrieval: return .retrieval
        }
    }

    var vqaKind: VQAKind? {
        switch self {
        case .vqaRad: return .vqaRad
        case .slake: return .slake
        case .vqaMed2019: return .vqaMed2019
        default: return nil
        }
    }
}

/// One split of a downstream task as parallel arrays.
public struct TaskSamples: Sendable {
    public var images: [URL] = []
    /// The question (VQA) or caption (classification, retrieval).
    public var texts: [String] = []
    /// Answer or class index (-1 for retrieval, and for an answer outside the vocabulary).
    public var labels: [Int] = []
    /// VQA: closed question.
    public var closed: [Bool] = []
    /// Answer vocabulary (VQA) or class names (classification).
    public var classes: [String] = []
    public var reports: [DataReport] = []
    public var count: Int { texts.count }
}

public enum TaskData {
    /// Loads `split` of `task`. VQA answers are indexed by the vocabulary built over all
    /// splits present (train, validation, test, in that order of first appearance) unless
    /// `answers` is given (evaluation reuses the run's saved vocabulary).
    public static func load(task: DownstreamTask, root: URL, split: Split, answers: AnswerVocabulary? = nil,
                            retrievalCap: Int = 2000, options: ReaderOptions = .init()) throws -> TaskSamples {
        var out = TaskSamples()
        switch task {
        case .vqaRad, .slake, .vqaMed2019:
            let kind = task.vqaKind!
            var vocabulary = answers ?? AnswerVocabulary()
            if answers == nil {
                for s in Split.allCases {
                    guard let samples = try? VQADataset.load(kind: kind, root: root, split: s,
                                                             options: ReaderOptions(strict: false, checkImages: false)).samples
                    else { continue }
                    for sample in samples { vocabulary.add(sample.answer) }
                }
            }
            let (samples, report) = try VQADataset.load(kind: kind, root: root, split: split, options: options)
            out.reports = [report]
            out.classes = vocabulary.answers
            for s in samples {
                out.images.append(s.image); out.texts.append(s.question)
                out.labels.append(vocabulary.id(of: s.answer) ?? -1); out.closed.append(s.answerType == .closed)
            }
        case .melinda:
            let (samples, labels, report) = try MELINDADataset.load(root: root, split: split, options: options)
            out.reports = [report]
            out.classes = labels
            for s in samples { out.images.append(s.image); out.texts.append(s.caption); out.labels.append(s.label) }
        case .rocoRetrieval:
            let (samples, report) = try ROCODataset.load(root: root, split: split, limit: retrievalCap, options: options)
            out.reports = [report]
            for s in samples { out.images.append(s.image); out.texts.append(s.text); out.labels.append(-1) }
        }
        return out
    }
}
