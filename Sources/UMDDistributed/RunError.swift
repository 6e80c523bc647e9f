/// The trainer module's errors (besides the two a run ends on by design: `StopSignal.Stopped`
/// and `NonFiniteStep`). Every message says what was wrong, where (file, line, rank, setting)
/// and what to do.
public enum RunError: Error, CustomStringConvertible, Sendable {
    /// Settings, data, the run directory or weights refused: the whole sentence.
    case refused(String)
    /// A checkpoint that cannot be resumed or read as it was saved.
    case checkpoint(String)
    /// A checkpoint shard that cannot be written, or read back intact.
    case shard(path: String, problem: String)

    /// A refusal (most of the module's errors).
    public init(_ message: String) { self = .refused(message) }

    public var description: String {
        switch self {
        case .refused(let message), .checkpoint(let message): return message
        case .shard(let path, let problem): return "\(path): \(problem)"
        }
    }
}
