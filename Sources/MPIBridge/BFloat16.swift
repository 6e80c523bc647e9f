import CMPI
import Foundation
import UMDCore

/// The MPI reduction for bf16 sums: each pair is added in Float and rounded back. Created
/// once per process (after MPI_Init), on first use.
// nonisolated(unsafe): an MPI handle, written once by the lazy initialiser (thread-safe) and only read.
nonisolated(unsafe) private let bfloat16SumOp: MPI_Op? = {
    var op: MPI_Op? = nil
    let code = MPI_Op_create({ input, inout_, length, _ in
        guard let input, let inout_, let length else { return }
        let a = input.assumingMemoryBound(to: UInt16.self), b = inout_.assumingMemoryBound(to: UInt16.self)
        for i in 0..<Int(length.pointee) {
            b[i] = BFloat16.pack(BFloat16.unpack(a[i]) + BFloat16.unpack(b[i]))
        }
    }, 1, &op)
    return code == MPI_SUCCESS ? op : nil
}()

extension Communicator {
    /// In-place sum over all ranks of bf16 values (each addition rounded to bf16). Buffers
    /// longer than MPI's 32-bit count are reduced in chunks.
    public func allreduceBFloat16Sum(_ buffer: UnsafeMutableBufferPointer<UInt16>) throws {
        guard let op = bfloat16SumOp else {
            throw MPIError.rankMismatch(call: "MPI_Op_create(bf16 sum)", rank: rank, reason: "MPI could not create the operation")
        }
        var offset = 0
        repeat {
            let n = min(buffer.count - offset, Int(Int32.max))
            try check(MPI_Allreduce(umd_mpi_in_place(), buffer.baseAddress.map { $0 + offset }, Int32(n), umd_mpi_uint16(), op,
                                    handle),
                      "MPI_Allreduce(in place, count: \(n), bf16, sum)", rank: rank)
            offset += n
        } while offset < buffer.count
    }
}
