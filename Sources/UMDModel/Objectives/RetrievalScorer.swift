/// Cross-encoder scores `head.score(cls)` of one image against many texts, for retrieval
/// evaluation: the texts are encoded once (`encodeTexts`), each image once, and only the
/// fusion runs per (image, text) pair, in chunks.
public final class RetrievalScorer {
    let params: UMDParameters
    let vision: VisionEncoder, text: TextEncoder, fusion: FusionModule
    let score: Linear
    let ids = IntBuffer(), keyMask = FloatBuffer()
    let textFeatures = FloatBuffer()       // [T, L, D]
    let pairImages = FloatBuffer()          // [C, Li, D]
    let pixels = FloatBuffer()              // [1, 3, H, H]
    private var textCount = 0, textLength = 0
    public let chunk: Int

    public init(params: UMDParameters, chunk: Int = 32) {
        guard let s = params.head?.score else { preconditionFailure("retrieval scoring needs a model with head.score") }
        self.params = params
        self.chunk = chunk
        let c = params.config
        vision = VisionEncoder(params.vision, width: c.width, patchSize: c.patchSize)
        text = TextEncoder(params.text, width: c.width)
        fusion = FusionModule(params.fusion, width: c.width, pooling: c.pooling)
        score = Linear(s)
    }

    /// Encodes the T candidate texts once: ids and attention [T, L].
    public func encodeTexts(_ p: ParameterStore, ids textIDs: [Int32], attention: [Int32], count T: Int, length L: Int) {
        let D = params.config.width
        textCount = T; textLength = L
        let idp = ids.ensure(T * L), km = keyMask.ensure(T * L)
        textIDs.withUnsafeBufferPointer { idp.update(from: $0.baseAddress!, count: T * L) }
        attention.withUnsafeBufferPointer { additiveKeyMask(km, attention: $0.baseAddress!, count: T * L) }
        let features = textFeatures.ensure(T * L * D)
        for start in stride(from: 0, to: T, by: chunk) {
            let n = min(chunk, T - start)
            let out = text.forward(p, ids: idp + start * L, keyMask: km + start * L, batch: n, length: L, .deterministic)
            (features + start * L * D).update(from: out, count: n * L * D)
        }
    }

    /// Scores of one image ([3, H, H] pixels) against every encoded text → [T].
    public func scores(_ p: ParameterStore, image: [Float], imageSize H: Int) -> [Float] {
        let c = params.config, D = c.width, L = textLength
        let N = (H / c.patchSize) * (H / c.patchSize), Li = 1 + N
        let px = pixels.ensure(3 * H * H)
        image.withUnsafeBufferPointer { px.update(from: $0.baseAddress!, count: 3 * H * H) }
        let zi = vision.forward(p, pixels: px, batch: 1, imageSize: H, keep: nil, keptCount: N)
        var out = [Float](repeating: 0, count: textCount)
        for start in stride(from: 0, to: textCount, by: chunk) {
            let n = min(chunk, textCount - start)
            let images = pairImages.ensure(n * Li * D)
            for k in 0..<n { (images + k * Li * D).update(from: zi, count: Li * D) }
            fusion.forward(p, text: textFeatures.pointer + start * L * D, image: images, textMask: keyMask.pointer + start * L,
                           batch: n, textLength: L, imageLength: Li, .deterministic)
            let s = score.forward(p, fusion.pool(p), rows: n)
            for k in 0..<n { out[start + k] = s[k] }
        }
        return out
    }
}
