import Foundation

/// Export and import of parameter stores as safetensors under MODEL_SPEC.md names.
public enum ModelIO {
    /// The tensors of `store` (arena order), each named `prefix + name`.
    public static func tensors(of store: ParameterStore, prefix: String = "",
                               where include: (TensorView) -> Bool = { _ in true }) -> [Safetensors.Tensor] {
        store.views.filter(include).map {
            Safetensors.Tensor(name: prefix + $0.name, shape: $0.shape,
                               floats: UnsafeBufferPointer(start: store.values + $0.offset, count: $0.count))
        }
    }

    /// Writes the student under its names and, when given, the teacher under `teacher.<name>`,
    /// straight from the arenas (no copy of the weights is made).
    public static func export(student: ParameterStore, teacher: ParameterStore? = nil, metadata: [String: String] = [:],
                              to url: URL) throws {
        func borrowed(_ store: ParameterStore, _ prefix: String) -> [Safetensors.Tensor] {
            store.views.map {
                Safetensors.Tensor(name: prefix + $0.name, shape: $0.shape,
                                   borrowing: UnsafeBufferPointer(start: store.values + $0.offset, count: $0.count))
            }
        }
        var all = borrowed(student, "")
        if let teacher { all += borrowed(teacher, "teacher.") }
        try Safetensors.write(all, metadata: metadata, to: url)
    }

    /// What a weights file lacks or holds in another shape than the model (`ModelError.weights`).
    public struct Mismatch: Sendable, CustomStringConvertible {
        public let path: String
        public var missing: [String] = []
        public var extra: [String] = []
        public var misshaped: [String] = []
        public var description: String {
            var parts: [String] = []
            func list(_ names: [String]) -> String {
                names.prefix(12).joined(separator: ", ") + (names.count > 12 ? ", … (\(names.count) in all)" : "")
            }
            if !missing.isEmpty { parts.append("missing \(missing.count) tensor(s): \(list(missing))") }
            if !misshaped.isEmpty { parts.append("wrong shape: \(list(misshaped))") }
            if !extra.isEmpty { parts.append("\(extra.count) tensor(s) this model does not have: \(list(extra))") }
            return "\(path): cannot load the weights: " + parts.joined(separator: "; ")
                + ". Check the preset, vocabulary size and task head, or import a subset (e.g. --init-only vision.,text.)."
        }
    }

    /// What an import did.
    public struct ImportReport: Sendable {
        public var loaded: [String] = []
        public var resizedPositions: [String] = []
        /// "vision.pos_embed 18x18 -> 24x24 patches", for the log.
        public var resizeNotes: [String] = []
    }

    /// Loads the tensors of `store` selected by `include` from `file` (names `prefix + name`).
    /// Every selected tensor must be present with its shape; tensors of the file under the
    /// prefix that match `include` but that the store lacks are errors too ("extra"), other
    /// tensors are ignored. `vision.pos_embed` of another grid is resized bicubically when
    /// `resizePositions` is on (MODEL_SPEC.md section 1). Nothing is changed on error.
    @discardableResult
    public static func load(into store: ParameterStore, from file: Safetensors.File, path: String, prefix: String = "",
                            include: (String) -> Bool = { _ in true}, resizePositions: Bool = true) throws -> ImportReport {
        var error = Mismatch(path: path)
        var report = ImportReport()
        // What to copy where: the file's bytes straight into the arena, or resized values.
        var plan: [(TensorView, Safetensors.Tensor?, [Float]?)] = []
        let byName = file.byName
        for view in store.views where include(view.name) {
            guard let t = byName[prefix + view.name] else { error.missing.append(prefix + view.name); continue }
            guard t.dtype == .f32 else { error.misshaped.append("\(t.name) is \(t.dtype.rawValue), expected F32"); continue }
            if t.shape == view.shape {
                plan.append((view, t, nil))
            } else if resizePositions, view.name == "vision.pos_embed", t.shape.count == 2, t.shape[1] == view.shape[1],
                      let from = gridSide(t.shape[0] - 1), let to = gridSide(view.shape[0] - 1) {
                plan.append((view, nil, PositionResize.bicubic(t.floats, fromGrid: from, toGrid: to, width: view.shape[1])))
                report.resizedPositions.append(view.name)
                report.resizeNotes.append("\(view.name) \(from)x\(from) -> \(to)x\(to) patches")
            } else {
                error.misshaped.append("\(t.name) is \(t.shape), expected \(view.shape)")
            }
        }
        for t in file.tensors where t.name.hasPrefix(prefix) {
            let name = String(t.name.dropFirst(prefix.count))
            if prefix.isEmpty && name.hasPrefix("teacher.") { continue }   // a teacher stored alongside
            if include(name) && store.view(named: name) == nil { error.extra.append(t.name) }
        }
        if !error.missing.isEmpty || !error.extra.isEmpty || !error.misshaped.isEmpty { throw ModelError.weights(error) }
        for (view, tensor, values) in plan {
            let target = UnsafeMutableRawPointer(store.values + view.offset)
            if let tensor {
                tensor.data.withUnsafeBytes { target.copyMemory(from: $0.baseAddress!, byteCount: view.count * 4) }
            } else if let values {
                values.withUnsafeBytes { target.copyMemory(from: $0.baseAddress!, byteCount: view.count * 4) }
            }
            report.loaded.append(view.name)
        }
        return report
    }

    static func gridSide(_ n: Int) -> Int? {
        let side = Int(Double(n).squareRoot().rounded())
        return side * side == n && side > 0 ? side : nil
    }
}

/// Resizing of `vision.pos_embed` to another patch grid: bicubic on the grid, the CLS row
/// kept — PyTorch's `interpolate(mode="bicubic", align_corners=False)` without antialias:
/// cubic convolution with a = −0.75, source coordinate (x + 0.5)·in/out − 0.5, borders clamped.
public enum PositionResize {
    static func weights(_ t: Double) -> (Double, Double, Double, Double) {
        let a = -0.75
        func near(_ x: Double) -> Double { ((a + 2) * x - (a + 3)) * x * x + 1 }           // |x| ≤ 1
        func far(_ x: Double) -> Double { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }       // 1 < |x| < 2
        return (far(t + 1), near(t), near(1 - t), far(2 - t))
    }

    /// table [1 + from², width] → [1 + to², width].
    public static func bicubic(_ table: [Float], fromGrid from: Int, toGrid to: Int, width: Int) -> [Float] {
        var out = [Float](repeating: 0, count: (1 + to * to) * width)
        for j in 0..<width { out[j] = table[j] }
        let scale = Double(from) / Double(to)
        func taps(_ o: Int) -> ([Int], [Double]) {
            let src = (Double(o) + 0.5) * scale - 0.5
            let i = Int(src.rounded(.down))
            let (w0, w1, w2, w3) = weights(src - Double(i))
            let idx = [i - 1, i, i + 1, i + 2].map { min(max($0, 0), from - 1) }
            return (idx, [w0, w1, w2, w3])
        }
        for oy in 0..<to {
            let (ys, wy) = taps(oy)
            for ox in 0..<to {
                let (xs, wx) = taps(ox)
                let dst = (1 + oy * to + ox) * width
                for j in 0..<width {
                    var v = 0.0
                    for a in 0..<4 {
                        var row = 0.0
                        for b in 0..<4 { row += wx[b] * Double(table[(1 + ys[a] * from + xs[b]) * width + j]) }
                        v += wy[a] * row
                    }
                    out[dst + j] = Float(v)
                }
            }
        }
        return out
    }
}
