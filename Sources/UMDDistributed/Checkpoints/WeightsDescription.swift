import Foundation
import UMDModel

/// What a weights file says about itself: umd writes preset, vocabulary size, image size,
/// text length, stage, task and class list into the metadata of every weights file, and
/// a checkpoint's manifest holds its configuration. Flags that are absent are taken from
/// here; a flag that contradicts it is an error naming both.
public struct WeightsDescription {
    public var preset: ModelPreset?
    public var vocabularySize: Int?
    public var imageSize: Int?
    public var textLength: Int?
    public var task: String?
    public var classes: [String]?
    /// Hash of the tokenizer the weights were trained with (nil: not recorded).
    public var tokenizerHash: String?
    /// The weights hold a classifier head (`head.fc2.weight`), whose rows stand for `classes`.
    public var hasClassifierHead = false
    /// The head input the weights were fine-tuned with (nil: not recorded, so `cls`, the only
    /// pooling before `--pooling` existed).
    public var pooling: Pooling?

    public init(metadata m: [String: String], shapes: [String: [Int]], path: String) throws {
        if let name = m["preset"], !name.isEmpty {
            do { preset = try ModelPreset.parse(name) } catch {
                throw RunError("\(path): its metadata names a preset umd cannot build: \(error)")
            }
        }
        vocabularySize = m["vocabulary_size"].flatMap { Int($0) } ?? shapes["text.word_embed"]?.first
        imageSize = m["image_size"].flatMap { Int($0) }
        if imageSize == nil, let rows = shapes["vision.pos_embed"]?.first, let g = Self.grid(rows - 1), let p = preset {
            imageSize = g * p.patchSize
        }
        textLength = m["text_length"].flatMap { Int($0) }
        task = m["task"].flatMap { $0.isEmpty ? nil : $0 }
        classes = m["classes"].flatMap { try? JSONDecoder().decode([String].self, from: Data($0.utf8)) }
        tokenizerHash = m[Self.tokenizerKey].flatMap { $0.isEmpty ? nil : $0 }
        hasClassifierHead = shapes[Self.classifierHeadTensor] != nil
        if let name = m["pooling"], !name.isEmpty {
            guard let value = Pooling(rawValue: name) else {
                throw RunError("\(path): its metadata names a pooling umd does not know (\(name)); expected "
                               + Pooling.allCases.map(\.rawValue).joined(separator: " or "))
            }
            pooling = value
        }
    }

    /// The pooling to run these weights with: the recorded one, else `cls`.
    public var effectivePooling: Pooling { pooling ?? .cls }

    static let classifierHeadTensor = "head.fc2.weight"

    /// The metadata `format` of weights `convert` made from CLIP/RoBERTa files: only what
    /// they hold is imported by `--init` (UMDTools' `PretrainedWeights` writes them).
    public static let convertedFormat = "umd-convert"

    /// The metadata key of the tokenizer's hash (XXH64 of vocab.json + merges.txt).
    public static let tokenizerKey = "tokenizer_xxh64"

    /// The weights were trained with another tokenizer than the one given: an error naming
    /// both, since token ids would silently mean other words.
    /// `hash`: the directory's `TokenizerIdentity` when the caller has it already.
    public func requireTokenizer(_ directory: URL, hash: String? = nil, weights path: String) throws {
        guard let saved = tokenizerHash else { return }
        let given = hash ?? TokenizerIdentity.hash(directory)
        guard given != saved else { return }
        throw RunError("\(path) was trained with another tokenizer (hash \(saved)) than \(directory.path) (hash \(given)): "
                       + "its token ids would mean other words. Pass the tokenizer the weights were trained with (--tokenizer)")
    }

    public init(file: Safetensors.File, path: String) throws {
        try self.init(metadata: file.metadata, shapes: Dictionary(file.tensors.map { ($0.name, $0.shape) },
                                                                  uniquingKeysWith: { a, _ in a }), path: path)
    }

    /// The description of a weights file (read from its header only) or of a checkpoint
    /// directory (from its manifest); nil when `path` is neither.
    public static func of(path: String) throws -> WeightsDescription? {
        let resolved = try WeightsPath.resolve(path)
        if case .checkpoint(let dir) = resolved {
            let m = try Checkpoints.readManifest(dir)
            var description = try WeightsDescription(metadata: ["preset": m.config.preset ?? "",
                                                                "image_size": m.config.imageSize.map(String.init) ?? "",
                                                                "text_length": m.config.textLength.map(String.init) ?? "",
                                                                "task": m.config.task?.rawValue ?? "",
                                                                "pooling": m.config.pooling.rawValue,
                                                                tokenizerKey: m.tokenizerHash],
                                                     shapes: [:], path: path)
            description.classes = m.classes
            description.hasClassifierHead = m.student.contains { $0.name == classifierHeadTensor }
            return description
        }
        let (_, header, _) = try Safetensors.readHeader(resolved.url)
        let metadata = (header["__metadata__"] as? [String: String]) ?? [:]
        var shapes: [String: [Int]] = [:]
        for name in ["text.word_embed", "vision.pos_embed", classifierHeadTensor] {
            if let info = header[name] as? [String: Any], let shape = info["shape"] as? [Any] {
                shapes[name] = shape.compactMap { ($0 as? NSNumber)?.intValue }
            }
        }
        return try WeightsDescription(metadata: metadata, shapes: shapes, path: path)
    }

    /// Metadata umd writes with a model's weights.
    public static func metadata(stage: String, preset: String, vocabularySize: Int, imageSize: Int, textLength: Int,
                                task: String, classes: [String], tokenizerHash: String, pooling: Pooling,
                                extra: [String: String] = [:]) -> [String: String] {
        var m = extra
        m["pooling"] = pooling.rawValue
        m["stage"] = stage; m["preset"] = preset; m["vocabulary_size"] = String(vocabularySize)
        if !tokenizerHash.isEmpty { m[tokenizerKey] = tokenizerHash }
        m["image_size"] = String(imageSize); m["text_length"] = String(textLength); m["task"] = task
        m["umd_version"] = BuildInfo.version; m["umd_commit"] = BuildInfo.commit
        if !classes.isEmpty {
            m["classes"] = String(decoding: (try? JSONEncoder().encode(classes)) ?? Data(), as: UTF8.self)
        }
        return m
    }

    static func grid(_ n: Int) -> Int? {
        guard n > 0 else { return nil }
        let g = Int(Double(n).squareRoot().rounded())
        return g * g == n ? g : nil
    }
}

/// The identity of a tokenizer directory: XXH64 over vocab.json and merges.txt, recorded in
/// checkpoints and weights files and compared wherever weights meet a tokenizer.
public enum TokenizerIdentity {
    public static func hash(_ directory: URL) -> String {
        Checkpoints.hashFiles(["vocab.json", "merges.txt"].map { directory.appendingPathComponent($0) })
    }
}
