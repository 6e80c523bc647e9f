import Collective
import Foundation
import UMDDistributed
import UMDModel
#if canImport(Glibc)
import Glibc
#endif

/// `umd-mpirun bench checkpoint`: save and load throughput (MB/s of arena data) and the
/// compression ratio of a checkpoint of a preset's full training state, next to a raw
/// write (+ fsync) of the same bytes measured in the same run.
public enum CheckpointBenchmark {
    public static func run(preset: ModelPreset, directory: URL, world: Communicator) throws {
        var config = RunConfiguration()
        config.preset = preset.name
        config.seed = 1
        let model = try RunFactory(config.resolved()).model(classes: 0, vocabularySize: preset.vocabularySize ?? 30000)
        let (student, optimizer) = (model.student, model.optimizer)
        // Realistic moments: one step of AdamW on random gradients (fresh moments are all zero
        // and would flatter the compression ratio).
        for i in 0..<student.count { student.grads[i] = Float(CounterRandom.normal(7, UInt64(i))) * 1e-3 }
        optimizer.step(baseLearningRate: 1e-5)
        let state = TrainingState(model)
        let run = directory.appendingPathComponent("bench-checkpoint-run")
        if world.rank == 0 { try? FileManager.default.removeItem(at: run) }
        try world.barrier()
        let bytes = Double(state.count * 4)

        // Raw: each rank writes its slice uncompressed and fsyncs.
        let raw = run.appendingPathComponent("raw-\(world.rank).bin")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        let lower = state.count * world.rank / world.size, upper = state.count * (world.rank + 1) / world.size
        try world.barrier()
        var start = Date()
        let fd = open(raw.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        for piece in state.pieces(lower, upper) {
            var done = 0
            while done < piece.count {
                let n = write(fd, piece.baseAddress! + done, min(piece.count - done, 64 << 20))
                if n <= 0 { break }
                done += n
            }
        }
        fsync(fd); close(fd)
        try world.barrier()
        let rawSeconds = Date().timeIntervalSince(start)
        try? FileManager.default.removeItem(at: raw)

        try world.barrier()
        start = Date()
        config.keepCheckpoints = 1
        let plan = CheckpointPlan(run: run, config: config, tokenizerHash: "-", classesHash: "-",
                                  schedule: LearningRateSchedule(shape: .linear, totalSteps: 1))
        let dir = try Checkpoints.save(content: state.content, step: 1, plan: plan, world: world, watchdog: nil)
        let saveSeconds = Date().timeIntervalSince(start)
        let manifest = try Checkpoints.readManifest(dir)
        try world.barrier()
        start = Date()
        try Checkpoints.load(dir, manifest: manifest, into: state)
        try world.barrier()
        let loadSeconds = Date().timeIntervalSince(start)
        let compressed = Double(manifest.shards.reduce(0) { $0 + $1.compressedBytes })
        if world.rank == 0 {
            print("# umd checkpoint benchmark: preset \(preset.name), \(world.size) rank(s), state = student + teacher + AdamW m, v")
            print(String(format: "state %.1f MiB (%d parameters), compressed %.1f MiB, ratio %.3f (zstd level 3)",
                         bytes / 1048576, student.count, compressed / 1048576, bytes / compressed))
            print(String(format: "raw write + fsync:  %8.1f MB/s  (%.2f s)", bytes / rawSeconds / 1e6, rawSeconds))
            print(String(format: "checkpoint save:    %8.1f MB/s  (%.2f s) = %.2fx of raw", bytes / saveSeconds / 1e6, saveSeconds,
                         rawSeconds / saveSeconds))
            print(String(format: "checkpoint load:    %8.1f MB/s  (%.2f s; every rank reads every shard)", bytes / loadSeconds / 1e6,
                         loadSeconds))
            try? FileManager.default.removeItem(at: run)
        }
        try world.barrier()
    }
}
