import Foundation
import UMDCore

/// The VQA data sets umd evaluates on.
public enum VQAKind: String, Sendable, CaseIterable, Codable {
    case vqaRad = "vqa-rad", slake, vqaMed2019 = "vqa-med-2019"
}

/// Readers of VQA-RAD, SLAKE and VQA-Med-2019, each in the layout its download unpacks to
/// and in the rearranged layouts the papers' code uses, detected by file names:
///
/// - VQA-RAD: the OSF release (`VQA_RAD Dataset Public.json` + `VQA_RAD Image Folder/`),
///   split by `phrase_type` as MEVF split it (`test_freeform`/`test_para` are the test set,
///   451 questions; the rest train, 3064); or MEVF's split files `{trainset,valset,testset}.json`
///   + `images/` (`valset.json` is optional: the release has none).
/// - SLAKE: `{train,validate,test}.json` (English rows) + `imgs/`.
/// - VQA-Med-2019: the ImageCLEF folders `ImageClef-2019-VQA-Med-Training/` (`QAPairsByCategory/
///   C{1,2,3}_*_train.txt`, `Train_images/`), `ImageClef-2019-VQA-Med-Validation/` (`…_val.txt`,
///   `Val_images/`), `VQAMed2019Test/` (`VQAMed2019_Test_Questions_w_Ref_Answers.txt`,
///   `id|category|question|answer`, `VQAMed2019_Test_Images/`); or M3AE's
///   `{train,val,test}/QA/{Modality,Organ,Plane}.csv` + `{split}/images/`. Modality, plane
///   and organ questions (as M3AE; the abnormality category is not read); a test answer's
///   `#`-separated alternatives are one class, as M3AE keeps them.
///
/// `root` may be the data set's folder or the folder the download was unpacked into (one
/// level above). Where the release has no validation split, `ReaderOptions.validationHoldout`
/// of the training questions (seeded, stratified by answer type) is held out as one — never
/// the test set.
public enum VQADataset {
    public static let vqaRadRelease = "VQA_RAD Dataset Public.json", vqaRadReleaseImages = "VQA_RAD Image Folder"
    public static let medTraining = "ImageClef-2019-VQA-Med-Training", medValidation = "ImageClef-2019-VQA-Med-Validation"
    public static let medTest = "VQAMed2019Test", medTestFile = "VQAMed2019_Test_Questions_w_Ref_Answers.txt"

    public static func load(kind: VQAKind, root given: URL, split: Split,
                            options: ReaderOptions = .init()) throws -> (samples: [VQASample], report: DataReport) {
        switch kind {
        case .vqaRad, .slake: return try loadJSON(kind: kind, root: given, split: split, options: options)
        case .vqaMed2019: return try loadMed(root: given, split: split, options: options)
        }
    }

    // MARK: VQA-RAD and SLAKE (JSON)

    /// A question as its file holds it, with where it came from.
    typealias Row = (location: RecordLocation, object: Any)

    static func loadJSON(kind: VQAKind, root given: URL, split: Split, options: ReaderOptions) throws
        -> (samples: [VQASample], report: DataReport) {
        let (root, rows, imageDir, note) = kind == .vqaRad
            ? try vqaRadRows(given, split: split, options: options)
            : try slakeRows(given, split: split)
        var checker = RecordChecker(report: DataReport(dataset: "\(kind.rawValue) \(split.rawValue)"), options: options, root: root)
        if let note { checker.report.notes.append(note) }
        var samples: [VQASample] = []
        for (location, element) in rows {
            guard let row = element as? [String: Any] else { try checker.skip(location, "not a JSON object"); continue }
            if kind == .slake, let language = row["q_lang"] as? String, language != "en" { continue }
            let imageName = (row[kind == .vqaRad ? "image_name" : "img_name"] as? String) ?? ""
            guard let question = row["question"] as? String, !question.trimmingCharacters(in: .whitespaces).isEmpty,
                  !imageName.isEmpty else {
                try checker.skip(location, "question or image name missing"); continue
            }
            guard let rawAnswer = row["answer"], let answer = AnswerVocabulary.text(of: rawAnswer),
                  !AnswerVocabulary.normalize(answer).isEmpty else {
                try checker.skip(location, "answer missing or empty"); continue
            }
            guard let type = answerType(row) else {
                try checker.skip(location, "answer_type is \"\(row["answer_type"] ?? "")\", expected OPEN or CLOSED"); continue
            }
            let image = imageDir.appendingPathComponent(imageName)
            if let problem = checker.imageProblem(image, recordPath: imageName) { try checker.skip(location, problem); continue }
            samples.append(VQASample(image: image, question: question, answer: AnswerVocabulary.normalize(answer),
                                     answerType: type, source: location))
        }
        return (samples, try checker.finish(accepted: samples.count))
    }

    static func answerType(_ row: [String: Any]) -> AnswerType? {
        switch ((row["answer_type"] as? String) ?? "").trimmingCharacters(in: .whitespaces).uppercased() {
        case "OPEN": return .open
        case "CLOSED": return .closed
        default: return nil
        }
    }

    /// The rows of a JSON list file, each with its entry number.
    static func jsonRows(_ file: URL) throws -> [Row] {
        guard let data = FileManager.default.contents(atPath: file.path),
              let list = (try? JSONSerialization.jsonObject(with: data)) as? [Any] else {
            throw DataError.dataset("\(file.path): not a JSON list of questions")
        }
        return list.enumerated().map { (RecordLocation(file: file.path + " entry", line: $0 + 1), $1) }
    }

    /// VQA-RAD's questions of `split` from whichever layout `given` (or a folder in it) holds.
    static func vqaRadRows(_ given: URL, split: Split, options: ReaderOptions) throws -> (URL, [Row], URL, String?) {
        let mevf = ["trainset.json"], release = [vqaRadRelease]
        guard let (root, found) = DataRoot.locate(given, holding: [mevf, release]) else {
            throw DataError.dataset("\(given.path): no VQA-RAD found; looked for "
                + DataRoot.candidates(given, [mevf, release]).map(\.path).joined(separator: ", ")
                + " (the OSF release, or MEVF's split files)")
        }
        let train: [Row], test: () throws -> [Row], images: URL, validationFile: URL?
        if found == 0 {                                   // MEVF's split files
            train = try jsonRows(root.appendingPathComponent("trainset.json"))
            test = {
                let file = root.appendingPathComponent("testset.json")
                guard FileManager.default.fileExists(atPath: file.path) else {
                    throw DataError.dataset("\(root.path): no vqa-rad test split; looked for \(file.path)")
                }
                return try jsonRows(file)
            }
            images = root.appendingPathComponent("images")
            let valset = root.appendingPathComponent("valset.json")
            validationFile = FileManager.default.fileExists(atPath: valset.path) ? valset : nil
        } else {                                          // the OSF release, split as MEVF did
            let all = try jsonRows(root.appendingPathComponent(vqaRadRelease))
            func isTest(_ row: Row) -> Bool {
                ((row.object as? [String: Any])?["phrase_type"] as? String)?.hasPrefix("test") == true
            }
            train = all.filter { !isTest($0) }
            test = { all.filter(isTest) }
            images = root.appendingPathComponent(vqaRadReleaseImages)
            validationFile = nil
        }
        if split == .test { return (root, try test(), images, nil) }
        if let validationFile { return (root, split == .train ? train : try jsonRows(validationFile), images, nil) }
        let (kept, held) = Holdout.split(train, fraction: options.validationHoldout, stratum: stratum)
        let note = "\(held.count) of the \(train.count) training questions are the validation split (--validation-holdout "
            + "\(options.validationHoldout), seeded, by answer type: the release has none)"
        return (root, split == .train ? kept : held, images, note)
    }

    /// The hold-out keeps each answer type's share.
    static func stratum(_ row: Row) -> String {
        ((row.object as? [String: Any])?["answer_type"] as? String)?.uppercased() ?? ""
    }

    static func slakeRows(_ given: URL, split: Split) throws -> (URL, [Row], URL, String?) {
        let names: [Split: String] = [.train: "train.json", .validation: "validate.json", .test: "test.json"]
        guard let (root, _) = DataRoot.locate(given, holding: [[names[split]!]]) else {
            throw DataError.dataset("\(given.path): no slake \(split.rawValue) split; looked for "
                + DataRoot.candidates(given, [[names[split]!]]).map(\.path).joined(separator: ", "))
        }
        return (root, try jsonRows(root.appendingPathComponent(names[split]!)), root.appendingPathComponent("imgs"), nil)
    }

    // MARK: VQA-Med-2019 (`|`-separated text)

    /// One `|`-separated file of questions and where its images are.
    struct MedFile {
        var file: URL
        var images: URL
        /// The test file: `id|category|question|answer` (else `id|question|answer`).
        var withCategory = false
        /// M3AE's layout lists each category's file whether present or not (a missing one is reported).
        var required = false
    }

    static func medFiles(_ given: URL, split: Split) throws -> (URL, [MedFile]) {
        let officialFolder = [Split.train: medTraining, .validation: medValidation, .test: medTest][split]!
        let m3aeFolder = split == .validation ? "val" : split.rawValue
        guard let (root, found) = DataRoot.locate(given, holding: [[officialFolder], ["\(m3aeFolder)/QA"]]) else {
            throw DataError.dataset("\(given.path): no VQA-Med-2019 \(split.rawValue) split; looked for "
                + DataRoot.candidates(given, [[officialFolder], ["\(m3aeFolder)/QA"]]).map(\.path).joined(separator: ", "))
        }
        if found == 1 {
            let dir = root.appendingPathComponent(m3aeFolder)
            return (root, ["Modality", "Organ", "Plane"].map {
                MedFile(file: dir.appendingPathComponent("QA/\($0).csv"), images: dir.appendingPathComponent("images"),
                        required: true)
            })
        }
        let dir = root.appendingPathComponent(officialFolder)
        if split == .test {
            return (root, [MedFile(file: dir.appendingPathComponent(medTestFile),
                                   images: dir.appendingPathComponent("VQAMed2019_Test_Images"), withCategory: true,
                                   required: true)])
        }
        let suffix = split == .train ? "train" : "val"
        let images = dir.appendingPathComponent(split == .train ? "Train_images" : "Val_images")
        return (root, ["C1_Modality", "C2_Plane", "C3_Organ"].map {
            MedFile(file: dir.appendingPathComponent("QAPairsByCategory/\($0)_\(suffix).txt"), images: images, required: true)
        })
    }

    /// The categories read (M3AE's three); the test file names each question's.
    static let medCategories: Set<String> = ["modality", "plane", "organ"]

    static func loadMed(root given: URL, split: Split, options: ReaderOptions) throws
        -> (samples: [VQASample], report: DataReport) {
        let (root, files) = try medFiles(given, split: split)
        var checker = RecordChecker(report: DataReport(dataset: "vqa-med-2019 \(split.rawValue)"), options: options, root: root)
        var samples: [VQASample] = []
        let present = files.filter { FileManager.default.fileExists(atPath: $0.file.path) }
        if present.isEmpty {
            throw DataError.dataset("\(root.path): no VQA-Med-2019 \(split.rawValue) questions; looked for "
                                    + files.map(\.file.path).joined(separator: ", "))
        }
        for missing in files where missing.required && !present.contains(where: { $0.file == missing.file }) {
            try checker.skip(RecordLocation(file: missing.file.path, line: 0),
                             "file missing: its \(missing.file.deletingPathExtension().lastPathComponent) questions are not read")
        }
        for source in present {
            let fields = source.withCategory ? 4 : 3
            for (number, line) in try readLines(source.file) {
                let location = RecordLocation(file: source.file.path, line: number)
                guard let line else { try checker.skip(location, "not valid UTF-8"); continue }
                if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                var parts = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
                guard parts.count == fields else {
                    try checker.skip(location, "expected " + (source.withCategory ? "image_id|category|question|answer"
                                                                                 : "image_id|question|answer")
                                     + ", found \(parts.count) field(s)"); continue
                }
                if source.withCategory {
                    let category = parts.remove(at: 1).trimmingCharacters(in: .whitespaces).lowercased()
                    if !medCategories.contains(category) { continue }     // abnormality: not read (as M3AE)
                }
                let (id, question, answer) = (parts[0].trimmingCharacters(in: .whitespaces), parts[1], parts[2])
                if id.isEmpty || question.trimmingCharacters(in: .whitespaces).isEmpty
                    || answer.trimmingCharacters(in: .whitespaces).isEmpty {
                    try checker.skip(location, "empty image id, question or answer"); continue
                }
                let image = source.images.appendingPathComponent(id + ".jpg")
                if let problem = checker.imageProblem(image, recordPath: id + ".jpg") { try checker.skip(location, problem); continue }
                samples.append(VQASample(image: image, question: question, answer: AnswerVocabulary.normalize(answer),
                                         answerType: .open, source: location))
            }
        }
        return (samples, try checker.finish(accepted: samples.count))
    }
}

/// Finding a data set's folder: the folder given, or the one folder inside it that holds
/// the data set (a download unpacked into a folder of its own).
enum DataRoot {
    /// The folder holding one of the `layouts` (each a list of paths that must all exist) and
    /// the index of the layout found: `given` itself first, then its subfolders in name order.
    static func locate(_ given: URL, holding layouts: [[String]]) -> (URL, Int)? {
        func match(_ dir: URL) -> Int? {
            layouts.firstIndex { $0.allSatisfy { FileManager.default.fileExists(atPath: dir.appendingPathComponent($0).path) } }
        }
        if let index = match(given) { return (given, index) }
        let children = ((try? FileManager.default.contentsOfDirectory(atPath: given.path)) ?? []).sorted()
        for child in children where !child.hasPrefix(".") {
            let dir = given.appendingPathComponent(child)
            if let index = match(dir) { return (dir, index) }
        }
        return nil
    }

    /// Where `locate` looked (for messages): each layout's first path under `given`.
    static func candidates(_ given: URL, _ layouts: [[String]]) -> [URL] {
        layouts.compactMap { $0.first.map { given.appendingPathComponent($0) } }
    }
}

/// A validation split carved out of a training split that has none: seeded (the same
/// questions for every run and rank count), stratified (each stratum keeps its share),
/// `fraction` of each stratum rounded to the nearest count. Rows keep their file order.
enum Holdout {
    static let seed = CounterRandom.hash("umd validation hold-out")

    static func split<Row>(_ rows: [Row], fraction: Double, stratum: (Row) -> String) -> (kept: [Row], held: [Row]) {
        guard fraction > 0 else { return (rows, []) }
        var byStratum: [String: [Int]] = [:]
        for (i, row) in rows.enumerated() { byStratum[stratum(row), default: []].append(i) }
        var held = Set<Int>()
        for key in byStratum.keys.sorted() {
            let members = byStratum[key]!
            let count = Int((Double(members.count) * fraction).rounded())
            let order = seededPermutation(members.count, seed: CounterRandom.key(seed, CounterRandom.hash(key)))
            for position in order.prefix(count) { held.insert(members[position]) }
        }
        return (rows.indices.filter { !held.contains($0) }.map { rows[$0] }, held.sorted().map { rows[$0] })
    }
}
