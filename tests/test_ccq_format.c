/* tests/test_ccq_format.c: format names, the parts of each format for a shape (the contract with the
 * model-file writer and the CUDA kernels, written out here by hand from the brief and spec/ccq.md), and
 * bit accounting computed independently from those sizes. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ccq/ccq.h"
#include "harness.h"

static ccq_format fmt(const char *s) {
    ccq_format f;
    err_t e = {0};
    memset(&f, 0, sizeof f);
    if (ccq_format_parse(s, &f, &e)) FAIL("parse %s: %s", s, e.msg);
    return f;
}

TEST(ccq_format_names_round_trip) {
    const char *in[] = {"bf16", "wint8", "wint4", "wint4g64", "wint2g64", "ccq2.75", "ccq2.5", "ccq2.06",
                        "ccq2.06+icq", "ccq2.75+crvq", "wint4+icq+crvq", "ccq2.5+icq:0.03:4",
                        "ccq2.06+crvq:0.05:4", "wint2g64+icq:0.0125:6+crvq:0.01:8"};
    for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
        ccq_format f = fmt(in[i]);
        char buf[64];
        CHECK_STR(ccq_format_name(&f, buf, sizeof buf), in[i]);
    }
    /* Canonical order and default parameters dropped. */
    char buf[64];
    ccq_format f = fmt("ccq2.06+crvq+icq");
    CHECK_STR(ccq_format_name(&f, buf, sizeof buf), "ccq2.06+icq+crvq");
    f = fmt("ccq2.75+icq:0.05:5+crvq:0.02:8");
    CHECK_STR(ccq_format_name(&f, buf, sizeof buf), "ccq2.75+icq+crvq");
    f = fmt("wint4+icq:0.05");
    CHECK_STR(ccq_format_name(&f, buf, sizeof buf), "wint4+icq");
    f = fmt("wint4+icq:0.1");
    CHECK_INT(f.icq_gamma, 1000);
    CHECK_INT(f.icq_bits, 5);
    CHECK_STR(ccq_format_name(&f, buf, sizeof buf), "wint4+icq:0.1:5");
    f = fmt("ccq2.06");
    CHECK_INT(f.base, CCQ_CCQ206);
    CHECK(!f.icq && !f.crvq);
    CHECK_STR(ccq_base_name(CCQ_CCQ25), "ccq2.5");
}

TEST(ccq_format_parse_errors_name_the_piece) {
    struct {
        const char *s, *want;
    } bad[] = {
        {"ccq2.7", "unknown format 'ccq2.7'"},
        {"", "unknown format ''"},
        {"CCQ2.06", "unknown format"},
        {"ccq2.06+foo", "unknown modifier '+foo'"},
        {"ccq2.06+icq+icq", "+icq given twice"},
        {"ccq2.06+crvq+icq+crvq", "+crvq given twice"},
        {"ccq2.06+icq:0", "icq gamma '0'"},
        {"ccq2.06+icq:0.6", "icq gamma '0.6'"},
        {"ccq2.06+icq:0.00001", "at most 4 decimals"},
        {"ccq2.06+icq:abc", "icq gamma 'abc'"},
        {"ccq2.06+icq:0.05:1", "icq symbol width '1'"},
        {"ccq2.06+icq:0.05:13", "icq symbol width '13'"},
        {"ccq2.06+icq:0.05:5:7", "too many parameters"},
        {"ccq2.06+crvq:0.02:5", "crvq bits '5' must be 4 or 8"},
        {"ccq2.06+crvq:x", "crvq fraction 'x'"},
        {"bf16+icq", "bf16 is a passthrough"},
        {"ccq2.06+", "unknown modifier '+'"},
        {"ccq2.06+icq:", "icq gamma ''"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ccq_format f;
        err_t e = {0};
        if (!CHECK_INT(ccq_format_parse(bad[i].s, &f, &e), -1)) continue;
        CHECK_INT(e.code, ERR_ARG);
        CHECK_CONTAINS(e.msg, bad[i].want);
    }
}

/* One expected part, from the brief's storage layout. */
typedef struct {
    const char *name, *dtype;
    int ndim;
    int64_t d0, d1;
    size_t nbytes;
} want_part;

static void check_layout(const char *name, int64_t N, int64_t K, const want_part *w, int nw) {
    ccq_format f = fmt(name);
    ccq_part p[CCQ_MAX_PARTS];
    int n = -1;
    err_t e = {0};
    if (!CHECK_INT(ccq_layout(&f, N, K, p, &n, &e), 0)) {
        FAIL("%s: %s", name, e.msg);
        return;
    }
    if (!CHECK_INT(n, nw)) return;
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        CHECK_STR(p[i].name, w[i].name);
        CHECK_STR(p[i].dtype, w[i].dtype);
        CHECK_INT(p[i].ndim, w[i].ndim);
        CHECK_INT(p[i].shape[0], w[i].d0);
        if (w[i].ndim == 2) CHECK_INT(p[i].shape[1], w[i].d1);
        CHECK_INT(p[i].nbytes, w[i].nbytes);
        CHECK(p[i].data == NULL);
        sum += w[i].nbytes * 8;
    }
    uint64_t bits = 0;
    double bpw = 0;
    CHECK_INT(ccq_bits(&f, N, K, &bits, &bpw, &e), 0);
    CHECK_INT(bits, sum);
    CHECK_NEAR(bpw, (double)sum / (double)(N * K), 1e-12);
}

TEST(ccq_layout_matches_the_agreed_storage) {
    const int64_t N = 3, K = 192; /* K/64 = 3 groups: odd, so local_scale has a half-used byte */
    want_part bf[] = {{"weight", "BF16", 2, N, K, (size_t)(N * K * 2)}};
    check_layout("bf16", N, K, bf, 1);
    want_part w8[] = {{"qweight", "I8", 2, N, K, (size_t)(N * K)}, {"scale", "F32", 1, N, 0, (size_t)(N * 4)}};
    check_layout("wint8", N, K, w8, 2);
    want_part w4[] = {{"qweight", "U8", 2, N, K / 2, (size_t)(N * K / 2)}, {"scale", "F32", 1, N, 0, (size_t)(N * 4)}};
    check_layout("wint4", N, K, w4, 2);
    want_part c275[] = {{"qweight", "U8", 2, N, 3 * 22, (size_t)(N * 66)}, {"super_scale", "BF16", 1, N, 0, (size_t)(N * 2)}};
    check_layout("ccq2.75", N, K, c275, 2);
    want_part c25[] = {{"qweight", "U16", 2, N, 3 * 10, (size_t)(N * 60)}, {"super_scale", "BF16", 1, N, 0, (size_t)(N * 2)}};
    check_layout("ccq2.5", N, K, c25, 2);
    want_part c206[] = {{"qweight", "U8", 2, N, K / 4, (size_t)(N * 48)},
                        {"local_scale", "U8", 2, N, 2, (size_t)(N * 2)},
                        {"code_scale", "F32", 1, N, 0, (size_t)(N * 4)},
                        {"code_zp", "F32", 1, N, 0, (size_t)(N * 4)},
                        {"super_scale", "BF16", 1, N, 0, (size_t)(N * 2)}};
    check_layout("ccq2.06", N, K, c206, 5);
    want_part g4[] = {{"qweight", "U8", 2, N, K / 2, (size_t)(N * 96)},
                      {"local_scale", "U8", 2, N, 2, (size_t)(N * 2)},
                      {"super_scale", "BF16", 1, N, 0, (size_t)(N * 2)}};
    check_layout("wint4g64", N, K, g4, 3);
    want_part g2[] = {{"qweight", "U8", 2, N, K / 4, (size_t)(N * 48)},
                      {"local_scale", "U8", 2, N, 2, (size_t)(N * 2)},
                      {"super_scale", "BF16", 1, N, 0, (size_t)(N * 2)}};
    check_layout("wint2g64", N, K, g2, 3);

    /* +icq: S symbols of B bits per row, S from the expected-gap formula, computed here directly. */
    const int64_t K2 = 4096;
    double g = 0.05, E = 31;
    int64_t S = (int64_t)ceil(g * K2 / (1 - pow(1 - g, E)));
    CHECK_INT(S, 258); /* 204.8 / 0.7961 = 257.3 */
    want_part ci[] = {{"qweight", "U8", 2, N, K2 / 64 * 22, (size_t)(N * K2 / 64 * 22)},
                      {"super_scale", "BF16", 1, N, 0, (size_t)(N * 2)},
                      {"icq_index", "U8", 2, N, (S * 5 + 7) / 8, (size_t)(N * ((S * 5 + 7) / 8))},
                      {"icq_scale", "F32", 1, N, 0, (size_t)(N * 4)}};
    check_layout("ccq2.75+icq", N, K2, ci, 4);
    /* +crvq: C = round(2% of K) channels, an int8 block, one scale per row. */
    want_part cc[] = {{"qweight", "U8", 2, N, K2 / 4, (size_t)(N * K2 / 4)},
                      {"local_scale", "U8", 2, N, K2 / 128, (size_t)(N * K2 / 128)},
                      {"code_scale", "F32", 1, N, 0, (size_t)(N * 4)},
                      {"code_zp", "F32", 1, N, 0, (size_t)(N * 4)},
                      {"super_scale", "BF16", 1, N, 0, (size_t)(N * 2)},
                      {"crvq_index", "U16", 1, 82, 0, 164},
                      {"crvq_qweight", "I8", 2, N, 82, (size_t)(N * 82)},
                      {"crvq_scale", "F32", 1, N, 0, (size_t)(N * 4)}};
    check_layout("ccq2.06+crvq", N, K2, cc, 8);
    want_part c4[] = {{"qweight", "I8", 2, N, 100, (size_t)(N * 100)},
                      {"scale", "F32", 1, N, 0, (size_t)(N * 4)},
                      {"crvq_index", "U16", 1, 5, 0, 10},
                      {"crvq_qweight", "U8", 2, N, 3, (size_t)(N * 3)},
                      {"crvq_scale", "F32", 1, N, 0, (size_t)(N * 4)}};
    check_layout("wint8+crvq:0.05:4", N, 100, c4, 5);
    /* The richest format fits CCQ_MAX_PARTS. */
    ccq_format f = fmt("ccq2.06+icq+crvq");
    ccq_part p[CCQ_MAX_PARTS];
    int n = 0;
    err_t e = {0};
    CHECK_INT(ccq_layout(&f, 8, 4096, p, &n, &e), 0);
    CHECK_INT(n, 10);
    CHECK_STR(p[5].name, "icq_index");
    CHECK_STR(p[7].name, "crvq_index");
}

TEST(ccq_bits_per_weight_by_hand) {
    struct {
        const char *f;
        int64_t N, K;
        double bpw;
    } c[] = {
        {"ccq2.75", 7168, 8192, 2.75 + 16.0 / 8192},
        {"ccq2.5", 7168, 8192, 2.5 + 16.0 / 8192},
        {"ccq2.06", 7168, 8192, 2.0 + 4.0 / 64 + 80.0 / 8192}, /* the spec's 2.072 */
        {"ccq2.06", 8192, 3584, 2.0 + 8.0 * 28 / 3584 + 80.0 / 3584},
        {"wint4", 10, 4096, 4.0 + 32.0 / 4096},
        {"wint8", 10, 4096, 8.0 + 32.0 / 4096},
        {"wint2g64", 10, 4096, 2.0 + 4.0 / 64 + 16.0 / 4096},
        {"bf16", 3, 5, 16.0},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        ccq_format f = fmt(c[i].f);
        double bpw = 0;
        err_t e = {0};
        CHECK_INT(ccq_bits(&f, c[i].N, c[i].K, NULL, &bpw, &e), 0);
        CHECK_NEAR(bpw, c[i].bpw, 1e-12);
    }
    ccq_format f = fmt("ccq2.06");
    double bpw;
    err_t e = {0};
    CHECK_NEAR((ccq_bits(&f, 1, 8192, NULL, &bpw, &e), bpw), 2.0 + 0.0625 + 80.0 / 8192, 1e-12);
    CHECK(fabs(bpw - 2.072) < 0.001);
}

TEST(ccq_layout_rejects_shapes_it_cannot_hold) {
    struct {
        const char *f;
        int64_t N, K;
        const char *want;
    } c[] = {
        {"ccq2.06", 4, 100, "not a multiple of 64"},
        {"ccq2.75", 4, 4000, "input dimension 4000 is not a multiple of 64"},
        {"wint4g64", 4, 32, "not a multiple of 64"},
        {"wint4", 4, 7, "not a multiple of 2"},
        {"wint8", 0, 64, "empty or too large"},
        {"wint8", 4, 0, "empty or too large"},
        {"wint8", -1, 64, "empty or too large"},
        {"wint8+crvq", 2, 70000, "+crvq needs at most 65536"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        ccq_format f = fmt(c[i].f);
        ccq_part p[CCQ_MAX_PARTS];
        int n;
        err_t e = {0};
        if (!CHECK_INT(ccq_layout(&f, c[i].N, c[i].K, p, &n, &e), -1)) continue;
        CHECK_INT(e.code, ERR_ARG);
        CHECK_CONTAINS(e.msg, c[i].want);
        CHECK_CONTAINS(e.msg, c[i].f); /* names the format */
    }
    /* Odd sizes that do fit: wint8 and bf16 take any K. */
    ccq_format f = fmt("wint8");
    ccq_part p[CCQ_MAX_PARTS];
    int n;
    err_t e = {0};
    CHECK_INT(ccq_layout(&f, 1, 1, p, &n, &e), 0);
    CHECK_INT(ccq_dtype_size("BF16"), 2);
    CHECK_INT(ccq_dtype_size("F32"), 4);
    CHECK_INT(ccq_dtype_size("I8"), 1);
    CHECK_INT(ccq_dtype_size("X"), 0);
}
