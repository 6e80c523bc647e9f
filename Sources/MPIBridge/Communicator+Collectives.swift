import CMPI
import Foundation

// Collectives over typed buffers, Data and Codable values.
// Pointer-based variants are for hot paths (no checks beyond MPI's own); the array and
// value variants check that ranks agree on sizes first, so a mismatch is a clear error
// on every rank instead of a truncation or a hang.

extension Communicator {
    // MARK: Broadcast

    /// Broadcasts `buffer` from `root` to every rank, in place. Every rank passes a buffer of
    /// the same count.
    public func broadcast<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws {
        let count = try mpiCount(buffer.count, "MPI_Bcast")
        try check(MPI_Bcast(buffer.baseAddress, count, T.mpiDatatype, Int32(truncatingIfNeeded: root), handle),
                  "MPI_Bcast(root: \(root), count: \(count), \(T.self))", rank: rank)
    }

    /// Broadcasts an array from `root`; other ranks' arrays are resized to match.
    public func broadcast<T: MPIScalar & Numeric>(_ array: inout [T], root: Int) throws {
        var count = Int64(array.count)
        try withUnsafeMutablePointer(to: &count) { try broadcast(UnsafeMutableBufferPointer(start: $0, count: 1), root: root) }
        if rank != root { array = [T](repeating: 0, count: Int(count)) }
        try array.withUnsafeMutableBufferPointer { try broadcast($0, root: root) }
    }

    /// Broadcasts bytes from `root`; `data` is ignored on the other ranks. Returns root's bytes.
    public func broadcast(_ data: Data?, root: Int) throws -> Data {
        var bytes: [UInt8] = rank == root ? [UInt8](data ?? Data()) : []
        try broadcast(&bytes, root: root)
        return Data(bytes)
    }

    /// Broadcasts a Codable value (JSON-encoded) from `root`; `value` is ignored elsewhere.
    public func broadcast<V: Codable>(_ value: V?, root: Int) throws -> V {
        var payload: Data? = nil
        if rank == root {
            guard let value else {
                throw MPIError.invalidArgument(call: "broadcast(Codable)", rank: rank, reason: "the root must pass a value")
            }
            payload = try JSONEncoder().encode(value)
        }
        let received = try broadcast(payload, root: root)
        do {
            return try JSONDecoder().decode(V.self, from: received)
        } catch {
            throw MPIError.decodingFailed(call: "broadcast(Codable)", rank: rank, reason: "\(error)")
        }
    }

    // MARK: Allreduce

    /// In-place allreduce of `buffer` on every rank. Buffers longer than MPI's 32-bit count
    /// are reduced in chunks.
    public func allreduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReductionOp) throws {
        var offset = 0
        repeat {
            let n = min(buffer.count - offset, Int(Int32.max))
            try check(MPI_Allreduce(umd_mpi_in_place(), buffer.baseAddress.map { $0 + offset }, Int32(n),
                                    T.mpiDatatype, op.handle, handle),
                      "MPI_Allreduce(in place, count: \(n), \(T.self), \(op))", rank: rank)
            offset += n
        } while offset < buffer.count
    }

    /// Out-of-place allreduce: `result` receives the reduction of every rank's `send`.
    public func allreduce<T: MPIScalar>(_ send: UnsafeBufferPointer<T>, into result: UnsafeMutableBufferPointer<T>,
                                        op: ReductionOp) throws {
        guard send.count == result.count else {
            throw MPIError.invalidArgument(call: "MPI_Allreduce", rank: rank,
                                           reason: "send has \(send.count) elements but result has \(result.count)")
        }
        var offset = 0
        repeat {
            let n = min(send.count - offset, Int(Int32.max))
            try check(MPI_Allreduce(send.baseAddress.map { $0 + offset }, result.baseAddress.map { $0 + offset },
                                    Int32(n), T.mpiDatatype, op.handle, handle),
                      "MPI_Allreduce(count: \(n), \(T.self), \(op))", rank: rank)
            offset += n
        } while offset < send.count
    }

    /// In-place allreduce of an array.
    public func allreduce<T: MPIScalar>(_ array: inout [T], op: ReductionOp) throws {
        try array.withUnsafeMutableBufferPointer { try allreduce($0, op: op) }
    }

    /// Allreduce of one value.
    public func allreduce<T: MPIScalar>(_ value: T, op: ReductionOp) throws -> T {
        var v = [value]
        try allreduce(&v, op: op)
        return v[0]
    }

    /// Non-blocking in-place allreduce. `buffer` must stay valid and untouched until the
    /// returned request completes (`wait()` or `test()` returning true).
    public func allreduceNonBlocking<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>,
                                                   op: ReductionOp) throws -> Request {
        let count = try mpiCount(buffer.count, "MPI_Iallreduce")
        let call = "MPI_Iallreduce(in place, count: \(count), \(T.self), \(op))"
        var request = umd_mpi_request_null()
        try check(MPI_Iallreduce(umd_mpi_in_place(), buffer.baseAddress, count, T.mpiDatatype, op.handle, handle, &request),
                  call, rank: rank)
        return Request(handle: request, call: call, rank: rank)
    }

    /// Non-blocking out-of-place allreduce; both buffers must stay valid until completion.
    public func allreduceNonBlocking<T: MPIScalar>(_ send: UnsafeBufferPointer<T>,
                                                   into result: UnsafeMutableBufferPointer<T>,
                                                   op: ReductionOp) throws -> Request {
        guard send.count == result.count else {
            throw MPIError.invalidArgument(call: "MPI_Iallreduce", rank: rank,
                                           reason: "send has \(send.count) elements but result has \(result.count)")
        }
        let count = try mpiCount(send.count, "MPI_Iallreduce")
        let call = "MPI_Iallreduce(count: \(count), \(T.self), \(op))"
        var request = umd_mpi_request_null()
        try check(MPI_Iallreduce(send.baseAddress, result.baseAddress, count, T.mpiDatatype, op.handle, handle, &request),
                  call, rank: rank)
        return Request(handle: request, call: call, rank: rank)
    }

    // MARK: Allgather / gather

    /// Checks that every rank passes the same element count; throws the same error on every rank otherwise.
    func requireEqualCounts(_ count: Int, _ call: String, hint: String) throws {
        var bounds: [Int64] = [Int64(count), -Int64(count)]
        try allreduce(&bounds, op: .max)
        let largest = bounds[0], smallest = -bounds[1]
        if largest != smallest {
            throw MPIError.rankMismatch(call: call, rank: rank,
                reason: "ranks contribute between \(smallest) and \(largest) elements (this rank: \(count)); \(hint)")
        }
    }

    /// Every rank contributes the same number of elements; returns all contributions in rank order.
    public func allgather<T: MPIScalar & Numeric>(_ local: [T]) throws -> [T] {
        try requireEqualCounts(local.count, "MPI_Allgather", hint: "use allgatherVariable for differing sizes")
        let count = try mpiCount(local.count, "MPI_Allgather")
        var result = [T](repeating: 0, count: local.count * size)
        try local.withUnsafeBufferPointer { send in
            try result.withUnsafeMutableBufferPointer { recv in
                try check(MPI_Allgather(send.baseAddress, count, T.mpiDatatype, recv.baseAddress, count, T.mpiDatatype, handle),
                          "MPI_Allgather(count: \(count), \(T.self))", rank: rank)
            }
        }
        return result
    }

    /// Every rank contributes any number of elements; returns each rank's contribution.
    public func allgatherVariable<T: MPIScalar & Numeric>(_ local: [T]) throws -> [[T]] {
        let counts = try allgather([Int64(local.count)]).map { Int($0) }
        let (counts32, displacements, total) = try layout(counts, "MPI_Allgatherv")
        var flat = [T](repeating: 0, count: total)
        try local.withUnsafeBufferPointer { send in
            try flat.withUnsafeMutableBufferPointer { recv in
                try check(MPI_Allgatherv(send.baseAddress, Int32(local.count), T.mpiDatatype, recv.baseAddress,
                                         counts32, displacements, T.mpiDatatype, handle),
                          "MPI_Allgatherv(\(T.self))", rank: rank)
            }
        }
        return split(flat, counts: counts)
    }

    /// In place: `buffer` is laid out as the ranks' parts back to back in rank order, rank
    /// r's part `counts[r]` elements long; each rank fills its own part, and afterwards every
    /// rank holds every part (MPI_Allgatherv with MPI_IN_PLACE). `counts` must agree on all
    /// ranks (not checked per call: callers derive them once and check them then).
    public func allgatherInPlace<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, counts: [Int]) throws {
        let call = "MPI_Allgatherv(in place, \(T.self))"
        guard counts.count == size, counts.reduce(0, +) == buffer.count else {
            throw MPIError.rankMismatch(call: call, rank: rank,
                reason: "\(counts.count) part sizes summing to \(counts.reduce(0, +)) for \(size) ranks and a buffer of \(buffer.count)")
        }
        let (counts32, displacements, _) = try layout(counts, call)
        try check(MPI_Allgatherv(umd_mpi_in_place(), 0, T.mpiDatatype, buffer.baseAddress, counts32, displacements,
                                 T.mpiDatatype, handle), call, rank: rank)
    }

    /// Gathers equal-sized contributions to `root` in rank order; nil on other ranks.
    public func gather<T: MPIScalar & Numeric>(_ local: [T], root: Int) throws -> [T]? {
        try requireEqualCounts(local.count, "MPI_Gather", hint: "use gatherVariable for differing sizes")
        let count = try mpiCount(local.count, "MPI_Gather")
        var result = [T](repeating: 0, count: rank == root ? local.count * size : 0)
        try local.withUnsafeBufferPointer { send in
            try result.withUnsafeMutableBufferPointer { recv in
                try check(MPI_Gather(send.baseAddress, count, T.mpiDatatype, recv.baseAddress, count, T.mpiDatatype,
                                     Int32(truncatingIfNeeded: root), handle),
                          "MPI_Gather(root: \(root), count: \(count), \(T.self))", rank: rank)
            }
        }
        return rank == root ? result : nil
    }

    /// Gathers contributions of any size to `root`; returns each rank's part on root, nil elsewhere.
    public func gatherVariable<T: MPIScalar & Numeric>(_ local: [T], root: Int) throws -> [[T]]? {
        var counts = [Int32](repeating: 0, count: rank == root ? size : 0)
        var myCount = try mpiCount(local.count, "MPI_Gatherv")
        try counts.withUnsafeMutableBufferPointer { recv in
            try check(MPI_Gather(&myCount, 1, Int32.mpiDatatype, recv.baseAddress, 1, Int32.mpiDatatype,
                                 Int32(truncatingIfNeeded: root), handle),
                      "MPI_Gather(root: \(root), counts for MPI_Gatherv)", rank: rank)
        }
        let (counts32, displacements, total) = rank == root
            ? try layout(counts.map { Int($0) }, "MPI_Gatherv") : ([], [], 0)
        var flat = [T](repeating: 0, count: total)
        try local.withUnsafeBufferPointer { send in
            try flat.withUnsafeMutableBufferPointer { recv in
                try check(MPI_Gatherv(send.baseAddress, myCount, T.mpiDatatype, recv.baseAddress, counts32,
                                      displacements, T.mpiDatatype, Int32(truncatingIfNeeded: root), handle),
                          "MPI_Gatherv(root: \(root), \(T.self))", rank: rank)
            }
        }
        return rank == root ? split(flat, counts: counts.map { Int($0) }) : nil
    }

    /// Gathers bytes of any size to every rank (for strings, JSON, hashes).
    public func allgatherData(_ local: Data) throws -> [Data] {
        try allgatherVariable([UInt8](local)).map { Data($0) }
    }

    private func layout(_ counts: [Int], _ call: String) throws -> ([Int32], [Int32], Int) {
        var displacements = [Int32]()
        var total = 0
        for c in counts {
            displacements.append(try mpiCount(total, call))
            total += c
        }
        _ = try mpiCount(total, call)
        return (counts.map { Int32($0) }, displacements, total)
    }

    private func split<T>(_ flat: [T], counts: [Int]) -> [[T]] {
        var parts = [[T]]()
        var offset = 0
        for c in counts {
            parts.append(Array(flat[offset..<offset + c]))
            offset += c
        }
        return parts
    }
}
