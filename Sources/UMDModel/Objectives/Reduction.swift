/// How a step turns local sums into global ones (MODEL_SPEC.md section 10a).
///
/// UMDModel knows nothing of MPI: the distributed runner passes a `sum` that allreduces
/// across ranks; a single process uses `.local`. Each rank's loss term is
/// R · (local sum) / (global count), so averaging gradients over R ranks gives exactly the
/// gradient of the global-batch loss.
public struct GlobalReduction {
    public var worldSize: Int
    /// Element-wise sum of the vector over all ranks (identity for one process).
    public var sum: ([Double]) -> [Double]

    public init(worldSize: Int, sum: @escaping ([Double]) -> [Double]) {
        self.worldSize = worldSize
        self.sum = sum
    }

    public static var local: GlobalReduction { GlobalReduction(worldSize: 1, sum: { $0 }) }
}

/// The EMA teacher update (MODEL_SPEC.md section 7): t = λ t + (1 − λ) s for every tensor
/// the teacher holds.
public enum EMA {
    public static func update(teacher: ParameterStore, student: ParameterStore, lambda: Float) {
        let oneMinus = 1 - lambda
        for view in teacher.views {
            let t = teacher.values + view.offset, s = UnsafePointer(student.value(view.id))
            for i in 0..<view.count { t[i] = lambda * t[i] + oneMinus * s[i] }
        }
    }
}
