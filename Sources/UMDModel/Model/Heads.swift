#if canImport(Glibc)
import Glibc
#endif

/// MAE's fixed 2-D sin-cos position table [1+N, Dd] with a zero CLS row
/// (MODEL_SPEC.md section 2): row n+1 = [sin(c w)] ++ [cos(c w)] ++ [sin(r w)] ++ [cos(r w)],
/// Q = Dd/4, w_k = 10000^(-k/Q), patch n = r·grid + c.
public func sinCosPositionTable(grid: Int, width: Int) -> [Float] {
    precondition(width % 4 == 0, "the sin-cos table needs a width divisible by 4")
    let Q = width / 4
    var table = [Float](repeating: 0, count: (1 + grid * grid) * width)
    for r in 0..<grid {
        for c in 0..<grid {
            let row = (1 + r * grid + c) * width
            for k in 0..<Q {
                let w = pow(10000.0, -Double(k) / Double(Q))
                table[row + k] = Float(sin(Double(c) * w))
                table[row + Q + k] = Float(cos(Double(c) * w))
                table[row + 2 * Q + k] = Float(sin(Double(r) * w))
                table[row + 3 * Q + k] = Float(cos(Double(r) * w))
            }
        }
    }
    return table
}

/// MIM decoder (MAE style): embeds the student's 1+K image tokens, puts mask tokens at the
/// N−K dropped patches, unshuffles, adds the sin-cos table, runs pre-LN blocks, `mim.ln`
/// and `mim.out`.
public final class MIMDecoder {
    let params: MIMParams
    let width: Int                      // Dd
    let embed: Linear
    let blocks: [PreLNBlock]
    let ln: LayerNorm
    let out: Linear
    var positions: [Float] = []         // [1+N, Dd]
    var positionGrid = 0
    let full = FloatBuffer()            // [B, 1+N, Dd]
    let dFull = FloatBuffer()           // [B, 1+N, Dd]
    let gradA = FloatBuffer(), gradB = FloatBuffer()   // [B, 1+N, Dd]
    let dEmbedded = FloatBuffer()       // [B, 1+K, Dd]
    let isKept = FloatBuffer()          // [B, N] 1 where the patch was kept (as Float flags)
    private var keep: UnsafePointer<Int32>?
    private var batch = 0, patchCount = 0, kept = 0
    /// `--recompute blocks` (see `VisionEncoder.recompute`).
    public var recompute = false
    let pool = BufferPool()

    public init(_ params: MIMParams, width: Int) {
        self.params = params
        self.width = width
        embed = Linear(params.embed)
        blocks = params.blocks.map(PreLNBlock.init)
        ln = LayerNorm(params.ln)
        out = Linear(params.out)
    }

    /// zi [B, 1+K, D], keep [B, K] → predictions [B, 1+N, C·P·P] (row 0 of each item is CLS).
    @discardableResult
    public func forward(_ p: ParameterStore, _ zi: UnsafePointer<Float>, keep: UnsafePointer<Int32>, batch: Int,
                        keptCount K: Int, grid: Int) -> UnsafeMutablePointer<Float> {
        let N = grid * grid, Dd = width
        self.keep = keep; self.batch = batch; self.patchCount = N; self.kept = K
        if positionGrid != grid {
            positions = sinCosPositionTable(grid: grid, width: Dd)
            positionGrid = grid
        }
        let e = embed.forward(p, zi, rows: batch * (1 + K))
        let x = full.ensure(batch * (1 + N) * Dd)
        let flags = isKept.zeroed(batch * N)
        let mask = p.value(params.maskToken)
        for b in 0..<batch {
            let item = x + b * (1 + N) * Dd
            item.update(from: e + b * (1 + K) * Dd, count: Dd)
            for j in 0..<K {
                let n = Int(keep[b * K + j])
                flags[b * N + n] = 1
                (item + (1 + n) * Dd).update(from: e + (b * (1 + K) + 1 + j) * Dd, count: Dd)
            }
            for n in 0..<N where flags[b * N + n] == 0 { (item + (1 + n) * Dd).update(from: mask, count: Dd) }
            positions.withUnsafeBufferPointer { Elementwise.accumulate(item, $0.baseAddress!, count: (1 + N) * Dd) }
        }
        var h = UnsafePointer(x)
        lendingPool(pool, if: recompute) {
            for block in blocks {
                h = UnsafePointer(block.forward(p, h, batch: batch, length: 1 + N))
                if recompute { block.releaseInternals(to: pool) }
            }
        }
        let normed = ln.forward(p, h, rows: batch * (1 + N))
        return out.forward(p, normed, rows: batch * (1 + N))
    }

    /// dPred [B, 1+N, C·P·P] → dZi (+=) [B, 1+K, D].
    public func backward(_ p: ParameterStore, _ dPred: UnsafePointer<Float>, dZi: UnsafeMutablePointer<Float>) {
        let N = patchCount, K = kept, Dd = width
        let n = batch * (1 + N) * Dd
        var current = gradA.zeroed(n)
        out.backward(p, dPred, dx: current)
        let afterLN = gradB.zeroed(n)
        ln.backward(p, current, dx: afterLN)
        current = afterLN
        for (i, block) in blocks.enumerated().reversed() {
            let next = (current == gradA.pointer ? gradB : gradA).zeroed(n)
            backwardRecomputing(recompute, in: pool,
                                forward: { _ = block.forward(p, i == 0 ? full.pointer : blocks[i - 1].output.pointer,
                                                             batch: batch, length: 1 + N) },
                                release: { block.releaseInternals(to: pool) }) { block.backward(p, current, dx: next) }
            current = next
        }
        let de = dEmbedded.zeroed(batch * (1 + K) * Dd)
        let dMask = p.grad(params.maskToken)
        let flags = isKept.pointer
        guard let keep else { return }
        for b in 0..<batch {
            let item = current + b * (1 + N) * Dd
            Elementwise.accumulate(de + b * (1 + K) * Dd, item, count: Dd)
            for j in 0..<K {
                let patch = Int(keep[b * K + j])
                Elementwise.accumulate(de + (b * (1 + K) + 1 + j) * Dd, item + (1 + patch) * Dd, count: Dd)
            }
            for patch in 0..<N where flags[b * N + patch] == 0 {
                Elementwise.accumulate(dMask, item + (1 + patch) * Dd, count: Dd)
            }
        }
        embed.backward(p, de, dx: dZi)
    }
}

/// MLM head: dense → GELU → mlm.ln → mlm.out (no bias) + mlm.bias, on selected rows only.
public final class MLMHead {
    let params: MLMParams
    let dense: Linear, ln: LayerNorm, out: Linear
    let activated = FloatBuffer(), dActivated = FloatBuffer(), dDense = FloatBuffer()   // [M, D]
    let dNormed = FloatBuffer()       // [M, D]
    let vocabularySize: Int
    private var rows = 0

    public init(_ params: MLMParams, vocabularySize: Int) {
        self.params = params
        self.vocabularySize = vocabularySize
        dense = Linear(params.dense); ln = LayerNorm(params.ln); out = Linear(params.out)
    }

    /// h [M, D] → logits [M, V].
    @discardableResult
    public func forward(_ p: ParameterStore, _ h: UnsafePointer<Float>, rows: Int) -> UnsafeMutablePointer<Float> {
        self.rows = rows
        let D = params.dense.outFeatures
        let d = dense.forward(p, h, rows: rows)
        let a = activated.ensure(rows * D)
        Elementwise.geluForward(a, d, count: rows * D)
        let normed = ln.forward(p, a, rows: rows)
        let logits = out.forward(p, normed, rows: rows)
        let bias = p.value(params.bias)
        for r in 0..<rows { Elementwise.accumulate(logits + r * vocabularySize, bias, count: vocabularySize) }
        return logits
    }

    /// dLogits [M, V] → dh (+=) [M, D].
    public func backward(_ p: ParameterStore, _ dLogits: UnsafePointer<Float>, dh: UnsafeMutablePointer<Float>) {
        let D = params.dense.outFeatures
        let dBias = p.grad(params.bias)
        for r in 0..<rows { Elementwise.accumulate(dBias, dLogits + r * vocabularySize, count: vocabularySize) }
        let dn = dNormed.zeroed(rows * D)
        out.backward(p, dLogits, dx: dn)
        let da = dActivated.zeroed(rows * D)
        ln.backward(p, dn, dx: da)
        let dd = dDense.ensure(rows * D)        // written by the GELU backward
        Elementwise.geluBackward(dd, da, dense.output.pointer, output: activated.pointer, count: rows * D)
        dense.backward(p, dd, dx: dh)
    }
}

/// Downstream classifier head: fc1 → head.ln → GELU → fc2 (MODEL_SPEC.md section 2).
public final class ClassifierHead {
    let fc1: Linear, ln: LayerNorm, fc2: Linear
    let activated = FloatBuffer(), dActivated = FloatBuffer(), dNormed = FloatBuffer(), dHidden = FloatBuffer()
    let width: Int
    private var rows = 0

    public init(_ params: TaskHeadParams) {
        guard let f1 = params.fc1, let l = params.ln, let f2 = params.fc2 else {
            preconditionFailure("a classifier head needs head.fc1, head.ln and head.fc2")
        }
        fc1 = Linear(f1); ln = LayerNorm(l); fc2 = Linear(f2)
        width = f1.outFeatures
    }

    /// cls [B, 2D] → logits [B, A].
    @discardableResult
    public func forward(_ p: ParameterStore, _ cls: UnsafePointer<Float>, rows: Int) -> UnsafeMutablePointer<Float> {
        self.rows = rows
        let h = fc1.forward(p, cls, rows: rows)
        let normed = ln.forward(p, h, rows: rows)
        let a = activated.ensure(rows * width)
        Elementwise.geluForward(a, normed, count: rows * width)
        return fc2.forward(p, a, rows: rows)
    }

    public func backward(_ p: ParameterStore, _ dLogits: UnsafePointer<Float>, dCls: UnsafeMutablePointer<Float>) {
        let da = dActivated.ensure(rows * width)
        fc2.backward(p, dLogits, dx: da, accumulateInput: false)
        let dn = dNormed.ensure(rows * width)   // written by the GELU backward
        Elementwise.geluBackward(dn, da, ln.output.pointer, output: activated.pointer, count: rows * width)
        let dh = dHidden.zeroed(rows * width)
        ln.backward(p, dn, dx: dh)
        fc1.backward(p, dh, dx: dCls)
    }
}
