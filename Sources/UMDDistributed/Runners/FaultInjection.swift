import Foundation
import UMDModel
#if canImport(Glibc)
import Glibc
#endif

/// Faults the tests inject into a real run through hidden `--debug-*` settings, kept in
/// one place so the training loop reads as training: a rank that hangs (stall watchdog),
/// a replica whose weights drift (consistency check), a SIGTERM that "arrives" after N
/// steps, a rank killed half-way through writing its checkpoint shard.
struct FaultInjection {
    let rank: Int
    let config: RunConfiguration

    /// Before step `step`: the chosen rank hangs for an hour.
    func beforeStep(_ step: Int) {
        if config.debugStallRank == rank && config.debugStallStep == step { sleep(3600) }
    }

    /// After the update of step `step`: the chosen rank nudges one weight after step 1.
    func afterUpdate(_ step: Int, student: ParameterStore) {
        if config.debugDivergeRank == rank && step == 1 { student.values[0] += 1e-3 }
    }

    /// Whether to act as if SIGTERM arrived once `steps` steps are done.
    func stopsAfter(_ steps: Int) -> Bool { config.debugStopAfter == steps }

    /// Bytes of its shard after which the chosen rank SIGKILLs itself in the checkpoint
    /// taken after `steps` steps (half its shard), or nil.
    func crashAfterBytes(checkpointAfter steps: Int, stateCount: Int, worldSize: Int) -> Int? {
        guard config.debugCrashCheckpointRank == rank && config.debugCrashCheckpointStep == steps else { return nil }
        return stateCount * 2 / max(worldSize, 1)
    }
}
