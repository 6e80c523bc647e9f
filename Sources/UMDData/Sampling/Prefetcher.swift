import Foundation

/// Runs a producer for steps s, s+1, … on a background thread, keeping at most `depth`
/// results ready (bounded memory); `next()` hands them out in order.
public final class Prefetcher<Item: Sendable>: @unchecked Sendable {
    /// Everything the producer thread touches, guarded by `condition`; the thread holds it
    /// strongly, so the prefetcher may go away while the thread finishes its last item.
    private final class State: @unchecked Sendable {
        let condition = NSCondition()
        var ready: [Int: Result<Item, Error>] = [:]
        var nextToProduce: Int
        var nextToConsume: Int
        let depth: Int
        var stopped = false
        init(start: Int, depth: Int) { nextToProduce = start; nextToConsume = start; self.depth = depth }
    }

    private let state: State
    /// Seconds `next()` spent waiting for the producer (data wait time).
    public private(set) var waitSeconds = 0.0

    public init(startStep: Int, depth: Int = 2, produce: @escaping @Sendable (Int) throws -> Item) {
        precondition(depth >= 1)
        let state = State(start: startStep, depth: depth)
        self.state = state
        let thread = Thread {
            while true {
                state.condition.lock()
                while !state.stopped && state.nextToProduce - state.nextToConsume >= state.depth { state.condition.wait() }
                if state.stopped { state.condition.unlock(); return }
                let step = state.nextToProduce
                state.nextToProduce += 1
                state.condition.unlock()
                let result = Result { try produce(step) }
                state.condition.lock()
                state.ready[step] = result
                state.condition.broadcast()
                state.condition.unlock()
            }
        }
        thread.name = "umd-prefetch"
        thread.start()
    }

    /// The item of the next step, waiting for it when it is not ready; rethrows the producer's error.
    public func next() throws -> Item {
        let start = Date()
        state.condition.lock()
        defer { state.condition.unlock() }
        while state.ready[state.nextToConsume] == nil { state.condition.wait() }
        let result = state.ready.removeValue(forKey: state.nextToConsume)!
        state.nextToConsume += 1
        state.condition.broadcast()
        waitSeconds += Date().timeIntervalSince(start)
        return try result.get()
    }

    public func stop() {
        state.condition.lock()
        state.stopped = true
        state.condition.broadcast()
        state.condition.unlock()
    }

    deinit { stop() }
}
