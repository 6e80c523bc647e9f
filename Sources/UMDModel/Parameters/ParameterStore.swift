/// A named view into an arena: where a tensor lives and what it is.
public struct TensorView: Sendable {
    public let id: ParameterID
    public let name: String
    public let offset: Int
    public let shape: [Int]
    public let role: ParameterRole
    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset..<offset + count }
}

/// One flat Float arena for parameter values and one for gradients, same layout
/// (DESIGN.md idea 1). A store may hold a subset of the layout's tensors (the teacher
/// holds only what its pass uses).
///
/// Tensors are laid out in reverse order of declaration, i.e. reverse order of first use
/// in the forward pass, so backward finishes gradients in address order and gradient
/// buckets can be sent as they fill.
///
/// `@unchecked Sendable`: the arenas are shared with the communication thread, which only
/// touches gradient slices that backward has finished (the Collective engine enforces it).
public final class ParameterStore: @unchecked Sendable {
    public let layout: ParameterLayout
    /// Views of the included tensors, in arena (address) order.
    public let views: [TensorView]
    /// Total number of Floats in each arena.
    public let count: Int
    public let values: UnsafeMutablePointer<Float>   // [count]
    public let grads: UnsafeMutablePointer<Float>    // [count]
    private let offsetByIndex: [Int]                // -1 where the tensor is not included
    private let viewByIndex: [Int]

    /// True when the store has a gradient arena (a teacher has none).
    public let hasGradients: Bool

    /// The buffers the layers of models on this store share while each runs its backward
    /// (one backward at a time per store: its gradients accumulate here).
    public let scratch = LayerScratch()

    /// Per view (arena order): true while the view's gradients are left over from an earlier
    /// step — from `discardGradients()` until backward first writes the view or
    /// `settleGradients` zeroes it. The first writer of a weight then overwrites (sgemm with
    /// beta 0) instead of adding onto zeros: the optimizer pass need not write 0 over the
    /// whole gradient arena each step, nor the first weight-gradient product read it back.
    /// Touched by the training thread only (backward and the step around it).
    private var stale: [Bool]
    /// Views below this index are settled (`settleGradients(below:)` walks up once a step).
    private var settledViews = 0

    public init(layout: ParameterLayout, withGradients: Bool = true,
                including include: (TensorSpec) -> Bool = { _ in true }) {
        hasGradients = withGradients
        self.layout = layout
        var offsets = [Int](repeating: -1, count: layout.specs.count)
        var viewIndex = [Int](repeating: -1, count: layout.specs.count)
        var views: [TensorView] = []
        var offset = 0
        for index in layout.specs.indices.reversed() where include(layout.specs[index]) {
            let spec = layout.specs[index]
            offsets[index] = offset
            viewIndex[index] = views.count
            views.append(TensorView(id: ParameterID(index: index), name: spec.name, offset: offset,
                                    shape: spec.shape, role: spec.role))
            offset += spec.count
        }
        self.views = views
        self.count = offset
        self.offsetByIndex = offsets
        self.viewByIndex = viewIndex
        values = HugePageMemory.allocate(Float.self, capacity: max(offset, 1))
        values.initialize(repeating: 0, count: max(offset, 1))
        let gradCount = withGradients ? max(offset, 1) : 1
        grads = HugePageMemory.allocate(Float.self, capacity: gradCount)
        grads.initialize(repeating: 0, count: gradCount)
        stale = [Bool](repeating: false, count: withGradients ? views.count : 0)
        settledViews = stale.count
    }

    deinit {
        HugePageMemory.deallocate(values)
        HugePageMemory.deallocate(grads)
    }

    public func contains(_ id: ParameterID) -> Bool { offsetByIndex[id.index] >= 0 }

    @inline(__always)
    public func offset(_ id: ParameterID) -> Int {
        let offset = offsetByIndex[id.index]
        precondition(offset >= 0, "parameter \(layout.specs[id.index].name) is not held by this store")
        return offset
    }

    /// Pointer to a tensor's values.
    @inline(__always)
    public func value(_ id: ParameterID) -> UnsafeMutablePointer<Float> { values + offset(id) }
    /// Pointer to a tensor's gradient, ready to accumulate into: a view discarded this step
    /// (`discardGradients`) is zeroed first.
    @inline(__always)
    public func grad(_ id: ParameterID) -> UnsafeMutablePointer<Float> {
        precondition(hasGradients, "this store (a teacher?) has no gradients")
        let view = viewByIndex[id.index]
        let pointer = grads + offset(id)
        if stale[view] {
            pointer.update(repeating: 0, count: views[view].count)
            stale[view] = false
        }
        return pointer
    }

    /// Pointer to a tensor's gradient for a writer that covers every element: `overwrite`
    /// true when the view was discarded this step (write, do not add — no zeroing was done),
    /// false when this step has written it already (add).
    @inline(__always)
    public func gradientForOverwrite(_ id: ParameterID) -> (pointer: UnsafeMutablePointer<Float>, overwrite: Bool) {
        precondition(hasGradients, "this store (a teacher?) has no gradients")
        let view = viewByIndex[id.index]
        let overwrite = stale[view]
        stale[view] = false
        return (grads + offset(id), overwrite)
    }

    public func view(_ id: ParameterID) -> TensorView { views[viewByIndex[id.index]] }
    public func view(named name: String) -> TensorView? {
        guard let id = layout.id(named: name), contains(id) else { return nil }
        return view(id)
    }
    /// Views whose name starts with `prefix`, in arena order.
    public func views(withPrefix prefix: String) -> [TensorView] { views.filter { $0.name.hasPrefix(prefix) } }

    /// Every gradient 0 (written now); backward accumulates from there.
    public func zeroGradients() {
        guard hasGradients else { return }
        grads.update(repeating: 0, count: count)
        for i in stale.indices { stale[i] = false }
        settledViews = stale.count
    }

    /// Starts a step's gradients without writing them: every view counts as 0, its first
    /// writer overwrites it (`grad` zeroes it first, `gradientForOverwrite` says so), and
    /// `settleGradients` zeroes the views nobody wrote. Until settled, the arena holds stale
    /// values: nothing may read it but backward.
    public func discardGradients() {
        guard hasGradients else { return }
        for i in stale.indices { stale[i] = true }
        settledViews = 0
    }

    /// Backward is done with every view below arena offset `offset`: those it did not write
    /// are zeroed, so the arena below `offset` holds this step's gradients (to be read by
    /// the gradient sum, the norm, the optimizer).
    public func settleGradients(below offset: Int = .max) {
        while settledViews < stale.count && views[settledViews].range.upperBound <= offset {
            if stale[settledViews] {
                (grads + views[settledViews].offset).update(repeating: 0, count: views[settledViews].count)
                stale[settledViews] = false
            }
            settledViews += 1
        }
    }

    /// Deterministic initialisation (MODEL_SPEC.md section 2): N(0, std) drawn from a
    /// counter-based generator keyed by (seed, tensor name), so a tensor's initial values
    /// do not depend on which other tensors exist or on their order.
    public func initialize(seed: UInt64) {
        for view in views {
            let p = values + view.offset
            switch layout.spec(view.id).initializer {
            case .zeros: p.update(repeating: 0, count: view.count)
            case .ones: p.update(repeating: 1, count: view.count)
            case .normal(let std):
                let key = CounterRandom.key(seed, CounterRandom.hash(view.name))
                for i in 0..<view.count { p[i] = Float(CounterRandom.normal(key, UInt64(i))) * std }
            }
        }
    }

    /// Copies every tensor this store shares with `other` (by id) from `other`.
    public func copyValues(from other: ParameterStore) {
        for view in views where other.contains(view.id) {
            (values + view.offset).update(from: other.value(view.id), count: view.count)
        }
    }
}

extension ParameterStore {
    /// The tensors holding NaN or infinite values, with how many each (empty: all finite).
    public func nonFiniteTensors() -> [(name: String, count: Int)] {
        views.compactMap { view in
            let p = values + view.offset
            var bad = 0
            for i in 0..<view.count where !p[i].isFinite { bad += 1 }
            return bad == 0 ? nil : (view.name, bad)
        }
    }

    /// Throws when any value is NaN or infinite, naming the first tensors (`what` says whose).
    public func requireFinite(_ what: String) throws {
        let bad = nonFiniteTensors()
        guard !bad.isEmpty else { return }
        throw ModelError.nonFiniteWeights("\(what) hold non-finite values in \(bad.count) tensor(s): "
                               + bad.prefix(5).map { "\($0.name) (\($0.count))" }.joined(separator: ", ")
                               + (bad.count > 5 ? ", …" : "") + "; these weights come from a diverged run")
    }
}
