import ArgumentParser
import Collective
import Foundation
import UMDTools
import UMDModel
import UMDDistributed

/// `umd-mpirun bench …`: benchmark programs. Each prints absolute figures next to a
/// baseline measured in the same run, because the machines are noisy.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks that print ratios against a baseline measured in the same run.",
        subcommands: [AllreduceBench.self, KernelBench.self, DataBench.self, StepBench.self, CheckpointBench.self])
}

/// Allreduce latency and bandwidth per message size, in the style of osu_allreduce and
/// nccl-tests: algbw = bytes / time, busbw = algbw * 2(n-1)/n (the traffic each link
/// carries in a ring allreduce). Baseline: memcpy of the same bytes on the same rank.
struct AllreduceBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "Float32 sum allreduce latency and bandwidth, 4 KB to 64 MB.")

    @Option(help: "Smallest message in bytes.") var minBytes: Int = 4 << 10
    @Option(help: "Largest message in bytes.") var maxBytes: Int = 64 << 20
    @Option(help: "Bytes moved per size (sets the iteration count; more = steadier).")
    var bytesPerSize: Int = 512 << 20
    @Flag(help: "Out-of-place instead of in-place.") var outOfPlace = false

    func validate() throws {
        guard minBytes >= 4, maxBytes >= minBytes else {
            throw ValidationError("need 4 <= --min-bytes <= --max-bytes (got \(minBytes), \(maxBytes))")
        }
    }

    func run() throws {
        let (minBytes, maxBytes, bytesPerSize, outOfPlace) = (minBytes, maxBytes, bytesPerSize, outOfPlace)
        try runOnWorld { world in
            try AllreduceBenchmark.run(minBytes: minBytes, maxBytes: maxBytes, bytesPerSize: bytesPerSize,
                                       outOfPlace: outOfPlace, world: world)
        }
    }
}

/// `umd-mpirun bench step`: weak scaling of a full pretrain step; run under mpirun.
struct StepBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step", abstract: "Pretrain-step samples/s alone vs together, communication share, sync bandwidth.")
    @Option(help: "Preset.") var preset = "small"
    @Option(help: "What a step trains: pretrain (MR-Pretrain) or finetune (GM-Coord, classifier head).")
    var stage = "pretrain"
    @Option(help: "Samples per rank per step.") var localBatch = 8
    @Option(help: "Timed steps (after one warm-up step).") var steps = 5
    @Flag(help: "Also print where a step's time goes (forward, teacher, losses, backward, sync wait, GM-Coord, norm, AdamW, EMA, zeroing) and the matmul utilisation.")
    var phases = false
    @Flag(help: "ZeRO-1: each rank updates 1/R of the parameters and holds only their AdamW moments.")
    var shardOptimizer = false
    @Option(help: "Gradient bucket size in MB (as the training flag).") var bucketMB = 25.0
    @Option(help: "What the gradient sum sends: fp32 or bf16 (as the training flag).") var syncPrecision = "fp32"
    @Option(help: "Matrix products: openblas, onednn or bf16 (as the training flag).") var matmul = "openblas"

    func run() throws {
        guard let p = ModelPreset.named(preset) else { throw ValidationError("unknown preset \(preset)") }
        guard let workload = StepBenchmark.Workload(rawValue: stage) else {
            throw ValidationError("--stage must be pretrain or finetune, got \(stage)")
        }
        guard localBatch >= 1, steps >= 1 else { throw ValidationError("--local-batch and --steps must be at least 1") }
        guard (0.25...4096).contains(bucketMB) else { throw ValidationError("--bucket-mb must be in [0.25, 4096], got \(bucketMB)") }
        if workload == .pretrain && localBatch < 2 {
            // Each rank pairs ITM images within its own synthetic batch (MODEL_SPEC.md section 5: G >= 2).
            throw ValidationError("--stage pretrain needs --local-batch of at least 2 (ITM pairs within each rank's batch)")
        }
        guard let precision = SyncPrecision(rawValue: syncPrecision) else {
            throw ValidationError("--sync-precision must be fp32 or bf16, got \(syncPrecision)")
        }
        guard let backend = MatmulChoice(rawValue: matmul) else {
            throw ValidationError("--matmul must be openblas, onednn or bf16, got \(matmul)")
        }
        let (b, s, showPhases, shard, bucket) = (localBatch, steps, phases, shardOptimizer, bucketMB)
        try runOnWorld { world in
            try StepBenchmark.run(preset: p, workload: workload, localBatch: b, steps: s, phases: showPhases,
                                  shardOptimizer: shard, bucketMB: bucket, syncPrecision: precision, matmul: backend,
                                  world: world)
        }
    }
}

/// `umd-mpirun bench checkpoint --preset base`.
struct CheckpointBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint", abstract: "Checkpoint save/load MB/s and compression ratio next to a raw write.")
    @Option(help: "Preset.") var preset = "base"
    @Option(help: "Directory for the temporary files.") var directory = FileManager.default.temporaryDirectory.path

    func run() throws {
        guard let p = ModelPreset.named(preset) else { throw ValidationError("unknown preset \(preset)") }
        let dir = URL(fileURLWithPath: directory)
        try runOnWorld { world in try CheckpointBenchmark.run(preset: p, directory: dir, world: world) }
    }
}
