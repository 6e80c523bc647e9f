import ArgumentParser
import Foundation
import UMDCore
import UMDData

extension SyntheticDataset.Kind: ExpressibleByArgument {}
extension SyntheticDataset.Layout: ExpressibleByArgument {}

/// `umd-mpirun synth`: a data set in a real on-disk format with generated images.
struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Generate a radiology-like data set in the real format of ROCO, MedICaT, VQA-RAD, SLAKE, VQA-Med-2019 or MELINDA.")

    @Option(help: "roco, medicat, vqa-rad, slake, vqa-med-2019 or melinda.") var kind: SyntheticDataset.Kind
    @Option(help: "Directory to write (created).") var out: String
    @Option(help: "Number of images (80% train, 10% validation, 10% test).") var count = 200
    @Option(help: "Images in the test split instead of 10% of --count (the training and validation splits stay those of --count): a test split large enough for small sampling error.")
    var testCount: Int?
    @Option(help: "Seed of the generator (default: one per kind, so two kinds made with defaults hold different images and questions).")
    var seed: UInt64?
    @Option(help: "Image side in pixels.") var imageSize = 64
    @Option(help: "VQA: share of closed questions with a text cue giving the answer away (random in the test split).")
    var shortcut = 0.0
    @Option(help: "Contrast/brightness shift of the images (a domain shift between data sets made with different values).")
    var intensityShift = 0.0
    @Option(help: "official (as the download unpacks: VQA-RAD's OSF json, the ImageCLEF VQA-Med-2019 folders, ROCO under data/, SLAKE under Slake1.0/) or m3ae (the rearranged files the papers' code reads).")
    var layout: SyntheticDataset.Layout = .m3ae

    func validate() throws {
        if !(0...1).contains(shortcut) { throw ValidationError("--shortcut must be in [0, 1]") }
        if !(-0.9...2).contains(intensityShift) { throw ValidationError("--intensity-shift must be in [-0.9, 2]") }
        if let testCount, testCount < 1 { throw ValidationError("--test-count must be at least 1") }
    }

    func run() throws {
        do {
            let summary = try SyntheticDataset.write(kind: kind, to: URL(fileURLWithPath: out), count: count,
                                                     testCount: testCount, seed: seed ?? kind.defaultSeed,
                                                     imageSize: imageSize,
                                                     difficulty: .init(shortcut: shortcut, intensityShift: intensityShift),
                                                     layout: layout)
            print("synth: wrote \(summary) to \(out)")
        } catch {
            printError("\(error)")
            throw ExitCode.failure
        }
    }
}

/// `umd-mpirun tokenizer train`: a byte-level BPE vocabulary learnt from data set texts.
struct TokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer", abstract: "Tokenizer tools.", subcommands: [Train.self])

    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "train",
            abstract: "Learn a byte-level BPE (vocab.json + merges.txt) from the training texts of the given data sets.")

        @Option(help: "ROCO root.") var roco: String?
        @Option(help: "MedICaT root.") var medicat: String?
        @Option(name: .customLong("vqa-rad"), help: "VQA-RAD root.") var vqaRad: String?
        @Option(help: "SLAKE root.") var slake: String?
        @Option(name: .customLong("vqa-med-2019"), help: "VQA-Med-2019 root.") var vqaMed2019: String?
        @Option(help: "MELINDA root.") var melinda: String?
        @Option(help: "Vocabulary size including the 5 special tokens and 256 bytes.") var vocabSize = 8000
        @Option(help: "Output directory for vocab.json and merges.txt.") var out: String

        func run() throws {
            do {
                var texts: [String] = []
                var reports: [DataReport] = []
                let options = ReaderOptions(checkImages: false)
                if let roco {
                    let read = try ROCODataset.load(root: URL(fileURLWithPath: roco), split: .train, options: options)
                    texts += read.samples.map(\.text); reports.append(read.report)
                }
                if let medicat {
                    let read = try MedICaTDataset.load(root: URL(fileURLWithPath: medicat), split: .train, options: options)
                    texts += read.samples.map(\.text); reports.append(read.report)
                }
                for (kind, root) in [(VQAKind.vqaRad, vqaRad), (.slake, slake), (.vqaMed2019, vqaMed2019)] {
                    if let root {
                        let read = try VQADataset.load(kind: kind, root: URL(fileURLWithPath: root), split: .train, options: options)
                        texts += read.samples.flatMap { [$0.question, $0.answer] }; reports.append(read.report)
                    }
                }
                if let melinda {
                    let read = try MELINDADataset.load(root: URL(fileURLWithPath: melinda), split: .train, options: options)
                    texts += read.samples.map(\.caption); reports.append(read.report)
                }
                // Say what was left out: a tokenizer learnt from part of the data should not look complete.
                for report in reports {
                    for line in report.warnings(limit: 5) { writeToStandardError("umd-mpirun: \(line)\n") }
                    print("tokenizer: \(report)")
                }
                guard !texts.isEmpty else {
                    throw ValidationError("give at least one data set (--roco, --medicat, --vqa-rad, --slake, --vqa-med-2019, --melinda)")
                }
                let result = TokenizerTrainer.train(texts: texts, vocabularySize: vocabSize)
                try ByteLevelBPE.write(vocabulary: result.vocabulary, merges: result.merges, to: URL(fileURLWithPath: out))
                if result.longPiecesLeftOut > 0 {
                    print("tokenizer: left out \(result.longPiecesLeftOut) pre-token(s) longer than \(ByteLevelBPE.maxPieceBytes) "
                          + "bytes (not words: URLs, encoded data); encoding cuts such runs into \(ByteLevelBPE.maxPieceBytes)-byte pieces")
                }
                print("tokenizer: learnt \(result.merges.count) merges from \(texts.count) texts; "
                      + "vocabulary \(result.vocabulary.count) written to \(out)")
            } catch let error as ValidationError {
                throw error
            } catch {
                printError("\(error)")
                throw ExitCode.failure
            }
        }
    }
}

func printError(_ text: String) {
    writeToStandardError("umd-mpirun: error: \(text)\n")
}
