/// UMDModel's errors. Every message names the file or tensor and what to do.
public enum ModelError: Error, CustomStringConvertible, Sendable {
    /// A model configuration that cannot describe a model (sizes, vocabulary, head).
    case configuration(String)
    /// A file that is not a valid safetensors file.
    case safetensors(path: String, problem: String)
    /// Weights whose tensors do not fit the model (missing, extra, misshaped).
    case weights(ModelIO.Mismatch)
    /// Weights holding NaN or infinite values.
    case nonFiniteWeights(String)
    /// CLIP or RoBERTa weights that cannot be converted to umd's names.
    case conversion(String)
    /// A preset name or custom preset specification that names no model.
    case preset(String)

    public var description: String {
        switch self {
        case .configuration(let reason): return "invalid model configuration: \(reason)"
        case .safetensors(let path, let problem): return "\(path): not a valid safetensors file: \(problem)"
        case .weights(let mismatch): return mismatch.description
        case .nonFiniteWeights(let message), .conversion(let message), .preset(let message): return message
        }
    }
}
