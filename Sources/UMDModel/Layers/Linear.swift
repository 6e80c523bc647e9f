/// Parameters of a Linear layer `name`: `name.weight` [out, in] and `name.bias` [out].
public struct LinearParams: Sendable {
    public let weight: ParameterID
    public let bias: ParameterID?
    public let inFeatures: Int
    public let outFeatures: Int

    public static func declare(_ layout: ParameterLayout, _ name: String, in inFeatures: Int, out outFeatures: Int,
                               bias: Bool = true, std: Float = 0.02) -> LinearParams {
        let w = layout.declare(name + ".weight", shape: [outFeatures, inFeatures], initializer: .normal(std: std),
                               role: .weight)
        let b = bias ? layout.declare(name + ".bias", shape: [outFeatures], initializer: .zeros, role: .bias) : nil
        return LinearParams(weight: w, bias: b, inFeatures: inFeatures, outFeatures: outFeatures)
    }
}

/// y = x W^T + b over `rows` rows. Saves a pointer to its input for backward: the caller
/// keeps the input alive and unchanged until backward has run.
public final class Linear {
    public let params: LinearParams
    public let output = FloatBuffer()              // [rows, out]
    private var input: UnsafePointer<Float>?
    private(set) var rows = 0

    public init(_ params: LinearParams) { self.params = params }

    @discardableResult
    public func forward(_ p: ParameterStore, _ x: UnsafePointer<Float>, rows: Int) -> UnsafeMutablePointer<Float> {
        forward(p, x, rows: rows, into: output.ensure(rows * params.outFeatures))
    }

    /// The product into `y` [rows, out] instead of the layer's own output buffer: for results
    /// the caller consumes at once (a residual sum), which backward does not need.
    /// `xRounded`: x rounded to bf16 by the caller (`MatmulProblem.aRounded`), or nil.
    @discardableResult
    public func forward(_ p: ParameterStore, _ x: UnsafePointer<Float>, rows: Int,
                        into y: UnsafeMutablePointer<Float>, xRounded: UnsafePointer<UInt16>? = nil)
        -> UnsafeMutablePointer<Float> {
        input = x
        self.rows = rows
        // A store with gradients is a student's: its weights come back in backward's products.
        Matmul.linearForward(y, x, p.value(params.weight), params.bias.map { UnsafePointer(p.value($0)) },
                             rows: rows, inFeatures: params.inFeatures, outFeatures: params.outFeatures,
                             reusedWeight: p.hasGradients, xRounded: xRounded)
        return y
    }

    /// `--recompute blocks`: hands the output buffer to `pool`.
    func releaseOutput(to pool: BufferPool) { output.release(to: pool) }

    /// Accumulates dW, db into the store's gradients and dx (+=) when given; with
    /// `accumulateInput` false dx is written (=), so the caller need not zero it first.
    /// `input`: the forward's input when the caller recomputed it (its own buffer was scratch),
    /// `inputRounded` the same rounded to bf16 by the caller (`MatmulProblem.bRounded`).
    public func backward(_ p: ParameterStore, _ dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?,
                         accumulateInput: Bool = true, input recomputed: UnsafePointer<Float>? = nil,
                         inputRounded: UnsafePointer<UInt16>? = nil) {
        guard let input = recomputed ?? input else { preconditionFailure("Linear.backward before forward") }
        let dWeight = p.gradientForOverwrite(params.weight)
        // dy is read by both products: converted once (bf16).
        Matmul.sharingOperands {
            Matmul.linearParameterGradients(dWeight.pointer, accumulate: !dWeight.overwrite,
                                            params.bias.map { p.grad($0) }, dy, input, rows: rows,
                                            inFeatures: params.inFeatures, outFeatures: params.outFeatures,
                                            xRounded: inputRounded)
            if let dx {
                Matmul.linearInputGradient(dx, dy, p.value(params.weight),
                                           rows: rows, inFeatures: params.inFeatures, outFeatures: params.outFeatures,
                                           accumulate: accumulateInput)
            }
        }
    }
}
