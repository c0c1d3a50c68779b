/* app/bench_dev.c */
#include "bench_dev.h"

#if defined(ERNIE_CUDA) && ERNIE_CUDA

#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cudev.h"

void dw_free(dweight *w) {
    for (int i = 0; i < 6; i++) cu_free(w->buf[i]);
    memset(w, 0, sizeof *w);
}

static void *dalloc(dweight *w, int i, size_t bytes, err_t *e) { return w->buf[i] = cu_malloc(bytes, e); }

int dw_make(dweight *w, qfmt f, int experts, int64_t n, int64_t k, int layout, uint64_t seed, err_t *e) {
    memset(w, 0, sizeof *w);
    int64_t rows = experts * n;
    w->m.fmt = f, w->m.n = n, w->m.k = k, w->m.n_experts = experts;
    w->bytes = (double)rows * qfmt_row_bytes(f, k);
    size_t r = (size_t)rows;
    switch (f) {
    case QF_BF16:
        if (!dalloc(w, 0, r * k * 2, e) || cu_fill_bf16(w->buf[0], r * k, -0.1f, 0.1f, seed, NULL, e)) return -1;
        w->m.q = w->buf[0];
        return 0;
    case QF_WINT8:
    case QF_WINT4: {
        size_t qb = f == QF_WINT8 ? r * k : r * k / 2;
        if (!dalloc(w, 0, qb, e) || cu_fill_bytes(w->buf[0], qb, 0, 255, seed, NULL, e)) return -1;
        if (!dalloc(w, 1, r * 4, e) || cu_fill_f32(w->buf[1], r, 1e-3f, 2e-3f, seed + 1, NULL, e)) return -1;
        w->m.q = w->buf[0], w->m.scale = w->buf[1];
        return 0;
    }
    case QF_CCQ206:
    case QF_CCQ275:
    case QF_CCQ25: {
        /* random stored bytes, then the tiled layout the products read (gate/up stacks: QLAYOUT_GATE_UP) */
        size_t sb = f == QF_CCQ206 ? r * k / 4 : r * (size_t)(k / 64) * (f == QF_CCQ275 ? 22 : 20);
        size_t lb = r * (size_t)((k + 127) / 128);
        void *src = cu_malloc(sb, e), *loc = f == QF_CCQ206 ? cu_malloc(lb, e) : NULL;
        int rc = !src || (f == QF_CCQ206 && !loc) ? -1 : cu_fill_bytes(src, sb, 0, 255, seed, NULL, e);
        if (!rc && f == QF_CCQ206) rc = cu_fill_local4(loc, rows, k, seed + 1, NULL, e);
        w->m.q = src, w->m.local = loc, w->m.layout = QLAYOUT_STORED;
        if (!rc && !dalloc(w, 0, qmat_tile_bytes(f, experts, n, k, layout), e)) rc = -1;
        if (!rc) rc = qmat_tile(&w->m, layout, w->buf[0], NULL, e);
        if (!rc) rc = cu_sync(e);
        cu_free(src), cu_free(loc);
        w->m.local = NULL;
        if (rc) return -1;
        if (!dalloc(w, 1, r * 2, e) || cu_fill_bf16(w->buf[1], r, 1e-3f, 2e-3f, seed + 4, NULL, e)) return -1;
        w->m.super = w->buf[1];
        if (f == QF_CCQ206) {
            /* codes = floor(q cs + zp + 0.5) stay inside [0, 2^15) for cs < 100, zp < 7000 */
            if (!dalloc(w, 2, r * 4, e) || cu_fill_f32(w->buf[2], r, 20.0f, 100.0f, seed + 2, NULL, e)) return -1;
            if (!dalloc(w, 3, r * 4, e) || cu_fill_f32(w->buf[3], r, 0.0f, 7000.0f, seed + 3, NULL, e)) return -1;
            w->m.code_scale = w->buf[2], w->m.code_zp = w->buf[3];
        }
        return 0;
    }
    default: return err_set(e, ERR_ARG, "bench: bad format");
    }
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int bench_time_calls(bench_call_fn fn, void *ctx, int calls, int warm, int reps, double *med_us, double *min_us,
                     err_t *e) {
    cu_event a = cu_event_new(e), b = cu_event_new(e);
    double *v = malloc(sizeof(double) * (size_t)reps);
    int rc = (!a || !b || !v) ? -1 : 0;
    for (int w = 0; w < warm && !rc; w++)
        for (int i = 0; i < calls && !rc; i++) rc = fn(ctx, i, e);
    if (!rc) rc = cu_sync(e);
    for (int r = 0; r < reps && !rc; r++) {
        rc = cu_event_record(a, NULL, e);
        for (int i = 0; i < calls && !rc; i++) rc = fn(ctx, i, e);
        float ms = 0;
        if (!rc) rc = cu_event_record(b, NULL, e);
        if (!rc) rc = cu_event_ms(a, b, &ms, e);
        v[r] = ms * 1000.0 / calls;
    }
    if (!rc) {
        *med_us = bench_median(v, reps);
        if (min_us) *min_us = v[0];
    }
    free(v);
    cu_event_free(a);
    cu_event_free(b);
    return rc;
}

#endif
