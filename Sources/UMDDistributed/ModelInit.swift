import Foundation
import UMDModel

/// Starting weights of a stage from `--init` (a safetensors file written by umd: student
/// under MODEL_SPEC names, teacher under `teacher.*`).
public enum ModelInit {
    /// A stage's model: the student initialised from `seed` (then from `initFrom` when
    /// given) and, for pretrain and calib, the teacher (the file's, else a copy of the student).
    public static func build(stage: Stage, task: TaskKind, classes: Int, preset: ModelPreset, vocabularySize: Int,
                             seed: UInt64, initFrom: URL?, initOnly: [String])
        throws -> (params: UMDParameters, student: ParameterStore, teacher: ParameterStore?) {
        let head: TaskHead = stage != .finetune ? .none : (task == .retrieval ? .retrieval : .classifier(outputs: classes))
        let config = ModelConfig(preset: preset, vocabularySize: vocabularySize, head: head)
        try config.validate()
        let params = UMDParameters(config)
        let student = ParameterStore(layout: params.layout)
        params.initialize(student, seed: seed)
        let teacher = stage.hasTeacher
            ? ParameterStore(layout: params.layout, withGradients: false) { UMDParameters.isTeacherTensor($0.name) } : nil
        var teacherLoaded = false
        if let initFrom {
            teacherLoaded = try load(path: initFrom, params: params, student: student, teacher: teacher, only: initOnly)
        }
        if let teacher, !teacherLoaded { teacher.copyValues(from: student) }
        return (params, student, teacher)
    }

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
        let include: (String) -> Bool = { name in
            if !only.isEmpty { return only.contains { name.hasPrefix($0) } }
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
