import Collective
import Foundation
import UMDCore
import UMDData
import UMDModel
#if canImport(Glibc)
import Glibc
#endif

/// The data-parallel stage runner: every rank runs `Trainer.run` with the same
/// configuration; rank 0 logs, writes metrics and the final weights.
public enum Trainer {
    /// What a stage's training data looks like, as parallel arrays over the data set.
    struct TrainingData {
        var images: [URL] = []
        var texts: [String] = []
        var labels: [Int] = []
        var classes: [String] = []
    }

    /// One rank's inputs of one step.
    enum StepBatch: Sendable {
        case pretrain(PretrainBatch)
        case classification(ClassificationBatch)
        case retrieval(RetrievalBatch)
    }

    public struct Summary: Sendable {
        public var finalLosses: [String: Double] = [:]
        public var samplesPerSecond = 0.0
        public var output: URL
    }

    public static func run(_ config: RunConfiguration, world: Communicator) throws -> Summary {
        try config.validate()
        let preset = try config.presetValue
        let rank = world.rank, R = world.size, G = config.batchSize
        guard G % R == 0 else {
            throw RunError("--batch-size \(G) does not split evenly over \(R) ranks; use a multiple of \(R)")
        }
        let watchdog = StallWatchdog(world: world, timeout: config.stallTimeout)
        defer { watchdog.stop() }
        let out = URL(fileURLWithPath: config.out)
        let log = RunLog(rank: rank, directory: out, keepMetrics: config.resume != nil)
        StopSignal.install()
        let (threads, fromEnvironment) = ThreadBudget.configure()

        // Every rank must run the same configuration.
        try watchdog.guarding("start-up, configuration hash check") {
            try Consistency.requireAgreement(config.hash, what: "the run configuration (hash)", world: world)
        }
        if rank == 0 {
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(config).write(to: out.appendingPathComponent("config.json"))
        }

        // Tokenizer and data (each rank reads the sample list; rank 0 reports bad records).
        let tokenizer = try ByteLevelBPE(directory: URL(fileURLWithPath: config.tokenizer!))
        let data = try loadData(config, log: log)
        try watchdog.guarding("start-up, data set size check") {
            try Consistency.requireAgreement(UInt64(data.texts.count), what: "the number of training samples", world: world)
            try Consistency.requireAgreement(UInt64(tokenizer.vocabularySize), what: "the tokenizer's vocabulary size",
                                             world: world)
        }

        // Model, teacher, optimizer.
        let (params, student, teacher) = try ModelInit.build(
            stage: config.stage, task: config.task?.kind ?? .none, classes: data.classes.count, preset: preset,
            vocabularySize: tokenizer.vocabularySize, seed: config.seed,
            initFrom: config.initFrom.map { URL(fileURLWithPath: $0) }, initOnly: config.initOnly)
        // Rank 0's weights are the run's weights.
        try watchdog.guarding("start-up, broadcast of the initial weights") {
            try world.broadcast(UnsafeMutableBufferPointer(start: student.values, count: student.count), root: 0)
            if let teacher { try world.broadcast(UnsafeMutableBufferPointer(start: teacher.values, count: teacher.count), root: 0) }
        }
        var hyper = AdamWHyperparameters()
        hyper.weightDecay = config.weightDecay
        let multipliers = config.multipliers
        let optimizer = AdamWOptimizer(store: student, hyperparameters: hyper,
                                       multiplier: { multipliers.multiplier(for: $0.name) },
                                       isTrained: { config.stage.trains($0.name) })
        let schedule = LearningRateSchedule(shape: config.stage == .pretrain ? .linear : .cosine, totalSteps: config.steps)
        let trainedSegments = GradientSynchronizer.segments(student.views.filter { config.stage.trains($0.name) }.map(\.range))
        let sync = try GradientSynchronizer(world: world, gradients: student.grads, segments: trainedSegments,
                                            bucketBytes: Int(config.bucketMB * 1048576), watchdog: watchdog)
        defer { sync.stop() }

        // Data pipeline: the sampler's cursor is the global step, so any world size sees the
        // same global batches; a background thread prepares the next ones.
        let sampler = try DistributedSampler(datasetSize: data.texts.count, globalBatch: G, worldSize: R, rank: rank,
                                             seed: config.seed)
        let builder = BatchBuilder(tokenizer: tokenizer, imageSize: preset.imageSize, textLength: preset.textLength,
                                   patchSize: preset.patchSize, seed: config.seed)

        let currentStep = StepCounter()
        let reduction = GlobalReduction(worldSize: R) { values in
            if R == 1 { return values }
            var v = values
            do {
                try watchdog.guarding("step \(currentStep.value), the allreduce of loss sums and counts") {
                    try world.allreduce(&v, op: .sum)
                }
            } catch {
                world.abort(message: "error: \(error)")
            }
            return v
        }
        let pretrainObjective = config.stage == .finetune ? nil
            : PretrainObjective(params: params, includeITM: config.stage == .pretrain)
        pretrainObjective?.alpha = config.alpha
        let finetuneObjective = config.stage == .finetune ? FinetuneObjective(params: params) : nil
        finetuneObjective?.beta = config.beta
        pretrainObjective?.gradientsReady = { sync.gradientsReady(below: $0) }
        finetuneObjective?.gradientsReady = { sync.gradientsReady(below: $0) }

        // Resume: the newest complete checkpoint that loads, falling back to older ones.
        let state = TrainingState(student: student, teacher: teacher, optimizer: optimizer)
        let tokenizerHash = Checkpoints.hashFiles(["vocab.json", "merges.txt"].map {
            URL(fileURLWithPath: config.tokenizer!).appendingPathComponent($0) })
        let classesHash = String(CounterRandom.hash(data.classes.joined(separator: "\n")), radix: 16)
        var startStep = 0
        if let resume = config.resume {
            startStep = try resumeState(resume, run: out, config: config, state: state, tokenizerHash: tokenizerHash,
                                        classesHash: classesHash, log: log)
            try watchdog.guarding("start-up, agreement on the resumed step") {
                try Consistency.requireAgreement(UInt64(startStep), what: "the resumed step", world: world)
                try Consistency.requireAgreement(Consistency.checksum(student.values, count: student.count),
                                                 what: "the resumed weights", world: world)
            }
        }
        let asyncSaver = config.asyncCheckpoint ? try AsyncCheckpointer(world: world, watchdog: watchdog) : nil
        defer { try? asyncSaver?.wait() }
        func checkpoint(after steps: Int, final: Bool) throws {
            if let asyncSaver {
                if !final {
                    try asyncSaver.start(state.content, step: steps, config: config, run: out, tokenizerHash: tokenizerHash,
                                         classesHash: classesHash, schedule: schedule)
                    log.info("checkpoint: step \(steps) being written in the background")
                    return
                }
                try asyncSaver.wait()   // the last save is synchronous, after the one in flight
            }
            let crash = config.debugCrashCheckpointRank == rank && config.debugCrashCheckpointStep == steps
            let dir = try Checkpoints.save(state: state, step: steps, config: config, run: out, world: world,
                                           watchdog: watchdog, tokenizerHash: tokenizerHash, classesHash: classesHash,
                                           schedule: schedule, keep: config.keepCheckpoints, level: Int32(config.zstdLevel),
                                           crashAfterBytes: crash ? state.count * 2 / max(R, 1) : nil)
            log.info("checkpoint: \(dir.path)")
        }

        log.info("\(config.stage.rawValue) \(config.task?.rawValue ?? "roco"): preset \(preset.name), \(R) rank(s), "
                 + "global batch \(G), \(config.steps) steps, \(data.texts.count) samples, vocabulary \(tokenizer.vocabularySize), "
                 + "\(trainedSegments.reduce(0) { $0 + $1.count }) trained parameters in \(sync.buckets.count) gradient bucket(s), "
                 + "\(threads) OpenBLAS thread(s) per rank\(fromEnvironment ? "" : " (cores / ranks on this node; set OPENBLAS_NUM_THREADS to choose)")")
        let prefetcher = Prefetcher<StepBatch>(startStep: startStep, depth: 2) { step in
            try makeBatch(step: step, config: config, sampler: sampler, data: data, builder: builder, rank: rank)
        }
        defer { prefetcher.stop() }
        var summary = Summary(output: out)
        let runStart = Date()
        var windowStart = Date(), windowSamples = 0, windowDataWait = 0.0, windowCommWait = 0.0
        var lastDataWait = 0.0
        var stoppedBySignal = false
        for step in startStep..<config.steps {
            currentStep.value = step
            if config.debugStallRank == rank && config.debugStallStep == step { sleep(3600) }
            let batch = try prefetcher.next()
            windowDataWait += prefetcher.waitSeconds - lastDataWait
            lastDataWait = prefetcher.waitSeconds
            student.zeroGradients()
            sync.beginStep(step)
            let passKey = CounterRandom.key(CounterRandom.key(config.seed, CounterRandom.hash("dropout")), UInt64(step))
            var record: [String: Double] = [:]
            var coefficients: GMCoord.Coefficients? = nil
            switch batch {
            case .pretrain(let b):
                let l = pretrainObjective!.step(student: student, teacher: teacher!, batch: b, dropout: config.dropout,
                                                passKey: passKey, reduction: reduction)
                record = ["mim": l.mim, "mlm": l.mlm, "feamim": l.feaMIM, "feamlm": l.feaMLM, "loss": l.total]
                if config.stage == .pretrain { record["itm"] = l.itm }
            case .classification(let b):
                let r = finetuneObjective!.step(student: student, batch: b, dropout: config.dropout, passKey: passKey,
                                                reduction: reduction)
                record = ["task": r.loss, "loss": r.loss]
                coefficients = r.coefficients
            case .retrieval(let b):
                let r = finetuneObjective!.retrievalStep(student: student, batch: b, dropout: config.dropout,
                                                         passKey: passKey, reduction: reduction)
                record = ["task": r.loss, "loss": r.loss]
                coefficients = r.coefficients
            }
            try sync.finish()
            windowCommWait += sync.waitSeconds
            if let c = coefficients {
                if config.gmCoord {
                    GMCoord.modulate(student, kText: Float(c.kText), kImage: Float(c.kImage), noise: config.gmNoise,
                                     seed: config.seed, step: step)
                }
                record["rho_t"] = c.rhoText; record["rho_i"] = c.rhoImage; record["k_t"] = c.kText; record["k_i"] = c.kImage
            }
            let logging = (step + 1) % config.logEvery == 0 || step == config.steps - 1 || step == 0
            var norm = 0.0
            for segment in trainedSegments where logging || config.clipNorm != nil {
                let n = gradientNorm(student.grads + segment.lowerBound, count: segment.count)
                norm += n * n
            }
            norm = norm.squareRoot()
            if let maxNorm = config.clipNorm, norm > Double(maxNorm) {
                let scale = Float(Double(maxNorm) / (norm + 1e-6))
                for segment in trainedSegments { for i in segment { student.grads[i] *= scale } }
            }
            let lr = config.peakLearningRate * Float(schedule.factor(afterSteps: step))
            optimizer.step(baseLearningRate: lr)
            if let teacher { EMA.update(teacher: teacher, student: student, lambda: config.ema) }
            if config.debugDivergeRank == rank && step == 1 { student.values[0] += 1e-3 }
            windowSamples += G

            if (step + 1) % config.consistencyEvery == 0 || step == config.steps - 1 {
                try watchdog.guarding("step \(step), replica consistency check") {
                    try Consistency.requireAgreement(Consistency.checksum(student.values, count: student.count),
                                                     what: "the student weights after step \(step) (replicas diverged)", world: world)
                    if let teacher {
                        try Consistency.requireAgreement(Consistency.checksum(teacher.values, count: teacher.count),
                                                         what: "the teacher weights after step \(step)", world: world)
                    }
                }
            }
            if logging {
                let seconds = Date().timeIntervalSince(windowStart)
                record["step"] = Double(step + 1)
                record["lr"] = Double(lr)
                record["grad_norm"] = norm
                record["samples_per_s"] = Double(windowSamples) / max(seconds, 1e-9)
                record["data_wait_s"] = windowDataWait
                record["comm_wait_s"] = windowCommWait
                log.metrics(record, stage: config.stage.rawValue)
                let elapsed = Date().timeIntervalSince(runStart)
                let eta = elapsed / Double(step + 1) * Double(config.steps - step - 1)
                log.progress(String(format: "step %d/%d  loss %.4f  %.1f samples/s  ETA %@", step + 1, config.steps,
                                    record["loss"] ?? 0, record["samples_per_s"]!, RunLog.duration(eta)))
                summary.finalLosses = record
                windowStart = Date(); windowSamples = 0; windowDataWait = 0; windowCommWait = 0
            }
            // A scheduler's SIGTERM (or ^C) on any rank: every rank saves and stops together.
            if config.debugStopAfter == step + 1 { StopSignal.flag = 1 }
            let stop = R == 1 ? StopSignal.requested : try watchdog.guarding("step \(step), stop-signal agreement") {
                try world.allreduce(Int32(StopSignal.requested ? 1 : 0), op: .max) == 1
            }
            if stop || step == config.steps - 1 || (config.checkpointEvery > 0 && (step + 1) % config.checkpointEvery == 0) {
                log.finishProgress()
                try checkpoint(after: step + 1, final: stop || step == config.steps - 1)
            }
            if stop {
                log.info("stopping after step \(step + 1) on a termination signal; resume with --resume")
                stoppedBySignal = true
                break
            }
        }
        summary.samplesPerSecond = Double((config.steps - startStep) * G) / Date().timeIntervalSince(runStart)
        if stoppedBySignal {
            try watchdog.guarding("end of run barrier") { try world.barrier() }
            throw StopSignal.Stopped()
        }
        log.finishProgress()

        if rank == 0 {
            let weights = out.appendingPathComponent("final.safetensors")
            try ModelIO.export(student: student, teacher: teacher,
                               metadata: ["stage": config.stage.rawValue, "preset": preset.name,
                                          "steps": String(config.steps), "task": config.task?.rawValue ?? ""],
                               to: weights)
            if !data.classes.isEmpty {
                try JSONEncoder().encode(data.classes).write(to: out.appendingPathComponent("classes.json"))
            }
            log.info(String(format: "done: %d steps in %.1f s (%.1f samples/s); weights in %@", config.steps - startStep,
                            Date().timeIntervalSince(runStart), summary.samplesPerSecond, weights.path))
        }
        try watchdog.guarding("end of run barrier") { try world.barrier() }
        return summary
    }

    /// Loads the checkpoint to resume from: `resume` is "latest" (the run's newest complete
    /// checkpoint) or a checkpoint directory; one that fails to load (incomplete, corrupted,
    /// another configuration) is reported and the next older complete one is tried.
    static func resumeState(_ resume: String, run: URL, config: RunConfiguration, state: TrainingState,
                            tokenizerHash: String, classesHash: String, log: RunLog) throws -> Int {
        var candidates = Checkpoints.complete(run: run)
        if resume != "latest" {
            let dir = URL(fileURLWithPath: resume).standardizedFileURL
            let siblings = Checkpoints.complete(run: dir.deletingLastPathComponent().deletingLastPathComponent())
            candidates = [dir] + siblings.filter { $0.lastPathComponent < dir.lastPathComponent }
        }
        guard !candidates.isEmpty else {
            throw RunError("--resume: no complete checkpoint under \(run.appendingPathComponent("checkpoints").path); "
                           + "start without --resume")
        }
        var failures: [String] = []
        for dir in candidates {
            do {
                let manifest = try Checkpoints.readManifest(dir)
                let problems = config.resumeMismatches(manifest.config)
                    + (manifest.tokenizerHash == tokenizerHash ? [] : ["the tokenizer files differ"])
                    + (manifest.classesHash == classesHash ? [] : ["the answer/class list differs"])
                if !problems.isEmpty {
                    throw CheckpointError(message: "\(dir.appendingPathComponent("manifest.json").path): saved for another "
                                          + "configuration: " + problems.joined(separator: ", "))
                }
                try Checkpoints.load(dir, manifest: manifest, into: state)
                for failure in failures { log.warning("--resume: skipped \(failure)") }
                log.info("resumed from \(dir.path) (step \(manifest.step), saved on \(manifest.worldSize) rank(s))")
                return manifest.step
            } catch {
                failures.append("\(error)")
                if failures.count == 1 && candidates.count > 1 {
                    log.warning("--resume: \(error); falling back to the previous complete checkpoint")
                }
            }
        }
        throw RunError("--resume: no checkpoint could be loaded:\n  " + failures.joined(separator: "\n  "))
    }

    static func loadData(_ config: RunConfiguration, log: RunLog) throws -> TrainingData {
        let options = ReaderOptions(strict: config.strict, decodeImages: config.checkImages)
        var data = TrainingData()
        if config.stage == .pretrain {
            let (roco, report) = try ROCODataset.load(root: URL(fileURLWithPath: config.roco!), split: .train, options: options)
            log.report(report)
            data.images = roco.map(\.image); data.texts = roco.map(\.text)
            if let medicat = config.medicat {
                let (samples, report) = try MedICaTDataset.load(root: URL(fileURLWithPath: medicat), split: .train,
                                                                seed: config.seed, validationCount: config.medicatHoldout,
                                                                testCount: config.medicatHoldout, options: options)
                log.report(report)
                if samples.isEmpty {
                    throw RunError("\(medicat): every MedICaT text falls into the held-out validation and test splits "
                                   + "(\(config.medicatHoldout) each); lower --medicat-holdout or drop --medicat")
                }
                data.images += samples.map(\.image); data.texts += samples.map(\.text)
            }
        } else {
            let samples = try TaskData.load(task: config.task!, root: URL(fileURLWithPath: config.data!), split: .train,
                                            retrievalCap: Int.max, options: options)
            samples.reports.forEach(log.report)
            data.images = samples.images; data.texts = samples.texts; data.labels = samples.labels
            data.classes = samples.classes
        }
        if data.texts.count < config.batchSize {
            throw RunError("the training data has \(data.texts.count) samples, fewer than one global batch (\(config.batchSize))")
        }
        return data
    }

    static func makeBatch(step: Int, config: RunConfiguration, sampler: DistributedSampler, data: TrainingData,
                          builder: BatchBuilder, rank: Int) throws -> StepBatch {
        let global = sampler.globalIndices(step: step)
        let B = sampler.localBatch, G = sampler.globalBatch
        let positions = Array((rank * B)..<((rank + 1) * B))
        let local = positions.map { global[$0] }
        let epoch = sampler.cursor(step: step).epoch
        switch config.stage {
        case .pretrain, .calib:
            var itmImages: [URL]? = nil, itmLabels: [Int32]? = nil
            if config.stage == .pretrain {
                let partner = BatchPairing.itmImages(globalBatch: G, seed: config.seed, step: step)
                itmImages = positions.map { data.images[global[partner[$0]]] }
                itmLabels = positions.map { partner[$0] == $0 ? 1 : 0 }
            }
            return .pretrain(try builder.pretrainBatch(images: local.map { data.images[$0] }, texts: local.map { data.texts[$0] },
                                                       indices: local, epoch: epoch, itmImages: itmImages,
                                                       itmLabels: itmLabels))
        case .finetune:
            if config.task!.kind == .retrieval {
                let negatives = BatchPairing.retrievalNegatives(globalBatch: G, seed: config.seed, step: step)
                var textPositions: [Int] = []            // global positions of the texts this rank encodes
                var slot: [Int: Int] = [:]
                var candidates: [Int32] = []
                for p in positions {
                    for q in [p] + negatives[p] {
                        if slot[q] == nil { slot[q] = textPositions.count; textPositions.append(q) }
                        candidates.append(Int32(slot[q]!))
                    }
                }
                let (ids, attention) = builder.text(textPositions.map { data.texts[global[$0]] })
                return .retrieval(RetrievalBatch(batch: B, imageSize: builder.imageSize, textLength: builder.textLength,
                                                 pixels: try builder.pixels(local.map { data.images[$0] }),
                                                 textCount: textPositions.count, textIDs: ids, attention: attention,
                                                 candidates: candidates, sampleIDs: local.map { UInt64($0) }))
            }
            let (ids, attention) = builder.text(local.map { data.texts[$0] })
            return .classification(ClassificationBatch(batch: B, imageSize: builder.imageSize, textLength: builder.textLength,
                                                       pixels: try builder.pixels(local.map { data.images[$0] }),
                                                       textIDs: ids, attention: attention,
                                                       labels: local.map { Int32(data.labels[$0]) },
                                                       sampleIDs: local.map { UInt64($0) }))
        }
    }
}

/// SIGTERM / SIGINT (what schedulers send before a wall-time kill) only set a flag; the
/// training loop checks it after every step, saves a checkpoint and exits.
public enum StopSignal {
    nonisolated(unsafe) static var flag: sig_atomic_t = 0
    public static var requested: Bool { flag != 0 }

    public struct Stopped: Error, CustomStringConvertible {
        public var description: String { "stopped by a termination signal after saving a checkpoint" }
    }

    static func install() {
        signal(SIGTERM) { _ in StopSignal.flag = 1 }
        signal(SIGINT) { _ in StopSignal.flag = 1 }
    }
}

/// The step the loop is in, for watchdog messages from closures.
final class StepCounter: @unchecked Sendable {
    // Written by the training thread, read by the same thread inside the reduction closure.
    var value = 0
}

/// Rank 0's output: a progress line on a terminal (plain lines otherwise) and
/// `RUN/metrics.jsonl`; other ranks print only warnings and errors, prefixed with their rank.
public final class RunLog: @unchecked Sendable {
    let rank: Int
    let metricsURL: URL
    // Under mpirun a rank's stdout is a pty even when the user pipes mpirun's output, so the
    // one-line progress display is used only when run directly on a terminal.
    let terminal = isatty(1) != 0 && ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] == nil
    private var progressShown = false

    public init(rank: Int, directory: URL, keepMetrics: Bool = false) {
        self.rank = rank
        metricsURL = directory.appendingPathComponent("metrics.jsonl")
        if rank == 0 && !keepMetrics { try? FileManager.default.removeItem(at: metricsURL) }
    }

    public func info(_ text: String) {
        guard rank == 0 else { return }
        finishProgress()
        print(text)
        fflush(nil)
    }

    public func warning(_ text: String) {
        FileHandle.standardError.write(Data("umd-mpirun: rank \(rank): \(text)\n".utf8))
    }

    func report(_ report: DataReport) {
        guard rank == 0 else { return }
        for line in report.warnings.prefix(20) { warning(line) }
        if report.skipped.count > 20 { warning("… and \(report.skipped.count - 20) more skipped records") }
        info(report.description)
    }

    func metrics(_ record: [String: Double], stage: String) {
        guard rank == 0 else { return }
        var object: [String: Any] = record
        object["stage"] = stage
        if let step = record["step"] { object["step"] = Int(step) }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        if let handle = try? FileHandle(forWritingTo: metricsURL) {
            handle.seekToEndOfFile()
            handle.write(data + Data("\n".utf8))
            try? handle.close()
        } else {
            try? (data + Data("\n".utf8)).write(to: metricsURL)
        }
    }

    func progress(_ text: String) {
        guard rank == 0 else { return }
        if terminal {
            print("\r\u{1B}[K" + text, terminator: "")
            progressShown = true
        } else {
            print(text)
        }
        fflush(nil)
    }

    func finishProgress() {
        if progressShown { print(""); progressShown = false }
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600)h\(String(format: "%02d", s % 3600 / 60))m" : "\(s / 60)m\(String(format: "%02d", s % 60))s"
    }
}
