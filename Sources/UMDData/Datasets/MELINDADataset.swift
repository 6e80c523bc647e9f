import Foundation

/// MELINDA: `{train,dev,test}.csv` with a header naming figure_file, caption, i_meth,
/// p_meth, i_meth_label, p_meth_label (read as pandas reads them: quoted fields may hold
/// commas, doubled quotes and newlines; a BOM and an unnamed index column are fine); images
/// under `melinda_images/`. Labels are indexed by the sorted unique values of the chosen
/// column (`ReaderOptions.labelColumn`: `p_meth_label`, the default, or `i_meth_label`) over
/// all splits. `root` may be the folder above the data set's.
public enum MELINDADataset {
    public static let labelColumns = ["p_meth_label", "i_meth_label"]

    public static func load(root given: URL, split: Split, options: ReaderOptions = .init())
        throws -> (samples: [ClassificationSample], labels: [String], report: DataReport) {
        let labelColumn = options.labelColumn
        let names: [Split: String] = [.train: "train.csv", .validation: "dev.csv", .test: "test.csv"]
        let root = DataRoot.locate(given, holding: [["train.csv"], ["dev.csv"], ["test.csv"]])?.0 ?? given
        var checker = RecordChecker(report: DataReport(dataset: "MELINDA \(split.rawValue)"), options: options, root: root)
        // The label set comes from every split present, so indices agree across splits.
        var labelValues = Set<String>()
        var rowsOfSplit: [(RecordLocation, [String: String])] = []
        var anyFound = false
        for s in Split.allCases {
            let file = root.appendingPathComponent(names[s]!)
            guard FileManager.default.fileExists(atPath: file.path) else { continue }
            anyFound = true
            // Bad rows of other splits are reported when those splits are read.
            var otherSplit = RecordChecker(report: DataReport(dataset: ""), options: ReaderOptions(strict: false), root: root)
            let rows = s == split ? try CSV.rows(file, checker: &checker) : try CSV.rows(file, checker: &otherSplit)
            for (_, row) in rows { if let v = row[labelColumn], !v.isEmpty { labelValues.insert(v) } }
            if s == split { rowsOfSplit = rows }
        }
        guard anyFound else {
            throw DataError.dataset("\(root.path): no MELINDA files; looked for " + names.values.sorted().map { root.appendingPathComponent($0).path }
                .joined(separator: ", "))
        }
        guard FileManager.default.fileExists(atPath: root.appendingPathComponent(names[split]!).path) else {
            throw DataError.dataset("\(root.path): no MELINDA \(split.rawValue) split; looked for \(root.appendingPathComponent(names[split]!).path)")
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
                try checker.skip(location, row[labelColumn] == nil ? "no \(labelColumn) column (--label-column)"
                                                                  : "no \(labelColumn) value"); continue
            }
            let image = root.appendingPathComponent("melinda_images").appendingPathComponent(figure)
            if let problem = checker.imageProblem(image, recordPath: figure) { try checker.skip(location, problem); continue }
            samples.append(ClassificationSample(image: image, caption: caption, label: label, source: location))
        }
        return (samples, labels, try checker.finish(accepted: samples.count))
    }
}

/// A small RFC 4180 CSV reader: quoted fields with doubled quotes and embedded newlines.
enum CSV {
    static func rows(_ file: URL, checker: inout RecordChecker) throws -> [(RecordLocation, [String: String])] {
        guard let data = FileManager.default.contents(atPath: file.path) else {
            throw DataError.dataset("\(file.path): cannot read the file")
        }
        guard var text = String(data: data, encoding: .utf8) else {
            throw DataError.dataset("\(file.path): not valid UTF-8")
        }
        if text.first == "\u{FEFF}" { text.removeFirst() }            // a byte-order mark (Excel, pandas utf-8-sig)
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
                    if c == "\n" || c == "\r\n" || c == "\r" { line += 1 }
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
        if inQuotes {
            // A quote opened and never closed: everything after it would be one field.
            throw DataError.dataset("\(file.path):\(recordLine): a quoted field is never closed (an unbalanced quote "
                                    + "swallows the rest of the file); fix the quote or remove the row")
        }
        if !field.isEmpty || !record.isEmpty { record.append(field); records.append((recordLine, record)) }
        guard let header = records.first?.1 else { throw DataError.dataset("\(file.path): empty file (a header row is needed)") }
        let columns = header.map { $0.trimmingCharacters(in: .whitespaces) }
        for required in ["figure_file", "caption"] where !columns.contains(required) {
            throw DataError.dataset("\(file.path):1: the header lacks the column \(required) (found: \(columns.joined(separator: ", ")))")
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
