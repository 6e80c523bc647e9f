import Foundation
import Testing
@testable import UMDModel

/// `--recompute blocks` (issue 28, item 3): every block keeps only its output and runs again
/// in backward — the gradients and losses must be bitwise those of the step that keeps
/// everything, at every stage, with dropout on (its masks are redrawn from the same keys).
struct RecomputeTests {
    /// The gradient arena's bits after `step` ran on a fresh copy of the same weights.
    func gradients(_ params: UMDParameters, seed: UInt64, step: (ParameterStore) -> Double) -> (bits: [UInt32], loss: Double) {
        let store = ParameterStore(layout: params.layout)
        params.initialize(store, seed: seed)
        TestData.randomize(store, seed: seed, scale: 0.08)
        let loss = step(store)
        return ((0..<store.count).map { store.grads[$0].bitPattern }, loss)
    }

    func expectSame(_ a: (bits: [UInt32], loss: Double), _ b: (bits: [UInt32], loss: Double), _ what: String) {
        #expect(a.loss.bitPattern == b.loss.bitPattern, "\(what): loss \(a.loss) vs \(b.loss)")
        let differing = zip(a.bits, b.bits).filter { $0 != $1 }.count
        #expect(differing == 0, "\(what): \(differing) of \(a.bits.count) gradient elements differ")
        #expect(a.bits.contains { $0 != 0 }, "\(what): the step computed gradients")
    }

    @Test(arguments: [true, false])
    func pretrainAndCalibGradientsAreBitwiseTheSame(itm: Bool) {
        let params = UMDParameters(SyntheticBatch.config())
        let batch = SyntheticBatch.pretrain(batch: 3, seed: 21, itm: itm)
        func run(_ recompute: Bool) -> (bits: [UInt32], loss: Double) {
            let objective = PretrainObjective(params: params, includeITM: itm)
            objective.recompute = recompute
            return gradients(params, seed: 5) { student in
                let teacher = ParameterStore(layout: params.layout, withGradients: false) { UMDParameters.isTeacherTensor($0.name) }
                teacher.copyValues(from: student)
                // Two steps on the same objective: the second reuses what the first left pooled.
                objective.step(student: student, teacher: teacher, batch: batch, dropout: 0.1, passKey: 77)
                student.grads.update(repeating: 0, count: student.count)
                return objective.step(student: student, teacher: teacher, batch: batch, dropout: 0.1, passKey: 78).total
            }
        }
        expectSame(run(false), run(true), itm ? "pretrain" : "calib")
    }

    @Test func fineTuningGradientsAreBitwiseTheSame() {
        let params = UMDParameters(SyntheticBatch.config(head: .classifier(outputs: 3)))
        let p = ModelPreset.tiny, B = 3
        let (ids, attention) = SyntheticBatch.text(batch: B, length: p.textLength, seed: 4)
        let batch = ClassificationBatch(batch: B, imageSize: p.imageSize, textLength: p.textLength,
                                        pixels: SyntheticBatch.pixels(batch: B, size: p.imageSize, seed: 4),
                                        textIDs: ids, attention: attention, labels: [0, 1, 2], sampleIDs: [4, 5, 6])
        func run(_ recompute: Bool) -> (bits: [UInt32], loss: Double) {
            let objective = FinetuneObjective(params: params)
            objective.recompute = recompute
            return gradients(params, seed: 6) { objective.step(student: $0, batch: batch, dropout: 0.1, passKey: 9).loss }
        }
        expectSame(run(false), run(true), "fine-tuning")
    }

    @Test func retrievalGradientsAreBitwiseTheSame() {
        let params = UMDParameters(SyntheticBatch.config(head: .retrieval))
        let p = ModelPreset.tiny, B = 2, T = 3
        let (ids, attention) = SyntheticBatch.text(batch: T, length: p.textLength, seed: 8)
        let batch = RetrievalBatch(batch: B, imageSize: p.imageSize, textLength: p.textLength,
                                   pixels: SyntheticBatch.pixels(batch: B, size: p.imageSize, seed: 8), textCount: T,
                                   textIDs: ids, attention: attention, candidates: [0, 1, 2, 1, 2, 0], sampleIDs: [0, 1])
        func run(_ recompute: Bool) -> (bits: [UInt32], loss: Double) {
            let objective = FinetuneObjective(params: params)
            objective.recompute = recompute
            return gradients(params, seed: 7) { objective.retrievalStep(student: $0, batch: batch, dropout: 0.1, passKey: 3).loss }
        }
        expectSame(run(false), run(true), "retrieval")
    }
}
