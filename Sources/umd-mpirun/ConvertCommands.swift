import ArgumentParser
import Foundation
import UMDTools
import UMDCore
import UMDDistributed
import UMDData
import UMDModel

/// `umd-mpirun convert`: pretrained CLIP (vision) and RoBERTa (text) weights → a umd file.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert Hugging Face / OpenAI CLIP and RoBERTa safetensors to umd's names (for --init).",
        discussion: """
            --clip: CLIPVisionModel or CLIPModel (Hugging Face, with or without vision_model.), or
            OpenAI/open_clip naming (visual.conv1.weight, fused attn.in_proj_weight). --roberta:
            RobertaModel or RobertaForMaskedLM (lm_head becomes the MLM head). A config.json
            beside a file is checked against the preset; --preset custom takes the model's
            sizes from the files instead (recorded in the output, so --weights builds it). Every tensor that is converted,
            reshaped, resized or not used is listed. Example (the paper's start):
              umd-mpirun convert --preset base --clip clip-vit-base-patch16/model.safetensors \\
                  --roberta roberta-base/model.safetensors --out init-base.safetensors
            """)

    @Option(help: "CLIP safetensors file.") var clip: String?
    @Option(help: "RoBERTa safetensors file.") var roberta: String?
    @Option(help: "Preset: tiny, small, base, or custom (the sizes of the files given; custom:key=value,… sets what they do not decide, e.g. custom:fusion-layers=2).")
    var preset = "base"
    @Option(help: "Image size the position table is made for (default: the preset's).") var imageSize: Int?
    @Option(help: "Output safetensors file.") var out: String

    func run() throws {
        do {
            let done = try PretrainedWeights.convert(clip: clip.map { URL(fileURLWithPath: $0) },
                                                     roberta: roberta.map { URL(fileURLWithPath: $0) }, preset: preset,
                                                     imageSize: imageSize, out: URL(fileURLWithPath: out))
            for line in PretrainedWeights.describe(done.report) { print(line) }
            print("convert: wrote \(out) (preset \(done.preset.label), image \(done.imageSize) px)")
            if done.preset.isCustom {
                print("  the file records the custom preset \(done.preset.name); --weights \(out) builds this model "
                      + "(no --preset needed)")
            }
        } catch {
            writeToStandardError("umd-mpirun convert: error: \(error)\n")
            throw ExitCode.failure
        }
    }
}

/// `umd-mpirun encode`: encoder outputs for images and texts.
struct EncodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode",
        abstract: "Write the vision and text encoders' outputs (and the fusion's pooled features) as safetensors.")

    @Option(help: "Weights (final.safetensors, an export, or a converted file).") var weights: String
    @Option(help: "Tokenizer directory (needed for --texts).") var tokenizer: String?
    @Option(parsing: .upToNextOption, help: "Image files.") var images: [String] = []
    @Option(parsing: .upToNextOption, help: "Texts (each one argument).") var texts: [String] = []
    @Option(help: "File with one text per line (added to --texts).") var textFile: String?
    @Option(help: "A data set split instead of files: vqa-rad, slake, vqa-med-2019, melinda or roco-retrieval.")
    var task: DownstreamTask?
    @Option(help: "Root of that data set.") var data: String?
    @Option(help: "Its split: train, validation or test.") var split: Split = .test
    @Option(help: "Preset (default: the weights file's).") var preset: String?
    @Option(help: "Image size (default: the weights file's).") var imageSize: Int?
    @Option(help: "Text length L (default: the preset's).") var textLength: Int?
    @Option(help: "Output safetensors file.") var out: String

    func run() throws {
        var o = FeatureEncoder.Options(weights: URL(fileURLWithPath: weights), out: URL(fileURLWithPath: out))
        o.tokenizer = tokenizer.map { URL(fileURLWithPath: $0) }
        o.images = images.map { URL(fileURLWithPath: $0) }
        o.texts = texts
        if let textFile {
            guard let text = try? String(contentsOfFile: textFile, encoding: .utf8) else {
                throw ValidationError("\(textFile): cannot read it as UTF-8 text")
            }
            o.texts += text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        }
        if (task == nil) != (data == nil) { throw ValidationError("--task and --data go together") }
        if let task, let data {
            // Every sample's image and its text (question or caption), in split order.
            do {
                let table = try SampleTable.task(task, root: URL(fileURLWithPath: data), split: split, retrievalCap: Int.max)
                o.images += table.images
                o.texts += table.texts
            } catch {
                writeToStandardError("umd-mpirun encode: error: \(error)\n")
                throw ExitCode.failure
            }
        }
        if let preset {
            o.preset = try presetArgument(preset)
        }
        o.imageSize = imageSize
        o.textLength = textLength
        do {
            let summary = try FeatureEncoder.run(o)
            print("encode: wrote \(out): " + summary.written.sorted { $0.key < $1.key }
                .map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        } catch {
            writeToStandardError("umd-mpirun encode: error: \(error)\n")
            throw ExitCode.failure
        }
    }
}
