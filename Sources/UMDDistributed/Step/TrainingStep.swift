import Collective
import Foundation
import UMDCore
import UMDData
import UMDModel

/// How a step is run: the numbers a stage's step depends on besides the model and batch.
public struct StepSettings: Sendable {
    public var seed: UInt64 = 0
    /// Dropout in the text encoder and the fusion of student passes (0 = off).
    public var dropout: Float = 0
    /// GM-Coord modulation of the fine-tuning gradients, and its noise.
    public var gmCoord = true
    public var gmNoise = true
    /// Global-norm clipping of the trained gradients (nil = off).
    public var clipNorm: Float? = nil
    public var peakLearningRate: Float = 1e-5
    public var schedule: LearningRateSchedule
    /// EMA decay λ of the teacher.
    public var ema: Float = 0.995
    /// What a step with a non-finite loss or gradient does: stop the run, or skip the update.
    public var onNonFinite: NonFiniteAction = .stop

    public init(schedule: LearningRateSchedule) { self.schedule = schedule }

    /// The base learning rate of step `step` (0-based).
    public func learningRate(step: Int) -> Float { peakLearningRate * Float(schedule.factor(afterSteps: step)) }
}

/// The names of a step's profiler spans (`Profiler`), for `bench step --phases` and
/// `--profile`; the objectives name theirs (student forward, teacher forward, heads + losses,
/// backward) and the optimizer its own (AdamW, parameter allgather, EMA) where they run.
public enum StepSpan {
    public static let zero = "zero gradients (first writers overwrite)", syncWait = "gradient sync wait"
    public static let gmCoord = "GM-Coord", norm = "gradient norm (guard, clip factor)"
}

/// What to do when a step's loss or gradient is not finite.
public enum NonFiniteAction: String, Sendable, CaseIterable, Codable {
    /// Stop every rank with an error; nothing is updated or saved (the default).
    case stop
    /// Leave weights, moments and teacher as they were and go on with the next batch.
    case skipStep = "skip-step"
}

/// A step's loss or gradient norm was NaN or infinite (the same on every rank: losses are
/// global sums and gradients are summed before the check).
public struct NonFiniteStep: Error, CustomStringConvertible {
    public let step: Int
    public let terms: [String]
    public var lastCheckpoint: String? = nil
    /// Set when `--on-nonfinite skip-step` gave up: this many steps in a row were skipped.
    public var consecutiveSkips: Int? = nil
    public var description: String {
        "step \(step + 1): non-finite " + terms.joined(separator: ", ")
            + (consecutiveSkips.map { "; \($0) steps in a row were skipped (more than --max-skipped-steps): the model has "
                                      + "diverged, so the run stops. Nothing was saved. " } ?? "; nothing was updated or saved. ")
            + (lastCheckpoint.map { "The last checkpoint (finite) is \($0). " } ?? "No checkpoint was saved yet. ")
            + (consecutiveSkips == nil ? "Lower --lr, set --clip-norm, or pass --on-nonfinite skip-step to skip such batches."
                                       : "Lower --lr or set --clip-norm, and resume from that checkpoint.")
    }
}

/// What one step produced.
public struct StepOutcome: Sendable {
    /// Global-batch losses by metric name: "loss" (the total) and the stage's parts
    /// (mim, mlm, feamim, feamlm, itm; or task).
    public var losses: [String: Double] = [:]
    /// GM-Coord coefficients of a fine-tuning step.
    public var coefficients: GMCoord.Coefficients? = nil
    /// The base learning rate used, and ‖g‖ of the trained gradients before clipping (when measured).
    public var learningRate: Float = 0
    public var gradientNorm: Double? = nil
    /// The update was skipped (non-finite loss or gradient, `--on-nonfinite skip-step`).
    public var skipped = false
    /// Loss terms and "gradient norm" that were not finite.
    public var nonFinite: [String] = []
}

/// The one definition of a training step, used by the trainer, `debug-step` and every
/// benchmark:
///
///     discard gradients → objective (forward, losses, backward; each tensor's first gradient
///     writer overwrites, the untouched ones are zeroed as backward passes them; buckets
///     launched as they fill)
///     → gradient sync (sum over ranks) → GM-Coord modulation → clip → AdamW → EMA
///
/// Split in two so `debug-step` can record the gradients the optimizer sees:
/// `gradients(_:step:)` runs everything up to and including GM-Coord, `update(step:)` the rest.
public final class TrainingStep {
    public let model: StageModel
    public let settings: StepSettings
    let sync: GradientSynchronizer?
    let reduction: GlobalReduction

    /// `sync` and `reduction` combine ranks (nil / `.local` in one process).
    public init(model: StageModel, settings: StepSettings, sync: GradientSynchronizer? = nil,
                reduction: GlobalReduction = .local) {
        self.model = model; self.settings = settings; self.sync = sync; self.reduction = reduction
    }

    /// The whole step. The gradient norm is measured every step (one read of the trained
    /// gradients) so that a non-finite gradient is caught before it reaches the weights;
    /// a non-finite loss or norm stops (throws `NonFiniteStep`) or skips the update.
    @discardableResult
    public func run(_ batch: StepBatch, step: Int) throws -> StepOutcome {
        try run([batch], step: step)
    }

    /// A step over K micro-batches (gradient accumulation).
    @discardableResult
    public func run(_ micro: [StepBatch], step: Int) throws -> StepOutcome {
        var outcome = try gradients(micro, step: step)
        let norm = Profiler.span(StepSpan.norm) { gradientNorm(of: model.student.grads, segments: model.trainedSegments) }
        outcome.gradientNorm = norm
        outcome.nonFinite = outcome.losses.filter { !$0.value.isFinite }.map { "\($0.key) = \($0.value)" }.sorted()
            + (norm.isFinite ? [] : ["gradient norm = \(norm)"])
        if !outcome.nonFinite.isEmpty {
            if settings.onNonFinite == .stop { throw NonFiniteStep(step: step, terms: outcome.nonFinite) }
            outcome.skipped = true
            outcome.learningRate = settings.learningRate(step: step)
            return outcome
        }
        try update(step: step, measureNorm: false, into: &outcome)
        return outcome
    }

    /// Zero → objective → sync → GM-Coord: afterwards `student.grads` holds the gradient the
    /// optimizer will see (before clipping).
    public func gradients(_ batch: StepBatch, step: Int) throws -> StepOutcome {
        try gradients([batch], step: step)
    }

    /// The same over K micro-batches (gradient accumulation): the losses' divisors are the
    /// counts of all micro-batches on all ranks (summed once, before any forward pass), the
    /// gradients add up in the arena, and the buckets go out only during the last
    /// micro-batch's backward — the result is that of one K-times larger batch.
    public func gradients(_ micro: [StepBatch], step: Int) throws -> StepOutcome {
        let student = model.student
        // Nothing is written: each tensor's first gradient writer overwrites it, and the
        // tensors backward did not reach are zeroed as its reports pass them (`settle`).
        Profiler.span(StepSpan.zero) { student.discardGradients() }
        sync?.beginStep(step)
        let passKey = CounterRandom.key(CounterRandom.key(settings.seed, CounterRandom.hash("dropout")), UInt64(step))
        let local = micro.map { localCounts($0) }.reduce(into: [Double]()) { total, counts in
            total = total.isEmpty ? counts : zip(total, counts).map(+)
        }
        let totals = reduction.sum(local)
        let stepReduction = GlobalReduction(sum: reduction.sum, counts: { _ in totals })
        let sync = self.sync
        let ready = { (offset: Int) in
            student.settleGradients(below: offset)
            sync?.gradientsReady(below: offset)
        }
        var outcome = StepOutcome()
        var sums: (text: Double, image: Double)? = nil
        var losses: [String: Double] = [:]
        func finetune() throws -> FinetuneObjective {
            guard let objective = model.finetune else { throw RunError("a \(model.stage.rawValue) model got a task batch") }
            return objective
        }
        /// A fine-tuning micro-batch's loss, and its GM-Coord contribution sums.
        func addTask(_ r: FinetuneResult) {
            losses = ["task": r.loss, "loss": r.loss]
            sums = ((sums?.text ?? 0) + r.coefficients.sumText, (sums?.image ?? 0) + r.coefficients.sumImage)
        }
        // No parameter changes until the update: the backend may keep its bf16 copies of the
        // weights through every micro-batch's forward and backward.
        try Matmul.reusingParameterCopies {
            for (k, batch) in micro.enumerated() {
                model.reportGradients(to: k == micro.count - 1 ? ready : nil)
                switch batch {
                case .pretrain(let b):
                    guard let objective = model.pretrain, let teacher = model.teacher else {
                        throw RunError("a \(model.stage.rawValue) model got a pretraining batch")
                    }
                    let l = objective.step(student: student, teacher: teacher, batch: b, dropout: settings.dropout,
                                           passKey: passKey, reduction: stepReduction)
                    losses = ["mim": l.mim, "mlm": l.mlm, "feamim": l.feaMIM, "feamlm": l.feaMLM, "loss": l.total]
                    if objective.includeITM { losses["itm"] = l.itm }
                case .classification(let b):
                    addTask(try finetune().step(student: student, batch: b, dropout: settings.dropout, passKey: passKey,
                                                reduction: stepReduction))
                case .retrieval(let b):
                    addTask(try finetune().retrievalStep(student: student, batch: b, dropout: settings.dropout, passKey: passKey,
                                                         reduction: stepReduction))
                }
                outcome.losses.merge(losses, uniquingKeysWith: +)
            }
        }
        if let sums, let objective = model.finetune {
            outcome.coefficients = GMCoord.coefficients(sumText: sums.text, sumImage: sums.image, beta: objective.beta)
        }
        try Profiler.span(StepSpan.syncWait) {
            student.settleGradients()
            try sync?.finish()
        }
        if let c = outcome.coefficients, settings.gmCoord {
            Profiler.span(StepSpan.gmCoord) {
                GMCoord.modulate(student, kText: Float(c.kText), kImage: Float(c.kImage), noise: settings.gmNoise,
                                 seed: settings.seed, step: step)
            }
        }
        return outcome
    }

    /// Clip → AdamW at the scheduled learning rate of `step` → EMA teacher, in one pass over
    /// each trained tensor (`AdamW.FusedPass`: the clipping factor scales each gradient as it
    /// is read, the teacher follows the updated value) — bitwise the result of the separate
    /// passes. The gradients are not cleared: the next step discards them (`gradients`).
    /// With a sharded optimizer: AdamW on this rank's share → gather the shares → EMA over
    /// the whole teacher (replicated, so not fused).
    public func update(step: Int, measureNorm: Bool, into outcome: inout StepOutcome) throws {
        var scale: Float = 1
        if measureNorm || settings.clipNorm != nil {
            // `run` has measured the norm already (the non-finite guard): no second pass.
            let norm = outcome.gradientNorm
                ?? Profiler.span(StepSpan.norm) { gradientNorm(of: model.student.grads, segments: model.trainedSegments) }
            outcome.gradientNorm = norm
            scale = clipScale(norm: norm, maxNorm: settings.clipNorm)
        }
        outcome.learningRate = settings.learningRate(step: step)
        try model.optimizer.step(baseLearningRate: outcome.learningRate, gradientScale: scale, teacher: model.teacher,
                                 lambda: settings.ema) {
            try model.sharding?.gatherParameters(model.student.values)
        }
    }

    /// What a micro-batch adds to the losses' divisors (known before its forward pass).
    func localCounts(_ batch: StepBatch) -> [Double] {
        switch batch {
        case .pretrain(let b):
            let grid = b.imageSize / model.config.patchSize
            return PretrainObjective.localCounts(b, patchCount: grid * grid)
        case .classification(let b): return [Double(b.batch)]
        case .retrieval(let b): return [Double(b.batch)]
        }
    }

    /// Seconds the last step waited for gradient communication not hidden behind backward.
    public var communicationWaitSeconds: Double { sync?.waitSeconds ?? 0 }

    /// The gradient synchronizer's figures of the last step (bench step): seconds in
    /// reductions, bytes reduced; and its bucket count.
    public var reduceSeconds: Double { sync?.reduceSeconds ?? 0 }
    public var reducedBytes: Int { sync?.reducedBytes ?? 0 }
    public var bucketCount: Int { sync?.buckets.count ?? 0 }

    /// Stops the communication thread (when the step has one).
    public func stop() { sync?.stop() }
}
