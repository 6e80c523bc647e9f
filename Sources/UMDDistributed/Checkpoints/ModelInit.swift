import Foundation
import UMDModel

/// Starting weights of a stage from `--init` (a safetensors file written by umd: student
/// under MODEL_SPEC names, teacher under `teacher.*`, or a checkpoint directory).
/// `StageModel` is what builds a stage's model and calls this.
public enum ModelInit {
    /// Loads the student (a new task head starts fresh unless the file has one; `only`
    /// restricts the import to name prefixes) and, when the file holds one, the teacher.
    /// `path` is a safetensors file or a checkpoint directory. Returns whether a teacher was loaded.
    /// What a load did, for the log.
    public struct Report: CustomStringConvertible, Sendable {
        public var imported = 0
        public var resized: [String] = []
        /// Student tensors left at their fresh initialisation, by top-level group.
        public var fresh: [String: Int] = [:]
        public var teacherLoaded = false
        public var description: String {
            var parts = ["imported \(imported) tensor(s)" + (teacherLoaded ? " and the teacher" : "")]
            if !resized.isEmpty { parts.append("resized " + resized.joined(separator: ", ")) }
            if !fresh.isEmpty {
                parts.append("fresh: " + fresh.keys.sorted().map { "\($0).* (\(fresh[$0]!))" }.joined(separator: ", "))
            }
            return parts.joined(separator: "; ")
        }
    }

    @discardableResult
    public static func load(path: URL, params: UMDParameters, student: ParameterStore, teacher: ParameterStore?,
                            only: [String] = []) throws -> Report {
        let file = try WeightsPath.load(path.path).file
        let hasHead = file["head.fc1.weight"] != nil || file["head.score.weight"] != nil
        // Converted CLIP/RoBERTa weights hold only the encoders (and the MLM head): exactly
        // what they hold is imported, the rest of the model keeps its fresh initialisation.
        let converted = file.metadata["format"] == WeightsDescription.convertedFormat
        let present = Set(file.tensors.map(\.name))
        let include: (String) -> Bool = { name in
            if !only.isEmpty { return only.contains { name.hasPrefix($0) } && (!converted || present.contains(name)) }
            if converted { return present.contains(name) }
            return !name.hasPrefix("head.") || hasHead
        }
        if !only.isEmpty {
            // A prefix that matches nothing is a typo, not a request to import nothing.
            let unmatched = only.filter { p in !student.views.contains { $0.name.hasPrefix(p) && (!converted || present.contains($0.name)) } }
            if !unmatched.isEmpty {
                let groups = Set(file.tensors.map { String($0.name.prefix { $0 != "." }) + "." }).sorted()
                throw RunError("--init-only \(unmatched.joined(separator: ",")): no tensor of the model"
                               + (converted ? " that \(path.path) holds" : "") + " starts with "
                               + (unmatched.count == 1 ? "this prefix" : "these prefixes") + "; \(path.path) holds "
                               + groups.joined(separator: ", "))
            }
        }
        let imported = try ModelIO.load(into: student, from: file, path: path.path, include: include)
        try student.requireFinite("the --init weights in \(path.path)")
        var report = Report(imported: imported.loaded.count, resized: imported.resizeNotes)
        let loaded = Set(imported.loaded)
        for view in student.views where !loaded.contains(view.name) {
            report.fresh[String(view.name.prefix { $0 != "." }), default: 0] += 1
        }
        if let score = params.head?.score, file["head.score.weight"] == nil { params.copyMatchRowOfITM(into: score, student) }
        if let teacher, file.tensors.contains(where: { $0.name.hasPrefix("teacher.") }) {
            // The teacher follows the same prefixes (it mirrors the student's encoders); outside
            // them it starts as the student does.
            if !only.isEmpty { teacher.copyValues(from: student) }
            let t = try ModelIO.load(into: teacher, from: file, path: path.path, prefix: "teacher.",
                                     include: { name in only.isEmpty || only.contains { name.hasPrefix($0) } })
            try teacher.requireFinite("the --init teacher weights in \(path.path)")
            report.resized += t.resizeNotes.map { "teacher." + $0 }
            report.teacherLoaded = true
        }
        return report
    }
}
