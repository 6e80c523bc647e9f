import UMDCore
import CMPI

/// A pending non-blocking MPI operation.
///
/// `@unchecked Sendable`: the handle is only touched through `wait`/`test`, which take a
/// lock-free path through MPI (THREAD_MULTIPLE); callers must not wait on the same
/// request from two threads at once, which MPI forbids anyway.
public final class Request: @unchecked Sendable {
    private var handle: MPI_Request?
    private var completed = false
    /// The call that started it, for error messages.
    public let call: String
    let rank: Int

    init(handle: MPI_Request?, call: String, rank: Int) {
        self.handle = handle
        self.call = call
        self.rank = rank
    }

    /// Blocks until the operation has finished.
    public func wait() throws {
        if completed { return }
        let code = MPI_Wait(&handle, umd_mpi_status_ignore())
        completed = true
        try check(code, "MPI_Wait(\(call))", rank: rank)
    }

    /// Returns true once the operation has finished; never blocks.
    public func test() throws -> Bool {
        if completed { return true }
        var flag: Int32 = 0
        try check(MPI_Test(&handle, &flag, umd_mpi_status_ignore()), "MPI_Test(\(call))", rank: rank)
        if flag != 0 { completed = true }
        return completed
    }

    deinit {
        // A request dropped while in flight would let MPI write into memory the caller may
        // free next; finishing it here is the safe choice.
        if !completed, MPI_Wait(&handle, umd_mpi_status_ignore()) != umd_mpi_success() {
            writeToStandardError("umd-mpirun: rank \(rank): \(call) failed while being discarded\n")
        }
    }
}
