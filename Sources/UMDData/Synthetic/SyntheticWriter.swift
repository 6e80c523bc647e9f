import Foundation
import UMDCore

/// `umd-mpirun synth`: writes a data set of procedurally generated radiology-like images
/// in the real on-disk format of ROCO, MedICaT, VQA-RAD, SLAKE, VQA-Med-2019 or MELINDA.
public enum SyntheticDataset {
    public enum Kind: String, CaseIterable, Sendable {
        case roco, medicat, vqaRad = "vqa-rad", slake, vqaMed2019 = "vqa-med-2019", melinda

        /// `synth`'s seed when none is given: one per kind (with one seed for all, SLAKE made
        /// with defaults held VQA-RAD's images and questions).
        public var defaultSeed: UInt64 { UInt64(Self.allCases.firstIndex(of: self)! + 1) }
    }

    /// How the files are laid out: as the official download unpacks (`official`), or as the
    /// papers' code rearranged them (`m3ae`: MEVF's VQA-RAD split files, M3AE's VQA-Med-2019
    /// CSVs), which earlier umd versions read only.
    public enum Layout: String, CaseIterable, Sendable { case official, m3ae }

    public struct Summary: Sendable, CustomStringConvertible {
        public var kind: Kind
        public var images = 0
        public var records = 0
        public var description: String { "\(kind.rawValue): \(images) images, \(records) records" }
    }

    /// Properties an ablation needs from the data (both off by default).
    public struct Difficulty: Sendable {
        /// VQA: this share of the closed (yes/no) questions of the training and validation
        /// splits carry a text cue that gives the answer away ("… (finding noted)" for yes,
        /// "… (unremarkable)" for no): a text shortcut, so the text modality dominates. In
        /// the test split the cue is there as often but random — the shortcut is broken, and
        /// only a model that also looks at the image answers those questions.
        public var shortcut = 0.0
        /// Image intensities become 128 + (1 + s)·(p − 128) + 40·s (contrast and brightness
        /// shift), clamped: a domain shift between corpora made with different s.
        public var intensityShift = 0.0
        public init(shortcut: Double = 0, intensityShift: Double = 0) {
            self.shortcut = shortcut; self.intensityShift = intensityShift
        }
    }

    /// Writes `count` images (and their records) under `directory`; with `testCount`, the
    /// test split holds that many images instead of 10% of `count` (images `count − 10%`
    /// onwards), the training and validation splits unchanged.
    @discardableResult
    public static func write(kind: Kind, to directory: URL, count requested: Int, testCount testImages: Int? = nil,
                             seed: UInt64, imageSize: Int = 64,
                             difficulty: Difficulty = .init(), layout: Layout = .m3ae) throws -> Summary {
        let official = layout == .official
        guard requested >= 3 else { throw DataError.dataset("synth: --count must be at least 3 (one sample per split)") }
        guard imageSize >= 16 else { throw DataError.dataset("synth: --image-size must be at least 16 pixels") }
        let fm = FileManager.default
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        var summary = Summary(kind: kind)
        // 80% train, 10% validation, 10% test (at least one each), or the test images asked for.
        let validationCount = max(1, requested / 10), testCount = testImages ?? max(1, requested / 10)
        let count = requested - max(1, requested / 10) + testCount
        func split(_ i: Int) -> Split {
            i < count - testCount - validationCount ? .train : (i < count - testCount ? .validation : .test)
        }
        func image(_ i: Int, _ finding: SyntheticFinding, as format: ImageCodec.Format, to url: URL) throws {
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            var grey = finding.render(size: imageSize, seed: seed, index: i)
            if difficulty.intensityShift != 0 {
                let t = difficulty.intensityShift
                grey = grey.map { UInt8(max(0, min(255, (128 + (1 + t) * (Double($0) - 128) + 40 * t).rounded()))) }
            }
            try AtomicFileWriter.write(ImageCodec.encode(SyntheticFinding.rgb(grey), width: imageSize, height: imageSize,
                                                         channels: 3, as: format), to: url)
            summary.images += 1
        }
        let variantKey = CounterRandom.key(seed, CounterRandom.hash("synth.variant"))
        func variant(_ i: Int) -> Int { Int(CounterRandom.bits(variantKey, UInt64(i)) % 4) }

        switch kind {
        case .roco:
            // The repository as cloned keeps the splits under data/.
            let base = official ? directory.appendingPathComponent("data") : directory
            var lines: [Split: [String]] = [:]
            for i in 0..<count {
                let f = SyntheticFinding.draw(seed: seed, index: i)
                let s = split(i)
                let id = String(format: "ROCO_%05d", i + 1)
                let dir = base.appendingPathComponent("\(s.rawValue)/radiology")
                try image(i, f, as: .jpeg, to: dir.appendingPathComponent("images/\(id).jpg"))
                lines[s, default: []].append("\(id)\t \(f.caption(variant: variant(i)))")
            }
            for (s, rows) in lines {
                let dir = base.appendingPathComponent("\(s.rawValue)/radiology")
                try AtomicFileWriter.write(rows.joined(separator: "\n") + "\n", to: dir.appendingPathComponent("captions.txt"))
                summary.records += rows.count
            }
        case .medicat:
            let release = directory.appendingPathComponent("release")
            var rows: [String] = []
            for i in 0..<count {
                let f = SyntheticFinding.draw(seed: seed, index: i)
                let hash = String(format: "%016llx%08x", CounterRandom.bits(seed, UInt64(i)), i)
                let uri = "\(1 + i % 7)-Figure\(1 + i % 3)-1.png"
                try image(i, f, as: .png, to: release.appendingPathComponent("figures/\(hash)_\(uri)"))
                let references: Any = i % 3 == 0 ? NSNull()
                    : ["As shown in Figure \(1 + i % 3), \(f.caption(variant: variant(i) + 1).lowercased())", "See text."]
                let object: [String: Any] = ["pdf_hash": hash, "fig_uri": uri, "s2_caption": f.caption(variant: variant(i)),
                                             "s2orc_references": references, "radiology": i % 10 != 9,
                                             "fig_key": "\(hash)_\(uri)"]
                rows.append(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
                                   as: UTF8.self))
            }
            try AtomicFileWriter.write(rows.joined(separator: "\n") + "\n",
                                       to: release.appendingPathComponent(MedICaTDataset.jsonlName))
            summary.records = rows.count
        case .vqaRad, .slake:
            var splits: [Split: [[String: Any]]] = [:]
            var qid = 0
            // Official: VQA-RAD's OSF release (one JSON, its own image folder, the split in
            // phrase_type, no validation split); SLAKE's zip unpacks to Slake1.0/.
            let base = official && kind == .slake ? directory.appendingPathComponent("Slake1.0") : directory
            let imageFolder = kind == .slake ? "imgs/" : (official ? VQADataset.vqaRadReleaseImages + "/" : "images/")
            for i in 0..<count {
                let f = SyntheticFinding.draw(seed: seed, index: i)
                let imageName = kind == .vqaRad ? "synpic\(10000 + i).jpg" : "xmlab\(i)/source.jpg"
                try image(i, f, as: .jpeg, to: base.appendingPathComponent(imageFolder + imageName))
                // A few questions per image, chosen by a seeded rotation through the templates.
                let all = f.questions()
                for k in 0..<3 {
                    var (question, answer, closed) = all[(i * 3 + k) % all.count]
                    qid += 1
                    // The text shortcut (see Difficulty): a cue in the question, truthful in
                    // training and validation, random in the test split.
                    let cueKey = CounterRandom.key(seed, CounterRandom.hash("synth.shortcut"))
                    if closed, CounterRandom.uniform(cueKey, UInt64(2 * qid)) < difficulty.shortcut {
                        let truthful = split(i) != .test
                        let says = truthful ? (answer as? String) == "yes" : CounterRandom.uniform(cueKey, UInt64(2 * qid + 1)) < 0.5
                        question += says ? " (finding noted)" : " (unremarkable)"
                    }
                    var row: [String: Any] = ["qid": qid, "question": question, "answer": answer,
                                              // VQA-RAD has stray trailing spaces in answer_type.
                                              "answer_type": (closed ? "CLOSED" : "OPEN") + (kind == .vqaRad && qid % 5 == 0 ? " " : "")]
                    if kind == .vqaRad {
                        row["image_name"] = imageName
                        if official {
                            row["phrase_type"] = (split(i) == .test ? "test_" : "") + (k == 2 ? "para" : "freeform")
                            row["image_organ"] = f.organ.rawValue
                        }
                    } else {
                        row["img_name"] = imageName; row["img_id"] = i; row["q_lang"] = "en"
                    }
                    splits[split(i), default: []].append(row)
                }
                if kind == .slake {   // SLAKE also carries Chinese questions, which umd skips
                    splits[split(i), default: []].append(["qid": qid + 100_000, "img_name": imageName, "img_id": i,
                                                          "question": "这是什么器官？", "answer": f.organ.rawValue,
                                                          "answer_type": "OPEN", "q_lang": "zh"])
                }
            }
            if official && kind == .vqaRad {
                let all = [Split.train, .validation, .test].flatMap { splits[$0] ?? [] }
                try AtomicFileWriter.write(JSONSerialization.data(withJSONObject: all, options: [.prettyPrinted, .sortedKeys]),
                                           to: directory.appendingPathComponent(VQADataset.vqaRadRelease))
                summary.records = all.count
                return summary
            }
            let names: [Split: String] = kind == .vqaRad
                ? [.train: "trainset.json", .validation: "valset.json", .test: "testset.json"]
                : [.train: "train.json", .validation: "validate.json", .test: "test.json"]
            for (s, rows) in splits {
                try AtomicFileWriter.write(JSONSerialization.data(withJSONObject: rows, options: [.prettyPrinted, .sortedKeys]),
                                           to: base.appendingPathComponent(names[s]!))
                summary.records += rows.count
            }
        case .vqaMed2019 where official:
            // The ImageCLEF 2019 folders: per-category training/validation files, the
            // 4-field test file with `#` alternatives and no final newline.
            var files: [String: [String]] = [:]
            for i in 0..<count {
                let f = SyntheticFinding.draw(seed: seed, index: i)
                let id = "synpic\(20000 + i)"
                let questions = [("C1_Modality", "modality", "what modality is shown?", f.modality.rawValue),
                                 ("C2_Plane", "plane", "in what plane is this image taken?", f.plane.rawValue),
                                 ("C3_Organ", "organ", "what organ system is shown in this image?", f.organ.rawValue),
                                 ("C4_Abnormality", "abnormality", "what is abnormal in this image?",
                                  f.lesion ? "lesion" : "normal")]
                switch split(i) {
                case .test:
                    try image(i, f, as: .jpeg, to: directory.appendingPathComponent(
                        "\(VQADataset.medTest)/VQAMed2019_Test_Images/\(id).jpg"))
                    for (n, (_, category, question, answer)) in questions.enumerated() {
                        // Some reference answers list alternatives ("ct#ct scan").
                        let reference = category == "modality" && (i + n) % 2 == 0 ? answer + "#" + answer + " scan" : answer
                        files["\(VQADataset.medTest)/\(VQADataset.medTestFile)", default: []]
                            .append("\(id)|\(category)|\(question)|\(reference)")
                    }
                case let s:
                    let (folder, suffix, images) = s == .train
                        ? (VQADataset.medTraining, "train", "Train_images") : (VQADataset.medValidation, "val", "Val_images")
                    try image(i, f, as: .jpeg, to: directory.appendingPathComponent("\(folder)/\(images)/\(id).jpg"))
                    for (file, _, question, answer) in questions {
                        files["\(folder)/QAPairsByCategory/\(file)_\(suffix).txt", default: []].append("\(id)|\(question)|\(answer)")
                    }
                }
            }
            for (path, rows) in files {
                let url = directory.appendingPathComponent(path)
                try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try AtomicFileWriter.write(rows.joined(separator: "\r\n") + (path.hasSuffix(VQADataset.medTestFile) ? "" : "\r\n"),
                                           to: url)
                summary.records += rows.count
            }
        case .vqaMed2019:
            var files: [String: [String]] = [:]
            for i in 0..<count {
                let f = SyntheticFinding.draw(seed: seed, index: i)
                let s = split(i) == .validation ? "val" : split(i).rawValue
                let id = "synpic\(20000 + i)"
                try image(i, f, as: .jpeg, to: directory.appendingPathComponent("\(s)/images/\(id).jpg"))
                files["\(s)/QA/Modality.csv", default: []].append("\(id)|what modality is shown?|\(f.modality.rawValue)")
                files["\(s)/QA/Organ.csv", default: []].append("\(id)|what organ system is shown in this image?|\(f.organ.rawValue)")
                files["\(s)/QA/Plane.csv", default: []].append("\(id)|in what plane is this image taken?|\(f.plane.rawValue)")
            }
            for (path, rows) in files {
                let url = directory.appendingPathComponent(path)
                try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                // The released files use Windows line ends.
                try AtomicFileWriter.write(rows.joined(separator: "\r\n") + "\r\n", to: url)
                summary.records += rows.count
            }
        case .melinda:
            // MELINDA is sent by its authors, not downloaded; `official` writes what pandas'
            // to_csv writes (an unnamed index column) with one caption over two lines.
            var files: [Split: [String]] = [:]
            let header = (official ? "," : "") + "figure_file,caption,i_meth,p_meth,i_meth_label,p_meth_label"
            for i in 0..<count {
                let f = SyntheticFinding.draw(seed: seed, index: i)
                let figure = "PMC\(300000 + i)_fig\(1 + i % 4).jpg"
                try image(i, f, as: .jpeg, to: directory.appendingPathComponent("melinda_images/\(figure)"))
                // The fine label needs the image (modality) and the caption (contrast or not).
                let coarse = f.modality.rawValue
                let fine = "\(coarse) \(f.contrast ? "contrast" : "plain")"
                var caption = f.captionWithoutModality(variant: variant(i)).replacingOccurrences(of: "\"", with: "\"\"")
                if official && i % 7 == 3 { caption = caption.replacingOccurrences(of: ": ", with: ":\n") }
                let index = official ? "\(files[split(i)]?.count ?? 0)," : ""
                files[split(i), default: []].append("\(index)\(figure),\"\(caption)\",\(coarse),\(fine),\(coarse),\(fine)")
            }
            let names: [Split: String] = [.train: "train.csv", .validation: "dev.csv", .test: "test.csv"]
            for (s, rows) in files {
                try AtomicFileWriter.write(([header] + rows).joined(separator: "\n").appending("\n"),
                                           to: directory.appendingPathComponent(names[s]!))
                summary.records += rows.count
            }
        }
        return summary
    }
}
