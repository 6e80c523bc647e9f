import COpenBLAS

/// OpenBLAS thread control (umd runs cores / ranks-per-node threads per rank).
public enum BLAS {
    public static func setThreadCount(_ n: Int) { openblas_set_num_threads(Int32(n)) }
    public static var threadCount: Int { Int(openblas_get_num_threads()) }
}
