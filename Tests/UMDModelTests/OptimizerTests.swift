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

    @Test func clippingScalesToMaxNorm() {
        // Two segments with an untrained gap between them: the norm spans both segments
        // (3-4-5 triangle), the gap is neither counted nor scaled.
        var g: [Float] = [3, 100, 4]
        let norm = clipGradientNorm(&g, segments: [0..<1, 2..<3], maxNorm: 1)
        #expect(abs(norm - 5) < 1e-9)
        #expect(abs(g[0] - 0.6) < 1e-6 && abs(g[2] - 0.8) < 1e-6)
        #expect(g[1] == 100, "a gap between segments is left alone")
        var small: [Float] = [0.3, 0.4]
        clipGradientNorm(&small, segments: [0..<2], maxNorm: 1)
        #expect(small == [0.3, 0.4], "under the limit nothing changes")
        var unclipped: [Float] = [30, 40]
        #expect(abs(clipGradientNorm(&unclipped, segments: [0..<2], maxNorm: nil) - 50) < 1e-9)
        #expect(unclipped == [30, 40], "without a limit only the norm is measured")
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
