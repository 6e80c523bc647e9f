import Collective
import Foundation

/// The run's checkpoint saver, built once with everything a save needs: periodic saves
/// (in the background with `--async-checkpoint`), the final save, and the save on a
/// termination signal, all with the same plan.
final class CheckpointWriter {
    let plan: CheckpointPlan
    let state: TrainingState
    let world: Communicator
    let watchdog: StallWatchdog
    let faults: FaultInjection
    let background: AsyncCheckpointer?
    let log: RunLog

    init(plan: CheckpointPlan, state: TrainingState, world: Communicator, watchdog: StallWatchdog,
         faults: FaultInjection, log: RunLog) throws {
        self.plan = plan; self.state = state; self.world = world; self.watchdog = watchdog
        self.faults = faults; self.log = log
        background = plan.config.asyncCheckpoint ? try AsyncCheckpointer(world: world, watchdog: watchdog) : nil
    }

    /// Whether a periodic checkpoint is due once `steps` steps are done.
    func isDue(afterSteps steps: Int) -> Bool {
        plan.config.checkpointEvery > 0 && steps % plan.config.checkpointEvery == 0
    }

    /// Saves the state after `steps` steps. A `final` save (end of run, stop signal) is
    /// synchronous and waits for any background save first.
    func save(afterSteps steps: Int, final: Bool, validation: ValidationState? = nil) throws {
        var content = state.content
        content.validation = validation
        if let background {
            if !final {
                try background.start(content, step: steps, plan: plan)
                log.info("checkpoint: step \(steps) being written in the background")
                return
            }
            try background.wait()
        }
        let crash = faults.crashAfterBytes(checkpointAfter: steps, stateCount: state.count, worldSize: world.size)
        let dir = try Checkpoints.save(content: content, step: steps, plan: plan, world: world, watchdog: watchdog,
                                       crashAfterBytes: crash)
        log.info("checkpoint: \(dir.path)")
    }

    /// Waits for a background save in flight (at exit).
    func finish() throws { try background?.wait() }
}
