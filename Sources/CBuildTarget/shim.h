// What the C compiler was told about the target CPU (`-Xcc -march=…`, set by the Makefile's
// release build next to Swift's `-target-cpu`), and vector operations Swift's SIMD types
// lower badly. Swift cannot test a target feature in `#if`; these inline functions fold to
// constants, or are inlined as vector instructions, in optimised Swift code.
#ifndef UMD_CBUILDTARGET_SHIM_H
#define UMD_CBUILDTARGET_SHIM_H

/// 1 when the build targets a CPU with fused multiply-add (x86 FMA3, and every AArch64).
static inline int umd_target_has_fma(void) {
#if defined(__FMA__) || defined(__aarch64__)
    return 1;
#else
    return 0;
#endif
}

/// 16 lanes of IEEE single-precision square roots — exactly rounded, bitwise `sqrtf` per
/// lane — as vector instructions (vsqrtps: two on AVX2, one on AVX-512). Swift's SIMD
/// `squareRoot()` becomes 16 scalar roots, which made AdamW's pass 3x slower than its
/// memory traffic. Swift imports the ext_vector_type as SIMD16<Float>.
typedef float umd_float16 __attribute__((ext_vector_type(16)));
static inline umd_float16 umd_square_root16(umd_float16 x) { return __builtin_elementwise_sqrt(x); }

/// The largest of 16 lanes by a tree of vector maxima (depth 4). Swift's `max()` reduction
/// and a loop over the lanes are a chain of 15 dependent compare-and-moves, which cost a
/// softmax row of width 65 about a third of its time. The maximum of finite numbers does not
/// depend on the order it is taken in, so the result is the chain's, bit for bit (±0 may
/// come out with the other sign, which x − max does not see). `a > b ? a : b` is one
/// maxps per level; a NaN lane may be passed over, and the row is NaN all the same, through
/// that lane's exponential.
typedef float umd_float8 __attribute__((ext_vector_type(8)));
typedef float umd_float4 __attribute__((ext_vector_type(4)));
static inline float umd_largest_lane16(umd_float16 v) {
    umd_float8 lo8 = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
    umd_float8 hi8 = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    umd_float8 a = lo8 > hi8 ? lo8 : hi8;
    umd_float4 lo4 = __builtin_shufflevector(a, a, 0, 1, 2, 3), hi4 = __builtin_shufflevector(a, a, 4, 5, 6, 7);
    umd_float4 b = lo4 > hi4 ? lo4 : hi4;
    float x = b[0] > b[2] ? b[0] : b[2], y = b[1] > b[3] ? b[1] : b[3];
    return x > y ? x : y;
}

/// The sum of 16 lanes by a tree of halves (depth 4): (l0+l8) + (l4+l12) … Swift's `sum()`
/// adds the lanes one after another, 16 dependent additions that were the longest part of a
/// softmax row's chain of dependent steps.
static inline float umd_lane_sum16(umd_float16 v) {
    umd_float8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7)
                 + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    umd_float4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    return (b[0] + b[2]) + (b[1] + b[3]);
}

#endif
