import Foundation
import Synchronization

/// Where a step's activation memory goes (issue 28): every `GrowableBuffer` charges its
/// bytes to the owner that was current on its thread when it first grew — the objectives name
/// their parts (`MemoryLedger.chargeTo("pass 2: teacher …")`, or `scope`) — so `bench step
/// --phases` can print bytes per pass. Buffers grow on a step's first run and are reused
/// afterwards, so after one step the ledger holds the step's working set. The owner is the
/// thread's own (tests run steps on many threads at once); the totals are shared, behind a
/// lock (growth is rare).
public enum MemoryLedger {
    struct Books: ~Copyable {
        var bytes: [String: Int] = [:]
        var order: [String] = []
        /// Memory that does not grow with the batch (kept beside the arenas), by owner.
        var fixed: [String: Int] = [:]
        var fixedOrder: [String] = []
    }
    static let books = Mutex(Books())
    static let key = "umd.MemoryLedger.owner"

    /// From now on (until the next call, or the end of the enclosing `scope`), buffers that
    /// first grow on this thread are charged to `owner`: consecutive parts of one function,
    /// as `Profiler`'s laps.
    public static func chargeTo(_ owner: String) { Thread.current.threadDictionary[key] = owner }

    /// Runs `body` with `owner` charged for the buffers that first grow inside it.
    public static func scope<T>(_ owner: String, _ body: () throws -> T) rethrows -> T {
        let saved = currentOwner
        chargeTo(owner)
        defer { chargeTo(saved) }
        return try body()
    }

    /// This thread's current owner (a buffer's first growth asks).
    static var currentOwner: String { Thread.current.threadDictionary[key] as? String ?? "other" }

    static func charge(_ owner: String, _ delta: Int) {
        books.withLock { b in
            if b.bytes[owner] == nil { b.order.append(owner) }
            b.bytes[owner, default: 0] += delta
        }
    }

    /// Bytes by owner, in the order owners first appeared (owners back at zero left out).
    public static var table: [(owner: String, bytes: Int)] {
        books.withLock { b in b.order.map { ($0, b.bytes[$0] ?? 0) }.filter { $0.1 != 0 } }
    }

    /// Memory of a fixed size whatever the batch (bf16 copies of the weights), kept out of
    /// `table` so that per-sample figures (bench step, `--dry-run`) do not count it.
    static func chargeFixed(_ owner: String, _ delta: Int) {
        books.withLock { b in
            if b.fixed[owner] == nil { b.fixedOrder.append(owner) }
            b.fixed[owner, default: 0] += delta
        }
    }

    public static var fixedTable: [(owner: String, bytes: Int)] {
        books.withLock { b in b.fixedOrder.map { ($0, b.fixed[$0] ?? 0) }.filter { $0.1 != 0 } }
    }
}
