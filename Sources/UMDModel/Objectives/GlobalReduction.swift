/// How a step turns local sums into global ones (MODEL_SPEC.md section 10a).
///
/// UMDModel knows nothing of MPI: the distributed runner passes a `sum` that allreduces
/// across ranks; a single process uses `.local`. Each rank's loss term is
/// (local sum) / (global count), so the SUM of the ranks' gradients — what the gradient
/// synchronizer computes, and the only place ranks are combined — is exactly the gradient
/// of the global-batch loss. No factor of R appears anywhere.
public struct GlobalReduction {
    /// Element-wise sum of the vector over all ranks (identity for one process).
    public var sum: ([Double]) -> [Double]

    public init(sum: @escaping ([Double]) -> [Double]) {
        self.sum = sum
    }

    public static var local: GlobalReduction { GlobalReduction(sum: { $0 }) }
}
