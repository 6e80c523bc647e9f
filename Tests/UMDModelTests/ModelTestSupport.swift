import UMDData
@testable import UMDModel

/// Synthetic inputs for whole-model tests.
enum SyntheticBatch {
    static let vocabularySize = 60

    static func config(head: TaskHead = .none, preset: ModelPreset = .tiny) -> ModelConfig {
        ModelConfig(preset: preset, vocabularySize: vocabularySize, head: head)
    }

    /// Token ids [B, L]: <s>, random ids, </s>, then padding; item b has `lengths[b]` real tokens.
    static func text(batch: Int, length: Int, seed: UInt64) -> (ids: [Int32], attention: [Int32]) {
        var ids = [Int32](repeating: SpecialTokens.pad, count: batch * length)
        var attention = [Int32](repeating: 0, count: batch * length)
        for b in 0..<batch {
            let real = max(3, length - 3 * b)   // different amounts of padding per item
            for t in 0..<real {
                let id: Int32
                if t == 0 { id = SpecialTokens.start } else if t == real - 1 { id = SpecialTokens.end } else {
                    id = Int32(4 + Int(CounterRandom.bits(seed, UInt64(b * length + t)) % UInt64(vocabularySize - 5)))
                }
                ids[b * length + t] = id
                attention[b * length + t] = 1
            }
        }
        return (ids, attention)
    }

    static func pixels(batch: Int, size: Int, seed: UInt64) -> [Float] {
        (0..<(batch * 3 * size * size)).map { Float(CounterRandom.normal(seed, UInt64($0))) }
    }

    static func pretrain(batch B: Int = 2, seed: UInt64 = 5, itm: Bool = true, preset: ModelPreset = .tiny) -> PretrainBatch {
        let L = preset.textLength, H = preset.imageSize, N = preset.patchCount
        let (ids, attention) = text(batch: B, length: L, seed: seed)
        var masked = [Int32](), labels = [Int32](), keep = [Int32]()
        for b in 0..<B {
            let row = Array(ids[(b * L)..<((b + 1) * L)])
            var (m, l) = Masking.maskText(row, vocabularySize: vocabularySize, seed: seed, epoch: 0, sampleIndex: b,
                                          probability: 0.3)
            if !l.contains(where: { $0 != Losses.ignoreLabel }) {   // make sure MLM has something to do
                l[1] = row[1]; m[1] = SpecialTokens.mask(vocabularySize: vocabularySize)
            }
            masked += m; labels += l
            keep += Masking.keptPatches(patchCount: N, seed: seed, epoch: 0, sampleIndex: b)
        }
        let px = pixels(batch: B, size: H, seed: seed)
        // ITM: item 0 keeps its image, item 1 gets item 0's image (swapped), and so on.
        var itmPixels = px
        var itmLabels = [Int32](repeating: 1, count: B)
        let imageSize = 3 * H * H
        for b in stride(from: 1, to: B, by: 2) {
            for i in 0..<imageSize { itmPixels[b * imageSize + i] = px[(b - 1) * imageSize + i] }
            itmLabels[b] = 0
        }
        return PretrainBatch(batch: B, imageSize: H, textLength: L, pixels: px, textIDs: ids, attention: attention,
                             maskedTextIDs: masked, mlmLabels: labels, idsKeep: keep,
                             itmPixels: itm ? itmPixels : [], itmLabels: itm ? itmLabels : [],
                             sampleIDs: (0..<B).map { UInt64($0) })
    }
}
