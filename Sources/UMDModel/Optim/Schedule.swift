#if canImport(Glibc)
import Glibc
#endif

/// Learning-rate schedule over T steps with W = floor(0.1 T) warm-up steps
/// (MODEL_SPEC.md section 10, HuggingFace's convention).
public struct LearningRateSchedule: Sendable, Equatable, Codable {
    public enum Shape: String, Sendable, Codable, CaseIterable {
        /// Pretraining: base · (T − s) / (T − W) after warm-up.
        case linear
        /// Downstream: base · ½ (1 + cos(π (s − W) / (T − W))) after warm-up.
        case cosine
        /// base after warm-up, to the end.
        case constant
    }

    public var shape: Shape
    public var totalSteps: Int
    public var warmupSteps: Int

    /// Warm-up is floor(0.1 T) unless given.
    public init(shape: Shape, totalSteps: Int, warmupSteps: Int? = nil) {
        self.shape = shape
        self.totalSteps = max(totalSteps, 0)
        self.warmupSteps = warmupSteps ?? Int((Double(max(totalSteps, 0)) * 0.1).rounded(.down))
    }

    /// Multiplier of the peak lr after `s` steps already taken (0 for the first step).
    /// The first step has lr 0 unless W = 0; past T the lr stays 0.
    public func factor(afterSteps s: Int) -> Double {
        let T = totalSteps, W = warmupSteps
        if s < W { return Double(s) / Double(W) }
        if shape == .constant { return s < T ? 1 : 0 }
        if s >= T || T == W { return 0 }
        let progress = Double(s - W) / Double(T - W)
        switch shape {
        case .linear: return Double(T - s) / Double(T - W)
        case .cosine: return 0.5 * (1 + cos(Double.pi * progress))
        case .constant: return 1
        }
    }
}
