import COneDNN
import Testing
@testable import UMDModel

/// The bf16 products' inputs are rounded by oneDNN's C shim — with AVX512-BF16's convert
/// instruction where the CPU has it (issue 22's speed work), else a scalar loop. Both must
/// round as UMDCore's `BFloat16.pack` (nearest even), which the accuracy tests and the
/// emulation use; fp32 denormals are the documented exception of the instruction (flushed).
struct OneDNNConversionTests {
    @Test func theProductsRoundingIsBFloat16Pack() {
        var values: [Float] = [0, -0, 1, -1, .infinity, -.infinity, Float.greatestFiniteMagnitude, 65504, 1e-30,
                               Float(bitPattern: 0x3F80_8000),      // a tie: 1 + 2^-8 rounds to even (1)
                               Float(bitPattern: 0x3F81_8000),      // a tie that rounds up
                               Float(bitPattern: 0x7F7F_FFFF)]      // rounds to +inf
        var state: UInt64 = 12345
        for _ in 0..<10_000 {                                     // every exponent of normal floats
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let bits = UInt32(truncatingIfNeeded: state >> 32)
            let exponent = (bits >> 23) & 0xFF
            if exponent == 0 || exponent == 0xFF { continue }     // denormals, inf and NaN: above
            values.append(Float(bitPattern: bits))
        }
        values.append(contentsOf: [3, 5, 7])                      // a tail shorter than 32
        var out = [UInt16](repeating: 0, count: values.count)
        umd_onednn_to_bf16(values, Int64(values.count), &out)
        let expected = values.map(BFloat16.pack)
        let differing = zip(out, expected).filter { $0 != $1 }.count
        #expect(differing == 0, "\(differing) of \(values.count) values rounded differently")
        var nan: [UInt16] = [0]
        umd_onednn_to_bf16([Float.nan], 1, &nan)
        #expect(BFloat16.unpack(nan[0]).isNaN)
    }
}
