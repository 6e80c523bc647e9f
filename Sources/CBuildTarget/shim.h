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

#endif
