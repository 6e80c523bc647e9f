/// The EMA teacher update (MODEL_SPEC.md section 7): t = λ t + (1 − λ) s for every tensor
/// the teacher holds.
public enum EMA {
    public static func update(teacher: ParameterStore, student: ParameterStore, lambda: Float) {
        update(teacher: teacher, student: student, lambda: lambda, views: teacher.views)
    }

    /// The same for some of the teacher's tensors (the ones a fused optimizer pass did not reach).
    public static func update(teacher: ParameterStore, student: ParameterStore, lambda: Float, views: [TensorView]) {
        let oneMinus = 1 - lambda
        for view in views {
            let t = teacher.values + view.offset, s = UnsafePointer(student.value(view.id))
            for i in 0..<view.count { t[i] = lambda * t[i] + oneMinus * s[i] }
        }
    }
}
