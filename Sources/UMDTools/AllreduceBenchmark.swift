import Collective
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `umd-mpirun bench allreduce`: Float32 sum allreduce latency and bandwidth per message
/// size, in the style of osu_allreduce and nccl-tests: algbw = bytes / time, busbw = algbw ·
/// 2(n−1)/n (the traffic each link carries in a ring allreduce). Baseline: memcpy of the same
/// bytes on the same rank, in the same run.
public enum AllreduceBenchmark {
    public static func run(minBytes: Int, maxBytes: Int, bytesPerSize: Int, outOfPlace: Bool, world: Communicator) throws {
        func printOnRoot(_ text: String) {
            if world.rank == 0 { print(text); fflush(nil) }
        }
        let n = world.size
        let maxCount = maxBytes / 4
        let send = UnsafeMutableBufferPointer<Float>.allocate(capacity: maxCount)
        let recv = UnsafeMutableBufferPointer<Float>.allocate(capacity: maxCount)
        defer { send.deallocate(); recv.deallocate() }
        send.initialize(repeating: 1)
        recv.initialize(repeating: 0)

        printOnRoot("# umd allreduce benchmark: \(n) ranks, float32 sum, \(outOfPlace ? "out of place" : "in place")")
        printOnRoot("# time = slowest rank's mean per call; busbw = algbw * 2(n-1)/n; memcpy = same bytes copied on rank 0")
        let columns = [("size(B)", 12), ("count", 10), ("iters", 7), ("time(us)", 12), ("algbw(GB/s)", 12),
                       ("busbw(GB/s)", 12), ("memcpy(GB/s)", 13), ("bus/mcpy", 9)]
        printOnRoot("#" + columns.map { name, width in
            String(repeating: " ", count: max(0, width - name.count)) + name }.joined(separator: " ").dropFirst())
        var bytes = minBytes
        while bytes <= maxBytes {
            let count = bytes / 4
            let iterations = max(5, min(2000, bytesPerSize / bytes))
            let warmup = max(2, iterations / 10)
            let sendSlice = UnsafeMutableBufferPointer(rebasing: send[0..<count])
            let recvSlice = UnsafeMutableBufferPointer(rebasing: recv[0..<count])
            func once() throws {
                if outOfPlace {
                    try world.allreduce(UnsafeBufferPointer(sendSlice), into: recvSlice, op: .sum)
                } else {
                    try world.allreduce(recvSlice, op: .sum)
                }
            }
            for _ in 0..<warmup { try once() }
            try world.barrier()
            let start = Communicator.wallTime()
            for _ in 0..<iterations { try once() }
            let mine = (Communicator.wallTime() - start) / Double(iterations)
            let seconds = try world.allreduce(mine, op: .max)

            // Baseline: copy the same bytes locally, same iteration count.
            let copyStart = Communicator.wallTime()
            for _ in 0..<iterations {
                memcpy(recvSlice.baseAddress!, sendSlice.baseAddress!, bytes)
            }
            let copySeconds = (Communicator.wallTime() - copyStart) / Double(iterations)
            // Keep values bounded: in-place sums grow by n each call.
            recvSlice.update(repeating: 0)

            let algbw = Double(bytes) / seconds / 1e9
            let busbw = algbw * 2 * Double(n - 1) / Double(n)
            let copybw = Double(bytes) / copySeconds / 1e9
            printOnRoot(String(format: "%12d %10d %7d %12.2f %12.3f %12.3f %13.3f %9.3f",
                                      bytes, count, iterations, seconds * 1e6, algbw, busbw, copybw, busbw / copybw))
            bytes *= 2
        }
    }
}
