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
    /// What the optimizer's pass does besides AdamW, so each array is read once a step.
    public struct FusedPass {
        /// Multiplies every gradient before use (global-norm clipping's factor; 1 = none).
        public var gradientScale: Float = 1
        /// EMA teacher of this tensor: t ← λ t + (1 − λ) p with the updated p.
        public var teacher: UnsafeMutablePointer<Float>? = nil
        public var lambda: Float = 0
        public init(gradientScale: Float = 1, teacher: UnsafeMutablePointer<Float>? = nil, lambda: Float = 0) {
            self.gradientScale = gradientScale; self.teacher = teacher; self.lambda = lambda
        }
    }

    /// One AdamW update of `count` contiguous parameters with their gradients and moments
    /// (`t`: the 1-based step count of the bias correction), with the extra work of `fused`,
    /// 16 lanes at a time. Every element sees the
    /// same Float operations in the same order as the scalar formula (no contraction, IEEE
    /// square root and division), so the result is bitwise that of separate passes:
    /// clip (g·s), AdamW, EMA. The gradients are only read (the next step discards them:
    /// `ParameterStore.discardGradients`).
    public static func update(parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafeMutablePointer<Float>,
                              firstMoment m: UnsafeMutablePointer<Float>, secondMoment v: UnsafeMutablePointer<Float>,
                              count: Int, learningRate lr: Float, decay: Bool, step t: Int,
                              _ h: AdamWHyperparameters, fused: FusedPass = FusedPass()) {
        let b1 = h.beta1, b2 = h.beta2, eps = h.epsilon
        let c1 = 1 - Float(Double(b1).power(t)), c2 = 1 - Float(Double(b2).power(t))
        let wd = decay ? h.weightDecay : 0
        let oneMinusB1 = 1 - b1, oneMinusB2 = 1 - b2
        let scale = fused.gradientScale, lambda = fused.lambda, oneMinusLambda = 1 - fused.lambda
        let lanes = FloatLanes.scalarCount
        let full = count & ~(lanes - 1)
        var i = 0
        while i < full {
            let gi = VectorMath.load(g, i) * scale
            let mi = b1 * VectorMath.load(m, i) + oneMinusB1 * gi
            let vi = b2 * VectorMath.load(v, i) + oneMinusB2 * gi * gi
            VectorMath.store(mi, m, i)
            VectorMath.store(vi, v, i)
            let pi = VectorMath.load(p, i)
            let updated = pi - lr * ((mi / c1) / (VectorMath.squareRoot(vi / c2) + eps) + wd * pi)
            VectorMath.store(updated, p, i)
            if let teacher = fused.teacher {
                VectorMath.store(EMA.blend(VectorMath.load(teacher, i), updated, lambda, oneMinusLambda), teacher, i)
            }
            i += lanes
        }
        for i in full..<count {
            let gi = g[i] * scale
            let mi = b1 * m[i] + oneMinusB1 * gi
            let vi = b2 * v[i] + oneMinusB2 * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] -= lr * ((mi / c1) / ((vi / c2).squareRoot() + eps) + wd * p[i])
            if let teacher = fused.teacher { teacher[i] = EMA.blend(teacher[i], p[i], lambda, oneMinusLambda) }
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
    /// The arena range whose parameters this optimizer updates and whose moments it holds:
    /// the whole arena, or one rank's share with a sharded optimizer (ZeRO stage 1).
    public let owned: Range<Int>
    public let firstMoment: UnsafeMutablePointer<Float>    // [owned.count]: m of arena offset owned.lowerBound + i
    public let secondMoment: UnsafeMutablePointer<Float>   // [owned.count]
    /// Optimizer steps taken so far (the next update uses t = stepsTaken + 1).
    public var stepsTaken = 0
    /// Learning-rate multiplier of each view, in `store.views` order.
    public private(set) var multipliers: [Float]
    /// Tensors that receive updates (views in store order); frozen ones are skipped.
    public private(set) var trained: [Bool]

    /// `owned`: the arena range this optimizer updates (nil: all of it).
    public init(store: ParameterStore, hyperparameters: AdamWHyperparameters = .init(),
                multiplier: (TensorView) -> Float = { _ in 1 }, isTrained: (TensorView) -> Bool = { _ in true },
                owned: Range<Int>? = nil) {
        self.store = store
        self.hyperparameters = hyperparameters
        self.owned = owned ?? 0..<store.count
        precondition(self.owned.lowerBound >= 0 && self.owned.upperBound <= store.count, "owned range outside the arena")
        let capacity = max(self.owned.count, 1)
        firstMoment = HugePageMemory.allocate(Float.self, capacity: capacity)
        firstMoment.initialize(repeating: 0, count: capacity)
        secondMoment = HugePageMemory.allocate(Float.self, capacity: capacity)
        secondMoment.initialize(repeating: 0, count: capacity)
        multipliers = store.views.map(multiplier)
        trained = store.views.map(isTrained)
    }

    deinit {
        HugePageMemory.deallocate(firstMoment)
        HugePageMemory.deallocate(secondMoment)
    }

    /// True when this optimizer updates only part of the arena (another rank owns the rest).
    public var isSharded: Bool { owned != 0..<store.count }

    /// One step at base learning rate `baseLR` (the schedule already applied).
    public func step(baseLearningRate baseLR: Float) {
        step(baseLearningRate: baseLR, gradientScale: 1, teacher: nil, lambda: 0)
    }

    /// A step of an optimizer that shares nothing with other ranks (nothing to gather).
    public func step(baseLearningRate baseLR: Float, gradientScale: Float, teacher: ParameterStore?, lambda: Float) {
        step(baseLearningRate: baseLR, gradientScale: gradientScale, teacher: teacher, lambda: lambda, gather: {})
    }

    /// One training step's update — the one place the teacher follows the student (EMA,
    /// MODEL_SPEC.md section 7): gradients scaled by `gradientScale` (clipping), AdamW on the
    /// trained tensors (the part of each in `owned`), then t ← λ t + (1 − λ) p for every
    /// tensor `teacher` holds, from the updated values.
    ///
    /// The EMA rides in AdamW's pass over each trained tensor the teacher holds — over the
    /// part of it this rank updates (each array read once) — and one EMA pass covers the rest
    /// of the teacher: tensors this stage does not train and, with a sharded optimizer, the
    /// parts other ranks update, after `gather` has brought every rank's updated share. The
    /// teacher is bitwise the same either way (the same formula on the same updated values).
    public func step(baseLearningRate baseLR: Float, gradientScale: Float, teacher: ParameterStore?, lambda: Float,
                     gather: () throws -> Void) rethrows {
        stepsTaken += 1
        /// Per teacher tensor (by parameter index): the part of its view, relative to the
        /// view's start, that AdamW's pass has already carried the EMA over.
        var followed: [Int: Range<Int>] = [:]
        Profiler.span("AdamW (+ clip, EMA fused)") {
            for (i, view) in store.views.enumerated() where trained[i] {
                let part = view.range.clamped(to: owned)
                guard !part.isEmpty else { continue }
                let within = (part.lowerBound - view.offset)..<(part.upperBound - view.offset)
                let fusedTeacher = teacher.flatMap { $0.contains(view.id) ? $0.value(view.id) + within.lowerBound : nil }
                if fusedTeacher != nil { followed[view.id.index] = within }
                let moment = part.lowerBound - owned.lowerBound
                AdamW.update(parameters: store.values + part.lowerBound, gradients: store.grads + part.lowerBound,
                             firstMoment: firstMoment + moment, secondMoment: secondMoment + moment,
                             count: part.count, learningRate: baseLR * multipliers[i], decay: view.role.isDecayed,
                             step: stepsTaken, hyperparameters,
                             fused: AdamW.FusedPass(gradientScale: gradientScale, teacher: fusedTeacher, lambda: lambda))
            }
        }
        if isSharded { try Profiler.span("parameter allgather (sharded optimizer)", gather) }
        guard let teacher else { return }
        // What the pass did not cover: whole tensors, or the parts before and after this
        // rank's share.
        var rest: [(view: TensorView, part: Range<Int>)] = []
        for view in teacher.views {
            guard let done = followed[view.id.index] else { rest.append((view, 0..<view.count)); continue }
            if done.lowerBound > 0 { rest.append((view, 0..<done.lowerBound)) }
            if done.upperBound < view.count { rest.append((view, done.upperBound..<view.count)) }
        }
        if !rest.isEmpty {
            Profiler.span("EMA (what AdamW did not fuse)") {
                for (view, part) in rest {
                    EMA.update(teacher: teacher.values + view.offset + part.lowerBound,
                               student: UnsafePointer(store.value(view.id)) + part.lowerBound,
                               count: part.count, lambda: lambda)
                }
            }
        }
    }

    public func resetMoments() {
        firstMoment.update(repeating: 0, count: owned.count)
        secondMoment.update(repeating: 0, count: owned.count)
        stepsTaken = 0
    }
}
