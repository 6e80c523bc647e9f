/// Buffers a layer needs only while one of its own calls runs (issue 28): the gradients at
/// its inside during backward — dQ, dK, dV, the FFN's hidden gradients, the residual sums'
/// gradients — and one attention head's probabilities, which attention recomputes in
/// backward instead of keeping. Every layer of a model used to own its set, so a model of
/// 40 layers, run in two passes, kept 80 sets although layers run one at a time; now the
/// layers of one parameter store share one set per role (`ParameterStore.scratch`), sized
/// for the largest layer.
///
/// Safe because a store runs one step at a time (its gradients accumulate in place) and no
/// role is live across two layers: a layer takes its buffers when its forward or backward
/// starts and is done with them when it returns; a layer that calls another (a block its
/// attention and FFN) uses roles of its own, different from the callee's.
public final class LayerScratch: @unchecked Sendable {
    public enum Role: Int, CaseIterable {
        // PreLNBlock
        case blockResidual, blockNormed
        // PostLNLayer
        case postSum1, postSum2, postMiddle
        // CoAttentionLayer
        case coSum, coAfterCross, coAfterSelf
        // MultiHeadAttention (forward and backward: one head's probabilities, before and after dropout)
        case attentionHeadProbabilities, attentionHeadKept
        /// bf16 only: an item's kept probabilities (forward; backward until dV) and then its
        /// score gradients, rounded head by head while in cache — [H, Lq, Lk] bfloat16.
        case attentionRounded
        case attentionContext, attentionQ, attentionK, attentionV, attentionScores, attentionProbs, attentionOutput
        /// The output projection's result in forward (the caller adds it to its residual at once).
        case attentionResult
        // FeedForward (forward: the activation, recomputed in backward, and fc2's result)
        case feedForwardActivation, feedForwardResult
        /// bf16 only: the activation rounded for fc2's products, [rows, 4W] bfloat16.
        case feedForwardActivationRounded
        case feedForwardActivated, feedForwardHidden, feedForwardOutput
    }

    private let buffers = Role.allCases.map { _ in FloatBuffer() }

    public init() {}

    /// The role's buffer with room for `count` floats (contents undefined).
    @inline(__always)
    public func callAsFunction(_ role: Role, _ count: Int) -> UnsafeMutablePointer<Float> {
        buffers[role.rawValue].ensure(count)
    }

    /// The role's buffer (for layers that hand the buffer itself on, e.g. to dropout).
    public func buffer(_ role: Role) -> FloatBuffer { buffers[role.rawValue] }

    /// The role's buffer as room for `count` bfloat16 values, when the thread's backend reads
    /// operands rounded by their producer (`MatmulBackend.takesRoundedOperands`, bf16); nil
    /// otherwise (the producer then rounds nothing).
    public func roundedOperand(_ role: Role, _ count: Int) -> UnsafeMutablePointer<UInt16>? {
        guard Matmul.current.takesRoundedOperands else { return nil }
        return UnsafeMutableRawPointer(buffers[role.rawValue].ensure((count + 1) / 2)).assumingMemoryBound(to: UInt16.self)
    }

    /// The role's buffer with `count` zeros.
    public func zeroed(_ role: Role, _ count: Int) -> UnsafeMutablePointer<Float> {
        buffers[role.rawValue].zeroed(count)
    }
}

/// Runs `body` (blocks' forward or backward under `--recompute blocks`) with `pool` lending
/// to every buffer that grows in it; just `body` when `recompute` is off.
@inline(__always)
func lendingPool<T>(_ pool: BufferPool, if recompute: Bool, _ body: () -> T) -> T {
    recompute ? pool.lend(body) : body()
}

/// One block's backward under `--recompute blocks`: its forward again first (taking its
/// buffers from `pool`), then `backward`, then its inside back to `pool` for the next block;
/// just `backward` when `recompute` is off.
@inline(__always)
func backwardRecomputing(_ recompute: Bool, in pool: BufferPool, forward: () -> Void, release: () -> Void,
                         _ backward: () -> Void) {
    if recompute { pool.lend(forward) }
    backward()
    if recompute { release() }
}
