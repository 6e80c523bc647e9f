import UMDCore
import Foundation

/// Dataset splits by their common names.
public enum Split: String, Sendable, CaseIterable, Codable {
    case train, validation, test
}

/// ROCO after its fetch script: `ROOT/{train,validation,test}/radiology/captions.txt`
/// (`ROCO_ID<TAB> caption`) and `…/radiology/images/ROCO_ID.jpg`. `val` is accepted for
/// `validation`; `non-radiology` folders only when asked. `root` may also be the repository
/// as cloned (the splits under `data/`) or the folder above it.
public enum ROCODataset {
    public static func load(root given: URL, split: Split, includeNonRadiology: Bool = false,
                            options: ReaderOptions = .init()) throws -> (samples: [ImageTextSample], report: DataReport) {
        let layouts = [["train/radiology"], ["validation/radiology"], ["test/radiology"], ["val/radiology"]]
        let root = DataRoot.locate(given, holding: layouts)?.0
            ?? DataRoot.locate(given.appendingPathComponent("data"), holding: layouts)?.0
            ?? (DataRoot.locate(given, holding: [["data/train/radiology"], ["data/test/radiology"]])?.0)
                .map { $0.appendingPathComponent("data") }
            ?? given
        let splitNames = split == .validation ? ["validation", "val"] : [split.rawValue]
        let categories = includeNonRadiology ? ["radiology", "non-radiology"] : ["radiology"]
        var checker = RecordChecker(report: DataReport(dataset: "ROCO \(split.rawValue)"), options: options, root: root)
        var samples: [ImageTextSample] = []
        var looked: [String] = []
        var found = false
        for category in categories {
            let candidates = splitNames.map { root.appendingPathComponent($0).appendingPathComponent(category) }
            looked += candidates.map { $0.appendingPathComponent("captions.txt").path }
            guard let dir = firstExisting(candidates.map { $0.appendingPathComponent("captions.txt") })?
                .deletingLastPathComponent() else { continue }
            found = true
            let file = dir.appendingPathComponent("captions.txt")
            var firstLineOf: [String: Int] = [:]
            for (number, line) in try readLines(file) {
                let location = RecordLocation(file: file.path, line: number)
                guard let line else { try checker.skip(location, "not valid UTF-8"); continue }
                if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                guard let tab = line.firstIndex(of: "\t") else {
                    try checker.skip(location, "no tab between the image id and the caption"); continue
                }
                let id = String(line[..<tab]).trimmingCharacters(in: .whitespaces)
                let caption = String(line[line.index(after: tab)...]).trimmingCharacters(in: .whitespaces)
                if id.isEmpty { try checker.skip(location, "empty image id"); continue }
                if caption.contains("\t") {
                    try checker.skip(location, "more than one tab (expected ROCO_ID<TAB>caption)"); continue
                }

                if caption.isEmpty { try checker.skip(location, "empty caption for \(id)"); continue }
                let image = dir.appendingPathComponent("images").appendingPathComponent(id + ".jpg")
                if let problem = checker.imageProblem(image, recordPath: id + ".jpg") { try checker.skip(location, problem); continue }
                if let first = firstLineOf[id] {
                    try checker.skip(location, "duplicate image id \(id) (first at line \(first))"); continue
                }
                firstLineOf[id] = number
                samples.append(ImageTextSample(image: image, text: caption, source: location))
            }
        }
        guard found else {
            throw DataError.dataset("\(root.path): no ROCO \(split.rawValue) split found; looked for \(looked.joined(separator: ", "))")
        }
        return (samples, try checker.finish(accepted: samples.count))
    }
}

/// MedICaT: `ROOT/release/s2_full_figures_oa_nonroco_combined_medical_top4_public.jsonl`
/// with images at `ROOT/release/figures/{pdf_hash}_{fig_uri}`. Radiology rows only by
/// default; texts are the caption and each inline reference (`s2orc_references`, as M3AE;
/// `includeReferences` false for captions only); texts under 3 words are dropped; a seeded
/// shuffle puts the last texts into validation and test (M3AE's preprocessing):
/// `validationCount` and `testCount` each, but at most a tenth of the texts each, so a small
/// file (the public sample) still leaves most of its texts to train on.
public enum MedICaTDataset {
    public static let jsonlName = "s2_full_figures_oa_nonroco_combined_medical_top4_public.jsonl"

    public static func load(root: URL, split: Split, includeReferences: Bool = true, radiologyOnly: Bool = true,
                            seed: UInt64 = 0, validationCount: Int = 1000, testCount: Int = 1000,
                            options: ReaderOptions = .init()) throws -> (samples: [ImageTextSample], report: DataReport) {
        // The folder holding release/, or the folder it was unpacked into.
        let root = DataRoot.locate(root, holding: [["release/" + jsonlName]])?.0 ?? root
        let release = root.appendingPathComponent("release")
        let file = release.appendingPathComponent(jsonlName)
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw DataError.dataset("\(root.path): no MedICaT release found; looked for \(file.path)")
        }
        var checker = RecordChecker(report: DataReport(dataset: "MedICaT \(split.rawValue)"), options: options, root: root)
        var all: [ImageTextSample] = []
        for (number, line) in try readLines(file) {
            let location = RecordLocation(file: file.path, line: number)
            guard let line else { try checker.skip(location, "not valid UTF-8"); continue }
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
                try checker.skip(location, "not a JSON object"); continue
            }
            guard let hash = object["pdf_hash"] as? String, let uri = object["fig_uri"] as? String else {
                try checker.skip(location, "pdf_hash or fig_uri missing"); continue
            }
            if radiologyOnly && (object["radiology"] as? Bool) != true { continue }
            var texts: [String] = []
            if let caption = object["s2_caption"] as? String { texts.append(caption) }
            if includeReferences, let references = object["s2orc_references"] as? [Any] {
                texts += references.compactMap { $0 as? String }
            }
            let image = release.appendingPathComponent("figures").appendingPathComponent("\(hash)_\(uri)")
            let usable = texts.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
                .filter { $0.split(whereSeparator: \.isWhitespace).count >= 3 }
            if usable.isEmpty { try checker.skip(location, "no text of at least 3 words"); continue }
            if let problem = checker.imageProblem(image, recordPath: "\(hash)_\(uri)") { try checker.skip(location, problem); continue }
            all += usable.map { ImageTextSample(image: image, text: $0, source: location) }
        }
        // Seeded shuffle, then the tail is validation + test.
        let order = seededPermutation(all.count, seed: seed)
        let shuffled = order.map { all[$0] }
        let (validationSize, testSize) = (min(validationCount, shuffled.count / 10), min(testCount, shuffled.count / 10))
        if validationSize < validationCount || testSize < testCount {
            checker.report.notes.append("\(validationSize) + \(testSize) of \(shuffled.count) texts held out for validation and "
                                        + "test (a tenth each at most; --medicat-holdout asks for \(validationCount))")
        }
        let trainEnd = shuffled.count - validationSize - testSize
        let validationEnd = trainEnd + validationSize
        let samples: [ImageTextSample]
        switch split {
        case .train: samples = Array(shuffled[..<trainEnd])
        case .validation: samples = Array(shuffled[trainEnd..<validationEnd])
        case .test: samples = Array(shuffled[validationEnd...])
        }
        return (samples, try checker.finish(accepted: samples.count))
    }
}

/// ROCO image-text retrieval's evaluation set as M3AE builds it (so published numbers
/// compare): captions of at least 3 words, a seeded shuffle, the first `cap` (2000 in the
/// papers), kept in file order. Fine-tuning's training split takes every caption of ≥ 3 words.
public enum ROCORetrieval {
    static let seed = CounterRandom.hash("umd roco retrieval subset")

    public static func select(_ samples: [ImageTextSample], cap: Int) -> (samples: [ImageTextSample], dropped: Int) {
        let long = samples.filter { $0.text.split(whereSeparator: \.isWhitespace).count >= 3 }
        guard cap < long.count else { return (long, samples.count - long.count) }
        let chosen = seededPermutation(long.count, seed: seed).prefix(cap).sorted()
        return (chosen.map { long[$0] }, samples.count - long.count)
    }
}

/// A permutation of 0..<n from a counter-based shuffle keyed by the seed.
func seededPermutation(_ n: Int, seed: UInt64) -> [Int] {
    var order = Array(0..<n)
    if n < 2 { return order }
    for i in stride(from: n - 1, to: 0, by: -1) {
        let j = Int(CounterRandom.bits(seed, UInt64(i)) % UInt64(i + 1))
        order.swapAt(i, j)
    }
    return order
}
