import Foundation
import UMDModel

/// OpenBLAS threads per rank: OPENBLAS_NUM_THREADS when set, else this node's cores divided
/// by the ranks on this node (OpenMPI's OMPI_COMM_WORLD_LOCAL_SIZE), so ranks sharing a node
/// do not oversubscribe its cores by default.
public enum ThreadBudget {
    @discardableResult
    public static func configure() -> (threads: Int, fromEnvironment: Bool) {
        let environment = ProcessInfo.processInfo.environment
        // oneDNN (OpenMP) gets the same threads per rank as OpenBLAS.
        if let text = environment["OPENBLAS_NUM_THREADS"], let n = Int(text), n > 0 {
            OneDNNBackend.setThreadCount(n)
            return (n, true)
        }
        let local = Int(environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? 1
        let threads = max(1, ProcessInfo.processInfo.activeProcessorCount / max(local, 1))
        BLAS.setThreadCount(threads)
        OneDNNBackend.setThreadCount(threads)
        return (threads, false)
    }
}
