import Foundation

/// The VQA data sets umd evaluates on.
public enum VQAKind: String, Sendable, CaseIterable, Codable {
    case vqaRad = "vqa-rad", slake, vqaMed2019 = "vqa-med-2019"
}

/// Readers of VQA-RAD, SLAKE and VQA-Med-2019 in their released layouts.
public enum VQADataset {
    /// VQA-RAD: `{trainset,valset,testset}.json` + `images/`.
    /// SLAKE: `{train,validate,test}.json` (English rows only) + `imgs/`.
    /// VQA-Med-2019: `{train,val,test}/QA/{Modality,Organ,Plane}.csv` (`id|question|answer`,
    /// all open) + `{split}/images/<id>.jpg`.
    public static func load(kind: VQAKind, root: URL, split: Split,
                            options: ReaderOptions = .init()) throws -> (samples: [VQASample], report: DataReport) {
        var checker = RecordChecker(report: DataReport(dataset: "\(kind.rawValue) \(split.rawValue)"), options: options, root: root)
        var samples: [VQASample] = []
        switch kind {
        case .vqaRad, .slake:
            let names: [Split: String] = kind == .vqaRad
                ? [.train: "trainset.json", .validation: "valset.json", .test: "testset.json"]
                : [.train: "train.json", .validation: "validate.json", .test: "test.json"]
            let file = root.appendingPathComponent(names[split]!)
            guard FileManager.default.fileExists(atPath: file.path) else {
                throw DataError.dataset("\(root.path): no \(kind.rawValue) \(split.rawValue) split; looked for \(file.path)")
            }
            guard let data = FileManager.default.contents(atPath: file.path),
                  let rows = (try? JSONSerialization.jsonObject(with: data)) as? [Any] else {
                throw DataError.dataset("\(file.path): not a JSON list of questions")
            }
            let imageDir = root.appendingPathComponent(kind == .vqaRad ? "images" : "imgs")
            for (index, element) in rows.enumerated() {
                let location = RecordLocation(file: file.path + " entry", line: index + 1)
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
                let typeText = ((row["answer_type"] as? String) ?? "").trimmingCharacters(in: .whitespaces).uppercased()
                guard typeText == "OPEN" || typeText == "CLOSED" else {
                    try checker.skip(location, "answer_type is \"\(typeText)\", expected OPEN or CLOSED"); continue
                }
                let image = imageDir.appendingPathComponent(imageName)
                if let problem = checker.imageProblem(image) { try checker.skip(location, problem); continue }
                samples.append(VQASample(image: image, question: question, answer: AnswerVocabulary.normalize(answer),
                                         answerType: typeText == "OPEN" ? .open : .closed, source: location))
            }
        case .vqaMed2019:
            let splitDir = root.appendingPathComponent(split == .validation ? "val" : split.rawValue)
            let files = ["Modality", "Organ", "Plane"].map { splitDir.appendingPathComponent("QA/\($0).csv") }
            let present = files.filter { FileManager.default.fileExists(atPath: $0.path) }
            if present.isEmpty {
                throw DataError.dataset("\(root.path): no VQA-Med-2019 \(split.rawValue) split; looked for "
                                   + files.map(\.path).joined(separator: ", "))
            }
            for missing in files where !present.contains(missing) {
                try checker.skip(RecordLocation(file: missing.path, line: 0),
                                 "file missing: its \(missing.deletingPathExtension().lastPathComponent) questions are not read")
            }
            for file in present {
                for (number, line) in try readLines(file) {
                    let location = RecordLocation(file: file.path, line: number)
                    guard let line else { try checker.skip(location, "not valid UTF-8"); continue }
                    if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                    let parts = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
                    guard parts.count == 3 else {
                        try checker.skip(location, "expected image_id|question|answer, found \(parts.count) field(s)"); continue
                    }
                    let (id, question, answer) = (parts[0].trimmingCharacters(in: .whitespaces), parts[1], parts[2])
                    if id.isEmpty || question.trimmingCharacters(in: .whitespaces).isEmpty
                        || answer.trimmingCharacters(in: .whitespaces).isEmpty {
                        try checker.skip(location, "empty image id, question or answer"); continue
                    }
                    let image = splitDir.appendingPathComponent("images").appendingPathComponent(id + ".jpg")
                    if let problem = checker.imageProblem(image) { try checker.skip(location, problem); continue }
                    samples.append(VQASample(image: image, question: question, answer: AnswerVocabulary.normalize(answer),
                                             answerType: .open, source: location))
                }
            }
        }
        return (samples, try checker.finish(accepted: samples.count))
    }
}
