import Foundation
import Testing
@testable import UMDData

/// Readers on generated sets (exact counts) and on hand-written malformed files.
struct ReaderTests {
    func temporaryDirectory() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("umd-data-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test func generatedSetsReadBackWithExactCounts() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        // 50 images: 40 train, 5 validation, 5 test.
        for kind in SyntheticDataset.Kind.allCases {
            try SyntheticDataset.write(kind: kind, to: root.appendingPathComponent(kind.rawValue), count: 50, seed: 3,
                                       imageSize: 24)
        }
        let roco = root.appendingPathComponent("roco")
        #expect(try ROCODataset.load(root: roco, split: .train).samples.count == 40)
        #expect(try ROCODataset.load(root: roco, split: .validation).samples.count == 5)
        let test = try ROCODataset.load(root: roco, split: .test)
        #expect(test.samples.count == 5 && test.report.skipped.isEmpty)
        #expect(!test.samples[0].text.hasPrefix(" "), "the caption's leading space is stripped")
        #expect(test.samples[0].image.lastPathComponent == "ROCO_00046.jpg")

        // MedICaT: 45 radiology rows (every 10th is not), captions + references (unless asked
        // not to), last 2·k held out.
        let medicat = root.appendingPathComponent("medicat")
        let captionsOnly = try MedICaTDataset.load(root: medicat, split: .train, includeReferences: false, seed: 1,
                                                   validationCount: 5, testCount: 5)
        #expect(captionsOnly.samples.count == 37, "5 asked, a tenth of 45 (4) held out each")
        #expect(try MedICaTDataset.load(root: medicat, split: .test, includeReferences: false, seed: 1, validationCount: 5,
                                        testCount: 3).samples.count == 3)
        // A hold-out larger than a tenth of the texts shrinks to a tenth each (the public sample trains).
        let small = try MedICaTDataset.load(root: medicat, split: .train, includeReferences: false, seed: 1,
                                            validationCount: 1000, testCount: 1000)
        #expect(small.samples.count == 37 && small.report.description.contains("a tenth each at most"))
        // With references: rows with i % 3 != 0 add one ≥3-word reference ("See text." is dropped).
        let withReferences = try MedICaTDataset.load(root: medicat, split: .train, includeReferences: true, seed: 1,
                                                     validationCount: 5, testCount: 5)
        let radiologyWithReference = (0..<50).filter { $0 % 10 != 9 && $0 % 3 != 0 }.count
        let texts = 45 + radiologyWithReference
        #expect(withReferences.samples.count == texts - 2 * min(5, texts / 10))

        let rad = try VQADataset.load(kind: .vqaRad, root: root.appendingPathComponent("vqa-rad"), split: .train)
        #expect(rad.samples.count == 120 && rad.report.skipped.isEmpty)
        #expect(rad.samples.contains { $0.answer == "0" || $0.answer == "1" }, "numeric answers become text")
        let slake = try VQADataset.load(kind: .slake, root: root.appendingPathComponent("slake"), split: .test)
        #expect(slake.samples.count == 15, "3 English questions per image; Chinese ones skipped")
        let med = try VQADataset.load(kind: .vqaMed2019, root: root.appendingPathComponent("vqa-med-2019"), split: .validation)
        #expect(med.samples.count == 15 && med.samples.allSatisfy { $0.answerType == .open && !$0.answer.contains("\r") })
        let melinda = try MELINDADataset.load(root: root.appendingPathComponent("melinda"), split: .train)
        #expect(melinda.samples.count == 40)
        #expect(melinda.labels == melinda.labels.sorted() && melinda.labels.count == 6)
        var coarseOptions = ReaderOptions()
        coarseOptions.labelColumn = "i_meth_label"
        let coarse = try MELINDADataset.load(root: root.appendingPathComponent("melinda"), split: .test, options: coarseOptions)
        #expect(coarse.labels == ["ct", "mri", "x-ray"])
    }

    @Test func malformedROCOLinesAreCountedAndSkipped() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let dir = root.appendingPathComponent("train/radiology")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("images"), withIntermediateDirectories: true)
        let good = try ImageCodec.encode([UInt8](repeating: 50, count: 48), width: 4, height: 4, channels: 3, as: .jpeg)
        for id in ["ROCO_1", "ROCO_2", "ROCO_5"] { try good.write(to: dir.appendingPathComponent("images/\(id).jpg")) }
        try Data("garbage!".utf8).write(to: dir.appendingPathComponent("images/ROCO_4.jpg"))
        var text = Data("ROCO_1\t a good caption\nROCO_2 no tab here\nROCO_3\t image is missing\n".utf8)
        text += Data("ROCO_4\t corrupt image\nROCO_5\t   \n".utf8)
        text += Data([0x52, 0x4F, 0x43, 0x4F, 0x5F, 0x35, 0x09, 0xFF, 0xFE, 0x0A])   // invalid UTF-8
        text += Data("ROCO_5\t another good one".utf8)                               // no final newline
        try text.write(to: dir.appendingPathComponent("captions.txt"))
        let (samples, report) = try ROCODataset.load(root: root, split: .train)
        #expect(samples.map(\.text) == ["a good caption", "another good one"])
        #expect(report.accepted == 2 && report.skipped.count == 5)
        let reasons = report.warnings.joined(separator: "\n")
        for expected in ["captions.txt:2: no tab", "captions.txt:3: image", "is missing", "captions.txt:4: image",
                         "not a PNG or JPEG", "captions.txt:5: empty caption", "captions.txt:6: not valid UTF-8"] {
            #expect(reasons.contains(expected), "missing «\(expected)» in\n\(reasons)")
        }
        // A JPEG cut after its header passes the quick check but not a full decode.
        try good.prefix(good.count / 2).write(to: dir.appendingPathComponent("images/ROCO_1.jpg"))
        #expect(try ROCODataset.load(root: root, split: .train).samples.count == 2)
        let decoded = try ROCODataset.load(root: root, split: .train, options: ReaderOptions(decodeImages: true))
        #expect(decoded.samples.count == 1 && decoded.report.warnings.joined().contains("ROCO_1.jpg: corrupt image: JPEG"))
        #expect { try ROCODataset.load(root: root, split: .train, options: ReaderOptions(strict: true)) } throws: {
            "\($0)".contains("captions.txt:2: no tab") && "\($0)".contains("--strict")
        }
    }

    @Test func aRootWithoutTheFilesListsWhatWasLookedFor() {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        #expect { try ROCODataset.load(root: root, split: .validation) } throws: {
            "\($0)".contains("validation/radiology/captions.txt") && "\($0)".contains("val/radiology/captions.txt")
        }
        #expect { try VQADataset.load(kind: .vqaRad, root: root, split: .test) } throws: {
            "\($0)".contains("trainset.json") && "\($0)".contains("VQA_RAD Dataset Public.json")
        }
        #expect { try VQADataset.load(kind: .vqaMed2019, root: root, split: .train) } throws: {
            "\($0)".contains("ImageClef-2019-VQA-Med-Training") && "\($0)".contains("train/QA")
        }
        #expect { try MELINDADataset.load(root: root, split: .train) } throws: { "\($0)".contains("dev.csv") }
        #expect { try MedICaTDataset.load(root: root, split: .train) } throws: { "\($0)".contains(MedICaTDataset.jsonlName) }
    }

    @Test func malformedVQAAndCSVRecords() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try FileManager.default.createDirectory(at: root.appendingPathComponent("images"), withIntermediateDirectories: true)
        let good = try ImageCodec.encode([UInt8](repeating: 50, count: 48), width: 4, height: 4, channels: 3, as: .png)
        try good.write(to: root.appendingPathComponent("images/a.png"))
        let json = """
        [{"qid": 1, "image_name": "a.png", "question": "Is there a lesion?", "answer": "Yes", "answer_type": "CLOSED  "},
         {"qid": 2, "image_name": "a.png", "question": "how many?", "answer": 2, "answer_type": "OPEN"},
         {"qid": 3, "image_name": "a.png", "question": "what?", "answer_type": "OPEN"},
         {"qid": 4, "image_name": "b.png", "question": "where?", "answer": "left", "answer_type": "OPEN"},
         {"qid": 5, "image_name": "a.png", "question": "odd?", "answer": "x", "answer_type": "MAYBE"}]
        """
        try Data(json.utf8).write(to: root.appendingPathComponent("trainset.json"))
        let (samples, report) = try VQADataset.load(kind: .vqaRad, root: root, split: .train)
        #expect(samples.map(\.answer) == ["yes", "2"] && samples[0].answerType == .closed)
        #expect(report.skipped.count == 3)
        #expect(report.warnings.joined().contains("answer missing") && report.warnings.joined().contains("b.png is missing")
                && report.warnings.joined().contains("MAYBE"))

        // MELINDA with a quoted caption holding a comma and a short row.
        try FileManager.default.createDirectory(at: root.appendingPathComponent("melinda_images"), withIntermediateDirectories: true)
        try good.write(to: root.appendingPathComponent("melinda_images/f.png"))
        let csv = "figure_file,caption,i_meth,p_meth,i_meth_label,p_meth_label\n"
            + "f.png,\"A caption, with \"\"quotes\"\"\",mi,mp,ct,ct plain\nf.png,short row\n"
        try Data(csv.utf8).write(to: root.appendingPathComponent("train.csv"))
        let melinda = try MELINDADataset.load(root: root, split: .train)
        #expect(melinda.samples.map(\.caption) == ["A caption, with \"quotes\""])
        #expect(melinda.report.warnings.first?.contains("train.csv:3: 2 fields, the header has 6") == true)
    }

    /// Issue 27: MELINDA's CSV as pandas reads it — a quoted caption over several lines, a
    /// byte-order mark, an unnamed index column (pandas' `to_csv` default) — and the folder
    /// above the data set's.
    @Test func melindaCSVAsPandasReadsIt() throws {
        let top = FileManager.default.temporaryDirectory.appendingPathComponent("umd-csv-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: top) }
        let root = top.appendingPathComponent("melinda")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("melinda_images"), withIntermediateDirectories: true)
        try ImageCodec.encode([UInt8](repeating: 50, count: 48), width: 4, height: 4, channels: 3, as: .png)
            .write(to: root.appendingPathComponent("melinda_images/f.png"))
        let csv = "\u{FEFF},figure_file,caption,i_meth,p_meth,i_meth_label,p_meth_label\r\n"
            + "0,f.png,\"First line of the caption,\r\nsecond line, with \"\"quotes\"\"\",mi,mp,ct,ct plain\r\n"
            + "1,f.png,One line,mi,mp,mri,mri t1\r\n"
        try Data(csv.utf8).write(to: root.appendingPathComponent("train.csv"))
        let melinda = try MELINDADataset.load(root: top, split: .train)
        #expect(melinda.samples.map(\.caption) == ["First line of the caption,\r\nsecond line, with \"quotes\"", "One line"],
                "\(melinda.report.warnings)")
        #expect(melinda.samples.map(\.source.line) == [2, 4] && melinda.labels == ["ct plain", "mri t1"])
        var options = ReaderOptions()
        options.labelColumn = "i_meth_label"
        #expect(try MELINDADataset.load(root: root, split: .train, options: options).labels == ["ct", "mri"])
    }

    @Test func answersAreNormalised() {
        #expect(AnswerVocabulary.normalize("  The Left Lung. ") == "left lung")
        #expect(AnswerVocabulary.normalize("Yes!") == "yes")
        #expect(AnswerVocabulary.normalize("2.5 cm") == "2.5 cm")
        // Number words as digits and "none" as 0: the VQA evaluation's map, which M3AE applies.
        #expect(AnswerVocabulary.normalize("Two") == "2" && AnswerVocabulary.normalize("none") == "0"
                && AnswerVocabulary.normalize("one lesion") == "1 lesion")
        #expect(AnswerVocabulary.normalize("an MRI, T2-weighted") == "mri t2 weighted")
        #expect(AnswerVocabulary.text(of: NSNumber(value: 3)) == "3" && AnswerVocabulary.text(of: NSNumber(value: 2.5)) == "2.5")
        var vocab = AnswerVocabulary()
        for a in ["Yes", "no", "yes.", "The liver"] { vocab.add(a) }
        #expect(vocab.answers == ["yes", "no", "liver"] && vocab.id(of: "LIVER") == 2)
        let data = try! JSONEncoder().encode(vocab)
        #expect(try! JSONDecoder().decode(AnswerVocabulary.self, from: data) == vocab)
    }
}
