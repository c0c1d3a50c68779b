/* tests/test_cpu_backend.c: the CPU backend's operations against straightforward double-precision
 * references written from spec/ernie.md §2 (not from the backend's code). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "base/rng.h"
#include "harness.h"
#include "kernels/backend.h"

static be *cpu(void) {
    err_t e = {0};
    be *b = be_cpu_create(2, &e);
    CHECK(b != NULL);
    return b;
}

static void fill(float *x, size_t n, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_normal(&r);
}

static double rel_err(const float *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - ref[i]) * (a[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static be_weight *f32_weight(be *b, const float *w, int64_t rows, int64_t cols) {
    be_weight_src s = {.name = "w", .format = "f32", .rows = rows, .cols = cols, .nparts = 1};
    s.part[0].name = "weight";
    s.part[0].data = w;
    s.part[0].nbytes = (size_t)(rows * cols) * 4;
    err_t e = {0};
    be_weight *bw = b->ops->weight_load(b, &s, &e);
    if (!bw) FAIL("weight_load: %s", e.msg);
    return bw;
}

TEST(cpu_matmul_bf16_and_f32) {
    be *b = cpu();
    int N = 37, K = 70, T = 3;
    float *w = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * T * K), *y = malloc(sizeof(float) * T * N);
    uint16_t *wb = malloc(2 * (size_t)N * K);
    double *ref = malloc(sizeof(double) * T * N);
    fill(w, (size_t)N * K, 1);
    fill(x, (size_t)T * K, 2);
    for (int i = 0; i < N * K; i++) wb[i] = f32_to_bf16(w[i]);
    be_weight *W = f32_weight(b, w, N, K);
    b->ops->matmul(b, W, 0, N, x, T, y);
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)w[n * K + k] * x[t * K + k];
            ref[t * N + n] = s;
        }
    CHECK(rel_err(y, ref, (size_t)T * N) < 1e-6);
    /* a row window of a stacked weight */
    b->ops->matmul(b, W, 5, 10, x, T, y);
    for (int t = 0; t < T; t++)
        for (int n = 0; n < 10; n++) CHECK_NEAR(y[t * 10 + n], ref[t * N + n + 5], 1e-4);
    be_weight_src s = {.name = "wb", .format = "bf16", .rows = N, .cols = K, .nparts = 1};
    s.part[0].data = wb;
    s.part[0].nbytes = 2 * (size_t)N * K;
    err_t e = {0};
    be_weight *WB = b->ops->weight_load(b, &s, &e);
    if (!CHECK(WB)) return;
    b->ops->matmul(b, WB, 0, N, x, T, y);
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            double s2 = 0;
            for (int k = 0; k < K; k++) s2 += (double)bf16_to_f32(wb[n * K + k]) * x[t * K + k];
            ref[t * N + n] = s2;
        }
    CHECK(rel_err(y, ref, (size_t)T * N) < 1e-6);
    s.part[0].nbytes--; /* wrong size: refused, naming the tensor */
    CHECK(b->ops->weight_load(b, &s, &e) == NULL);
    CHECK_CONTAINS(e.msg, "wb");
    b->ops->weight_free(b, W);
    b->ops->weight_free(b, WB);
    b->ops->destroy(b);
    free(w), free(x), free(y), free(wb), free(ref);
}

TEST(cpu_rope_is_interleaved_pairs) {
    be *b = cpu();
    int T = 3, nh = 2, hd = 8, pos0 = 5;
    float x[48], x0[48];
    fill(x, 48, 3);
    memcpy(x0, x, sizeof x);
    b->ops->rope(b, x, T, nh, hd, pos0, 500000.0f);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < hd / 2; i++) {
                double inv = 1.0 / pow(500000.0, 2.0 * i / hd), a = (pos0 + t) * inv;
                const float *v = x0 + (t * nh + h) * hd;
                double r0 = v[2 * i] * cos(a) - v[2 * i + 1] * sin(a);
                double r1 = v[2 * i + 1] * cos(a) + v[2 * i] * sin(a);
                CHECK_NEAR(x[(t * nh + h) * hd + 2 * i], r0, 1e-5);
                CHECK_NEAR(x[(t * nh + h) * hd + 2 * i + 1], r1, 1e-5);
            }
    b->ops->destroy(b);
}

TEST(cpu_attention_causal_gqa) {
    be *b = cpu();
    int nq = 4, nkv = 2, hd = 16, ctx = 12, pos0 = 3, T = 4;
    int kvdim = nkv * hd;
    err_t e = {0};
    be_kv *kv = b->ops->kv_create(b, 2, ctx, kvdim, &e);
    if (!CHECK(kv)) return;
    float k[12 * 32], v[12 * 32], q[4 * 64], out[4 * 64];
    fill(k, sizeof k / 4, 4);
    fill(v, sizeof v / 4, 5);
    fill(q, sizeof q / 4, 6);
    /* positions 0..pos0+T-1 of layer 1 */
    b->ops->kv_store(b, kv, 1, 0, pos0 + T, k, v);
    b->ops->attention(b, kv, 1, q, T, pos0, nq, nkv, hd, out);
    double ref[4 * 64];
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nq; h++) {
            int kh = h / (nq / nkv), n = pos0 + t + 1;
            double s[16], mx = -1e300, sum = 0;
            for (int p = 0; p < n; p++) {
                double d = 0;
                for (int i = 0; i < hd; i++) d += (double)q[(t * nq + h) * hd + i] * k[p * kvdim + kh * hd + i];
                s[p] = d / sqrt((double)hd);
                if (s[p] > mx) mx = s[p];
            }
            for (int p = 0; p < n; p++) sum += (s[p] = exp(s[p] - mx));
            for (int i = 0; i < hd; i++) {
                double o = 0;
                for (int p = 0; p < n; p++) o += s[p] / sum * v[p * kvdim + kh * hd + i];
                ref[(t * nq + h) * hd + i] = o;
            }
        }
    CHECK(rel_err(out, ref, (size_t)T * nq * hd) < 1e-5);
    b->ops->kv_free(b, kv);
    b->ops->destroy(b);
}

TEST(cpu_rmsnorm_swiglu_add) {
    be *b = cpu();
    int T = 2, H = 33;
    float x[66], w[33], y[66], g[66], u[66];
    fill(x, 66, 7);
    fill(w, 33, 8);
    fill(u, 66, 9);
    memcpy(g, x, sizeof x);
    b->ops->rmsnorm(b, x, w, 1e-5f, T, H, y);
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < H; i++) ss += (double)x[t * H + i] * x[t * H + i];
        double r = 1 / sqrt(ss / H + 1e-5);
        for (int i = 0; i < H; i++) CHECK_NEAR(y[t * H + i], x[t * H + i] * r * w[i], 1e-5);
    }
    b->ops->swiglu(b, g, u, 66, g);
    for (int i = 0; i < 66; i++) CHECK_NEAR(g[i], x[i] / (1 + exp(-x[i])) * u[i], 1e-5);
    float a[3] = {1, 2, 3}, c[3] = {0.5f, -1, 4};
    b->ops->add(b, a, c, 3);
    CHECK(a[0] == 1.5f && a[1] == 1 && a[2] == 7);
    b->ops->destroy(b);
}

TEST(cpu_moe_route_bias_selects_only) {
    be *b = cpu();
    int T = 50, E = 8, H = 16, k = 3;
    float *r = malloc(sizeof(float) * E * H), *x = malloc(sizeof(float) * T * H), bias[8], w[150];
    int32_t ids[150];
    fill(r, (size_t)E * H, 10);
    fill(x, (size_t)T * H, 11);
    fill(bias, 8, 12);
    for (int i = 0; i < 8; i++) bias[i] *= 0.3f;
    be_weight *R = f32_weight(b, r, E, H);
    b->ops->moe_route(b, R, bias, x, T, E, k, 1e-12f, ids, w);
    for (int t = 0; t < T; t++) {
        double p[8], mx = -1e300, sum = 0;
        for (int e = 0; e < E; e++) {
            double l = 0;
            for (int i = 0; i < H; i++) l += (double)x[t * H + i] * r[e * H + i];
            p[e] = l;
            if (l > mx) mx = l;
        }
        for (int e = 0; e < E; e++) sum += (p[e] = exp(p[e] - mx));
        for (int e = 0; e < E; e++) p[e] /= sum;
        /* brute force: the k experts with the largest p + bias */
        int sel[8] = {0};
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int e = 0; e < E; e++)
                if (!sel[e] && (best < 0 || p[e] + bias[e] > p[best] + bias[best])) best = e;
            sel[best] = 1;
        }
        double s = 0;
        for (int e = 0; e < E; e++) s += sel[e] ? p[e] : 0;
        int j = 0;
        for (int e = 0; e < E; e++)
            if (sel[e]) {
                CHECK_INT(ids[t * k + j], e); /* ascending ids */
                CHECK_NEAR(w[t * k + j], p[e] / s, 1e-5); /* unbiased, renormalised */
                j++;
            }
    }
    b->ops->weight_free(b, R);
    b->ops->destroy(b);
    free(r), free(x);
}

TEST(cpu_moe_experts_weighted_sum) {
    be *b = cpu();
    int T = 5, H = 8, I = 6, E = 4, k = 2;
    float *g = malloc(sizeof(float) * E * I * H), *u = malloc(sizeof(float) * E * I * H), *d = malloc(sizeof(float) * E * H * I);
    float x[40], out[40], w[10];
    int32_t ids[10] = {0, 3, 1, 2, 0, 1, 2, 3, 1, 3};
    fill(g, (size_t)E * I * H, 13);
    fill(u, (size_t)E * I * H, 14);
    fill(d, (size_t)E * H * I, 15);
    fill(x, 40, 16);
    fill(w, 10, 17);
    be_weight *G = f32_weight(b, g, E * I, H), *U = f32_weight(b, u, E * I, H), *D = f32_weight(b, d, E * H, I);
    b->ops->moe_experts(b, G, U, D, x, T, H, I, k, ids, w, out);
    double ref[40] = {0};
    for (int t = 0; t < T; t++)
        for (int j = 0; j < k; j++) {
            int e = ids[t * k + j];
            double h[6];
            for (int i = 0; i < I; i++) {
                double a = 0, c = 0;
                for (int q = 0; q < H; q++) {
                    a += (double)g[(e * I + i) * H + q] * x[t * H + q];
                    c += (double)u[(e * I + i) * H + q] * x[t * H + q];
                }
                h[i] = a / (1 + exp(-a)) * c;
            }
            for (int q = 0; q < H; q++) {
                double o = 0;
                for (int i = 0; i < I; i++) o += (double)d[(e * H + q) * I + i] * h[i];
                ref[t * H + q] += w[t * k + j] * o;
            }
        }
    CHECK(rel_err(out, ref, 40) < 1e-5);
    b->ops->weight_free(b, G), b->ops->weight_free(b, U), b->ops->weight_free(b, D);
    b->ops->destroy(b);
    free(g), free(u), free(d);
}
