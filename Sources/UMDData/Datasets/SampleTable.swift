import Foundation
import UMDCore

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

/// One split of any data set as parallel arrays: what training and evaluation index by
/// data-set index. Pretraining fills images and texts; downstream tasks add labels.
public struct SampleTable: Sendable {
    public var images: [URL] = []
    /// The caption (pretraining, classification, retrieval) or question (VQA).
    public var texts: [String] = []
    /// Answer or class index (-1 for pretraining and retrieval, and for an answer outside the vocabulary).
    public var labels: [Int] = []
    /// VQA: closed question.
    public var closed: [Bool] = []
    /// Answer vocabulary (VQA) or class names (classification); empty otherwise.
    public var classes: [String] = []
    /// One report per file read (accepted and skipped records).
    public var reports: [DataReport] = []
    public var count: Int { texts.count }

    public init() {}

    /// Samples without a truth (images with their questions or captions), as `predict` scores them.
    public static func unlabelled(images: [URL], texts: [String]) -> SampleTable {
        var table = SampleTable()
        for (image, text) in zip(images, texts) { table.append(image: image, text: text) }
        return table
    }

    mutating func append(image: URL, text: String, label: Int = -1, closed: Bool = false) {
        images.append(image); texts.append(text); labels.append(label); self.closed.append(closed)
    }

    /// MR-Pretrain's training set: ROCO's training split, then (optionally) MedICaT's with
    /// `medicatHoldout` texts held out for validation and for test each.
    public static func pretraining(roco: URL, medicat: URL?, medicatHoldout: Int, seed: UInt64,
                                   options: ReaderOptions) throws -> SampleTable {
        var out = SampleTable()
        let (rocoSamples, rocoReport) = try ROCODataset.load(root: roco, split: .train, options: options)
        out.reports.append(rocoReport)
        for s in rocoSamples { out.append(image: s.image, text: s.text) }
        if let medicat {
            let (samples, report) = try MedICaTDataset.load(root: medicat, split: .train,
                                                            includeReferences: options.medicatReferences, seed: seed,
                                                            validationCount: medicatHoldout, testCount: medicatHoldout,
                                                            options: options)
            out.reports.append(report)
            if samples.isEmpty {
                throw DataError.dataset("\(medicat.path): every MedICaT text falls into the held-out validation and test splits "
                                   + "(\(medicatHoldout) each); lower --medicat-holdout or drop --medicat")
            }
            for s in samples { out.append(image: s.image, text: s.text) }
        }
        return out
    }

    /// `split` of `task`. VQA answers are indexed by the vocabulary built over all splits
    /// present (train, validation, test, in that order of first appearance) unless
    /// `answers` is given (evaluation reuses the run's saved vocabulary).
    public static func task(_ task: DownstreamTask, root: URL, split: Split, answers: AnswerVocabulary? = nil,
                            retrievalCap: Int = 2000, options: ReaderOptions = .init()) throws -> SampleTable {
        var out = SampleTable()
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
                out.append(image: s.image, text: s.question, label: vocabulary.id(of: s.answer) ?? -1,
                           closed: s.answerType == .closed)
            }
        case .melinda:
            let (samples, labels, report) = try MELINDADataset.load(root: root, split: split, options: options)
            out.reports = [report]
            out.classes = labels
            for s in samples { out.append(image: s.image, text: s.caption, label: s.label) }
        case .rocoRetrieval:
            let (all, read) = try ROCODataset.load(root: root, split: split, options: options)
            var report = read
            let (samples, short) = ROCORetrieval.select(all, cap: retrievalCap)
            let subset = samples.count < all.count - short
            if short > 0 || subset {
                report.notes.append("retrieval uses \(samples.count): captions of at least 3 words (\(short) shorter left out)"
                                    + (subset ? ", \(samples.count) of them chosen by a seeded shuffle (M3AE's subset; the "
                                       + "cap is --retrieval-cap)" : ""))
            }
            report.accepted = samples.count
            out.reports = [report]
            for s in samples { out.append(image: s.image, text: s.text) }
        }
        return out
    }
}
