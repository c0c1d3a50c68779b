/* tests/test_ccq_corrupt.c: an encoded weight read from a file may be anything. Wrong part lists, sizes,
 * dtypes and shapes, non-finite or negative scales, code lines leaving the code space, padding bits,
 * ICQ streams pointing past the row, CRVQ index lists out of order: each is rejected with ERR_CORRUPT
 * and a message naming the part. Random corruption either fails validation or decodes to finite values
 * (never a crash; the SAN build checks the reads). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "ccq/ccq.h"
#include "harness.h"

/* A valid encoded tensor and a private copy of its parts to corrupt. */
typedef struct {
    ccq_format f;
    int64_t N, K;
    ccq_tensor t;
    ccq_part p[CCQ_MAX_PARTS];
    uint8_t *buf[CCQ_MAX_PARTS];
    int n;
} fixture;

static int setup(fixture *x, const char *name, int64_t N, int64_t K) {
    err_t e = {0};
    memset(x, 0, sizeof *x);
    x->N = N, x->K = K;
    if (ccq_format_parse(name, &x->f, &e)) return FAIL("%s", e.msg), -1;
    float *w = malloc(sizeof(float) * (size_t)(N * K));
    rng_t r;
    rng_seed(&r, 99);
    for (int64_t i = 0; i < N * K; i++) w[i] = (float)rng_normal(&r) * (i % 97 == 0 ? 8.0f : 1.0f);
    int rc = ccq_encode(&x->f, w, N, K, NULL, &x->t, &e);
    free(w);
    if (rc) return FAIL("%s: %s", name, e.msg), -1;
    x->n = x->t.nparts;
    for (int i = 0; i < x->n; i++) {
        x->p[i] = x->t.part[i];
        x->buf[i] = malloc(x->p[i].nbytes + 1);
        memcpy(x->buf[i], x->t.part[i].data, x->p[i].nbytes);
        x->p[i].data = x->buf[i];
    }
    return 0;
}

static void restore(fixture *x) {
    for (int i = 0; i < x->n; i++) {
        x->p[i] = x->t.part[i];
        memcpy(x->buf[i], x->t.part[i].data, x->p[i].nbytes);
        x->p[i].data = x->buf[i];
    }
}

static void teardown(fixture *x) {
    for (int i = 0; i < x->n; i++) free(x->buf[i]);
    ccq_free(&x->t);
}

static int part_of(fixture *x, const char *name) {
    for (int i = 0; i < x->n; i++)
        if (!strcmp(x->p[i].name, name)) return i;
    FAIL("no part %s", name);
    return 0;
}

/* ccq_wrap must fail with ERR_CORRUPT and a message containing want. */
static void expect_reject(fixture *x, const char *what, const char *want) {
    ccq_tensor t;
    err_t e = {0};
    if (ccq_wrap(&x->f, x->N, x->K, x->p, x->n, &t, &e) == 0) {
        FAIL("%s: accepted", what);
        return;
    }
    if (e.code != ERR_CORRUPT) FAIL("%s: code %s (%s)", what, err_code_name(e.code), e.msg);
    if (!strstr(e.msg, want)) FAIL("%s: message '%s' does not mention '%s'", what, e.msg, want);
    restore(x);
}

static void set_f32(fixture *x, const char *part, size_t i, float v) { memcpy(x->buf[part_of(x, part)] + 4 * i, &v, 4); }
static void set_u16(fixture *x, const char *part, size_t i, uint16_t v) { memcpy(x->buf[part_of(x, part)] + 2 * i, &v, 2); }

TEST(ccq_wrap_checks_the_part_list) {
    fixture x;
    if (setup(&x, "ccq2.06+icq+crvq", 3, 192)) return;
    ccq_tensor t;
    err_t e = {0};
    if (!CHECK_INT(ccq_wrap(&x.f, 3, 192, x.p, x.n, &t, &e), 0)) FAIL("%s", e.msg);
    /* parts in any order are fine */
    ccq_part rev[CCQ_MAX_PARTS];
    for (int i = 0; i < x.n; i++) rev[i] = x.p[x.n - 1 - i];
    CHECK_INT(ccq_wrap(&x.f, 3, 192, rev, x.n, &t, &e), 0);
    CHECK_STR(t.part[0].name, "qweight");
    /* missing, extra, duplicated */
    CHECK_INT(ccq_wrap(&x.f, 3, 192, x.p, x.n - 1, &t, &e), -1);
    CHECK_CONTAINS(e.msg, "crvq_scale is missing");
    ccq_part more[CCQ_MAX_PARTS + 1];
    memcpy(more, x.p, sizeof(ccq_part) * (size_t)x.n);
    more[x.n] = x.p[0];
    more[x.n].name = "bogus";
    CHECK_INT(ccq_wrap(&x.f, 3, 192, more, x.n + 1, &t, &e), -1);
    CHECK_CONTAINS(e.msg, "unexpected part 'bogus'");
    more[x.n].name = "qweight";
    CHECK_INT(ccq_wrap(&x.f, 3, 192, more, x.n + 1, &t, &e), -1);
    CHECK_CONTAINS(e.msg, "qweight given twice");
    /* dtype, shape, size, data */
    x.p[1].dtype = "U16";
    expect_reject(&x, "dtype", "local_scale: dtype U16, expected U8");
    x.p[0].shape[1]--;
    expect_reject(&x, "shape", "qweight: shape");
    x.p[4].nbytes--;
    expect_reject(&x, "size", "super_scale");
    x.p[4].data = NULL;
    expect_reject(&x, "data", "super_scale");
    /* the shape the caller claims must fit the format */
    CHECK_INT(ccq_wrap(&x.f, 3, 100, x.p, x.n, &t, &e), -1);
    CHECK_INT(e.code, ERR_ARG);
    teardown(&x);
}

TEST(ccq_validate_rejects_bad_scales) {
    fixture x;
    if (!setup(&x, "ccq2.06", 3, 192)) {
        set_u16(&x, "super_scale", 1, 0x7FC0); /* NaN */
        expect_reject(&x, "nan super", "super_scale: element 1");
        set_u16(&x, "super_scale", 2, 0x7F80); /* inf */
        expect_reject(&x, "inf super", "super_scale: element 2");
        set_u16(&x, "super_scale", 0, 0xBF80); /* -1 */
        expect_reject(&x, "negative super", "super_scale");
        set_f32(&x, "code_scale", 1, NAN);
        expect_reject(&x, "nan code_scale", "row 1: code_scale");
        set_f32(&x, "code_scale", 1, 200.0f); /* 255 * 200 > 32767 */
        expect_reject(&x, "code_scale too big", "outside 0..32767");
        set_f32(&x, "code_zp", 2, -5.0f);
        expect_reject(&x, "negative zp", "row 2");
        set_f32(&x, "code_scale", 0, -200.0f); /* codes go negative */
        expect_reject(&x, "negative code_scale", "row 0");
        set_f32(&x, "code_zp", 0, 1e30f);
        expect_reject(&x, "huge zp", "row 0");
        x.buf[part_of(&x, "local_scale")][2 * 1 + 1] |= 0x03; /* row 1's padding nibble */
        expect_reject(&x, "local pad", "local_scale: row 1");
        teardown(&x);
    }
    const char *scaled[] = {"wint8", "wint4"};
    for (int i = 0; i < 2; i++) {
        if (setup(&x, scaled[i], 2, 100)) continue;
        set_f32(&x, "scale", 1, INFINITY);
        expect_reject(&x, "inf scale", "scale: element 1");
        set_f32(&x, "scale", 0, -0.5f);
        expect_reject(&x, "negative scale", "scale: element 0");
        teardown(&x);
    }
    const char *sup[] = {"ccq2.75", "ccq2.5", "wint4g64", "wint2g64"};
    for (int i = 0; i < 4; i++) {
        if (setup(&x, sup[i], 2, 192)) continue;
        set_u16(&x, "super_scale", 1, 0xFFC0);
        expect_reject(&x, sup[i], "super_scale: element 1");
        if (i >= 2) {
            x.buf[part_of(&x, "local_scale")][3] |= 1;
            expect_reject(&x, "g64 pad", "local_scale: row 1");
        }
        teardown(&x);
    }
    if (!setup(&x, "bf16", 2, 10)) {
        set_u16(&x, "weight", 13, 0x7F80);
        expect_reject(&x, "bf16 inf", "row 1 column 3");
        teardown(&x);
    }
}

TEST(ccq_validate_rejects_bad_icq_streams) {
    fixture x;
    /* B = 4: escape 15. K = 128: S = ceil(6.4 / (1 - 0.95^15)) = 12 symbols = 6 bytes per row. */
    if (setup(&x, "wint4+icq:0.05:4", 2, 128)) return;
    int ix = part_of(&x, "icq_index");
    CHECK_INT(x.p[ix].shape[1], 6);
    uint8_t *row1 = x.buf[ix] + 6;
    memset(row1, 0xFF, 6); /* all escapes: an empty row is valid */
    ccq_tensor t;
    err_t e = {0};
    CHECK_INT(ccq_wrap(&x.f, 2, 128, x.p, x.n, &t, &e), 0);
    /* 8 escapes = 120, then a symbol 8 puts an outlier at 128 = K: past the row */
    memset(row1, 0xFF, 6);
    row1[4] = 0xF8;
    expect_reject(&x, "outlier past the row", "row 1: symbol 8 puts an outlier at column 128 of 128");
    memset(row1, 0xFF, 6);
    row1[4] = 0xF7; /* symbol 7: column 127, the last one: valid */
    CHECK_INT(ccq_wrap(&x.f, 2, 128, x.p, x.n, &t, &e), 0);
    restore(&x);
    set_f32(&x, "icq_scale", 0, 0.0f);
    expect_reject(&x, "zero multiplier", "icq_scale: element 0");
    set_f32(&x, "icq_scale", 1, NAN);
    expect_reject(&x, "nan multiplier", "icq_scale: element 1");
    teardown(&x);
    /* B = 5 with K = 4096: S = 258 symbols = 1290 bits: the last byte has 6 padding bits */
    if (setup(&x, "ccq2.75+icq", 1, 4096)) return;
    ix = part_of(&x, "icq_index");
    CHECK_INT(x.p[ix].shape[1], 162);
    x.buf[ix][161] |= 0x80;
    expect_reject(&x, "padding", "padding bits");
    teardown(&x);
}

TEST(ccq_validate_rejects_bad_crvq_parts) {
    fixture x;
    if (setup(&x, "ccq2.5+crvq:0.05:4", 3, 192)) return; /* C = round(9.6) = 10 */
    int ix = part_of(&x, "crvq_index");
    CHECK_INT(x.p[ix].shape[0], 10);
    set_u16(&x, "crvq_index", 9, 192);
    expect_reject(&x, "index past K", "crvq_index: entry 9 is channel 192 of 192");
    set_u16(&x, "crvq_index", 9, 65535);
    expect_reject(&x, "index past K", "entry 9");
    uint16_t a;
    memcpy(&a, x.buf[ix] + 2 * 3, 2);
    set_u16(&x, "crvq_index", 4, a);
    expect_reject(&x, "duplicate", "entries 3 and 4 are not increasing");
    set_u16(&x, "crvq_index", 0, 191);
    expect_reject(&x, "unsorted", "not increasing");
    set_f32(&x, "crvq_scale", 2, -INFINITY);
    expect_reject(&x, "crvq scale", "crvq_scale: element 2");
    teardown(&x);
    if (setup(&x, "wint8+crvq:0.0455:4", 2, 100)) return; /* C = round(4.55) = 5: odd, a padding nibble */
    int iq = part_of(&x, "crvq_qweight");
    CHECK_INT(x.p[iq].shape[1], 3);
    x.buf[iq][3 + 2] |= 0x10;
    expect_reject(&x, "int4 pad", "crvq_qweight: row 1");
    teardown(&x);
}

TEST(ccq_random_corruption_never_crashes) {
    const char *fs[] = {"ccq2.75+icq", "ccq2.5+crvq", "ccq2.06+icq+crvq", "wint4g64+icq:0.1:3", "wint2g64",
                        "wint8+crvq:0.05:4", "wint4+icq:0.2:2", "bf16"};
    rng_t r;
    rng_seed(&r, 1234);
    for (size_t i = 0; i < sizeof fs / sizeof *fs; i++) {
        fixture x;
        int64_t K = strncmp(fs[i], "wint8", 5) && strncmp(fs[i], "wint4+", 6) && strcmp(fs[i], "bf16") ? 192 : 98;
        if (setup(&x, fs[i], 5, K)) continue;
        int accepted = 0, rejected = 0;
        float out[5 * 192], y[3 * 5], xv[3 * 192];
        for (int k = 0; k < 3 * 192; k++) xv[k] = (float)rng_normal(&r);
        for (int trial = 0; trial < 150; trial++) {
            int nflip = 1 + (int)(rng_uniform(&r) * 4);
            for (int f = 0; f < nflip; f++) {
                int p = (int)(rng_uniform(&r) * x.n);
                if (!x.p[p].nbytes) continue;
                size_t b = (size_t)(rng_uniform(&r) * (double)x.p[p].nbytes);
                x.buf[p][b] ^= (uint8_t)(1u << (int)(rng_uniform(&r) * 8));
            }
            ccq_tensor t;
            err_t e = {0};
            if (ccq_wrap(&x.f, 5, K, x.p, x.n, &t, &e)) {
                rejected++;
                if (e.code != ERR_CORRUPT || !e.msg[0]) FAIL("%s: %s (%s)", fs[i], e.msg, err_code_name(e.code));
            } else {
                accepted++;
                ccq_decode(&t, out, NULL, NULL);
                for (int k = 0; k < 5 * K; k++)
                    if (!isfinite(out[k])) {
                        FAIL("%s: a validated tensor decodes to %g at %d", fs[i], out[k], k);
                        break;
                    }
                ccq_dot(&t, 0, 5, xv, K, 3, y, 5, NULL);
            }
            restore(&x);
        }
        CHECK(rejected > 0 || !strcmp(fs[i], "wint2g64")); /* most formats have checkable side data */
        CHECK(accepted > 0);
        teardown(&x);
    }
}
