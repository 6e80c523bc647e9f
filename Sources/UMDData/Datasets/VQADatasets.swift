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
        var checker = RecordChecker(report: DataReport(dataset: "\(kind.rawValue) \(split.rawValue)"), options: options)
        var samples: [VQASample] = []
        switch kind {
        case .vqaRad, .slake:
            let names: [Split: String] = kind == .vqaRad
                ? [.train: "trainset.json", .validation: "valset.json", .test: "testset.json"]
                : [.train: "train.json", .validation: "validate.json", .test: "test.json"]
            let file = root.appendingPathComponent(names[split]!)
            guard FileManager.default.fileExists(atPath: file.path) else {
                throw DatasetError("\(root.path): no \(kind.rawValue) \(split.rawValue) split; looked for \(file.path)")
            }
            guard let data = FileManager.default.contents(atPath: file.path),
                  let rows = (try? JSONSerialization.jsonObject(with: data)) as? [Any] else {
                throw DatasetError("\(file.path): not a JSON list of questions")
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
                guard let rawAnswer = row["answer"], let answer = AnswerVocabulary.text(of: rawAnswer) else {
                    try checker.skip(location, "answer missing"); continue
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
                throw DatasetError("\(root.path): no VQA-Med-2019 \(split.rawValue) split; looked for "
                                   + files.map(\.path).joined(separator: ", "))
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
        checker.report.accepted = samples.count
        return (samples, checker.report)
    }
}

/// The VQA answer vocabulary: normalised answers over all splits in order of first
/// appearance, saved with a run so evaluation uses the same map.
public struct AnswerVocabulary: Sendable, Equatable, Codable {
    public private(set) var answers: [String] = []
    private var index: [String: Int] = [:]

    public init(answers: [String] = []) { for a in answers { add(a) } }

    public mutating func add(_ answer: String) {
        let a = Self.normalize(answer)
        if index[a] == nil { index[a] = answers.count; answers.append(a) }
    }

    public func id(of answer: String) -> Int? { index[Self.normalize(answer)] }
    public var count: Int { answers.count }

    enum CodingKeys: String, CodingKey { case answers }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(answers: try c.decode([String].self, forKey: .answers))
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(answers, forKey: .answers)
    }

    static let articles: Set<String> = ["a", "an", "the"]

    /// Lower-case, trimmed, punctuation removed (a decimal point between digits kept),
    /// articles dropped, whitespace collapsed.
    public static func normalize(_ answer: String) -> String {
        let lower = answer.lowercased()
        var cleaned = ""
        let chars = Array(lower)
        for (i, c) in chars.enumerated() {
            if c.isLetter || c.isNumber || c.isWhitespace {
                cleaned.append(c)
            } else if c == ".", i > 0, i + 1 < chars.count, chars[i - 1].isNumber, chars[i + 1].isNumber {
                cleaned.append(c)
            } else {
                cleaned.append(" ")
            }
        }
        return cleaned.split(whereSeparator: \.isWhitespace).map(String.init)
            .filter { !articles.contains($0) }.joined(separator: " ")
    }

    /// An answer as text: strings as they are, numbers as their shortest text (2, 2.5).
    public static func text(of value: Any) -> String? {
        if let s = value as? String { return s }
        if let n = value as? NSNumber {
            let d = n.doubleValue
            return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d)
        }
        return nil
    }
}

/// MELINDA: `{train,dev,test}.csv` with a header naming figure_file, caption, i_meth,
/// p_meth, i_meth_label, p_meth_label; images under `melinda_images/`. Labels are indexed
/// by the sorted unique values of the chosen column over all splits.
public enum MELINDADataset {
    public static func load(root: URL, split: Split, labelColumn: String = "p_meth_label",
                            options: ReaderOptions = .init())
        throws -> (samples: [ClassificationSample], labels: [String], report: DataReport) {
        let names: [Split: String] = [.train: "train.csv", .validation: "dev.csv", .test: "test.csv"]
        var checker = RecordChecker(report: DataReport(dataset: "MELINDA \(split.rawValue)"), options: options)
        // The label set comes from every split present, so indices agree across splits.
        var labelValues = Set<String>()
        var rowsOfSplit: [(RecordLocation, [String: String])] = []
        var anyFound = false
        for s in Split.allCases {
            let file = root.appendingPathComponent(names[s]!)
            guard FileManager.default.fileExists(atPath: file.path) else { continue }
            anyFound = true
            // Bad rows of other splits are reported when those splits are read.
            var otherSplit = RecordChecker(report: DataReport(dataset: ""), options: ReaderOptions(strict: false))
            let rows = s == split ? try CSV.rows(file, checker: &checker) : try CSV.rows(file, checker: &otherSplit)
            for (_, row) in rows { if let v = row[labelColumn], !v.isEmpty { labelValues.insert(v) } }
            if s == split { rowsOfSplit = rows }
        }
        guard anyFound else {
            throw DatasetError("\(root.path): no MELINDA files; looked for " + names.values.sorted().map { root.appendingPathComponent($0).path }
                .joined(separator: ", "))
        }
        guard FileManager.default.fileExists(atPath: root.appendingPathComponent(names[split]!).path) else {
            throw DatasetError("\(root.path): no MELINDA \(split.rawValue) split; looked for \(root.appendingPathComponent(names[split]!).path)")
        }
        let labels = labelValues.sorted()
        let labelIndex = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
        var samples: [ClassificationSample] = []
        for (location, row) in rowsOfSplit {
            guard let figure = row["figure_file"], !figure.isEmpty else { try checker.skip(location, "figure_file is empty"); continue }
            guard let caption = row["caption"], !caption.trimmingCharacters(in: .whitespaces).isEmpty else {
                try checker.skip(location, "empty caption"); continue
            }
            guard let value = row[labelColumn], let label = labelIndex[value] else {
                try checker.skip(location, "no \(labelColumn) value"); continue
            }
            let image = root.appendingPathComponent("melinda_images").appendingPathComponent(figure)
            if let problem = checker.imageProblem(image) { try checker.skip(location, problem); continue }
            samples.append(ClassificationSample(image: image, caption: caption, label: label, source: location))
        }
        checker.report.accepted = samples.count
        return (samples, labels, checker.report)
    }
}

/// A small RFC 4180 CSV reader: quoted fields with doubled quotes and embedded newlines.
enum CSV {
    static func rows(_ file: URL, checker: inout RecordChecker) throws -> [(RecordLocation, [String: String])] {
        guard let data = FileManager.default.contents(atPath: file.path) else {
            throw DatasetError("\(file.path): cannot read the file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw DatasetError("\(file.path): not valid UTF-8")
        }
        var records: [(Int, [String])] = []
        var field = "", record: [String] = [], inQuotes = false, line = 1, recordLine = 1
        var iterator = Array(text).makeIterator()
        var pending: Character? = nil
        func next() -> Character? {
            if let p = pending { pending = nil; return p }
            return iterator.next()
        }
        while let c = next() {
            if inQuotes {
                if c == "\"" {
                    if let d = next() { if d == "\"" { field.append("\"") } else { inQuotes = false; pending = d } } else { inQuotes = false }
                } else {
                    if c == "\n" { line += 1 }
                    field.append(c)
                }
            } else if c == "\"" && field.isEmpty {
                inQuotes = true
            } else if c == "," {
                record.append(field); field = ""
            } else if c == "\n" || c == "\r\n" || c == "\r" {
                record.append(field); field = ""
                if !(record.count == 1 && record[0].isEmpty) { records.append((recordLine, record)) }
                record = []
                line += 1
                recordLine = line
            } else {
                field.append(c)
            }
        }
        if !field.isEmpty || !record.isEmpty { record.append(field); records.append((recordLine, record)) }
        guard let header = records.first?.1 else { throw DatasetError("\(file.path): empty file (a header row is needed)") }
        let columns = header.map { $0.trimmingCharacters(in: .whitespaces) }
        for required in ["figure_file", "caption"] where !columns.contains(required) {
            throw DatasetError("\(file.path):1: the header lacks the column \(required) (found: \(columns.joined(separator: ", ")))")
        }
        var out: [(RecordLocation, [String: String])] = []
        for (number, values) in records.dropFirst() {
            let location = RecordLocation(file: file.path, line: number)
            guard values.count == columns.count else {
                try checker.skip(location, "\(values.count) fields, the header has \(columns.count)"); continue
            }
            out.append((location, Dictionary(zip(columns, values), uniquingKeysWith: { a, _ in a })))
        }
        return out
    }
}
