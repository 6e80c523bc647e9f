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
        pointer = .allocate(capacity: self.capacity)
        pointer.initialize(repeating: 0, count: self.capacity)
    }

    deinit {
        if let owner { MemoryLedger.charge(owner, -capacity * MemoryLayout<Element>.stride) }
        pointer.deallocate()
    }

    /// Makes room for `count` elements (contents are lost when it grows) and returns the pointer.
    @discardableResult
    public func ensure(_ count: Int) -> UnsafeMutablePointer<Element> {
        if count > capacity {
            let charged = owner ?? MemoryLedger.currentOwner
            MemoryLedger.charge(charged, (count - (owner == nil ? 0 : capacity)) * MemoryLayout<Element>.stride)
            owner = charged
            pointer.deallocate()
            capacity = count
            pointer = .allocate(capacity: count)
            pointer.initialize(repeating: 0, count: count)
        }
        return pointer
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
