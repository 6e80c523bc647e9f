import CMPI

/// A Swift scalar type with a matching predefined MPI datatype.
public protocol MPIScalar: Sendable {
    static var mpiDatatype: MPI_Datatype { get }
}

extension Float: MPIScalar { public static var mpiDatatype: MPI_Datatype { umd_mpi_float() } }
extension Double: MPIScalar { public static var mpiDatatype: MPI_Datatype { umd_mpi_double() } }
extension Int32: MPIScalar { public static var mpiDatatype: MPI_Datatype { umd_mpi_int32() } }
extension Int64: MPIScalar { public static var mpiDatatype: MPI_Datatype { umd_mpi_int64() } }
extension UInt8: MPIScalar { public static var mpiDatatype: MPI_Datatype { umd_mpi_uint8() } }
extension UInt64: MPIScalar { public static var mpiDatatype: MPI_Datatype { umd_mpi_uint64() } }
/// Swift's Int is 64-bit on every platform umd supports.
extension Int: MPIScalar { public static var mpiDatatype: MPI_Datatype { umd_mpi_int64() } }

/// Reduction operations of allreduce.
public enum ReductionOp: String, Sendable, CaseIterable, CustomStringConvertible {
    case sum, max, min

    var handle: MPI_Op {
        switch self {
        case .sum: return umd_mpi_op_sum()
        case .max: return umd_mpi_op_max()
        case .min: return umd_mpi_op_min()
        }
    }

    public var description: String { "MPI_" + rawValue.uppercased() }
}

/// MPI thread support levels, ordered.
public enum ThreadLevel: Int32, Sendable, Comparable, CustomStringConvertible {
    case single, funneled, serialized, multiple

    init(mpiValue: Int32) {
        switch mpiValue {
        case umd_mpi_thread_multiple(): self = .multiple
        case umd_mpi_thread_serialized(): self = .serialized
        case umd_mpi_thread_funneled(): self = .funneled
        default: self = .single
        }
    }

    var mpiValue: Int32 {
        switch self {
        case .single: return umd_mpi_thread_single()
        case .funneled: return umd_mpi_thread_funneled()
        case .serialized: return umd_mpi_thread_serialized()
        case .multiple: return umd_mpi_thread_multiple()
        }
    }

    public static func < (a: ThreadLevel, b: ThreadLevel) -> Bool { a.rawValue < b.rawValue }
    public var description: String {
        switch self {
        case .single: return "MPI_THREAD_SINGLE"
        case .funneled: return "MPI_THREAD_FUNNELED"
        case .serialized: return "MPI_THREAD_SERIALIZED"
        case .multiple: return "MPI_THREAD_MULTIPLE"
        }
    }
}
