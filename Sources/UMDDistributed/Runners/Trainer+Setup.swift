import Collective
import Foundation
import UMDCore
import UMDData
import UMDModel

/// The pieces of `Trainer.run` that are not the loop: start-up agreement, model build and
/// broadcast, the allreduce the objectives use, resume, replica checks and the end of a run.
extension Trainer {
    /// Every rank must run the same configuration, and `out` must be free for it (see `claim`).
    /// Returns rank 0's lock on the run directory (nil on other ranks).
    static func start(_ config: RunConfiguration, out: URL, world: Communicator, watchdog: StallWatchdog) throws -> RunDirectoryLock? {
        try watchdog.guarding("start-up, configuration check") {
            do {
                try Consistency.requireAgreement(config.hash, what: "the run configuration (hash)", world: world)
            } catch let mismatch as Consistency.Mismatch {
                // Name the settings that differ: every rank sends its effective values (sorted
                // keys, so equal settings give equal bytes).
                let texts = try world.allgatherData(try config.effectiveJSON())
                guard let bad = texts.firstIndex(where: { $0 != texts[0] }) else { throw mismatch }
                let all = texts.map { (try? JSONSerialization.jsonObject(with: $0)) as? [String: Any] ?? [:] }
                let keys = Set(all[0].keys).union(all[bad].keys).sorted().filter {
                    "\(all[0][$0] ?? "none")" != "\(all[bad][$0] ?? "none")"
                }
                throw RunError("\(mismatch); the settings that differ: " + keys.map {
                    "\($0) (rank 0: \(all[0][$0] ?? "none"), rank \(bad): \(all[bad][$0] ?? "none"))"
                }.joined(separator: ", ") + ". Start every rank with the same settings.")
            }
        }
        // Runs never mix: an --out that is locked by a live run is refused; one holding
        // another run is continued (--resume), moved aside (--overwrite), or refused. Rank 0
        // decides for every rank and holds the lock for the run's life.
        var lock: RunDirectoryLock? = nil
        var refusal = ""
        if world.rank == 0 {
            do { lock = try claim(out, config: config) } catch { refusal = "\(error)" }
        }
        let verdicts = try watchdog.guarding("start-up, run directory check") { try world.allgatherData(Data(refusal.utf8)) }
        if let first = verdicts.first, !first.isEmpty { throw RunError(String(decoding: first, as: UTF8.self)) }
        return lock
    }

    /// Rank 0 records the run in `out`: config.json (every effective value) and the tokenizer
    /// beside the weights. A fresh run does it at once; a resumed run only once its checkpoint
    /// was accepted, so a refused `--resume` (another configuration, another tokenizer) leaves
    /// the run's record as its checkpoints were made.
    static func record(_ config: RunConfiguration, out: URL, rank: Int) throws {
        guard rank == 0 else { return }
        try AtomicFileWriter.write(config.configFileJSON(), to: out.appendingPathComponent("config.json"))
        // The tokenizer beside the weights: eval, predict and export then find it in the run.
        if let tokenizer = config.tokenizer {
            let source = URL(fileURLWithPath: tokenizer), copy = out.appendingPathComponent("tokenizer")
            let complete = ["vocab.json", "merges.txt"].allSatisfy {
                FileManager.default.fileExists(atPath: source.appendingPathComponent($0).path)
            }
            // (A missing tokenizer is reported by the data loader, which names what is wrong.)
            if complete && source.standardizedFileURL.path != copy.standardizedFileURL.path {
                try FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
                for name in ["vocab.json", "merges.txt"] {
                    try AtomicFileWriter.write(readWholeFile(source.appendingPathComponent(name)),
                                               to: copy.appendingPathComponent(name))
                }
            }
        }
    }

    /// Rank 0: locks `out` (creating it) after checking that it holds no other run, or
    /// moving that run aside with `--overwrite`. Throws the refusal.
    static func claim(_ out: URL, config: RunConfiguration) throws -> RunDirectoryLock {
        func create() throws {
            do { try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true) } catch {
                throw RunError("cannot create the run directory \(out.path) (\(FileError.describe(error, at: out))); "
                               + "choose --out in a writable place")
            }
        }
        try create()
        // The lock comes first: a live run's directory is neither judged nor moved aside.
        var lock = try RunDirectoryLock.acquire(out)
        if try previousRun(at: out, config: config) {
            throw RunError("\(out.path) holds another run; pass --resume to continue it, --overwrite to move it aside "
                           + "(it is kept as \(out.path).old-<time>), or choose another --out")
        }
        if !FileManager.default.fileExists(atPath: out.path) {       // moved aside: lock the new directory
            lock.release()
            try create()
            lock = try RunDirectoryLock.acquire(out)
        }
        return lock
    }

    /// Whether `out` holds a run this one may not write into: true means refuse. With
    /// `--overwrite` the old run is renamed aside first (never deleted).
    static func previousRun(at out: URL, config: RunConfiguration) throws -> Bool {
        // A run is there once it saved weights (a complete checkpoint, final or best weights);
        // a start that failed or was killed before any (config.json, a few metrics, an
        // interrupted first checkpoint) may be started over in place.
        let saved = !Checkpoints.complete(run: out).isEmpty
            || ["final.safetensors", "best.safetensors"].contains { FileManager.default.fileExists(atPath: out.appendingPathComponent($0).path) }
        guard saved, config.resume == nil else { return false }
        guard config.overwrite else { return true }
        // A name no earlier --overwrite took (two within one second must not collide).
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        var aside = URL(fileURLWithPath: out.path + ".old-" + stamp)
        var n = 2
        while FileManager.default.fileExists(atPath: aside.path) {
            aside = URL(fileURLWithPath: out.path + ".old-" + stamp + "-\(n)")
            n += 1
        }
        do { try FileManager.default.moveItem(at: out, to: aside) } catch {
            throw RunError("--overwrite: cannot move \(out.path) aside to \(aside.path) (\(FileError.describe(error, at: aside)))")
        }
        print("--overwrite: the previous run in \(out.path) was moved to \(aside.path)")
        return false
    }

    /// The stage's model (built by `RunFactory`) after the checks that need the data: weights
    /// imported with the tokenizer and class list they were trained with.
    static func buildModel(_ config: RunConfiguration, preset: ModelPreset, data: TrainingData, world: Communicator,
                           watchdog: StallWatchdog, log: RunLog) throws -> StageModel {
        // Weights whose text side is imported must come with the tokenizer they were trained
        // with: the same ids would otherwise stand for other words.
        // Likewise a classifier head imported from them must stand for the same classes, in order.
        func imports(_ name: String) -> Bool { config.initOnly.isEmpty || config.initOnly.contains { name.hasPrefix($0) || $0.hasPrefix(name) } }
        if let initPath = config.initFrom, let described = try WeightsDescription.of(path: initPath) {
            if imports("text.word_embed") {
                try described.requireTokenizer(URL(fileURLWithPath: config.tokenizer!), hash: data.tokenizerHash,
                                               weights: initPath)
            }
            if config.stage == .finetune, described.hasClassifierHead, imports("head."), let saved = described.classes,
               saved != data.table.classes {
                let differ = saved.count != data.table.classes.count ? "\(saved.count) classes, this data set has \(data.table.classes.count)"
                    : "the same number of classes in another order or with other names"
                throw RunError("--init \(initPath) holds a task head for another class list (\(differ)): its rows would "
                               + "stand for other answers. Start the head fresh with --init-only vision.,text.,fusion. or "
                               + "fine-tune on the data set the weights were trained on")
            }
        }
        let model = try RunFactory(config).model(classes: data.table.classes.count, vocabularySize: data.tokenizer.vocabularySize,
                                                 world: world, watchdog: watchdog)
        if let sharding = model.sharding {
            log.info("--shard-optimizer: this rank updates arena [\(sharding.ownedByThisRank.lowerBound), "
                     + "\(sharding.ownedByThisRank.upperBound)) of \(model.student.count) and holds its AdamW moments "
                     + "(\(String(format: "%.1f", Double(8 * sharding.ownedByThisRank.count) / 1048576)) MiB instead of "
                     + "\(String(format: "%.1f", Double(8 * model.student.count) / 1048576)) MiB)")
        }
        if let report = model.initReport, let path = config.initFrom { log.info("init: \(path): \(report)") }
        return model
    }

    /// Resumes from a checkpoint and checks that every rank resumed the same step and weights.
    static func resume(_ resume: String, plan: CheckpointPlan, state: TrainingState, world: Communicator,
                       watchdog: StallWatchdog, log: RunLog) throws -> (step: Int, validation: ValidationState?) {
        let manifest = try Resume.load(resume, plan: plan, into: state, log: log)
        let step = manifest.step
        log.truncateMetrics(after: step)
        try watchdog.guarding("start-up, agreement on the resumed step") {
            try Consistency.requireAgreement(count: step, what: "the resumed step", world: world)
            try Consistency.requireAgreement(Consistency.checksum(state.student.values, count: state.student.count),
                                             what: "the resumed weights", world: world)
        }
        return (step, manifest.validation)
    }

    /// One training step; a non-finite one names the last checkpoint (stop) or is logged (skip).
    /// `skips` counts the consecutive skipped steps: past `--max-skipped-steps` the run stops
    /// as it would without skipping (a diverged model must not end "successfully").
    static func run(_ step: TrainingStep, _ batch: [StepBatch], _ s: Int, run: URL, skips: inout Int, limit: Int,
                    log: RunLog) throws -> StepOutcome {
        do {
            let outcome = try step.run(batch, step: s)
            guard outcome.skipped else { skips = 0; return outcome }
            skips += 1
            log.warning("step \(s + 1) skipped (--on-nonfinite skip-step): " + outcome.nonFinite.joined(separator: ", ")
                        + (skips > 1 ? " (\(skips) in a row; the run stops after \(limit))" : ""))
            if skips > limit {
                var error = NonFiniteStep(step: s, terms: outcome.nonFinite)
                error.consecutiveSkips = skips
                throw error
            }
            return outcome
        } catch var error as NonFiniteStep {
            error.lastCheckpoint = Checkpoints.complete(run: run).first?.path
            throw error
        }
    }

    /// Replicas must stay bitwise identical (DESIGN.md idea 5).
    static func checkReplicas(_ model: StageModel, after step: Int, world: Communicator, watchdog: StallWatchdog) throws {
        try watchdog.guarding("step \(step), replica consistency check") {
            let student = model.student
            try Consistency.requireAgreement(Consistency.checksum(student.values, count: student.count),
                                             what: "the student weights after step \(step) (replicas diverged)", world: world)
            if let teacher = model.teacher {
                try Consistency.requireAgreement(Consistency.checksum(teacher.values, count: teacher.count),
                                                 what: "the teacher weights after step \(step)", world: world)
            }
        }
    }

    /// Rank 0 writes the final weights (and the class list); every rank meets at a barrier.
    static func finish(_ config: RunConfiguration, model: StageModel, data: TrainingData, summary: Summary, startStep: Int,
                       endStep: Int, since runStart: Date, world: Communicator, watchdog: StallWatchdog, log: RunLog) throws {
        let preset = try config.presetValue
        if world.rank == 0 {
            let weights = URL(fileURLWithPath: config.out).appendingPathComponent("final.safetensors")
            try ModelIO.export(student: model.student, teacher: model.teacher,
                               metadata: WeightsDescription.metadata(
                                stage: config.stage.rawValue, preset: preset.name, vocabularySize: data.tokenizer.vocabularySize,
                                imageSize: config.imageSize!, textLength: config.textLength!, task: config.task?.rawValue ?? "",
                                classes: data.table.classes, tokenizerHash: data.tokenizerHash, pooling: config.pooling,
                                extra: ["steps": String(endStep)]),
                               to: weights)
            if !data.table.classes.isEmpty {
                try AtomicFileWriter.write(JSONEncoder().encode(data.table.classes),
                                           to: URL(fileURLWithPath: config.out).appendingPathComponent("classes.json"))
            }
            log.info(String(format: "done: %d steps in %.1f s (%.1f samples/s); weights in %@", endStep - startStep,
                            Date().timeIntervalSince(runStart), summary.samplesPerSecond, weights.path))
        }
        // Peak resident memory of every rank, for sizing cluster jobs.
        let peaks = try watchdog.guarding("end of run, peak memory") { try world.allgather([Int64(peakResidentBytes())]) }
        log.info("peak resident memory per rank: " + peaks.map { String(format: "%.2f GB", Double($0) / 1e9) }
            .joined(separator: ", "))
        // What grows with the batch (issue 28): the activations and scratch this rank keeps, per
        // sample of its micro-batch (bench step --phases splits them by pass).
        let activations = MemoryLedger.table.reduce(0) { $0 + $1.bytes }
        let local = config.batchSize / world.size / config.accumulate
        log.info(String(format: "activations and scratch on rank 0: %.2f GB (%.3f GB per sample of its %d-sample micro-batch); "
                        + "the rest is weights, gradients, optimizer and teacher", Double(activations) / 1e9,
                        Double(activations) / 1e9 / Double(max(1, local)), local))
        try watchdog.guarding("end of run barrier") { try world.barrier() }
    }
}

/// This process's peak resident set size (VmHWM), 0 where /proc is not available.
public func peakResidentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
          // "VmHWM:\t 9123456 kB" — past 8 digits no space follows the tab: split on both.
          let kB = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap({ Int($0) }).first else { return 0 }
    return kB * 1024
}

/// The step the loop is in, for watchdog messages from the reduction closure.
final class StepCounter: @unchecked Sendable {
    // Written by the training thread, read by the same thread inside the reduction closure.
    var value = 0
}
