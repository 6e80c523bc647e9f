import Collective
import Foundation
import UMDCore
import UMDData
import UMDModel

/// The data-parallel stage runner: every rank runs `Trainer.run` with the same
/// configuration; rank 0 logs, writes metrics and the final weights.
public enum Trainer {
    public struct Summary: Sendable {
        public var finalLosses: [String: Double] = [:]
        public var samplesPerSecond = 0.0
        public var output: URL
    }

    public static func run(_ given: RunConfiguration, world: Communicator) throws -> Summary {
        // Set-up: configuration agreed by every rank, data, model, step, checkpoints, resume.
        let config = try given.resolved()
        try config.validate()
        let preset = try config.presetValue
        let rank = world.rank, G = config.batchSize
        guard G % world.size == 0 else {
            throw RunError("--batch-size \(G) does not split evenly over \(world.size) ranks; use a multiple of \(world.size)")
        }
        let watchdog = StallWatchdog(world: world, timeout: config.stallTimeout)
        defer { watchdog.stop() }
        let out = URL(fileURLWithPath: config.out)
        let log = RunLog(rank: rank, directory: out)
        let stopSignal = StopSignal.install(), faults = FaultInjection(rank: rank, config: config)
        LauncherWatch.start(rank: rank)
        let threads = ThreadBudget.configure()
        Matmul.backend = try config.matmul.makeBackend()
        let lock = try start(config, out: out, world: world, watchdog: watchdog)
        defer { lock?.release() }
        // Only now, with the directory ours: a refused start never touches another run's history.
        if config.resume == nil {
            log.startFresh()
            try record(config, out: out, rank: rank)
        }
        let data = try TrainingData(config, preset: preset, world: world, watchdog: watchdog, log: log)
        let model = try buildModel(config, preset: preset, data: data, world: world, watchdog: watchdog, log: log)
        let currentStep = StepCounter()
        let step = try RunFactory(config).step(model, world: world, watchdog: watchdog, during: {
            "step \(currentStep.value), the allreduce of loss sums and counts" })
        defer { step.stop() }
        let state = TrainingState(model)
        let plan = CheckpointPlan(run: out, config: config, tokenizerHash: data.tokenizerHash,
                                  classesHash: data.classesHash, schedule: config.stepSettings.schedule,
                                  classes: data.table.classes)
        let checkpoints = try CheckpointWriter(plan: plan, state: state, world: world, watchdog: watchdog, faults: faults,
                                               log: log)
        defer { try? checkpoints.finish() }
        let resumed = try config.resume.map { try resume($0, plan: plan, state: state, world: world,
                                                         watchdog: watchdog, log: log) }
        if resumed != nil { try record(config, out: out, rank: rank) }
        let startStep = resumed?.step ?? 0
        log.info("\(config.stage.rawValue) \(config.task?.rawValue ?? "roco"): preset \(preset.name), \(world.size) rank(s), "
                 + "\(config.imageSize!) px, L = \(config.textLength!), global batch \(G)"
                 + (config.accumulate > 1 ? " x \(config.accumulate) accumulated" : "") + ", \(config.steps) steps, \(data.table.count) samples, vocabulary "
                 + "\(data.tokenizer.vocabularySize), \(model.trainedParameterCount) trained parameters in "
                 + "\(step.bucketCount) gradient bucket(s), matmul \(config.matmul.description), "
                 + "\(threads.threads) thread(s) per rank"
                 + (threads.fromEnvironment ? "" : " (cores / ranks on this node; set OPENBLAS_NUM_THREADS to choose)"))

        // The loop: one step, the checks and logs that are due, a checkpoint when due.
        let validation = try Validation(config, data: data)
        if let saved = resumed?.validation { validation?.restore(saved) }
        // A run that early stopping ended is complete: resuming it trains no further.
        let lastStep = resumed?.validation?.stoppedEarly == true ? startStep : config.steps
        if lastStep < config.steps {
            log.info("early stopping ended this run after step \(startStep); nothing is left to train (to train on, start "
                     + "a new run with --init \(out.path))")
        }
        let prefetcher = data.prefetcher(from: startStep, kind: model.batchKind)
        defer { prefetcher.stop() }
        // --profile: the step's named spans from the first step on (rank 0 logs them at the end).
        Profiler.reset()
        Profiler.enabled = config.profile
        defer { Profiler.enabled = false }
        var summary = Summary(output: out), window = LogWindow(), lastDataWait = 0.0
        var stopped = false, endStep = startStep, skips = 0
        for s in startStep..<lastStep {
            currentStep.value = s
            faults.beforeStep(s)
            let batch = try data.next(from: prefetcher, step: s, watchdog: watchdog)
            let outcome = try run(step, batch, s, run: out, skips: &skips, limit: config.maxSkippedSteps, log: log)
            endStep = s + 1
            faults.afterUpdate(s, student: model.student)
            window.add(samples: G * config.accumulate, dataWait: prefetcher.waitSeconds - lastDataWait, commWait: step.communicationWaitSeconds)
            lastDataWait = prefetcher.waitSeconds
            if (s + 1) % config.consistencyEvery == 0 || s == config.steps - 1 {
                try checkReplicas(model, after: s, world: world, watchdog: watchdog)
            }
            if config.logsAfter(step: s) || outcome.skipped {
                summary.finalLosses = window.emit(outcome, step: s, totalSteps: config.steps, startStep: startStep,
                                                  stage: config.stage.rawValue, log: log)
            }
            let earlyStop = try validation?.after(steps: s + 1, model: model, config: config, world: world,
                                                  watchdog: watchdog, log: log) ?? false
            stopped = try stopSignal.agreed(world: world, watchdog: watchdog, step: s, alsoStop: faults.stopsAfter(s + 1))
            let last = stopped || earlyStop || s == config.steps - 1
            if last || checkpoints.isDue(afterSteps: s + 1) {
                LauncherWatch.stopIfOrphaned()
                log.finishProgress()
                try checkpoints.save(afterSteps: s + 1, final: last, validation: validation?.state)
            }
            if stopped {
                log.info("stopping after step \(s + 1) on a termination signal; resume with --resume")
                break
            }
            if earlyStop { break }
        }
        summary.samplesPerSecond = Double((endStep - startStep) * G * config.accumulate)
            / Date().timeIntervalSince(window.runStart)
        if stopped {
            try watchdog.guarding("end of run barrier") { try world.barrier() }
            throw StopSignal.Stopped()
        }
        log.finishProgress()
        if config.profile && endStep > startStep {
            let seconds = Date().timeIntervalSince(window.runStart)
            log.info("where a step's time went (--profile, this rank, per step; \"other\" holds data waits, logging, "
                     + "checks and checkpoints):\n  " + Profiler.lines(Profiler.table, steps: endStep - startStep,
                                                                      total: seconds).joined(separator: "\n  "))
        }
        try finish(config, model: model, data: data, summary: summary, startStep: startStep, endStep: endStep, since: window.runStart,
                   world: world, watchdog: watchdog, log: log)
        return summary
    }
}
