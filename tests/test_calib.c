/* tests/test_calib.c: calibration statistics (model/calib.h) against sums computed here, the engine's
 * observer against activations recomputed here from the checkpoint in double precision, and
 * `ernie import --calib` end to end, bad input included. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/bf16.h"
#include "base/rng.h"
#include "harness.h"
#include "kernels/backend.h"
#include "model/calib.h"
#include "model/engine.h"
#include "model/hf.h"
#include "model/hf_weights.h"

/* The expected importance of one block of rows: mean square per column, mean 1, 1% damping. */
static void expect_vec(const float *x, int T, int K, double *out) {
    double m = 0;
    for (int k = 0; k < K; k++) {
        double s = 0;
        for (int t = 0; t < T; t++) s += (double)x[t * K + k] * x[t * K + k];
        out[k] = s / T;
        m += out[k];
    }
    m /= K;
    for (int k = 0; k < K; k++) out[k] = 0.99 * out[k] / m + 0.01;
}

TEST(calib_importance_matches_brute_force) {
    enum { K = 24, T1 = 7, T2 = 5 };
    calib *c = NULL;
    err_t err = {0};
    if (!CHECK_INT(calib_new(&c, &err), 0)) return;
    rng_t r;
    rng_seed(&r, 11);
    float a[T1 * K], b[T2 * K], d[T2 * K];
    for (int i = 0; i < T1 * K; i++) a[i] = (float)rng_normal(&r) * (1 + i % K);
    for (int i = 0; i < T2 * K; i++) b[i] = (float)rng_normal(&r), d[i] = (float)rng_normal(&r) * 3;
    /* the plain weight in two calls (the sums must add up), experts 0 and 2 of three */
    calib_observe(c, &(eng_obs){"w.plain", -1, a, 3, K});
    calib_observe(c, &(eng_obs){"w.plain", -1, a + 3 * K, T1 - 3, K});
    calib_observe(c, &(eng_obs){"w.experts", 0, b, T2, K});
    calib_observe(c, &(eng_obs){"w.experts", 2, d, T2, K});
    CHECK_INT(calib_status(c, &err), 0);
    CHECK_INT(calib_tokens(c), T1);

    int found = 0;
    double want[K];
    float *h = calib_importance(c, "w.plain", 1, K, &found, &err);
    if (CHECK(h) && CHECK_INT(found, 1)) {
        expect_vec(a, T1, K, want);
        for (int k = 0; k < K; k++) CHECK_NEAR(h[k], want[k], 1e-5 * want[k]);
    }
    free(h);
    h = calib_importance(c, "w.experts", 3, K, &found, &err);
    if (CHECK(h)) {
        expect_vec(b, T2, K, want);
        for (int k = 0; k < K; k++) CHECK_NEAR(h[k], want[k], 1e-5 * want[k]);
        expect_vec(d, T2, K, want);
        for (int k = 0; k < K; k++) CHECK_NEAR(h[2 * K + k], want[k], 1e-5 * want[k]);
        /* expert 1 saw nothing: the mean of the two raw mean squares, normalised the same way */
        float both[2 * T2 * K];
        memcpy(both, b, sizeof b);
        memcpy(both + T2 * K, d, sizeof d);
        expect_vec(both, 2 * T2, K, want);
        for (int k = 0; k < K; k++) CHECK_NEAR(h[K + k], want[k], 1e-5 * want[k]);
    }
    free(h);
    /* never seen: no importance, no error */
    err = (err_t){0};
    CHECK(!calib_importance(c, "w.other", 1, K, &found, &err));
    CHECK_INT(found, 0);
    CHECK_INT(err.code, 0);
    /* a width that disagrees with the weight */
    CHECK(!calib_importance(c, "w.plain", 1, K + 1, &found, &err));
    CHECK_CONTAINS(err.msg, "w.plain");
    /* seen twice with different widths: kept as an error */
    calib_observe(c, &(eng_obs){"w.plain", -1, a, 1, K - 1});
    err = (err_t){0};
    CHECK_INT(calib_status(c, &err), -1);
    CHECK_CONTAINS(err.msg, "w.plain");
    calib_free(c);
}

/* What the observer collected from the MoE fixture. */
typedef struct {
    int T;
    int rows_gate[8], rows_down[8]; /* layer 1, per expert */
    int qkv_calls;
    int expert;                     /* layer 1: the first expert seen, its first input row and activations */
    float x0[128], h0[64];
    float q_in0[128];               /* layer 0 q_proj input, row 0 */
    int head_rows;
} seen;

static void on_obs(void *ctx, const eng_obs *o) {
    seen *s = ctx;
    if (!strcmp(o->weight, "model.layers.0.self_attn.q_proj")) memcpy(s->q_in0, o->x, sizeof s->q_in0);
    if (strstr(o->weight, "self_attn.") && strstr(o->weight, "_proj") && !strstr(o->weight, "o_proj")) {
        s->qkv_calls++;
        CHECK_INT(o->T, s->T);
        CHECK_INT(o->K, 128);
    }
    if (!strcmp(o->weight, "lm_head")) s->head_rows += o->T;
    if (!strncmp(o->weight, "model.layers.1.mlp.experts.", 27)) {
        if (!CHECK(o->expert >= 0 && o->expert < 8)) return;
        if (strstr(o->weight, "gate_proj")) {
            if (s->expert < 0) s->expert = o->expert, memcpy(s->x0, o->x, sizeof s->x0);
            s->rows_gate[o->expert] += o->T;
            CHECK_INT(o->K, 128);
        }
        if (strstr(o->weight, "down_proj")) {
            if (o->expert == s->expert && s->rows_down[o->expert] == 0) memcpy(s->h0, o->x, sizeof s->h0);
            s->rows_down[o->expert] += o->T;
            CHECK_INT(o->K, 64);
        }
    }
}

static double dot_bf16(const st_tensor *t, int row, const float *x, int K) {
    const uint8_t *p = (const uint8_t *)t->data + (size_t)row * K * 2;
    double s = 0;
    for (int k = 0; k < K; k++) {
        uint16_t v;
        memcpy(&v, p + 2 * k, 2);
        s += (double)bf16_to_f32(v) * x[k];
    }
    return s;
}

TEST(engine_observer_sees_each_product_input) {
    const char *dir = "tests/fixtures/golden/moe";
    err_t err = {0};
    hf_ckpt *h = NULL;
    if (!CHECK_INT(hf_open(&h, dir, &err), 0)) return;
    hfw *w = hfw_create(h);
    eng_config ec;
    uint8_t is_moe[8];
    hfw_eng_config(h, &ec, is_moe);
    be *b = be_cpu_create(1, &err);
    eng *e1 = NULL, *e2 = NULL;
    enum { T = 19 };
    int32_t ids[T];
    for (int i = 0; i < T; i++) ids[i] = 5 + 97 * i % 2000;
    float *l1 = malloc(sizeof(float) * T * ec.vocab), *l2 = malloc(sizeof(float) * T * ec.vocab);
    seen s = {.T = T, .expert = -1};
    if (!CHECK(b) || !CHECK_INT(eng_create(&e1, &ec, b, hfw_lookup, w, 64, 64, &err), 0) ||
        !CHECK_INT(eng_create(&e2, &ec, b, hfw_lookup, w, 64, 64, &err), 0) ||
        !CHECK_INT(eng_set_observer(e2, on_obs, &s, &err), 0))
        goto out;
    CHECK_INT(eng_forward(e1, ids, T, l1, 1, &err), 0);
    CHECK_INT(eng_forward(e2, ids, T, l2, 1, &err), 0);
    /* observing must not change the computation */
    CHECK(!memcmp(l1, l2, sizeof(float) * T * ec.vocab));
    CHECK_INT(s.qkv_calls, 3 * ec.n_layers);
    CHECK_INT(s.head_rows, T);
    int total = 0;
    for (int x = 0; x < 8; x++) {
        CHECK_INT(s.rows_down[x], s.rows_gate[x]);
        total += s.rows_gate[x];
    }
    CHECK_INT(total, T * ec.moe_k); /* each token, k distinct experts */

    /* layer 0's q_proj input: rmsnorm(embedding) * input_layernorm, recomputed here */
    const st_tensor *emb = hf_find(h, "model.embed_tokens.weight", NULL);
    const st_tensor *ln = hf_find(h, "model.layers.0.input_layernorm.weight", NULL);
    if (CHECK(emb && ln)) {
        double v[128], ss = 0;
        for (int k = 0; k < 128; k++) {
            uint16_t q;
            memcpy(&q, (const uint8_t *)emb->data + ((size_t)ids[0] * 128 + k) * 2, 2);
            v[k] = bf16_to_f32(q);
            ss += v[k] * v[k];
        }
        double r = 1.0 / sqrt(ss / 128 + ec.eps), err2 = 0, n2 = 0;
        for (int k = 0; k < 128; k++) {
            uint16_t q;
            memcpy(&q, (const uint8_t *)ln->data + 2 * k, 2);
            double want = v[k] * r * bf16_to_f32(q);
            err2 += (want - s.q_in0[k]) * (want - s.q_in0[k]);
            n2 += want * want;
        }
        CHECK(sqrt(err2 / n2) < 1e-5);
    }
    /* the down projection's input for the first routed row: silu(Wg x) * (Wu x) of that expert */
    if (CHECK(s.expert >= 0)) {
        char n1[128], n2[128];
        snprintf(n1, sizeof n1, "model.layers.1.mlp.experts.%d.gate_proj.weight", s.expert);
        snprintf(n2, sizeof n2, "model.layers.1.mlp.experts.%d.up_proj.weight", s.expert);
        const st_tensor *tg = hf_find(h, n1, NULL), *tu = hf_find(h, n2, NULL);
        if (CHECK(tg && tu)) {
            double e2s = 0, n2s = 0;
            for (int c = 0; c < 64; c++) {
                double g = dot_bf16(tg, c, s.x0, 128), u = dot_bf16(tu, c, s.x0, 128);
                double want = g / (1 + exp(-g)) * u;
                e2s += (want - s.h0[c]) * (want - s.h0[c]);
                n2s += want * want;
            }
            CHECK(sqrt(e2s / n2s) < 1e-5);
        }
    }
out:
    eng_free(e1);
    eng_free(e2);
    if (b) b->ops->destroy(b);
    free(l1);
    free(l2);
    hfw_free(w);
    hf_close(h);
}

static void write_text(const char *path) {
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 60; i++) fprintf(f, "The %d quick brown foxes jump over %d lazy dogs; who knew?\n", i, 2 * i + 1);
    fclose(f);
}

static long file_size(const char *p) {
    FILE *f = fopen(p, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

TEST(import_calib_end_to_end) {
    const char *txt = th_tmp("calib.txt"), *plain = th_tmp("plain.ernie"), *cal = th_tmp("cal.ernie");
    write_text(txt);
    char *o, *e;
    char *a1[] = {"import", "tests/fixtures/golden/moe", "-o", (char *)plain, "--recipe", "q2.5", NULL};
    char *a2[] = {"import", "tests/fixtures/golden/moe", "-o", (char *)cal, "--recipe", "q2.5", "--calib", (char *)txt,
                  "--calib-tokens", "300", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, a1), 0);
    free(o), free(e);
    CHECK_INT(th_ernie(&o, &e, NULL, a2), 0);
    free(o), free(e);
    char *v[] = {"verify", (char *)cal, NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, v), 0);
    free(o), free(e);
    char *inf[] = {"info", (char *)cal, "--json", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, inf), 0);
    CHECK_CONTAINS(o, "\"calibration\"");
    CHECK_CONTAINS(o, "300 tokens");
    free(o), free(e);
    /* the importance changed the codes: same size, different bytes */
    long n1 = file_size(plain), n2 = file_size(cal);
    CHECK(n1 > 0 && n2 > 0);
    FILE *f1 = fopen(plain, "rb"), *f2 = fopen(cal, "rb");
    int differ = 0;
    if (CHECK(f1 && f2)) {
        int c1, c2;
        while ((c1 = fgetc(f1)) != EOF && (c2 = fgetc(f2)) != EOF)
            if (c1 != c2) differ++;
    }
    if (f1) fclose(f1);
    if (f2) fclose(f2);
    CHECK(differ > 1000);
}

TEST(import_calib_bad_input) {
    const char *out = th_tmp("bad.ernie"), *empty = th_tmp("empty.txt");
    char *o, *e;
    char *a1[] = {"import", "tests/fixtures/golden/moe", "-o", (char *)out, "--calib", "/nonexistent/calib.txt", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, a1), 1);
    CHECK_CONTAINS(e, "/nonexistent/calib.txt");
    CHECK(access(out, F_OK) != 0);
    free(o), free(e);
    FILE *f = fopen(empty, "w");
    fclose(f);
    char *a2[] = {"import", "tests/fixtures/golden/moe", "-o", (char *)out, "--calib", (char *)empty, NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, a2), 1);
    CHECK_CONTAINS(e, "empty.txt");
    CHECK(access(out, F_OK) != 0);
    free(o), free(e);
    char *a3[] = {"import", "tests/fixtures/golden/moe", "-o", (char *)out, "--calib", (char *)empty, "--calib-tokens",
                  "1", NULL};
    CHECK(th_ernie(&o, &e, NULL, a3) != 0);
    CHECK_CONTAINS(e, "--calib-tokens");
    CHECK(access(out, F_OK) != 0);
    free(o), free(e);
}
