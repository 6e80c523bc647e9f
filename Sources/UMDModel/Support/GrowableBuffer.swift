import Foundation

/// A growable block of scalars for activations, their gradients and token ids.
///
/// Layers size their buffers on the first step (`ensure`) and reuse them afterwards, so a
/// training step allocates nothing once shapes are known. Growing loses the contents.
///
/// `@unchecked Sendable`: a buffer belongs to one layer of one model replica and is only
/// touched by the thread running that replica's step.
public final class GrowableBuffer<Element: Numeric>: @unchecked Sendable {
    public private(set) var pointer: UnsafeMutablePointer<Element>
    public private(set) var capacity: Int
    /// Who is charged for these bytes (`MemoryLedger`): the owner current at the first growth.
    private var owner: String? = nil

    public init(capacity: Int = 0) {
        self.capacity = max(capacity, 1)
        pointer = HugePageMemory.allocate(Element.self, capacity: self.capacity)
        pointer.initialize(repeating: 0, count: self.capacity)
    }

    deinit {
        if let owner, capacity > 0 { MemoryLedger.charge(owner, -capacity * MemoryLayout<Element>.stride) }
        HugePageMemory.deallocate(pointer)
    }

    /// Makes room for `count` elements (contents are lost when it grows) and returns the pointer.
    @discardableResult
    public func ensure(_ count: Int) -> UnsafeMutablePointer<Element> {
        if count > capacity {
            let charged = owner ?? MemoryLedger.currentOwner
            if let pool = pool ?? BufferPool.lending, let taken = pool.take(atLeast: count * MemoryLayout<Element>.stride) {
                // An allocation the pool holds (at least `count` elements), with its bytes,
                // in place of the one this buffer had (charged unless never grown).
                let oldBytes = owner == nil ? 0 : capacity * MemoryLayout<Element>.stride
                HugePageMemory.deallocate(pointer)
                pointer = taken.pointer.assumingMemoryBound(to: Element.self)
                capacity = taken.bytes / MemoryLayout<Element>.stride
                MemoryLedger.charge(charged, taken.bytes - oldBytes)
                owner = charged
                return pointer
            }
            MemoryLedger.charge(charged, (count - (owner == nil ? 0 : capacity)) * MemoryLayout<Element>.stride)
            owner = charged
            HugePageMemory.deallocate(pointer)
            capacity = count
            pointer = HugePageMemory.allocate(Element.self, capacity: count)
            pointer.initialize(repeating: 0, count: count)
        }
        return pointer
    }

    /// The pool this buffer gave its allocation to (`release(to:)`); its next growth takes one back.
    private var pool: BufferPool? = nil

    /// Gives the allocation to `pool` (the bytes are charged to the pool while there) and
    /// keeps none: `--recompute blocks` hands a block's inside to the next block this way,
    /// and backward takes it back to compute the block again. The contents are lost.
    public func release(to pool: BufferPool) {
        guard capacity > 1 else { return }
        let bytes = capacity * MemoryLayout<Element>.stride
        if let owner { MemoryLedger.charge(owner, -bytes) }
        pool.put(UnsafeMutableRawPointer(pointer), bytes: bytes)
        pointer = HugePageMemory.allocate(Element.self, capacity: 1)
        pointer.initialize(to: 0)
        capacity = 0
        self.pool = pool
    }

    /// Makes room for `count` elements and sets them to zero.
    @discardableResult
    public func zeroed(_ count: Int) -> UnsafeMutablePointer<Element> {
        let p = ensure(count)
        p.update(repeating: 0, count: count)
        return p
    }
}

public typealias FloatBuffer = GrowableBuffer<Float>
public typealias IntBuffer = GrowableBuffer<Int32>

/// Allocations buffers have released (`GrowableBuffer.release(to:)`), handed to the next
/// buffer that grows: `--recompute blocks` keeps one block's inside in flight instead of one
/// per block. Best fit by size; what sits here is charged to its own ledger line.
/// One per encoder (its blocks' buffers have the same sizes): touched by the thread running
/// its step.
public final class BufferPool: @unchecked Sendable {
    private var free: [(pointer: UnsafeMutableRawPointer, bytes: Int)] = []
    /// The ledger line the pooled bytes are charged to.
    let ledgerOwner: String

    public init(ledgerOwner: String = "recompute: a block's inside, between blocks") { self.ledgerOwner = ledgerOwner }

    deinit { for f in free { HugePageMemory.deallocate(f.pointer.assumingMemoryBound(to: UInt8.self)) } }

    static let threadKey = "umd.BufferPool.lending"

    /// The pool buffers growing on this thread take from first (inside `lend`), else nil.
    static var lending: BufferPool? { Thread.current.threadDictionary[threadKey] as? BufferPool }

    /// Runs `body` with every buffer that grows in it taking an allocation of this pool if
    /// one fits — how a block's first forward reuses what the block before it released.
    public func lend<T>(_ body: () throws -> T) rethrows -> T {
        let saved = Thread.current.threadDictionary[Self.threadKey]
        Thread.current.threadDictionary[Self.threadKey] = self
        defer { Thread.current.threadDictionary[Self.threadKey] = saved }
        return try body()
    }

    func put(_ pointer: UnsafeMutableRawPointer, bytes: Int) {
        free.append((pointer, bytes))
        MemoryLedger.charge(ledgerOwner, bytes)
    }

    /// The smallest allocation of at least `bytes`, nil when none is that large.
    func take(atLeast bytes: Int) -> (pointer: UnsafeMutableRawPointer, bytes: Int)? {
        var best: Int? = nil
        for (i, f) in free.enumerated() where f.bytes >= bytes && (best == nil || f.bytes < free[best!].bytes) { best = i }
        guard let best else { return nil }
        let taken = free.remove(at: best)
        MemoryLedger.charge(ledgerOwner, -taken.bytes)
        return taken
    }
}
