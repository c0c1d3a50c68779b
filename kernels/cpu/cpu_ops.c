/* kernels/cpu/cpu_ops.c: the CPU backend's elementwise and attention operations (everything but the
 * weight products, which live in cpu_matmul.c). Plain fp32 C; attention's dot products and sums of
 * value rows go through base/vdot.h (the same bits on every CPU). The work
 * is split over the thread pool where it is large enough to pay for it. Never allocates per call
 * except attention's per-thread score rows. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/vdot.h"
#include "cpu_backend.h"

void cpu_rmsnorm(be *b, const float *x, const float *w, float eps, int T, int H, float *y) {
    (void)b;
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * H;
        float *yr = y + (size_t)t * H;
        double ss = 0;
        for (int i = 0; i < H; i++) ss += (double)xr[i] * xr[i];
        float r = 1.0f / sqrtf((float)(ss / H) + eps);
        for (int i = 0; i < H; i++) yr[i] = xr[i] * r * w[i];
    }
}

void cpu_rope(be *b, float *x, int T, int nheads, int hd, int pos0, float theta) {
    (void)b;
    /* inv_freq and the angles in fp32, exactly as the reference computes them (spec §2.5). */
    float inv[512];
    int half = hd / 2;
    for (int i = 0; i < half && i < 512; i++) inv[i] = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
    for (int t = 0; t < T; t++) {
        float p = (float)(pos0 + t);
        for (int i = 0; i < half; i++) {
            float a = p * inv[i], c = cosf(a), s = sinf(a);
            for (int h = 0; h < nheads; h++) {
                float *v = x + ((size_t)t * nheads + h) * hd + 2 * i;
                float x0 = v[0], x1 = v[1];
                v[0] = x0 * c - x1 * s;
                v[1] = x1 * c + x0 * s;
            }
        }
    }
}

void cpu_kv_store(be *b, be_kv *kv, int layer, int pos0, int T, const float *k, const float *v) {
    (void)b;
    size_t row = (size_t)kv->kvdim, off = ((size_t)layer * kv->ctx + (size_t)pos0) * row;
    memcpy(kv->k + off, k, (size_t)T * row * sizeof(float));
    memcpy(kv->v + off, v, (size_t)T * row * sizeof(float));
}

typedef struct {
    const be_kv *kv;
    int layer, T, pos0, nq, nkv, hd;
    const float *q;
    float *out;
    float **scratch; /* per thread [ctx] */
} att_job;

static void att_range(void *ctx, int64_t b0, int64_t b1, int tid) {
    att_job *j = ctx;
    const be_kv *kv = j->kv;
    int g = j->nq / j->nkv;
    size_t row = (size_t)kv->kvdim;
    const float *kb = kv->k + (size_t)j->layer * kv->ctx * row;
    const float *vb = kv->v + (size_t)j->layer * kv->ctx * row;
    float scale = 1.0f / sqrtf((float)j->hd);
    float *sc = j->scratch[tid];
    for (int64_t it = b0; it < b1; it++) {
        int t = (int)(it / j->nq), h = (int)(it % j->nq), kh = h / g;
        const float *qv = j->q + ((size_t)t * j->nq + h) * j->hd;
        int n = j->pos0 + t + 1; /* causal: positions 0 .. pos0+t */
        float mx = -INFINITY;
        for (int p = 0; p < n; p++) {
            const float *kv_ = kb + (size_t)p * row + (size_t)kh * j->hd;
            float s = vd_f32(kv_, qv, j->hd) * scale;
            sc[p] = s;
            if (s > mx) mx = s;
        }
        double sum = 0;
        for (int p = 0; p < n; p++) {
            sc[p] = expf(sc[p] - mx);
            sum += sc[p];
        }
        float inv = (float)(1.0 / sum);
        float *o = j->out + ((size_t)t * j->nq + h) * j->hd;
        memset(o, 0, (size_t)j->hd * sizeof *o);
        for (int p = 0; p < n; p++) vd_axpy(o, sc[p] * inv, vb + (size_t)p * row + (size_t)kh * j->hd, j->hd);
    }
}

void cpu_attention(be *b, const be_kv *kv, int layer, const float *q, int T, int pos0, int nq, int nkv, int hd,
                   float *out) {
    cpu_be *c = b->impl;
    int nt = pool_size(c->pool);
    float *scratch[256];
    for (int i = 0; i < nt && i < 256; i++) scratch[i] = c->att_scratch + (size_t)i * kv->ctx;
    att_job j = {kv, layer, T, pos0, nq, nkv, hd, q, out, scratch};
    pool_for(c->pool, (int64_t)T * nq, 1, att_range, &j);
}

void cpu_swiglu(be *b, const float *gate, const float *up, int64_t n, float *out) {
    (void)b;
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void cpu_add(be *b, float *y, const float *x, int64_t n) {
    (void)b;
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}
