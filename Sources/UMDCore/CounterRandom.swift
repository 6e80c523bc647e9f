/// Counter-based random numbers (MODEL_SPEC.md section 10a).
///
/// A value is a pure function of (key, counter): no generator state exists, so a number
/// drawn for "sample 1234, site 7" is the same on any rank, in any order, after a resume.
/// The mixer is SplitMix64's finaliser, applied to the key and the counter in turn.
public enum CounterRandom {
    @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Derives a key from a parent key and a label (a site, a step, a sample index…).
    @inline(__always)
    public static func key(_ parent: UInt64, _ label: UInt64) -> UInt64 {
        mix(parent ^ mix(label &+ 0x632B_E59B_D9B4_E019))
    }

    /// 64 random bits for (key, counter).
    @inline(__always)
    public static func bits(_ key: UInt64, _ counter: UInt64) -> UInt64 {
        mix(key ^ mix(counter))
    }

    /// `mix` on 8 lanes (the same function, lane by lane). `@inlinable`: the kernels of
    /// other modules (dropout, GM-Coord noise) must inline it to keep the lanes in registers.
    @inlinable @inline(__always)
    public static func mix(_ x: SIMD8<UInt64>) -> SIMD8<UInt64> {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z &>> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z &>> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z &>> 31)
    }

    /// The SplitMix64 sequence of a generator seeded with `key` is output c = mix(state c),
    /// one mix per draw instead of `bits`' two, for the bulk noise of GM-Coord and dropout's
    /// keep decisions, where a well-tested generator's stream is all that is needed
    /// (`VectorMath.NormalStates`, `DropoutSite`).
    /// Its weyl step: the generator's state before output c is key + c·γ (mod 2⁶⁴), so
    /// states k counters apart differ by k·γ.
    @inlinable public static var splitMixGamma: UInt64 { 0x9E37_79B9_7F4A_7C15 }

    @inlinable @inline(__always)
    public static func splitMixState(_ key: UInt64, counters: SIMD8<UInt64>) -> SIMD8<UInt64> {
        key &+ counters &* splitMixGamma
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    @inline(__always)
    public static func uniform(_ key: UInt64, _ counter: UInt64) -> Double {
        Double(bits(key, counter) >> 11) * 0x1.0p-53
    }

    /// Standard normal by Box–Muller from the uniforms at counters 2c and 2c+1.
    @inline(__always)
    public static func normal(_ key: UInt64, _ counter: UInt64) -> Double {
        let u1 = 1 - uniform(key, 2 &* counter)  // (0, 1]: log is finite
        let u2 = uniform(key, 2 &* counter &+ 1)
        return (-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2)
    }

    /// FNV-1a 64-bit hash of a string: a stable key for names (Swift's Hasher is seeded
    /// per process and must never key anything that has to repeat).
    public static func hash(_ text: String) -> UInt64 {
        var h = FNV1a.offsetBasis
        for byte in text.utf8 {
            h ^= UInt64(byte)
            h = h &* FNV1a.prime
        }
        return h
    }
}

/// FNV-1a's 64-bit constants: h starts at `offsetBasis`; each unit u does h ^= u, h &*= prime.
/// Over bytes that is FNV-1a; `Consistency.checksum` feeds 32-bit words (one per Float).
public enum FNV1a {
    public static let offsetBasis: UInt64 = 0xCBF2_9CE4_8422_2325
    public static let prime: UInt64 = 0x100_0000_01B3
}

#if canImport(Glibc)
import Glibc
@inline(__always) func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
import Foundation
@inline(__always) func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Foundation.cos(x) }
#endif
