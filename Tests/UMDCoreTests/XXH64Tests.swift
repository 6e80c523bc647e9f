import Testing
import UMDCore

/// XXH64 against the reference implementation's values (python-xxhash 3.x, which wraps
/// xxhash.h), including a streamed input split at awkward places.
struct XXH64Tests {
    @Test func matchesReferenceValues() {
        #expect(XXH64.hash([]) == 0xEF46_DB37_51D8_E999)
        #expect(XXH64.hash(Array("a".utf8)) == 0xD24E_C4F1_A98C_6E5B)
        #expect(XXH64.hash(Array("abc".utf8)) == 0x44BC_2CF5_AD77_0999)
        #expect(XXH64.hash(Array("The quick brown fox jumps over the lazy dog".utf8)) == 0x0B24_2D36_1FDA_71BC)
        let long = Array((0..<3).flatMap { _ in (0...255).map { UInt8($0) } })
        #expect(XXH64.hash(long) == 0x8E03_C838_C596_036F)
        #expect(XXH64.hash(Array("abc".utf8), seed: 42) == 0x13C1_D910_7027_70E6)
    }

    @Test func streamingEqualsOneShot() {
        let long = Array((0..<3).flatMap { _ in (0...255).map { UInt8($0) } })
        for split in [1, 7, 31, 32, 33, 100, 500] {
            var x = XXH64()
            var start = 0
            while start < long.count {
                let end = min(long.count, start + split)
                x.update(Array(long[start..<end]))
                start = end
            }
            #expect(x.finalize() == 0x8E03_C838_C596_036F, "chunks of \(split)")
        }
    }
}
