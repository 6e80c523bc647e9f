import Testing
@testable import UMDModel

/// Single-process tiny-preset training on one fixed batch: the total loss falls steadily,
/// and each loss falls when trained alone.
struct OverfitTests {
    /// `separateTeacher`: start the teacher from another init, so the feature losses start
    /// from a real gap (a copied teacher makes them ~1e-5 at the N(0, 0.02) init).
    func train(weights: LossWeights, steps: Int, lr: Float = 2e-3, separateTeacher: Bool = false) -> [PretrainLosses] {
        let params = UMDParameters(SyntheticBatch.config())
        let student = ParameterStore(layout: params.layout)
        params.initialize(student, seed: 21)
        let teacher = ParameterStore(layout: params.layout, withGradients: false) { UMDParameters.isTeacherTensor($0.name) }
        if separateTeacher {
            let other = ParameterStore(layout: params.layout)
            params.initialize(other, seed: 1021)
            teacher.copyValues(from: other)
        } else {
            teacher.copyValues(from: student)
        }
        let objective = PretrainObjective(params: params, includeITM: true)
        objective.weights = weights
        let optimizer = AdamWOptimizer(store: student)
        let batch = SyntheticBatch.pretrain(batch: 4, seed: 3)
        var history: [PretrainLosses] = []
        for _ in 0..<steps {
            student.zeroGradients()
            history.append(objective.step(student: student, teacher: teacher, batch: batch))
            optimizer.step(baseLearningRate: lr)
            EMA.update(teacher: teacher, student: student, lambda: 0.995)
        }
        return history
    }

    @Test func totalLossFallsSteadilyOnAFixedBatch() {
        let history = train(weights: LossWeights(), steps: 40).map(\.total)
        // Steadily: each block of 10 steps ends lower than the one before, and the end is far below the start.
        let checkpoints = [0, 10, 20, 30, 39].map { history[$0] }
        for i in 1..<checkpoints.count {
            #expect(checkpoints[i] < checkpoints[i - 1], "total loss at checkpoints: \(checkpoints)")
        }
        #expect(history[39] < 0.6 * history[0], "total loss \(history[0]) -> \(history[39])")
    }

    @Test("each loss falls when trained alone", arguments: ["mim", "mlm", "feamim", "feamlm", "itm"])
    func lossFallsAlone(name: String) {
        // Random-noise pixel targets are the slowest to memorise: MIM gets more steps.
        let steps = name == "mim" ? 60 : 25
        let history = train(weights: .only(name), steps: steps, lr: name == "mim" ? 5e-3 : 2e-3, separateTeacher: true)
        func value(_ l: PretrainLosses) -> Double {
            switch name {
            case "mim": return l.mim
            case "mlm": return l.mlm
            case "feamim": return l.feaMIM
            case "feamlm": return l.feaMLM
            default: return l.itm
            }
        }
        let first = value(history[0]), last = value(history[steps - 1])
        print("overfit \(name) alone: \(stride(from: 0, to: steps, by: 5).map { value(history[$0]) })")
        #expect(last < 0.8 * first, "\(name): \(first) -> \(last)")
        let total = history.map(\.total)
        #expect(total[steps - 1] < total[0], "the weighted total of \(name) alone must fall too")
    }
}
