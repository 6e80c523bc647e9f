import ArgumentParser
import Foundation
import UMDModel
import UMDTools

/// `umd-mpirun bench kernels` (see `KernelBenchmark`). Single process; no MPI.
struct KernelBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Block forward+backward GFLOP/s against plain sgemm, with a per-kernel breakdown.")

    @Option(help: "Presets to measure, comma-separated.") var presets = "small,base"
    @Option(help: "OpenBLAS threads.") var threads = 1
    @Option(help: "Square sgemm size for the baseline.") var gemmSize = 2048
    @Option(help: "Minimum seconds of timing per measurement.") var seconds = 1.5
    @Option(help: "Batch per preset (default: small 8, base 2).") var batch: Int?
    @Option(help: ArgumentHelp("Run exactly this many steps per block and print nothing else "
                               + "(for counting heap allocations under valgrind).", visibility: .hidden))
    var fixedSteps: Int?
    @Option(help: "Backend the blocks run on: openblas, onednn or bf16 (the GEMM table covers all).") var matmul = "openblas"

    func run() throws {
        var bench = KernelBenchmark(presets: try presets.split(separator: ",").map { try presetArgument(String($0)) })
        bench.threads = threads; bench.gemmSize = gemmSize; bench.seconds = seconds
        bench.batch = batch; bench.fixedSteps = fixedSteps
        guard let backend = MatmulChoice(rawValue: matmul) else {
            throw ValidationError("--matmul must be openblas, onednn or bf16, got \(matmul)")
        }
        bench.matmul = backend
        try bench.run()
    }
}
