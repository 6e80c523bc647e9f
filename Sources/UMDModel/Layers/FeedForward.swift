/// The nonlinearity between the two Linear layers of an FFN / MLP.
public enum Activation: Sendable {
    /// Exact erf GELU: text encoder, fusion, MLM head, task head.
    case gelu
    /// x · σ(1.702 x): CLIP vision encoder and MIM decoder.
    case quickGelu
}

public struct FeedForwardParams: Sendable {
    public let fc1: LinearParams
    public let fc2: LinearParams

    /// `name.fc1` [4W, W] and `name.fc2` [W, 4W] (FFN width is 4x everywhere).
    public static func declare(_ layout: ParameterLayout, _ name: String, width: Int) -> FeedForwardParams {
        FeedForwardParams(fc1: .declare(layout, name + ".fc1", in: width, out: 4 * width),
                          fc2: .declare(layout, name + ".fc2", in: 4 * width, out: width))
    }
}

/// fc2(act(fc1(x))), with dropout on the output where the owner asks for it (BERT places
/// it on each FFN output in the text encoder and fusion).
///
/// Keeps only fc1's output [rows, 4W] for backward (issue 28): the activation, fc2's input,
/// lives in the store's scratch and backward computes it again from fc1's output (the same
/// function of the same numbers: bitwise the same gradients); the result, which the caller
/// adds to its residual at once, is scratch too. Callers consume the result before the
/// store's next FFN runs.
public final class FeedForward {
    public let params: FeedForwardParams
    public let activation: Activation
    let fc1: Linear
    let fc2: Linear
    let outputDropout: DropoutSite?
    private var rows = 0

    public init(_ params: FeedForwardParams, activation: Activation, dropoutName: String? = nil) {
        self.params = params
        self.activation = activation
        fc1 = Linear(params.fc1)
        fc2 = Linear(params.fc2)
        outputDropout = dropoutName.map(DropoutSite.init)
    }

    /// x [B*L, W] → [B*L, W]; `perItem` = L·W elements per batch item (for dropout keys).
    @discardableResult
    public func forward(_ p: ParameterStore, _ x: UnsafePointer<Float>, batch: Int, perItemRows: Int,
                        _ context: ForwardContext) -> UnsafeMutablePointer<Float> {
        rows = batch * perItemRows
        let hidden = fc1.forward(p, x, rows: rows)
        let n = rows * params.fc1.outFeatures
        let a = p.scratch(.feedForwardActivation, n)                        // [rows, 4W]
        let rounded = activate(p, a, hidden, count: n)
        let y = fc2.forward(p, a, rows: rows, into: p.scratch(.feedForwardResult, rows * params.fc2.outFeatures),
                            xRounded: rounded)
        outputDropout?.forward(y, batch: batch, perItem: perItemRows * params.fc2.outFeatures, context)
        return y
    }

    /// a = act(hidden); with a backend that reads operands rounded by the caller (bf16), also a
    /// rounded to bf16 — chunk by chunk, each rounded while it is still in cache, instead of by
    /// fc2's products from memory (a is the widest activation, [rows, 4W]). Returns the
    /// rounded copy (the store's scratch), or nil.
    private func activate(_ p: ParameterStore, _ a: UnsafeMutablePointer<Float>, _ hidden: UnsafePointer<Float>,
                          count n: Int) -> UnsafePointer<UInt16>? {
        func apply(_ start: Int, _ count: Int) {
            switch activation {
            case .gelu: Elementwise.geluForward(a + start, hidden + start, count: count)
            case .quickGelu: Elementwise.quickGeluForward(a + start, hidden + start, count: count)
            }
        }
        guard let rounded = p.scratch.roundedOperand(.feedForwardActivationRounded, n) else { apply(0, n); return nil }
        let chunk = 8192   // 32 KB of a: rounded from L1
        for start in stride(from: 0, to: n, by: chunk) {
            let count = min(chunk, n - start)
            apply(start, count)
            Matmul.roundToBFloat16(a + start, count: count, into: rounded + start)
        }
        return UnsafePointer(rounded)
    }

    /// `--recompute blocks`: hands fc1's output to `pool`.
    func releaseBuffers(to pool: BufferPool) { fc1.releaseOutput(to: pool) }

    /// dx += ∂L/∂x.
    public func backward(_ p: ParameterStore, _ dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        let width = params.fc2.outFeatures, hiddenWidth = params.fc1.outFeatures
        let dOut = outputDropout?.backward(dy, scratch: p.scratch.buffer(.feedForwardOutput), count: rows * width) ?? dy
        let n = rows * hiddenWidth
        let hidden = UnsafePointer(fc1.output.pointer)
        let a = p.scratch(.feedForwardActivation, n)   // [rows, 4W] the forward's activation, again
        let rounded = activate(p, a, hidden, count: n)
        let da = p.scratch(.feedForwardActivated, n)   // [rows, 4W] written by fc2's input gradient
        fc2.backward(p, dOut, dx: da, accumulateInput: false, input: a, inputRounded: rounded)
        let dh = p.scratch(.feedForwardHidden, n)      // [rows, 4W] written by the activation's backward
        switch activation {
        case .gelu: Elementwise.geluBackward(dh, da, hidden, output: a, count: n)
        case .quickGelu: Elementwise.quickGeluBackward(dh, da, hidden, output: a, count: n)
        }
        fc1.backward(p, dh, dx: dx)
    }
}
