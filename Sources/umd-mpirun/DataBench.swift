import ArgumentParser
import Foundation
import UMDTools

/// `umd-mpirun bench data` (see `DataBenchmark`).
struct DataBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Image decode+preprocess throughput, with and without the prefetcher.")

    @Option(help: "Source image side in pixels (ROCO images are a few hundred pixels).") var sourceSize = 512
    @Option(help: "Model image size.") var imageSize = 288
    @Option(help: "Images per batch.") var batch = 16
    @Option(help: "Batches to time.") var batches = 8

    func run() throws {
        try DataBenchmark.run(sourceSize: sourceSize, imageSize: imageSize, batch: batch, batches: batches)
    }
}
