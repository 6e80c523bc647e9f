import CMPI

/// Errors from MPI calls and from the Swift-side argument checks around them.
/// Every message names the call and the rank, and says what to do where that is known.
public enum MPIError: Error, CustomStringConvertible, Sendable {
    /// An MPI call returned an error code (MPI_ERRORS_RETURN is installed on every communicator).
    case callFailed(call: String, rank: Int, code: Int32, mpiMessage: String)
    /// The MPI library cannot give the thread support umd needs.
    case insufficientThreadSupport(required: ThreadLevel, provided: ThreadLevel)
    /// A call was made with arguments that cannot work (caught before reaching MPI).
    case invalidArgument(call: String, rank: Int, reason: String)
    /// Ranks disagreed about something they must agree on (counts, sizes, hashes).
    case rankMismatch(call: String, rank: Int, reason: String)
    /// Decoding a broadcast value failed.
    case decodingFailed(call: String, rank: Int, reason: String)

    public var description: String {
        switch self {
        case let .callFailed(call, rank, code, mpiMessage):
            return "\(call) failed on rank \(rank): \(mpiMessage) (MPI error code \(code))"
        case let .insufficientThreadSupport(required, provided):
            return "MPI_Init_thread: umd needs thread level \(required) but this MPI library provides only \(provided); "
                + "use an OpenMPI built with thread support (Debian's openmpi-bin 4.1 is)"
        case let .invalidArgument(call, rank, reason):
            return "\(call) on rank \(rank): invalid argument: \(reason)"
        case let .rankMismatch(call, rank, reason):
            return "\(call) on rank \(rank): ranks disagree: \(reason)"
        case let .decodingFailed(call, rank, reason):
            return "\(call) on rank \(rank): could not decode the broadcast value: \(reason)"
        }
    }
}

/// MPI's own text for an error code.
func mpiErrorString(_ code: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: Int(umd_mpi_max_error_string()) + 1)
    var length: Int32 = 0
    let status = buffer.withUnsafeMutableBufferPointer { MPI_Error_string(code, $0.baseAddress, &length) }
    if status != umd_mpi_success() { return "unknown MPI error" }
    let bytes = buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// Turns an MPI return code into a thrown `MPIError.callFailed`.
@inline(__always)
func check(_ code: Int32, _ call: @autoclosure () -> String, rank: Int) throws {
    if code != umd_mpi_success() {
        throw MPIError.callFailed(call: call(), rank: rank, code: code, mpiMessage: mpiErrorString(code))
    }
}
