import Foundation
import Testing
import MPIBridge
import UMDCore
@testable import Collective

/// Bucket cutting over the trained segments of a gradient arena.
struct BucketTests {
    @Test func segmentsAreSortedMergedAndEmptyOnesDropped() {
        #expect(GradientSynchronizer.segments([20..<30, 0..<10, 10..<12, 5..<8, 40..<40, 29..<35])
                == [0..<12, 20..<35])
    }

    @Test func bucketsCoverTheSegmentsExactlyAndNeverSpanAGap() {
        // Floats: first bucket 4 bytes·3, then 4 bytes·5.
        let segments = [0..<7, 10..<23, 30..<31]
        let buckets = GradientSynchronizer.cut(segments, bucketBytes: 20, firstBucketBytes: 12)
        #expect(buckets == [0..<3, 3..<7, 10..<15, 15..<20, 20..<23, 30..<31])
        // Every element of every segment in exactly one bucket, nothing outside them.
        let covered = buckets.flatMap { Array($0) }
        #expect(covered == segments.flatMap { Array($0) })
        for bucket in buckets {
            #expect(segments.contains { $0.contains(bucket.lowerBound) && bucket.upperBound <= $0.upperBound })
        }
    }

    @Test func aSizeBelowOneFloatStillMakesProgress() {
        #expect(GradientSynchronizer.cut([0..<3], bucketBytes: 0, firstBucketBytes: 0) == [0..<1, 1..<2, 2..<3])
    }
}

/// A stand-in for the ranks: "sums" a bucket by adding `otherRanks` copies of each element
/// (as if the other ranks held the same gradients), records the order, and can fail.
final class FakeReducer: BucketReducer, @unchecked Sendable {
    let size: Int
    let failOnCall: Int?
    private let lock = NSLock()
    private(set) var reduced: [Int] = []       // lower bounds, in the order reduced

    init(size: Int, failOnCall: Int? = nil) { self.size = size; self.failOnCall = failOnCall }

    struct Failure: Error, CustomStringConvertible { var description: String { "MPI_Allreduce failed: injected" } }

    func sumInPlace(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        lock.lock()
        let call = reduced.count
        reduced.append(call)
        lock.unlock()
        if call == failOnCall { throw Failure() }
        for i in buffer.indices { buffer[i] *= Float(size) }
    }

    /// The bf16 sum of `size` equal contributions, each addition rounded as MPI's op does.
    func sumInPlaceBFloat16(_ buffer: UnsafeMutableBufferPointer<UInt16>) throws {
        for i in buffer.indices {
            let x = BFloat16.unpack(buffer[i])
            var sum = x
            for _ in 1..<size { sum = BFloat16.unpack(BFloat16.pack(sum + x)) }
            buffer[i] = BFloat16.pack(sum)
        }
    }
}

struct BFloat16SyncTests {
    @Test func packingRoundsToNearestEvenAndKeepsSpecialValues() {
        #expect(BFloat16.unpack(BFloat16.pack(1)) == 1)
        #expect(BFloat16.unpack(BFloat16.pack(-2.5)) == -2.5)
        #expect(BFloat16.unpack(BFloat16.pack(.infinity)) == .infinity)
        #expect(BFloat16.unpack(BFloat16.pack(.nan)).isNaN)
        // 1 + 2⁻⁸ lies halfway between bf16 neighbours 1 and 1 + 2⁻⁷: ties go to even (1).
        #expect(BFloat16.unpack(BFloat16.pack(1 + 0x1p-8)) == 1)
        #expect(BFloat16.unpack(BFloat16.pack(1 + 0x1p-8 + 0x1p-12)) == 1 + 0x1p-7)
        for x: Float in [0.1, 3.14159, -7e-5, 123456] {
            #expect(abs(BFloat16.unpack(BFloat16.pack(x)) / x - 1) <= 0x1p-8)   // 8-bit significand
        }
    }

    /// The bucketed sum in bf16: every element is its bf16 sum, within the three roundings'
    /// bound of the exact one (packing 3x·u, two additions 2x·u + 3x·u: 8/3·u relative,
    /// u = 2⁻⁸), and the arena stays Float.
    @Test func bucketsSummedInBFloat16ComeBackAsFloats() throws {
        let n = 50
        let gradients = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { gradients.deallocate() }
        for i in 0..<n { gradients[i] = 1 + Float(i) / 1000 }
        let sync = GradientSynchronizer(reducer: FakeReducer(size: 3), gradients: gradients, segments: [0..<n],
                                        bucketBytes: 64, firstBucketBytes: 16, precision: .bf16, watchdog: nil)
        defer { sync.stop() }
        sync.beginStep(0)
        try sync.finish()
        for i in 0..<n {
            let exact = 3 * (1 + Double(i) / 1000)
            #expect(abs(Double(gradients[i]) / exact - 1) <= 8.0 / 3.0 * 0x1p-8, "element \(i): \(gradients[i]) vs \(exact)")
            #expect(BFloat16.unpack(BFloat16.pack(gradients[i])) == gradients[i], "element \(i) is not a bf16 value")
        }
        #expect(sync.reducedBytes == 2 * n)
    }
}

struct GradientSynchronizerTests {
    @Test func everyBucketIsSummedOnceAndGapsAreLeftAlone() throws {
        let gradients = UnsafeMutablePointer<Float>.allocate(capacity: 40)
        defer { gradients.deallocate() }
        for i in 0..<40 { gradients[i] = 1 }
        let reducer = FakeReducer(size: 3)
        let sync = GradientSynchronizer(reducer: reducer, gradients: gradients, segments: [0..<10, 20..<40],
                                        bucketBytes: 24, firstBucketBytes: 8, watchdog: nil)
        defer { sync.stop() }
        sync.beginStep(0)
        sync.gradientsReady(below: 20)       // the first segment's buckets may go now
        try sync.finish()
        #expect(reducer.reduced.count == sync.buckets.count)
        for i in 0..<40 {
            let expected: Float = (10..<20).contains(i) ? 1 : 3   // the sum over 3 "ranks", no division
            #expect(gradients[i] == expected, "element \(i)")
        }
        #expect(sync.reducedBytes == 30 * 4)
    }

    @Test func aFailingAllreduceIsRethrownByFinish() throws {
        let gradients = UnsafeMutablePointer<Float>.allocate(capacity: 64)
        defer { gradients.deallocate() }
        gradients.initialize(repeating: 1, count: 64)
        let sync = GradientSynchronizer(reducer: FakeReducer(size: 2, failOnCall: 1), gradients: gradients,
                                        segments: [0..<64], bucketBytes: 64, firstBucketBytes: 64, watchdog: nil)
        defer { sync.stop() }
        sync.beginStep(7)
        #expect(throws: FakeReducer.Failure.self) { try sync.finish() }
    }

    @Test func aSingleRankCommunicatesNothing() throws {
        let gradients = UnsafeMutablePointer<Float>.allocate(capacity: 8)
        defer { gradients.deallocate() }
        gradients.initialize(repeating: 2, count: 8)
        let reducer = FakeReducer(size: 1)
        let sync = GradientSynchronizer(reducer: reducer, gradients: gradients, segments: [0..<8], watchdog: nil)
        sync.beginStep(0)
        try sync.finish()
        #expect(reducer.reduced.isEmpty && gradients[3] == 2)
    }
}

struct WatchdogTests {
    final class Reports: @unchecked Sendable {
        let lock = NSLock()
        var items: [String] = []
        func add(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
    }

    @Test func anOperationOlderThanTheTimeoutIsReportedWithItsDescription() throws {
        let reports = Reports()
        let watchdog = StallWatchdog(timeout: 0.2, interval: 0.02) { reports.add($0) }
        defer { watchdog.stop() }
        let quick = watchdog.begin("step 1, a quick allreduce")
        watchdog.end(quick)
        _ = watchdog.begin("step 2, gradient bucket 3 of 5")
        let deadline = Date().addingTimeInterval(5)
        while reports.all.isEmpty && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        #expect(reports.all == ["step 2, gradient bucket 3 of 5"])
    }

    @Test func operationsThatEndInTimeAreNotReported() throws {
        let reports = Reports()
        let watchdog = StallWatchdog(timeout: 0.3, interval: 0.02) { reports.add($0) }
        for i in 0..<10 {
            watchdog.guarding("operation \(i)") { Thread.sleep(forTimeInterval: 0.05) }
        }
        Thread.sleep(forTimeInterval: 0.4)
        watchdog.stop()
        #expect(reports.all.isEmpty)
    }
}

struct ConsistencyTests {
    @Test func theFirstRankThatDisagreesIsNamed() throws {
        #expect(Consistency.disagreement([7, 7, 7], what: "x") == nil)
        let m = try #require(Consistency.disagreement([0xa, 0xa, 0xb, 0xc], what: "the run configuration (hash)"))
        #expect(m.description == "the run configuration (hash) differs between rank 0 (a) and rank 2 (b)")
        // Issue 24 item 22: counts were printed in hexadecimal ("rank 0 (60) and rank 1 (5f)").
        let counts = try #require(Consistency.disagreement([96, 95], what: "the number of training samples", hexadecimal: false))
        #expect(counts.description == "the number of training samples differs between rank 0 (96) and rank 1 (95)")
    }

    @Test func checksumsSeeEveryBit() {
        var a: [Float] = [1, 2, 3, 4], b = a
        b[2] = Float(bitPattern: b[2].bitPattern ^ 1)   // one bit of one element
        let ca = a.withUnsafeBufferPointer { Consistency.checksum($0.baseAddress!, count: 4) }
        let cb = b.withUnsafeBufferPointer { Consistency.checksum($0.baseAddress!, count: 4) }
        #expect(ca != cb)
        a[0] = -0.0; b = a; b[0] = 0.0
        #expect(a.withUnsafeBufferPointer { Consistency.checksum($0.baseAddress!, count: 4) }
                != b.withUnsafeBufferPointer { Consistency.checksum($0.baseAddress!, count: 4) }, "bitwise, not numeric")
    }
}
