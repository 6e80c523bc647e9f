import Foundation
import UMDCore

/// GPT-2 / RoBERTa byte-level BPE over `vocab.json` + `merges.txt`, so the real RoBERTa
/// vocabulary works unchanged. Special ids follow MODEL_SPEC.md section 3: `<s>` 0,
/// `<pad>` 1, `</s>` 2, `<unk>` 3, `<mask>` V−1.
public final class ByteLevelBPE: @unchecked Sendable {
    // Sendable: immutable after loading except the encode cache, which is guarded by a lock.
    public let vocabulary: [String: Int32]
    public let tokens: [String]                // id → token
    let ranks: [Pair: Int]
    private var cache: [String: [Int32]] = [:]
    private let cacheLock = NSLock()

    public static let specialTokens = ["<s>", "<pad>", "</s>", "<unk>"]

    struct Pair: Hashable { let a: String; let b: String }

    public var vocabularySize: Int { tokens.count }
    public var maskID: Int32 { Int32(tokens.count - 1) }

    public init(vocabulary: [String: Int32], merges: [(String, String)]) throws {
        self.vocabulary = vocabulary
        var tokens = [String](repeating: "", count: vocabulary.count)
        for (token, id) in vocabulary {
            guard id >= 0, Int(id) < vocabulary.count, tokens[Int(id)].isEmpty else {
                throw DataError.tokenizer(path: "vocab.json", problem: "ids are not a permutation of 0..<\(vocabulary.count) (id \(id) of \(token))")
            }
            tokens[Int(id)] = token
        }
        self.tokens = tokens
        var ranks: [Pair: Int] = [:]
        for (i, m) in merges.enumerated() {
            // As Hugging Face's BPE: a merge whose pieces or result the vocabulary lacks means
            // merges.txt belongs to another tokenizer (its merges would silently become <unk>).
            for token in [m.0, m.1, m.0 + m.1] where vocabulary[token] == nil {
                throw DataError.tokenizer(path: "merges.txt", problem: "merge \(i + 1) (\(m.0) \(m.1)) needs the token \(token), which "
                                + "vocab.json lacks: vocab.json and merges.txt come from different tokenizers")
            }
            if ranks[Pair(a: m.0, b: m.1)] == nil { ranks[Pair(a: m.0, b: m.1)] = i }
        }
        self.ranks = ranks
        for (name, id) in zip(Self.specialTokens, 0...) where vocabulary[name] != Int32(id) {
            throw DataError.tokenizer(path: "vocab.json", problem: "\(name) must have id \(id) (MODEL_SPEC.md section 3), found \(vocabulary[name].map(String.init) ?? "none")")
        }
        guard tokens.last == "<mask>" else {
            throw DataError.tokenizer(path: "vocab.json", problem: "<mask> must be the last id (\(tokens.count - 1)), found \(tokens.last ?? "")")
        }
    }

    /// Loads `DIR/vocab.json` and `DIR/merges.txt`.
    public convenience init(directory: URL) throws {
        let vocabURL = directory.appendingPathComponent("vocab.json"), mergesURL = directory.appendingPathComponent("merges.txt")
        guard let vocabData = try? Data(contentsOf: vocabURL) else {
            throw DataError.tokenizer(path: vocabURL.path, problem: "missing; a tokenizer directory holds vocab.json and merges.txt "
                            + "(train one with `umd-mpirun tokenizer train`, or use RoBERTa's)")
        }
        guard let raw = try? JSONSerialization.jsonObject(with: vocabData) as? [String: Any] else {
            throw DataError.tokenizer(path: vocabURL.path, problem: "not a JSON object of token → id")
        }
        var vocabulary: [String: Int32] = [:]
        for (k, v) in raw {
            guard let n = (v as? NSNumber)?.int32Value else {
                throw DataError.tokenizer(path: vocabURL.path, problem: "the id of \(k) is not a number")
            }
            vocabulary[k] = n
        }
        guard let mergesText = try? String(contentsOf: mergesURL, encoding: .utf8) else {
            throw DataError.tokenizer(path: mergesURL.path, problem: "missing or not UTF-8")
        }
        var merges: [(String, String)] = []
        for (number, line) in mergesText.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.hasSuffix("\r") ? line.dropLast() : line
            if trimmed.isEmpty || (number == 0 && trimmed.hasPrefix("#version")) { continue }
            let parts = trimmed.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw DataError.tokenizer(path: "\(mergesURL.path):\(number + 1)", problem: "a merge line holds two tokens separated by one space")
            }
            merges.append((String(parts[0]), String(parts[1])))
        }
        do { try self.init(vocabulary: vocabulary, merges: merges) } catch DataError.tokenizer(let path, let problem) {
            throw DataError.tokenizer(path: directory.path + "/" + path, problem: problem)
        }
    }

    /// Writes `vocab.json` and `merges.txt` in GPT-2's format.
    public static func write(vocabulary: [String: Int32], merges: [(String, String)], to directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let json = try JSONSerialization.data(withJSONObject: vocabulary.mapValues { Int($0) }, options: [.sortedKeys])
        try AtomicFileWriter.write(json, to: directory.appendingPathComponent("vocab.json"))
        let text = "#version: 0.2\n" + merges.map { "\($0.0) \($0.1)\n" }.joined()
        try AtomicFileWriter.write(text, to: directory.appendingPathComponent("merges.txt"))
    }

    // MARK: Encoding

    /// Pre-tokens longer than this many bytes are cut into pieces of this length before BPE
    /// encodes them, and left out of tokenizer training (`TokenizerTrainer`). BPE's merge
    /// loop is quadratic in a piece's length and training's memory grew with it: one 200 KB
    /// "word" (a base64 blob pasted into a caption) took 4.2 GB and minutes. No merge of a
    /// real vocabulary is this long, so ordinary text encodes exactly as before.
    public static let maxPieceBytes = 256

    /// `key` (byte symbols of one pre-token) in pieces of at most `maxPieceBytes` symbols.
    static func bounded(_ key: String) -> [String] {
        guard key.count > maxPieceBytes else { return [key] }
        let symbols = Array(key)
        return stride(from: 0, to: symbols.count, by: maxPieceBytes).map {
            String(symbols[$0..<min(symbols.count, $0 + maxPieceBytes)])
        }
    }

    /// Byte-level BPE ids of `text` (no special tokens).
    public func encode(_ text: String) -> [Int32] {
        var ids: [Int32] = []
        for piece in PreTokenizer.split(text) { for key in Self.bounded(ByteMapping.encode(piece)) {
            cacheLock.lock()
            let cached = cache[key]
            cacheLock.unlock()
            if let cached { ids += cached; continue }
            let pieceIDs = bpe(key).map { vocabulary[$0] ?? SpecialIDs.unknown }
            cacheLock.lock()
            if cache.count < 200_000 { cache[key] = pieceIDs }
            cacheLock.unlock()
            ids += pieceIDs
        } }
        return ids
    }

    /// `<s>` + the first L−2 tokens + `</s>`, right-padded with `<pad>` to L; attention 1 for real tokens.
    public func encodeSequence(_ text: String, length L: Int) -> (ids: [Int32], attention: [Int32]) {
        precondition(L >= 2)
        let body = encode(text).prefix(L - 2)
        var ids = [SpecialIDs.start] + body + [SpecialIDs.end]
        let real = ids.count
        ids += [Int32](repeating: SpecialIDs.pad, count: L - real)
        return (ids, (0..<L).map { $0 < real ? 1 : 0 })
    }

    /// Text of `ids`, special tokens skipped.
    public func decode(_ ids: [Int32]) -> String {
        let text = ids.filter { $0 > SpecialIDs.unknown && $0 < maskID }.map { tokens[Int($0)] }.joined()
        return ByteMapping.decode(text)
    }

    func bpe(_ word: String) -> [String] {
        var parts = word.map { String($0) }
        if parts.count < 2 { return parts }
        while true {
            var best: (rank: Int, index: Int)? = nil
            for i in 0..<(parts.count - 1) {
                if let r = ranks[Pair(a: parts[i], b: parts[i + 1])], r < (best?.rank ?? Int.max) { best = (r, i) }
            }
            guard let best else { break }
            let (a, b) = (parts[best.index], parts[best.index + 1])
            var merged: [String] = []
            merged.reserveCapacity(parts.count)
            var i = 0
            while i < parts.count {
                if i < parts.count - 1 && parts[i] == a && parts[i + 1] == b {
                    merged.append(a + b)
                    i += 2
                } else {
                    merged.append(parts[i])
                    i += 1
                }
            }
            parts = merged
            if parts.count == 1 { break }
        }
        return parts
    }
}

/// Ids of the special tokens (MODEL_SPEC.md section 3).
public enum SpecialIDs {
    public static let start: Int32 = 0, pad: Int32 = 1, end: Int32 = 2, unknown: Int32 = 3
}

/// GPT-2's reversible byte ↔ printable-character table (`bytes_to_unicode`): printable
/// Latin-1 bytes map to themselves, the other 68 to U+0100 onwards (so a space is `Ġ`).
public enum ByteMapping {
    public static let byteToCharacter: [Character] = {
        var table = [Character](repeating: " ", count: 256)
        var next = 0
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if printable {
                table[b] = Character(Unicode.Scalar(UInt8(b)))
            } else {
                table[b] = Character(Unicode.Scalar(UInt32(256 + next))!)
                next += 1
            }
        }
        return table
    }()

    public static let characterToByte: [Character: UInt8] = {
        var map: [Character: UInt8] = [:]
        for (b, c) in byteToCharacter.enumerated() { map[c] = UInt8(b) }
        return map
    }()

    public static func encode(_ text: Substring) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 { out.append(byteToCharacter[Int(byte)]) }
        return out
    }

    public static func decode(_ text: String) -> String {
        let bytes = text.compactMap { characterToByte[$0] }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// GPT-2's pre-tokenisation, written out by hand (no regex engine needed):
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
public enum PreTokenizer {
    enum Kind { case letter, number, space, other }

    static func kind(_ s: Unicode.Scalar) -> Kind {
        if s.properties.isWhitespace { return .space }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    public static func split(_ text: String) -> [Substring] {
        let scalars = text.unicodeScalars
        var indices: [String.UnicodeScalarView.Index] = []
        indices.reserveCapacity(scalars.count + 1)
        var idx = scalars.startIndex
        while idx < scalars.endIndex { indices.append(idx); idx = scalars.index(after: idx) }
        indices.append(scalars.endIndex)
        let chars = Array(scalars)
        let kinds = chars.map(kind)
        let n = chars.count
        var pieces: [Substring] = []
        var i = 0
        func emit(_ length: Int) {
            pieces.append(Substring(text.unicodeScalars[indices[i]..<indices[i + length]]))
            i += length
        }
        func run(from start: Int, _ k: Kind) -> Int {
            var j = start
            while j < n && kinds[j] == k { j += 1 }
            return j - start
        }
        while i < n {
            let c = chars[i]
            // Contractions (case-sensitive, as GPT-2).
            if c == "'" && i + 1 < n {
                let next = chars[i + 1]
                if ["s", "t", "m", "d"].contains(next) { emit(2); continue }
                if i + 2 < n {
                    let pair = String(String.UnicodeScalarView([next, chars[i + 2]]))
                    if ["re", "ve", "ll"].contains(pair) { emit(3); continue }
                }
            }
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
            let hasSpace = c == " " && i + 1 < n && kinds[i + 1] != .space
            let start = hasSpace ? i + 1 : i
            if kinds[start] != .space {
                emit((hasSpace ? 1 : 0) + run(from: start, kinds[start]))
                continue
            }
            // Whitespace: `\s+(?!\S)` leaves the last space of a run to the word after it;
            // at the end of the text, or for a single space before a word, `\s+` takes it.
            let length = run(from: i, .space)
            if i + length < n && length > 1 { emit(length - 1) } else { emit(length) }
        }
        return pieces
    }
}
