import COpenBLAS

/// Model-side facts the rest of umd needs before the kernels issue lands.
public enum BLAS {
    /// Sets the number of OpenBLAS threads (umd uses cores per node / ranks per node).
    public static func setThreadCount(_ n: Int) { openblas_set_num_threads(Int32(n)) }
    /// The OpenBLAS thread count in force.
    public static var threadCount: Int { Int(openblas_get_num_threads()) }
}
