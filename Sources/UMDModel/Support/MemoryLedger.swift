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
    /// Bytes by owner, owners in the order they first appeared.
    struct Accounts {
        var bytes: [String: Int] = [:]
        var order: [String] = []

        mutating func add(_ owner: String, _ delta: Int) {
            if bytes[owner] == nil { order.append(owner) }
            bytes[owner, default: 0] += delta
        }

        /// Owners back at zero left out.
        var table: [(owner: String, bytes: Int)] { order.map { ($0, bytes[$0] ?? 0) }.filter { $0.1 != 0 } }
    }

    struct Books: ~Copyable {
        var activations = Accounts()
        /// Memory that does not grow with the batch (kept beside the arenas).
        var fixed = Accounts()
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

    static func charge(_ owner: String, _ delta: Int) { books.withLock { $0.activations.add(owner, delta) } }

    /// Bytes by owner, in the order owners first appeared (owners back at zero left out).
    public static var table: [(owner: String, bytes: Int)] { books.withLock { $0.activations.table } }

    /// Memory of a fixed size whatever the batch (bf16 copies of the weights), kept out of
    /// `table` so that per-sample figures (bench step, `--dry-run`) do not count it.
    static func chargeFixed(_ owner: String, _ delta: Int) { books.withLock { $0.fixed.add(owner, delta) } }

    public static var fixedTable: [(owner: String, bytes: Int)] { books.withLock { $0.fixed.table } }
}
