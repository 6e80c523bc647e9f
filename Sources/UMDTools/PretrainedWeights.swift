import Foundation
import UMDDistributed
import UMDCore
import UMDModel

/// `umd-mpirun convert`: Hugging Face / OpenAI CLIP and RoBERTa safetensors → one umd
/// weights file under MODEL_SPEC names, which `--init` reads (only the tensors it holds;
/// the rest of the model starts fresh) and `encode` runs.
public enum PretrainedWeights {
    /// The metadata `format` of a converted file (`WeightsDescription.convertedFormat`).
    public static var convertedFormat: String { WeightsDescription.convertedFormat }

    /// Reads a source file and the Hugging Face `config.json` beside it, if any. A Hugging
    /// Face model directory (as `save_pretrained` or a download writes it) means its
    /// `model.safetensors`.
    static func source(_ given: URL) throws -> PretrainedConversion.Source {
        var isDirectory: ObjCBool = false
        var url = given
        if FileManager.default.fileExists(atPath: given.path, isDirectory: &isDirectory), isDirectory.boolValue {
            url = given.appendingPathComponent("model.safetensors")
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw ModelError.conversion("\(given.path): a directory without model.safetensors; give the Hugging Face "
                                            + "model folder (config.json + model.safetensors) or the .safetensors file")
            }
        }
        let file = try Safetensors.read(url)
        let configURL = url.deletingLastPathComponent().appendingPathComponent("config.json")
        var config: [String: Any]? = nil
        if FileManager.default.fileExists(atPath: configURL.path) {
            guard let object = (try? JSONSerialization.jsonObject(with: readWholeFile(configURL))) as? [String: Any] else {
                throw ModelError.conversion("\(configURL.path): not a JSON object")
            }
            config = object
        }
        return .init(path: url.path, file: file, config: config)
    }

    /// What `convert` did: the report (what was converted, reshaped, resized, left unused,
    /// and what the model has that the sources do not provide), the preset and image size.
    public struct Converted {
        public var report: PretrainedConversion.Report
        public var preset: ModelPreset
        public var imageSize: Int
    }

    /// Converts and writes `out`. `preset`: a named preset, a custom preset's full
    /// specification, or `custom[:key=value,…]` — the sources' own sizes
    /// (`PretrainedConversion.customPreset`), recorded in the file so that `--weights` builds
    /// that model. `imageSize`: the position table's (default: the preset's).
    @discardableResult
    public static func convert(clip: URL?, roberta: URL?, preset text: String, imageSize: Int?, out: URL) throws
        -> Converted {
        guard clip != nil || roberta != nil else {
            throw ModelError.conversion("convert needs --clip FILE and/or --roberta FILE")
        }
        let clipSource = try clip.map(source), robertaSource = try roberta.map(source)
        let preset: ModelPreset
        if text == ModelPreset.customPrefix || text.hasPrefix(ModelPreset.customPrefix + ":") {
            // Whatever the specification leaves out comes from the files (and what it gives is
            // checked against them).
            var given = try ModelPreset.customValues(text)
            if given[.image] == nil, let imageSize { given[.image] = imageSize }
            preset = try PretrainedConversion.customPreset(given, clip: clipSource, roberta: robertaSource)
        } else {
            preset = try ModelPreset.parse(text)   // a named preset; throws naming the choices
        }
        let size = imageSize ?? preset.imageSize
        let result = try PretrainedConversion.convert(clip: clipSource, roberta: robertaSource, preset: preset, imageSize: size)
        let sources = [clipSource, robertaSource].compactMap { $0 }.map { s -> [String: String] in
            ["file": s.path, "xxh64": Checkpoints.hashFiles([URL(fileURLWithPath: s.path)])]
        }
        var metadata = ["format": convertedFormat, "preset": preset.name, "image_size": String(size),
                        "sources": String(decoding: try JSONSerialization.data(withJSONObject: sources, options: [.sortedKeys]),
                                          as: UTF8.self)]
        if let v = result.vocabularySize { metadata["vocabulary_size"] = String(v) }
        try Safetensors.write(result.tensors, metadata: metadata, to: out)
        return Converted(report: result.report, preset: preset, imageSize: size)
    }

    /// The report as lines for the terminal.
    public static func describe(_ r: PretrainedConversion.Report) -> [String] {
        var lines = ["converted \(r.converted.count) tensor(s)"]
        lines += r.resized.map { "  resized: \($0)" }
        lines += r.reshaped.map { "  reshaped: \($0)" }
        if !r.unused.isEmpty { lines.append("not used (\(r.unused.count)):") }
        lines += r.unused.map { "  \($0)" }
        if !r.notProvided.isEmpty {
            let groups = Dictionary(grouping: r.notProvided) { String($0.prefix { $0 != "." }) }
            lines.append("not in the sources, initialised fresh when training starts: "
                         + groups.keys.sorted().map { "\($0).* (\(groups[$0]!.count))" }.joined(separator: ", "))
        }
        return lines
    }
}
