/// A growable block of Floats for activations and their gradients.
///
/// Layers size their buffers on the first step (`ensure`) and reuse them afterwards, so a
/// training step allocates nothing once shapes are known. Memory is not initialised
/// unless asked for.
///
/// `@unchecked Sendable`: a buffer belongs to one layer of one model replica and is only
/// touched by the thread running that replica's step.
public final class FloatBuffer: @unchecked Sendable {
    public private(set) var pointer: UnsafeMutablePointer<Float>
    public private(set) var capacity: Int

    public init(capacity: Int = 0) {
        self.capacity = max(capacity, 1)
        pointer = .allocate(capacity: self.capacity)
        pointer.initialize(repeating: 0, count: self.capacity)
    }

    deinit { pointer.deallocate() }

    /// Makes room for `count` Floats (contents are lost when it grows) and returns the pointer.
    @discardableResult
    public func ensure(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            pointer.deallocate()
            capacity = count
            pointer = .allocate(capacity: count)
            pointer.initialize(repeating: 0, count: count)
        }
        return pointer
    }

    /// Makes room for `count` Floats and sets them to zero.
    @discardableResult
    public func zeroed(_ count: Int) -> UnsafeMutablePointer<Float> {
        let p = ensure(count)
        p.update(repeating: 0, count: count)
        return p
    }
}

/// A growable block of Int32 (token ids, indices).
public final class IntBuffer: @unchecked Sendable {
    public private(set) var pointer: UnsafeMutablePointer<Int32>
    public private(set) var capacity: Int

    public init(capacity: Int = 0) {
        self.capacity = max(capacity, 1)
        pointer = .allocate(capacity: self.capacity)
        pointer.initialize(repeating: 0, count: self.capacity)
    }

    deinit { pointer.deallocate() }

    @discardableResult
    public func ensure(_ count: Int) -> UnsafeMutablePointer<Int32> {
        if count > capacity {
            pointer.deallocate()
            capacity = count
            pointer = .allocate(capacity: count)
            pointer.initialize(repeating: 0, count: count)
        }
        return pointer
    }
}
