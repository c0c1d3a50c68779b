/* tests/gpu/test_gemm.c: the tensor-core GEMM (kernels/cuda/qgemm.h), plain and grouped over experts,
 * against an independent host reference: weights encoded by the codec (ccq_encode of random weights for
 * the small shapes, random valid encodings for the large ones), decoded on the host by ccq_decode_row,
 * multiplied in fp64 with the same bf16 activations. Every run draws fresh inputs (seeded from the clock;
 * the seed is printed on failure), poisons the outputs with NaN first and requires every element to be
 * written. Bounds follow the arithmetic: fp32 outputs within 2e-5 * sum_k |w_k x_k| per element and a
 * norm-wise error under 1e-5; bf16 outputs add half a bf16 ulp and 1e-2 norm-wise. Every kernel path the
 * device can run is checked (mma.sync everywhere; on Hopper the two wgmma variants), and for the ccq
 * formats every weight layout the kernels read (qmat_tile's row and gate/up tilings; ccq2.06 also as
 * stored). Shapes: T, n not
 * multiples of the tiles, K down to 64, the real ERNIE-4.5-300B shapes at T = 300 (a sample of the rows
 * is checked against the reference, every element for being written), and grouped products with empty
 * experts, a gather permutation and without one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/bench_gemm.h"
#include "app/cli.h"
#include "base/bf16.h"
#include "base/rng.h"
#include "ccq/ccq.h"
#include "kernels/cuda/cudev.h"
#include "kernels/cuda/qgemm.h"
#include "tests/gpu/gpu_util.h"
#include "tests/harness.h"

static const qfmt ALL[] = {QF_BF16, QF_WINT8, QF_WINT4, QF_CCQ275, QF_CCQ25, QF_CCQ206};
#define NALL 6

/* ---- weights ---- */

typedef struct {
    qfmt f;
    int64_t rows, n, k;
    int experts;
    ccq_tensor t;              /* the host encoding (owned, or wrapping host[]) */
    void *host[CCQ_MAX_PARTS]; /* parts of a random encoding */
    void *dev[CCQ_MAX_PARTS];
    void *repacked;
    qmat_dev m;
} gw;

static void gw_free(gw *w) {
    for (int i = 0; i < CCQ_MAX_PARTS; i++) {
        free(w->host[i]);
        cu_free(w->dev[i]);
    }
    if (w->t.owned) ccq_free(&w->t);
    cu_free(w->repacked);
    memset(w, 0, sizeof *w);
}

/* The parts of w->t to the device, mapped into w->m; the ccq formats then rewritten by qmat_tile into
 * `layout` (ccq2.75 and ccq2.5 are read only tiled; ccq2.06 also as stored). */
static int gw_upload(gw *w, int layout) {
    err_t e = {0};
    memset(&w->m, 0, sizeof w->m);
    w->m.fmt = w->f, w->m.n = w->n, w->m.k = w->k, w->m.n_experts = w->experts;
    for (int i = 0; i < w->t.nparts; i++) {
        const ccq_part *p = &w->t.part[i];
        w->dev[i] = cu_malloc(p->nbytes, &e);
        if (!w->dev[i] || cu_h2d(w->dev[i], p->data, p->nbytes, &e)) return FAIL("upload: %s", e.msg);
        const char *nm = p->name;
        if (!strcmp(nm, "weight") || !strcmp(nm, "qweight")) w->m.q = w->dev[i];
        else if (!strcmp(nm, "scale")) w->m.scale = w->dev[i];
        else if (!strcmp(nm, "super_scale")) w->m.super = w->dev[i];
        else if (!strcmp(nm, "local_scale")) w->m.local = w->dev[i];
        else if (!strcmp(nm, "code_scale")) w->m.code_scale = w->dev[i];
        else if (!strcmp(nm, "code_zp")) w->m.code_zp = w->dev[i];
        else return FAIL("unexpected part %s of %s", nm, qfmt_name(w->f));
    }
    if (w->f == QF_CCQ275 || w->f == QF_CCQ25 || w->f == QF_CCQ206) {
        if (layout == QLAYOUT_STORED) return w->f == QF_CCQ206 ? 1 : FAIL("%s is read tiled", qfmt_name(w->f));
        w->repacked = cu_malloc(qmat_tile_bytes(w->f, w->experts, w->n, w->k, layout), &e);
        if (!w->repacked) return FAIL("%s", e.msg);
        if (qmat_tile(&w->m, layout, w->repacked, NULL, &e) || cu_sync(&e))
            return FAIL("qmat_tile %s layout %d: %s", qfmt_name(w->f), layout, e.msg);
    }
    return 1;
}

/* experts x [n][k] weights drawn from N(0, 0.02^2) with a few large ones, encoded by ccq_encode. */
static int gw_encode(gw *w, qfmt f, int experts, int64_t n, int64_t k, int layout, rng_t *r) {
    err_t e = {0};
    memset(w, 0, sizeof *w);
    w->f = f, w->experts = experts, w->n = n, w->k = k, w->rows = experts * n;
    float *src = malloc((size_t)(w->rows * k) * sizeof *src);
    if (!src) return FAIL("out of host memory");
    for (int64_t i = 0; i < w->rows * k; i++) src[i] = (float)rng_normal(r) * (i % 211 == 5 ? 0.1f : 0.02f);
    ccq_format cf = ccq_format_of(gt_base_of(f));
    int rc = ccq_encode(&cf, src, w->rows, k, NULL, &w->t, &e);
    free(src);
    if (rc) return FAIL("ccq_encode %s: %s", qfmt_name(f), e.msg);
    return gw_upload(w, layout);
}

/* A random valid code_scale / code_zp pair: every code of q in 0..255 inside [0, 2^15); one row in 5
 * takes round values so that fmaf lands exactly on integers and the floor's rounding is tested. */
static void random_code_line(rng_t *r, int64_t row, float *cs, float *zp) {
    float a = gt_unif(r, 1.0f, 128.0f);
    if (row % 5 == 1) a = (float)(int)a + ((row / 5) % 2 ? 0.5f : 0.0f);
    int neg = rng_next(r) & 1;
    float span = 255.0f * a;
    float lo = neg ? span + 1.0f : 1.0f, hi = neg ? 32766.0f : 32766.0f - span;
    float z = gt_unif(r, lo, hi);
    if (row % 5 == 1) z = floorf(z) + ((row / 5) % 3 == 0 ? -0.5f : 0.0f);
    *cs = neg ? -a : a;
    *zp = z;
}

/* A random valid encoding (gt_random_parts) with this test's code lines, uploaded with `layout`. */
static int gw_random(gw *w, qfmt f, int experts, int64_t n, int64_t k, int layout, rng_t *r) {
    err_t e = {0};
    memset(w, 0, sizeof *w);
    w->f = f, w->experts = experts, w->n = n, w->k = k, w->rows = experts * n;
    ccq_format cf = ccq_format_of(gt_base_of(f));
    ccq_part parts[CCQ_MAX_PARTS];
    int np = 0;
    float *cs, *zp;
    if (!gt_random_parts(f, w->rows, k, r, parts, &np, w->host, &cs, &zp)) return 0;
    if (f == QF_CCQ206)
        for (int64_t j = 0; j < w->rows; j++) random_code_line(r, j, &cs[j], &zp[j]);
    if (ccq_wrap(&cf, w->rows, k, parts, np, &w->t, &e)) return FAIL("ccq_wrap of random %s: %s", qfmt_name(f), e.msg);
    return gw_upload(w, layout);
}

/* ---- one product against the reference ----
 * A problem: nslots rows of Y; slot i uses expert ex[i] (NULL: 0) and X row src[i]; rows[] (nrows of
 * them) are the weight rows (within an expert) checked against the reference. */
typedef struct {
    const gw *w;
    int64_t nslots, x_rows;
    const int32_t *ex, *src;
    const int64_t *rows;
    int nrows;
    const float *xf;
} problem;

/* ref[i * nrows + j], abs[...]: fp64 sums over k of W_e[rows[j]][k] X[src[i]][k] and of their |.| */
static int reference(const problem *pb, double *ref, double *absr) {
    err_t e = {0};
    const gw *w = pb->w;
    float *d = malloc((size_t)w->k * sizeof *d);
    if (!d) return FAIL("out of host memory");
    for (int x = 0; x < w->experts; x++)
        for (int j = 0; j < pb->nrows; j++) {
            int decoded = 0;
            for (int64_t i = 0; i < pb->nslots; i++) {
                if ((pb->ex ? pb->ex[i] : 0) != x) continue;
                if (!decoded && ccq_decode_row(&w->t, (int64_t)x * w->n + pb->rows[j], d, &e)) {
                    free(d);
                    return FAIL("ccq_decode_row: %s", e.msg);
                }
                decoded = 1;
                const float *xr = pb->xf + (int64_t)pb->src[i] * w->k;
                double s = 0, a = 0;
                for (int64_t k = 0; k < w->k; k++) {
                    double p = (double)d[k] * xr[k];
                    s += p;
                    a += fabs(p);
                }
                ref[i * pb->nrows + j] = s, absr[i * pb->nrows + j] = a;
            }
        }
    free(d);
    return 1;
}

/* Checks Y (host copy, [nslots][n], fp32 or bf16): every element finite (written), the sampled rows
 * within the bounds. Prints the norm-wise error with ERNIE_TEST_VERBOSE or on failure; *rel_out gets it. */
static int compare(const char *what, const problem *pb, const void *yh, int bf16, double rel_tol, const double *ref,
                   const double *absr, uint64_t seed, double *rel_out) {
    const int64_t n = pb->w->n;
    int64_t nan = 0, bad = 0, wi = -1, wj = -1;
    for (int64_t i = 0; i < pb->nslots * n; i++) {
        double y = bf16 ? bf16_to_f32(((const uint16_t *)yh)[i]) : ((const float *)yh)[i];
        if (!isfinite(y)) nan++;
    }
    double num = 0, den = 0, worst = 0;
    for (int64_t i = 0; i < pb->nslots; i++)
        for (int j = 0; j < pb->nrows; j++) {
            int64_t o = i * n + pb->rows[j];
            double y = bf16 ? bf16_to_f32(((const uint16_t *)yh)[o]) : ((const float *)yh)[o];
            double rf = ref[i * pb->nrows + j];
            if (!isfinite(y)) continue;
            double dd = fabs(y - rf);
            num += dd * dd, den += rf * rf;
            double lim = 2e-5 * absr[i * pb->nrows + j] + (bf16 ? fabs(rf) * (1.0 / 256) : 0) + 1e-30;
            if (dd > lim) bad++;
            if (dd / lim > worst) worst = dd / lim, wi = i, wj = pb->rows[j];
        }
    int64_t cnt = pb->nslots * pb->nrows;
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    if (rel_out) *rel_out = rel;
    int ok = nan == 0 && bad == 0 && (cnt < 64 || rel <= rel_tol);
    if (!ok || getenv("ERNIE_TEST_VERBOSE"))
        fprintf(stderr,
                "    %s: %lld checked, norm rel err %.3g, worst err/bound %.3g at slot %lld row %lld, %lld over bound, "
                "%lld not written%s (seed %llu)\n",
                what, (long long)cnt, rel, worst, (long long)wi, (long long)wj, (long long)bad, (long long)nan,
                ok ? "" : " FAIL", (unsigned long long)seed);
    if (!ok) FAIL("%s: outputs differ from the fp64 reference", what);
    return ok;
}

static const char *path_name(qgemm_path p) {
    return p == QGEMM_MMA ? "mma" : p == QGEMM_WGMMA ? "wgmma" : p == QGEMM_WGMMA_FLUSH ? "wgmma-flush" : "auto";
}

/* Paths this device runs: mma.sync always, the wgmma ones where available. */
static int device_paths(qgemm_path *paths) {
    err_t e = {0};
    int n = 0;
    paths[n++] = QGEMM_MMA;
    const char *a = qgemm_auto_path(&e);
    if (a && strcmp(a, "mma.sync")) paths[n++] = QGEMM_WGMMA, paths[n++] = QGEMM_WGMMA_FLUSH;
    return n;
}

/* Runs the problem's product on `path` (plain when off_h == NULL) and checks it against ref / absr (from
 * reference()); also that a second call gives the same bits. */
static int run_check(const char *what0, const problem *pb, const uint16_t *xb, const int32_t *off_h, int use_perm,
                     int out_bf16, qgemm_path path, const double *ref, const double *absr, uint64_t seed) {
    err_t e = {0};
    const gw *w = pb->w;
    char what[200];
    snprintf(what, sizeof what, "%s %s %s", what0, path_name(path), out_bf16 ? "bf16" : "f32");
    size_t xbytes = (size_t)(pb->x_rows * w->k) * 2, ybytes = (size_t)(pb->nslots * w->n) * (out_bf16 ? 2 : 4);
    void *xd = cu_malloc(xbytes, &e), *yd = gt_poisoned(ybytes, &e), *offd = NULL, *permd = NULL;
    void *yh = malloc(ybytes), *yh2 = malloc(ybytes);
    int ok = xd && yd && yh && yh2 && !cu_h2d(xd, xb, xbytes, &e);
    if (!ok) FAIL("%s: setup: %s", what, e.msg);
    if (ok && off_h) {
        offd = cu_malloc(sizeof(int32_t) * (size_t)(w->experts + 1), &e);
        permd = cu_malloc(sizeof(int32_t) * (size_t)pb->nslots + 4, &e);
        ok = offd && permd && !cu_h2d(offd, off_h, sizeof(int32_t) * (size_t)(w->experts + 1), &e) &&
             !cu_h2d(permd, pb->src, sizeof(int32_t) * (size_t)pb->nslots, &e);
        if (!ok) FAIL("%s: setup: %s", what, e.msg);
    }
    qout ot = out_bf16 ? QOUT_BF16 : QOUT_F32;
    /* Norm-wise bound: 1e-5 for fp32 sums, 1e-2 for bf16 outputs. QGEMM_WGMMA on the formats without group
     * scales lets the tensor cores accumulate over all of K, and their additions are not IEEE fp32: they
     * truncate, so the error grows linearly with K (measured on these inputs, H100: 9.4e-6 at K = 8192,
     * 3.4e-5 at K = 28672); the bound is about twice that line. The per-element bound is unchanged. */
    double tol = out_bf16 ? 1e-2 : 1e-5;
    if (!out_bf16 && path == QGEMM_WGMMA && w->f != QF_CCQ25 && w->f != QF_CCQ206 && 2.5e-9 * (double)w->k > tol)
        tol = 2.5e-9 * (double)w->k;
    qgemm_set_path(path);
    for (int rep = 0; rep < 2 && ok; rep++) {
        int rc = off_h ? qgemm_grouped(&w->m, xd, pb->x_rows, use_perm ? permd : NULL, offd, pb->nslots, yd, ot, NULL, &e)
                       : qgemm(&w->m, xd, pb->nslots, yd, ot, NULL, &e);
        if (rc || cu_sync(&e) || cu_d2h(rep ? yh2 : yh, yd, ybytes, &e)) ok = FAIL("%s: %s", what, e.msg);
        if (ok && rep == 0) ok = compare(what, pb, yh, out_bf16, tol, ref, absr, seed, NULL) && !cu_memset(yd, 0xFF, ybytes, &e);
        if (ok && rep == 1 && memcmp(yh, yh2, ybytes)) ok = FAIL("%s: two calls gave different results", what);
    }
    qgemm_set_path(QGEMM_AUTO);
    cu_free(xd), cu_free(yd), cu_free(offd), cu_free(permd);
    free(yh), free(yh2);
    return ok;
}

/* The reference of pb, then the product on every path (each checked even when an earlier one failed). */
static int check_paths(const char *what, const problem *pb, const uint16_t *xb, const int32_t *off_h, int use_perm,
                       int out_bf16, const qgemm_path *paths, int npaths, uint64_t seed) {
    size_t nref = (size_t)(pb->nslots * pb->nrows) + 1;
    double *ref = malloc(sizeof(double) * nref), *absr = malloc(sizeof(double) * nref);
    int ok = ref && absr ? reference(pb, ref, absr) : FAIL("out of host memory");
    for (int pi = 0; pi < npaths && ok; pi++) {
        int o = run_check(what, pb, xb, off_h, use_perm, out_bf16, paths[pi], ref, absr, seed);
        if (!o) ok = -1; /* keep going: the other paths' errors are worth seeing */
    }
    free(ref), free(absr);
    return ok == 1;
}

/* A plain product of w with T random rows of X, every (or every checked) row, on every path. */
static int check_plain(const gw *w, int64_t T, const int64_t *rows, int nrows, int out_bf16, const qgemm_path *paths,
                       int npaths, rng_t *r, uint64_t seed, const char *tag) {
    uint16_t *xb = malloc((size_t)(T * w->k) * 2);
    float *xf = malloc((size_t)(T * w->k) * 4);
    int32_t *src = malloc(sizeof(int32_t) * (size_t)T);
    int64_t *all = NULL;
    if (!xb || !xf || !src) return FAIL("out of host memory");
    gt_random_x(r, xb, xf, T * w->k);
    for (int64_t i = 0; i < T; i++) src[i] = (int32_t)i;
    if (!rows) {
        all = malloc(sizeof(int64_t) * (size_t)w->n);
        for (int64_t j = 0; j < w->n; j++) all[j] = j;
        rows = all, nrows = (int)w->n;
    }
    problem pb = {w, T, T, NULL, src, rows, nrows, xf};
    char what[160];
    snprintf(what, sizeof what, "%s%s %lldx%lld T=%lld", tag, qfmt_name(w->f), (long long)w->n, (long long)w->k,
             (long long)T);
    int ok = check_paths(what, &pb, xb, NULL, 0, out_bf16, paths, npaths, seed);
    free(xb), free(xf), free(src), free(all);
    return ok;
}

/* ---- small shapes: every format, every path, weights from ccq_encode ---- */

static const int64_t SMALL[][3] = {{1, 64, 1},     {3, 128, 7},     {65, 192, 130}, {130, 320, 257},
                                   {200, 640, 33}, {257, 1024, 300}, {129, 64, 513}};
#define NSMALL 7

TEST(gemm_small_shapes_all_formats_all_paths) {
    uint64_t seed = gt_fresh_seed();
    rng_t r;
    rng_seed(&r, seed);
    qgemm_path paths[4];
    int np = device_paths(paths);
    for (int f = 0; f < NALL; f++)
        for (int s = 0; s < NSMALL; s++) {
            gw w;
            /* the ccq formats in every tiling the kernels read: rows, gate/up (even n), ccq2.06 as stored */
            int lay = QLAYOUT_STORED;
            if (ALL[f] == QF_CCQ275 || ALL[f] == QF_CCQ25 || ALL[f] == QF_CCQ206)
                lay = SMALL[s][0] % 2 == 0 ? QLAYOUT_GATE_UP : ALL[f] == QF_CCQ206 && s % 2 ? QLAYOUT_STORED : QLAYOUT_ROWS;
            if (!gw_encode(&w, ALL[f], 1, SMALL[s][0], SMALL[s][1], lay, &r)) {
                gw_free(&w);
                return;
            }
            char tag[16];
            snprintf(tag, sizeof tag, "L%d ", lay);
            int ok = check_plain(&w, SMALL[s][2], NULL, 0, s % 3 == 2, paths, np, &r, seed, tag);
            gw_free(&w);
            if (!ok) return;
        }
}

/* On Hopper the default is the wgmma kernel: a build that lost its sm_90a code fails here. */
TEST(gemm_uses_wgmma_on_hopper) {
    err_t e = {0};
    cu_devinfo d;
    if (!CHECK(cu_device_info(&d, &e) == 0)) return;
    const char *a = qgemm_auto_path(&e);
    if (!CHECK(a != NULL)) return;
    fprintf(stderr, "    %s (sm_%d%d): qgemm uses %s\n", d.name, d.cc_major, d.cc_minor, a);
    if (d.cc_major == 9 && d.cc_minor == 0) CHECK(strncmp(a, "wgmma", 5) == 0);
}

/* ---- the real shapes at a moderate T, random encodings, a sample of rows checked ---- */

static const int64_t REAL[][2] = {{7168, 8192}, {8192, 3584}, {10240, 8192}, {8192, 28672}};

static void real_shapes(qfmt f) {
    uint64_t seed = gt_fresh_seed();
    rng_t r;
    rng_seed(&r, seed);
    qgemm_path paths[4];
    int np = device_paths(paths);
    /* mma.sync is the slow fallback: the real shapes check it once, the wgmma paths everywhere */
    for (int s = 0; s < 4; s++) {
        gw w;
        if (!gw_random(&w, f, 1, REAL[s][0], REAL[s][1], QLAYOUT_ROWS, &r)) {
            gw_free(&w);
            return;
        }
        int64_t rows[32];
        for (int j = 0; j < 32; j++)
            rows[j] = j < 8 ? j : j < 16 ? w.n - 1 - (j - 8) : (int64_t)(rng_next(&r) % (uint64_t)w.n);
        const qgemm_path *pp = np > 1 && s > 0 ? paths + 1 : paths;
        int ok = check_plain(&w, 300, rows, 32, 0, pp, np > 1 && s > 0 ? np - 1 : np, &r, seed, "real ");
        if (ok && s == 1) ok = check_plain(&w, 300, rows, 32, 1, paths + np - 1, 1, &r, seed, "real ");
        gw_free(&w);
        if (!ok) return;
    }
}

TEST(gemm_real_shapes_bf16) { real_shapes(QF_BF16); }
TEST(gemm_real_shapes_wint8) { real_shapes(QF_WINT8); }
TEST(gemm_real_shapes_wint4) { real_shapes(QF_WINT4); }
TEST(gemm_real_shapes_ccq275) { real_shapes(QF_CCQ275); }
TEST(gemm_real_shapes_ccq25) { real_shapes(QF_CCQ25); }
TEST(gemm_real_shapes_ccq206) { real_shapes(QF_CCQ206); }

/* Many row tiles at T = 2048: on a GPU of about 132 SMs the plain product mixes 256-token tiles with a
 * last column of 128-token tiles (qgemm.cu's choose_wide); K is short to keep the reference cheap. Every
 * element is checked for being written, a sample of rows against the reference. */
TEST(gemm_wide_and_narrow_tiles) {
    uint64_t seed = gt_fresh_seed();
    rng_t r;
    rng_seed(&r, seed);
    qgemm_path paths[4];
    int np = device_paths(paths);
    static const qfmt fm[] = {QF_BF16, QF_CCQ206};
    for (int f = 0; f < 2; f++) {
        gw w;
        if (!gw_random(&w, fm[f], 1, 7168, 192, fm[f] == QF_CCQ206 ? QLAYOUT_ROWS : QLAYOUT_STORED, &r)) {
            gw_free(&w);
            return;
        }
        int64_t rows[32];
        for (int j = 0; j < 32; j++) rows[j] = j < 4 ? j : j < 8 ? w.n - 1 - (j - 4) : (int64_t)(rng_next(&r) % (uint64_t)w.n);
        int ok = check_plain(&w, 2048, rows, 32, 0, paths + (np > 1), np - (np > 1), &r, seed, "tiles ") &&
                 check_plain(&w, 1900, rows, 32, 1, paths + np - 1, 1, &r, seed, "tiles ");
        gw_free(&w);
        if (!ok) return;
    }
}

/* ---- grouped over experts ---- */

/* Random routing: counts per expert (some zero), slots sorted by expert, each slot's X row drawn at
 * random (use_perm) or the slot itself. */
static int check_grouped(const gw *w, int64_t x_rows, int max_count, int use_perm, const int64_t *rows, int nrows,
                         int out_bf16, const qgemm_path *paths, int npaths, rng_t *r, uint64_t seed, const char *tag) {
    int E = w->experts;
    int32_t *off = malloc(sizeof(int32_t) * (size_t)(E + 1));
    off[0] = 0;
    for (int x = 0; x < E; x++) {
        int c = (x % 3 == 1) ? 0 : (int)(rng_next(r) % (uint64_t)(max_count + 1));
        off[x + 1] = off[x] + c;
    }
    int64_t total = off[E];
    if (!use_perm && total > x_rows) x_rows = total;
    int32_t *ex = malloc(sizeof(int32_t) * (size_t)total + 4), *src = malloc(sizeof(int32_t) * (size_t)total + 4);
    for (int x = 0; x < E; x++)
        for (int64_t i = off[x]; i < off[x + 1]; i++) {
            ex[i] = x;
            src[i] = use_perm ? (int32_t)(rng_next(r) % (uint64_t)x_rows) : (int32_t)i;
        }
    uint16_t *xb = malloc((size_t)(x_rows * w->k) * 2);
    float *xf = malloc((size_t)(x_rows * w->k) * 4);
    gt_random_x(r, xb, xf, x_rows * w->k);
    int64_t *all = NULL;
    if (!rows) {
        all = malloc(sizeof(int64_t) * (size_t)w->n);
        for (int64_t j = 0; j < w->n; j++) all[j] = j;
        rows = all, nrows = (int)w->n;
    }
    problem pb = {w, total, x_rows, ex, src, rows, nrows, xf};
    char what[160];
    snprintf(what, sizeof what, "%sgrouped %s E%d %lldx%lld slots %lld%s", tag, qfmt_name(w->f), E, (long long)w->n,
             (long long)w->k, (long long)total, use_perm ? " perm" : "");
    int ok = total > 0 ? check_paths(what, &pb, xb, off, use_perm, out_bf16, paths, npaths, seed) : 1;
    free(off), free(ex), free(src), free(xb), free(xf), free(all);
    return ok;
}

TEST(gemm_grouped_all_formats_all_paths) {
    uint64_t seed = gt_fresh_seed();
    rng_t r;
    rng_seed(&r, seed);
    qgemm_path paths[4];
    int np = device_paths(paths);
    for (int f = 0; f < NALL; f++) {
        gw w;
        int lay = ALL[f] == QF_CCQ275 || ALL[f] == QF_CCQ25 || ALL[f] == QF_CCQ206 ? QLAYOUT_ROWS : QLAYOUT_STORED;
        if (!gw_encode(&w, ALL[f], 7, 200, 320, lay, &r)) {
            gw_free(&w);
            return;
        }
        int ok = check_grouped(&w, 333, 300, 1, NULL, 0, 0, paths, np, &r, seed, "") &&
                 check_grouped(&w, 333, 140, 0, NULL, 0, f & 1, paths, np, &r, seed, "");
        gw_free(&w);
        if (!ok) return;
    }
}

/* One MoE layer's gate/up at the real shape: 8 experts of 7168 x 8192, about 1000 token slots. */
static void grouped_real(qfmt f) {
    uint64_t seed = gt_fresh_seed();
    rng_t r;
    rng_seed(&r, seed);
    qgemm_path paths[4];
    int np = device_paths(paths);
    gw w;
    /* a gate/up stack, tiled as the batch-1 gate/up product reads it */
    if (gw_random(&w, f, 8, 7168, 8192, f == QF_CCQ206 ? QLAYOUT_GATE_UP : QLAYOUT_STORED, &r)) {
        int64_t rows[24];
        for (int j = 0; j < 24; j++) rows[j] = j < 4 ? j : j < 8 ? 7167 - (j - 4) : (int64_t)(rng_next(&r) % 7168);
        check_grouped(&w, 600, 250, 1, rows, 24, 0, paths + (np > 1), np - (np > 1), &r, seed, "real ");
    }
    gw_free(&w);
}

TEST(gemm_grouped_real_shape_ccq206) { grouped_real(QF_CCQ206); }
TEST(gemm_grouped_real_shape_wint4) { grouped_real(QF_WINT4); }

/* ---- argument checks (no GPU work) ---- */

TEST(gemm_rejects_bad_arguments) {
    err_t e = {0};
    qmat_dev m = {0};
    m.fmt = QF_CCQ25, m.n = 8, m.k = 128, m.n_experts = 1, m.q = (void *)256, m.super = (uint16_t *)256;
    CHECK(qgemm(&m, (uint16_t *)256, 4, (void *)256, QOUT_F32, NULL, &e) == -1);
    CHECK_CONTAINS(e.msg, "tiled");
    m.fmt = QF_WINT4, m.layout = QLAYOUT_ROWS, m.scale = (float *)256;
    CHECK(qgemm(&m, (uint16_t *)256, 4, (void *)256, QOUT_F32, NULL, &e) == -1);
    CHECK_CONTAINS(e.msg, "layout");
    m.layout = QLAYOUT_STORED, m.k = 100;
    CHECK(qgemm(&m, (uint16_t *)256, 4, (void *)256, QOUT_F32, NULL, &e) == -1);
    CHECK_CONTAINS(e.msg, "multiple of 64");
    m.k = 128, m.scale = NULL;
    CHECK(qgemm(&m, (uint16_t *)256, 4, (void *)256, QOUT_F32, NULL, &e) == -1);
    CHECK_CONTAINS(e.msg, "missing a part");
    m.scale = (float *)256;
    CHECK(qgemm(&m, (uint16_t *)256, 0, (void *)256, QOUT_F32, NULL, &e) == -1);
    CHECK(qgemm(&m, (uint16_t *)258, 4, (void *)256, QOUT_F32, NULL, &e) == -1);
    CHECK_CONTAINS(e.msg, "aligned");
    m.n_experts = 4;
    CHECK(qgemm(&m, (uint16_t *)256, 4, (void *)256, QOUT_F32, NULL, &e) == -1);
    CHECK_CONTAINS(e.msg, "qgemm_grouped");
    CHECK(qgemm_grouped(&m, (uint16_t *)256, 4, NULL, NULL, 4, (void *)256, QOUT_F32, NULL, &e) == -1);
    CHECK(qgemm_grouped(&m, (uint16_t *)256, 4, NULL, (int32_t *)256, 0, (void *)256, QOUT_F32, NULL, &e) == 0);
}

/* ---- the benchmark (app/bench_gemm.c), when ERNIE_GEMM_BENCH is set (its value: the arguments,
 * space-separated; "1" for none) ---- */

TEST(gemm_bench_when_asked) { CHECK_INT(gt_bench_from_env("ERNIE_GEMM_BENCH", NULL, bench_gemm_cuda), 0); }
