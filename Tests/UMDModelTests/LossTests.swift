import Testing
import Foundation
@testable import UMDModel

/// Losses: values against hand computation, gradients against finite differences.
struct LossTests {
    /// Finite-difference check of a loss's gradient w.r.t. its input (same tolerance
    /// reasoning as GradientChecker; losses are computed in Double so the noise is smaller).
    func checkLossGradient(_ x: UnsafeMutablePointer<Float>, count: Int, gradient: [Float],
                           loss: () -> Double, sourceLocation: SourceLocation = #_sourceLocation) {
        let eps: Float = 1e-2
        for i in 0..<count {
            let saved = x[i]
            x[i] = saved + eps; let plus = loss()
            x[i] = saved - eps; let minus = loss()
            x[i] = saved
            let numeric = (plus - minus) / (2 * Double(eps))
            #expect(abs(numeric - Double(gradient[i])) <= 1e-3 + 1e-2 * abs(numeric),
                    "element \(i): analytic \(gradient[i]) vs numeric \(numeric)", sourceLocation: sourceLocation)
        }
    }

    @Test func meanSquaredErrorValueAndGradientOverSelectedRows() {
        let (rows, width) = (4, 3)
        let pred = TestData.buffer(rows * width, seed: 1), target = TestData.buffer(rows * width, seed: 2)
        let selected: [Bool] = [true, false, true, true]
        var gradient = [Float](repeating: 0, count: rows * width)
        let loss = selected.withUnsafeBufferPointer { sel in
            gradient.withUnsafeMutableBufferPointer {
                Losses.meanSquaredError(pred: pred, target: target, gradient: $0.baseAddress, rows: rows, width: width,
                                        selected: sel.baseAddress)
            }
        }
        var expected = 0.0
        for r in 0..<rows where selected[r] {
            for j in 0..<width { expected += pow(Double(pred[r * width + j] - target[r * width + j]), 2) / 3 }
        }
        #expect(abs(loss - expected / 3) < 1e-6)
        for j in 0..<width { #expect(gradient[width + j] == 0, "unselected row must get no gradient") }
        checkLossGradient(pred, count: rows * width, gradient: gradient) {
            selected.withUnsafeBufferPointer {
                Losses.meanSquaredError(pred: pred, target: target, gradient: nil, rows: rows, width: width,
                                        selected: $0.baseAddress)
            }
        }
        // A given divisor (the global count) replaces the local one; scale multiplies the gradient.
        var scaled = [Float](repeating: 0, count: rows * width)
        let globalLoss = selected.withUnsafeBufferPointer { sel in
            scaled.withUnsafeMutableBufferPointer {
                Losses.meanSquaredError(pred: pred, target: target, gradient: $0.baseAddress, rows: rows, width: width,
                                        selected: sel.baseAddress, divisor: 6, scale: 2)
            }
        }
        #expect(abs(globalLoss - expected / 6) < 1e-6)
        for i in 0..<(rows * width) { #expect(abs(scaled[i] - gradient[i]) <= 1e-6 * max(1, abs(gradient[i]))) }
    }

    @Test func crossEntropyIgnoresLabelAndMatchesHandValues() {
        // Two classes with equal logits: the loss is log 2 for any label.
        let logits: [Float] = [0, 0, 3, 1, 5, -5]
        let labels: [Int32] = [1, Losses.ignoreLabel, 0]
        var gradient = [Float](repeating: 0, count: 6)
        let loss = Losses.crossEntropy(logits: logits, labels: labels, gradient: &gradient, rows: 3, classes: 2)
        let expected = (log(2.0) + (log(exp(5.0) + exp(-5.0)) - 5)) / 2
        #expect(abs(loss - expected) < 1e-6)
        #expect(gradient[2] == 0 && gradient[3] == 0)
        #expect(abs(gradient[0] - 0.25) < 1e-6 && abs(gradient[1] + 0.25) < 1e-6)
        // Every label ignored: loss 0, gradient 0.
        let none = Losses.crossEntropy(logits: logits, labels: [Losses.ignoreLabel, Losses.ignoreLabel, Losses.ignoreLabel],
                                       gradient: &gradient, rows: 3, classes: 2)
        #expect(none == 0 && gradient.allSatisfy { $0 == 0 })
    }

    @Test("cross-entropy gradient by finite differences, odd class count", arguments: [1, 5])
    func crossEntropyGradient(rows: Int) {
        let classes = 7
        let logits = TestData.buffer(rows * classes, seed: 3, scale: 2)
        let labels: [Int32] = (0..<rows).map { $0 == 1 ? Losses.ignoreLabel : Int32(($0 * 3) % classes) }
        var gradient = [Float](repeating: 0, count: rows * classes)
        Losses.crossEntropy(logits: logits, labels: labels, gradient: &gradient, rows: rows, classes: classes)
        checkLossGradient(logits, count: rows * classes, gradient: gradient) {
            Losses.crossEntropy(logits: logits, labels: labels, gradient: nil, rows: rows, classes: classes)
        }
    }

    @Test func patchTargetsAreNormalisedWithUnbiasedVariance() {
        // Patch [1, 2, 3, 4]: mean 2.5, unbiased variance 5/3.
        let patches: [Float] = [1, 2, 3, 4, 7, 7, 7, 7]
        var out = [Float](repeating: 0, count: 8)
        Losses.normalizePatches(&out, patches, rows: 2, width: 4)
        let sd = (5.0 / 3 + 1e-6).squareRoot()
        for j in 0..<4 { #expect(abs(Double(out[j]) - (Double(j + 1) - 2.5) / sd) < 1e-6) }
        for j in 4..<8 { #expect(out[j] == 0, "a constant patch normalises to 0") }
    }

    @Test func patchifyOrdersGridRowMajorAndPixelsChannelRowCol() {
        // One 2-channel 4x4 image, patch 2: pixel value = 100 c + 10 y + x.
        var pixels = [Float](repeating: 0, count: 32)
        for c in 0..<2 { for y in 0..<4 { for x in 0..<4 { pixels[c * 16 + y * 4 + x] = Float(100 * c + 10 * y + x) } } }
        var out = [Float](repeating: 0, count: 32)
        patchify(&out, pixels, batch: 1, channels: 2, imageSize: 4, patchSize: 2)
        // Patch 1 is grid row 0, column 1: x in 2..3, y in 0..1.
        #expect(Array(out[8..<16]) == [2, 3, 12, 13, 102, 103, 112, 113])
        // Patch 2 is grid row 1, column 0.
        #expect(Array(out[16..<20]) == [20, 21, 30, 31])
    }
}
