import Foundation
import UMDCore

/// What sums a bucket over the ranks: a communicator (MPI_Allreduce), or a stand-in in tests.
public protocol BucketReducer: Sendable {
    /// Number of ranks; with 1 nothing is communicated.
    var size: Int { get }
    /// Sums `buffer` element-wise over all ranks, in place.
    func sumInPlace(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    /// The same in bfloat16 (each addition rounded to bf16).
    func sumInPlaceBFloat16(_ buffer: UnsafeMutableBufferPointer<UInt16>) throws
}

extension Communicator: BucketReducer {
    public func sumInPlace(_ buffer: UnsafeMutableBufferPointer<Float>) throws { try allreduce(buffer, op: .sum) }
    public func sumInPlaceBFloat16(_ buffer: UnsafeMutableBufferPointer<UInt16>) throws { try allreduceBFloat16Sum(buffer) }
}

/// What the gradient sum sends: Float32, or bfloat16 (half the bytes, 8-bit significand: each
/// rounding ≤ 2⁻⁸ relative; the
/// arena stays Float32 and so do the optimizer and the losses).
public enum SyncPrecision: String, Sendable, CaseIterable, Codable {
    case fp32, bf16
}

/// Sums the gradient arena over the ranks in buckets while backward is still running
/// (DESIGN.md idea 4).
///
/// Buckets are slices of the arena itself — no copy into a fusion buffer — cut from the
/// trained segments in address order (the first one smaller, so communication starts early).
/// Backward finishes gradients in address order and reports progress with
/// `gradientsReady(below:)`; every bucket wholly below that offset is handed to a
/// communication thread that runs a blocking MPI_Allreduce on a duplicated communicator
/// (OpenMPI 4.1 gives non-blocking collectives no progress without MPI calls). The result
/// is the SUM over ranks: each rank's objective already divides by the global count
/// (MODEL_SPEC.md section 10a), so the sum is the global-batch gradient and no rank count
/// appears anywhere. `finish()` waits only for buckets still in flight.
///
/// `@unchecked Sendable`: queue and counters are guarded by `condition`; the arena slices a
/// bucket covers are not touched by backward once reported ready.
public final class GradientSynchronizer: @unchecked Sendable {
    public let buckets: [Range<Int>]
    let gradients: UnsafeMutablePointer<Float>
    let reducer: BucketReducer
    let worldSize: Int
    let watchdog: StallWatchdog?
    private let condition = NSCondition()
    private var launched = 0        // buckets handed to the thread this step
    private var completed = 0
    private var failure: Error?
    private var stopped = false
    private var step = 0
    /// Seconds the caller waited in `finish()` (communication not hidden behind backward).
    public private(set) var waitSeconds = 0.0
    public let precision: SyncPrecision
    /// bf16 staging of the bucket in flight, [largest bucket] (empty for fp32).
    private let packed: UnsafeMutableBufferPointer<UInt16>
    /// Seconds the communication thread spent in allreduce this step, and bytes reduced.
    public private(set) var reduceSeconds = 0.0
    public private(set) var reducedBytes = 0

    /// `segments`: the arena ranges to average (trained tensors), sorted and disjoint.
    /// Buckets run their MPI_Allreduce on a duplicate of `world`, so they never interleave
    /// with the caller's own collectives.
    public convenience init(world: Communicator, gradients: UnsafeMutablePointer<Float>, segments: [Range<Int>],
                            bucketBytes: Int = 25 << 20, firstBucketBytes: Int = 1 << 20, precision: SyncPrecision = .fp32,
                            watchdog: StallWatchdog?) throws {
        self.init(reducer: world.size > 1 ? try world.duplicate() : world, gradients: gradients, segments: segments,
                  bucketBytes: bucketBytes, firstBucketBytes: firstBucketBytes, precision: precision, watchdog: watchdog)
    }

    public init(reducer: BucketReducer, gradients: UnsafeMutablePointer<Float>, segments: [Range<Int>],
                bucketBytes: Int = 25 << 20, firstBucketBytes: Int = 1 << 20, precision: SyncPrecision = .fp32,
                watchdog: StallWatchdog?) {
        self.reducer = reducer
        self.worldSize = reducer.size
        self.gradients = gradients
        self.watchdog = watchdog
        self.buckets = Self.cut(segments, bucketBytes: bucketBytes, firstBucketBytes: firstBucketBytes)
        self.precision = precision
        let largest = precision == .bf16 && reducer.size > 1 ? (buckets.map(\.count).max() ?? 0) : 0
        packed = UnsafeMutableBufferPointer(start: HugePageMemory.allocate(UInt16.self, capacity: max(largest, 1)),
                                            count: max(largest, 1))
        if worldSize > 1 {
            let thread = Thread { [self] in self.communicate() }
            thread.name = "umd-allreduce"
            thread.start()
        }
    }

    /// Buckets over `segments` (sorted, disjoint) in address order: the first at most
    /// `firstBucketBytes`, the others at most `bucketBytes`; a bucket never spans the gap
    /// between two segments (untrained tensors are not communicated).
    public static func cut(_ segments: [Range<Int>], bucketBytes: Int, firstBucketBytes: Int) -> [Range<Int>] {
        var buckets: [Range<Int>] = []
        var limit = max(1, firstBucketBytes / 4)
        for segment in segments {
            var start = segment.lowerBound
            while start < segment.upperBound {
                let end = min(segment.upperBound, start + limit)
                buckets.append(start..<end)
                start = end
                limit = max(1, bucketBytes / 4)
            }
        }
        return buckets
    }

    /// Merges the ranges of the given arena views into sorted, disjoint segments.
    public static func segments(_ ranges: [Range<Int>]) -> [Range<Int>] {
        var merged: [Range<Int>] = []
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) where !r.isEmpty {
            if let last = merged.last, last.upperBound >= r.lowerBound {
                merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, r.upperBound)
            } else {
                merged.append(r)
            }
        }
        return merged
    }

    /// Starts a step: nothing is in flight.
    public func beginStep(_ step: Int) {
        condition.lock()
        self.step = step
        launched = 0; completed = 0; failure = nil
        waitSeconds = 0; reduceSeconds = 0; reducedBytes = 0
        condition.unlock()
    }

    /// Every gradient at an arena offset below `offset` is final: launch the buckets it covers.
    public func gradientsReady(below offset: Int) {
        condition.lock()
        var next = launched
        while next < buckets.count && buckets[next].upperBound <= offset { next += 1 }
        if next != launched {
            launched = next
            condition.broadcast()
        }
        condition.unlock()
    }

    /// Launches whatever is left, waits for every bucket, and rethrows a communication error.
    public func finish() throws {
        let start = Date()
        gradientsReady(below: Int.max)
        condition.lock()
        while worldSize > 1 && completed < buckets.count && failure == nil { condition.wait() }
        let error = failure
        condition.unlock()
        waitSeconds = Date().timeIntervalSince(start)
        if let error { throw error }
    }

    /// The communication thread: buckets are reduced one after another, so the next one is
    /// always bucket `completed`. `beginStep` only runs after `finish` returned, when this
    /// thread is idle.
    private func communicate() {
        while true {
            condition.lock()
            while !stopped && (completed >= launched || failure != nil) { condition.wait() }
            if stopped { condition.unlock(); return }
            let index = completed
            let bucket = buckets[index]
            let step = self.step
            condition.unlock()
            let started = Date()
            let token = watchdog?.begin("step \(step), gradient bucket \(index + 1) of \(buckets.count) "
                                        + "(\(bucket.count * 4 / 1024) KiB), MPI_Allreduce")
            var error: Error? = nil
            let values = UnsafeMutableBufferPointer(start: gradients + bucket.lowerBound, count: bucket.count)
            do {
                switch precision {
                case .fp32:
                    try reducer.sumInPlace(values)
                case .bf16:
                    let wire = UnsafeMutableBufferPointer(rebasing: packed[0..<bucket.count])
                    for i in 0..<bucket.count { wire[i] = BFloat16.pack(values[i]) }
                    try reducer.sumInPlaceBFloat16(wire)
                    for i in 0..<bucket.count { values[i] = BFloat16.unpack(wire[i]) }
                }
            } catch let e { error = e }
            if let token { watchdog?.end(token) }
            condition.lock()
            reduceSeconds += Date().timeIntervalSince(started)
            reducedBytes += bucket.count * (precision == .bf16 ? 2 : 4)
            if let error { failure = error }
            completed += 1
            condition.broadcast()
            condition.unlock()
        }
    }

    deinit { HugePageMemory.deallocate(packed.baseAddress!) }

    public func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }
}
