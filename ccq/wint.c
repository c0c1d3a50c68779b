/* ccq/wint.c: the per-row formats: bf16 passthrough, wint8 and wint4 (RTN symmetric, one f32 scale per
 * output channel).
 *
 * bf16:  weight BF16 [N, K] (round to nearest even, as PyTorch casts).
 * wint8: qweight I8 [N, K], scale F32 [N]; w = q * scale[n].
 * wint4: qweight U8 [N, K/2], weight k in byte k/2, low nibble for even k, high nibble for odd k;
 *        w = (nibble - 8) * scale[n]; scale F32 [N].
 * Encoding rounds to nearest; the scale is the best of a grid of clipping ratios of the row's absmax,
 * refined by least squares, all weighted by the importance. Must never change the layouts above. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "base/bf16.h"
#include "base/vdot.h"
#include "internal.h"

/* ---- bf16 ---- */

static void bf_layout(int64_t N, int64_t K, ccq_part *p) { part_set(&p[0], "weight", "BF16", 2, N, K); }

static int bf_validate(const ccq_tensor *t, err_t *e) {
    const uint8_t *d = part_r(t, 0);
    size_t n = (size_t)(t->rows * t->cols);
    for (size_t i = 0; i < n; i++)
        if ((ld_u16(d + 2 * i) & 0x7F80) == 0x7F80)
            return err_set(e, ERR_CORRUPT, "part weight: row %lld column %lld is not finite",
                           (long long)(i / (size_t)t->cols), (long long)(i % (size_t)t->cols));
    return 0;
}

static void bf_row_begin(rowctx *rc) { rc->q = part_r(rc->t, 0) + rc->r * rc->K * 2; }

static void bf_decode_c(const rowctx *rc, int64_t k0, int n, float *out) {
    for (int i = 0; i < n; i++) out[i] = bf16_to_f32(ld_u16(rc->q + 2 * (k0 + i)));
}

static float bf_dotrow(const rowctx *rc, const float *x) { return vd_bf16(rc->q, x, rc->K); }

static size_t no_scratch(int64_t K) { return (size_t)K * sizeof(float) * 2; }

static void bf_encode_row(const float *x, const float *h, const float *m, int64_t K, void *work, ccq_tensor *t,
                          int64_t r) {
    (void)h, (void)m, (void)work;
    uint8_t *d = part_w(t, 0) + r * K * 2;
    for (int64_t k = 0; k < K; k++) st_u16(d + 2 * k, f32_to_bf16(x[k]));
}


/* ---- RTN with one scale per row ---- */

/* Rounds every weight at scale s into q[k] in [qmin, qmax] and returns sum h (x - s m q)^2. */
static double rtn(const float *x, const float *h, const float *m, int64_t K, float s, int qmin, int qmax,
                  int8_t *q) {
    double err = 0;
    for (int64_t k = 0; k < K; k++) {
        float a = m ? s * m[k] : s;
        int v = 0;
        if (a > 0) {
            float f = rintf(x[k] / a);
            v = f < (float)qmin ? qmin : f > (float)qmax ? qmax : (int)f;
        }
        q[k] = (int8_t)v;
        double d = x[k] - a * (float)v;
        err += h[k] * d * d;
    }
    return err;
}

float rtn_scale(const float *x, const float *h, const float *m, int64_t K, int qmin, int qmax, int8_t *q,
                       int8_t *tq) {
    float amax = 0;
    for (int64_t k = 0; k < K; k++) {
        float a = fabsf(m ? x[k] / m[k] : x[k]);
        if (h[k] > 0 && a > amax) amax = a;
    }
    if (!(amax > 0)) {
        rtn(x, h, m, K, 0, qmin, qmax, q);
        return 0;
    }
    double best = INFINITY;
    float bs = 0;
    for (int i = 0; i <= 12; i++) {
        float s = amax * (1.0f - 0.04f * (float)i) / (float)qmax;
        double e = rtn(x, h, m, K, s, qmin, qmax, tq);
        if (e < best) best = e, bs = s, memcpy(q, tq, (size_t)K);
    }
    for (int it = 0; it < 3; it++) {
        double num = 0, den = 0;
        for (int64_t k = 0; k < K; k++) {
            double mu = (m ? m[k] : 1.0) * q[k];
            num += h[k] * mu * x[k];
            den += h[k] * mu * mu;
        }
        if (!(den > 0) || !(num > 0)) break;
        float s = (float)(num / den);
        double e = rtn(x, h, m, K, s, qmin, qmax, tq);
        if (!(e < best)) break;
        best = e, bs = s, memcpy(q, tq, (size_t)K);
    }
    return bs;
}

static size_t rtn_scratch(int64_t K) { return 2 * (size_t)K; }

static int w_validate(const ccq_tensor *t, err_t *e) { return check_scales(t, 1, 0, 0, SCALE_MAX, e); }

static void w_layout8(int64_t N, int64_t K, ccq_part *p) {
    part_set(&p[0], "qweight", "I8", 2, N, K);
    part_set(&p[1], "scale", "F32", 1, N, 0);
}

static void w_layout4(int64_t N, int64_t K, ccq_part *p) {
    part_set(&p[0], "qweight", "U8", 2, N, K / 2);
    part_set(&p[1], "scale", "F32", 1, N, 0);
}

static void w8_row_begin(rowctx *rc) {
    rc->q = part_r(rc->t, 0) + rc->r * rc->K;
    rc->scale = ld_f32(part_r(rc->t, 1) + 4 * rc->r);
}

static void w4_row_begin(rowctx *rc) {
    rc->q = part_r(rc->t, 0) + rc->r * (rc->K / 2);
    rc->scale = ld_f32(part_r(rc->t, 1) + 4 * rc->r);
}

static void w8_decode_c(const rowctx *rc, int64_t k0, int n, float *out) {
    const int8_t *q = (const int8_t *)rc->q + k0;
    const float s = rc->scale;
    for (int i = 0; i < n; i++) out[i] = (float)q[i] * s;
}

static void w4_decode_c(const rowctx *rc, int64_t k0, int n, float *out) {
    /* k0 is even (a multiple of 64) and so is n except at the row's end, where K is even too. */
    const uint8_t *q = rc->q + k0 / 2;
    const float s = rc->scale;
    for (int i = 0; i < n; i += 2) {
        uint8_t b = q[i / 2];
        out[i] = (float)((b & 15) - 8) * s;
        if (i + 1 < n) out[i + 1] = (float)((b >> 4) - 8) * s;
    }
}

/* The batched product decodes every group into floats (ccq_dot, T > 1: prefill): with AVX2, 8 at a
 * time. The same values as the plain loops (exact conversions and at most one rounded multiply each). */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx2"))) static void w8_decode_avx2(const rowctx *rc, int64_t k0, int n, float *out) {
    if (n != G) {
        w8_decode_c(rc, k0, n, out);
        return;
    }
    const int8_t *q = (const int8_t *)rc->q + k0;
    const __m256 s = _mm256_set1_ps(rc->scale);
    for (int i = 0; i < G; i += 8) {
        const __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(q + i));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), s));
    }
}
__attribute__((target("avx2"))) static void w4_decode_avx2(const rowctx *rc, int64_t k0, int n, float *out) {
    if (n != G) {
        w4_decode_c(rc, k0, n, out);
        return;
    }
    const uint8_t *q = rc->q + k0 / 2;
    const __m256 s = _mm256_set1_ps(rc->scale);
    const __m128i m15 = _mm_set1_epi8(15), c8 = _mm_set1_epi8(8);
    for (int i = 0; i < G; i += 32) {
        const __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(q + i / 2));
        const __m128i lo = _mm_and_si128(b, m15), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m15);
        const __m128i e0 = _mm_sub_epi8(_mm_unpacklo_epi8(lo, hi), c8), e1 = _mm_sub_epi8(_mm_unpackhi_epi8(lo, hi), c8);
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(e0)), s));
        _mm256_storeu_ps(out + i + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(e0, 8))), s));
        _mm256_storeu_ps(out + i + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(e1)), s));
        _mm256_storeu_ps(out + i + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(e1, 8))), s));
    }
}
__attribute__((target("avx2"))) static void bf_decode_avx2(const rowctx *rc, int64_t k0, int n, float *out) {
    if (n != G) {
        bf_decode_c(rc, k0, n, out);
        return;
    }
    const uint8_t *q = rc->q + 2 * k0;
    for (int i = 0; i < G; i += 8) {
        const __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(q + 2 * i));
        _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
    }
}
static void (*bf_dec)(const rowctx *, int64_t, int, float *) = bf_decode_c;
static void (*w8_dec)(const rowctx *, int64_t, int, float *) = w8_decode_c;
static void (*w4_dec)(const rowctx *, int64_t, int, float *) = w4_decode_c;
static pthread_once_t dec_once = PTHREAD_ONCE_INIT;
static void dec_pick(void) {
    if (simd_avx2()) bf_dec = bf_decode_avx2, w8_dec = w8_decode_avx2, w4_dec = w4_decode_avx2;
}
static void bf_decode(const rowctx *rc, int64_t k0, int n, float *out) {
    pthread_once(&dec_once, dec_pick);
    bf_dec(rc, k0, n, out);
}
static void w8_decode(const rowctx *rc, int64_t k0, int n, float *out) {
    pthread_once(&dec_once, dec_pick);
    w8_dec(rc, k0, n, out);
}
static void w4_decode(const rowctx *rc, int64_t k0, int n, float *out) {
    pthread_once(&dec_once, dec_pick);
    w4_dec(rc, k0, n, out);
}
#else
#define bf_decode bf_decode_c
#define w8_decode w8_decode_c
#define w4_decode w4_decode_c
#endif

static float w8_dotrow(const rowctx *rc, const float *x) { return vd_i8((const int8_t *)rc->q, x, rc->K) * rc->scale; }

static float w4_dotrow(const rowctx *rc, const float *x) { return vd_u4(rc->q, x, rc->K) * rc->scale; }

static void w8_encode_row(const float *x, const float *h, const float *m, int64_t K, void *work, ccq_tensor *t,
                          int64_t r) {
    int8_t *tq = (int8_t *)work;
    int8_t *q = (int8_t *)part_w(t, 0) + r * K;
    float s = rtn_scale(x, h, m, K, -127, 127, q, tq);
    st_f32(part_w(t, 1) + 4 * r, s);
}

static void w4_encode_row(const float *x, const float *h, const float *m, int64_t K, void *work, ccq_tensor *t,
                          int64_t r) {
    int8_t *q = (int8_t *)work, *tq = q + K;
    float s = rtn_scale(x, h, m, K, -8, 7, q, tq);
    uint8_t *d = part_w(t, 0) + r * (K / 2);
    for (int64_t k = 0; k < K; k += 2) d[k / 2] = (uint8_t)((q[k] + 8) | ((q[k + 1] + 8) << 4));
    st_f32(part_w(t, 1) + 4 * r, s);
}

const base_codec CODEC_BF16 = {
    .name = "bf16", .kmult = 1, .nparts = 1, .layout = bf_layout, .validate = bf_validate,
    .row_begin = bf_row_begin, .decode = bf_decode, .dotrow = bf_dotrow, .scratch = no_scratch,
    .encode_row = bf_encode_row,
};

const base_codec CODEC_WINT8 = {
    .name = "wint8", .kmult = 1, .nparts = 2, .layout = w_layout8, .validate = w_validate,
    .row_begin = w8_row_begin, .decode = w8_decode, .dotrow = w8_dotrow, .scratch = rtn_scratch,
    .encode_row = w8_encode_row,
};

const base_codec CODEC_WINT4 = {
    .name = "wint4", .kmult = 2, .nparts = 2, .layout = w_layout4, .validate = w_validate,
    .row_begin = w4_row_begin, .decode = w4_decode, .dotrow = w4_dotrow, .scratch = rtn_scratch,
    .encode_row = w4_encode_row,
};
