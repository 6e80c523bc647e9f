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

    /// Converts and writes `out`; returns the report (what was converted, reshaped, resized,
    /// left unused, and what the model has that the sources do not provide).
    @discardableResult
    public static func convert(clip: URL?, roberta: URL?, preset: ModelPreset, imageSize: Int, out: URL) throws
        -> PretrainedConversion.Report {
        guard clip != nil || roberta != nil else {
            throw ModelError.conversion("convert needs --clip FILE and/or --roberta FILE")
        }
        let result = try PretrainedConversion.convert(clip: try clip.map(source), roberta: try roberta.map(source),
                                                      preset: preset, imageSize: imageSize)
        let sources = try [clip, roberta].compactMap { $0 }.map { url -> [String: String] in
            let file = try source(url).path
            return ["file": file, "xxh64": Checkpoints.hashFiles([URL(fileURLWithPath: file)])]
        }
        var metadata = ["format": convertedFormat, "preset": preset.name, "image_size": String(imageSize),
                        "sources": String(decoding: try JSONSerialization.data(withJSONObject: sources, options: [.sortedKeys]),
                                          as: UTF8.self)]
        if let v = result.vocabularySize { metadata["vocabulary_size"] = String(v) }
        try Safetensors.write(result.tensors, metadata: metadata, to: out)
        return result.report
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
