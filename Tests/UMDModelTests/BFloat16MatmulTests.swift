import Foundation
import Testing
@testable import UMDModel

/// What bf16 matrix products (inputs rounded to bfloat16, fp32 accumulation — the numerics
/// of AVX512-BF16/AMX/oneDNN bf16 GEMMs) would do to MR-Pretrain, emulated through
/// `Matmul.bfloat16Inputs` (this machine has no bf16 instructions, so no speed is measured
/// here). Serialized: the emulation's scratch buffers are shared.
@Suite(.serialized)
struct BFloat16MatmulTests {
    /// Runs `body` with every product on this thread taking bf16-rounded inputs.
    func withBFloat16Products<T>(_ body: () -> T) -> T {
        Matmul.bfloat16Inputs = true
        defer { Matmul.bfloat16Inputs = false }
        return body()
    }

    @Test func theHookRoundsTheInputsAndOnlyOnThisThread() {
        // 1 + 2⁻¹⁰ is not a bf16 value (8-bit significand): rounded, the product is 1·1.
        var a: [Float] = [1 + 0x1p-10], b: [Float] = [1], c: [Float] = [0]
        Matmul.nt(m: 1, n: 1, k: 1, &a, lda: 1, &b, ldb: 1, &c, ldc: 1, accumulate: false)
        #expect(c[0] == 1 + 0x1p-10)
        withBFloat16Products {
            Matmul.nt(m: 1, n: 1, k: 1, &a, lda: 1, &b, ldb: 1, &c, ldc: 1, accumulate: false)
        }
        #expect(c[0] == 1)
        Matmul.bfloat16Inputs = true
        let elsewhere = Thread { #expect(!Matmul.bfloat16Inputs) }
        elsewhere.start()
        while !elsewhere.isFinished { usleep(1000) }
        Matmul.bfloat16Inputs = false
    }

    /// Gradients of one tiny MR-Pretrain step (dropout off, as `debug-step`), fp32 against
    /// bf16 products: the relative difference ‖g_bf16 − g_fp32‖ / ‖g_fp32‖ per tensor.
    @Test func oneStepGradientsStayCloseToFP32() {
        let params = UMDParameters(SyntheticBatch.config())
        let student = ParameterStore(layout: params.layout)
        params.initialize(student, seed: 21)
        let teacher = ParameterStore(layout: params.layout, withGradients: false) { UMDParameters.isTeacherTensor($0.name) }
        let other = ParameterStore(layout: params.layout)
        params.initialize(other, seed: 1021)
        teacher.copyValues(from: other)
        let objective = PretrainObjective(params: params, includeITM: true)
        let batch = SyntheticBatch.pretrain(batch: 4, seed: 3)
        func gradients() -> [String: [Float]] {
            student.zeroGradients()
            _ = objective.step(student: student, teacher: teacher, batch: batch)
            var out: [String: [Float]] = [:]
            for view in student.views {
                out[view.name] = Array(UnsafeBufferPointer(start: student.grads + view.offset, count: view.count))
            }
            return out
        }
        let reference = gradients()
        let rounded = withBFloat16Products { gradients() }
        var relative: [(String, Double)] = []
        var totalDifference = 0.0, totalNorm = 0.0
        for (name, g) in reference {
            let h = rounded[name]!
            let difference = zip(g, h).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
            let norm = g.reduce(0.0) { $0 + Double($1) * Double($1) }
            totalDifference += difference
            totalNorm += norm
            if norm > 0 { relative.append((name, (difference / norm).squareRoot())) }
        }
        relative.sort { $0.1 < $1.1 }
        // Tensors whose gradient is 0 in exact arithmetic (a key bias: softmax ignores a
        // constant added to every score) hold only rounding noise in fp32; their relative
        // difference means nothing. Those under 1e-6 of the total norm are left out.
        let meaningful = relative.filter { name, _ in
            let g = reference[name]!
            return g.reduce(0.0) { $0 + Double($1) * Double($1) } > 1e-12 * totalNorm
        }
        let overall = (totalDifference / totalNorm).squareRoot()
        let median = meaningful[meaningful.count / 2].1, worst = meaningful.last!
        print(String(format: "bf16 products, one tiny pretrain step: gradient relative difference overall %.2e, "
                     + "median tensor %.2e, worst %@ %.2e (%d of %d tensors; the rest have fp32 gradients of "
                     + "rounding-noise size)", overall, median, worst.0, worst.1, meaningful.count, relative.count))
        #expect(overall < 0.05)
        #expect(relative.allSatisfy { pair in pair.1.isFinite })
    }

    /// 200 tiny MR-Pretrain steps (AdamW, EMA teacher) on a stream of 8 synthetic batches,
    /// fp32 against bf16 products from the same start. Two training runs that differ by
    /// anything drift apart step by step, so the yardstick is what another initialisation
    /// seed does to the fp32 curve: bf16 must move the loss curve less than that.
    @Test func twoHundredStepsReachTheSameLoss() {
        func train(seed: UInt64) -> [Double] {
            let params = UMDParameters(SyntheticBatch.config())
            let student = ParameterStore(layout: params.layout)
            params.initialize(student, seed: seed)
            let teacher = ParameterStore(layout: params.layout, withGradients: false) { UMDParameters.isTeacherTensor($0.name) }
            teacher.copyValues(from: student)
            let objective = PretrainObjective(params: params, includeITM: true)
            let optimizer = AdamWOptimizer(store: student)
            let batches = (0..<8).map { SyntheticBatch.pretrain(batch: 4, seed: 100 + UInt64($0)) }
            var losses: [Double] = []
            for step in 0..<200 {
                student.zeroGradients()
                losses.append(objective.step(student: student, teacher: teacher, batch: batches[step % 8]).total)
                optimizer.step(baseLearningRate: 2e-3)
                EMA.update(teacher: teacher, student: student, lambda: 0.995)
            }
            return losses
        }
        let fp32 = train(seed: 21), otherSeed = train(seed: 22)
        let bf16 = withBFloat16Products { train(seed: 21) }
        // Mean over 20-step windows (one window covers every batch 2–3 times).
        func windows(_ l: [Double]) -> [Double] { stride(from: 0, to: 200, by: 20).map { l[$0..<$0 + 20].reduce(0, +) / 20 } }
        let (a, b, c) = (windows(fp32), windows(bf16), windows(otherSeed))
        func text(_ w: [Double]) -> String { w.map { String(format: "%.4f", $0) }.joined(separator: " ") }
        print("bf16 products, 200 tiny pretrain steps, loss per 20-step window:\n  fp32       \(text(a))\n  bf16       "
              + "\(text(b))\n  fp32 seed' \(text(c))")
        // Mean relative distance of the window means from the fp32 curve.
        func distance(_ w: [Double]) -> Double { zip(a, w).reduce(0.0) { $0 + abs($1.1 - $1.0) / $1.0 } / Double(a.count) }
        let bf16Distance = distance(b), seedDistance = distance(c)
        print(String(format: "mean relative distance from the fp32 curve: bf16 %.2e, another seed %.2e; last window: "
                     + "bf16 %.2e, another seed %.2e", bf16Distance, seedDistance, abs(b.last! - a.last!) / a.last!,
                     abs(c.last! - a.last!) / a.last!))
        #expect(bf16.allSatisfy { $0.isFinite })
        #expect(a.last! < 0.8 * a.first!, "fp32 must train for the comparison to mean anything")
        #expect(bf16Distance < seedDistance, "bf16 products move the loss curve more than another initialisation")
        #expect(b.last! < 0.8 * b.first!, "bf16 must train as fp32 does")
    }
}
