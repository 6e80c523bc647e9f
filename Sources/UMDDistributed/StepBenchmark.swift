import Collective
import Foundation
import UMDCore
import UMDModel

/// `umd-mpirun bench step`: samples/s of a full MR-Pretrain step (forward, backward,
/// bucketed gradient averaging, AdamW, EMA) on synthetic inputs.
///
/// Run under mpirun with R ranks. Phase 1: every rank trains alone at the same time (so the
/// machine is as loaded as in phase 2) — the 1-rank baseline. Phase 2: the ranks train
/// together. Weak-scaling efficiency = phase-2 samples/s ÷ (R × phase-1 samples/s). The
/// gradient-sync bandwidth of phase 2 is printed next to a plain MPI_Allreduce of the same
/// bytes measured in the same run.
public enum StepBenchmark {
    public static func run(preset: ModelPreset, localBatch: Int, steps: Int, world: Communicator) throws {
        let R = world.size
        let vocabulary = 1000
        let params = UMDParameters(ModelConfig(preset: preset, vocabularySize: vocabulary))
        let student = ParameterStore(layout: params.layout)
        params.initialize(student, seed: 1)
        let teacher = ParameterStore(layout: params.layout, withGradients: false) { UMDParameters.isTeacherTensor($0.name) }
        teacher.copyValues(from: student)
        let optimizer = AdamWOptimizer(store: student, multiplier: { LearningRateMultipliers.pretrain.multiplier(for: $0.name) },
                                       isTrained: { Stage.pretrain.trains($0.name) })
        let objective = PretrainObjective(params: params, includeITM: true)
        let segments = GradientSynchronizer.segments(student.views.filter { Stage.pretrain.trains($0.name) }.map(\.range))
        let trainedBytes = segments.reduce(0) { $0 + $1.count } * 4
        let batch = syntheticBatch(preset: preset, batch: localBatch, vocabulary: vocabulary, seed: UInt64(world.rank))

        func phase(world w: Communicator?) throws -> (seconds: Double, wait: Double, reduceSeconds: Double, bytes: Int) {
            let sync = try w.map { try GradientSynchronizer(world: $0, gradients: student.grads, segments: segments,
                                                            watchdog: nil) }
            defer { sync?.stop() }
            objective.gradientsReady = sync.map { s in { s.gradientsReady(below: $0) } }
            let reduction = w.map { comm in
                GlobalReduction(worldSize: comm.size) { v in var x = v; try? comm.allreduce(&x, op: .sum); return x }
            } ?? .local
            var wait = 0.0, reduceSeconds = 0.0, bytes = 0
            var start = Date()
            for step in 0...steps {
                if step == 1 { start = Date(); wait = 0; reduceSeconds = 0; bytes = 0 }   // step 0 warms up
                student.zeroGradients()
                sync?.beginStep(step)
                objective.step(student: student, teacher: teacher, batch: batch, dropout: 0.1, passKey: UInt64(step),
                               reduction: reduction)
                try sync?.finish()
                wait += sync?.waitSeconds ?? 0
                reduceSeconds += sync?.reduceSeconds ?? 0
                bytes += sync?.reducedBytes ?? 0
                optimizer.step(baseLearningRate: 1e-5)
                EMA.update(teacher: teacher, student: student, lambda: 0.995)
            }
            return (Date().timeIntervalSince(start), wait, reduceSeconds, bytes)
        }

        try world.barrier()
        let alone = try phase(world: nil)                 // every rank at once, no communication
        let aloneSeconds = try world.allreduce(alone.seconds, op: .max)
        try world.barrier()
        let together = try phase(world: world)
        let togetherSeconds = try world.allreduce(together.seconds, op: .max)
        let waitShare = try world.allreduce(together.wait, op: .max) / togetherSeconds

        // The engine alone: every bucket launched at once, nothing else running.
        let engine = try GradientSynchronizer(world: world, gradients: student.grads, segments: segments, watchdog: nil)
        defer { engine.stop() }
        engine.beginStep(0); try engine.finish()
        try world.barrier()
        let engineStart = Date()
        for r in 1...3 { engine.beginStep(r); try engine.finish() }
        let engineSeconds = try world.allreduce(Date().timeIntervalSince(engineStart) / 3, op: .max)

        // A plain allreduce of the same bytes, same run.
        var plain = [Float](repeating: 1, count: trainedBytes / 4)
        try world.allreduce(&plain, op: .sum)
        try world.barrier()
        let plainStart = Date()
        let repeats = 3
        for _ in 0..<repeats { try world.allreduce(&plain, op: .sum) }
        let plainSeconds = try world.allreduce(Date().timeIntervalSince(plainStart) / Double(repeats), op: .max)
        let syncRate = together.reduceSeconds > 0 ? Double(together.bytes) / together.reduceSeconds : 0
        let plainRate = Double(trainedBytes) / plainSeconds

        if world.rank == 0 {
            let perStepAlone = Double(localBatch * steps) / aloneSeconds
            let perStepTogether = Double(localBatch * R * steps) / togetherSeconds
            print("# umd step benchmark: preset \(preset.name), local batch \(localBatch), \(steps) timed steps, "
                  + "OpenBLAS threads \(BLAS.threadCount), \(String(format: "%.1f", Double(trainedBytes) / 1048576)) MiB of gradients")
            print(String(format: "1 rank (each rank alone, all at once): %8.2f samples/s per rank (%.1f ms/step)",
                         perStepAlone, aloneSeconds / Double(steps) * 1000))
            print(String(format: "%d ranks together:                     %8.2f samples/s (%.1f ms/step)", R, perStepTogether,
                         togetherSeconds / Double(steps) * 1000))
            if R > 1 {
                print(String(format: "weak-scaling efficiency 1 -> %d ranks:  %7.1f %%  (target >= 85 %%)", R,
                             100 * perStepTogether / (Double(R) * perStepAlone)))
                print(String(format: "step time waiting on communication:    %7.1f %%", 100 * waitShare))
                let engineRate = Double(trainedBytes) / engineSeconds
                print(String(format: "plain MPI_Allreduce of the %.1f MiB:  %7.2f GB/s", Double(trainedBytes) / 1048576,
                             plainRate / 1e9))
                print(String(format: "gradient sync alone (all buckets):     %7.2f GB/s = %.1f %% of plain (target >= 90 %%)",
                             engineRate / 1e9, 100 * engineRate / plainRate))
                print(String(format: "gradient sync overlapped with backward: %6.2f GB/s = %.1f %% of plain (cores shared with compute)",
                             syncRate / 1e9, 100 * syncRate / plainRate))
            }
        }
    }

    static func syntheticBatch(preset: ModelPreset, batch B: Int, vocabulary V: Int, seed: UInt64) -> PretrainBatch {
        let H = preset.imageSize, L = preset.textLength, N = preset.patchCount
        let pixels = (0..<(B * 3 * H * H)).map { Float(CounterRandom.normal(seed, UInt64($0))) }
        var ids = [Int32](repeating: SpecialTokens.pad, count: B * L), attention = [Int32](repeating: 0, count: B * L)
        for b in 0..<B {
            for t in 0..<L {
                ids[b * L + t] = t == 0 ? SpecialTokens.start : t == L - 1 ? SpecialTokens.end
                    : Int32(4 + Int(CounterRandom.bits(seed, UInt64(b * L + t)) % UInt64(V - 5)))
                attention[b * L + t] = 1
            }
        }
        var masked: [Int32] = [], labels: [Int32] = [], keep: [Int32] = []
        for b in 0..<B {
            let (m, l) = Masking.maskText(Array(ids[(b * L)..<((b + 1) * L)]), vocabularySize: V, seed: seed, epoch: 0,
                                          sampleIndex: b)
            masked += m; labels += l
            keep += Masking.keptPatches(patchCount: N, seed: seed, epoch: 0, sampleIndex: b)
        }
        return PretrainBatch(batch: B, imageSize: H, textLength: L, pixels: pixels, textIDs: ids, attention: attention,
                             maskedTextIDs: masked, mlmLabels: labels, idsKeep: keep, itmPixels: pixels,
                             itmLabels: [Int32](repeating: 1, count: B), sampleIDs: (0..<B).map { UInt64($0) })
    }
}
