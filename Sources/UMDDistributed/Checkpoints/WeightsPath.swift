import Foundation
import UMDCore
import UMDModel

/// The one way every command names weights (`--init`, `--resume DIR`, `eval --weights`,
/// `predict`, `export`, `inspect`, `encode`): a run directory (its latest weights: final.safetensors
/// of a finished run, else its newest complete checkpoint), a
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

    static let expected = "expected a run directory, a checkpoint directory (RUN/checkpoints/step-NNNNNNNN), "
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
