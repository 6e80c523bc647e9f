/// Parameters of a LayerNorm `name`: `name.weight` (init 1) and `name.bias` (init 0), [width].
public struct LayerNormParams: Sendable {
    public let weight: ParameterID
    public let bias: ParameterID
    public let width: Int

    public static func declare(_ layout: ParameterLayout, _ name: String, width: Int) -> LayerNormParams {
        LayerNormParams(
            weight: layout.declare(name + ".weight", shape: [width], initializer: .ones, role: .layerNormWeight),
            bias: layout.declare(name + ".bias", shape: [width], initializer: .zeros, role: .layerNormBias),
            width: width)
    }
}

/// LayerNorm over the last dimension, eps 1e-5 (MODEL_SPEC.md section 1).
public final class LayerNorm {
    public let params: LayerNormParams
    public let output = FloatBuffer()   // [rows, width]
    let mean = FloatBuffer()            // [rows]
    let rstd = FloatBuffer()            // [rows]
    private var input: UnsafePointer<Float>?
    private var rows = 0

    public init(_ params: LayerNormParams) { self.params = params }

    @discardableResult
    public func forward(_ p: ParameterStore, _ x: UnsafePointer<Float>, rows: Int) -> UnsafeMutablePointer<Float> {
        input = x
        self.rows = rows
        let y = output.ensure(rows * params.width)
        Elementwise.layerNormForward(y, mean: mean.ensure(rows), rstd: rstd.ensure(rows), x,
                                     weight: p.value(params.weight), bias: p.value(params.bias),
                                     rows: rows, width: params.width)
        return y
    }

    /// `--recompute blocks`: hands the buffers to `pool` (the output too unless `keepOutput`:
    /// a post-LN layer's last norm is its output, the next layer's input).
    func releaseBuffers(to pool: BufferPool, keepOutput: Bool = false) {
        if !keepOutput { output.release(to: pool) }
        mean.release(to: pool); rstd.release(to: pool)
    }

    /// dx += ∂L/∂x; parameter gradients accumulate into the store.
    public func backward(_ p: ParameterStore, _ dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        guard let input else { preconditionFailure("LayerNorm.backward before forward") }
        Elementwise.layerNormBackward(dx, dWeight: p.grad(params.weight), dBias: p.grad(params.bias), dy, input,
                                      weight: p.value(params.weight), mean: mean.pointer, rstd: rstd.pointer,
                                      rows: rows, width: params.width)
    }
}
