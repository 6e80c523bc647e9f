import Foundation

/// Choosing and loading the checkpoint a run resumes from.
enum Resume {
    /// Loads the checkpoint to resume from: `resume` is "latest" (the run's newest complete
    /// checkpoint) or a checkpoint directory; one that fails to load (incomplete, corrupted,
    /// another configuration) is reported and the next older complete one is tried.
    /// Returns the loaded checkpoint's manifest (its step is the one to continue from).
    static func load(_ resume: String, plan: CheckpointPlan, into state: TrainingState, log: RunLog) throws -> CheckpointManifest {
        let run = plan.run
        var candidates = Checkpoints.complete(run: run)
        if resume != "latest" {
            guard case .checkpoint(let dir) = try WeightsPath.resolve(resume, checkpointOnly: true) else {
                throw RunError("--resume \(resume): a weights file holds no optimizer state or step; resume from a "
                               + "checkpoint or run directory, or start from the weights with --init")
            }
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
                let problems = plan.config.resumeMismatches(manifest.config)
                    + (manifest.tokenizerHash == plan.tokenizerHash ? [] : ["the tokenizer files differ"])
                    + (manifest.classesHash == plan.classesHash ? [] : ["the answer/class list differs"])
                    + scheduleProblems(saved: manifest, now: plan.config, log: log)
                if !problems.isEmpty {
                    throw RunError.checkpoint("\(dir.appendingPathComponent("manifest.json").path): saved for another "
                                          + "configuration: " + problems.joined(separator: ", "))
                }
                try Checkpoints.load(dir, manifest: manifest, into: state)
                for failure in failures { log.warning("--resume: skipped \(failure)") }
                log.info("resumed from \(dir.path) (step \(manifest.step), saved on \(manifest.worldSize) rank(s))")
                return manifest
            } catch {
                failures.append("\(error)")
                if failures.count == 1 && candidates.count > 1 {
                    log.warning("--resume: \(error); falling back to the previous complete checkpoint")
                }
            }
        }
        throw RunError("--resume: no checkpoint could be loaded:\n  " + failures.joined(separator: "\n  "))
    }

    /// `--steps` sets the schedule's length: resuming with another one changes the learning
    /// rate of every remaining step, so it needs `--allow-schedule-change` (then both rates at
    /// the resume step are logged); a checkpoint past `--steps` is not resumed.
    static func scheduleProblems(saved m: CheckpointManifest, now: RunConfiguration, log: RunLog) -> [String] {
        if now.steps < m.step {
            return ["--steps \(now.steps) is below the checkpoint's step \(m.step); raise --steps to continue"]
        }
        guard now.steps != m.config.steps else { return [] }
        let before = m.config.stepSettings.learningRate(step: m.step), after = now.stepSettings.learningRate(step: m.step)
        guard now.allowScheduleChange else {
            return ["steps \(m.config.steps) (now \(now.steps)) changes the learning-rate schedule (lr at step \(m.step + 1): "
                    + "\(before) saved, \(after) now); pass --allow-schedule-change to accept"]
        }
        log.warning("--allow-schedule-change: the schedule now ends at step \(now.steps) instead of \(m.config.steps); "
                    + "lr at step \(m.step + 1) is \(after) (was \(before))")
        return []
    }
}
