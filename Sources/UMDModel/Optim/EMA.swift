/// The EMA teacher update (MODEL_SPEC.md section 7): t = λ t + (1 − λ) s for every tensor
/// the teacher holds. Training runs it from `AdamWOptimizer.step` (fused into AdamW's pass
/// where it can be); `blend` is the formula, the same for both.
public enum EMA {
    public static func update(teacher: ParameterStore, student: ParameterStore, lambda: Float) {
        for view in teacher.views {
            update(teacher: teacher.values + view.offset, student: UnsafePointer(student.value(view.id)),
                   count: view.count, lambda: lambda)
        }
    }

    /// t ← λ t + (1 − λ) s over `count` values (part of a tensor).
    public static func update(teacher t: UnsafeMutablePointer<Float>, student s: UnsafePointer<Float>, count: Int,
                              lambda: Float) {
        let oneMinus = 1 - lambda
        for i in 0..<count { t[i] = blend(t[i], s[i], lambda, oneMinus) }
    }

    /// λ t + (1 − λ) s, with 1 − λ computed once by the caller (scalars or SIMD lanes: the
    /// same Float operations in the same order, so fused and separate passes agree bitwise).
    @inline(__always)
    static func blend<T: SIMD>(_ t: T, _ s: T, _ lambda: Float, _ oneMinus: Float) -> T where T.Scalar == Float {
        lambda * t + oneMinus * s
    }

    @inline(__always)
    static func blend(_ t: Float, _ s: Float, _ lambda: Float, _ oneMinus: Float) -> Float { lambda * t + oneMinus * s }
}
