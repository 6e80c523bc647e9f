import Foundation
import UMDModel

/// Starting weights of a stage from `--init` (a safetensors file written by umd: student
/// under MODEL_SPEC names, teacher under `teacher.*`, or a checkpoint directory).
/// `StageModel` is what builds a stage's model and calls this.
public enum ModelInit {
    /// Loads the student (a new task head starts fresh unless the file has one; `only`
    /// restricts the import to name prefixes) and, when the file holds one, the teacher.
    /// `path` is a safetensors file or a checkpoint directory. Returns whether a teacher was loaded.
    @discardableResult
    public static func load(path: URL, params: UMDParameters, student: ParameterStore, teacher: ParameterStore?,
                            only: [String] = []) throws -> Bool {
        var isDirectory: ObjCBool = false
        let file: Safetensors.File
        if FileManager.default.fileExists(atPath: path.path, isDirectory: &isDirectory), isDirectory.boolValue {
            file = try Checkpoints.weights(path, includeTeacher: true).0
        } else {
            file = try Safetensors.read(path)
        }
        let hasHead = file["head.fc1.weight"] != nil || file["head.score.weight"] != nil
        // Converted CLIP/RoBERTa weights hold only the encoders (and the MLM head): exactly
        // what they hold is imported, the rest of the model keeps its fresh initialisation.
        let converted = file.metadata["format"] == PretrainedWeights.convertedFormat
        let present = Set(file.tensors.map(\.name))
        let include: (String) -> Bool = { name in
            if !only.isEmpty { return only.contains { name.hasPrefix($0) } && (!converted || present.contains(name)) }
            if converted { return present.contains(name) }
            return !name.hasPrefix("head.") || hasHead
        }
        try ModelIO.load(into: student, from: file, path: path.path, include: include)
        if let score = params.head?.score, file["head.score.weight"] == nil { params.copyMatchRowOfITM(into: score, student) }
        if let teacher, file.tensors.contains(where: { $0.name.hasPrefix("teacher.") }) {
            try ModelIO.load(into: teacher, from: file, path: path.path, prefix: "teacher.")
            return true
        }
        return false
    }
}
