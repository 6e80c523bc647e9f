import HeapModule

/// Learns a byte-level BPE vocabulary from texts, GPT-2 style: pre-tokenise, start from the
/// 256 byte symbols, repeatedly merge the most frequent adjacent pair (ties: the pair that
/// sorts first, so training is deterministic) until the vocabulary is full. The result
/// uses MODEL_SPEC.md's special ids: `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, the byte
/// symbols from 4, the merges after them, `<mask>` last.
public enum TokenizerTrainer {
    public struct Result {
        public var vocabulary: [String: Int32]
        public var merges: [(String, String)]
        /// Pre-tokens longer than `ByteLevelBPE.maxPieceBytes` left out of training.
        public var longPiecesLeftOut = 0
    }

    struct Candidate: Comparable {
        let count: Int
        let pair: ByteLevelBPE.Pair
        // Max-heap on count; among equal counts the lexicographically smaller pair first.
        static func < (x: Candidate, y: Candidate) -> Bool {
            if x.count != y.count { return x.count < y.count }
            return (x.pair.a, x.pair.b) > (y.pair.a, y.pair.b)
        }
    }

    public static func train(texts: [String], vocabularySize: Int, minimumFrequency: Int = 2) -> Result {
        precondition(vocabularySize >= 4 + 256 + 1, "a byte-level vocabulary needs at least 261 ids")
        // Word frequencies after pre-tokenisation, as byte-symbol strings.
        var frequency: [String: Int] = [:]
        // Pre-tokens longer than ByteLevelBPE.maxPieceBytes (a base64 blob or a URL pasted into a
        // caption, not words) are left out: merge search over them grows with their length
        // times the merges learnt (one random 200 KB "word" took 3 minutes and 1 GB even cut
        // into pieces), and they would fill the vocabulary with fragments of noise. Encoding
        // cuts them into pieces, which the byte symbols and the merges learnt from words cover.
        var longPieces = 0
        for text in texts {
            for piece in PreTokenizer.split(text) {
                let key = ByteMapping.encode(piece)
                if key.count > ByteLevelBPE.maxPieceBytes { longPieces += 1; continue }
                frequency[key, default: 0] += 1
            }
        }
        let sortedWords = frequency.keys.sorted()
        var words: [[String]] = sortedWords.map { $0.map { String($0) } }
        let counts = sortedWords.map { frequency[$0]! }

        var pairCount: [ByteLevelBPE.Pair: Int] = [:]
        var pairWords: [ByteLevelBPE.Pair: Set<Int>] = [:]
        for (w, symbols) in words.enumerated() where symbols.count > 1 {
            for i in 0..<(symbols.count - 1) {
                let p = ByteLevelBPE.Pair(a: symbols[i], b: symbols[i + 1])
                pairCount[p, default: 0] += counts[w]
                pairWords[p, default: []].insert(w)
            }
        }
        var heap = Heap(pairCount.map { Candidate(count: $0.value, pair: $0.key) })

        var merges: [(String, String)] = []
        let mergeBudget = vocabularySize - 4 - 256 - 1
        while merges.count < mergeBudget, let top = heap.popMax() {
            guard let current = pairCount[top.pair], current == top.count else {
                // Stale entry: re-queue with the current count if the pair still occurs.
                if let current = pairCount[top.pair], current > 0 { heap.insert(Candidate(count: current, pair: top.pair)) }
                continue
            }
            if current < minimumFrequency { break }
            merges.append((top.pair.a, top.pair.b))
            let merged = top.pair.a + top.pair.b
            var touched: [ByteLevelBPE.Pair: Int] = [:]
            for w in pairWords[top.pair] ?? [] {
                let old = words[w]
                var new: [String] = []
                var i = 0
                while i < old.count {
                    if i < old.count - 1 && old[i] == top.pair.a && old[i + 1] == top.pair.b {
                        new.append(merged); i += 2
                    } else {
                        new.append(old[i]); i += 1
                    }
                }
                // Replace the word's pair counts.
                for i in 0..<max(0, old.count - 1) {
                    let p = ByteLevelBPE.Pair(a: old[i], b: old[i + 1])
                    pairCount[p, default: 0] -= counts[w]
                    touched[p] = 0
                }
                for i in 0..<max(0, new.count - 1) {
                    let p = ByteLevelBPE.Pair(a: new[i], b: new[i + 1])
                    pairCount[p, default: 0] += counts[w]
                    pairWords[p, default: []].insert(w)
                    touched[p] = 0
                }
                words[w] = new
            }
            pairCount[top.pair] = nil
            pairWords[top.pair] = nil
            for p in touched.keys {
                if let c = pairCount[p], c > 0 { heap.insert(Candidate(count: c, pair: p)) } else { pairCount[p] = nil }
            }
        }

        var vocabulary: [String: Int32] = [:]
        for (i, name) in ByteLevelBPE.specialTokens.enumerated() { vocabulary[name] = Int32(i) }
        for c in ByteMapping.byteToCharacter { vocabulary[String(c)] = Int32(vocabulary.count) }
        for (a, b) in merges where vocabulary[a + b] == nil { vocabulary[a + b] = Int32(vocabulary.count) }
        vocabulary["<mask>"] = Int32(vocabulary.count)
        return Result(vocabulary: vocabulary, merges: merges, longPiecesLeftOut: longPieces)
    }
}
