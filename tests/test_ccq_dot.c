/* tests/test_ccq_dot.c: the fused product ccq_dot against decode-then-dot in double precision, for every
 * format and modifier, batch sizes across the internal chunking, row ranges that are not multiples of the
 * row block, strided inputs and outputs, and the per-channel formats' partial last group. Also tiles cut
 * anywhere and the argument checks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "ccq/ccq.h"
#include "harness.h"

static void check_dot(const char *name, int64_t N, int64_t K) {
    ccq_format f;
    err_t e = {0};
    if (ccq_format_parse(name, &f, &e)) {
        FAIL("%s", e.msg);
        return;
    }
    rng_t r;
    rng_seed(&r, (uint64_t)K * 31 + (uint64_t)N);
    float *w = malloc(sizeof(float) * (size_t)(N * K));
    for (int64_t i = 0; i < N * K; i++) w[i] = (float)rng_normal(&r) * (i % 53 == 0 ? 6.0f : 1.0f);
    ccq_tensor t;
    if (ccq_encode(&f, w, N, K, NULL, &t, &e)) {
        FAIL("%s: %s", name, e.msg);
        free(w);
        return;
    }
    float *d = malloc(sizeof(float) * (size_t)(N * K));
    ccq_decode(&t, d, NULL, NULL);
    const int64_t Ts[] = {1, 2, 5, 300};
    for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++) {
        int64_t T = Ts[ti], ldx = K + 3, r0 = 1, r1 = N - 1, ldy = (r1 - r0) + 2;
        float *x = malloc(sizeof(float) * (size_t)(T * ldx)), *y = malloc(sizeof(float) * (size_t)(T * ldy));
        for (int64_t i = 0; i < T * ldx; i++) x[i] = (float)rng_normal(&r);
        for (int64_t i = 0; i < T * ldy; i++) y[i] = 12345.0f;
        if (!CHECK_INT(ccq_dot(&t, r0, r1, x, ldx, T, y, ldy, &e), 0)) FAIL("%s", e.msg);
        int bad = 0;
        for (int64_t tt = 0; tt < T && !bad; tt++) {
            for (int64_t n = r0; n < r1; n++) {
                double s = 0, mag = 0;
                for (int64_t k = 0; k < K; k++) s += (double)d[n * K + k] * x[tt * ldx + k], mag += fabs(d[n * K + k] * x[tt * ldx + k]);
                float got = y[tt * ldy + (n - r0)];
                if (!(fabs(got - s) <= 2e-6 * mag + 1e-30)) {
                    FAIL("%s T=%lld t=%lld row %lld: %.9g vs %.9g", name, (long long)T, (long long)tt, (long long)n, got, s);
                    bad = 1;
                    break;
                }
            }
            /* the gap between outputs is untouched */
            for (int64_t j = r1 - r0; j < ldy; j++)
                if (y[tt * ldy + j] != 12345.0f) FAIL("%s: wrote past the rows at t=%lld", name, (long long)tt), bad = 1;
        }
        free(x), free(y);
    }
    /* tiles cut anywhere equal the same slice of the whole decode */
    int64_t c0 = K > 8 ? K / 3 + 1 : 0, c1 = K > 8 ? K - 5 : K, ldo = c1 - c0 + 4;
    float *tile = malloc(sizeof(float) * (size_t)(3 * ldo));
    if (CHECK_INT(ccq_decode_tile(&t, N - 3, N, c0, c1, tile, ldo, &e), 0))
        for (int64_t i = 0; i < 3; i++)
            CHECK(!memcmp(tile + i * ldo, d + (N - 3 + i) * K + c0, sizeof(float) * (size_t)(c1 - c0)));
    /* whole decode on a pool equals the single-threaded one */
    pool *p = pool_create(3);
    float *d2 = malloc(sizeof(float) * (size_t)(N * K));
    ccq_decode(&t, d2, p, NULL);
    CHECK(!memcmp(d, d2, sizeof(float) * (size_t)(N * K)));
    pool_destroy(p);
    free(d2), free(tile), free(d), free(w);
    ccq_free(&t);
}

TEST(ccq_dot_equals_decode_then_dot) {
    const char *group[] = {"ccq2.75", "ccq2.5", "ccq2.06", "wint4g64", "wint2g64", "ccq2.75+icq", "ccq2.06+icq+crvq",
                           "ccq2.5+crvq:0.05:4", "wint2g64+icq:0.1:3"};
    for (size_t i = 0; i < sizeof group / sizeof *group; i++) check_dot(group[i], 11, 192);
    const char *chan[] = {"wint8", "wint4", "bf16", "wint8+icq", "wint4+crvq:0.1:4", "wint4+icq+crvq"};
    for (size_t i = 0; i < sizeof chan / sizeof *chan; i++) {
        check_dot(chan[i], 7, 100); /* 64 + a partial group of 36 */
        check_dot(chan[i], 6, 2);
    }
}

TEST(ccq_dot_and_decode_check_their_arguments) {
    ccq_format f;
    err_t e = {0};
    ccq_format_parse("wint8", &f, &e);
    float w[4 * 64], x[2 * 64], y[8];
    for (int i = 0; i < 4 * 64; i++) w[i] = (float)i;
    for (int i = 0; i < 2 * 64; i++) x[i] = 1;
    ccq_tensor t;
    if (!CHECK_INT(ccq_encode(&f, w, 4, 64, NULL, &t, &e), 0)) return;
    CHECK_INT(ccq_dot(&t, 0, 5, x, 64, 1, y, 8, &e), -1);
    CHECK_INT(e.code, ERR_ARG);
    CHECK_INT(ccq_dot(&t, 2, 1, x, 64, 1, y, 8, &e), -1);
    CHECK_INT(ccq_dot(&t, 0, 4, x, 63, 1, y, 8, &e), -1);
    CHECK_INT(ccq_dot(&t, 0, 4, x, 64, 2, y, 3, &e), -1);
    CHECK_INT(ccq_dot(&t, 0, 4, x, 64, -1, y, 4, &e), -1);
    CHECK_INT(ccq_dot(&t, 0, 4, x, 64, 0, NULL, 4, &e), 0); /* nothing to do */
    CHECK_INT(ccq_dot(&t, 2, 2, x, 64, 1, y, 0, &e), 0);
    float out[64];
    CHECK_INT(ccq_decode_tile(&t, 0, 1, 10, 70, out, 64, &e), -1);
    CHECK_INT(ccq_decode_tile(&t, 0, 1, 10, 5, out, 64, &e), -1);
    CHECK_INT(ccq_decode_tile(&t, 0, 1, 0, 64, out, 32, &e), -1);
    CHECK_INT(ccq_decode_row(&t, 4, out, &e), -1);
    CHECK_INT(ccq_decode_row(&t, 3, out, &e), 0);
    CHECK_INT(ccq_dot(NULL, 0, 1, x, 64, 1, y, 1, &e), -1);
    ccq_free(&t);
    ccq_free(&t); /* freeing twice is safe */
}
