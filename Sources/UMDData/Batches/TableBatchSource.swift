import Foundation
import UMDCore

/// The file a data thread is reading now, for stall reports.
public final class FileInProgress: @unchecked Sendable {
    // Guarded by `lock`: written by the prefetch thread, read by the watchdog thread.
    private let lock = NSLock()
    private var path: String? = nil
    public init() {}
    public var current: String? { lock.lock(); defer { lock.unlock() }; return path }
    func set(_ p: String?) { lock.lock(); path = p; lock.unlock() }
}

/// A global batch drawn from a sample table: images are decoded and texts tokenised on
/// demand, only for the positions asked for.
public struct TableBatchSource: BatchSource {
    public let table: SampleTable
    public let indices: [Int]            // [G] data-set index of each global-batch position
    public let tokenizer: ByteLevelBPE
    public let imageSize: Int, textLength: Int
    public let maxImagePixels: Int
    public let progress: FileInProgress?

    public init(table: SampleTable, indices: [Int], tokenizer: ByteLevelBPE, imageSize: Int, textLength: Int,
                maxImagePixels: Int = ImageCodec.defaultMaxPixels, progress: FileInProgress? = nil) {
        self.table = table; self.indices = indices; self.tokenizer = tokenizer
        self.imageSize = imageSize; self.textLength = textLength; self.maxImagePixels = maxImagePixels
        self.progress = progress
    }

    public var globalBatch: Int { indices.count }
    public func datasetIndex(_ p: Int) -> Int { indices[p] }
    public func label(_ p: Int) -> Int32 { Int32(table.labels[indices[p]]) }

    public func pixels(_ positions: [Int]) throws -> [Float] {
        try Self.pixels(positions.map { table.images[indices[$0]] }, size: imageSize, maxPixels: maxImagePixels,
                        progress: progress)
    }

    public func tokens(_ positions: [Int]) -> (ids: [Int32], attention: [Int32]) {
        Self.tokens(positions.map { table.texts[indices[$0]] }, tokenizer: tokenizer, length: textLength)
    }

    /// Decoded, resized and normalised images, [n, 3, H, H].
    public static func pixels(_ urls: [URL], size: Int, maxPixels: Int = ImageCodec.defaultMaxPixels,
                              progress: FileInProgress? = nil) throws -> [Float] {
        defer { progress?.set(nil) }
        let n = 3 * size * size
        var out = [Float](repeating: 0, count: urls.count * n)
        try out.withUnsafeMutableBufferPointer { buffer in
            for (i, url) in urls.enumerated() {
                let image: RGBImage
                progress?.set(url.path)
                do { image = try ImageCodec.decode(file: url, maxPixels: maxPixels) } catch {
                    // A sample cannot leave a global batch mid-epoch without changing the run.
                    throw DataError.dataset("\(error). Rerun with --check-images to decode every image while reading the data "
                                       + "set, so damaged files are skipped (with a warning) before training starts.")
                }
                ImagePreprocessing.normalizedPixels(image, size: size, into: buffer.baseAddress! + i * n)
            }
        }
        return out
    }

    /// Token ids and attention of `texts`, [n, L] each.
    public static func tokens(_ texts: [String], tokenizer: ByteLevelBPE, length: Int) -> (ids: [Int32], attention: [Int32]) {
        var ids: [Int32] = [], attention: [Int32] = []
        for t in texts {
            let (i, a) = tokenizer.encodeSequence(t, length: length)
            ids += i; attention += a
        }
        return (ids, attention)
    }
}

/// A global batch already in memory (the debug step's and the benchmarks' synthetic inputs).
public struct InMemoryBatchSource: BatchSource {
    public let imageSize: Int, textLength: Int
    public let allPixels: [Float]        // [G, 3, H, H]
    public let ids: [Int32]              // [G, L]
    public let attention: [Int32]        // [G, L]
    public let labels: [Int32]           // [G] (empty when the stage has none)
    public let indices: [Int]            // [G] data-set index of each position

    public init(imageSize: Int, textLength: Int, pixels: [Float], ids: [Int32], attention: [Int32], labels: [Int32] = [],
                indices: [Int]) {
        self.imageSize = imageSize; self.textLength = textLength; self.allPixels = pixels
        self.ids = ids; self.attention = attention; self.labels = labels; self.indices = indices
    }

    public var globalBatch: Int { indices.count }
    public func datasetIndex(_ p: Int) -> Int { indices[p] }
    public func label(_ p: Int) -> Int32 { labels[p] }

    public func pixels(_ positions: [Int]) throws -> [Float] {
        let n = 3 * imageSize * imageSize
        return positions.flatMap { allPixels[($0 * n)..<(($0 + 1) * n)] }
    }

    public func tokens(_ positions: [Int]) -> (ids: [Int32], attention: [Int32]) {
        let L = textLength
        return (positions.flatMap { ids[($0 * L)..<(($0 + 1) * L)] }, positions.flatMap { attention[($0 * L)..<(($0 + 1) * L)] })
    }

    /// Noise images and random token sequences of 3..L tokens (<s> … </s>, then padding),
    /// labels uniform over `classes`; keyed by `seed`. Data-set indices are 0..<G.
    public static func synthetic(globalBatch G: Int, imageSize H: Int, textLength L: Int, vocabularySize V: Int,
                                 classes: Int, seed: UInt64) -> InMemoryBatchSource {
        let pixels = (0..<(G * 3 * H * H)).map { Float(CounterRandom.normal(CounterRandom.key(seed, 101), UInt64($0))) }
        var ids = [Int32](repeating: SpecialTokens.pad, count: G * L)
        var attention = [Int32](repeating: 0, count: G * L)
        let textKey = CounterRandom.key(seed, 102)
        for b in 0..<G {
            let length = 3 + Int(CounterRandom.bits(textKey, UInt64(1_000_000 + b)) % UInt64(L - 2))
            for t in 0..<length {
                ids[b * L + t] = t == 0 ? SpecialTokens.start : t == length - 1 ? SpecialTokens.end
                    : Int32(4 + Int(CounterRandom.bits(textKey, UInt64(b * L + t)) % UInt64(V - 5)))
                attention[b * L + t] = 1
            }
        }
        let labels = (0..<G).map { Int32(CounterRandom.bits(CounterRandom.key(seed, 103), UInt64($0)) % UInt64(max(classes, 1))) }
        return InMemoryBatchSource(imageSize: H, textLength: L, pixels: pixels, ids: ids, attention: attention,
                                   labels: labels, indices: Array(0..<G))
    }
}
