import Foundation

/// The VQA answer vocabulary: normalised answers over all splits in order of first
/// appearance, saved with a run so evaluation uses the same map.
public struct AnswerVocabulary: Sendable, Equatable, Codable {
    public private(set) var answers: [String] = []
    private var index: [String: Int] = [:]

    public init(answers: [String] = []) { for a in answers { add(a) } }

    public mutating func add(_ answer: String) {
        let a = Self.normalize(answer)
        if index[a] == nil { index[a] = answers.count; answers.append(a) }
    }

    public func id(of answer: String) -> Int? { index[Self.normalize(answer)] }
    public var count: Int { answers.count }

    enum CodingKeys: String, CodingKey { case answers }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(answers: try c.decode([String].self, forKey: .answers))
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(answers, forKey: .answers)
    }

    static let articles: Set<String> = ["a", "an", "the"]
    /// The VQA evaluation's word map, which M3AE's answer preprocessing applies (so the
    /// papers' answer classes): number words become digits, "none" becomes "0".
    static let numbers: [String: String] = ["none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                                            "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"]

    /// Lower-case, trimmed, punctuation removed (a decimal point between digits kept),
    /// articles dropped, number words as digits (the VQA evaluation's map), whitespace collapsed.
    public static func normalize(_ answer: String) -> String {
        let lower = answer.lowercased()
        var cleaned = ""
        let chars = Array(lower)
        for (i, c) in chars.enumerated() {
            if c.isLetter || c.isNumber || c.isWhitespace {
                cleaned.append(c)
            } else if c == ".", i > 0, i + 1 < chars.count, chars[i - 1].isNumber, chars[i + 1].isNumber {
                cleaned.append(c)
            } else {
                cleaned.append(" ")
            }
        }
        return cleaned.split(whereSeparator: \.isWhitespace).map(String.init)
            .filter { !articles.contains($0) }.map { numbers[$0] ?? $0 }.joined(separator: " ")
    }

    /// An answer as text: strings as they are, numbers as their shortest text (2, 2.5).
    public static func text(of value: Any) -> String? {
        if let s = value as? String { return s }
        if let n = value as? NSNumber {
            let d = n.doubleValue
            return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d)
        }
        return nil
    }
}
