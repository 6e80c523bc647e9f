// Matrix products through oneDNN's matmul primitive, behind a few plain C calls (errors
// come back as a status and a message, never an abort). Used by UMDModel's OneDNNBackend.
#ifndef UMD_ONEDNN_H
#define UMD_ONEDNN_H
#include <stddef.h>
#include <stdint.h>

#define UMD_ONEDNN_MESSAGE_LENGTH 512

typedef struct umd_onednn_matmul umd_onednn_matmul;

// Creates the CPU engine and stream once per process. 0 on success.
int umd_onednn_init(char *message);

// One product shape, row-major: C[m, n] = alpha * op(A) * op(B) (+ bias[n] on every row when
// bias) (+ C when accumulate). op(A) = A[m, k] (lda) or, transposed, A stored [k, m]; op(B) =
// B[k, n] (ldb) or, transposed, B stored [n, k]. bf16: A and B are rounded to bfloat16 (nearest
// even) into scratch and multiplied with fp32 accumulation; C and the bias stay fp32. A bias
// needs alpha 1. batch > 1: that many products of the shape in one call (attention's heads of
// one sample), the i-th reading A + i*stride_a, B + i*stride_b and writing C + i*stride_c
// (elements); no bias then. NULL on failure (message says why).
umd_onednn_matmul *umd_onednn_matmul_create(int transpose_a, int transpose_b, int64_t m, int64_t n, int64_t k,
                                            int64_t lda, int64_t ldb, int64_t ldc, float alpha, int accumulate,
                                            int bias, int bf16, int64_t batch, int64_t stride_a, int64_t stride_b,
                                            int64_t stride_c, char *message);
// Runs the product on these operands (bias: NULL unless created with one). a16, b16: for bf16,
// A or B already rounded to bfloat16 (by umd_onednn_to_bf16), compact — each matrix of a batch
// its stored rows x columns, one after the other (NULL: converted here). 0 on success.
int umd_onednn_matmul_run(umd_onednn_matmul *p, const float *a, const float *b, const float *bias, float *c,
                          const uint16_t *a16, const uint16_t *b16, char *message);
// bf16: a scope (nestable, per thread) in which an operand converted once is reused by the
// later products that read the same matrix, instead of converted again. Inside it, nothing a
// product reads may be written except by the scope's own products (a product's output that
// overlaps a kept operand drops it).
void umd_onednn_share_begin(void);
void umd_onednn_share_end(void);
// The implementation oneDNN chose (e.g. "brg:avx512_core").
const char *umd_onednn_matmul_implementation(const umd_onednn_matmul *p);
void umd_onednn_matmul_destroy(umd_onednn_matmul *p);

// The instruction set oneDNN's kernels use on this CPU, as text ("avx512_core_bf16", …).
const char *umd_onednn_isa(void);
// Whether this CPU has bf16 dot-product instructions oneDNN uses (AVX512-BF16 or AMX).
int umd_onednn_has_bf16(void);
// Threads oneDNN (OpenMP) uses; returns 0 when the OpenMP runtime could not be reached.
int umd_onednn_set_threads(int threads);
// oneDNN's version, "major.minor.patch".
const char *umd_onednn_version(void);
// The rounding to bfloat16 the bf16 products' inputs go through (round to nearest even;
// vectorised where the CPU has AVX512-BF16), on `count` floats: for producers that hand a
// product its operand already rounded (a16/b16 above), and tests.
void umd_onednn_to_bf16(const float *src, int64_t count, uint16_t *dst);
#endif
