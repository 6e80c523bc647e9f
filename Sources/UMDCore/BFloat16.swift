/// bfloat16 (the top 16 bits of an IEEE float): an 8-bit significand, relative rounding
/// error ≤ 2⁻⁸. Used by the gradient sum `--sync-precision bf16` (half the bytes on the
/// wire) and by the tests that measure what bf16 matrix products would do to training.
public enum BFloat16 {
    /// Round to nearest even; NaN stays NaN, ±∞ stays ±∞.
    @inlinable @inline(__always)
    public static func pack(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
        let rounding = ((bits >> 16) & 1) &+ 0x7FFF
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    @inlinable @inline(__always)
    public static func unpack(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

    /// x rounded to the nearest bfloat16 (as a Float).
    @inlinable @inline(__always)
    public static func round(_ x: Float) -> Float { unpack(pack(x)) }
}

