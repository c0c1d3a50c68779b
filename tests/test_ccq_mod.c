/* tests/test_ccq_mod.c: the two modifiers. ICQ: the gap stream read back by an independent reader of the
 * documented bit layout (symbols of B bits, least significant bit first, escapes 2^B - 1), including
 * escapes, gaps of exactly 2^B - 1, outliers at both ends, empty rows and a budget too small for every
 * outlier. CRVQ: channel picking against a sort, the permutation (critical channels first) as the run
 * time uses it, and that channels with large weights are the ones picked. Both must lower the error on
 * heavy-tailed weights. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "ccq/ccq.h"
#include "ccq/internal.h"
#include "harness.h"

/* The documented stream, read here without ccq/: returns the outlier positions in pos (count). */
static int64_t read_stream(const uint8_t *bits, int64_t S, int B, int64_t K, int64_t *pos, int *bad) {
    int64_t p = 0, n = 0;
    unsigned E = (1u << B) - 1;
    *bad = 0;
    for (int64_t i = 0; i < S; i++) {
        unsigned s = 0;
        for (int b = 0; b < B; b++) {
            int64_t bit = i * B + b;
            s |= (unsigned)((bits[bit / 8] >> (bit % 8)) & 1) << b;
        }
        if (s == E) {
            p += E;
            continue;
        }
        p += s;
        if (p >= K) *bad = 1;
        else pos[n++] = p;
        p++;
    }
    return n;
}

static ccq_format fmt(const char *s) {
    ccq_format f;
    err_t e = {0};
    if (ccq_format_parse(s, &f, &e)) FAIL("%s: %s", s, e.msg);
    return f;
}

/* Outliers wanted at `want` (n of them, distinct): big values there, small distinct ones elsewhere. */
static void check_stream(const char *name, int64_t K, const int64_t *want, int n, int expect_all) {
    ccq_format f = fmt(name);
    float *x = malloc(sizeof(float) * (size_t)K);
    uint8_t *out = malloc((size_t)K), *bits = calloc((size_t)icq_row_bytes(&f, K) + 1, 1);
    int32_t *work = malloc(sizeof(int32_t) * (size_t)K);
    int64_t *pos = malloc(sizeof(int64_t) * (size_t)K);
    for (int64_t k = 0; k < K; k++) x[k] = 0.001f * (float)((k * 37) % 101) * (k % 2 ? 1 : -1);
    for (int i = 0; i < n; i++) x[want[i]] = (i % 2 ? -1.0f : 1.0f) * (float)(100 + i);
    int64_t got = icq_select(&f, x, NULL, K, bits, out, work);
    int bad;
    int64_t S = icq_symbols(&f, K);
    int64_t m = read_stream(bits, S, f.icq_bits, K, pos, &bad);
    CHECK(!bad);
    CHECK_INT(m, got);
    /* the stream and the marks agree, positions ascending */
    int64_t marked = 0;
    for (int64_t k = 0; k < K; k++) marked += out[k];
    CHECK_INT(marked, got);
    for (int64_t i = 0; i < m; i++) {
        CHECK(out[pos[i]]);
        if (i) CHECK(pos[i] > pos[i - 1]);
    }
    if (expect_all) {
        for (int i = 0; i < n; i++) CHECK(out[want[i]]);
    }
    /* padding bits after the last symbol are zero */
    int64_t nb = icq_row_bytes(&f, K);
    int used = (int)((S * f.icq_bits) % 8);
    if (used) CHECK_INT(bits[nb - 1] >> used, 0);
    free(x), free(out), free(bits), free(work), free(pos);
}

TEST(icq_gap_stream_round_trip) {
    /* B = 3: escape 7. K = 256, gamma 5%: 13 outliers at most, S = ceil(12.8 / (1 - 0.95^7)) = 43. */
    ccq_format f = fmt("wint8+icq:0.05:3");
    CHECK_INT(icq_symbols(&f, 256), 43);
    int64_t ends[] = {0, 255};
    check_stream("wint8+icq:0.05:3", 256, ends, 2, 1);
    int64_t exact[] = {6, 14, 21, 22, 23}; /* gaps 6 (E-1), 7 (= E: escape then 0), 6, 0, 0 */
    check_stream("wint8+icq:0.05:3", 256, exact, 5, 1);
    int64_t far[] = {200}; /* 28 escapes then 4 */
    check_stream("wint8+icq:0.05:3", 256, far, 1, 1);
    check_stream("wint8+icq:0.05:3", 256, NULL, 0, 0); /* nothing big: the 13 largest small ones */
    /* a budget too small for every outlier: far-apart outliers need escapes; the encoder drops the
     * ones that do not fit and the stream still says exactly which it kept */
    int64_t spread[] = {0, 50, 100, 150, 200, 250, 30, 80, 130, 180, 230, 10, 60};
    check_stream("wint8+icq:0.05:2", 256, spread, 13, 0);
    /* random sets, several widths */
    rng_t r;
    rng_seed(&r, 9);
    const char *fs[] = {"wint8+icq:0.05:2", "wint8+icq:0.05:5", "wint8+icq:0.2:4", "wint8+icq:0.01:8", "wint8+icq:0.5:12"};
    for (int trial = 0; trial < 40; trial++) {
        int64_t K = 64 + (int64_t)(rng_uniform(&r) * 2000);
        int64_t want[64];
        int n = (int)(rng_uniform(&r) * 20);
        for (int i = 0; i < n; i++) {
            int64_t p;
            int dup;
            do {
                p = (int64_t)(rng_uniform(&r) * K);
                dup = 0;
                for (int j = 0; j < i; j++) dup |= want[j] == p;
            } while (dup);
            want[i] = p;
        }
        check_stream(fs[trial % 5], K, want, n, 0);
    }
}

TEST(icq_empty_rows_decode_to_the_base) {
    /* All-zero rows have no outliers (zero is never an outlier): the stream is escapes only. */
    enum { N = 3, K = 128 };
    float w[N * K];
    memset(w, 0, sizeof w);
    for (int k = 0; k < K; k++) w[K + k] = (float)sin(k); /* row 1 is not empty */
    ccq_format f = fmt("wint8+icq");
    ccq_tensor t;
    err_t e = {0};
    if (!CHECK_INT(ccq_encode(&f, w, N, K, NULL, &t, &e), 0)) return;
    int64_t S = icq_symbols(&f, K), pos[K];
    int bad;
    CHECK_INT(read_stream((const uint8_t *)t.part[2].data, S, 5, K, pos, &bad), 0);
    CHECK_INT(read_stream((const uint8_t *)t.part[2].data + 2 * t.part[2].shape[1], S, 5, K, pos, &bad), 0);
    CHECK(read_stream((const uint8_t *)t.part[2].data + t.part[2].shape[1], S, 5, K, pos, &bad) > 0);
    float d[N * K];
    ccq_decode(&t, d, NULL, NULL);
    for (int k = 0; k < K; k++) CHECK(d[k] == 0 && d[2 * K + k] == 0);
    ccq_free(&t);
}

TEST(crvq_pick_matches_a_sort) {
    rng_t r;
    rng_seed(&r, 12);
    for (int trial = 0; trial < 30; trial++) {
        int64_t K = 1 + (int64_t)(rng_uniform(&r) * 500), C = 1 + (int64_t)(rng_uniform(&r) * (double)K);
        double *sc = malloc(sizeof(double) * (size_t)K);
        for (int64_t k = 0; k < K; k++) sc[k] = trial % 3 == 0 ? (double)(int)(rng_uniform(&r) * 4) : rng_uniform(&r);
        uint16_t *idx = malloc(sizeof(uint16_t) * (size_t)C);
        int32_t *work = malloc((size_t)K * 5 + 64);
        crvq_pick(sc, K, C, idx, work);
        /* reference: C times the best remaining (highest score, lowest index on ties) */
        uint8_t *taken = calloc((size_t)K, 1);
        for (int64_t c = 0; c < C; c++) {
            int64_t b = -1;
            for (int64_t k = 0; k < K; k++)
                if (!taken[k] && (b < 0 || sc[k] > sc[b])) b = k;
            taken[b] = 1;
        }
        int64_t j = 0;
        for (int64_t k = 0; k < K; k++)
            if (taken[k]) {
                if (j >= C || idx[j] != k) {
                    FAIL("K %lld C %lld: pick %lld is %d, expected %lld", (long long)K, (long long)C, (long long)j,
                         j < C ? idx[j] : -1, (long long)k);
                    break;
                }
                j++;
            }
        free(sc), free(idx), free(work), free(taken);
    }
}

TEST(crvq_permutation_round_trip_and_run_time_formula) {
    enum { N = 6, K = 256 };
    float w[N * K], x[K];
    rng_t r;
    rng_seed(&r, 13);
    for (int i = 0; i < N * K; i++) w[i] = (float)rng_normal(&r);
    /* three channels with large weights: the ones a residual ranking must pick */
    for (int n = 0; n < N; n++) w[n * K + 7] *= 9, w[n * K + 100] *= 7, w[n * K + 201] *= 8;
    for (int k = 0; k < K; k++) x[k] = (float)rng_normal(&r);
    ccq_format f = fmt("ccq2.75+crvq:0.02:8"); /* C = round(5.12) = 5 */
    ccq_tensor t;
    err_t e = {0};
    if (!CHECK_INT(ccq_encode(&f, w, N, K, NULL, &t, &e), 0)) return;
    const uint16_t *idx = (const uint16_t *)t.part[2].data;
    int64_t C = t.part[2].shape[0];
    CHECK_INT(C, 5);
    int has7 = 0, has100 = 0, has201 = 0;
    for (int64_t j = 0; j < C; j++) {
        has7 |= idx[j] == 7, has100 |= idx[j] == 100, has201 |= idx[j] == 201;
        if (j) CHECK(idx[j] > idx[j - 1]);
    }
    CHECK(has7 && has100 && has201);
    /* The permutation: critical channels first, then the rest in order. It is a bijection, and applying
     * it to x and back gives x. */
    int perm[K], inv[K], seen[K] = {0};
    int p = 0;
    for (int64_t j = 0; j < C; j++) perm[p++] = idx[j], seen[idx[j]] = 1;
    for (int k = 0; k < K; k++)
        if (!seen[k]) perm[p++] = k;
    CHECK_INT(p, K);
    for (int k = 0; k < K; k++) inv[k] = -1;
    for (int j = 0; j < K; j++) inv[perm[j]] = j;
    float xp[K], xb[K];
    for (int j = 0; j < K; j++) xp[j] = x[perm[j]];
    for (int k = 0; k < K; k++) {
        CHECK(inv[k] >= 0);
        xb[k] = xp[inv[k]];
    }
    CHECK(!memcmp(xb, x, sizeof x));
    /* Run time: y = base(W) . (x with the critical channels zeroed) + block . xp[0..C). */
    ccq_tensor base = t;
    base.fmt.crvq = 0, base.nparts = 2, base.owned = NULL;
    float wb[K], y[N];
    float xz[K];
    memcpy(xz, x, sizeof x);
    for (int64_t j = 0; j < C; j++) xz[idx[j]] = 0;
    CHECK_INT(ccq_dot(&t, 0, N, x, K, 1, y, N, &e), 0);
    const int8_t *blk = (const int8_t *)t.part[3].data;
    const float *bs = (const float *)t.part[4].data;
    for (int n = 0; n < N; n++) {
        ccq_decode_row(&base, n, wb, NULL);
        double s = 0, mag = 0;
        for (int k = 0; k < K; k++) s += (double)wb[k] * xz[k], mag += fabs(wb[k] * x[k]);
        for (int64_t j = 0; j < C; j++) s += (double)blk[n * C + j] * bs[n] * xp[j];
        CHECK_NEAR(y[n], s, 1e-5 * mag + 1e-6);
    }
    ccq_free(&t);
}

/* rel MSE of format f on the given weights */
static double relerr(const char *name, const float *w, int64_t N, int64_t K) {
    ccq_format f = fmt(name);
    ccq_tensor t;
    err_t e = {0};
    if (ccq_encode(&f, w, N, K, NULL, &t, &e)) return FAIL("%s: %s", name, e.msg), 1e9;
    float *d = malloc(sizeof(float) * (size_t)(N * K));
    ccq_decode(&t, d, NULL, NULL);
    double num = 0, den = 0;
    for (int64_t i = 0; i < N * K; i++) num += (w[i] - d[i]) * (w[i] - d[i]), den += w[i] * w[i];
    free(d);
    ccq_free(&t);
    return num / den;
}

TEST(icq_and_crvq_help_on_heavy_tails) {
    enum { N = 8, K = 1024 };
    float *st = malloc(sizeof(float) * N * K), *ou = malloc(sizeof(float) * N * K);
    rng_t r;
    rng_seed(&r, 21);
    for (int i = 0; i < N * K; i++) {
        double z = rng_normal(&r), c = 0;
        for (int j = 0; j < 4; j++) {
            double g = rng_normal(&r);
            c += g * g;
        }
        st[i] = (float)(z / sqrt(c / 4));
        ou[i] = (float)rng_normal(&r) * (rng_uniform(&r) < 0.01 ? 10.0f : 1.0f);
    }
    const char *bases[] = {"wint4", "ccq2.75", "ccq2.06", "wint2g64"};
    for (int s = 0; s < 2; s++)
        for (size_t b = 0; b < sizeof bases / sizeof *bases; b++) {
            const float *w = s ? ou : st;
            char fi[64], fc[64];
            snprintf(fi, sizeof fi, "%s+icq", bases[b]);
            snprintf(fc, sizeof fc, "%s+crvq", bases[b]);
            double e0 = relerr(bases[b], w, N, K), ei = relerr(fi, w, N, K), ec = relerr(fc, w, N, K);
            if (!(ei < 0.8 * e0)) FAIL("%s on %s: %g with +icq vs %g", bases[b], s ? "outliers" : "student4", ei, e0);
            if (!(ec < e0)) FAIL("%s on %s: %g with +crvq vs %g", bases[b], s ? "outliers" : "student4", ec, e0);
        }
    free(st), free(ou);
}
