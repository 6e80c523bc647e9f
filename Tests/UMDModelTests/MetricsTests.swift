import Testing
@testable import UMDModel

struct MetricsTests {
    @Test func vqaAccuracySplitsClosedAndOpen() {
        let m = Metrics.vqaAccuracy(predictions: [1, 2, 3, 4, 5], answers: [1, 0, 3, 4, 0],
                                    isClosed: [true, true, false, false, false])
        #expect(m.overall == 0.6 && m.closed == 0.5 && abs(m.open! - 2.0 / 3) < 1e-12)
        #expect(Metrics.vqaAccuracy(predictions: [1], answers: [1], isClosed: [false]).closed == nil)
    }

    @Test func classificationAccuracyMacroF1AndAUC() {
        // 3 classes, 4 samples; predictions (argmax) 0, 1, 1, 2 vs labels 0, 1, 2, 2.
        let scores: [Float] = [0.9, 0.05, 0.05,  0.1, 0.8, 0.1,  0.2, 0.5, 0.3,  0.1, 0.2, 0.7]
        let m = Metrics.classification(scores: scores, labels: [0, 1, 2, 2], classes: 3)
        #expect(m.accuracy == 0.75)
        // F1: class 0 = 1, class 1 = 2/3 (tp 1, fp 1), class 2 = 2/3 (tp 1, fn 1).
        #expect(abs(m.macroF1 - (1 + 2.0 / 3 + 2.0 / 3) / 3) < 1e-12)
        // AUC: class 0 perfect (0.9 vs others), class 1: pos 0.8 vs neg {0.05, 0.5, 0.2} = 1,
        // class 2: pos {0.3, 0.7} vs neg {0.05, 0.1}: 1.
        #expect(m.macroAUC == 1)
        // Sensitivity per class: 1/1, 1/1, 1/2 → 5/6. Specificity: class 0: 3/3; class 1: of the
        // 3 non-1 samples, 2 not predicted 1 → 2/3; class 2: 2/2 → (1 + 2/3 + 1) / 3 = 8/9.
        #expect(abs(m.sensitivity - 5.0 / 6) < 1e-12 && abs(m.specificity - 8.0 / 9) < 1e-12)
    }

    /// Only classes present in the labels count (a class never the truth has no sensitivity).
    @Test func sensitivityAndSpecificityAverageThePresentClasses() {
        // 3 classes, labels 0, 0, 1 (class 2 absent); predictions 0, 2, 1.
        let scores: [Float] = [1, 0, 0,  0, 0, 1,  0, 1, 0]
        let m = Metrics.classification(scores: scores, labels: [0, 0, 1], classes: 3)
        // Class 0: sens 1/2, spec 1/1; class 1: sens 1/1, spec 2/2.
        #expect(m.sensitivity == 0.75 && m.specificity == 1)
    }

    @Test func rocAUCCountsTiesAsHalf() {
        #expect(Metrics.rocAUC(scores: [0.5, 0.5], positives: [true, false]) == 0.5)
        #expect(Metrics.rocAUC(scores: [0.1, 0.4, 0.35, 0.8], positives: [false, false, true, true]) == 0.75)
        #expect(Metrics.rocAUC(scores: [1, 2], positives: [true, true]) == nil)
    }

    @Test func retrievalRecallInBothDirections() {
        // 3 pairs. Image 0 ranks text 0 first; image 1 ranks text 1 second; image 2 ranks text 2 third.
        let s: [Float] = [0.9, 0.1, 0.0,
                          0.8, 0.5, 0.1,
                          0.7, 0.6, 0.2]
        let r = Metrics.retrieval(scores: s, count: 3, ks: [1, 2, 3])
        #expect(r.imageToText[1] == 1.0 / 3 && r.imageToText[2] == 2.0 / 3 && r.imageToText[3] == 1)
        // Text 0: images score 0.9, 0.8, 0.7 → image 0 first. Text 1: 0.1, 0.5, 0.6 → image 1 second.
        // Text 2: 0.0, 0.1, 0.2 → image 2 first.
        #expect(r.textToImage[1] == 2.0 / 3 && r.textToImage[2] == 1)
    }
}
