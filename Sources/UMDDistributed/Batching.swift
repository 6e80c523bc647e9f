import Foundation
import UMDData
import UMDModel

/// Turns dataset samples into model inputs: decoded and normalised pixels [3, H, H],
/// token ids with attention, and MODEL_SPEC.md section 4 masks keyed by (seed, epoch,
/// dataset index), so a sample gets the same inputs on any rank.
public struct BatchBuilder: Sendable {
    public let tokenizer: ByteLevelBPE
    public let imageSize: Int
    public let textLength: Int
    public let patchSize: Int
    public let seed: UInt64

    public init(tokenizer: ByteLevelBPE, imageSize: Int, textLength: Int, patchSize: Int, seed: UInt64) {
        self.tokenizer = tokenizer; self.imageSize = imageSize; self.textLength = textLength
        self.patchSize = patchSize; self.seed = seed
    }

    /// Pixels of the images at `urls`, concatenated [B, 3, H, H].
    public func pixels(_ urls: [URL]) throws -> [Float] {
        let n = 3 * imageSize * imageSize
        var out = [Float](repeating: 0, count: urls.count * n)
        try out.withUnsafeMutableBufferPointer { buffer in
            for (i, url) in urls.enumerated() {
                let image: RGBImage
                do { image = try ImageCodec.decode(file: url) } catch {
                    // A sample cannot leave a global batch mid-epoch without changing the run.
                    throw RunError("\(error). Rerun with --check-images to decode every image while reading the data "
                                   + "set, so damaged files are skipped (with a warning) before training starts.")
                }
                ImagePreprocessing.normalizedPixels(image, size: imageSize, into: buffer.baseAddress! + i * n)
            }
        }
        return out
    }

    /// Token ids and attention of `texts`, [B, L] each.
    public func text(_ texts: [String]) -> (ids: [Int32], attention: [Int32]) {
        var ids: [Int32] = [], attention: [Int32] = []
        for t in texts {
            let (i, a) = tokenizer.encodeSequence(t, length: textLength)
            ids += i; attention += a
        }
        return (ids, attention)
    }

    /// MR-Pretrain / TD-Calib inputs of the samples `indices` (dataset indices) of `epoch`.
    /// `itmImages` (pretraining): for each sample, the image its text is paired with.
    public func pretrainBatch(images: [URL], texts: [String], indices: [Int], epoch: Int,
                              itmImages: [URL]? = nil, itmLabels: [Int32]? = nil) throws -> PretrainBatch {
        let (ids, attention) = text(texts)
        let N = (imageSize / patchSize) * (imageSize / patchSize)
        var masked: [Int32] = [], labels: [Int32] = [], keep: [Int32] = []
        for (b, index) in indices.enumerated() {
            let (m, l) = Masking.maskText(Array(ids[(b * textLength)..<((b + 1) * textLength)]),
                                          vocabularySize: tokenizer.vocabularySize, seed: seed, epoch: epoch,
                                          sampleIndex: index)
            masked += m; labels += l
            keep += Masking.keptPatches(patchCount: N, seed: seed, epoch: epoch, sampleIndex: index)
        }
        return PretrainBatch(batch: indices.count, imageSize: imageSize, textLength: textLength, pixels: try pixels(images),
                             textIDs: ids, attention: attention, maskedTextIDs: masked, mlmLabels: labels, idsKeep: keep,
                             itmPixels: try itmImages.map(pixels) ?? [], itmLabels: itmLabels ?? [],
                             sampleIDs: indices.map { UInt64($0) })
    }
}
