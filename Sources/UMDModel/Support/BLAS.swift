import COpenBLAS

/// OpenBLAS thread control (umd runs cores / ranks-per-node threads per rank).
public enum BLAS {
    public static func setThreadCount(_ n: Int) { openblas_set_num_threads(Int32(n)) }
    public static var threadCount: Int { Int(openblas_get_num_threads()) }
}

extension BLAS {
    /// GFLOP/s of one `n`×`n`×`n` sgemm at the current thread count (best of 3): the
    /// same-run baseline the benchmarks print their ratios against.
    public static func sgemmRate(size n: Int = 2048) -> Double {
        let a = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
        let b = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
        let c = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        for i in 0..<(n * n) { a[i] = Float(i % 7) * 0.1; b[i] = Float(i % 5) * 0.1; c[i] = 0 }
        var best = Double.infinity
        for _ in 0..<3 {
            let start = KernelProfile.now()
            Matmul.nt(m: n, n: n, k: n, a, lda: n, b, ldb: n, c, ldc: n, accumulate: false)
            best = min(best, KernelProfile.now() - start)
        }
        return 2 * Double(n) * Double(n) * Double(n) / best / 1e9
    }
}
