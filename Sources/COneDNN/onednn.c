// oneDNN matmul primitives for umd's matrix-product seam (see umd_onednn.h).
#include "umd_onednn.h"
#include <oneapi/dnnl/dnnl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static dnnl_engine_t engine;
// One stream per thread: a stream must not run primitives for two threads at once (tests run
// products on many threads; a rank's products all come from its training thread). A
// thread's stream lives as long as the process.
static _Thread_local dnnl_stream_t stream;

struct umd_onednn_matmul {
    dnnl_primitive_desc_t descriptor;
    dnnl_primitive_t primitive;
    dnnl_memory_t a, b, c, bias;   // bias: NULL without one
    int bf16;
    // bf16: A and B as stored (rows x columns, leading dimension ld), converted into the
    // thread's scratch.
    int64_t a_rows, a_columns, lda, b_rows, b_columns, ldb;
    // Batched products: `batch` of them, operand i at A + i·stride_a, B + i·stride_b (C's
    // stride is in its descriptor).
    int64_t batch, stride_a, stride_b;
    // Floats from C's first element to one past its last (what a run may write).
    int64_t c_extent;
};

// bf16: where a thread's products put their converted operands — one buffer for A and one for
// B shared by every product shape (not one per shape): the step's products follow each other,
// so the scratch stays in cache instead of each shape writing into memory last touched long
// ago. Grown on demand, kept for the thread's life.
typedef struct { uint16_t *values; size_t capacity; } scratch16;
static _Thread_local scratch16 scratch_a, scratch_b;

// From 2 MiB up in transparent huge pages, as the Swift side's arrays (UMDCore's
// HugePageMemory says why); 64-byte aligned below.
static void *huge_page_alloc(size_t bytes) {
    const size_t huge = (size_t)2 << 20;
    void *p = NULL;
    if (posix_memalign(&p, bytes >= huge ? huge : 64, bytes) != 0) return NULL;
    if (bytes >= huge) (void)madvise(p, bytes, MADV_HUGEPAGE);   // a hint: ignored without THP
    return p;
}

// Room for `count` values; the contents are not kept when it grows (every user writes first).
static uint16_t *ensure16(scratch16 *s, size_t count) {
    if (count > s->capacity) {
        uint16_t *grown = huge_page_alloc(count * sizeof(uint16_t));
        if (!grown) return NULL;
        free(s->values);
        s->values = grown;
        s->capacity = count;
    }
    return s->values;
}

static int fail(char *message, const char *what, dnnl_status_t status) {
    if (message) snprintf(message, UMD_ONEDNN_MESSAGE_LENGTH, "oneDNN: %s failed (status %d)", what, (int)status);
    return 1;
}

#define CHECK(call, what) do { dnnl_status_t s_ = (call); if (s_ != dnnl_success) { fail(message, what, s_); goto error; } } while (0)

static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static dnnl_status_t engine_status;
static void create_engine(void) { engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0); }

int umd_onednn_init(char *message) {
    pthread_once(&engine_once, create_engine);
    if (engine_status != dnnl_success) return fail(message, "creating the CPU engine", engine_status);
    return 0;
}

// The calling thread's stream, created on its first product.
static dnnl_status_t thread_stream(void) {
    if (stream) return dnnl_success;
    return dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
}

// A row-major matrix of `rows` x `columns` (leading dimension ld) seen as the 2-D operand
// dims[0] x dims[1]: transposed when it is stored the other way round.
// With batch > 1: `batch` such matrices, `batch_stride` elements apart (a 3-D operand).
static dnnl_status_t describe(dnnl_memory_desc_t *md, int64_t d0, int64_t d1, int transposed, int64_t ld,
                              dnnl_data_type_t type, int64_t batch, int64_t batch_stride) {
    if (batch > 1) {
        dnnl_dims_t dims = {batch, d0, d1};
        dnnl_dims_t strides = {batch_stride, transposed ? 1 : ld, transposed ? ld : 1};
        return dnnl_memory_desc_init_by_strides(md, 3, dims, type, strides);
    }
    dnnl_dims_t dims = {d0, d1};
    dnnl_dims_t strides = {transposed ? 1 : ld, transposed ? ld : 1};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, type, strides);
}

umd_onednn_matmul *umd_onednn_matmul_create(int transpose_a, int transpose_b, int64_t m, int64_t n, int64_t k,
                                            int64_t lda, int64_t ldb, int64_t ldc, float alpha, int accumulate,
                                            int bias, int bf16, int64_t batch, int64_t stride_a, int64_t stride_b,
                                            int64_t stride_c, char *message) {
    if (umd_onednn_init(message)) return NULL;
    if (batch > 1 && bias) {
        snprintf(message, UMD_ONEDNN_MESSAGE_LENGTH, "oneDNN: batched products take no bias");
        return NULL;
    }
    if (bias && alpha != 1.0f) {
        // oneDNN would scale the bias with the product; no caller needs that.
        snprintf(message, UMD_ONEDNN_MESSAGE_LENGTH, "oneDNN: a product with a bias must have alpha 1");
        return NULL;
    }
    umd_onednn_matmul *p = calloc(1, sizeof *p);
    if (!p) { snprintf(message, UMD_ONEDNN_MESSAGE_LENGTH, "oneDNN: out of memory"); return NULL; }
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t post = NULL;
    p->bf16 = bf16;
    p->a_rows = transpose_a ? k : m; p->a_columns = transpose_a ? m : k; p->lda = lda;
    p->b_rows = transpose_b ? n : k; p->b_columns = transpose_b ? k : n; p->ldb = ldb;
    p->batch = batch > 1 ? batch : 1; p->stride_a = stride_a; p->stride_b = stride_b;
    p->c_extent = (p->batch - 1) * stride_c + (m - 1) * ldc + n;
    dnnl_data_type_t in = bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t a_md, b_md, c_md, bias_md;
    // bf16 operands are compact copies: their leading dimension is their column count, one
    // matrix of a batch after the other.
    CHECK(describe(&a_md, m, k, transpose_a, bf16 ? p->a_columns : lda, in, p->batch,
                   bf16 ? p->a_rows * p->a_columns : stride_a), "describing A");
    CHECK(describe(&b_md, k, n, transpose_b, bf16 ? p->b_columns : ldb, in, p->batch,
                   bf16 ? p->b_rows * p->b_columns : stride_b), "describing B");
    CHECK(describe(&c_md, m, n, 0, ldc, dnnl_f32, p->batch, stride_c), "describing C");
    // The bias as a [1, n] row broadcast over C's rows, fp32 in both modes.
    CHECK(describe(&bias_md, 1, n, 0, n, dnnl_f32, 1, 0), "describing the bias");
    dnnl_matmul_desc_t desc;
    CHECK(dnnl_matmul_desc_init(&desc, &a_md, &b_md, bias ? &bias_md : NULL, &c_md), "describing the matmul");
    CHECK(dnnl_primitive_attr_create(&attr), "creating attributes");
    if (alpha != 1.0f) CHECK(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha), "setting alpha");
    if (accumulate) {
        CHECK(dnnl_post_ops_create(&post), "creating post-ops");
        CHECK(dnnl_post_ops_append_sum(post, 1.0f), "adding the sum post-op");
        CHECK(dnnl_primitive_attr_set_post_ops(attr, post), "setting post-ops");
    }
    CHECK(dnnl_primitive_desc_create(&p->descriptor, &desc, attr, engine, NULL), "creating the matmul descriptor");
    CHECK(dnnl_primitive_create(&p->primitive, p->descriptor), "creating the matmul primitive");
    CHECK(dnnl_memory_create(&p->a, &a_md, engine, DNNL_MEMORY_NONE), "creating A's memory");
    CHECK(dnnl_memory_create(&p->b, &b_md, engine, DNNL_MEMORY_NONE), "creating B's memory");
    CHECK(dnnl_memory_create(&p->c, &c_md, engine, DNNL_MEMORY_NONE), "creating C's memory");
    if (bias) CHECK(dnnl_memory_create(&p->bias, &bias_md, engine, DNNL_MEMORY_NONE), "creating the bias's memory");
    if (post) dnnl_post_ops_destroy(post);
    dnnl_primitive_attr_destroy(attr);
    return p;
error:
    if (post) dnnl_post_ops_destroy(post);
    if (attr) dnnl_primitive_attr_destroy(attr);
    umd_onednn_matmul_destroy(p);
    return NULL;
}

// Round to nearest even, as UMDCore's BFloat16.round (NaN stays NaN).
static inline uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

// rows x columns (rows ld apart) into compact rows.
static void convert_scalar(const float *src, int64_t rows, int64_t columns, int64_t ld, uint16_t *dst) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < columns; c++) dst[r * columns + c] = to_bf16(src[r * ld + c]);
}

#if defined(__x86_64__)
// 32 floats per instruction (vcvtne2ps2bf16: round to nearest even, as to_bf16, ~7x faster
// than the scalar loop on Zen 5). The instruction treats fp32 denormals (|x| < 1.2e-38) as
// zero, where to_bf16 keeps their top bits: a product's contribution of that size is below
// anything the fp32 accumulation keeps. Compiled for AVX512-BF16 whatever the build's target;
// run only where the CPU has it (the bf16 backend exists only there).
// The row loop is inside (one call per matrix, not per row: attention's head operands are
// many rows of 32 or 64 columns). Per row as before: 32-column blocks by the instruction, the
// rest by to_bf16 — the same bits whatever the call's shape.
__attribute__((target("avx512f,avx512bf16")))
static void convert_avx512bf16(const float *src, int64_t rows, int64_t columns, int64_t ld, uint16_t *dst) {
    for (int64_t r = 0; r < rows; r++) {
        const float *row = src + r * ld;
        uint16_t *out = dst + r * columns;
        int64_t c = 0;
        for (; c + 32 <= columns; c += 32) {
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(row + c + 16), _mm512_loadu_ps(row + c));
            _mm512_storeu_si512((void *)(out + c), (__m512i)v);
        }
        for (; c < columns; c++) out[c] = to_bf16(row[c]);
    }
}
#endif

static int cpu_has_avx512bf16(void) {
#if defined(__x86_64__)
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
    }
    return known;
#else
    return 0;
#endif
}

static void convert(const float *src, int64_t rows, int64_t columns, int64_t ld, uint16_t *dst) {
#if defined(__x86_64__)
    if (cpu_has_avx512bf16()) { convert_avx512bf16(src, rows, columns, ld, dst); return; }
#endif
    convert_scalar(src, rows, columns, ld, dst);
}

// Operand sharing (umd_onednn_share_begin/end): inside a scope, an fp32 operand converted once
// is kept and reused by every later product of the scope that reads the same matrix (same
// address, rows, columns, leading dimension, batch and batch stride) — a Linear's output
// gradient feeds its input-gradient and weight-gradient products, attention's q, k and dC
// two products each. The caller promises that no memory a product of the scope reads is
// written during the scope except by the scope's own products; a product's C that overlaps a
// kept operand drops it (a safety net for that second case). Per thread, like the scratch;
// the buffers stay allocated from scope to scope (a step's scopes need the same sizes again).
typedef struct {
    const float *source;
    int64_t rows, columns, ld, batch, stride;
    scratch16 copy;
} shared_operand;
enum { shared_capacity = 16 };
static _Thread_local shared_operand shared[shared_capacity];
static _Thread_local int shared_count, shared_depth;

void umd_onednn_share_begin(void) { shared_depth++; }

void umd_onednn_share_end(void) {
    if (shared_depth > 0 && --shared_depth == 0) shared_count = 0;
}

// The kept copy of this operand, or NULL (outside a scope, or not converted yet).
static const uint16_t *shared_lookup(const float *source, int64_t rows, int64_t columns, int64_t ld, int64_t batch,
                                     int64_t stride) {
    for (int i = 0; i < shared_count; i++) {
        const shared_operand *s = &shared[i];
        if (s->source == source && s->rows == rows && s->columns == columns && s->ld == ld && s->batch == batch
            && (batch == 1 || s->stride == stride))
            return s->copy.values;
    }
    return NULL;
}

// A buffer to convert this operand into that the scope keeps (NULL: not in a scope, the table
// is full or out of memory — then the product converts into its scratch as outside a scope).
static uint16_t *shared_slot(const float *source, int64_t rows, int64_t columns, int64_t ld, int64_t batch,
                             int64_t stride) {
    if (shared_depth == 0 || shared_count == shared_capacity) return NULL;
    shared_operand *s = &shared[shared_count];
    uint16_t *values = ensure16(&s->copy, (size_t)(batch * rows * columns));
    if (!values) return NULL;
    s->source = source; s->rows = rows; s->columns = columns; s->ld = ld; s->batch = batch; s->stride = stride;
    shared_count++;
    return values;
}

// Forgets kept operands whose source overlaps [begin, end) floats: a product just wrote there.
static void shared_forget_overlapping(const float *begin, const float *end) {
    for (int i = 0; i < shared_count;) {
        shared_operand *s = &shared[i];
        const float *first = s->source;
        const float *last = s->source + (s->batch - 1) * s->stride + (s->rows - 1) * s->ld + s->columns;
        if (first < end && begin < last) {
            scratch16 kept = s->copy;               // keep the buffer for a later operand
            *s = shared[--shared_count];
            shared[shared_count].copy = kept;
        } else {
            i++;
        }
    }
}

// One bf16 operand: the scope's kept copy, a new kept copy, or the product's scratch.
static const uint16_t *bf16_operand(const float *source, int64_t rows, int64_t columns, int64_t ld, int64_t batch,
                                    int64_t stride, scratch16 *scratch) {
    const uint16_t *kept = shared_depth ? shared_lookup(source, rows, columns, ld, batch, stride) : NULL;
    if (kept) return kept;
    uint16_t *out = shared_slot(source, rows, columns, ld, batch, stride);
    if (!out) out = ensure16(scratch, (size_t)(batch * rows * columns));
    if (!out) return NULL;
    for (int64_t i = 0; i < batch; i++) convert(source + i * stride, rows, columns, ld, out + i * rows * columns);
    return out;
}

// The conversion the products' inputs go through, on `count` floats: for producers that round
// an operand while it is in cache (Matmul.roundToBFloat16), and tests.
void umd_onednn_to_bf16(const float *src, int64_t count, uint16_t *dst) { convert(src, 1, count, count, dst); }

int umd_onednn_matmul_run(umd_onednn_matmul *p, const float *a, const float *b, const float *bias, float *c,
                          const uint16_t *a16, const uint16_t *b16, char *message) {
    if ((p->bias != NULL) != (bias != NULL)) {
        snprintf(message, UMD_ONEDNN_MESSAGE_LENGTH, "oneDNN: a product run %s the bias it was created %s",
                 bias ? "with" : "without", bias ? "without" : "with");
        return 1;
    }
    const void *a_data = a, *b_data = b;
    if (p->bf16) {
        a_data = a16 ? a16 : bf16_operand(a, p->a_rows, p->a_columns, p->lda, p->batch, p->stride_a, &scratch_a);
        b_data = b16 ? b16 : bf16_operand(b, p->b_rows, p->b_columns, p->ldb, p->batch, p->stride_b, &scratch_b);
        if (!a_data || !b_data) {
            snprintf(message, UMD_ONEDNN_MESSAGE_LENGTH, "oneDNN: out of memory for the bf16 operands");
            return 1;
        }
    }
    dnnl_status_t s;
    if ((s = thread_stream()) != dnnl_success) return fail(message, "creating this thread's stream", s);
    if ((s = dnnl_memory_set_data_handle(p->a, (void *)a_data)) != dnnl_success) return fail(message, "setting A", s);
    if ((s = dnnl_memory_set_data_handle(p->b, (void *)b_data)) != dnnl_success) return fail(message, "setting B", s);
    if ((s = dnnl_memory_set_data_handle(p->c, c)) != dnnl_success) return fail(message, "setting C", s);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p->a}, {DNNL_ARG_WEIGHTS, p->b}, {DNNL_ARG_DST, p->c},
                               {DNNL_ARG_BIAS, p->bias}};
    if (bias && (s = dnnl_memory_set_data_handle(p->bias, (void *)bias)) != dnnl_success) return fail(message, "setting the bias", s);
    if ((s = dnnl_primitive_execute(p->primitive, stream, bias ? 4 : 3, args)) != dnnl_success) return fail(message, "executing", s);
    if ((s = dnnl_stream_wait(stream)) != dnnl_success) return fail(message, "waiting for the stream", s);
    if (shared_count) shared_forget_overlapping(c, c + p->c_extent);
    return 0;
}

const char *umd_onednn_matmul_implementation(const umd_onednn_matmul *p) {
    const char *name = "unknown";
    if (p && p->descriptor) dnnl_primitive_desc_query(p->descriptor, dnnl_query_impl_info_str, 0, &name);
    return name;
}

void umd_onednn_matmul_destroy(umd_onednn_matmul *p) {
    if (!p) return;
    if (p->a) dnnl_memory_destroy(p->a);
    if (p->b) dnnl_memory_destroy(p->b);
    if (p->c) dnnl_memory_destroy(p->c);
    if (p->bias) dnnl_memory_destroy(p->bias);
    if (p->primitive) dnnl_primitive_destroy(p->primitive);
    if (p->descriptor) dnnl_primitive_desc_destroy(p->descriptor);
    free(p);
}

const char *umd_onednn_isa(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "unknown";
    }
}

int umd_onednn_has_bf16(void) {
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    return (isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) == (unsigned)dnnl_cpu_isa_avx512_core_bf16;
}

int umd_onednn_set_threads(int threads) {
    // oneDNN runs on OpenMP (Debian's build); its runtime is loaded with libdnnl.
    void (*set)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    if (!set) return 0;
    set(threads);
    return 1;
}

const char *umd_onednn_version(void) {
    static char text[32];
    const dnnl_version_t *v = dnnl_version();
    snprintf(text, sizeof text, "%d.%d.%d", v->major, v->minor, v->patch);
    return text;
}
