/* kernels/cpu/cpu_matmul.c: weights on the CPU and the products that read them.
 *
 * A weight stays where the model file's map put it: nothing is copied or expanded. For one token, bf16
 * and f32 rows are read directly (base/vdot.h: the same bits on every CPU); quantized formats, and bf16
 * for several tokens, go through the codec's fused batched dot (cpu_qdot.c), which
 * decodes each group once and uses it for every token of the chunk. Rows are split over the thread
 * pool; each thread owns whole output rows, so no two threads write the same value. */
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "base/vdot.h"
#include "cpu_backend.h"

be_weight *cpu_weight_load(be *b, const be_weight_src *src, err_t *err) {
    (void)b;
    be_weight *w = calloc(1, sizeof *w);
    if (!w) {
        err_set(err, ERR_NOMEM, "out of memory");
        return NULL;
    }
    w->rows = src->rows;
    w->cols = src->cols;
    snprintf(w->name, sizeof w->name, "%s", src->name ? src->name : "?");
    size_t n = (size_t)src->rows * (size_t)src->cols;
    if (!strcmp(src->format, "f32") || !strcmp(src->format, "bf16")) {
        int is32 = src->format[0] == 'f';
        if (src->nparts != 1 || src->part[0].nbytes != n * (is32 ? 4 : 2)) {
            err_set(err, ERR_FORMAT, "tensor %s: %s data of %zu bytes does not match %lld x %lld", w->name, src->format,
                    src->nparts ? src->part[0].nbytes : 0, (long long)src->rows, (long long)src->cols);
            free(w);
            return NULL;
        }
        w->kind = is32 ? CPU_W_F32 : CPU_W_BF16;
        w->data = src->part[0].data;
        if (!is32 && cpu_qweight_view_bf16(w, err)) {
            free(w);
            return NULL;
        }
        return w;
    }
    w->kind = CPU_W_CODEC;
    if (cpu_qweight_init(w, src, err)) {
        free(w);
        return NULL;
    }
    return w;
}

void cpu_weight_free(be *b, be_weight *w) {
    (void)b;
    if (!w) return;
    cpu_qweight_fini(w);
    free(w);
}

/* One row of a bf16/f32 weight as floats. */
static void row_f32(const be_weight *w, int64_t r, float *out) {
    size_t K = (size_t)w->cols;
    if (w->kind == CPU_W_F32) {
        memcpy(out, (const float *)w->data + (size_t)r * K, K * sizeof(float));
    } else {
        const uint16_t *p = (const uint16_t *)w->data + (size_t)r * K;
        for (size_t i = 0; i < K; i++) out[i] = bf16_to_f32(p[i]);
    }
}

void cpu_embed(be *b, const be_weight *table, const int32_t *ids, int T, float *x) {
    (void)b;
    for (int t = 0; t < T; t++) {
        float *dst = x + (size_t)t * table->cols;
        if (table->kind == CPU_W_CODEC) cpu_qweight_row(table, ids[t], dst);
        else row_f32(table, ids[t], dst);
    }
}

typedef struct {
    const be_weight *W;
    int64_t row0;
    const float *x;
    int T;
    int64_t N;
    float *y;
    float *scratch; /* [threads, K] */
} mm_job;

static void mm_range(void *ctx, int64_t r0, int64_t r1, int tid) {
    mm_job *j = ctx;
    const be_weight *W = j->W;
    int64_t K = W->cols;
    /* quantized weights, and bf16 for several tokens: the codec's blocked product (each group of 4 rows
     * converted once for all tokens) */
    if (W->kind == CPU_W_CODEC || (W->kind == CPU_W_BF16 && j->T > 1)) {
        cpu_qweight_dot(W, j->row0 + r0, j->row0 + r1, j->x, j->T, j->y + r0, j->N);
        return;
    }
    if (j->T == 1) { /* the decode step: convert in registers */
        for (int64_t r = r0; r < r1; r++) {
            size_t at = (size_t)(j->row0 + r) * (size_t)K;
            j->y[r] = W->kind == CPU_W_F32 ? vd_f32((const float *)W->data + at, j->x, K)
                                           : vd_bf16((const uint16_t *)W->data + at, j->x, K);
        }
        return;
    }
    /* f32 rows, several tokens: the same dot per token */
    float *row = j->scratch + (size_t)tid * (size_t)K;
    for (int64_t r = r0; r < r1; r++) {
        row_f32(W, j->row0 + r, row);
        for (int t = 0; t < j->T; t++) j->y[(size_t)t * j->N + r] = vd_f32(row, j->x + (size_t)t * K, K);
    }
}

void cpu_matmul(be *b, const be_weight *W, int64_t row0, int64_t N, const float *x, int T, float *y) {
    cpu_be *c = b->impl;
    int nt = pool_size(c->pool);
    if (W->kind == CPU_W_F32 && T > 1 && W->cols > c->mm_cols) { /* the products run in order: one buffer serves all */
        float *s = realloc(c->mm_scratch, (size_t)nt * (size_t)W->cols * sizeof(float));
        if (!s) {
            cpu_fail(b, ERR_NOMEM, "out of memory in a product with %s", W->name);
            return;
        }
        c->mm_scratch = s;
        c->mm_cols = W->cols;
    }
    float *scratch = c->mm_scratch;
    mm_job j = {W, row0, x, T, N, y, scratch};
    int64_t grain = N / (8 * nt);
    if (grain < 4) grain = 4;
    pool_for(c->pool, N, grain, mm_range, &j);
}
