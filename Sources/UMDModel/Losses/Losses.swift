import RealModule
#if canImport(Glibc)
import Glibc
#endif

/// Losses with their gradients (MODEL_SPEC.md section 6). Each returns the loss and writes
/// (overwrites) the gradient of `scale · loss` with respect to its input.
///
/// `divisor` is the count the sum is averaged over. Within one process it is the local
/// count; in data-parallel training the caller passes the global count (MODEL_SPEC.md
/// section 10a), so the sum of the ranks' gradients is the global-batch gradient.
public enum Losses {
    /// Label value of positions that do not contribute to a cross-entropy.
    public static let ignoreLabel: Int32 = SpecialTokens.ignoreLabel

    /// Σ over selected rows of mean over `width` of (pred − target)², divided by `divisor`
    /// (default: the number of selected rows; nil selection = every row). Rows not selected
    /// get zero gradient. Returns the loss; 0 when nothing is selected.
    @discardableResult
    public static func meanSquaredError(pred: UnsafePointer<Float>, target: UnsafePointer<Float>,
                                        gradient: UnsafeMutablePointer<Float>?, rows: Int, width: Int,
                                        selected: UnsafePointer<Bool>? = nil, divisor: Double? = nil,
                                        scale: Float = 1) -> Double {
        var selectedCount = 0
        for r in 0..<rows where selected?[r] ?? true { selectedCount += 1 }
        let d = divisor ?? Double(selectedCount)
        gradient?.update(repeating: 0, count: rows * width)
        guard d > 0, selectedCount > 0 else { return 0 }
        var total = 0.0
        let g = Float(2 / (Double(width) * d)) * scale
        for r in 0..<rows where selected?[r] ?? true {
            let pr = pred + r * width, tr = target + r * width
            var rowSum: Float = 0
            for j in 0..<width {
                let diff = pr[j] - tr[j]
                rowSum = Relaxed.multiplyAdd(diff, diff, rowSum)
                gradient?[r * width + j] = g * diff
            }
            total += Double(rowSum) / Double(width)
        }
        return total / d
    }

    /// Σ over rows whose label is not `ignoreLabel` of −log softmax(logits)[label], divided by
    /// `divisor` (default: the number of counted rows). Gradient rows: (softmax − onehot)·scale/divisor,
    /// zero for ignored rows. Returns 0 when every row is ignored.
    @discardableResult
    public static func crossEntropy(logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>,
                                    gradient: UnsafeMutablePointer<Float>?, rows: Int, classes: Int,
                                    divisor: Double? = nil, scale: Float = 1) -> Double {
        var counted = 0
        for r in 0..<rows where labels[r] != ignoreLabel {
            precondition(labels[r] >= 0 && Int(labels[r]) < classes,
                         "label \(labels[r]) of row \(r) is outside [0, \(classes))")
            counted += 1
        }
        let d = divisor ?? Double(counted)
        gradient?.update(repeating: 0, count: rows * classes)
        guard d > 0, counted > 0 else { return 0 }
        var total = 0.0
        let g = Float(1 / d) * scale
        for r in 0..<rows where labels[r] != ignoreLabel {
            let row = logits + r * classes
            var maxValue = -Float.infinity
            for j in 0..<classes { maxValue = max(maxValue, row[j]) }
            var sum = 0.0
            for j in 0..<classes { sum += Double(expf(row[j] - maxValue)) }
            let logSum = Double(maxValue) + log(sum)
            let label = Int(labels[r])
            total += logSum - Double(row[label])
            if let gradient {
                let gr = gradient + r * classes
                for j in 0..<classes { gr[j] = Float(exp(Double(row[j]) - logSum)) * g }
                gr[label] -= g
            }
        }
        return total / d
    }

    /// Per-patch normalised pixel targets for MIM (MODEL_SPEC.md section 6): each row of
    /// `patches` [rows, width] becomes (x − mean) / sqrt(var + 1e-6), var unbiased.
    public static func normalizePatches(_ out: UnsafeMutablePointer<Float>, _ patches: UnsafePointer<Float>,
                                        rows: Int, width: Int) {
        precondition(width > 1, "a patch needs more than one value for an unbiased variance")
        for r in 0..<rows {
            let x = patches + r * width, y = out + r * width
            var s = 0.0
            for j in 0..<width { s += Double(x[j]) }
            let mean = s / Double(width)
            var v = 0.0
            for j in 0..<width {
                let d = Double(x[j]) - mean
                v += d * d
            }
            let inv = 1 / (v / Double(width - 1) + 1e-6).squareRoot()
            for j in 0..<width { y[j] = Float((Double(x[j]) - mean) * inv) }
        }
    }
}
