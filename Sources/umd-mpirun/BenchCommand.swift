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
        subcommands: [AllreduceBench.self, KernelBench.self, ElementwiseBench.self, DataBench.self, StepBench.self, CheckpointBench.self])
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

/// `umd-mpirun bench step`: weak scaling of a full pretrain or fine-tuning step; run under
/// mpirun. Its flags are the settings table's (`SettingsScope.Tool.benchStep`).
struct StepBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step", abstract: "Pretrain-step samples/s alone vs together, communication share, sync bandwidth.",
        discussion: "--stage pretrain (MR-Pretrain) or finetune (GM-Coord, a classifier head of 100 answers). --phases "
            + "(--profile) also prints where a step's time goes (forward, teacher, losses, backward, sync wait, GM-Coord, "
            + "norm, AdamW, EMA, zeroing), the kernel families and the matmul utilisation.\n\n"
            + Settings.help(.benchStep, defaults: StepBenchmark.defaults))
    @Argument(parsing: .allUnrecognized, help: "Settings: --name VALUE (listed above).") var settings: [String] = []

    func run() throws {
        let config: RunConfiguration
        do {
            config = try Settings.configuration(.tool(.benchStep), arguments: settings, defaults: StepBenchmark.defaults)
        } catch {
            writeToStandardError("umd-mpirun bench step: error: \(error)\n")
            throw ExitCode.validationFailure
        }
        try runOnWorld { world in try StepBenchmark.run(config, world: world) }
    }
}

/// `umd-mpirun bench checkpoint --preset base`.
struct CheckpointBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint", abstract: "Checkpoint save/load MB/s and compression ratio next to a raw write.")
    @Option(help: "Preset.") var preset = "base"
    @Option(help: "Directory for the temporary files.") var directory = FileManager.default.temporaryDirectory.path

    func run() throws {
        let p = try presetArgument(preset)
        let dir = URL(fileURLWithPath: directory)
        try runOnWorld { world in try CheckpointBenchmark.run(preset: p, directory: dir, world: world) }
    }
}

/// Element-wise kernels' time per element, in L1 and from memory (see `ElementwiseBenchmark`).
struct ElementwiseBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "elementwise",
        abstract: "Element-wise kernels (GELU, softmax, LayerNorm) in ns per element, in L1 and from memory.")

    @Option(help: "Minimum seconds of timing per measurement.") var seconds = 0.2

    func run() throws { ElementwiseBenchmark.printTable(seconds: seconds) }
}
