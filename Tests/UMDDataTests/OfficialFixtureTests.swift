import Foundation
import Testing
@testable import UMDData

/// Issue 27: hand-written files in the releases' own formats (Tests/Fixtures/official-layouts,
/// see its README), read as a user's download would be — counts, classes and the quirks of
/// each format. No images in the fixtures: image checks are off.
struct OfficialFixtureTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/official-layouts")
    var noImages: ReaderOptions { ReaderOptions(checkImages: false) }

    @Test func vqaRadOSFRelease() throws {
        var options = noImages
        options.validationHoldout = 0
        let data = Self.root.appendingPathComponent("vqa-rad")
        let train = try VQADataset.load(kind: .vqaRad, root: data, split: .train, options: options)
        let test = try VQADataset.load(kind: .vqaRad, root: data, split: .test, options: options)
        // freeform + para train, test_freeform + test_para test (MEVF's split).
        #expect(train.samples.map(\.answer) == ["yes", "right", "2", "yes"] && train.report.skipped.isEmpty)
        #expect(test.samples.map(\.answer) == ["no", "2"], "the number word is a digit, as M3AE's answers")
        #expect(test.samples.map(\.answerType) == [.closed, .open])
        #expect(train.samples[0].image.path.hasSuffix("VQA_RAD Image Folder/synpic54610.jpg"))
        // With the default hold-out, one of the 4 training questions is the validation split.
        let validation = try VQADataset.load(kind: .vqaRad, root: data, split: .validation, options: noImages)
        let held = try VQADataset.load(kind: .vqaRad, root: data, split: .train, options: noImages)
        #expect(validation.samples.count + held.samples.count == 4)
        let table = try SampleTable.task(.vqaRad, root: Self.root, split: .train, options: noImages)
        #expect(table.classes == ["yes", "right", "2", "no"], "the folder above the data set's works too")
    }

    @Test func vqaMed2019ImageCLEFRelease() throws {
        let data = Self.root.appendingPathComponent("vqa-med-2019")
        let train = try VQADataset.load(kind: .vqaMed2019, root: data, split: .train, options: noImages)
        #expect(train.samples.count == 5 && train.report.skipped.isEmpty, "\(train.report.warnings)")
        #expect(train.samples.map(\.answer).contains("gastrointestinal"), "the last line without a newline is read")
        #expect(!train.samples.contains { $0.answer == "meningioma" }, "the abnormality category is not read")
        let validation = try VQADataset.load(kind: .vqaMed2019, root: data, split: .validation, options: noImages)
        #expect(validation.samples.map(\.answer) == ["xr plain film", "pa", "lung mediastinum pleura"])
        let test = try VQADataset.load(kind: .vqaMed2019, root: data, split: .test, options: noImages)
        #expect(test.samples.map(\.answer) == ["us ultrasound", "longitudinal", "skull and contents"],
                "`#` alternatives are one class; abnormality left out")
        #expect(test.samples[0].image.path.hasSuffix("VQAMed2019Test/VQAMed2019_Test_Images/synpic300.jpg"))
    }

    @Test func melindaAsPandasWritesIt() throws {
        let data = Self.root.appendingPathComponent("melinda")
        let train = try MELINDADataset.load(root: data, split: .train, options: noImages)
        #expect(train.samples.count == 2 && train.report.skipped.isEmpty, "\(train.report.warnings)")
        #expect(train.samples[0].caption == "Axial CT, with contrast: a \"ring-enhancing\" lesion\nin the left lobe.")
        #expect(train.labels == ["ct contrast", "ct plain", "mri plain", "x-ray plain"])
        var coarse = noImages
        coarse.labelColumn = "i_meth_label"
        #expect(try MELINDADataset.load(root: data, split: .test, options: coarse).labels == ["ct", "mri", "x-ray"])
    }
}
