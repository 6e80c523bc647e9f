import Foundation
@_exported import MPIBridge

/// Aborts the MPI job when one collective takes longer than `timeout` seconds: prints on
/// this rank which step, bucket and operation it waits in, then MPI_Abort — a stuck job
/// ends with a message instead of burning its allocation.
///
/// `@unchecked Sendable`: shared state is guarded by `condition`.
public final class StallWatchdog: @unchecked Sendable {
    private let condition = NSCondition()
    private var active: [Int: (what: @Sendable () -> String, since: Date)] = [:]
    private var nextToken = 0
    private var stopped = false
    public let timeout: Double

    /// On a stall this rank prints where it waits and aborts the MPI job.
    public convenience init(world: Communicator, timeout: Double) {
        self.init(timeout: timeout) { what in
            world.abort(message: "stalled for more than \(Int(timeout)) s in \(what); "
                        + "another rank has probably died or is stuck. Aborting the job.")
        }
    }

    /// `onStall` gets the description of the first operation older than `timeout` seconds,
    /// once; checks run every `interval` seconds.
    public init(timeout: Double, interval: Double = 0.5, onStall: @escaping @Sendable (String) -> Void) {
        self.timeout = timeout
        let thread = Thread { [condition] in
            while true {
                condition.lock()
                if self.stopped { condition.unlock(); return }
                let now = Date()
                let stalled = self.active.values.first { now.timeIntervalSince($0.since) > self.timeout }
                condition.unlock()
                if let stalled {
                    onStall(stalled.what())
                    condition.lock()
                    self.stopped = true          // report once
                    condition.unlock()
                    return
                }
                condition.lock()
                _ = condition.wait(until: Date().addingTimeInterval(interval))
                condition.unlock()
            }
        }
        thread.name = "umd-watchdog"
        thread.start()
    }

    /// Marks the start of a blocking operation; pass the token to `end`.
    public func begin(_ what: @autoclosure () -> String) -> Int {
        let text = what()
        return begin(describing: { text })
    }

    /// The same with a description read when the stall is reported (e.g. the file being read now).
    public func begin(describing what: @escaping @Sendable () -> String) -> Int {
        condition.lock()
        defer { condition.unlock() }
        nextToken += 1
        active[nextToken] = (what, Date())
        return nextToken
    }

    public func end(_ token: Int) {
        condition.lock()
        active[token] = nil
        condition.unlock()
    }

    /// Runs `body` under the watchdog, describing it when a stall is reported.
    public func guarding<T>(describing what: @escaping @Sendable () -> String, _ body: () throws -> T) rethrows -> T {
        let token = begin(describing: what)
        defer { end(token) }
        return try body()
    }

    /// Runs `body` under the watchdog.
    public func guarding<T>(_ what: @autoclosure () -> String, _ body: () throws -> T) rethrows -> T {
        let token = begin(what())
        defer { end(token) }
        return try body()
    }

    public func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }
}
