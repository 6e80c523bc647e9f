// Dev-only probe (not built by the package or CI): is one batched oneDNN matmul over all H
// heads of a sample faster than H per-head calls for the attention scores Q_h K_hᵀ in bf16?
// The heads are strided views of Q, K [L, W = H·hd] as umd's attention holds them.
//
//   cc -O2 scripts/bench/onednn_batched_heads.c -o /tmp/heads -ldnnl
//   /tmp/heads 8 65 32     # small's image tokens: H L hd
//   /tmp/heads 12 325 64   # base's image tokens
//
// Session 10 (AMD Zen 5, 1 thread; absolute times move with the host, the ratios less): small
// 65 tokens 6.4–8.2 µs batched vs 11.0–14.7 µs for 8 calls (1.7–1.8×), 32 tokens 3.2 vs 4.7
// (1.5×); base 64 tokens 11.2–13.3 vs 25.0–25.8 (1.9–2.3×), 325 tokens 196 vs 211 (1.08×).
// oneDNN 2.6 picks "gemm:jit" for these strided layouts. umd's bf16 attention now makes the
// batched call (`Matmul.batched`).
#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static dnnl_engine_t engine;
static dnnl_stream_t stream;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// Seconds per call of the product A · B → C described by dims and strides (nd = 2 or 3).
static double seconds_per_call(int nd, const dnnl_dims_t ad, const dnnl_dims_t as, const dnnl_dims_t bd,
                               const dnnl_dims_t bs, const dnnl_dims_t cd, const dnnl_dims_t cs, void *a, void *b,
                               float *c, int calls, const char **implementation) {
    dnnl_memory_desc_t a_md, b_md, c_md;
    dnnl_memory_desc_init_by_strides(&a_md, nd, ad, dnnl_bf16, as);
    dnnl_memory_desc_init_by_strides(&b_md, nd, bd, dnnl_bf16, bs);
    dnnl_memory_desc_init_by_strides(&c_md, nd, cd, dnnl_f32, cs);
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
    dnnl_memory_t am, bm, cm;
    if (dnnl_matmul_desc_init(&desc, &a_md, &b_md, NULL, &c_md) || dnnl_primitive_desc_create(&pd, &desc, NULL, engine, NULL)
        || dnnl_primitive_create(&p, pd)) return -1;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, implementation);
    dnnl_memory_create(&am, &a_md, engine, a);
    dnnl_memory_create(&bm, &b_md, engine, b);
    dnnl_memory_create(&cm, &c_md, engine, c);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
    for (int i = 0; i < 50; i++) { dnnl_primitive_execute(p, stream, 3, args); dnnl_stream_wait(stream); }
    double start = now();
    for (int i = 0; i < calls; i++) { dnnl_primitive_execute(p, stream, 3, args); dnnl_stream_wait(stream); }
    return (now() - start) / calls;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s HEADS TOKENS HEAD_WIDTH\n", argv[0]); return 2; }
    int64_t H = atoi(argv[1]), L = atoi(argv[2]), hd = atoi(argv[3]), W = H * hd;
    dnnl_engine_create(&engine, dnnl_cpu, 0);
    dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
    uint16_t *q = malloc(sizeof *q * L * W), *k = malloc(sizeof *k * L * W);   // bf16 bits of values in [0.5, 2)
    float *scores = malloc(sizeof *scores * H * L * L);
    for (int64_t i = 0; i < L * W; i++) { q[i] = 0x3f80 | (rand() & 0x7f); k[i] = 0x3f00 | (rand() & 0xff); }
    const char *batched_name, *head_name;
    // All heads at once: A {H, L, hd} strides {hd, W, 1}; B = Kᵀ {H, hd, L} strides {hd, 1, W}.
    dnnl_dims_t ad = {H, L, hd}, as = {hd, W, 1}, bd = {H, hd, L}, bs = {hd, 1, W}, cd = {H, L, L}, cs = {L * L, L, 1};
    double batched = seconds_per_call(3, ad, as, bd, bs, cd, cs, q, k, scores, 2000, &batched_name);
    // One head: A {L, hd} rows W apart; B = Kᵀ {hd, L}.
    dnnl_dims_t ad1 = {L, hd}, as1 = {W, 1}, bd1 = {hd, L}, bs1 = {1, W}, cd1 = {L, L}, cs1 = {L, 1};
    double head = seconds_per_call(2, ad1, as1, bd1, bs1, cd1, cs1, q, k, scores, (int)(2000 * H), &head_name);
    if (batched < 0 || head < 0) { fprintf(stderr, "oneDNN refused a descriptor\n"); return 1; }
    double flops = 2.0 * H * L * L * hd;
    printf("H %ld L %ld hd %ld, scores of one sample: batched (%s) %.2f us = %.0f GFLOP/s; %ld calls (%s) %.2f us = %.0f GFLOP/s\n",
           (long)H, (long)L, (long)hd, batched_name, batched * 1e6, flops / batched / 1e9, (long)H, head_name,
           head * H * 1e6, flops / (head * H) / 1e9);
    return 0;
}
