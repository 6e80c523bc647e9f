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
        values = .allocate(capacity: max(offset, 1))
        values.initialize(repeating: 0, count: max(offset, 1))
        let gradCount = withGradients ? max(offset, 1) : 1
        grads = .allocate(capacity: gradCount)
        grads.initialize(repeating: 0, count: gradCount)
    }

    deinit {
        values.deallocate()
        grads.deallocate()
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
    /// Pointer to a tensor's gradient.
    @inline(__always)
    public func grad(_ id: ParameterID) -> UnsafeMutablePointer<Float> {
        precondition(hasGradients, "this store (a teacher?) has no gradients")
        return grads + offset(id)
    }

    public func view(_ id: ParameterID) -> TensorView { views[viewByIndex[id.index]] }
    public func view(named name: String) -> TensorView? {
        guard let id = layout.id(named: name), contains(id) else { return nil }
        return view(id)
    }
    /// Views whose name starts with `prefix`, in arena order.
    public func views(withPrefix prefix: String) -> [TensorView] { views.filter { $0.name.hasPrefix(prefix) } }

    public func zeroGradients() { if hasGradients { grads.update(repeating: 0, count: count) } }

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
        throw NonFiniteWeights(message: "\(what) hold non-finite values in \(bad.count) tensor(s): "
                               + bad.prefix(5).map { "\($0.name) (\($0.count))" }.joined(separator: ", ")
                               + (bad.count > 5 ? ", …" : "") + "; these weights come from a diverged run")
    }
}

public struct NonFiniteWeights: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
