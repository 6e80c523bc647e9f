import Foundation
import Testing
@testable import UMDData

struct TokenizerTests {
    /// A small RoBERTa-style tokenizer: specials, the 256 byte symbols, a few merges, <mask>.
    func smallTokenizer() throws -> ByteLevelBPE {
        let merges: [(String, String)] = [("Ġ", "c"), ("l", "e"), ("Ġc", "le"), ("a", "r"), ("Ġcle", "ar"), ("u", "n"),
                                          ("Ġ", "l"), ("Ġl", "un"), ("Ġlun", "g"), ("Ġ", "t"), ("h", "e"), ("Ġt", "he")]
        var vocab: [String: Int32] = ["<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3]
        for c in ByteMapping.byteToCharacter { vocab[String(c)] = Int32(vocab.count) }
        for (a, b) in merges where vocab[a + b] == nil { vocab[a + b] = Int32(vocab.count) }
        vocab["<mask>"] = Int32(vocab.count)
        return try ByteLevelBPE(vocabulary: vocab, merges: merges)
    }

    func tokens(_ t: ByteLevelBPE, _ text: String) -> [String] { t.encode(text).map { t.tokens[Int($0)] } }

    @Test func preTokenisationFollowsGPT2() {
        func split(_ s: String) -> [String] { PreTokenizer.split(s).map(String.init) }
        #expect(split("Hello world") == ["Hello", " world"])
        #expect(split("it's 12 mm.") == ["it", "'s", " 12", " mm", "."])
        #expect(split("a  b") == ["a", " ", " b"])
        #expect(split("a\nb") == ["a", "\n", "b"])
        #expect(split("end  ") == ["end", "  "])
        #expect(split("x-ray's T2-weighted") == ["x", "-", "ray", "'s", " T", "2", "-", "weighted"])
        #expect(split("don't they'll") == ["don", "'t", " they", "'ll"])
        #expect(split("naïve café 東京") == ["naïve", " café", " 東京"])
    }

    @Test func encodesLikeRoBERTaWithLeadingSpaceAsĠ() throws {
        let t = try smallTokenizer()
        // Hand-checked with the merge ranks above: " lung" → Ġ l u n g → (u n) → (Ġ l) → (Ġl un) → (Ġlun g).
        #expect(tokens(t, " lung") == ["Ġlung"])
        #expect(tokens(t, "the lung is clear") == ["t", "he", "Ġlung", "Ġ", "i", "s", "Ġclear"])
        #expect(tokens(t, "Lung") == ["L", "un", "g"])
        #expect(tokens(t, " the") == ["Ġthe"])
        // Non-ASCII bytes map through GPT-2's table: é is 0xC3 0xA9 → "Ã©".
        #expect(tokens(t, "é") == ["Ã", "©"])
        let (ids, attention) = t.encodeSequence("the lung is clear", length: 6)
        #expect(ids.count == 6 && ids.first == 0 && ids.last == 2 && attention == [1, 1, 1, 1, 1, 1])
        let (short, mask) = t.encodeSequence(" lung", length: 5)
        #expect(short == [0, t.vocabulary["Ġlung"]!, 2, 1, 1] && mask == [1, 1, 1, 0, 0])
        #expect(t.maskID == Int32(t.vocabularySize - 1))
    }

    @Test func decodeInvertsEncodeOnRandomUnicode() throws {
        let t = try smallTokenizer()
        var generator = SystemRandomNumberGenerator()
        let pools: [ClosedRange<UInt32>] = [0x20...0x7E, 0xA0...0x24F, 0x370...0x3FF, 0x4E00...0x4E80, 0x1F600...0x1F64F, 0x9...0xD]
        for _ in 0..<200 {
            var s = ""
            for _ in 0..<Int.random(in: 0...40, using: &generator) {
                let pool = pools.randomElement(using: &generator)!
                if let scalar = Unicode.Scalar(UInt32.random(in: pool, using: &generator)) { s.unicodeScalars.append(scalar) }
            }
            #expect(t.decode(t.encode(s)) == s, "\(s.unicodeScalars.map { String($0.value, radix: 16) })")
        }
    }

    @Test func trainedTokenizerWritesLoadsAndRoundTrips() throws {
        let texts = (0..<200).map { "Axial CT of the brain showing a \(["small", "large"][$0 % 2]) lesion number \($0)." }
        let result = TokenizerTrainer.train(texts: texts, vocabularySize: 320)
        #expect(result.vocabulary.count <= 320 && result.vocabulary["<mask>"] == Int32(result.vocabulary.count - 1))
        #expect(result.merges.first.map { "\($0.0) \($0.1)" } != nil)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("umd-tok-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try ByteLevelBPE.write(vocabulary: result.vocabulary, merges: result.merges, to: dir)
        let t = try ByteLevelBPE(directory: dir)
        #expect(t.vocabularySize == result.vocabulary.count)
        let text = "Axial CT of the brain showing a large lesion."
        #expect(t.decode(t.encode(text)) == text)
        #expect(t.encode(text).count < text.utf8.count / 2, "merges compress frequent words")
        // Deterministic: the same texts give the same merges.
        #expect(TokenizerTrainer.train(texts: texts, vocabularySize: 320).merges.map { $0.0 + " " + $0.1 }
                == result.merges.map { $0.0 + " " + $0.1 })
    }

    @Test func badTokenizerDirectoriesGiveClearErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("umd-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect { try ByteLevelBPE(directory: dir) } throws: { "\($0)".contains("vocab.json: missing") }
        try Data(#"{"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "a": 4}"#.utf8).write(to: dir.appendingPathComponent("vocab.json"))
        try Data("#version: 0.2\n".utf8).write(to: dir.appendingPathComponent("merges.txt"))
        #expect { try ByteLevelBPE(directory: dir) } throws: { "\($0)".contains("<mask> must be the last id") }
    }

    // Issue 24 item 2: a merges.txt from another tokenizer was accepted (its merges became <unk>).
    @Test func mergesNeedingTokensTheVocabularyLacksAreRefused() throws {
        var vocab: [String: Int32] = ["<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3]
        for c in ByteMapping.byteToCharacter { vocab[String(c)] = Int32(vocab.count) }
        vocab["<mask>"] = Int32(vocab.count)
        #expect { try ByteLevelBPE(vocabulary: vocab, merges: [("l", "e")]) } throws: {
            "\($0)".contains("merge 1 (l e) needs the token le") && "\($0)".contains("different tokenizers")
        }
    }

    // Issue 24 item 19: one 200 KB token took 4.2 GB and minutes to train on. Pre-tokens over
    // ByteLevelBPE.maxPieceBytes are left out of training and cut into pieces when encoding.
    @Test func aHugeTokenTrainsAndEncodesInBoundedPieces() throws {
        var random = SystemRandomNumberGenerator()
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        let blob = String((0..<200_000).map { _ in letters[Int(random.next() % 26)] })
        let texts = ["the lung is clear", blob, "no pleural effusion", "the heart is normal"]
        let clock = ContinuousClock().now
        let result = TokenizerTrainer.train(texts: texts, vocabularySize: 300)
        let seconds = Double((ContinuousClock().now - clock).components.seconds)
        #expect(seconds < 60, "training took \(seconds) s")
        #expect(result.longPiecesLeftOut == 1)
        #expect(result.merges.allSatisfy { ($0.0 + $0.1).count <= ByteLevelBPE.maxPieceBytes })
        let t = try ByteLevelBPE(vocabulary: result.vocabulary, merges: result.merges)
        // The long word encodes as its 256-byte pieces would, one after another.
        let ids = t.encode(blob)
        let pieces = stride(from: 0, to: blob.count, by: ByteLevelBPE.maxPieceBytes).map { start -> [Int32] in
            let a = blob.index(blob.startIndex, offsetBy: start)
            let b = blob.index(a, offsetBy: min(ByteLevelBPE.maxPieceBytes, blob.count - start))
            return t.encode(String(blob[a..<b]))
        }
        #expect(ids == pieces.flatMap { $0 })
        #expect(t.decode(ids) == blob)
        // Ordinary text is untouched by the bound.
        #expect(t.decode(t.encode("the lung is clear")) == "the lung is clear")
    }
}
