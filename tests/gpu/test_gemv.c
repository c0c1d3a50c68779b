/* tests/gpu/test_gemv.c: the quantized GEMV and expert GEMV kernels (kernels/cuda/qgemv.h) against an
 * independent host reference: random valid encodings of every format, decoded on the host by the codec
 * library (ccq_wrap validates them, ccq_decode_row decodes), multiplied in fp64 with the same bf16
 * activations. Every run draws fresh inputs (seeded from the clock; the seed is printed on failure),
 * poisons the outputs with NaN first, and checks every element against a bound from the arithmetic:
 * fp32 accumulation, |y - ref| <= 2e-5 * sum_k |w_k x_k| per element and (64 outputs or more) a
 * norm-wise error under 1e-5;
 * bf16 outputs add half a bf16 ulp. Shapes: odd sizes (N not a multiple of the tile, K = 64), and the
 * real ERNIE-4.5-300B shapes; batches of T tokens (qgemv_batch) likewise, and batches of tokens routed to
 * experts (qmoe_route_build, qmoe_gate_up_batch, qmoe_down_batch) with experts chosen by several tokens,
 * by one and by none. The ccq formats go through
 * qmat_tile first, and a test rebuilds the tiled layout on the host from the description in
 * kernels/cuda/qlayout.cuh and compares it byte for byte. A last test checks the codec's decode against a
 * decoder written here straight from spec/ccq.md, so that a codec bug cannot hide a kernel bug. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/bf16.h"
#include "base/rng.h"
#include "ccq/ccq.h"
#include "kernels/cuda/cudev.h"
#include "kernels/cuda/qgemv.h"
#include "tests/gpu/gpu_util.h"
#include "tests/harness.h"

static const qfmt ALL[] = {QF_BF16, QF_WINT8, QF_WINT4, QF_CCQ275, QF_CCQ25, QF_CCQ206};
#define NALL 6

/* A random valid code_scale / code_zp pair: every code of q in 0..255 inside [0, 2^15). One row in 5
 * takes "round" values (integers and halves) so that fmaf lands exactly on integers and the floor's
 * rounding mode is tested; one in 5 touches the ends of the code range. */
static void random_code_line(rng_t *r, int64_t row, float *cs, float *zp) {
    float a = gt_unif(r, 1.0f, 128.0f);
    if (row % 5 == 1) a = (float)(int)a + ((row / 5) % 2 ? 0.5f : 0.0f);
    int neg = rng_next(r) & 1;
    float span = 255.0f * a;
    float lo = neg ? span + 1.0f : 1.0f, hi = neg ? 32766.0f : 32766.0f - span;
    float z = gt_unif(r, lo, hi);
    if (row % 5 == 1) z = floorf(z) + ((row / 5) % 3 == 0 ? -0.5f : 0.0f);
    if (row % 5 == 2) z = neg ? 32767.0f - 0.6f : 0.0f; /* codes up to 32767 (or down to 0) */
    *cs = neg ? -a : a;
    *zp = z;
}

typedef struct {
    qfmt f;
    int64_t rows, n, k; /* rows = experts * n */
    int experts;
    ccq_part parts[CCQ_MAX_PARTS];
    int nparts;
    void *host[CCQ_MAX_PARTS];
    void *dev[CCQ_MAX_PARTS];
    void *tiled;
    ccq_tensor t;
    qmat_dev m;
} tweight;

static void tw_free(tweight *w) {
    for (int i = 0; i < CCQ_MAX_PARTS; i++) {
        free(w->host[i]);
        cu_free(w->dev[i]);
    }
    cu_free(w->tiled);
    memset(w, 0, sizeof *w);
}

static int is_ccq(qfmt f) { return f == QF_CCQ275 || f == QF_CCQ25 || f == QF_CCQ206; }

/* Makes a random valid weight of `experts` x [n][k] in format f on the host and (upload) the device, tiled
 * with `layout` (QLAYOUT_ROWS or QLAYOUT_GATE_UP) when the format has a tiled layout. */
static int tw_make_on(tweight *w, qfmt f, int experts, int64_t n, int64_t k, rng_t *r, int upload, int layout) {
    err_t e = {0};
    memset(w, 0, sizeof *w);
    w->f = f, w->experts = experts, w->n = n, w->k = k, w->rows = experts * n;
    ccq_format cf = ccq_format_of(gt_base_of(f));
    float *cs, *zp;
    if (!gt_random_parts(f, w->rows, k, r, w->parts, &w->nparts, w->host, &cs, &zp)) return 0;
    if (f == QF_CCQ206)
        for (int64_t j = 0; j < w->rows; j++) random_code_line(r, j, &cs[j], &zp[j]);
    if (ccq_wrap(&cf, w->rows, k, w->parts, w->nparts, &w->t, &e)) return FAIL("ccq_wrap of random %s: %s", qfmt_name(f), e.msg);
    if (!upload) return 1;
    memset(&w->m, 0, sizeof w->m);
    w->m.fmt = f, w->m.n = n, w->m.k = k, w->m.n_experts = experts;
    for (int i = 0; i < w->nparts; i++) {
        w->dev[i] = cu_malloc(w->parts[i].nbytes, &e);
        if (!w->dev[i] || cu_h2d(w->dev[i], w->host[i], w->parts[i].nbytes, &e)) return FAIL("upload: %s", e.msg);
        const char *nm = w->parts[i].name;
        if (!strcmp(nm, "weight") || !strcmp(nm, "qweight")) w->m.q = w->dev[i];
        else if (!strcmp(nm, "scale")) w->m.scale = w->dev[i];
        else if (!strcmp(nm, "super_scale")) w->m.super = w->dev[i];
        else if (!strcmp(nm, "local_scale")) w->m.local = w->dev[i];
        else if (!strcmp(nm, "code_scale")) w->m.code_scale = w->dev[i];
        else if (!strcmp(nm, "code_zp")) w->m.code_zp = w->dev[i];
    }
    if (is_ccq(f)) {
        size_t nb = qmat_tile_bytes(f, experts, n, k, layout);
        w->tiled = cu_malloc(nb, &e);
        if (!w->tiled || cu_memset(w->tiled, 0xA5, nb, &e)) return FAIL("%s", e.msg); /* the tiling must write all */
        if (qmat_tile(&w->m, layout, w->tiled, NULL, &e) || cu_sync(&e)) return FAIL("qmat_tile %s: %s", qfmt_name(f), e.msg);
    }
    return 1;
}

static int tw_make(tweight *w, qfmt f, int experts, int64_t n, int64_t k, rng_t *r) {
    return tw_make_on(w, f, experts, n, k, r, 1, QLAYOUT_ROWS);
}

/* Reference: decoded rows of the weight (codec) times x in fp64; also sum |w x| for the bound. */
static int ref_rows(const tweight *w, int64_t row0, int64_t nrows, const float *x, double *ref, double *absref) {
    err_t e = {0};
    float *d = malloc((size_t)w->k * sizeof *d);
    for (int64_t r = 0; r < nrows; r++) {
        if (ccq_decode_row(&w->t, row0 + r, d, &e)) {
            free(d);
            return FAIL("ccq_decode_row: %s", e.msg);
        }
        double s = 0, a = 0;
        for (int64_t k = 0; k < w->k; k++) {
            double p = (double)d[k] * x[k];
            s += p;
            a += fabs(p);
        }
        ref[r] = s, absref[r] = a;
    }
    free(d);
    return 1;
}

/* Compares n outputs (fp32 or bf16 on the host) with the reference: every element within bound[i]
 * (plus half a bf16 ulp for bf16 outputs), the norm-wise relative error under 1e-5 (1e-2 for bf16),
 * nothing left unwritten (NaN from the poison). */
static int compare(const char *what, const void *yh, int bf16, const double *ref, const double *bound, int64_t n,
                   uint64_t seed) {
    double num = 0, den = 0, worst = 0;
    int64_t bad = 0, nan = 0, wi = -1;
    for (int64_t i = 0; i < n; i++) {
        double y = bf16 ? bf16_to_f32(((const uint16_t *)yh)[i]) : ((const float *)yh)[i];
        if (!isfinite(y)) {
            nan++;
            continue;
        }
        double d = fabs(y - ref[i]);
        num += d * d, den += ref[i] * ref[i];
        double lim = bound[i] + (bf16 ? fabs(ref[i]) * (1.0 / 256) : 0) + 1e-30;
        if (d > lim) bad++;
        if (d / lim > worst) worst = d / lim, wi = i;
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    /* the norm-wise bound needs enough elements: with a handful, |ref| can be near 0 by chance */
    int ok = nan == 0 && bad == 0 && (n < 64 || rel <= (bf16 ? 1e-2 : 1e-5));
    if (!ok || getenv("ERNIE_TEST_VERBOSE"))
        fprintf(stderr, "    %s: n %lld, norm rel err %.3g, worst err/bound %.3g at %lld, %lld over bound, %lld not finite%s (seed %llu)\n",
                what, (long long)n, rel, worst, (long long)wi, (long long)bad, (long long)nan, ok ? "" : " FAIL",
                (unsigned long long)seed);
    if (!ok) FAIL("%s: outputs differ from the fp64 reference", what);
    return ok;
}

/* One plain product of a random [n][k] weight, fp32 or bf16 out, with or without the workspace. */
static int check_plain(qfmt f, int64_t n, int64_t k, int out_bf16, int use_ws, rng_t *r, uint64_t seed) {
    err_t e = {0};
    tweight w;
    char what[160];
    snprintf(what, sizeof what, "%s %lldx%lld %s%s", qfmt_name(f), (long long)n, (long long)k, out_bf16 ? "bf16" : "f32",
             use_ws ? "" : " no-ws");
    if (!tw_make(&w, f, 1, n, k, r)) return FAIL("%s: making the weight failed", what);
    uint16_t *xb = malloc((size_t)k * 2);
    float *xf = malloc((size_t)k * 4);
    double *ref = malloc((size_t)n * 8), *bound = malloc((size_t)n * 8);
    gt_random_x(r, xb, xf, k);
    int ok = ref_rows(&w, 0, n, xf, ref, bound);
    for (int64_t i = 0; i < n; i++) bound[i] *= 2e-5;
    qgemv_ws ws = {0};
    size_t ybytes = (size_t)n * (out_bf16 ? 2 : 4);
    void *xd = cu_malloc((size_t)k * 2, &e), *yd = gt_poisoned(ybytes, &e);
    void *yh = malloc(ybytes), *yh2 = malloc(ybytes);
    if (ok && (!xd || !yd || cu_h2d(xd, xb, (size_t)k * 2, &e))) ok = FAIL("%s: %s", what, e.msg);
    if (ok && use_ws && qgemv_ws_alloc(&ws, 65536, 64, &e)) ok = FAIL("%s: %s", what, e.msg);
    if (ok && (qgemv(&w.m, xd, yd, out_bf16 ? QOUT_BF16 : QOUT_F32, use_ws ? &ws : NULL, NULL, &e) || cu_sync(&e) ||
               cu_d2h(yh, yd, ybytes, &e)))
        ok = FAIL("%s: qgemv: %s", what, e.msg);
    if (ok) ok = compare(what, yh, out_bf16, ref, bound, n, seed);
    /* a second call gives the same bits (no order-dependent sums), and the counters were left at 0 */
    if (ok && (cu_memset(yd, 0xFF, ybytes, &e) ||
               qgemv(&w.m, xd, yd, out_bf16 ? QOUT_BF16 : QOUT_F32, use_ws ? &ws : NULL, NULL, &e) || cu_sync(&e) ||
               cu_d2h(yh2, yd, ybytes, &e)))
        ok = FAIL("%s: second qgemv: %s", what, e.msg);
    if (ok && memcmp(yh, yh2, ybytes)) ok = FAIL("%s: two calls gave different results", what);
    qgemv_ws_free(&ws);
    cu_free(xd), cu_free(yd);
    free(yh), free(yh2), free(xb), free(xf), free(ref), free(bound);
    tw_free(&w);
    return ok;
}

static int check_moe(qfmt f, int experts, int topk, int64_t inter, int64_t hidden, int out_bf16, rng_t *r,
                     uint64_t seed);

static const int64_t SMALL[][2] = {{1, 64}, {3, 128}, {17, 192}, {33, 320}, {100, 640}, {257, 1024}, {1000, 2048}, {4099, 448}};
#define NSMALL 8

TEST(gemv_small_shapes_all_formats) {
    uint64_t seed = gt_fresh_seed();
    rng_t r;
    rng_seed(&r, seed);
    for (int f = 0; f < NALL; f++)
        for (int s = 0; s < NSMALL; s++)
            if (!check_plain(ALL[f], SMALL[s][0], SMALL[s][1], s % 3 == 2, s != 1, &r, seed)) return;
}

/* The real ERNIE-4.5-300B shapes: gate+up of the dense MLP / an expert pair, down, qkv, dense down. */
static const int64_t REAL[][2] = {{7168, 8192}, {8192, 3584}, {10240, 8192}, {8192, 28672}};

static void real_shapes(qfmt f) {
    uint64_t seed = gt_fresh_seed();
    rng_t r;
    rng_seed(&r, seed);
    for (int s = 0; s < 4; s++)
        if (!check_plain(f, REAL[s][0], REAL[s][1], 0, 1, &r, seed)) return;
    check_plain(f, 8192, 3584, 1, 1, &r, seed);
}

TEST(gemv_real_shapes_bf16) { real_shapes(QF_BF16); }
TEST(gemv_real_shapes_wint8) { real_shapes(QF_WINT8); }
TEST(gemv_real_shapes_wint4) { real_shapes(QF_WINT4); }
TEST(gemv_real_shapes_ccq275) { real_shapes(QF_CCQ275); }
TEST(gemv_real_shapes_ccq25) { real_shapes(QF_CCQ25); }
TEST(gemv_real_shapes_ccq206) { real_shapes(QF_CCQ206); }


/* ---- batches: qgemv_batch ---- */

/* T tokens through one random [n][k] weight; reference: each decoded row times every token in fp64. */
static int check_batch(qfmt f, int64_t n, int64_t k, int T, int out_bf16, rng_t *r, uint64_t seed) {
    err_t e = {0};
    tweight w;
    char what[160];
    snprintf(what, sizeof what, "%s %lldx%lld T%d %s", qfmt_name(f), (long long)n, (long long)k, T, out_bf16 ? "bf16" : "f32");
    if (!tw_make(&w, f, 1, n, k, r)) return FAIL("%s: making the weight failed", what);
    size_t nx = (size_t)T * k, ny = (size_t)T * n;
    uint16_t *xb = malloc(nx * 2);
    float *xf = malloc(nx * 4), *d = malloc((size_t)k * 4);
    double *ref = malloc(ny * 8), *bound = malloc(ny * 8);
    gt_random_x(r, xb, xf, (int64_t)nx);
    int ok = 1;
    for (int64_t row = 0; row < n && ok; row++) {
        if (ccq_decode_row(&w.t, row, d, &e)) ok = FAIL("ccq_decode_row: %s", e.msg);
        for (int tk = 0; tk < T && ok; tk++) {
            const float *xt = xf + (size_t)tk * k;
            double sum = 0, a = 0;
            for (int64_t c = 0; c < k; c++) {
                double pr = (double)d[c] * xt[c];
                sum += pr, a += fabs(pr);
            }
            ref[(size_t)tk * n + row] = sum, bound[(size_t)tk * n + row] = 2e-5 * a;
        }
    }
    qgemv_ws ws = {0};
    size_t ybytes = ny * (out_bf16 ? 2 : 4);
    void *xd = cu_malloc(nx * 2, &e), *yd = gt_poisoned(ybytes, &e);
    void *yh = malloc(ybytes), *yh2 = malloc(ybytes);
    qout ot = out_bf16 ? QOUT_BF16 : QOUT_F32;
    if (ok && (!xd || !yd || cu_h2d(xd, xb, nx * 2, &e) || qgemv_ws_alloc(&ws, 65536 * 8, 64, &e)))
        ok = FAIL("%s: %s", what, e.msg);
    if (ok && (qgemv_batch(&w.m, T, xd, yd, ot, &ws, NULL, &e) || cu_sync(&e) || cu_d2h(yh, yd, ybytes, &e)))
        ok = FAIL("%s: qgemv_batch: %s", what, e.msg);
    if (ok) ok = compare(what, yh, out_bf16, ref, bound, (int64_t)ny, seed);
    if (ok && (cu_memset(yd, 0xFF, ybytes, &e) || qgemv_batch(&w.m, T, xd, yd, ot, &ws, NULL, &e) || cu_sync(&e) ||
               cu_d2h(yh2, yd, ybytes, &e)))
        ok = FAIL("%s: second qgemv_batch: %s", what, e.msg);
    if (ok && memcmp(yh, yh2, ybytes)) ok = FAIL("%s: two calls gave different results", what);
    qgemv_ws_free(&ws);
    cu_free(xd), cu_free(yd);
    free(yh), free(yh2), free(xb), free(xf), free(d), free(ref), free(bound);
    tw_free(&w);
    return ok;
}

static const qfmt CCQ[] = {QF_CCQ275, QF_CCQ25, QF_CCQ206};

TEST(gemv_batch_small_shapes) {
    uint64_t seed = gt_fresh_seed();
    rng_t r;
    rng_seed(&r, seed);
    static const int Ts[] = {2, 3, 8, 9, 16, 17, 33, 64};
    for (int f = 0; f < NALL; f++)
        for (int s = 0; s < NSMALL; s++)
            if (!check_batch(ALL[f], SMALL[s][0], SMALL[s][1], Ts[(s + f) % NSMALL], s % 3 == 1, &r, seed)) return;
}

TEST(gemv_batch_real_shapes) {
    uint64_t seed = gt_fresh_seed();
    rng_t r;
    rng_seed(&r, seed);
    static const int Ts[] = {4, 16, 8, 2};
    for (int f = 0; f < 3; f++)
        for (int s = 0; s < 4; s++)
            if (!check_batch(CCQ[f], REAL[s][0], REAL[s][1], Ts[(s + f) % 4], 0, &r, seed)) return;
    check_batch(QF_CCQ206, 7168, 8192, 64, 1, &r, seed);
}

/* bf16, wint8, wint4 (the row-major batch kernel) at the real shapes */
TEST(gemv_batch_real_shapes_rowmajor) {
    uint64_t seed = gt_fresh_seed();
    rng_t r;
    rng_seed(&r, seed);
    static const qfmt RM[] = {QF_BF16, QF_WINT8, QF_WINT4};
    static const int Ts[] = {4, 16, 8, 2};
    for (int f = 0; f < 3; f++)
        for (int s = 0; s < 4; s++)
            if (!check_batch(RM[f], REAL[s][0], REAL[s][1], Ts[(s + f) % 4], 0, &r, seed)) return;
    check_batch(QF_WINT8, 8192, 3584, 64, 1, &r, seed);
}

/* ---- the tiled layout, rebuilt on the host from its description in kernels/cuda/qlayout.cuh ---- */

static int tiled_layout_matches(qfmt f, int experts, int64_t n, int64_t k, int layout, rng_t *r, uint64_t seed) {
    err_t e = {0};
    tweight w;
    if (!tw_make_on(&w, f, experts, n, k, r, 1, layout)) return 0;
    int ub = f == QF_CCQ275 ? 1408 : f == QF_CCQ25 ? 1280 : 1056;
    int64_t tpe = layout == QLAYOUT_GATE_UP ? (n / 2 + 7) / 8 : (n + 15) / 16, units = (k + 255) / 256, gn = k / 64;
    size_t nb = (size_t)experts * tpe * units * ub;
    int ok = CHECK_INT(qmat_tile_bytes(f, experts, n, k, layout), nb);
    uint8_t *got = malloc(nb), *want = calloc(nb, 1);
    if (ok && cu_d2h(got, w.tiled, nb, &e)) ok = FAIL("%s", e.msg);
    const uint8_t *q = w.host[0], *loc = f == QF_CCQ206 ? w.host[1] : NULL;
    for (int64_t ex = 0; ex < experts && ok; ex++)
        for (int64_t j = 0; j < tpe; j++)
            for (int p = 0; p < 16; p++) {
                int64_t row;
                int valid;
                if (layout == QLAYOUT_GATE_UP) {
                    int64_t c = 8 * j + p % 8;
                    valid = c < n / 2, row = c + (p >= 8 ? n / 2 : 0);
                } else {
                    row = 16 * j + p, valid = row < n;
                }
                int h = p / 8, g = p % 8;
                for (int64_t u = 0; u < units; u++) {
                    uint8_t *blk = want + ((ex * tpe + j) * units + u) * ub;
                    for (int Gi = 0; Gi < 4; Gi++) {
                        int64_t G = 4 * u + Gi;
                        if (!valid || G >= gn) continue;
                        int64_t gr = ex * n + row;
                        for (int t = 0; t < 4; t++) {
                            uint8_t *a = blk + h * 512 + (4 * g + t) * 16 + 4 * Gi;
                            if (f == QF_CCQ275) {
                                const uint8_t *src = q + (gr * gn + G) * 22;
                                memcpy(a, src + 5 * t, 4);
                                blk[1024 + h * 128 + (4 * g + t) * 4 + Gi] = src[5 * t + 4];
                                if (t == 0) memcpy(blk + 1280 + h * 64 + g * 8 + 2 * Gi, src + 20, 2);
                            } else if (f == QF_CCQ25) {
                                const uint8_t *src = q + (gr * gn + G) * 20;
                                memcpy(a, src + 4 * t, 4);
                                if (t == 0) memcpy(blk + 1024 + h * 128 + g * 16 + 4 * Gi, src + 16, 4);
                            } else {
                                memcpy(a, q + gr * (k / 4) + G * 16 + 4 * t, 4);
                                if (t == 0) {
                                    int lb = loc[gr * ((k + 127) / 128) + G / 2], l4 = G % 2 ? lb & 15 : lb >> 4;
                                    int bit = 16 * h + 4 * Gi;
                                    blk[1024 + g * 4 + bit / 8] |= (uint8_t)(l4 << (bit % 8));
                                }
                            }
                        }
                    }
                }
            }
    if (ok) {
        size_t i = 0;
        while (i < nb && got[i] == want[i]) i++;
        if (i < nb)
            ok = FAIL("%s E%d %lldx%lld layout %d: byte %zu (block %zu, offset %zu) is %d, the description says %d (seed %llu)",
                      qfmt_name(f), experts, (long long)n, (long long)k, layout, i, i / ub, i % ub, got[i], want[i],
                      (unsigned long long)seed);
    }
    free(got), free(want);
    tw_free(&w);
    return ok;
}

TEST(tiled_layout_is_as_documented) {
    uint64_t seed = gt_fresh_seed();
    rng_t r;
    rng_seed(&r, seed);
    for (int f = 0; f < 3; f++) {
        if (!tiled_layout_matches(CCQ[f], 1, 40, 320, QLAYOUT_ROWS, &r, seed)) return;
        if (!tiled_layout_matches(CCQ[f], 3, 36, 576, QLAYOUT_GATE_UP, &r, seed)) return;
        if (!tiled_layout_matches(CCQ[f], 2, 32, 512, QLAYOUT_ROWS, &r, seed)) return;
    }
}

/* ---- experts ---- */

static double silu(double g) { return g / (1.0 + exp(-g)); }

/* One MoE layer: gate/up of topk experts (SwiGLU) and the weighted down projection, each against the
 * fp64 reference; the down projection takes the reference's h rounded to bf16 as its input. */
static int check_moe(qfmt f, int experts, int topk, int64_t inter, int64_t hidden, int out_bf16, rng_t *r, uint64_t seed) {
    err_t e = {0};
    char what[160];
    snprintf(what, sizeof what, "%s moe E%d top%d I%lld H%lld %s", qfmt_name(f), experts, topk, (long long)inter,
             (long long)hidden, out_bf16 ? "bf16" : "f32");
    tweight gu, dn;
    if (!tw_make_on(&gu, f, experts, 2 * inter, hidden, r, 1, QLAYOUT_GATE_UP)) return FAIL("%s: gate/up weight", what);
    if (!tw_make(&dn, f, experts, hidden, inter, r)) {
        tw_free(&gu);
        return FAIL("%s: down weight", what);
    }
    int ok = 1;
    int32_t ids[64];
    float rw[64];
    for (int s = 0; s < topk; s++) {
        int again;
        do { /* distinct experts, in random order */
            ids[s] = (int32_t)(rng_next(r) % (uint64_t)experts);
            again = 0;
            for (int j = 0; j < s; j++) again |= ids[j] == ids[s];
        } while (again);
        rw[s] = gt_unif(r, 0.05f, 1.0f);
    }
    uint16_t *xb = malloc((size_t)hidden * 2);
    float *xf = malloc((size_t)hidden * 4);
    gt_random_x(r, xb, xf, hidden);
    /* gate/up reference */
    int64_t nh = (int64_t)topk * inter;
    double *g = malloc((size_t)inter * 8), *ga = malloc((size_t)inter * 8), *u = malloc((size_t)inter * 8),
           *ua = malloc((size_t)inter * 8);
    double *href = malloc((size_t)nh * 8), *hbound = malloc((size_t)nh * 8);
    uint16_t *hb = malloc((size_t)nh * 2);
    float *hf = malloc((size_t)nh * 4);
    for (int s = 0; s < topk && ok; s++) {
        int64_t base = (int64_t)ids[s] * 2 * inter;
        ok = ref_rows(&gu, base, inter, xf, g, ga) && ref_rows(&gu, base + inter, inter, xf, u, ua);
        for (int64_t c = 0; c < inter && ok; c++) {
            double sg = silu(g[c]), dsg = 1.0 / (1.0 + exp(-g[c])) * (1.0 + g[c] * (1.0 - 1.0 / (1.0 + exp(-g[c]))));
            href[s * inter + c] = sg * u[c];
            hbound[s * inter + c] = fabs(dsg * u[c]) * 2e-5 * ga[c] + fabs(sg) * 2e-5 * ua[c] + 1e-7 * fabs(sg * u[c]);
            hb[s * inter + c] = f32_to_bf16((float)(sg * u[c]));
            hf[s * inter + c] = bf16_to_f32(hb[s * inter + c]);
        }
    }
    /* down reference from the bf16 h */
    double *yref = calloc((size_t)hidden, 8), *ybound = calloc((size_t)hidden, 8), *tmp = malloc((size_t)hidden * 8),
           *tmpa = malloc((size_t)hidden * 8);
    for (int s = 0; s < topk && ok; s++) {
        ok = ref_rows(&dn, (int64_t)ids[s] * hidden, hidden, hf + s * inter, tmp, tmpa);
        for (int64_t i = 0; i < hidden; i++) yref[i] += rw[s] * tmp[i], ybound[i] += 2e-5 * rw[s] * tmpa[i];
    }
    qgemv_ws ws = {0};
    void *xd = cu_malloc((size_t)hidden * 2, &e), *idd = cu_malloc(256, &e), *rwd = cu_malloc(256, &e);
    size_t hbytes = (size_t)nh * (out_bf16 ? 2 : 4), ybytes = (size_t)hidden * (out_bf16 ? 2 : 4);
    void *hd = gt_poisoned(hbytes, &e), *hin = cu_malloc((size_t)nh * 2, &e), *yd = gt_poisoned(ybytes, &e);
    void *hh = malloc(hbytes), *yh = malloc(ybytes);
    if (ok && (!xd || !idd || !rwd || !hd || !hin || !yd || qgemv_ws_alloc(&ws, 65536, 64, &e) ||
               cu_h2d(xd, xb, (size_t)hidden * 2, &e) || cu_h2d(idd, ids, sizeof(int32_t) * topk, &e) ||
               cu_h2d(rwd, rw, sizeof(float) * topk, &e) || cu_h2d(hin, hb, (size_t)nh * 2, &e)))
        ok = FAIL("%s: %s", what, e.msg);
    qout ot = out_bf16 ? QOUT_BF16 : QOUT_F32;
    if (ok && (qmoe_gate_up(&gu.m, idd, topk, xd, hd, ot, &ws, NULL, &e) || cu_sync(&e) || cu_d2h(hh, hd, hbytes, &e)))
        ok = FAIL("%s: qmoe_gate_up: %s", what, e.msg);
    char w2[200];
    snprintf(w2, sizeof w2, "%s gate_up", what);
    if (ok) ok = compare(w2, hh, out_bf16, href, hbound, nh, seed);
    if (ok && (qmoe_down(&dn.m, idd, rwd, topk, hin, yd, ot, topk > 1 ? &ws : NULL, NULL, &e) || cu_sync(&e) ||
               cu_d2h(yh, yd, ybytes, &e)))
        ok = FAIL("%s: qmoe_down: %s", what, e.msg);
    snprintf(w2, sizeof w2, "%s down", what);
    if (ok) ok = compare(w2, yh, out_bf16, yref, ybound, hidden, seed);
    qgemv_ws_free(&ws);
    cu_free(xd), cu_free(idd), cu_free(rwd), cu_free(hd), cu_free(hin), cu_free(yd);
    free(hh), free(yh), free(xb), free(xf), free(g), free(ga), free(u), free(ua), free(href), free(hbound), free(hb),
        free(hf), free(yref), free(ybound), free(tmp), free(tmpa);
    tw_free(&gu);
    tw_free(&dn);
    return ok;
}

TEST(moe_small_all_formats) {
    uint64_t seed = gt_fresh_seed();
    rng_t r;
    rng_seed(&r, seed);
    for (int f = 0; f < NALL; f++) {
        if (!check_moe(ALL[f], 6, 4, 192, 320, 0, &r, seed)) return;
        if (!check_moe(ALL[f], 3, 1, 64, 128, 1, &r, seed)) return; /* one expert: no workspace */
        if (!check_moe(ALL[f], 9, 8, 256, 64, f & 1, &r, seed)) return;
    }
}

static void moe_real(qfmt f) {
    uint64_t seed = gt_fresh_seed();
    rng_t r;
    rng_seed(&r, seed);
    check_moe(f, 8, 8, 3584, 8192, 0, &r, seed);
}

TEST(moe_real_shape_ccq206) { moe_real(QF_CCQ206); }
TEST(moe_real_shape_ccq25) { moe_real(QF_CCQ25); }
TEST(moe_real_shape_ccq275) { moe_real(QF_CCQ275); }
TEST(moe_real_shape_wint4) { moe_real(QF_WINT4); }
TEST(moe_real_shape_wint8) { moe_real(QF_WINT8); }
TEST(moe_real_shape_bf16) { moe_real(QF_BF16); }

/* ---- argument checks (no GPU work) ---- */

TEST(gemv_rejects_bad_shapes) {
    err_t e = {0};
    qmat_dev m = {0};
    m.fmt = QF_WINT4, m.n = 8, m.k = 100, m.n_experts = 1, m.q = (void *)16, m.scale = (float *)16;
    CHECK(qgemv(&m, (uint16_t *)16, (void *)16, QOUT_F32, NULL, NULL, &e) == -1);
    CHECK_CONTAINS(e.msg, "multiple of 64");
    m.k = 128, m.scale = NULL;
    CHECK(qgemv(&m, (uint16_t *)16, (void *)16, QOUT_F32, NULL, NULL, &e) == -1);
    CHECK_CONTAINS(e.msg, "missing a part");
    m.scale = (float *)16, m.n_experts = 4;
    CHECK(qgemv(&m, (uint16_t *)16, (void *)16, QOUT_F32, NULL, NULL, &e) == -1);
    CHECK(qmoe_down(&m, (int32_t *)16, (float *)16, 4, (uint16_t *)16, (void *)16, QOUT_F32, NULL, NULL, &e) == -1);
    CHECK_CONTAINS(e.msg, "workspace");
}

/* ---- the codec's decode against spec/ccq.md, written out here ---- */

static float spec_decode(qfmt f, const tweight *w, int64_t r, int64_t k) {
    const uint8_t *q = w->host[0];
    int64_t K = w->k, gi = k / 64, j = k % 64;
    switch (f) {
    case QF_CCQ275: {
        const uint8_t *g = q + r * (K / 64 * 22) + gi * 22;
        float super = bf16_to_f32(((const uint16_t *)w->host[1])[r]);
        int loc = g[21] & 15;
        int v = j == 63 ? g[21] >> 4 : (g[j / 3] >> (4 - 2 * (j % 3))) & 15;
        return (float)(v - 8) * (float)loc * super;
    }
    case QF_CCQ25: {
        const uint16_t *g = (const uint16_t *)q + r * (K / 64 * 10) + gi * 10;
        float super = bf16_to_f32(((const uint16_t *)w->host[1])[r]);
        static const int sh[7] = {13, 11, 9, 6, 4, 2, 0};
        int loc = g[9] & 0x1FFF;
        int v = j == 63 ? g[9] >> 13 : (g[j / 7] >> sh[j % 7]) & 7;
        return (float)(v - 4) * (float)loc * super;
    }
    case QF_CCQ206: {
        const uint8_t *loc = w->host[1];
        float cs = ((const float *)w->host[2])[r], zp = ((const float *)w->host[3])[r];
        float super = bf16_to_f32(((const uint16_t *)w->host[4])[r]);
        int qb = q[r * (K / 4) + k / 4];
        int code = (int)floorf(fmaf((float)qb, cs, zp + 0.5f));
        int v = (code >> (9 - 3 * (int)(k % 4))) & 63;
        int lb = loc[r * ((K + 127) / 128) + gi / 2];
        int l = gi % 2 ? lb & 15 : lb >> 4;
        return (float)(v - 32) * (float)l * super;
    }
    case QF_WINT4: {
        int b = q[r * (K / 2) + k / 2];
        return (float)((k % 2 ? b >> 4 : b & 15) - 8) * ((const float *)w->host[1])[r];
    }
    case QF_WINT8: return (float)((const int8_t *)q)[r * K + k] * ((const float *)w->host[1])[r];
    default: return bf16_to_f32(((const uint16_t *)q)[r * K + k]);
    }
}

TEST(codec_decode_matches_spec) {
    uint64_t seed = gt_fresh_seed();
    rng_t r;
    rng_seed(&r, seed);
    for (int f = 0; f < NALL; f++) {
        tweight w;
        if (!tw_make_on(&w, ALL[f], 1, 7, 320, &r, 0, 0)) return;
        float row[320];
        err_t e = {0};
        for (int64_t i = 0; i < 7; i++) {
            if (!CHECK(ccq_decode_row(&w.t, i, row, &e) == 0)) break;
            for (int64_t k = 0; k < 320; k++) {
                float s = spec_decode(ALL[f], &w, i, k);
                if (s != row[k]) {
                    FAIL("%s row %lld col %lld: codec %g, spec %g (seed %llu)", qfmt_name(ALL[f]), (long long)i,
                         (long long)k, row[k], s, (unsigned long long)seed);
                    i = 7;
                    break;
                }
            }
        }
        tw_free(&w);
    }
}

/* ---- several tokens routed to experts: qmoe_route_build, qmoe_gate_up_batch, qmoe_down_batch ---- */

/* Router choices of T tokens (distinct experts per token). mode 0: uniform over all experts; mode 1: the
 * tokens share a pool of topk + 2 experts (each chosen by several tokens, most experts by none), except
 * that token 0's last choice is the last expert, which no other token chooses (an expert of one token). */
static void random_ids(rng_t *r, int experts, int T, int topk, int mode, int32_t *ids) {
    for (int t = 0; t < T; t++)
        for (int j = 0; j < topk; j++) {
            int again;
            do {
                if (mode == 1 && t == 0 && j == topk - 1) ids[t * topk + j] = experts - 1;
                else if (mode == 1) ids[t * topk + j] = (int32_t)(rng_next(r) % (uint64_t)(topk + 2));
                else ids[t * topk + j] = (int32_t)(rng_next(r) % (uint64_t)experts);
                again = 0;
                for (int i = 0; i < j; i++) again |= ids[t * topk + i] == ids[t * topk + j];
            } while (again);
        }
}

/* The fp64 products of slots with their weight rows: out[s][i] = W_{e(s)}[i] . in(s) for i < nrows, where
 * row i of expert e is weight row e * n + row0 + i; every selected expert's rows are decoded once. */
static int ref_slots(const tweight *w, const int32_t *offsets, int experts, const float **in, int64_t row0,
                     int64_t nrows, int64_t ostride, double *out, double *absout) {
    err_t e = {0};
    float *d = malloc((size_t)w->k * sizeof *d);
    int ok = 1;
    for (int ex = 0; ex < experts && ok; ex++) {
        if (offsets[ex + 1] == offsets[ex]) continue;
        for (int64_t i = 0; i < nrows && ok; i++) {
            if (ccq_decode_row(&w->t, (int64_t)ex * w->n + row0 + i, d, &e)) ok = FAIL("ccq_decode_row: %s", e.msg);
            for (int s = offsets[ex]; s < offsets[ex + 1] && ok; s++) {
                double sum = 0, a = 0;
                for (int64_t c = 0; c < w->k; c++) {
                    double p = (double)d[c] * in[s][c];
                    sum += p, a += fabs(p);
                }
                out[(size_t)s * ostride + i] = sum, absout[(size_t)s * ostride + i] = a;
            }
        }
    }
    free(d);
    return ok;
}

/* One MoE layer for T tokens: the routing built on the device (checked against the host's), gate/up with
 * SwiGLU of every slot and the routing-weighted down projection per token, each against the fp64 reference
 * (the down projection takes the reference's h rounded to bf16), twice (same bits), outputs poisoned. The
 * down weight is [dn_n][inter] (dn_n = hidden in a model; any n here). */
static int check_moe_batch(qfmt f, int experts, int T, int topk, int64_t inter, int64_t hidden, int64_t dn_n, int out_bf16,
                           int mode, rng_t *r, uint64_t seed) {
    err_t e = {0};
    char what[200];
    snprintf(what, sizeof what, "%s moe batch E%d T%d top%d I%lld H%lld N%lld %s %s", qfmt_name(f), experts, T, topk,
             (long long)inter, (long long)hidden, (long long)dn_n, out_bf16 ? "bf16" : "f32", mode ? "shared" : "uniform");
    tweight gu, dn;
    if (!tw_make_on(&gu, f, experts, 2 * inter, hidden, r, 1, QLAYOUT_GATE_UP)) return FAIL("%s: gate/up weight", what);
    if (!tw_make(&dn, f, experts, dn_n, inter, r)) {
        tw_free(&gu);
        return FAIL("%s: down weight", what);
    }
    const int total = T * topk;
    int32_t *ids = malloc(sizeof(int32_t) * total), *offs = calloc((size_t)experts + 1, 4), *perm = malloc(4 * (size_t)total),
            *slot = malloc(4 * (size_t)total);
    int32_t *offs_d = malloc(4 * ((size_t)experts + 1)), *perm_d = malloc(4 * (size_t)total), *slot_d = malloc(4 * (size_t)total);
    float *rw = malloc(4 * (size_t)total);
    random_ids(r, experts, T, topk, mode, ids);
    for (int i = 0; i < total; i++) rw[i] = gt_unif(r, 0.05f, 1.0f);
    /* the host's routing: slots by expert, then by token */
    for (int i = 0; i < total; i++) offs[ids[i] + 1]++;
    for (int ex = 0; ex < experts; ex++) offs[ex + 1] += offs[ex];
    {
        int *pos = malloc(sizeof(int) * (size_t)experts);
        for (int ex = 0; ex < experts; ex++) pos[ex] = offs[ex];
        for (int i = 0; i < total; i++) perm[pos[ids[i]]] = i / topk, slot[i] = pos[ids[i]]++;
        free(pos);
    }
    uint16_t *xb = malloc((size_t)T * hidden * 2);
    float *xf = malloc((size_t)T * hidden * 4);
    gt_random_x(r, xb, xf, (int64_t)T * hidden);
    /* gate/up reference per slot */
    const float **xin = malloc(sizeof(float *) * (size_t)total);
    for (int s = 0; s < total; s++) xin[s] = xf + (size_t)perm[s] * hidden;
    int64_t nh = (int64_t)total * inter;
    double *g = malloc((size_t)nh * 8), *ga = malloc((size_t)nh * 8), *u = malloc((size_t)nh * 8), *ua = malloc((size_t)nh * 8);
    double *href = malloc((size_t)nh * 8), *hbound = malloc((size_t)nh * 8);
    uint16_t *hb = malloc((size_t)nh * 2);
    float *hf = malloc((size_t)nh * 4);
    int ok = ref_slots(&gu, offs, experts, xin, 0, inter, inter, g, ga) &&
             ref_slots(&gu, offs, experts, xin, inter, inter, inter, u, ua);
    for (int64_t i = 0; i < nh && ok; i++) {
        double sg = silu(g[i]), dsg = 1.0 / (1.0 + exp(-g[i])) * (1.0 + g[i] * (1.0 - 1.0 / (1.0 + exp(-g[i]))));
        href[i] = sg * u[i];
        hbound[i] = fabs(dsg * u[i]) * 2e-5 * ga[i] + fabs(sg) * 2e-5 * ua[i] + 1e-7 * fabs(sg * u[i]);
        hb[i] = f32_to_bf16((float)(sg * u[i]));
        hf[i] = bf16_to_f32(hb[i]);
    }
    /* down reference: per slot, then each token's weighted sum in its routing order */
    const float **hin = malloc(sizeof(float *) * (size_t)total);
    for (int s = 0; s < total; s++) hin[s] = hf + (size_t)s * inter;
    double *ds = malloc((size_t)total * dn_n * 8), *dsa = malloc((size_t)total * dn_n * 8);
    double *yref = calloc((size_t)T * dn_n, 8), *ybound = calloc((size_t)T * dn_n, 8);
    if (ok) ok = ref_slots(&dn, offs, experts, hin, 0, dn_n, dn_n, ds, dsa);
    for (int t = 0; t < T && ok; t++)
        for (int j = 0; j < topk; j++) {
            int s = slot[t * topk + j];
            for (int64_t i = 0; i < dn_n; i++)
                yref[t * dn_n + i] += rw[t * topk + j] * ds[(size_t)s * dn_n + i],
                    ybound[t * dn_n + i] += 2e-5 * rw[t * topk + j] * dsa[(size_t)s * dn_n + i];
        }
    qgemv_ws ws = {0};
    qout ot = out_bf16 ? QOUT_BF16 : QOUT_F32;
    size_t hbytes = (size_t)nh * (out_bf16 ? 2 : 4), ybytes = (size_t)T * dn_n * (out_bf16 ? 2 : 4);
    void *xd = cu_malloc((size_t)T * hidden * 2, &e), *idd = cu_malloc(4 * (size_t)total, &e), *rwd = cu_malloc(4 * (size_t)total, &e);
    void *offd = cu_malloc(4 * ((size_t)experts + 1), &e), *permd = cu_malloc(4 * (size_t)total, &e), *slotd = cu_malloc(4 * (size_t)total, &e);
    void *hd = gt_poisoned(hbytes, &e), *hin_d = cu_malloc((size_t)nh * 2, &e), *yd = gt_poisoned(ybytes, &e);
    void *hh = malloc(hbytes), *yh = malloc(ybytes), *hh2 = malloc(hbytes), *yh2 = malloc(ybytes);
    qmoe_route rt;
    if (ok && (!xd || !idd || !rwd || !offd || !permd || !slotd || !hd || !hin_d || !yd ||
               qgemv_ws_alloc(&ws, 65536 * 16, 64, &e) || cu_h2d(xd, xb, (size_t)T * hidden * 2, &e) ||
               cu_h2d(idd, ids, 4 * (size_t)total, &e) || cu_h2d(rwd, rw, 4 * (size_t)total, &e) ||
               cu_h2d(hin_d, hb, (size_t)nh * 2, &e)))
        ok = FAIL("%s: %s", what, e.msg);
    if (ok && (qmoe_route_build(idd, T, topk, experts, offd, permd, slotd, &rt, NULL, &e) || cu_sync(&e) ||
               cu_d2h(offs_d, offd, 4 * ((size_t)experts + 1), &e) || cu_d2h(perm_d, permd, 4 * (size_t)total, &e) ||
               cu_d2h(slot_d, slotd, 4 * (size_t)total, &e)))
        ok = FAIL("%s: qmoe_route_build: %s", what, e.msg);
    if (ok && (memcmp(offs, offs_d, 4 * ((size_t)experts + 1)) || memcmp(perm, perm_d, 4 * (size_t)total) ||
               memcmp(slot, slot_d, 4 * (size_t)total)))
        ok = FAIL("%s: qmoe_route_build differs from the host's routing (seed %llu)", what, (unsigned long long)seed);
    char w2[260];
    for (int rep = 0; rep < 2 && ok; rep++) {
        void *hout = rep ? hh2 : hh, *yout = rep ? yh2 : yh;
        if (rep && (cu_memset(hd, 0xFF, hbytes, &e) || cu_memset(yd, 0xFF, ybytes, &e))) ok = FAIL("%s", e.msg);
        if (ok && (qmoe_gate_up_batch(&gu.m, &rt, xd, hd, ot, &ws, NULL, &e) || cu_sync(&e) || cu_d2h(hout, hd, hbytes, &e)))
            ok = FAIL("%s: qmoe_gate_up_batch: %s", what, e.msg);
        snprintf(w2, sizeof w2, "%s gate_up", what);
        if (ok && !rep) ok = compare(w2, hh, out_bf16, href, hbound, nh, seed);
        if (ok && (qmoe_down_batch(&dn.m, &rt, rwd, hin_d, yd, ot, &ws, NULL, &e) || cu_sync(&e) ||
                   cu_d2h(yout, yd, ybytes, &e)))
            ok = FAIL("%s: qmoe_down_batch: %s", what, e.msg);
        snprintf(w2, sizeof w2, "%s down", what);
        if (ok && !rep) ok = compare(w2, yh, out_bf16, yref, ybound, (int64_t)T * dn_n, seed);
    }
    if (ok && (memcmp(hh, hh2, hbytes) || memcmp(yh, yh2, ybytes))) ok = FAIL("%s: two calls gave different results", what);
    qgemv_ws_free(&ws);
    cu_free(xd), cu_free(idd), cu_free(rwd), cu_free(offd), cu_free(permd), cu_free(slotd), cu_free(hd), cu_free(hin_d), cu_free(yd);
    free(hh), free(yh), free(hh2), free(yh2), free(xb), free(xf), free(xin), free(hin), free(g), free(ga), free(u), free(ua);
    free(href), free(hbound), free(hb), free(hf), free(ds), free(dsa), free(yref), free(ybound);
    free(ids), free(offs), free(perm), free(slot), free(offs_d), free(perm_d), free(slot_d), free(rw);
    tw_free(&gu);
    tw_free(&dn);
    return ok;
}

TEST(moe_batch_small_all_formats) {
    uint64_t seed = gt_fresh_seed();
    rng_t r;
    rng_seed(&r, seed);
    for (int f = 0; f < NALL; f++) {
        if (!check_moe_batch(ALL[f], 9, 5, 3, 192, 320, 320, 0, 0, &r, seed)) return;
        if (!check_moe_batch(ALL[f], 12, 17, 8, 128, 256, 100, f & 1, 1, &r, seed)) return; /* N not a multiple of 16 */
        if (!check_moe_batch(ALL[f], 6, 2, 1, 64, 128, 128, 1, 0, &r, seed)) return;
        if (!check_moe_batch(ALL[f], 16, 64, 8, 64, 192, 64, 0, f % 2, &r, seed)) return;
        if (!check_moe_batch(ALL[f], 4, 1, 2, 256, 64, 33, 0, 0, &r, seed)) return; /* one token */
    }
}

/* The ERNIE-4.5-300B expert shapes: 64 experts of [7168][8192] (gate/up) and [8192][3584] (down), top 8;
 * bf16 with 16 experts (host memory and fill time), the routing shared so that few experts are decoded on
 * the host. */
static void moe_batch_real(qfmt f, int T) {
    uint64_t seed = gt_fresh_seed();
    rng_t r;
    rng_seed(&r, seed);
    check_moe_batch(f, f == QF_BF16 ? 16 : 64, T, 8, 3584, 8192, 8192, 0, 1, &r, seed);
}

TEST(moe_batch_real_shape_ccq206) { moe_batch_real(QF_CCQ206, 8); }
TEST(moe_batch_real_shape_ccq25) { moe_batch_real(QF_CCQ25, 4); }
TEST(moe_batch_real_shape_ccq275) { moe_batch_real(QF_CCQ275, 4); }
TEST(moe_batch_real_shape_wint4) { moe_batch_real(QF_WINT4, 4); }
TEST(moe_batch_real_shape_wint8) { moe_batch_real(QF_WINT8, 4); }
TEST(moe_batch_real_shape_bf16) { moe_batch_real(QF_BF16, 4); }
