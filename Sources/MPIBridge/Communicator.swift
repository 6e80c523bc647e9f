import UMDCore
import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// The Swift face of an MPI communicator.
///
/// Thread safety: MPI is initialised with MPI_THREAD_MULTIPLE (initialisation fails
/// otherwise), so any thread may call into the communicator; the handle itself is
/// immutable. That is why the class is `@unchecked Sendable`.
public final class Communicator: @unchecked Sendable {
    let handle: MPI_Comm
    /// This process's rank in the communicator, 0-based.
    public let rank: Int
    /// Number of ranks in the communicator.
    public let size: Int

    init(handle: MPI_Comm) throws {
        self.handle = handle
        var r: Int32 = 0
        var s: Int32 = 0
        try check(MPI_Comm_rank(handle, &r), "MPI_Comm_rank", rank: -1)
        try check(MPI_Comm_size(handle, &s), "MPI_Comm_size", rank: Int(r))
        self.rank = Int(r)
        self.size = Int(s)
        // Errors come back as return codes (turned into Swift errors) instead of
        // killing the job from inside MPI with no context.
        try check(MPI_Comm_set_errhandler(handle, umd_mpi_errors_return()), "MPI_Comm_set_errhandler", rank: rank)
    }

    /// Initialises MPI with MPI_THREAD_MULTIPLE and returns MPI_COMM_WORLD.
    /// Works under `mpirun` and as a singleton (program run directly: rank 0 of 1).
    public static func initializeWorld() throws -> Communicator {
        var alreadyInitialised: Int32 = 0
        MPI_Initialized(&alreadyInitialised)
        if alreadyInitialised == 0 {
            var provided: Int32 = 0
            try check(MPI_Init_thread(nil, nil, ThreadLevel.multiple.mpiValue, &provided), "MPI_Init_thread", rank: -1)
            let level = ThreadLevel(mpiValue: provided)
            if level < .multiple {
                MPI_Finalize()
                throw MPIError.insufficientThreadSupport(required: .multiple, provided: level)
            }
        }
        return try Communicator(handle: umd_mpi_comm_world())
    }

    /// True between MPI_Init_thread and MPI_Finalize.
    public static var isInitialized: Bool {
        var flag: Int32 = 0
        MPI_Initialized(&flag)
        var finalized: Int32 = 0
        MPI_Finalized(&finalized)
        return flag != 0 && finalized == 0
    }

    /// The thread level the library actually provides.
    public static func providedThreadLevel() -> ThreadLevel {
        var provided: Int32 = 0
        MPI_Query_thread(&provided)
        return ThreadLevel(mpiValue: provided)
    }

    /// A new communicator with the same ranks (MPI_Comm_dup). Collectives on it never
    /// interleave with those on the original, so another thread can run them concurrently.
    public func duplicate() throws -> Communicator {
        var copy = umd_mpi_comm_null()
        try check(MPI_Comm_dup(handle, &copy), "MPI_Comm_dup", rank: rank)
        return try Communicator(handle: copy!)
    }

    /// Finalises MPI. Call once, on every rank, after the last collective.
    public func finalize() throws {
        try check(MPI_Finalize(), "MPI_Finalize", rank: rank)
    }

    /// Prints `message` on this rank's stderr and aborts every rank of the job.
    /// Use when one rank cannot continue and the others would otherwise wait forever.
    public func abort(message: String, code: Int32 = 1) -> Never {
        writeToStandardError("umd-mpirun: rank \(rank)/\(size): \(message)\n")
        MPI_Abort(handle, code)
        exit(code)  // MPI_Abort does not return; this satisfies the type checker.
    }

    /// The name of the node this rank runs on (MPI_Get_processor_name).
    public var processorName: String {
        var buffer = [CChar](repeating: 0, count: Int(umd_mpi_max_processor_name()) + 1)
        var length: Int32 = 0
        let status = buffer.withUnsafeMutableBufferPointer { MPI_Get_processor_name($0.baseAddress, &length) }
        if status != umd_mpi_success() { return "unknown-host" }
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Wall-clock time in seconds (MPI_Wtime), for timing on any rank.
    public static func wallTime() -> Double { MPI_Wtime() }

    /// Blocks until every rank has called it.
    public func barrier() throws {
        try check(MPI_Barrier(handle), "MPI_Barrier", rank: rank)
    }

    /// Throws a clear error when `root` is not a rank of this communicator
    /// (MPI would report it too, but without saying which root or why).
    func checkRoot(_ root: Int, _ call: String) throws {
        if root < 0 || root >= size {
            throw MPIError.invalidArgument(call: call, rank: rank,
                                           reason: "root \(root) is not a rank of this \(size)-rank communicator")
        }
    }

    /// MPI counts are 32-bit; larger buffers must be split by the caller.
    func mpiCount(_ count: Int, _ call: String) throws -> Int32 {
        guard count >= 0, count <= Int(Int32.max) else {
            throw MPIError.invalidArgument(call: call, rank: rank,
                                           reason: "element count \(count) is outside MPI's 32-bit count range")
        }
        return Int32(count)
    }
}
