/* tests/test_ccq_layout.c: hand-built parts decode to the values spec/ccq.md and the brief's storage layout
 * say, bit for bit, for every format: literal code words worked out on paper, then random bytes against a
 * reading of the spec written here independently of ccq/ (weight 63 and the local scale in the last
 * container, the nibble order of ccq2.06's local scales, FastDeploy's fmaf rounding). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "base/rng.h"
#include "ccq/ccq.h"
#include "harness.h"

/* Wraps parts (in layout order) over the given buffers and decodes the whole matrix. */
static int wrap_decode(const char *name, int64_t N, int64_t K, const void **data, float *out, err_t *e) {
    ccq_format f;
    if (ccq_format_parse(name, &f, e)) return -1;
    ccq_part p[CCQ_MAX_PARTS];
    int n;
    if (ccq_layout(&f, N, K, p, &n, e)) return -1;
    for (int i = 0; i < n; i++) p[i].data = data[i];
    ccq_tensor t;
    if (ccq_wrap(&f, N, K, p, n, &t, e)) return -1;
    int r = ccq_decode(&t, out, NULL, e);
    ccq_free(&t);
    return r;
}

TEST(ccq275_hand_built_group) {
    /* One row, one group. super = 0.5 (bf16 0x3F00), local = 3: scale 1.5. */
    uint8_t q[22] = {0};
    q[0] = 0xB4;         /* 1011 0100: v0 = 1011 = 11, v1 = 1101 = 13, v2 = 0100 = 4 */
    q[1] = 0x80;         /* v3 = 8, v4 = 0, v5 = 0 */
    q[20] = 0xFF;        /* weights 60..62 = 15 */
    q[21] = (9 << 4) | 3; /* weight 63 = 9, local scale 3 */
    uint16_t sup = 0x3F00;
    const void *d[] = {q, &sup};
    float w[64];
    err_t e = {0};
    if (!CHECK_INT(wrap_decode("ccq2.75", 1, 64, d, w, &e), 0)) return;
    CHECK_NEAR(w[0], (11 - 8) * 1.5, 0);
    CHECK_NEAR(w[1], (13 - 8) * 1.5, 0);
    CHECK_NEAR(w[2], (4 - 8) * 1.5, 0);
    CHECK_NEAR(w[3], 0, 0);
    CHECK_NEAR(w[4], -12, 0);
    CHECK_NEAR(w[5], -12, 0);
    CHECK_NEAR(w[6], -12, 0); /* byte 2 = 0: all windows 0 -> -8 * 1.5 */
    CHECK_NEAR(w[60], 7 * 1.5, 0);
    CHECK_NEAR(w[62], 7 * 1.5, 0);
    CHECK_NEAR(w[63], 1 * 1.5, 0);
    /* local scale 0 zeroes the group */
    q[21] = 9 << 4;
    CHECK_INT(wrap_decode("ccq2.75", 1, 64, d, w, &e), 0);
    for (int k = 0; k < 64; k++) CHECK_NEAR(w[k], 0, 0);
}

TEST(ccq25_hand_built_group) {
    uint16_t q[10] = {0};
    /* word 0: A = 101 1010 (windows at bits 6..4, 4..2, 2..0: 101, 110, 010 = 5, 6, 2), B = 1 1001 0011
     * (bits 8..6, 6..4, 4..2, 2..0: 110, 001, 100, 011 = 6, 1, 4, 3). */
    q[0] = (uint16_t)((0x5A << 9) | 0x193);
    q[9] = (uint16_t)((6 << 13) | 4097); /* weight 63 = 6, local13 = 4097 */
    uint16_t sup = 0x3C00;              /* bf16 2^-7 = 0.0078125 */
    const void *d[] = {q, &sup};
    float w[64];
    err_t e = {0};
    if (!CHECK_INT(wrap_decode("ccq2.5", 1, 64, d, w, &e), 0)) return;
    double s = 4097 * 0.0078125;
    int v[7] = {5, 6, 2, 6, 1, 4, 3};
    for (int i = 0; i < 7; i++) CHECK_NEAR(w[i], (v[i] - 4) * s, 0);
    for (int k = 7; k < 63; k++) CHECK_NEAR(w[k], -4 * s, 0);
    CHECK_NEAR(w[63], 2 * s, 0);
}

TEST(ccq206_hand_built_rows) {
    /* Two rows, K = 192 (three groups: the local_scale row has a half-used byte). */
    enum { N = 2, K = 192 };
    uint8_t q[N][K / 4] = {{0}};
    uint8_t loc[N][2] = {{0x52, 0x70}, {0x11, 0x10}}; /* row 0: g0 = 5 (high), g1 = 2 (low), g2 = 7 */
    float cs[N] = {128.0f, 120.25f}, zp[N] = {0.0f, 1000.0f};
    uint16_t sup[N] = {0x3F80, 0x4000}; /* 1.0 and 2.0 */
    q[0][0] = 1;   /* code 128 = 0o00200: v = (0, 2, 16, 0) */
    q[0][1] = 255; /* code 32640 = 0o77600: v = (63, 62, 48, 0) */
    q[0][16] = 1;  /* group 1 */
    q[0][32] = 2;  /* group 2: code 256: v = (0, 4, 32, 0) */
    q[1][0] = 3;   /* row 1: floor(fmaf(3, 120.25, 1000.5)) = floor(1361.25) = 1361 = 0o2521 */
    const void *d[] = {q, loc, cs, zp, sup};
    float w[N * K];
    err_t e = {0};
    if (!CHECK_INT(wrap_decode("ccq2.06", N, K, d, w, &e), 0)) {
        FAIL("%s", e.msg);
        return;
    }
    float s0 = 5, s1 = 2, s2 = 7;
    CHECK_NEAR(w[0], -32 * s0, 0);
    CHECK_NEAR(w[1], (2 - 32) * s0, 0);
    CHECK_NEAR(w[2], (16 - 32) * s0, 0);
    CHECK_NEAR(w[3], -32 * s0, 0);
    CHECK_NEAR(w[4], 31 * s0, 0);
    CHECK_NEAR(w[5], 30 * s0, 0);
    CHECK_NEAR(w[6], 16 * s0, 0);
    CHECK_NEAR(w[7], -32 * s0, 0);
    CHECK_NEAR(w[64], -32 * s1, 0);
    CHECK_NEAR(w[65], -30 * s1, 0);
    CHECK_NEAR(w[128 + 1], (4 - 32) * s2, 0);
    CHECK_NEAR(w[128 + 2], 0, 0);
    /* row 1: code 1361 = 0b010_101_010_001: v0 = 1361 >> 9 = 2, v1 = (1361 >> 6) & 63 = 21,
     * v2 = (1361 >> 3) & 63 = 42, v3 = 1361 & 63 = 17; local 1, super 2 */
    CHECK_NEAR(w[K + 0], (2 - 32) * 2.0, 0);
    CHECK_NEAR(w[K + 1], (21 - 32) * 2.0, 0);
    CHECK_NEAR(w[K + 2], (42 - 32) * 2.0, 0);
    CHECK_NEAR(w[K + 3], (17 - 32) * 2.0, 0);
    /* Row 1 group 2's local nibble is 1 (high nibble of 0x10); the low nibble is padding. */
    loc[1][1] = 0x11;
    CHECK_INT(wrap_decode("ccq2.06", N, K, d, w, &e), -1);
    CHECK_CONTAINS(e.msg, "local_scale");
}

/* The spec's code of index q, written here with fmaf as FastDeploy's GEMM does. */
static uint32_t spec_code(int q, float cs, float zp) { return (uint32_t)(int)floorf(fmaf((float)q, cs, zp + 0.5f)); }

TEST(ccq206_rounding_is_fmaf_not_mul_add) {
    /* Find a line where the fused and the separate multiply-add floor differently, then check that
     * decoding follows the fused one. */
    rng_t r;
    rng_seed(&r, 42);
    float cs = 0, zp = 0;
    int qd = -1;
    for (int tries = 0; tries < 200000 && qd < 0; tries++) {
        cs = (float)(100 + 26 * rng_uniform(&r));
        zp = (float)((int)(rng_uniform(&r) * 400)) - 0.5f + (float)rng_uniform(&r) * 1e-3f;
        if (zp < 0) zp = 0;
        for (int q = 1; q < 256; q++) {
            volatile float prod = (float)q * cs; /* rounded separately */
            float sep = floorf(prod + (zp + 0.5f));
            if (sep != floorf(fmaf((float)q, cs, zp + 0.5f))) {
                qd = q;
                break;
            }
        }
    }
    if (!CHECK(qd > 0)) return;
    uint8_t q[16] = {0}, loc = 0x10;
    q[0] = (uint8_t)qd;
    uint16_t sup = 0x3F80;
    const void *d[] = {q, &loc, &cs, &zp, &sup};
    float w[64];
    err_t e = {0};
    if (!CHECK_INT(wrap_decode("ccq2.06", 1, 64, d, w, &e), 0)) return;
    uint32_t c = spec_code(qd, cs, zp);
    for (int j = 0; j < 4; j++) CHECK_NEAR(w[j], (double)((int)((c >> (9 - 3 * j)) & 63) - 32), 0);
}

TEST(ccq_random_bytes_decode_as_the_spec_reads_them) {
    /* Random code bytes, decoded by the library and by a plain reading of the spec here. */
    enum { N = 3, K = 256 };
    rng_t r;
    rng_seed(&r, 7);
    uint8_t buf[N * K * 2];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)rng_next(&r);
    uint16_t sup[N] = {0x3F80, 0x3E00, 0x4080}; /* 1, 0.125, 4 */
    float w[N * K];
    err_t e = {0};

    /* ccq2.75 */
    const void *d275[] = {buf, sup};
    if (CHECK_INT(wrap_decode("ccq2.75", N, K, d275, w, &e), 0))
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) {
                const uint8_t *g = buf + n * (K / 64 * 22) + (k / 64) * 22;
                int j = k % 64, v = j == 63 ? g[21] >> 4 : (g[j / 3] >> (4 - 2 * (j % 3))) & 15;
                double want = (v - 8) * (g[21] & 15) * (double)bf16_to_f32(sup[n]);
                if (w[n * K + k] != want) {
                    FAIL("ccq2.75 row %d col %d: %g != %g", n, k, w[n * K + k], want);
                    return;
                }
            }
    /* ccq2.5 (little-endian words) */
    const void *d25[] = {buf, sup};
    if (CHECK_INT(wrap_decode("ccq2.5", N, K, d25, w, &e), 0))
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) {
                const uint8_t *g = buf + 2 * (n * (K / 64 * 10) + (k / 64) * 10);
                int j = k % 64;
                unsigned w9 = g[18] | g[19] << 8;
                static const int sh[7] = {13, 11, 9, 6, 4, 2, 0};
                unsigned word = j == 63 ? w9 : (unsigned)(g[2 * (j / 7)] | g[2 * (j / 7) + 1] << 8);
                int v = j == 63 ? (int)(w9 >> 13) : (int)((word >> sh[j % 7]) & 7);
                double want = (v - 4) * (double)(w9 & 0x1FFF) * bf16_to_f32(sup[n]);
                if (w[n * K + k] != (float)want) {
                    FAIL("ccq2.5 row %d col %d: %g != %g", n, k, w[n * K + k], want);
                    return;
                }
            }
    /* ccq2.06 with valid lines */
    float cs[N] = {121.5f, 100.0f, 64.25f}, zp[N] = {10.0f, 500.0f, 3.0f};
    const void *d206[] = {buf, buf + 1000, cs, zp, sup};
    if (CHECK_INT(wrap_decode("ccq2.06", N, K, d206, w, &e), 0))
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) {
                int g = k / 64, qb = buf[n * (K / 4) + k / 4];
                uint8_t lb = buf[1000 + n * 2 + g / 2];
                int local = g % 2 == 0 ? lb >> 4 : lb & 15;
                uint32_t c = spec_code(qb, cs[n], zp[n]);
                int v = (int)((c >> (9 - 3 * (k % 4))) & 63);
                double want = (v - 32) * local * (double)bf16_to_f32(sup[n]);
                if (w[n * K + k] != want) {
                    FAIL("ccq2.06 row %d col %d: %g != %g", n, k, w[n * K + k], want);
                    return;
                }
            }
    /* wint8, wint4 */
    float sc[N] = {0.5f, 0.03125f, 3.0f};
    const void *d8[] = {buf, sc};
    if (CHECK_INT(wrap_decode("wint8", N, K, d8, w, &e), 0))
        for (int i = 0; i < N * K; i++) CHECK(w[i] == (float)(int8_t)buf[i] * sc[i / K]);
    const void *d4[] = {buf, sc};
    if (CHECK_INT(wrap_decode("wint4", N, K, d4, w, &e), 0))
        for (int i = 0; i < N * K; i++) {
            int k = i % K, n = i / K, nib = (buf[n * K / 2 + k / 2] >> (4 * (k & 1))) & 15;
            CHECK(w[i] == (float)(nib - 8) * sc[n]);
        }
    /* wint4g64 and wint2g64: symmetric levels, ccq2.06's local nibbles */
    const void *dg4[] = {buf, buf + 1000, sup};
    if (CHECK_INT(wrap_decode("wint4g64", N, K, dg4, w, &e), 0))
        for (int i = 0; i < N * K; i++) {
            int k = i % K, n = i / K, nib = (buf[n * K / 2 + k / 2] >> (4 * (k & 1))) & 15;
            uint8_t lb = buf[1000 + n * 2 + k / 128];
            int local = (k / 64) % 2 == 0 ? lb >> 4 : lb & 15;
            CHECK(w[i] == (float)((nib - 7.5) * local * bf16_to_f32(sup[n])));
        }
    const void *dg2[] = {buf, buf + 1000, sup};
    if (CHECK_INT(wrap_decode("wint2g64", N, K, dg2, w, &e), 0))
        for (int i = 0; i < N * K; i++) {
            int k = i % K, n = i / K, v = (buf[n * K / 4 + k / 4] >> (2 * (k & 3))) & 3;
            uint8_t lb = buf[1000 + n * 2 + k / 128];
            int local = (k / 64) % 2 == 0 ? lb >> 4 : lb & 15;
            CHECK(w[i] == (float)((v - 1.5) * local * bf16_to_f32(sup[n])));
        }
    /* bf16: the bits themselves (finite values only) */
    uint16_t bw[N * K];
    for (int i = 0; i < N * K; i++) bw[i] = (uint16_t)(rng_next(&r) & 0xBFFF); /* exponent < 0xFF */
    const void *db[] = {bw};
    if (CHECK_INT(wrap_decode("bf16", N, K, db, w, &e), 0))
        for (int i = 0; i < N * K; i++) CHECK(w[i] == bf16_to_f32(bw[i]));
}

TEST(ccq_modifier_parts_decode_as_documented) {
    /* wint8 base decoding to 1.0 everywhere, +icq:0.05:4 marking outliers at 0, 3 and 40 with
     * multiplier 4, +crvq:0.03:4 (C = round(0.03 * 64) = 2) replacing channels 3 and 10; the CRVQ
     * replacement wins over the ICQ multiplier at channel 3. */
    enum { K = 64 };
    int8_t qw[K];
    for (int k = 0; k < K; k++) qw[k] = 2;
    float sc = 0.5f;
    /* B = 4: E = 15. Positions 0, 3, 40: gaps 0, 2, 36 = 15 + 15 + 6. Symbols: 0, 2, 15, 15, 6. */
    uint8_t st[64] = {0};
    unsigned syms[] = {0, 2, 15, 15, 6};
    int nsym = 0;
    for (int i = 0; i < 5; i++, nsym++)
        for (int b = 0; b < 4; b++)
            if (syms[i] >> b & 1) st[(i * 4 + b) / 8] |= (uint8_t)(1 << ((i * 4 + b) % 8));
    ccq_format f;
    err_t e = {0};
    if (!CHECK_INT(ccq_format_parse("wint8+icq:0.05:4+crvq:0.03:4", &f, &e), 0)) return;
    ccq_part p[CCQ_MAX_PARTS];
    int n;
    if (!CHECK_INT(ccq_layout(&f, 1, K, p, &n, &e), 0)) return;
    CHECK_INT(n, 7);
    /* S symbols: fill the rest with escapes */
    int64_t S = p[2].shape[1] * 8 / 4;
    for (int64_t i = nsym; i < S; i++)
        for (int b = 0; b < 4; b++) st[(i * 4 + b) / 8] |= (uint8_t)(1 << ((i * 4 + b) % 8));
    float mult = 4.0f;
    uint16_t idx[2] = {3, 10};
    uint8_t cq = (uint8_t)((8 + 3) | ((8 - 5) << 4)); /* channel 3 -> 3, channel 10 -> -5 */
    float cscale = 0.25f;
    const void *d[] = {qw, &sc, st, &mult, idx, &cq, &cscale};
    for (int i = 0; i < n; i++) p[i].data = d[i];
    ccq_tensor t;
    if (!CHECK_INT(ccq_wrap(&f, 1, K, p, n, &t, &e), 0)) {
        FAIL("%s", e.msg);
        return;
    }
    float w[K];
    CHECK_INT(ccq_decode_row(&t, 0, w, &e), 0);
    for (int k = 0; k < K; k++) {
        float want = k == 0 || k == 40 ? 4.0f : k == 3 ? 0.75f : k == 10 ? -1.25f : 1.0f;
        if (w[k] != want) FAIL("column %d: %g, expected %g", k, w[k], want);
    }
    ccq_free(&t);
}
