import Foundation
import UMDData

/// `umd-mpirun bench data`: JPEG decode + preprocessing throughput at the base preset's
/// image size, and how much of it the prefetcher hides behind a busy loop standing in for
/// the training step. Baselines come from the same run.
public enum DataBenchmark {
    public static func run(sourceSize: Int, imageSize: Int, batch: Int, batches: Int) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("umd-bench-data-\(getpid())")
        defer { try? FileManager.default.removeItem(at: dir) }
        try SyntheticDataset.write(kind: .roco, to: dir, count: batch * 2, seed: 1, imageSize: sourceSize)
        let (samples, _) = try ROCODataset.load(root: dir, split: .train)
        let files = samples.map(\.image)
        let size = imageSize, perBatch = batch
        @Sendable func loadBatch(_ step: Int) throws -> [Float] {
            var out = [Float](repeating: 0, count: perBatch * 3 * size * size)
            try out.withUnsafeMutableBufferPointer { buffer in
                for i in 0..<perBatch {
                    let image = try ImageCodec.decode(file: files[(step * perBatch + i) % files.count])
                    ImagePreprocessing.normalizedPixels(image, size: size, into: buffer.baseAddress! + i * 3 * size * size)
                }
            }
            return out
        }
        _ = try loadBatch(0)   // warm the file cache

        // 1. Decode + preprocess alone, one thread.
        var start = Date()
        for s in 0..<batches { _ = try loadBatch(s) }
        let decodeSeconds = Date().timeIntervalSince(start) / Double(batches)
        let perSecond = Double(perBatch) / decodeSeconds

        // 2. A busy loop as long as one batch's decoding, standing in for the step.
        func busy(_ seconds: Double) -> Double {
            let until = Date().addingTimeInterval(seconds)
            var x = 1.0
            while Date() < until { for _ in 0..<1000 { x = x * 1.0000001 + 1e-9 } }
            return x
        }
        start = Date()
        for s in 0..<batches { _ = try loadBatch(s); _ = busy(decodeSeconds) }
        let sequential = Date().timeIntervalSince(start) / Double(batches)

        // 3. The same with the prefetcher decoding the next batches on another thread.
        let prefetcher = Prefetcher<[Float]>(startStep: 0, depth: 2, produce: loadBatch)
        start = Date()
        for _ in 0..<batches { _ = try prefetcher.next(); _ = busy(decodeSeconds) }
        let overlapped = Date().timeIntervalSince(start) / Double(batches)
        prefetcher.stop()

        print("# umd data benchmark: \(sourceSize)px JPEG -> \(imageSize)px normalised, batch \(perBatch), \(batches) batches")
        print(String(format: "decode+preprocess, 1 thread:      %8.1f images/s per core (%.1f ms per image)", perSecond,
                     1000 / perSecond))
        print(String(format: "step = busy loop of %.1f ms + load: %8.1f ms per step without prefetcher", decodeSeconds * 1000,
                     sequential * 1000))
        print(String(format: "                                   %8.1f ms per step with prefetcher (%.2fx faster; ideal %.2fx)",
                     overlapped * 1000, sequential / overlapped, sequential / max(decodeSeconds, 1e-9)))
        print(String(format: "data wait per step with prefetcher: %7.1f ms", prefetcher.waitSeconds / Double(batches) * 1000))
    }
}
