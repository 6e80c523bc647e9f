import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The one profiler of the program (DESIGN.md idea 3): seconds by span name, in the order
/// the names were first seen, read by `bench step --phases` and a run's `--profile`.
///
///     Profiler.span("GM-Coord") { modulate(…) }          // a nested or one-off span
///     var laps = Profiler.laps()                          // consecutive parts of one function:
///     …; laps.lap("student forward"); …; laps.lap("backward")
///
/// Off by default: a span then costs one predictable branch and reads no clock. Spans are
/// charged by the training thread only (the step and the kernels it calls; the
/// communication and prefetch threads run none), which is why unsynchronised static storage
/// is acceptable here (`nonisolated(unsafe)`).
public enum Profiler {
    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) public private(set) static var names: [String] = []
    nonisolated(unsafe) public private(set) static var seconds: [Double] = []
    nonisolated(unsafe) private static var slots: [String: Int] = [:]

    /// Forgets every span (names and seconds).
    public static func reset() { names = []; seconds = []; slots = [:] }

    /// Seconds of a monotonic clock.
    @inline(__always)
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Charges `elapsed` seconds to `name` (while enabled).
    public static func charge(_ name: String, _ elapsed: Double) {
        guard enabled else { return }
        if let slot = slots[name] {
            seconds[slot] += elapsed
        } else {
            slots[name] = names.count
            names.append(name)
            seconds.append(elapsed)
        }
    }

    /// Runs `body`, charging its wall time to `name`.
    @inline(__always)
    public static func span<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
        guard enabled else { return try body() }
        let start = now()
        defer { charge(name, now() - start) }
        return try body()
    }

    /// Consecutive parts of one piece of code: each `lap(name)` charges the time since the
    /// previous lap (or since `laps()`) to `name`.
    public struct Laps {
        var last: Double
        public mutating func lap(_ name: String) {
            guard Profiler.enabled else { return }
            let t = Profiler.now()
            Profiler.charge(name, t - last)
            last = t
        }
    }

    public static func laps() -> Laps { Laps(last: enabled ? now() : 0) }

    /// Every span's name and seconds, in first-seen order.
    public static var table: [(name: String, seconds: Double)] { zip(names, seconds).map { ($0, $1) } }
}

extension Profiler {
    /// `table`'s rows as text — name, milliseconds per step, share of `total` seconds — and
    /// a last row "other" with the rest of `total` (what no span covered).
    public static func lines(_ table: [(name: String, seconds: Double)], steps: Int, total: Double) -> [String] {
        func row(_ name: String, _ seconds: Double) -> String {
            name.padding(toLength: 40, withPad: " ", startingAt: 0)
                + String(format: "%9.1f ms  %5.1f %%", seconds / Double(max(steps, 1)) * 1000, 100 * seconds / max(total, 1e-12))
        }
        return table.map { row($0.name, $0.seconds) } + [row("other", total - table.reduce(0) { $0 + $1.seconds })]
    }
}
