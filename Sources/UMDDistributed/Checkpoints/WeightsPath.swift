import Foundation
import UMDCore
import UMDModel

/// The one way every command names weights (`--init`, `--resume DIR`, `eval --weights`,
/// `predict`, `export`, `inspect`, `encode`): a model bundle (`export --bundle`), a run
/// directory (its latest weights: final.safetensors of a finished run, else its newest
/// complete checkpoint), a
/// checkpoint directory, a run's `checkpoints/latest`, or a `.safetensors` file. Anything
/// else is an error that says what the path is and what was expected.
public enum WeightsPath {
    public enum Resolved: Equatable {
        case checkpoint(URL)
        case file(URL)

        public var url: URL {
            switch self { case .checkpoint(let u), .file(let u): return u }
        }
    }

    static let expected = "expected a model bundle, a run directory, a checkpoint directory (RUN/checkpoints/step-NNNNNNNN), "
        + "RUN/checkpoints/latest or a .safetensors file"

    /// `checkpointOnly`: a run directory means its newest complete checkpoint (resume, inspect).
    public static func resolve(_ path: String, checkpointOnly: Bool = false) throws -> Resolved {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw RunError("\(path): no such file or directory (\(expected))")
        }
        let fm = FileManager.default
        if isDirectory.boolValue {
            if fm.fileExists(atPath: url.appendingPathComponent("manifest.json").path) { return .checkpoint(url) }
            if url.lastPathComponent.hasPrefix("step-") {
                let older = Checkpoints.complete(run: url.deletingLastPathComponent().deletingLastPathComponent())
                    .filter { $0.lastPathComponent < url.lastPathComponent }.first
                throw RunError("\(path): an incomplete checkpoint (no manifest.json: its save was interrupted)"
                               + (older.map { "; the newest complete one before it is \($0.path)" } ?? ""))
            }
            if fm.fileExists(atPath: url.appendingPathComponent("checkpoints").path) {
                // A finished run's final.safetensors, unless a checkpoint is newer (a resumed
                // run going on past it): the run's latest weights either way, named as such.
                let final = url.appendingPathComponent("final.safetensors")
                if let newest = Checkpoints.complete(run: url).first {
                    guard !checkpointOnly, let finalSteps = steps(of: final), let step = Int(newest.lastPathComponent.dropFirst(5)),
                          finalSteps >= step else { return .checkpoint(newest) }
                    return .file(final)
                }
                if fm.fileExists(atPath: url.appendingPathComponent("final.safetensors").path) {
                    return .file(url.appendingPathComponent("final.safetensors"))
                }
                throw RunError("\(path): a run directory without a complete checkpoint or final.safetensors")
            }
            if fm.fileExists(atPath: url.appendingPathComponent("final.safetensors").path) {
                return .file(url.appendingPathComponent("final.safetensors"))
            }
            if ModelBundle.isBundle(url) { return .file(url.appendingPathComponent(ModelBundle.weightsName)) }
            if fm.fileExists(atPath: url.appendingPathComponent("config.json").path)
                && fm.fileExists(atPath: url.appendingPathComponent("model.safetensors").path) {
                throw RunError("\(path): a Hugging Face model folder; convert it first with "
                               + "`umd-mpirun convert --clip/--roberta \(url.appendingPathComponent("model.safetensors").path)`")
            }
            throw RunError("\(path): a directory that is neither a umd run nor a checkpoint (\(expected))")
        }
        if url.lastPathComponent == "latest" && url.deletingLastPathComponent().lastPathComponent == "checkpoints" {
            let name = (try? String(decoding: readWholeFile(url), as: UTF8.self))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            let dir = url.deletingLastPathComponent().appendingPathComponent(name)
            guard !name.isEmpty, fm.fileExists(atPath: dir.appendingPathComponent("manifest.json").path) else {
                throw RunError("\(path) names \(name.isEmpty ? "nothing" : dir.path), which is not a complete checkpoint")
            }
            return .checkpoint(dir)
        }
        do { _ = try Safetensors.readHeader(url) } catch {
            throw RunError("\(path): not a safetensors file (\(error)); \(expected)")
        }
        return .file(url)
    }

    /// The steps a final.safetensors was written after (its metadata), nil when unreadable.
    static func steps(of url: URL) -> Int? {
        guard FileManager.default.fileExists(atPath: url.path),
              let header = try? Safetensors.readHeader(url).header,
              let metadata = header["__metadata__"] as? [String: String] else { return nil }
        return metadata["steps"].flatMap { Int($0) }
    }

    /// The weights at `path` as one safetensors file in memory (a checkpoint's student and
    /// teacher under `teacher.*`).
    public static func load(_ path: String, includeTeacher: Bool = true) throws -> (file: Safetensors.File, resolved: Resolved) {
        let resolved = try resolve(path)
        switch resolved {
        case .checkpoint(let dir): return (try Checkpoints.weights(dir, includeTeacher: includeTeacher).0, resolved)
        case .file(let url):
            var file = try Safetensors.read(url)
            if !includeTeacher { file.tensors.removeAll { $0.name.hasPrefix("teacher.") } }
            return (file, resolved)
        }
    }
}

/// A model bundle (`export --bundle DIR`): everything needed to run a trained model in one
/// folder — `model.safetensors` (its metadata: preset, sizes, task, classes, tokenizer hash,
/// umd version), the tokenizer (`vocab.json`, `merges.txt`), `classes.json` and a
/// `config.json` saying what the model is. Every command that takes weights takes a bundle,
/// and then needs no `--tokenizer`.
public enum ModelBundle {
    public static let weightsName = "model.safetensors", format = "umd bundle"

    public static func isBundle(_ dir: URL) -> Bool {
        guard let data = try? readWholeFile(dir.appendingPathComponent("config.json")),
              let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return false }
        return object["format"] as? String == format
            && FileManager.default.fileExists(atPath: dir.appendingPathComponent(weightsName).path)
    }

    /// Writes the bundle: the student weights of `weights` (plus the teacher when asked),
    /// the tokenizer it was trained with (checked by hash), the classes and config.json.
    public static func write(weights path: String, tokenizer: URL, to dir: URL, includeTeacher: Bool = false) throws {
        let (file, _) = try WeightsPath.load(path, includeTeacher: includeTeacher)
        let described = try WeightsDescription(file: file, path: path)
        try described.requireTokenizer(tokenizer, weights: path)
        let fm = FileManager.default
        do { try fm.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
            throw RunError("cannot create \(dir.path) (\(FileError.describe(error, at: dir)))")
        }
        var metadata = file.metadata
        metadata["umd_version"] = BuildInfo.version; metadata["umd_commit"] = BuildInfo.commit
        try Safetensors.write(file.tensors, metadata: metadata, to: dir.appendingPathComponent(weightsName))
        for name in ["vocab.json", "merges.txt"] {
            try AtomicFileWriter.write(readWholeFile(tokenizer.appendingPathComponent(name)), to: dir.appendingPathComponent(name))
        }
        if let classes = described.classes {
            try AtomicFileWriter.write(JSONEncoder().encode(classes), to: dir.appendingPathComponent("classes.json"))
        }
        var config: [String: Any] = ["format": format, "umd": BuildInfo.description, "weights": weightsName,
                                     "tokenizer_xxh64": TokenizerIdentity.hash(tokenizer)]
        for key in ["stage", "preset", "task", "image_size", "text_length", "vocabulary_size", "pooling"] {
            if let value = metadata[key], !value.isEmpty { config[key] = Int(value).map { $0 as Any } ?? value }
        }
        if let classes = described.classes { config["classes"] = classes.count }
        try AtomicFileWriter.write(JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]),
                                   to: dir.appendingPathComponent("config.json"))
    }

    /// The tokenizer of the weights at `path` when `--tokenizer` is not given: the bundle's
    /// own, or the copy a training run keeps in RUN/tokenizer.
    public static func tokenizer(for path: String, given: String?) throws -> URL {
        if let given { return URL(fileURLWithPath: given) }
        let resolved = try WeightsPath.resolve(path)
        let folder: URL
        switch resolved {
        case .file(let url): folder = url.deletingLastPathComponent()
        case .checkpoint(let dir): folder = dir.deletingLastPathComponent().deletingLastPathComponent()
        }
        for candidate in [folder, folder.appendingPathComponent("tokenizer")]
        where FileManager.default.fileExists(atPath: candidate.appendingPathComponent("vocab.json").path)
            && FileManager.default.fileExists(atPath: candidate.appendingPathComponent("merges.txt").path) {
            return candidate
        }
        throw RunError("\(path): no tokenizer beside the weights (looked in \(folder.path) and \(folder.path)/tokenizer); pass "
                       + "--tokenizer DIR, or use a bundle (`umd-mpirun export --weights \(path) --tokenizer DIR --bundle OUT`)")
    }
}
