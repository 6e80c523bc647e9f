import Foundation

/// Model sizes (MODEL_SPEC.md section 1). `base` is the paper's model.
public struct ModelPreset: Sendable, Equatable, Codable {
    public let name: String
    public let imageSize: Int          // H = W
    public let patchSize: Int          // P
    public let width: Int              // Dv = Dt = D
    public let visionLayers: Int
    public let textLayers: Int
    public let fusionLayers: Int       // per stream
    public let heads: Int
    public let decoderWidth: Int       // Dd
    public let decoderLayers: Int
    public let decoderHeads: Int
    public let projectionWidth: Int    // Dp
    public let textLength: Int         // L for pretraining
    public let maxTextLength: Int      // L_max of the position table
    /// Vocabulary size fixed by the preset (base: RoBERTa's); nil = the tokenizer's.
    public let vocabularySize: Int?

    public var gridSize: Int { imageSize / patchSize }
    public var patchCount: Int { gridSize * gridSize }                  // N
    public var keptPatchCount: Int { patchCount / 4 }                    // K = floor(N · 0.25)
    public var patchLength: Int { 3 * patchSize * patchSize }            // C·P·P

    public static let tiny = ModelPreset(
        name: "tiny", imageSize: 32, patchSize: 8, width: 64, visionLayers: 2, textLayers: 2, fusionLayers: 2,
        heads: 4, decoderWidth: 32, decoderLayers: 1, decoderHeads: 2, projectionWidth: 32, textLength: 16,
        maxTextLength: 128, vocabularySize: nil)
    public static let small = ModelPreset(
        name: "small", imageSize: 64, patchSize: 8, width: 256, visionLayers: 4, textLayers: 4, fusionLayers: 2,
        heads: 8, decoderWidth: 128, decoderLayers: 2, decoderHeads: 4, projectionWidth: 128, textLength: 32,
        maxTextLength: 128, vocabularySize: nil)
    public static let base = ModelPreset(
        name: "base", imageSize: 288, patchSize: 16, width: 768, visionLayers: 11, textLayers: 12, fusionLayers: 6,
        heads: 12, decoderWidth: 384, decoderLayers: 4, decoderHeads: 6, projectionWidth: 384, textLength: 64,
        maxTextLength: 512, vocabularySize: 50265)

    public static let all = [tiny, small, base]

    /// A named preset or a custom one (`custom:width=…,…`, as `name` spells it); nil when
    /// `name` is neither (`parse` says why).
    public static func named(_ name: String) -> ModelPreset? { try? parse(name) }

    /// A named preset, or a custom preset from its full specification (the form a custom
    /// preset's `name` has, which weights metadata, `config.json` and manifests record).
    public static func parse(_ text: String) throws -> ModelPreset {
        if let p = all.first(where: { $0.name == text }) { return p }
        guard text.hasPrefix(customPrefix) else {
            throw ModelError.preset("unknown preset \(text); choose tiny, small or base (or a custom preset: "
                                             + "custom:" + CustomKey.allCases.map { "\($0.rawValue)=N" }.joined(separator: ",") + ")")
        }
        return try custom(customValues(text))
    }

    // MARK: - Custom presets

    /// The sizes a custom preset names, in the order its name lists them (`vocabulary` may be
    /// left out: then the tokenizer's).
    public enum CustomKey: String, CaseIterable, Sendable {
        case width, heads, patch, image
        case visionLayers = "vision-layers", textLayers = "text-layers", fusionLayers = "fusion-layers"
        case decoderWidth = "decoder-width", decoderLayers = "decoder-layers", decoderHeads = "decoder-heads"
        case projection
        case textLength = "text-length", maxTextLength = "max-text-length"
        case vocabulary
    }

    public static let customPrefix = "custom"

    /// The `key=value` pairs of `custom` or `custom:k=v,…` (possibly only some keys: `convert`
    /// fills the rest from the files). Unknown keys and values that are not positive integers
    /// are errors naming them.
    public static func customValues(_ text: String) throws -> [CustomKey: Int] {
        guard text == customPrefix || text.hasPrefix(customPrefix + ":") else {
            throw ModelError.preset("'\(text)' is not a custom preset (custom or custom:key=value,…)")
        }
        var values: [CustomKey: Int] = [:]
        for pair in text.dropFirst(customPrefix.count + 1).split(separator: ",", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let key = CustomKey(rawValue: parts[0]) else {
                throw ModelError.preset("custom preset: '\(pair)' is not key=value with a key among "
                                                 + CustomKey.allCases.map(\.rawValue).joined(separator: ", "))
            }
            guard let value = Int(parts[1]), value > 0 else {
                throw ModelError.preset("custom preset: \(key.rawValue)=\(parts[1]) must be a positive integer")
            }
            guard values[key] == nil else { throw ModelError.preset("custom preset: \(key.rawValue) given twice") }
            values[key] = value
        }
        return values
    }

    /// A custom preset from every size (vocabulary optional), checked against what the
    /// architecture needs: heads divide the widths, the patch divides the image into at least
    /// 2 x 2 patches, the text length fits the position table.
    public static func custom(_ v: [CustomKey: Int]) throws -> ModelPreset {
        let missing = CustomKey.allCases.filter { $0 != .vocabulary && v[$0] == nil }
        guard missing.isEmpty else {
            throw ModelError.preset("custom preset: missing " + missing.map(\.rawValue).joined(separator: ", "))
        }
        func value(_ k: CustomKey) -> Int { v[k]! }
        var problems: [String] = []
        if value(.width) % value(.heads) != 0 { problems.append("heads (\(value(.heads))) must divide width (\(value(.width)))") }
        if value(.decoderWidth) % value(.decoderHeads) != 0 {
            problems.append("decoder-heads (\(value(.decoderHeads))) must divide decoder-width (\(value(.decoderWidth)))")
        }
        if value(.image) % value(.patch) != 0 || value(.image) / value(.patch) < 2 {
            problems.append("image (\(value(.image))) must be a multiple of patch (\(value(.patch))) with at least 2 x 2 patches")
        }
        if value(.textLength) < 3 || value(.textLength) > value(.maxTextLength) {
            problems.append("text-length (\(value(.textLength))) must be in 3...max-text-length (\(value(.maxTextLength)))")
        }
        guard problems.isEmpty else {
            throw ModelError.preset("custom preset does not fit the architecture: " + problems.joined(separator: "; "))
        }
        let name = customPrefix + ":" + CustomKey.allCases.compactMap { k in v[k].map { "\(k.rawValue)=\($0)" } }
            .joined(separator: ",")
        return ModelPreset(name: name, imageSize: value(.image), patchSize: value(.patch), width: value(.width),
                           visionLayers: value(.visionLayers), textLayers: value(.textLayers),
                           fusionLayers: value(.fusionLayers), heads: value(.heads), decoderWidth: value(.decoderWidth),
                           decoderLayers: value(.decoderLayers), decoderHeads: value(.decoderHeads),
                           projectionWidth: value(.projection), textLength: value(.textLength),
                           maxTextLength: value(.maxTextLength), vocabularySize: v[.vocabulary])
    }

    /// Whether this is a custom preset (its name is its whole specification).
    public var isCustom: Bool { name.hasPrefix(Self.customPrefix + ":") }

    /// The short name for messages: the preset's name, or "custom (width 512, 8 heads, …)".
    public var label: String {
        guard isCustom else { return name }
        return "custom (width \(width), \(heads) heads, \(visionLayers)+\(textLayers)+\(fusionLayers) layers, "
            + "\(imageSize) px / \(patchSize))"
    }
}
