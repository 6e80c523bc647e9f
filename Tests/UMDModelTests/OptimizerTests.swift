import Testing
import Foundation
@testable import UMDModel

/// AdamW against hand-computed steps, the schedules, clipping, and the arena's layout rules.
struct OptimizerTests {
    @Test func adamWMatchesHandComputedSteps() {
        let layout = ParameterLayout()
        let w = layout.declare("head.weight", shape: [1], initializer: .ones, role: .weight)
        let b = layout.declare("head.bias", shape: [1], initializer: .ones, role: .bias)
        let n = layout.declare("head.ln.weight", shape: [1], initializer: .ones, role: .layerNormWeight)
        let store = ParameterStore(layout: layout)
        store.initialize(seed: 0)
        let optimizer = AdamWOptimizer(store: store, multiplier: { $0.name == "head.bias" ? 5 : 1 })
        // Steps with g = 0.5, -0.25, 0.125, lr 0.1, beta (0.9, 0.98), eps 1e-8, wd 0.01.
        // Hand values (decayed weight): 0.899000002, 0.871390231, 0.836240386.
        let expected: [Float] = [0.899000002, 0.8713902313, 0.8362403863]
        for (t, g) in [Float(0.5), -0.25, 0.125].enumerated() {
            store.grad(w)[0] = g; store.grad(b)[0] = g; store.grad(n)[0] = g
            optimizer.step(baseLearningRate: 0.1)
            #expect(abs(store.value(w)[0] - expected[t]) < 2e-7, "step \(t + 1): \(store.value(w)[0])")
        }
        // After step 1 an undecayed parameter moves by exactly lr · m̂/(√v̂+ε) ≈ lr.
        let layout2 = ParameterLayout()
        let bias = layout2.declare("x.bias", shape: [1], initializer: .ones, role: .bias)
        let lnw = layout2.declare("x.ln.weight", shape: [1], initializer: .ones, role: .layerNormWeight)
        let store2 = ParameterStore(layout: layout2)
        store2.initialize(seed: 0)
        store2.grad(bias)[0] = 0.5
        store2.grad(lnw)[0] = 0.5
        AdamWOptimizer(store: store2, multiplier: { $0.name == "x.bias" ? 5 : 1 }).step(baseLearningRate: 0.1)
        #expect(abs(store2.value(bias)[0] - (1 - 0.5)) < 1e-6, "x5 multiplier, no decay")
        #expect(abs(store2.value(lnw)[0] - 0.9) < 1e-6, "LayerNorm weight: no decay")
    }

    @Test func weightDecayRuleFollowsRoles() {
        #expect(ParameterRole.weight.isDecayed && ParameterRole.embedding.isDecayed)
        #expect(!ParameterRole.bias.isDecayed && !ParameterRole.layerNormWeight.isDecayed
                && !ParameterRole.layerNormBias.isDecayed)
    }

    @Test func linearScheduleWithWarmup() {
        let s = LearningRateSchedule(shape: .linear, totalSteps: 100)
        #expect(s.warmupSteps == 10)
        let cases: [(Int, Double)] = [(0, 0), (5, 0.5), (10, 1), (55, 0.5), (99, 1.0 / 90), (100, 0), (150, 0)]
        for (step, value) in cases { #expect(abs(s.factor(afterSteps: step) - value) < 1e-12, "step \(step)") }
    }

    @Test func cosineScheduleWithWarmup() {
        let s = LearningRateSchedule(shape: .cosine, totalSteps: 100)
        let cases: [(Int, Double)] = [(0, 0), (10, 1), (55, 0.5), (100, 0)]
        for (step, value) in cases { #expect(abs(s.factor(afterSteps: step) - value) < 1e-12, "step \(step)") }
        // 32.5% of the way after warm-up: 0.5 (1 + cos(0.25 π)).
        let quarter = LearningRateSchedule(shape: .cosine, totalSteps: 90, warmupSteps: 10)
        #expect(abs(quarter.factor(afterSteps: 30) - 0.5 * (1 + cos(Double.pi / 4))) < 1e-12)
    }

    @Test func noWarmupWhenFloorIsZero() {
        let s = LearningRateSchedule(shape: .linear, totalSteps: 5)
        #expect(s.warmupSteps == 0)
        #expect(s.factor(afterSteps: 0) == 1)
        #expect(abs(s.factor(afterSteps: 4) - 0.2) < 1e-12)
    }

    /// What the training step uses: the norm over the trained segments and the factor the
    /// fused optimizer pass multiplies every gradient by (`FusedOptimizerPassTests`).
    @Test func clippingScalesToMaxNorm() {
        // Two segments with an untrained gap between them: the norm spans both segments
        // (3-4-5 triangle), the gap is not counted.
        let g: [Float] = [3, 100, 4]
        let norm = gradientNorm(of: g, segments: [0..<1, 2..<3])
        #expect(abs(norm - 5) < 1e-9)
        #expect(abs(clipScale(norm: norm, maxNorm: 1) - Float(1 / (5 + 1e-6))) == 0)
        #expect(clipScale(norm: 0.5, maxNorm: 1) == 1, "under the limit nothing changes")
        #expect(clipScale(norm: 50, maxNorm: nil) == 1, "without a limit only the norm is measured")
    }

    @Test func arenaIsLaidOutInReverseDeclarationOrderWithNamedViews() {
        let layout = ParameterLayout()
        let first = LinearParams.declare(layout, "vision.blocks.0.attn.q", in: 4, out: 3)
        let last = LayerNormParams.declare(layout, "mlm.ln", width: 5)
        let store = ParameterStore(layout: layout)
        #expect(store.count == 12 + 3 + 5 + 5)
        #expect(store.offset(last.bias) == 0, "last declared (last used in forward) sits at offset 0")
        #expect(store.offset(first.weight) == store.count - 12)
        #expect(store.views(withPrefix: "vision.").map(\.name) == ["vision.blocks.0.attn.q.bias", "vision.blocks.0.attn.q.weight"])
        #expect(store.view(named: "mlm.ln.weight")?.shape == [5])
        // A subset store (like the teacher) keeps ids but has its own offsets.
        let subset = ParameterStore(layout: layout) { $0.name.hasPrefix("vision.") }
        #expect(subset.count == 15 && subset.contains(first.weight) && !subset.contains(last.weight))
    }

    @Test func initialisationIsDeterministicAndFollowsTheSpec() {
        let layout = ParameterLayout()
        let lin = LinearParams.declare(layout, "fusion.text_proj", in: 64, out: 64)
        let ln = LayerNormParams.declare(layout, "fusion.ln", width: 8)
        let a = ParameterStore(layout: layout), b = ParameterStore(layout: layout)
        a.initialize(seed: 42); b.initialize(seed: 42)
        #expect(memcmp(a.values, b.values, a.count * 4) == 0, "same seed, same values")
        let w = UnsafeBufferPointer(start: a.value(lin.weight), count: 64 * 64)
        let mean = w.reduce(0.0) { $0 + Double($1) } / Double(w.count)
        let std = (w.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(w.count) - mean * mean).squareRoot()
        #expect(abs(mean) < 0.002 && abs(std - 0.02) < 0.001, "N(0, 0.02): mean \(mean), std \(std)")
        #expect(UnsafeBufferPointer(start: a.value(lin.bias!), count: 64).allSatisfy { $0 == 0 })
        #expect(UnsafeBufferPointer(start: a.value(ln.weight), count: 8).allSatisfy { $0 == 1 })
        a.initialize(seed: 43)
        #expect(memcmp(a.values, b.values, a.count * 4) != 0, "another seed, other values")
    }
}

/// The fused optimizer pass production runs (clip factor, AdamW, EMA in one pass; learning-rate
/// multipliers, decay by role, frozen tensors, sharded ranges) against a plain per-element
/// reference written from MODEL_SPEC.md section 10 — bitwise, since the pass promises the
/// scalar formula's Float operations in the scalar formula's order (issue 26).
struct FusedOptimizerPassTests {
    /// A store of odd-sized tensors (16-lane body and scalar tail both used) with random
    /// values and gradients, and a teacher holding some of them.
    func model(seed: UInt64) -> (ParameterStore, ParameterStore) {
        let layout = ParameterLayout()
        _ = layout.declare("enc.weight", shape: [7, 5], initializer: .normal(std: 0.5), role: .weight)
        _ = layout.declare("enc.bias", shape: [19], initializer: .normal(std: 0.5), role: .bias)
        _ = layout.declare("enc.ln.weight", shape: [33], initializer: .normal(std: 0.5), role: .layerNormWeight)
        _ = layout.declare("frozen.weight", shape: [3, 3], initializer: .normal(std: 0.5), role: .weight)
        _ = layout.declare("head.weight", shape: [4, 16], initializer: .normal(std: 0.5), role: .weight)
        let store = ParameterStore(layout: layout)
        store.initialize(seed: seed)
        var state = seed &+ 7
        for i in 0..<store.count {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            store.grads[i] = Float(Int64(bitPattern: state) >> 40) / Float(1 << 22)       // about [-1, 1)
        }
        let teacher = ParameterStore(layout: layout, withGradients: false) { !$0.name.hasPrefix("head.") }
        teacher.copyValues(from: store)
        for i in 0..<teacher.count { teacher.values[i] *= 0.9 }
        return (store, teacher)
    }

    func multiplier(_ v: TensorView) -> Float { v.name.hasPrefix("head.") ? 50 : v.name.hasSuffix("bias") ? 5 : 1 }
    func trained(_ v: TensorView) -> Bool { !v.name.hasPrefix("frozen.") }

    @Test func theFusedPassEqualsThePlainFormulaBitwise() throws {
        let (store, teacher) = model(seed: 3)
        let (reference, referenceTeacher) = model(seed: 3)
        var h = AdamWHyperparameters()
        h.weightDecay = 0.1
        let optimizer = AdamWOptimizer(store: store, hyperparameters: h, multiplier: multiplier, isTrained: trained)
        var m = [Float](repeating: 0, count: store.count), v = m
        let (scale, lambda, base): (Float, Float, Float) = (0.37, 0.995, 1e-3)
        for t in 1...3 {
            optimizer.step(baseLearningRate: base, gradientScale: scale, teacher: teacher, lambda: lambda)
            // The reference, element by element.
            let c1 = 1 - Float(pow(Double(h.beta1), Double(t))), c2 = 1 - Float(pow(Double(h.beta2), Double(t)))
            for view in reference.views where trained(view) {
                let lr = base * multiplier(view), wd = view.role.isDecayed ? h.weightDecay : 0
                for i in view.range {
                    let g = reference.grads[i] * scale
                    m[i] = h.beta1 * m[i] + (1 - h.beta1) * g
                    v[i] = h.beta2 * v[i] + (1 - h.beta2) * g * g
                    let p = reference.values[i]
                    reference.values[i] = p - lr * ((m[i] / c1) / ((v[i] / c2).squareRoot() + h.epsilon) + wd * p)
                }
            }
            // The teacher follows every tensor it holds, trained or not (frozen.weight: its own pass).
            for view in referenceTeacher.views {
                let tv = referenceTeacher.value(view.id), pv = reference.value(view.id)
                for k in 0..<view.count { tv[k] = lambda * tv[k] + (1 - lambda) * pv[k] }
            }
            #expect(memcmp(store.values, reference.values, store.count * 4) == 0, "weights after step \(t)")
            #expect(memcmp(optimizer.firstMoment, m, store.count * 4) == 0, "m after step \(t)")
            #expect(memcmp(optimizer.secondMoment, v, store.count * 4) == 0, "v after step \(t)")
            #expect(memcmp(teacher.values, referenceTeacher.values, teacher.count * 4) == 0, "teacher after step \(t)")
        }
        let frozen = try #require(store.views.first { $0.name == "frozen.weight" })
        let untouched = model(seed: 3).0
        #expect(memcmp(store.value(frozen.id), untouched.value(frozen.id), frozen.count * 4) == 0, "frozen tensors stay")
    }

    /// Sharded optimizers (ZeRO-1) over split ranges, cuts inside tensors, update exactly
    /// what one optimizer over the whole arena updates.
    @Test func shardedRangesTogetherEqualTheWholeArena() {
        let (whole, _) = model(seed: 5)
        let (split, _) = model(seed: 5)
        let one = AdamWOptimizer(store: whole, multiplier: multiplier, isTrained: trained)
        let cut = 41
        #expect(split.views.contains { $0.range.lowerBound < cut && cut < $0.range.upperBound }, "the cut splits a tensor")
        let shards = [0..<cut, cut..<split.count].map {
            AdamWOptimizer(store: split, multiplier: multiplier, isTrained: trained, owned: $0)
        }
        for _ in 0..<3 {
            one.step(baseLearningRate: 1e-2)
            for shard in shards { shard.step(baseLearningRate: 1e-2, gradientScale: 1, teacher: nil, lambda: 0) }
        }
        #expect(memcmp(whole.values, split.values, whole.count * 4) == 0)
        #expect(memcmp(one.firstMoment, shards[0].firstMoment, cut * 4) == 0)
        #expect(memcmp(one.secondMoment + cut, shards[1].secondMoment, (whole.count - cut) * 4) == 0)
    }

    /// Sharded, the EMA rides in AdamW's pass over this rank's share of each tensor and covers
    /// the rest after the gather: two replicas (as two ranks), each with its own teacher, the
    /// cut inside a tensor, end bitwise where one unsharded optimizer's fused pass ends —
    /// students and teachers (a frozen tensor and one the teacher lacks included).
    @Test func shardedUpdatesCarryTheTeacherAsTheUnshardedPassDoes() {
        let (whole, wholeTeacher) = model(seed: 7)
        let (rankA, teacherA) = model(seed: 7), (rankB, teacherB) = model(seed: 7)
        let one = AdamWOptimizer(store: whole, multiplier: multiplier, isTrained: trained)
        let cut = 90
        #expect(whole.views.contains { $0.range.lowerBound < cut && cut < $0.range.upperBound && wholeTeacher.contains($0.id) },
                "the cut splits a tensor the teacher holds")
        let a = AdamWOptimizer(store: rankA, multiplier: multiplier, isTrained: trained, owned: 0..<cut)
        let b = AdamWOptimizer(store: rankB, multiplier: multiplier, isTrained: trained, owned: cut..<rankB.count)
        let (scale, lambda): (Float, Float) = (0.6, 0.99)
        for _ in 0..<3 {
            one.step(baseLearningRate: 1e-2, gradientScale: scale, teacher: wholeTeacher, lambda: lambda)
            // A updates its share; its gather lets B update its own (B's gather copies A's share
            // over), then copies B's share back — each rank sees both shares before its EMA rest.
            a.step(baseLearningRate: 1e-2, gradientScale: scale, teacher: teacherA, lambda: lambda) {
                b.step(baseLearningRate: 1e-2, gradientScale: scale, teacher: teacherB, lambda: lambda) {
                    (rankB.values).update(from: rankA.values, count: cut)
                }
                (rankA.values + cut).update(from: rankB.values + cut, count: rankA.count - cut)
            }
        }
        for (store, teacher, name) in [(rankA, teacherA, "A"), (rankB, teacherB, "B")] {
            #expect(memcmp(whole.values, store.values, whole.count * 4) == 0, "rank \(name): weights")
            #expect(memcmp(wholeTeacher.values, teacher.values, teacher.count * 4) == 0, "rank \(name): teacher")
        }
    }
}
