import Foundation
import Testing
@testable import UMDData

/// Issue 27: every data set read as its download unpacks (`synth --layout official`), with
/// `--data` at the data set's folder or the folder above it, and agreeing with the
/// rearranged layout the papers' code reads (`--layout m3ae`) wherever both hold the same
/// questions. 40 images: 32 train, 4 validation, 4 test (`synth`'s split).
struct OfficialLayoutTests {
    func write(_ kind: SyntheticDataset.Kind, _ layout: SyntheticDataset.Layout, in top: URL) throws -> URL {
        let dir = top.appendingPathComponent("\(kind.rawValue)-\(layout.rawValue)")
        try SyntheticDataset.write(kind: kind, to: dir, count: 40, seed: 3, imageSize: 16, layout: layout)
        return dir
    }

    func temporary() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("umd-official-\(UUID().uuidString)")
    }

    @Test func vqaRadFromTheOSFRelease() throws {
        let top = temporary()
        defer { try? FileManager.default.removeItem(at: top) }
        let official = try write(.vqaRad, .official, in: top), m3ae = try write(.vqaRad, .m3ae, in: top)
        #expect(FileManager.default.fileExists(atPath: official.appendingPathComponent(VQADataset.vqaRadRelease).path))
        let train = try VQADataset.load(kind: .vqaRad, root: official, split: .train)
        let validation = try VQADataset.load(kind: .vqaRad, root: official, split: .validation)
        let test = try VQADataset.load(kind: .vqaRad, root: official, split: .test)
        // 36 images' 3 questions are the release's training set (no validation split in it):
        // 10 % of each answer type is held out, the test set (phrase_type test_*) untouched.
        #expect(train.samples.count + validation.samples.count == 108 && test.samples.count == 12)
        #expect((10...12).contains(validation.samples.count), "\(validation.report)")
        #expect(train.report.description.contains("of the 108 training questions are the validation split"))
        let trainSources = Set(train.samples.map(\.source.line)), validationSources = Set(validation.samples.map(\.source.line))
        #expect(trainSources.isDisjoint(with: validationSources) && trainSources.isDisjoint(with: test.samples.map(\.source.line)))
        // The test set is MEVF's (the same questions as the split files'), and the folder above works.
        let mevfTest = try VQADataset.load(kind: .vqaRad, root: m3ae, split: .test)
        #expect(test.samples.map(\.question) == mevfTest.samples.map(\.question))
        #expect(try VQADataset.load(kind: .vqaRad, root: top, split: .test).samples.count == 12)
        // Another hold-out fraction; 0 trains on everything (and has no validation split).
        var all = ReaderOptions()
        all.validationHoldout = 0
        #expect(try VQADataset.load(kind: .vqaRad, root: official, split: .train, options: all).samples.count == 108)
        #expect(try VQADataset.load(kind: .vqaRad, root: official, split: .validation, options: all).samples.isEmpty)
        // Closed questions keep their share in both parts.
        let closedShare = { (s: [VQASample]) in Double(s.filter { $0.answerType == .closed }.count) / Double(s.count) }
        #expect(abs(closedShare(train.samples) - closedShare(validation.samples)) < 0.15)
    }

    @Test func vqaMed2019FromTheImageCLEFFolders() throws {
        let top = temporary()
        defer { try? FileManager.default.removeItem(at: top) }
        let official = try write(.vqaMed2019, .official, in: top), m3ae = try write(.vqaMed2019, .m3ae, in: top)
        let test = official.appendingPathComponent("\(VQADataset.medTest)/\(VQADataset.medTestFile)")
        #expect(try Data(contentsOf: test).last != 0x0A, "the released test file ends without a newline")
        for (split, count) in [(Split.train, 96), (.validation, 12), (.test, 12)] {
            let read = try VQADataset.load(kind: .vqaMed2019, root: official, split: split)
            #expect(read.samples.count == count && read.report.skipped.isEmpty, "\(split): \(read.report)")
            let other = try VQADataset.load(kind: .vqaMed2019, root: m3ae, split: split)
            #expect(Set(read.samples.map { "\($0.question)|\($0.answer)" }.filter { !$0.contains("scan") })
                    .isSubset(of: Set(other.samples.map { "\($0.question)|\($0.answer)" })), "\(split)")
        }
        // Abnormality questions are not read; `#` alternatives are one class (as M3AE).
        let testSamples = try VQADataset.load(kind: .vqaMed2019, root: top.appendingPathComponent("vqa-med-2019-official"),
                                              split: .test).samples
        #expect(!testSamples.contains { $0.question.contains("abnormal") })
        #expect(testSamples.contains { $0.answer.hasSuffix(" scan") && $0.answer.split(separator: " ").count >= 2 })
    }

    @Test func rocoSlakeAndMelindaAsUnpacked() throws {
        let top = temporary()
        defer { try? FileManager.default.removeItem(at: top) }
        let roco = try write(.roco, .official, in: top)
        #expect(FileManager.default.fileExists(atPath: roco.appendingPathComponent("data/train/radiology/captions.txt").path))
        #expect(try ROCODataset.load(root: roco, split: .train).samples.count == 32)
        #expect(try ROCODataset.load(root: roco.appendingPathComponent("data"), split: .test).samples.count == 4)
        let slake = try write(.slake, .official, in: top)
        #expect(try VQADataset.load(kind: .slake, root: slake, split: .train).samples.count == 96)
        #expect(try VQADataset.load(kind: .slake, root: slake.appendingPathComponent("Slake1.0"), split: .test).samples.count == 12)
        let melinda = try write(.melinda, .official, in: top)
        let read = try MELINDADataset.load(root: melinda, split: .train)
        #expect(read.samples.count == 32 && read.report.skipped.isEmpty, "\(read.report.warnings)")
        #expect(read.samples.contains { $0.caption.contains("\n") }, "a caption over two lines is kept whole")
        #expect(read.labels.count == 6)
        // MedICaT's release/ folder, found from the folder it was unpacked into.
        let medicat = try write(.medicat, .official, in: top.appendingPathComponent("unpacked"))
        #expect(try MedICaTDataset.load(root: top.appendingPathComponent("unpacked"), split: .train).samples.count
                == (try MedICaTDataset.load(root: medicat, split: .train).samples.count))
    }

    /// ROCO retrieval's evaluation subset as M3AE builds it: ≥ 3-word captions, a seeded
    /// shuffle, the first `cap` — the same subset every time.
    @Test func rocoRetrievalSubsetIsSeededAndFiltered() throws {
        let top = temporary()
        defer { try? FileManager.default.removeItem(at: top) }
        let roco = try write(.roco, .m3ae, in: top)
        let captions = roco.appendingPathComponent("test/radiology/captions.txt")
        var text = try String(contentsOf: captions, encoding: .utf8)
        text += "ROCO_09999\t two words\n"
        try text.write(to: captions, atomically: true, encoding: .utf8)
        try Data([0xFF, 0xD8, 0xFF, 0xE0]).write(to: roco.appendingPathComponent("test/radiology/images/ROCO_09999.jpg"))
        let all = try SampleTable.task(.rocoRetrieval, root: roco, split: .test, retrievalCap: 100)
        #expect(all.count == 4 && !all.texts.contains("two words"))
        let three = try SampleTable.task(.rocoRetrieval, root: roco, split: .test, retrievalCap: 3)
        let again = try SampleTable.task(.rocoRetrieval, root: roco, split: .test, retrievalCap: 3)
        #expect(three.count == 3 && three.texts == again.texts)
        #expect(three.reports[0].description.contains("seeded shuffle"))
    }
}
