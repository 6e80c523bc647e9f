/// How a tensor is initialised when no weights are loaded (MODEL_SPEC.md section 2).
public enum ParameterInit: Sendable, Equatable {
    case normal(std: Float)
    case zeros
    case ones
}

/// What a tensor is, which decides weight decay (MODEL_SPEC.md section 10): biases and
/// LayerNorm parameters are not decayed; weights, embedding tables, tokens and position
/// tables are.
public enum ParameterRole: String, Sendable, Equatable {
    case weight, bias, layerNormWeight, layerNormBias, embedding

    public var isDecayed: Bool {
        switch self {
        case .weight, .embedding: return true
        case .bias, .layerNormWeight, .layerNormBias: return false
        }
    }
}

/// Identifies a declared tensor. The same id addresses that tensor in every store built
/// from the layout (student, teacher, moments), each with its own offsets.
public struct ParameterID: Hashable, Sendable {
    public let index: Int
}

/// A declared tensor: dotted name (MODEL_SPEC.md section 2), shape, init and role.
public struct TensorSpec: Sendable, Equatable {
    public let name: String
    public let shape: [Int]
    public let initializer: ParameterInit
    public let role: ParameterRole
    public var count: Int { shape.reduce(1, *) }
}

public enum ParameterError: Error, CustomStringConvertible {
    case duplicateName(String)
    case badShape(name: String, shape: [Int])
    case unknownName(String)

    public var description: String {
        switch self {
        case .duplicateName(let name): return "parameter \(name) is declared twice"
        case .badShape(let name, let shape): return "parameter \(name) has an invalid shape \(shape)"
        case .unknownName(let name): return "no parameter is named \(name)"
        }
    }
}

/// The list of tensors a model declares, in the order the forward pass first uses them.
/// Layers declare their tensors through it; stores are built from it.
public final class ParameterLayout: @unchecked Sendable {
    // Sendable: filled once while the model is built, read-only afterwards.
    public private(set) var specs: [TensorSpec] = []
    private var indexByName: [String: Int] = [:]

    public init() {}

    /// Declares a tensor. Names must be unique and shapes positive.
    public func declare(_ name: String, shape: [Int], initializer: ParameterInit,
                        role: ParameterRole) -> ParameterID {
        precondition(indexByName[name] == nil, "\(ParameterError.duplicateName(name))")
        precondition(!shape.isEmpty && shape.allSatisfy { $0 > 0 }, "\(ParameterError.badShape(name: name, shape: shape))")
        indexByName[name] = specs.count
        specs.append(TensorSpec(name: name, shape: shape, initializer: initializer, role: role))
        return ParameterID(index: specs.count - 1)
    }

    public func id(named name: String) -> ParameterID? { indexByName[name].map(ParameterID.init) }
    public func spec(_ id: ParameterID) -> TensorSpec { specs[id.index] }
    public var ids: [ParameterID] { specs.indices.map(ParameterID.init) }
    /// Ids whose name starts with `prefix` (e.g. "vision.", "fusion.text_layers.").
    public func ids(withPrefix prefix: String) -> [ParameterID] {
        specs.indices.filter { specs[$0].name.hasPrefix(prefix) }.map(ParameterID.init)
    }
}
