/// How a step turns local sums into global ones (MODEL_SPEC.md section 10a).
///
/// UMDModel knows nothing of MPI: the distributed runner passes a `sum` that allreduces
/// across ranks; a single process uses `.local`. Each rank's loss term is
/// (local sum) / (global count), so the SUM of the ranks' gradients — what the gradient
/// synchronizer computes, and the only place ranks are combined — is exactly the gradient
/// of the global-batch loss. No factor of R appears anywhere.
///
/// The counts losses are divided by go through `counts`: by default the same sum, but a
/// step that accumulates several micro-batches passes the counts of the whole step (all
/// micro-batches, all ranks), so each micro-batch's term is (its sum) / (the step's count)
/// and the accumulated gradient is exactly that of the K-times larger batch.
public struct GlobalReduction {
    /// Element-wise sum of the vector over all ranks (identity for one process).
    public var sum: ([Double]) -> [Double]
    /// The global counts of the step, given this micro-batch's local counts.
    public var counts: ([Double]) -> [Double]

    public init(sum: @escaping ([Double]) -> [Double], counts: (([Double]) -> [Double])? = nil) {
        self.sum = sum
        self.counts = counts ?? sum
    }

    public static var local: GlobalReduction { GlobalReduction(sum: { $0 }) }
}
