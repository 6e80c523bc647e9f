import RealModule

/// AdamW with decoupled weight decay (MODEL_SPEC.md section 10):
/// m = β1 m + (1−β1) g; v = β2 v + (1−β2) g²; p −= lr (m̂ / (√v̂ + ε) + wd·p),
/// m̂ = m / (1−β1^t), v̂ = v / (1−β2^t). No decay on biases and LayerNorm parameters.
public struct AdamWHyperparameters: Sendable, Equatable, Codable {
    public var beta1: Float = 0.9
    public var beta2: Float = 0.98
    public var epsilon: Float = 1e-8
    public var weightDecay: Float = 0.01
    public init() {}
}

public enum AdamW {
    /// One update of `count` contiguous parameters with their gradients and moments.
    /// `t` is the 1-based step count used for bias correction.
    public static func update(parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>,
                              firstMoment m: UnsafeMutablePointer<Float>, secondMoment v: UnsafeMutablePointer<Float>,
                              count: Int, learningRate lr: Float, decay: Bool, step t: Int,
                              _ h: AdamWHyperparameters) {
        let b1 = h.beta1, b2 = h.beta2
        let correction1 = 1 - Float(Double(b1).power(t)), correction2 = 1 - Float(Double(b2).power(t))
        let wd = decay ? h.weightDecay : 0
        for i in 0..<count {
            let gi = g[i]
            let mi = b1 * m[i] + (1 - b1) * gi
            let vi = b2 * v[i] + (1 - b2) * gi * gi
            m[i] = mi
            v[i] = vi
            let mHat = mi / correction1, vHat = vi / correction2
            p[i] -= lr * (mHat / (vHat.squareRoot() + h.epsilon) + wd * p[i])
        }
    }
}

private extension Double {
    func power(_ n: Int) -> Double { Double.pow(self, n) }
}

/// AdamW over a parameter store: moment arenas with the store's layout, a learning-rate
/// multiplier per tensor and the decay rule from each tensor's role.
///
/// `@unchecked Sendable`: the moment arenas belong to one replica and are touched only by
/// the thread that runs its optimizer step.
public final class AdamWOptimizer: @unchecked Sendable {
    public let store: ParameterStore
    public var hyperparameters: AdamWHyperparameters
    public let firstMoment: UnsafeMutablePointer<Float>    // [store.count]
    public let secondMoment: UnsafeMutablePointer<Float>   // [store.count]
    /// Optimizer steps taken so far (the next update uses t = stepsTaken + 1).
    public var stepsTaken = 0
    /// Learning-rate multiplier of each view, in `store.views` order.
    public private(set) var multipliers: [Float]
    /// Tensors that receive updates (views in store order); frozen ones are skipped.
    public private(set) var trained: [Bool]

    public init(store: ParameterStore, hyperparameters: AdamWHyperparameters = .init(),
                multiplier: (TensorView) -> Float = { _ in 1 }, isTrained: (TensorView) -> Bool = { _ in true }) {
        self.store = store
        self.hyperparameters = hyperparameters
        firstMoment = .allocate(capacity: max(store.count, 1))
        firstMoment.initialize(repeating: 0, count: max(store.count, 1))
        secondMoment = .allocate(capacity: max(store.count, 1))
        secondMoment.initialize(repeating: 0, count: max(store.count, 1))
        multipliers = store.views.map(multiplier)
        trained = store.views.map(isTrained)
    }

    deinit {
        firstMoment.deallocate()
        secondMoment.deallocate()
    }

    /// One step at base learning rate `baseLR` (the schedule already applied).
    public func step(baseLearningRate baseLR: Float) {
        stepsTaken += 1
        for (i, view) in store.views.enumerated() where trained[i] {
            AdamW.update(parameters: store.values + view.offset, gradients: store.grads + view.offset,
                         firstMoment: firstMoment + view.offset, secondMoment: secondMoment + view.offset,
                         count: view.count, learningRate: baseLR * multipliers[i], decay: view.role.isDecayed,
                         step: stepsTaken, hyperparameters)
        }
    }

    public func resetMoments() {
        firstMoment.update(repeating: 0, count: store.count)
        secondMoment.update(repeating: 0, count: store.count)
        stepsTaken = 0
    }
}
