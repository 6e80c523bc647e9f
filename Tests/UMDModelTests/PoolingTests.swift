import Testing
import UMDData
@testable import UMDModel

/// `--pooling mean` (MODEL_SPEC.md section 9 "Head input", issue 23): the head reads the
/// mean of each stream's fusion outputs — the text's over its non-pad tokens, the image's
/// over all its tokens — instead of the poolers.
extension FinetuneTests {
    @Test func meanPoolingGradientMatchesFiniteDifferencesAndLeavesThePoolersAlone() {
        let (params, store) = model(head: .classifier(outputs: Self.classes), pooling: .mean)
        let objective = FinetuneObjective(params: params)
        let batch = classificationBatch(batch: 3, seed: 4)
        checkGroupDirections(store, groups: ["vision.", "text.", "fusion.text_layers", "fusion.image_layers",
                                             "fusion.type_embed", "head.fc1", "head.ln", "head.fc2"],
                             loss: { objective.step(student: store, batch: batch, computeGradients: false).loss },
                             gradients: { objective.step(student: store, batch: batch) })
        // No gradient reaches the poolers (the stage does not train them either).
        for view in store.views(withPrefix: "fusion.text_pooler") + store.views(withPrefix: "fusion.image_pooler") {
            #expect((0..<view.count).allSatisfy { store.grads[view.offset + $0] == 0 }, "\(view.name)")
            #expect(!Stage.finetune.trains(view.name, pooling: .mean) && Stage.finetune.trains(view.name, pooling: .cls))
        }
    }

    @Test func meanPoolingIsTheMeanOfTheNonPadTextTokensAndOfAllImageTokens() {
        let (params, store) = model(head: .classifier(outputs: Self.classes), pooling: .mean)
        let objective = FinetuneObjective(params: params)
        let B = 3, D = params.config.width
        let batch = classificationBatch(batch: B, seed: 6)
        objective.step(student: store, batch: batch, computeGradients: false)
        let fusion = objective.fusion
        let L = fusion.textLength, Li = fusion.imageLength
        for b in 0..<B {
            let kept = (0..<L).filter { batch.attention[b * L + $0] != 0 }
            #expect(kept.count < L || b == 0, "the batch pads sample \(b)")
            for j in 0..<D {
                let text = kept.reduce(0.0) { $0 + Double(fusion.textOutput[(b * L + $1) * D + j]) } / Double(kept.count)
                let image = (0..<Li).reduce(0.0) { $0 + Double(fusion.imageOutput[(b * Li + $1) * D + j]) } / Double(Li)
                #expect(abs(Double(objective.lastPooled[b * 2 * D + j]) - text) <= 1e-5 * max(1, abs(text)))
                #expect(abs(Double(objective.lastPooled[b * 2 * D + D + j]) - image) <= 1e-5 * max(1, abs(image)))
            }
        }
    }

    @Test func meanPoolingDoesNotSeeThePaddingTokens() {
        // Pad positions are masked as keys, so only their own outputs depend on their ids;
        // the mean leaves those out: other ids at the pad positions change nothing.
        let (params, store) = model(head: .classifier(outputs: Self.classes), pooling: .mean)
        let objective = FinetuneObjective(params: params)
        let batch = classificationBatch(batch: 3, seed: 9)
        var repadded = batch
        for i in 0..<batch.textIDs.count where batch.attention[i] == 0 { repadded.textIDs[i] = 7 }
        #expect(repadded.textIDs != batch.textIDs)
        let a = objective.step(student: store, batch: batch, computeGradients: false).loss
        let b = objective.step(student: store, batch: repadded, computeGradients: false).loss
        #expect(a == b)
        // With the poolers (cls) the first token is read, so the same holds; with a mean over
        // every token it would not — check the test can tell: the pad positions' outputs differ.
        let D = params.config.width, L = objective.fusion.textLength
        let padded = (0..<batch.textIDs.count).first { batch.attention[$0] == 0 }!
        let before = Array(UnsafeBufferPointer(start: objective.fusion.textOutput + padded * D, count: D))
        objective.step(student: store, batch: batch, computeGradients: false)
        let after = Array(UnsafeBufferPointer(start: objective.fusion.textOutput + padded * D, count: D))
        #expect(before != after, "pad token \(padded % L) of sample \(padded / L): its output should depend on its id")
    }

    @Test func meanPoolingRetrievalGradientMatchesFiniteDifferencesAndTheScorer() {
        let (params, store) = model(head: .retrieval, pooling: .mean)
        let objective = FinetuneObjective(params: params)
        let p = ModelPreset.tiny
        let (ids, attention) = SyntheticBatch.text(batch: 3, length: p.textLength, seed: 8)
        let pixels = SyntheticBatch.pixels(batch: 2, size: p.imageSize, seed: 8)
        let batch = RetrievalBatch(batch: 2, imageSize: p.imageSize, textLength: p.textLength, pixels: pixels, textCount: 3,
                                   textIDs: ids, attention: attention, candidates: [0, 1, 2, 1, 2, 0], sampleIDs: [0, 1])
        checkGroupDirections(store, groups: ["vision.", "text.", "fusion.text_layers", "fusion.image_layers", "head.score"],
                             loss: { objective.retrievalStep(student: store, batch: batch, computeGradients: false).loss },
                             gradients: { objective.retrievalStep(student: store, batch: batch) })
        // Evaluation's scorer pools the same way: image 0's scores against texts 0, 1, 2.
        objective.retrievalStep(student: store, batch: batch, computeGradients: false)
        let reference = Array(UnsafeBufferPointer(start: objective.lastLogits.pointer, count: 3))
        let scorer = RetrievalScorer(params: params, chunk: 2)
        scorer.encodeTexts(store, ids: ids, attention: attention, count: 3, length: p.textLength)
        let scores = scorer.scores(store, image: Array(pixels[0..<(3 * p.imageSize * p.imageSize)]), imageSize: p.imageSize)
        for j in 0..<3 { #expect(abs(scores[j] - reference[j]) <= 1e-5 * max(1, abs(reference[j])), "text \(j)") }
    }
}
