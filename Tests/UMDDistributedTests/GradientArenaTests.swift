import Foundation
import Testing
@testable import UMDDistributed
import UMDData
import UMDModel

/// A step does not zero the gradient arena: it discards it, each tensor's first gradient
/// writer overwrites (sgemm with beta 0), and the tensors backward does not reach are zeroed
/// as its reports pass them (`ParameterStore.discardGradients` / `settleGradients`). Nothing
/// left over from the last step may leak into this one's gradients.
struct GradientArenaTests {
    /// The store's bookkeeping on a hand-made layout.
    @Test func discardedViewsAreOverwrittenOrZeroedBeforeAnyoneReadsThem() {
        let layout = ParameterLayout()
        let a = layout.declare("a", shape: [3], initializer: .zeros, role: .weight)
        let b = layout.declare("b", shape: [2], initializer: .zeros, role: .weight)
        let c = layout.declare("c", shape: [4], initializer: .zeros, role: .weight)
        let store = ParameterStore(layout: layout)
        for i in 0..<store.count { store.grads[i] = .nan }
        store.discardGradients()
        // An accumulating writer finds zeros; an overwriting one is told to overwrite, once.
        let pa = store.grad(a)
        #expect((0..<3).allSatisfy { pa[$0] == 0 })
        let first = store.gradientForOverwrite(b)
        #expect(first.overwrite)
        for i in 0..<2 { first.pointer[i] = Float(i + 1) }
        #expect(!store.gradientForOverwrite(b).overwrite, "a second writer of b must add")
        // `c` was never written: settling zeroes it and leaves the others alone.
        store.settleGradients()
        let pc = store.grads + store.offset(c)
        #expect((0..<4).allSatisfy { pc[$0] == 0 })
        let pb = store.grads + store.offset(b)
        #expect(pb[0] == 1 && pb[1] == 2)
        // Settling below an offset stops at the first view that reaches past it.
        for i in 0..<store.count { store.grads[i] = .nan }
        store.discardGradients()
        let lowest = store.views[0]
        store.settleGradients(below: lowest.range.upperBound)
        #expect((lowest.range).allSatisfy { store.grads[$0] == 0 })
        #expect(store.views[1...].allSatisfy { v in v.range.allSatisfy { store.grads[$0].isNaN } })
    }

    /// Whole tiny steps (pretrain with its teacher; GM-Coord fine-tuning; two micro-batches):
    /// the gradients are bitwise the same whether the arena held zeros or NaN before the
    /// step — any stale value read anywhere would have turned them NaN.
    @Test(arguments: [Stage.pretrain, .finetune])
    func stepGradientsDoNotDependOnWhatTheArenaHeld(stage: Stage) throws {
        let preset = ModelPreset.tiny, vocabulary = 200, answers = 7
        let model = try StageModel(stage: stage, task: stage == .finetune ? .vqa : .none, classes: answers,
                                   preset: preset, vocabularySize: vocabulary, seed: 3)
        let source = InMemoryBatchSource.synthetic(globalBatch: 4, imageSize: preset.imageSize,
                                                   textLength: preset.textLength, vocabularySize: vocabulary,
                                                   classes: answers, seed: 5)
        let assembler = BatchAssembler(seed: 5, imageSize: preset.imageSize, textLength: preset.textLength,
                                       patchSize: preset.patchSize, vocabularySize: vocabulary)
        let batch = try assembler.batch(model.batchKind, source: source, positions: [0, 1, 2, 3], step: 0, epoch: 0)
        var settings = StepSettings(schedule: LearningRateSchedule(shape: .linear, totalSteps: 10))
        settings.dropout = 0.1
        let step = TrainingStep(model: model, settings: settings)
        let student = model.student
        func gradients(_ micro: [StepBatch], arenaHolds filler: Float) throws -> [Float] {
            for i in 0..<student.count { student.grads[i] = filler }
            _ = try step.gradients(micro, step: 1)
            return Array(UnsafeBufferPointer(start: student.grads, count: student.count))
        }
        for micro in [[batch], [batch, batch]] {
            let fromZeros = try gradients(micro, arenaHolds: 0)
            let fromNaN = try gradients(micro, arenaHolds: .nan)
            #expect(fromZeros.allSatisfy { $0.isFinite }, "\(stage), \(micro.count) micro-batches")
            // Counted, not `==` on the arrays: swift-testing would diff 10⁵ floats on failure.
            let differing = fromZeros.indices.filter { fromZeros[$0].bitPattern != fromNaN[$0].bitPattern }
            #expect(differing.count == 0, """
                \(stage), \(micro.count) micro-batches: stale gradients leaked into the step \
                (\(differing.count) of \(fromZeros.count) differ, first at arena offset \(differing.first ?? -1))
                """)
            #expect(fromZeros.contains { $0 != 0 })
        }
    }
}
