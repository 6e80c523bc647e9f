import Collective
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Set only by the SIGTERM/SIGINT handler (a C signal handler cannot capture context).
nonisolated(unsafe) private var signalReceived: sig_atomic_t = 0

/// SIGTERM / SIGINT (what schedulers send before a wall-time kill) only set a flag; after
/// every step the ranks agree on it (a MAX allreduce), save a checkpoint together and stop.
public final class StopSignal {
    public struct Stopped: Error, CustomStringConvertible {
        public var description: String { "stopped by a termination signal after saving a checkpoint" }
    }

    private init() {}

    /// Installs the handlers for this process.
    static func install() -> StopSignal {
        signal(SIGTERM) { _ in signalReceived = 1 }
        signal(SIGINT) { _ in signalReceived = 1 }
        return StopSignal()
    }

    /// Whether this rank got a signal.
    var received: Bool { signalReceived != 0 }

    /// Whether any rank got a signal (or `alsoStop` holds here): every rank gets the same answer.
    func agreed(world: Communicator, watchdog: StallWatchdog, step: Int, alsoStop: Bool) throws -> Bool {
        let mine = received || alsoStop
        if world.size == 1 { return mine }
        return try watchdog.guarding("step \(step), stop-signal agreement") {
            try world.allreduce(Int32(mine ? 1 : 0), op: .max) == 1
        }
    }
}
