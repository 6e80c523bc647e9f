import Collective
import UMDModel
import Foundation

/// Asynchronous checkpoints (`--async-checkpoint`): the step copies this rank's slice of
/// the state into a staging buffer and a background thread compresses, writes and
/// publishes it (its collectives run on a duplicated communicator, so they never interleave
/// with the training thread's) while training goes on. One save is in flight at a time;
/// the next one, the final one and any exit wait for it.
///
/// `@unchecked Sendable`: `pending`, `failure` and `lastDirectory` are guarded by `condition`;
/// the staging buffer is written only while no save is in flight.
public final class AsyncCheckpointer: @unchecked Sendable {
    let comm: Communicator
    let watchdog: StallWatchdog?
    private let condition = NSCondition()
    private var pending = false
    private var failure: Error?
    private var staging: UnsafeMutableRawPointer?
    private var stagingBytes = 0
    public private(set) var lastDirectory: URL?

    public init(world: Communicator, watchdog: StallWatchdog?) throws {
        comm = world.size > 1 ? try world.duplicate() : world
        self.watchdog = watchdog
    }

    deinit { staging?.deallocate() }

    /// Waits for the save in flight and rethrows its error.
    public func wait() throws {
        condition.lock()
        while pending { condition.wait() }
        let error = failure
        failure = nil
        condition.unlock()
        if let error { throw error }
    }

    /// Stages this rank's slice of `live` and starts writing it in the background.
    public func start(_ live: CheckpointContent, step: Int, plan: CheckpointPlan) throws {
        try wait()
        let (lower, upper) = Checkpoints.slice(count: live.count, world: comm)
        let bytes = (upper - lower) * 4
        if bytes > stagingBytes {
            staging?.deallocate()
            staging = .allocate(byteCount: max(bytes, 1), alignment: 64)
            stagingBytes = bytes
        }
        var offset = 0
        for piece in live.slice(lower, upper) {
            (staging! + offset).copyMemory(from: piece.baseAddress!, byteCount: piece.count)
            offset += piece.count
        }
        let copy = UnsafeRawBufferPointer(start: staging, count: bytes)
        var staged = CheckpointContent(studentCount: live.studentCount, teacherCount: live.teacherCount, student: live.student,
                                       teacher: live.teacher, optimizerSteps: live.optimizerSteps,
                                       slice: { l, u in
                                           precondition(l == lower && u == upper, "an asynchronous save writes its own slice only")
                                           return [copy]
                                       })
        staged.validation = live.validation
        condition.lock()
        pending = true
        condition.unlock()
        let (comm, watchdog) = (self.comm, self.watchdog)
        let thread = Thread { [self, staged] in
            var error: Error? = nil
            var dir: URL? = nil
            do {
                dir = try Checkpoints.save(content: staged, step: step, plan: plan, world: comm, watchdog: watchdog)
            } catch let e { error = e }
            self.condition.lock()
            self.pending = false
            self.failure = error
            if let dir { self.lastDirectory = dir }
            self.condition.broadcast()
            self.condition.unlock()
        }
        thread.name = "umd-checkpoint"
        thread.start()
    }
}
