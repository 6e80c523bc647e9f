import Foundation
import Testing
@testable import UMDData

/// Records that point outside their data set, at things that are not image files, or at
/// images whose header claims an absurd size: counted bad records (errors with --strict),
/// never a read outside the root, a hang or a memory bomb.
struct HardeningReaderTests {
    func temporaryDirectory() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("umd-harden-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A VQA-RAD set whose training file names these images (plus one good one).
    func vqaRad(_ root: URL, imageNames: [String]) throws -> URL {
        let data = root.appendingPathComponent("vqa-rad")
        try SyntheticDataset.write(kind: .vqaRad, to: data, count: 10, seed: 1, imageSize: 16)
        let good = try FileManager.default.contentsOfDirectory(atPath: data.appendingPathComponent("images").path).sorted()[0]
        let rows = ([good] + imageNames).enumerated().map { i, name -> [String: Any] in
            ["qid": i, "image_name": name, "question": "is this normal?", "answer": "yes", "answer_type": "CLOSED"]
        }
        try JSONSerialization.data(withJSONObject: rows).write(to: data.appendingPathComponent("trainset.json"))
        return data
    }

    @Test func recordPathsLeavingTheDataRootAreRefusedEvenWithoutImageChecks() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let outside = root.appendingPathComponent("outside")
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        try Data([0xFF, 0xD8, 0xFF, 0xE0]).write(to: outside.appendingPathComponent("secret.jpg"))
        // A record's own path may not leave the root: `..` or absolute, judged on its text.
        let data = try vqaRad(root, imageNames: ["../../outside/secret.jpg", "/etc/passwd", "a/../../outside/secret.jpg"])
        for check in [true, false] {
            let (samples, report) = try VQADataset.load(kind: .vqaRad, root: data, split: .train,
                                                        options: ReaderOptions(checkImages: check))
            #expect(samples.count == 1, "only the good record is kept (checkImages \(check))")
            #expect(report.skipped.count == 3)
            #expect(report.skipped.allSatisfy { $0.reason.contains("leaves the data set root") }, "\(report.warnings)")
        }
        #expect(throws: DataError.self) {
            try VQADataset.load(kind: .vqaRad, root: data, split: .train, options: ReaderOptions(strict: true))
        }
    }

    /// Issue 27: a user who links the image folder they downloaded into the data set's folder
    /// (`ln -s ../downloads/VQA_RAD\ Image\ Folder images`) trains on it: links inside the
    /// root are the user's to make.
    @Test func aLinkedImageFolderIsRead() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let data = try vqaRad(root, imageNames: [])
        let downloads = root.appendingPathComponent("downloads/VQA_RAD Image Folder")
        try FileManager.default.createDirectory(at: downloads.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.moveItem(at: data.appendingPathComponent("images"), to: downloads)
        try FileManager.default.createSymbolicLink(atPath: data.appendingPathComponent("images").path,
                                                   withDestinationPath: "../downloads/VQA_RAD Image Folder")
        let (samples, report) = try VQADataset.load(kind: .vqaRad, root: data, split: .train)
        #expect(samples.count == 1 && report.skipped.isEmpty, "\(report.warnings)")
    }

    @Test func aFIFOADirectoryAndASymlinkLoopAreNamedNotOpened() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let data = try vqaRad(root, imageNames: ["pipe.jpg", "folder.jpg", "loop.jpg"])
        let images = data.appendingPathComponent("images")
        #expect(mkfifo(images.appendingPathComponent("pipe.jpg").path, 0o644) == 0)
        try FileManager.default.createDirectory(at: images.appendingPathComponent("folder.jpg"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: images.appendingPathComponent("loop.jpg").path,
                                                   withDestinationPath: images.appendingPathComponent("loop.jpg").path)
        let (samples, report) = try VQADataset.load(kind: .vqaRad, root: data, split: .train)
        #expect(samples.count == 1)
        let reasons = report.skipped.map(\.reason).joined(separator: "\n")
        #expect(reasons.contains("pipe.jpg is a FIFO (named pipe), not an image file"), "\(reasons)")
        #expect(reasons.contains("folder.jpg is a directory, not an image file"), "\(reasons)")
        #expect(reasons.contains("loop.jpg is a symbolic link loop"), "\(reasons)")
        // Decoding a FIFO directly is an error too, not a blocked open.
        #expect(throws: DataError.self) { try ImageCodec.decode(file: images.appendingPathComponent("pipe.jpg")) }
    }

    /// A 2.3 KB JPEG whose header said 65500x65500 took 12.6 GB before it was skipped.
    @Test func anImageWhoseHeaderClaimsAHugeSizeIsRefusedBeforeAllocating() throws {
        let small = try ImageCodec.encode([UInt8](repeating: 128, count: 16 * 16 * 3), width: 16, height: 16, channels: 3,
                                          as: .jpeg)
        var bytes = [UInt8](small)
        // SOF0 (FF C0): length(2) precision(1) height(2) width(2).
        let sof = try #require((0..<(bytes.count - 1)).first { bytes[$0] == 0xFF && bytes[$0 + 1] == 0xC0 })
        bytes[sof + 5] = 0xFF; bytes[sof + 6] = 0xDC; bytes[sof + 7] = 0xFF; bytes[sof + 8] = 0xDC   // 65500 x 65500
        do {
            _ = try ImageCodec.decode(Data(bytes), path: "huge.jpg")
            Issue.record("a 65500x65500 header was decoded")
        } catch {
            #expect("\(error)".contains("65500x65500, more than the limit of 64000000 pixels"), "\(error)")
        }
        // The same holds for PNG (IHDR width and height, CRC recomputed).
        let png = try ImageCodec.encode([UInt8](repeating: 1, count: 8 * 8 * 3), width: 8, height: 8, channels: 3, as: .png)
        var p = [UInt8](png)
        for (offset, value) in [(16, UInt32(100_000)), (20, UInt32(100_000))] {
            for k in 0..<4 { p[offset + k] = UInt8(truncatingIfNeeded: value >> (24 - 8 * UInt32(k))) }
        }
        let crc = crc32(Array(p[12..<29]))
        for k in 0..<4 { p[29 + k] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * UInt32(k))) }
        do {
            _ = try ImageCodec.decode(Data(p), path: "huge.png")
            Issue.record("a 100000x100000 PNG header was decoded")
        } catch {
            #expect("\(error)".contains("100000x100000, more than the limit"), "\(error)")
        }
        #expect(throws: DataError.self) { try ImageCodec.decode(Data(small), path: "small.jpg", maxPixels: 100) }
        #expect(try ImageCodec.decode(Data(small), path: "small.jpg").width == 16)
    }

    /// Was: 80 per-line warnings then "0 samples"; a swallowed MELINDA row; a silently
    /// dropped VQA-Med category; extra tabs, duplicate ids and empty answers unreported.
    @Test func smallerDataDefectsAreNamed() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        for kind in [SyntheticDataset.Kind.roco, .melinda, .vqaMed2019, .vqaRad] {
            try SyntheticDataset.write(kind: kind, to: root.appendingPathComponent(kind.rawValue), count: 20, seed: 2,
                                       imageSize: 16)
        }
        // A missing images/ folder: one error naming it.
        let roco = root.appendingPathComponent("roco")
        try FileManager.default.removeItem(at: roco.appendingPathComponent("train/radiology/images"))
        do {
            _ = try ROCODataset.load(root: roco, split: .train)
            Issue.record("a missing image folder was not an error")
        } catch {
            #expect("\(error)".contains("the image folder \(roco.path)/train/radiology/images does not exist"), "\(error)")
        }
        // ROCO: an extra tab and a duplicate id.
        let captions = roco.appendingPathComponent("test/radiology/captions.txt")
        var lines = try String(contentsOf: captions, encoding: .utf8).split(separator: "\n").map(String.init)
        lines.append(lines[0])
        lines[1] += "\textra field"
        try (lines.joined(separator: "\n") + "\n").write(to: captions, atomically: true, encoding: .utf8)
        let rocoTest = try ROCODataset.load(root: roco, split: .test)
        let rocoReasons = rocoTest.report.warnings.joined(separator: "\n")
        #expect(rocoReasons.contains("more than one tab") && rocoReasons.contains("duplicate image id"), "\(rocoReasons)")
        // MELINDA: an unbalanced quote swallowing the next row.
        let melinda = root.appendingPathComponent("melinda")
        let csv = melinda.appendingPathComponent("train.csv")
        var rows = try String(contentsOf: csv, encoding: .utf8).split(separator: "\n").map(String.init)
        let before = rows.count - 1
        rows[2] = rows[2].replacingOccurrences(of: ",", with: ",\"", options: [], range: rows[2].range(of: ","))
        try (rows.joined(separator: "\n") + "\n").write(to: csv, atomically: true, encoding: .utf8)
        // The quote runs on to the next quote in the file: the merged record has the wrong
        // number of fields and is reported, not silently kept.
        let m = try MELINDADataset.load(root: melinda, split: .train)
        #expect(m.samples.count + m.report.skipped.count >= before - 1 && !m.report.skipped.isEmpty,
                "the damaged row is reported, not silently merged: \(m.report.warnings)")
        // With no quote after it, the field never closes: an error naming the line (pandas: "EOF inside string").
        var unclosed = rows
        unclosed = unclosed.map { $0.replacingOccurrences(of: "\"", with: "") }
        unclosed[2] = unclosed[2].replacingOccurrences(of: ",", with: ",\"", options: [], range: unclosed[2].range(of: ","))
        try (unclosed.joined(separator: "\n") + "\n").write(to: csv, atomically: true, encoding: .utf8)
        #expect { try MELINDADataset.load(root: melinda, split: .train) }
            throws: { "\($0)".contains("train.csv:3: a quoted field is never closed") }
        // VQA-Med: a missing category file.
        let med = root.appendingPathComponent("vqa-med-2019")
        try FileManager.default.removeItem(at: med.appendingPathComponent("train/QA/Plane.csv"))
        let vm = try VQADataset.load(kind: .vqaMed2019, root: med, split: .train)
        #expect(vm.report.warnings.joined().contains("Plane.csv:0") || vm.report.warnings.joined().contains("Plane.csv: file missing"),
                "\(vm.report.warnings)")
        #expect(throws: DataError.self) {
            try VQADataset.load(kind: .vqaMed2019, root: med, split: .train, options: ReaderOptions(strict: true))
        }
        // VQA-RAD: an empty answer.
        let rad = root.appendingPathComponent("vqa-rad")
        var questions = try JSONSerialization.jsonObject(with: Data(contentsOf: rad.appendingPathComponent("trainset.json"))) as! [[String: Any]]
        questions[0]["answer"] = " "
        try JSONSerialization.data(withJSONObject: questions).write(to: rad.appendingPathComponent("trainset.json"))
        let vr = try VQADataset.load(kind: .vqaRad, root: rad, split: .train)
        #expect(vr.report.warnings.joined().contains("answer missing or empty"), "\(vr.report.warnings)")
    }

    func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c >> 1) ^ (0xEDB8_8320 & (0 &- (c & 1))) }
        }
        return ~c
    }
    // Issue 24 item 20: one record whose image path has a missing subfolder, or names an
    // absolute path, aborted the whole data set ("every record of this file names an image there").
    @Test func oneRecordInAMissingFolderIsSkippedNotFatal() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let data = try vqaRad(root, imageNames: ["/etc/passwd", "nosuchdir/synpic1.jpg"])
        let read = try VQADataset.load(kind: .vqaRad, root: data, split: .train)
        #expect(read.samples.count == 1 && read.report.skipped.count == 2, "\(read.report.warnings)")
        let roco = root.appendingPathComponent("roco")
        try SyntheticDataset.write(kind: .roco, to: roco, count: 10, seed: 1, imageSize: 16)
        let captions = roco.appendingPathComponent("train/radiology/captions.txt")
        try (String(contentsOf: captions, encoding: .utf8) + "nosuchdir/ROCO_00018\ta caption\n")
            .write(to: captions, atomically: true, encoding: .utf8)
        let before = try ROCODataset.load(root: roco, split: .train)
        #expect(before.report.skipped.count == 1 && before.report.warnings[0].contains("nosuchdir"), "\(before.report.warnings)")
        #expect(before.samples.count > 0)
    }

    /// A PNG or JPEG file whose header declares `width` x `height` (the body stays 16x16).
    func lyingImage(_ format: ImageCodec.Format, width: Int, height: Int) throws -> Data {
        var bytes = [UInt8](try ImageCodec.encode([UInt8](repeating: 90, count: 16 * 16 * 3), width: 16, height: 16, channels: 3,
                                                   as: format))
        let be: (Int) -> [UInt8] = { [UInt8(($0 >> 8) & 0xFF), UInt8($0 & 0xFF)] }
        if format == .png {
            bytes.replaceSubrange(16..<24, with: [0, 0] + be(width) + [0, 0] + be(height))
        } else {
            let sof = try #require((2..<(bytes.count - 1)).first { bytes[$0] == 0xFF && bytes[$0 + 1] == 0xC0 })
            bytes.replaceSubrange((sof + 5)..<(sof + 9), with: be(height) + be(width))
        }
        return Data(bytes)
    }

    // Issue 24 item 21: a header claiming 20000x20000 passed the read-time check and stopped
    // the run at its first batch; the size is in the first bytes, checked when the table is built.
    @Test func aHeaderClaimingTooManyPixelsIsSkippedWhenReading() throws {
        for format in [ImageCodec.Format.png, .jpeg] {
            let honest = try lyingImage(format, width: 16, height: 16)
            let url = temporaryDirectory().appendingPathComponent("x.\(format.rawValue)")
            defer { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) }
            try honest.write(to: url)
            let handle = try FileHandle(forReadingFrom: url)
            #expect(ImageCodec.declaredSize(handle).map { [$0.width, $0.height] } == [16, 16])
            try handle.close()
            let root = temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: root) }
            let data = try vqaRad(root, imageNames: ["huge.\(format.rawValue)"])
            try lyingImage(format, width: 20000, height: 20000).write(to: data.appendingPathComponent("images/huge.\(format.rawValue)"))
            let read = try VQADataset.load(kind: .vqaRad, root: data, split: .train)
            #expect(read.samples.count == 1, "\(format)")
            #expect(read.report.warnings.first?.contains("declares 20000x20000 pixels, more than the 64 megapixels") == true,
                    "\(read.report.warnings)")
        }
    }
}

/// The ablation's data: a text shortcut that holds in training and is broken in the test
/// split, and an intensity shift.
struct SyntheticDifficultyTests {
    @Test func theShortcutHoldsInTrainingAndIsBrokenInTheTestSplit() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("umd-shortcut-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        try SyntheticDataset.write(kind: .vqaRad, to: root, count: 200, seed: 4, imageSize: 16,
                                   difficulty: .init(shortcut: 1, intensityShift: 0))
        func cues(_ split: Split) throws -> (agree: Int, total: Int) {
            let samples = try VQADataset.load(kind: .vqaRad, root: root, split: split).samples
            let cued = samples.filter { $0.question.hasSuffix("(finding noted)") || $0.question.hasSuffix("(unremarkable)") }
            let agree = cued.filter { ($0.question.hasSuffix("(finding noted)")) == ($0.answer == "yes") }.count
            return (agree, cued.count)
        }
        let train = try cues(.train), test = try cues(.test)
        #expect(train.total > 100 && train.agree == train.total, "every training cue tells the truth: \(train)")
        #expect(test.total > 20 && test.agree < test.total * 3 / 4, "test cues are random: \(test)")

        let plain = root.appendingPathComponent("plain"), shifted = root.appendingPathComponent("shifted")
        try SyntheticDataset.write(kind: .roco, to: plain, count: 10, seed: 4, imageSize: 16)
        try SyntheticDataset.write(kind: .roco, to: shifted, count: 10, seed: 4, imageSize: 16,
                                   difficulty: .init(intensityShift: 0.5))
        let a = try ImageCodec.decode(file: plain.appendingPathComponent("train/radiology/images/ROCO_00001.jpg"))
        let b = try ImageCodec.decode(file: shifted.appendingPathComponent("train/radiology/images/ROCO_00001.jpg"))
        func spread(_ img: RGBImage) -> Double {
            let v = img.pixels.map(Double.init), m = v.reduce(0, +) / Double(v.count)
            return (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(v.count)).squareRoot()
        }
        // Contrast x1.5 around 128 and +20, clamped to [0, 255] (the images are already high-contrast).
        #expect(spread(b) > 1.08 * spread(a), "contrast: \(spread(a)) -> \(spread(b))")
    }

    /// `--test-count`: a larger test split, the training and validation splits unchanged.
    @Test func aLargerTestSplitLeavesTrainingAlone() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("umd-testcount-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let plain = root.appendingPathComponent("plain"), large = root.appendingPathComponent("large")
        try SyntheticDataset.write(kind: .vqaRad, to: plain, count: 50, seed: 4, imageSize: 16,
                                   difficulty: .init(shortcut: 0.5))
        try SyntheticDataset.write(kind: .vqaRad, to: large, count: 50, testCount: 40, seed: 4, imageSize: 16,
                                   difficulty: .init(shortcut: 0.5))
        for split in [Split.train, .validation] {
            let a = try VQADataset.load(kind: .vqaRad, root: plain, split: split).samples
            let b = try VQADataset.load(kind: .vqaRad, root: large, split: split).samples
            #expect(a.map(\.question) == b.map(\.question) && a.map(\.answer) == b.map(\.answer), "\(split)")
        }
        let test = try VQADataset.load(kind: .vqaRad, root: large, split: .test).samples
        #expect(try VQADataset.load(kind: .vqaRad, root: plain, split: .test).samples.count == 5 * 3)
        #expect(test.count == 40 * 3 && Set(test.map(\.image)).count == 40)
    }
}
