// What the C compiler was told about the target CPU (`-Xcc -march=…`, set by the Makefile's
// release build next to Swift's `-target-cpu`). Swift cannot test a target feature in `#if`;
// these inline functions fold to constants in optimised Swift code.
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

#endif
