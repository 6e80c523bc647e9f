/// Parameters of attention `name`: Linear `name.q`, `name.k`, `name.v`, `name.o`, all [W, W] with bias.
public struct AttentionParams: Sendable {
    public let q: LinearParams
    public let k: LinearParams
    public let v: LinearParams
    public let o: LinearParams
    public let width: Int
    public let heads: Int

    public static func declare(_ layout: ParameterLayout, _ name: String, width: Int, heads: Int) -> AttentionParams {
        precondition(width % heads == 0, "\(name): width \(width) does not split into \(heads) heads")
        return AttentionParams(q: .declare(layout, name + ".q", in: width, out: width),
                               k: .declare(layout, name + ".k", in: width, out: width),
                               v: .declare(layout, name + ".v", in: width, out: width),
                               o: .declare(layout, name + ".o", in: width, out: width),
                               width: width, heads: heads)
    }
}

/// Additive key mask: 0 for a real key, this for a padding key (MODEL_SPEC.md: -1e9 is acceptable).
public let paddingMaskValue: Float = -1e9

/// Multi-head attention for self- and cross-attention with a key-padding mask.
///
/// Head h uses features [h·W/H, (h+1)·W/H) of q, k and v; its products run on strided
/// views (leading dimension W), so heads are never copied out — through `HeadMatmul`
/// (faster than sgemm on these small shapes; it hands the shapes where sgemm is faster to sgemm).
/// With a backend that must see every head product (`--matmul bf16`) the heads of one sample
/// go to it together, one batched call per product (`Matmul.batched`). With dropout
/// names given, dropout sits on the attention probabilities and on the output projection
/// (text encoder and fusion only).
///
/// The probabilities are not kept for backward (issue 28: [B, H, Lq, Lk] per layer was a
/// fifth of a base step's activations): backward recomputes each head's from the saved q and
/// k with the same kernels, so the gradients are bitwise those of kept probabilities, at the
/// cost of one more scores product per head (as PyTorch's fused attention does).
public final class MultiHeadAttention {
    public let params: AttentionParams
    let qProj: Linear, kProj: Linear, vProj: Linear, oProj: Linear
    let context = FloatBuffer()        // [B, Lq, W] heads concatenated
    let packedHead = FloatBuffer()     // [hd, Lk] scratch for HeadMatmul: one head's Kᵀ or Vᵀ, or a 16-column strip
    let probsDropout: DropoutSite?
    let outputDropout: DropoutSite?
    /// The forward's key mask [B, Lk] (the caller keeps it alive until backward, as inputs).
    private var keyMask: UnsafePointer<Float>?
    private var batch = 0, queryLength = 0, keyLength = 0

    public init(_ params: AttentionParams, dropoutName: String? = nil) {
        self.params = params
        qProj = Linear(params.q); kProj = Linear(params.k); vProj = Linear(params.v); oProj = Linear(params.o)
        probsDropout = dropoutName.map { DropoutSite(name: $0 + ".probs") }
        outputDropout = dropoutName.map { DropoutSite(name: $0 + ".output") }
    }

    /// Head h of item b's probabilities softmax(scale · q_h k_hᵀ + mask) into `out` [Lq, Lk]
    /// — the one computation forward, backward and `probabilities()` share.
    @inline(__always)
    private func headProbabilities(_ out: UnsafeMutablePointer<Float>, b: Int, h: Int, q: UnsafePointer<Float>,
                                   k: UnsafePointer<Float>) {
        let W = params.width, hd = W / params.heads
        let (Lq, Lk) = (queryLength, keyLength)
        HeadMatmul.nt(m: Lq, n: Lk, k: hd, alpha: 1 / Float(hd).squareRoot(), q + b * Lq * W + h * hd, lda: W,
                      k + b * Lk * W + h * hd, ldb: W, out, ldc: Lk, packed: packedHead)
        Elementwise.softmaxRows(out, rows: Lq, width: Lk, additiveMask: keyMask.map { $0 + b * Lk })
    }

    /// All H heads of item b at once into `out` [H, Lq, Lk]: one batched scores product, then
    /// head by head (while the head's scores are in cache) the softmax (the key mask is the
    /// item's for every head), the dropout into `kept` (when given) and, when `rounded` is
    /// given, the kept probabilities rounded to bf16 for the product that reads them. For
    /// backends that must see every head product (bf16): one call per sample instead of one
    /// per head.
    private func itemProbabilities(_ out: UnsafeMutablePointer<Float>, kept: UnsafeMutablePointer<Float>?,
                                   rounded: UnsafeMutablePointer<UInt16>?, b: Int, q: UnsafePointer<Float>,
                                   k: UnsafePointer<Float>) {
        let W = params.width, H = params.heads, hd = W / H
        let (Lq, Lk) = (queryLength, keyLength), n = Lq * Lk
        Matmul.batched("nt heads", batch: H, transposeA: false, transposeB: true, m: Lq, n: Lk, k: hd,
                       alpha: 1 / Float(hd).squareRoot(), q + b * Lq * W, lda: W, strideA: hd,
                       k + b * Lk * W, ldb: W, strideB: hd, out, ldc: Lk, strideC: n)
        for h in 0..<H {
            let head = out + h * n
            Elementwise.softmaxRows(head, rows: Lq, width: Lk, additiveMask: keyMask.map { $0 + b * Lk })
            var used = UnsafePointer(head)
            if let kept {
                probsDropout!.apply(used, into: kept + h * n, offset: (b * H + h) * n, count: n)
                used = UnsafePointer(kept + h * n)
            }
            if let rounded { Matmul.roundToBFloat16(used, count: n, into: rounded + h * n) }
        }
    }

    /// Whether this thread's products go through the per-sample batched path: a backend that
    /// must see every head product (bf16), where `HeadMatmul`'s fp32 kernels do not apply.
    private var batchingHeads: Bool { !Matmul.headKernelsAllowed }

    /// queries [B, Lq, W], keysValues [B, Lk, W], keyMask [B, Lk] additive (nil: every key valid)
    /// → [B, Lq, W]. For self-attention pass the same pointer twice.
    @discardableResult
    public func forward(_ p: ParameterStore, queries: UnsafePointer<Float>, keysValues: UnsafePointer<Float>,
                        batch: Int, queryLength: Int, keyLength: Int, keyMask: UnsafePointer<Float>?,
                        _ ctx: ForwardContext) -> UnsafeMutablePointer<Float> {
        self.batch = batch; self.queryLength = queryLength; self.keyLength = keyLength; self.keyMask = keyMask
        let W = params.width, H = params.heads, hd = W / H
        let (Lq, Lk) = (queryLength, keyLength)
        // The three projections read the same input (self-attention; k and v in cross-attention):
        // converted once (bf16).
        let (q, k, v) = Matmul.sharingOperands {
            (qProj.forward(p, queries, rows: batch * Lq), kProj.forward(p, keysValues, rows: batch * Lk),
             vProj.forward(p, keysValues, rows: batch * Lk))
        }
        probsDropout?.record(perItem: H * Lq * Lk, ctx)
        let dropping = probsDropout?.active ?? false
        let c = context.ensure(batch * Lq * W)
        if batchingHeads {
            let P = p.scratch(.attentionHeadProbabilities, H * Lq * Lk)          // [H, Lq, Lk] one item's
            let kept = dropping ? p.scratch(.attentionHeadKept, H * Lq * Lk) : P  // [H, Lq, Lk] after dropout
            let rounded = p.scratch.roundedOperand(.attentionRounded, H * Lq * Lk)  // [H, Lq, Lk] kept, bf16
            let roundedOperand = rounded.map { UnsafePointer($0) }
            for b in 0..<batch {
                itemProbabilities(P, kept: dropping ? kept : nil, rounded: rounded, b: b, q: q, k: k)
                // C_h = P_h V_h for every head: [Lq, hd] at column h·hd of the item's context.
                Matmul.batched("nn heads", batch: H, transposeA: false, transposeB: false, m: Lq, n: hd, k: Lk, alpha: 1,
                               kept, lda: Lk, strideA: Lq * Lk, v + b * Lk * W, ldb: W, strideB: hd,
                               c + b * Lq * W, ldc: W, strideC: hd, aRounded: roundedOperand)
            }
        } else {
            let P = p.scratch(.attentionHeadProbabilities, Lq * Lk)                  // [Lq, Lk] one head's
            let kept = dropping ? p.scratch(.attentionHeadKept, Lq * Lk) : P          // [Lq, Lk] after dropout
            for b in 0..<batch {
                for h in 0..<H {
                    headProbabilities(P, b: b, h: h, q: q, k: k)
                    if dropping { probsDropout!.apply(P, into: kept, offset: (b * H + h) * Lq * Lk, count: Lq * Lk) }
                    HeadMatmul.nn(m: Lq, n: hd, k: Lk, kept, lda: Lk, v + b * Lk * W + h * hd, ldb: W,
                                  c + b * Lq * W + h * hd, ldc: W, packed: packedHead)
                }
            }
        }
        // The result is scratch: every caller adds it to its residual at once.
        let y = oProj.forward(p, c, rows: batch * Lq, into: p.scratch(.attentionResult, batch * Lq * W))
        outputDropout?.forward(y, batch: batch, perItem: Lq * W, ctx)
        return y
    }

    /// `--recompute blocks`: hands q, k, v and the context to `pool`.
    func releaseBuffers(to pool: BufferPool) {
        qProj.releaseOutput(to: pool); kProj.releaseOutput(to: pool); vProj.releaseOutput(to: pool)
        context.release(to: pool)
    }

    /// dQueries += ∂L/∂queries, dKeysValues += ∂L/∂keysValues (the same buffer for self-attention).
    public func backward(_ p: ParameterStore, _ dy: UnsafePointer<Float>, dQueries: UnsafeMutablePointer<Float>,
                         dKeysValues: UnsafeMutablePointer<Float>) {
        let W = params.width, H = params.heads, hd = W / H
        let (Lq, Lk) = (queryLength, keyLength)
        let scale = 1 / Float(hd).squareRoot()
        // Gradients inside attention live in the store's shared scratch.
        let scratch = p.scratch
        let dOut = outputDropout?.backward(dy, scratch: scratch.buffer(.attentionOutput), count: batch * Lq * W) ?? dy
        let dc = scratch(.attentionContext, batch * Lq * W)   // [B, Lq, W]
        oProj.backward(p, dOut, dx: dc, accumulateInput: false)

        let dropping = probsDropout?.active ?? false
        let q = qProj.output.pointer, k = kProj.output.pointer, v = vProj.output.pointer
        // Each head's columns of dQ, dK, dV are written once (beta 0): no zeroing pass.
        let dq = scratch(.attentionQ, batch * Lq * W), dk = scratch(.attentionK, batch * Lk * W)   // [B, Lq|Lk, W]
        let dv = scratch(.attentionV, batch * Lk * W)
        if batchingHeads {
            // The per-head loop below, with every head of an item in one batched call per product.
            let n = H * Lq * Lk
            let dS = scratch(.attentionScores, n), dP = scratch(.attentionProbs, n)        // [H, Lq, Lk] per item
            let P = scratch(.attentionHeadProbabilities, n)                                // [H, Lq, Lk] recomputed
            let kept = dropping ? scratch(.attentionHeadKept, n) : P
            // [H, Lq, Lk] bf16: kept (until dV), then dS — both rounded head by head in cache.
            let rounded = p.scratch.roundedOperand(.attentionRounded, n)
            let roundedOperand = rounded.map { UnsafePointer($0) }
            // One operand-sharing scope per item: q, k and dC are each read by two products
            // (converted once, bf16; kept and dS come rounded from above). Per item, not
            // around the loop: P, kept and dS are rewritten by the next item.
            for b in 0..<batch { Matmul.sharingOperands {
                let (qItem, kItem, vItem) = (q + b * Lq * W, k + b * Lk * W, v + b * Lk * W)
                let (dcItem, dqItem, dkItem, dvItem) = (dc + b * Lq * W, dq + b * Lq * W, dk + b * Lk * W, dv + b * Lk * W)
                itemProbabilities(P, kept: dropping ? kept : nil, rounded: rounded, b: b, q: q, k: k)
                // dP_h = dC_h V_hᵀ ; dV_h = P_hᵀ dC_h
                Matmul.batched("nt heads", batch: H, transposeA: false, transposeB: true, m: Lq, n: Lk, k: hd, alpha: 1,
                               dcItem, lda: W, strideA: hd, vItem, ldb: W, strideB: hd, dP, ldc: Lk, strideC: Lq * Lk)
                Matmul.batched("tn heads", batch: H, transposeA: true, transposeB: false, m: Lk, n: hd, k: Lq, alpha: 1,
                               kept, lda: Lk, strideA: Lq * Lk, dcItem, ldb: W, strideB: hd, dvItem, ldc: W, strideC: hd,
                               aRounded: roundedOperand)
                // Head by head while in cache: the dropout's and the softmax's backward, dS rounded.
                let headSize = Lq * Lk
                for h in 0..<H {
                    let offset = h * headSize
                    probsDropout?.backward(dP + offset, count: headSize, offset: b * n + offset)
                    Elementwise.softmaxBackwardRows(dS + offset, dP + offset, P + offset, rows: Lq, width: Lk)
                    if let rounded { Matmul.roundToBFloat16(dS + offset, count: headSize, into: rounded + offset) }
                }
                // dQ_h = scale dS_h K_h ; dK_h = scale dS_hᵀ Q_h
                Matmul.batched("nn heads", batch: H, transposeA: false, transposeB: false, m: Lq, n: hd, k: Lk,
                               alpha: scale, dS, lda: Lk, strideA: Lq * Lk, kItem, ldb: W, strideB: hd,
                               dqItem, ldc: W, strideC: hd, aRounded: roundedOperand)
                Matmul.batched("tn heads", batch: H, transposeA: true, transposeB: false, m: Lk, n: hd, k: Lq,
                               alpha: scale, dS, lda: Lk, strideA: Lq * Lk, qItem, ldb: W, strideB: hd,
                               dkItem, ldc: W, strideC: hd, aRounded: roundedOperand)
            } }
        } else {
            let dS = scratch(.attentionScores, Lq * Lk), dP = scratch(.attentionProbs, Lq * Lk)    // [Lq, Lk] per (b, h)
            let P = scratch(.attentionHeadProbabilities, Lq * Lk)                                 // [Lq, Lk] recomputed
            let kept = dropping ? scratch(.attentionHeadKept, Lq * Lk) : P
            for b in 0..<batch {
                for h in 0..<H {
                    let headOffset = (b * H + h) * Lq * Lk
                    let dcHead = dc + b * Lq * W + h * hd
                    let vHead = v + b * Lk * W + h * hd
                    let (qHead, kHead) = (q + b * Lq * W + h * hd, k + b * Lk * W + h * hd)
                    let (dqHead, dkHead, dvHead) = (dq + b * Lq * W + h * hd, dk + b * Lk * W + h * hd, dv + b * Lk * W + h * hd)
                    // The forward's probabilities of this head, and what dropout kept of them.
                    headProbabilities(P, b: b, h: h, q: q, k: k)
                    if dropping { probsDropout!.apply(P, into: kept, offset: headOffset, count: Lq * Lk) }
                    // dP = dC_h V_h^T ; dV_h = P^T dC_h (P after dropout: that is what multiplied V)
                    HeadMatmul.nt(m: Lq, n: Lk, k: hd, alpha: 1, dcHead, lda: W, vHead, ldb: W, dP, ldc: Lk, packed: packedHead)
                    HeadMatmul.tn(m: Lk, n: hd, k: Lq, kept, lda: Lk, dcHead, ldb: W, dvHead, ldc: W, packed: packedHead)
                    probsDropout?.backward(dP, count: Lq * Lk, offset: headOffset)
                    Elementwise.softmaxBackwardRows(dS, dP, P, rows: Lq, width: Lk)
                    // S = scale Q_h K_h^T: dQ_h = scale dS K_h ; dK_h = scale dS^T Q_h
                    HeadMatmul.nn(m: Lq, n: hd, k: Lk, alpha: scale, dS, lda: Lk, kHead, ldb: W, dqHead, ldc: W,
                                  packed: packedHead)
                    HeadMatmul.tn(m: Lk, n: hd, k: Lq, alpha: scale, dS, lda: Lk, qHead, ldb: W, dkHead, ldc: W,
                                  packed: packedHead)
                }
            }
        }
        // The three weight gradients read the same input (as the forward's projections).
        Matmul.sharingOperands {
            qProj.backward(p, dq, dx: dQueries)
            kProj.backward(p, dk, dx: dKeysValues)
            vProj.backward(p, dv, dx: dKeysValues)
        }
    }

    /// Attention probabilities of the last forward, [B, H, Lq, Lk] (before dropout),
    /// recomputed (for tests and inspection).
    public func probabilities() -> [Float] {
        let H = params.heads, (Lq, Lk) = (queryLength, keyLength)
        var out = [Float](repeating: 0, count: batch * H * Lq * Lk)
        out.withUnsafeMutableBufferPointer { o in
            for b in 0..<batch {
                for h in 0..<H {
                    headProbabilities(o.baseAddress! + (b * H + h) * Lq * Lk, b: b, h: h, q: qProj.output.pointer,
                                      k: kProj.output.pointer)
                }
            }
        }
        return out
    }
}
