/* kernels/cpu/cpu_backend.h: internals shared by the CPU backend's files. Not for the engine, which
 * sees only kernels/backend.h. */
#ifndef ERNIE_KERNELS_CPU_BACKEND_H
#define ERNIE_KERNELS_CPU_BACKEND_H

#include "base/pool.h"
#include "kernels/backend.h"

#include <stdio.h>

typedef struct {
    pool *pool;
    float *att_scratch; /* [threads, att_ctx] softmax rows for attention */
    int att_ctx;
    err_t err;          /* the first failure since the last sync (ops return nothing) */
    float *mm_scratch;  /* [threads, mm_cols] one bf16/f32 row per thread, grown as needed */
    int64_t mm_cols;
} cpu_be;

/* Latches a failure for the next be->ops->sync to report (the first one wins). */
void cpu_fail(be *b, err_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

enum { CPU_W_F32, CPU_W_BF16, CPU_W_CODEC };

/* A weight as the CPU backend holds it: pointers into the caller's (mapped) memory. */
struct be_weight {
    int kind;
    int64_t rows, cols;
    char name[160];
    const void *data;   /* F32 / BF16 */
    void *q;            /* CODEC: the codec's view of the parts (cpu_qdot.c); BF16: the same, unvalidated */
};

/* cpu_qdot.c: the bridge to the codec library for quantized formats. */
int cpu_qweight_init(be_weight *w, const be_weight_src *src, err_t *err);
void cpu_qweight_fini(be_weight *w);
/* The codec's view of a raw bf16 weight (w->data, rows x cols), for the blocked product of several
 * tokens. Unvalidated: raw weights are used as stored, non-finite values included, as the one-token
 * path uses them. */
int cpu_qweight_view_bf16(be_weight *w, err_t *err);
/* Row r decoded to floats [cols]. */
void cpu_qweight_row(const be_weight *w, int64_t r, float *out);
/* y[t * ldy + (r - r0)] = row r . x[t] for r in [r0, r1), t < T; x is [T, cols]. */
void cpu_qweight_dot(const be_weight *w, int64_t r0, int64_t r1, const float *x, int T, float *y, int64_t ldy);

struct be_kv {
    int nlayers, ctx, kvdim;
    float *k, *v; /* [nlayers, ctx, kvdim] */
};

void cpu_rmsnorm(be *b, const float *x, const float *w, float eps, int T, int H, float *y);
void cpu_rope(be *b, float *x, int T, int nheads, int hd, int pos0, float theta);
void cpu_kv_store(be *b, be_kv *kv, int layer, int pos0, int T, const float *k, const float *v);
void cpu_attention(be *b, const be_kv *kv, int layer, const float *q, int T, int pos0, int nq, int nkv, int hd,
                   float *out);
void cpu_swiglu(be *b, const float *gate, const float *up, int64_t n, float *out);
void cpu_add(be *b, float *y, const float *x, int64_t n);

/* cpu_matmul.c: weights and the products that read them. */
be_weight *cpu_weight_load(be *b, const be_weight_src *src, err_t *err);
void cpu_weight_free(be *b, be_weight *w);
void cpu_embed(be *b, const be_weight *table, const int32_t *ids, int T, float *x);
void cpu_matmul(be *b, const be_weight *W, int64_t row0, int64_t N, const float *x, int T, float *y);
void cpu_moe_route(be *b, const be_weight *router, const float *bias, const float *x, int T, int E, int k,
                   float norm_min, int32_t *ids, float *w);
void cpu_moe_experts(be *b, const be_weight *gate, const be_weight *up, const be_weight *down, const float *x, int T,
                     int H, int I, int k, const int32_t *ids, const float *w, float *out);

#endif
