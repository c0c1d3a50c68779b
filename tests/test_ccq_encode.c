/* tests/test_ccq_encode.c: the encoders. Code words are exact: for every stored code word, every
 * alternative the format allows is tried by editing the bytes and decoding through the public API, and
 * none may lower the importance-weighted error (brute force over the container, independent of how the
 * encoder searched). Also: the Viterbi search against brute force over all code words, quality bars on
 * Gaussian weights, re-encoding stability, thread-count independence, importance weighting, bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "ccq/ccq.h"
#include "ccq/internal.h"
#include "harness.h"

static void gauss(float *w, int64_t n, uint64_t seed, double scale) {
    rng_t r;
    rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) w[i] = (float)(rng_normal(&r) * scale);
}

static int enc(const char *name, const float *w, int64_t N, int64_t K, const float *imp, pool *p, ccq_tensor *t) {
    ccq_format f;
    err_t e = {0};
    if (ccq_format_parse(name, &f, &e)) return FAIL("%s: %s", name, e.msg), -1;
    ccq_encode_opts o = {.importance = imp, .pool = p};
    if (ccq_encode(&f, w, N, K, &o, t, &e)) return FAIL("%s: %s", name, e.msg), -1;
    return 0;
}

static double rel_mse(const ccq_tensor *t, const float *w, const float *imp) {
    int64_t n = t->rows * t->cols;
    float *d = malloc(sizeof(float) * (size_t)n);
    ccq_decode(t, d, NULL, NULL);
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double h = imp ? imp[i % t->cols] : 1;
        num += h * (w[i] - d[i]) * (w[i] - d[i]);
        den += h * w[i] * w[i];
    }
    free(d);
    return num / den;
}

TEST(ccq_viterbi_equals_brute_force) {
    const int codes[][3] = {{4, 3, 2}, {3, 3, 2}, {3, 4, 2}, {6, 4, 3}, {2, 5, 1}, {4, 1, 4}};
    rng_t r;
    rng_seed(&r, 3);
    for (size_t c = 0; c < sizeof codes / sizeof *codes; c++) {
        int L = codes[c][0], n = codes[c][1], S = codes[c][2], T = L + (n - 1) * S;
        for (int trial = 0; trial < 20; trial++) {
            float cost[8 * 64];
            for (int i = 0; i < n << L; i++) cost[i] = (float)rng_uniform(&r);
            if (trial == 0)
                for (int i = 0; i < n << L; i++) cost[i] = 1; /* all ties */
            uint32_t code;
            float got = conv_search(L, n, S, cost, &code);
            double best = INFINITY;
            for (uint32_t cw = 0; cw < (1u << T); cw++) {
                double s = 0;
                for (int i = 0; i < n; i++) /* the spec's window, written out */
                    s += cost[(i << L) + ((cw >> (T - L - i * S)) & ((1u << L) - 1))];
                if (s < best) best = s;
            }
            CHECK_NEAR(got, best, 1e-5);
            CHECK(code < (1u << T));
            int v[8];
            conv_windows(L, n, S, code, v);
            double s = 0;
            for (int i = 0; i < n; i++) s += cost[(i << L) + v[i]];
            CHECK_NEAR(s, got, 1e-5);
        }
    }
}

/* Weighted squared error of row r of t against x. */
static double row_err(const ccq_tensor *t, int64_t r, const float *x, const float *h, float *buf) {
    ccq_decode_row(t, r, buf, NULL);
    double s = 0;
    for (int64_t k = 0; k < t->cols; k++) s += (h ? h[k] : 1.0) * (x[k] - buf[k]) * (x[k] - buf[k]);
    return s;
}

/* Tries every value of a bit field of part 0 at byte offset `off` (bits [lo, lo + nb) of a little-endian
 * field of `width` bytes) and checks none beats the stored value for row r. Returns 0 on a failure. */
static int field_optimal(ccq_tensor *t, int64_t r, size_t off, int width, int lo, int nb, const float *x,
                         const float *h, float *buf, const char *what) {
    uint8_t *p = (uint8_t *)(uintptr_t)t->part[0].data + off;
    uint32_t orig = 0;
    memcpy(&orig, p, (size_t)width);
    double cur = row_err(t, r, x, h, buf);
    uint32_t mask = ((1u << nb) - 1) << lo;
    for (uint32_t v = 0; v < (1u << nb); v++) {
        uint32_t alt = (orig & ~mask) | (v << lo);
        if (alt == orig) continue;
        memcpy(p, &alt, (size_t)width);
        double e = row_err(t, r, x, h, buf);
        memcpy(p, &orig, (size_t)width);
        if (e < cur - 1e-5 * cur - 1e-9)
            return FAIL("%s: row %lld byte %zu bits %d+%d: value %u gives %.9g < stored %.9g", what, (long long)r, off,
                        lo, nb, v, e, cur);
    }
    return 1;
}

static void check_codes_optimal(const char *name, int with_imp) {
    enum { N = 2, K = 128 };
    float w[N * K], h[K], buf[K];
    gauss(w, N * K, 11, 1.0);
    /* a few big values so that +icq has outliers to code */
    w[5] = 6, w[K + 70] = -7, w[100] = 4.5f;
    rng_t r;
    rng_seed(&r, 5);
    for (int k = 0; k < K; k++) h[k] = with_imp ? (float)(0.1 + 2 * rng_uniform(&r)) : 1.0f;
    ccq_tensor t;
    if (enc(name, w, N, K, with_imp ? h : NULL, NULL, &t)) return;
    /* the encoder normalises importance to mean 1; the optimum does not care */
    const int64_t ng = K / 64;
    int ok = 1;
    for (int64_t row = 0; row < N && ok; row++) {
        const float *x = w + row * K;
        switch (t.fmt.base) {
        case CCQ_CCQ275:
            for (int64_t g = 0; g < ng && ok; g++) {
                size_t base = (size_t)(row * ng * 22 + g * 22);
                for (int b = 0; b < 21 && ok; b++) ok = field_optimal(&t, row, base + (size_t)b, 1, 0, 8, x, h, buf, name);
                if (ok) ok = field_optimal(&t, row, base + 21, 1, 4, 4, x, h, buf, name);
            }
            break;
        case CCQ_CCQ25:
            for (int64_t g = 0; g < ng && ok; g++) {
                size_t base = (size_t)(row * ng * 20 + g * 20);
                for (int z = 0; z < 9 && ok; z++) {
                    ok = field_optimal(&t, row, base + 2 * (size_t)z, 2, 9, 7, x, h, buf, name);
                    if (ok) ok = field_optimal(&t, row, base + 2 * (size_t)z, 2, 0, 9, x, h, buf, name);
                }
                if (ok) ok = field_optimal(&t, row, base + 18, 2, 13, 3, x, h, buf, name);
            }
            break;
        case CCQ_CCQ206:
            for (int64_t b = 0; b < K / 4 && ok; b++) ok = field_optimal(&t, row, (size_t)(row * K / 4 + b), 1, 0, 8, x, h, buf, name);
            break;
        case CCQ_WINT4G64:
        case CCQ_WINT4:
            for (int64_t k = 0; k < K && ok; k++)
                ok = field_optimal(&t, row, (size_t)(row * K / 2 + k / 2), 1, 4 * (int)(k & 1), 4, x, h, buf, name);
            break;
        case CCQ_WINT2G64:
            for (int64_t k = 0; k < K && ok; k++)
                ok = field_optimal(&t, row, (size_t)(row * K / 4 + k / 4), 1, 2 * (int)(k & 3), 2, x, h, buf, name);
            break;
        default: FAIL("no brute force for %s", name); ok = 0;
        }
    }
    ccq_free(&t);
}

TEST(ccq275_code_words_are_exact) {
    check_codes_optimal("ccq2.75", 0);
    check_codes_optimal("ccq2.75", 1);
    check_codes_optimal("ccq2.75+icq:0.05:3", 1);
}
TEST(ccq25_code_words_are_exact) {
    check_codes_optimal("ccq2.5", 0);
    check_codes_optimal("ccq2.5+icq", 1);
}
TEST(ccq206_code_words_are_exact) {
    check_codes_optimal("ccq2.06", 0);
    check_codes_optimal("ccq2.06", 1);
    check_codes_optimal("ccq2.06+icq", 0);
}
TEST(ccq_scalar_group_codes_are_exact) {
    check_codes_optimal("wint4g64", 1);
    check_codes_optimal("wint2g64", 0);
    check_codes_optimal("wint2g64+icq", 1);
    check_codes_optimal("wint4", 1);
}

TEST(ccq_quality_on_gaussian_weights) {
    enum { N = 16, K = 4096 };
    float *w = malloc(sizeof(float) * N * K);
    gauss(w, N * K, 1, 1.0);
    /* Bars from spec/ccq.md §6 (with a margin for 16 rows) and for the scalar formats from the
     * Gaussian quantisation error of their step sizes. */
    struct {
        const char *f;
        double max, min;
    } c[] = {
        {"ccq2.75", 0.082, 0.05}, {"ccq2.5", 0.098, 0.07}, {"ccq2.06", 0.109, 0.08}, {"wint2g64", 0.125, 0.09},
        {"wint4", 0.013, 0.005},  {"wint4g64", 0.0095, 0.004}, {"wint8", 1e-4, 1e-6}, {"bf16", 1e-5, 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        ccq_tensor t;
        if (enc(c[i].f, w, N, K, NULL, NULL, &t)) continue;
        double m = rel_mse(&t, w, NULL);
        if (!(m <= c[i].max && m >= c[i].min)) FAIL("%s: rel mse %.5f outside [%g, %g]", c[i].f, m, c[i].min, c[i].max);
        ccq_free(&t);
    }
    free(w);
}

TEST(ccq_reencoding_is_stable) {
    enum { N = 4, K = 512 };
    float w[N * K], y[N * K], y2[N * K];
    gauss(w, N * K, 2, 0.02);
    const char *fs[] = {"wint8", "wint4", "wint4g64", "wint2g64", "ccq2.75", "ccq2.5", "ccq2.06", "ccq2.75+icq", "bf16"};
    for (size_t i = 0; i < sizeof fs / sizeof *fs; i++) {
        ccq_tensor t, t2;
        if (enc(fs[i], w, N, K, NULL, NULL, &t)) continue;
        ccq_decode(&t, y, NULL, NULL);
        if (enc(fs[i], y, N, K, NULL, NULL, &t2)) continue;
        ccq_decode(&t2, y2, NULL, NULL);
        double e1 = 0, e2 = 0;
        for (int k = 0; k < N * K; k++) e1 += (w[k] - y[k]) * (w[k] - y[k]), e2 += (y[k] - y2[k]) * (y[k] - y2[k]);
        /* y is representable: the base formats find it again (their searches are exact and the scale
         * search meets the stored scales); +icq may pick other outliers and multipliers for y, so it
         * only has to come close */
        double tol = strstr(fs[i], "+icq") ? 0.1 : 1e-3;
        if (!(e2 <= tol * e1)) FAIL("%s: re-encoding moved the weights by %g (first error %g)", fs[i], e2, e1);
        ccq_free(&t), ccq_free(&t2);
    }
}

TEST(ccq_encoding_does_not_depend_on_threads) {
    enum { N = 9, K = 256 };
    float w[N * K];
    gauss(w, N * K, 4, 1.0);
    pool *p = pool_create(3);
    const char *fs[] = {"ccq2.06+icq+crvq", "ccq2.75+crvq", "wint4+icq"};
    for (size_t i = 0; i < sizeof fs / sizeof *fs; i++) {
        ccq_tensor a, b;
        if (enc(fs[i], w, N, K, NULL, NULL, &a) || enc(fs[i], w, N, K, NULL, p, &b)) continue;
        for (int j = 0; j < a.nparts; j++)
            if (memcmp(a.part[j].data, b.part[j].data, a.part[j].nbytes)) FAIL("%s: part %s differs", fs[i], a.part[j].name);
        ccq_free(&a), ccq_free(&b);
    }
    pool_destroy(p);
}

TEST(ccq_importance_weights_the_error) {
    enum { N = 8, K = 512 };
    float w[N * K], h[K];
    gauss(w, N * K, 6, 1.0);
    for (int k = 0; k < K; k++) h[k] = k % 3 == 0 ? 10.0f : 0.1f;
    /* (wint4 is left out: round to nearest with one scale per row can only move its clipping point) */
    const char *fs[] = {"ccq2.75", "ccq2.06", "wint4g64", "wint2g64", "ccq2.5+crvq"};
    for (size_t i = 0; i < sizeof fs / sizeof *fs; i++) {
        ccq_tensor a, b;
        if (enc(fs[i], w, N, K, NULL, NULL, &a) || enc(fs[i], w, N, K, h, NULL, &b)) continue;
        double ea = rel_mse(&a, w, h), eb = rel_mse(&b, w, h);
        if (!(eb < 0.9 * ea)) FAIL("%s: weighted error %g with importance, %g without", fs[i], eb, ea);
        ccq_free(&a), ccq_free(&b);
    }
    /* One importance vector per block of rows (stacked experts): each block weights its own columns
     * (interleaved, so that every group holds both kinds). */
    float h2[2 * K];
    for (int k = 0; k < K; k++) h2[k] = k % 2 ? 0.01f : 10.0f, h2[K + k] = k % 2 ? 10.0f : 0.01f;
    ccq_format f;
    err_t e = {0};
    ccq_format_parse("ccq2.75", &f, &e);
    ccq_encode_opts o = {.importance = h2, .importance_rows = N / 2};
    ccq_tensor t;
    if (!CHECK_INT(ccq_encode(&f, w, N, K, &o, &t, &e), 0)) return;
    float *d = malloc(sizeof w);
    ccq_decode(&t, d, NULL, NULL);
    double lo[2] = {0}, hi[2] = {0};
    for (int r = 0; r < N; r++)
        for (int k = 0; k < K; k++) {
            double dd = (w[r * K + k] - d[r * K + k]) * (w[r * K + k] - d[r * K + k]);
            if (k % 2 == 0) lo[r >= N / 2] += dd;
            else hi[r >= N / 2] += dd;
        }
    CHECK(lo[0] < 0.7 * hi[0]); /* the first block cared about the even columns */
    CHECK(hi[1] < 0.7 * lo[1]);
    free(d);
    ccq_free(&t);
}

TEST(ccq_encode_rejects_bad_input) {
    enum { N = 2, K = 64 };
    float w[N * K], h[K];
    gauss(w, N * K, 1, 1.0);
    for (int k = 0; k < K; k++) h[k] = 1;
    ccq_format f;
    err_t e = {0};
    ccq_format_parse("ccq2.75", &f, &e);
    ccq_tensor t;
    w[K + 5] = NAN;
    CHECK_INT(ccq_encode(&f, w, N, K, NULL, &t, &e), -1);
    CHECK_INT(e.code, ERR_ARG);
    CHECK_CONTAINS(e.msg, "row 1 column 5");
    w[K + 5] = INFINITY;
    CHECK_INT(ccq_encode(&f, w, N, K, NULL, &t, &e), -1);
    w[K + 5] = 1e20f;
    CHECK_INT(ccq_encode(&f, w, N, K, NULL, &t, &e), -1);
    w[K + 5] = 0;
    h[3] = -1;
    ccq_encode_opts o = {.importance = h};
    CHECK_INT(ccq_encode(&f, w, N, K, &o, &t, &e), -1);
    CHECK_CONTAINS(e.msg, "column 3");
    h[3] = NAN;
    CHECK_INT(ccq_encode(&f, w, N, K, &o, &t, &e), -1);
    h[3] = 1;
    o.importance_rows = 3;
    CHECK_INT(ccq_encode(&f, w, N, K, &o, &t, &e), -1);
    CHECK_CONTAINS(e.msg, "do not divide");
    CHECK_INT(ccq_encode(&f, w, N, 48, NULL, &t, &e), -1);
    CHECK_CONTAINS(e.msg, "multiple of 64");
    /* all-zero weights and all-zero importance encode (to zeros) */
    memset(w, 0, sizeof w);
    if (CHECK_INT(ccq_encode(&f, w, N, K, NULL, &t, &e), 0)) {
        float d[N * K];
        CHECK_INT(ccq_validate(&t, &e), 0);
        ccq_decode(&t, d, NULL, NULL);
        for (int i = 0; i < N * K; i++) CHECK(d[i] == 0);
        ccq_free(&t);
    }
    gauss(w, N * K, 1, 1.0);
    memset(h, 0, sizeof h);
    o.importance_rows = 0;
    const char *fs[] = {"ccq2.06+icq+crvq", "wint4+icq", "ccq2.5", "wint2g64+crvq"};
    for (size_t i = 0; i < sizeof fs / sizeof *fs; i++) {
        ccq_format_parse(fs[i], &f, &e);
        if (CHECK_INT(ccq_encode(&f, w, N, K, &o, &t, &e), 0)) {
            CHECK_INT(ccq_validate(&t, &e), 0);
            ccq_free(&t);
        }
    }
}
