/* base/vdot.c: row dot products with a fixed order of additions (base/vdot.h).
 *
 * One body per width (VD_BODY4, VD_BODY8), instantiated per weight type: W-lane vectors, 32 / W
 * accumulators, so that lane l of accumulator i always holds element offset W i + l of each 32-element
 * chunk, and the lanes laid out in order are the same 32 sums for both widths. The loads
 * are macros, not functions: a function passing 32-byte vectors outside an AVX2 function changes the
 * ABI (and GCC warns). */
#include <pthread.h>
#include <string.h>

#include "simd.h"
#include "vdot.h"

#define LANES 32

/* The fixed tree over the 32 lane sums. */
static float tree32(float *f) {
    for (int w = LANES / 2; w; w >>= 1)
        for (int i = 0; i < w; i++) f[i] += f[i + w];
    return f[0];
}

/* weight k of a row at any alignment */
static float ld_f32(const unsigned char *w, int64_t k) {
    float f;
    memcpy(&f, w + 4 * k, sizeof f);
    return f;
}
static float ld_bf16(const unsigned char *w, int64_t k) {
    uint16_t h;
    memcpy(&h, w + 2 * k, sizeof h);
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* LOAD(o): the W weights at offset o as a VF; ONE(k): weight k as a float, for the tail. The
 * accumulators are named, not an array: GCC kept an array in memory. */
#define VD_STEP(VF, W, LOAD, i, a)                                                                         \
    do {                                                                                                   \
        VF x_;                                                                                             \
        memcpy(&x_, x + k_ + (W) * (i), sizeof x_);                                                        \
        a += LOAD(k_ + (W) * (i)) * x_;                                                                    \
    } while (0)
#define VD_TAIL(ONE)                                                                                       \
    for (; k_ < K; k_++) f_[k_ % LANES] += ONE(k_) * x[k_];                                                \
    return tree32(f_);
#define VD_BODY4(LOAD, ONE)                                                                                \
    f4 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};                     \
    int64_t k_ = 0;                                                                                        \
    for (; k_ + LANES <= K; k_ += LANES) {                                                                 \
        VD_STEP(f4, 4, LOAD, 0, a0); VD_STEP(f4, 4, LOAD, 1, a1); VD_STEP(f4, 4, LOAD, 2, a2);             \
        VD_STEP(f4, 4, LOAD, 3, a3); VD_STEP(f4, 4, LOAD, 4, a4); VD_STEP(f4, 4, LOAD, 5, a5);             \
        VD_STEP(f4, 4, LOAD, 6, a6); VD_STEP(f4, 4, LOAD, 7, a7);                                          \
    }                                                                                                      \
    float f_[LANES];                                                                                       \
    const f4 all_[8] = {a0, a1, a2, a3, a4, a5, a6, a7};                                                   \
    memcpy(f_, all_, sizeof f_);                                                                           \
    VD_TAIL(ONE)
#define VD_BODY8(LOAD, ONE)                                                                                \
    f8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                                                             \
    int64_t k_ = 0;                                                                                        \
    for (; k_ + LANES <= K; k_ += LANES) {                                                                 \
        VD_STEP(f8, 8, LOAD, 0, a0); VD_STEP(f8, 8, LOAD, 1, a1);                                          \
        VD_STEP(f8, 8, LOAD, 2, a2); VD_STEP(f8, 8, LOAD, 3, a3);                                          \
    }                                                                                                      \
    float f_[LANES];                                                                                       \
    const f8 all_[4] = {a0, a1, a2, a3};                                                                   \
    memcpy(f_, all_, sizeof f_);                                                                           \
    VD_TAIL(ONE)

typedef float f4 __attribute__((vector_size(16)));
typedef int32_t i4 __attribute__((vector_size(16)));
typedef uint32_t u4v __attribute__((vector_size(16)));
typedef uint16_t h4 __attribute__((vector_size(8)));
typedef int8_t b4 __attribute__((vector_size(4)));
typedef float f8 __attribute__((vector_size(32)));

/* the generic loads (HV, BV: vectors of the stored type; IV, UV: int32 / uint32 vectors of as many lanes) */
#define LD_F32(VF, o) ({ VF v_; memcpy(&v_, w + 4 * (o), sizeof v_); v_; })
#define LD_BF16(VF, UV, HV, o) ({ HV h_; memcpy(&h_, w + 2 * (o), sizeof h_); (VF)(__builtin_convertvector(h_, UV) << 16); })
#define LD_I8(VF, IV, BV, o) ({ BV b_; memcpy(&b_, q + (o), sizeof b_); __builtin_convertvector(__builtin_convertvector(b_, IV), VF); })
/* W nibbles from W / 2 bytes (o even): the bytes as one little-endian word, shifted per lane */
#define LD_U4(VF, IV, UV, WT, SH, o)                                                                       \
    ({                                                                                                     \
        WT b_;                                                                                             \
        memcpy(&b_, q + (o) / 2, sizeof b_);                                                               \
        UV n_ = (((UV){0} + (uint32_t)b_) >> (UV)SH) & 15u;                                               \
        __builtin_convertvector((IV)n_ - 8, VF);                                                           \
    })
#define SH4 {0, 4, 8, 12}

#define ONE_F32(k) ld_f32(w, k)
#define ONE_BF16(k) ld_bf16(w, k)
#define ONE_I8(k) (float)q[k]
#define ONE_U4(k) (float)((int)((q[(k) / 2] >> ((k) & 1 ? 4 : 0)) & 15) - 8)

#define L4_F32(o) LD_F32(f4, o)
#define L4_BF16(o) LD_BF16(f4, u4v, h4, o)
#define L4_I8(o) LD_I8(f4, i4, b4, o)
#define L4_U4(o) LD_U4(f4, i4, u4v, uint16_t, SH4, o)
/* AVX2: the conversions by intrinsics (GCC 12 turned the generic int8 conversion into scalar code) */
#define L8_F32(o) LD_F32(f8, o)
#define L8_BF16(o) ((f8)_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(w + 2 * (o)))), 16)))
#define L8_I8(o) ((f8)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(q + (o))))))

/* the byte view of a f32 / bf16 row: every access goes through memcpy, at any alignment */
#define BYTES const unsigned char *w = wv;
static float f32_4(const void *wv, const float *x, int64_t K) { BYTES VD_BODY4(L4_F32, ONE_F32) }
static float bf16_4(const void *wv, const float *x, int64_t K) { BYTES VD_BODY4(L4_BF16, ONE_BF16) }
static float i8_4(const int8_t *q, const float *x, int64_t K) { VD_BODY4(L4_I8, ONE_I8) }
static float u4_4(const uint8_t *q, const float *x, int64_t K) { VD_BODY4(L4_U4, ONE_U4) }

/* Twelve independent chains of a = a * m + c per lane: more than the multiply and add latencies need to
 * keep both pipes busy (named, not an array: GCC kept an array in memory). a converges to 1, so no value
 * leaves the normal range. */
#define MADD_STEP(a) a = a * m + c
#define MADD_BODY(VF, W)                                                                                  \
    VF m, c, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11;                                            \
    for (int i = 0; i < W; i++) {                                                                         \
        m[i] = 0.999f, c[i] = 0.001f;                                                                     \
        a0[i] = 0, a1[i] = 1, a2[i] = 2, a3[i] = 3, a4[i] = 4, a5[i] = 5;                                 \
        a6[i] = 6, a7[i] = 7, a8[i] = 8, a9[i] = 9, a10[i] = 10, a11[i] = 11;                            \
    }                                                                                                      \
    for (int64_t it = 0; it < iters; it++) {                                                               \
        MADD_STEP(a0), MADD_STEP(a1), MADD_STEP(a2), MADD_STEP(a3), MADD_STEP(a4), MADD_STEP(a5);         \
        MADD_STEP(a6), MADD_STEP(a7), MADD_STEP(a8), MADD_STEP(a9), MADD_STEP(a10), MADD_STEP(a11);       \
    }                                                                                                      \
    const VF t = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11));          \
    float s = 0;                                                                                           \
    for (int i = 0; i < W; i++) s += t[i];                                                                 \
    *sink += s;                                                                                            \
    return (double)iters * 12 * W;
static double madd_4(int64_t iters, float *sink) { MADD_BODY(f4, 4) }

/* Elementwise, so the width cannot change a result: 4-wide generic vectors, AVX2 where it exists. */
static void axpy_4(float *y, float a, const float *x, int64_t n) {
    int64_t i = 0;
    const f4 av = {a, a, a, a};
    for (; i + 4 <= n; i += 4) {
        f4 xv, yv;
        memcpy(&xv, x + i, sizeof xv), memcpy(&yv, y + i, sizeof yv);
        yv += av * xv;
        memcpy(y + i, &yv, sizeof yv);
    }
    for (; i < n; i++) y[i] += a * x[i];
}
static const vd_impl narrow = {f32_4, bf16_4, i8_4, u4_4, axpy_4};

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2")))
AVX2 static float f32_8(const void *wv, const float *x, int64_t K) { BYTES VD_BODY8(L8_F32, ONE_F32) }
AVX2 static float bf16_8(const void *wv, const float *x, int64_t K) { BYTES VD_BODY8(L8_BF16, ONE_BF16) }
AVX2 static float i8_8(const int8_t *q, const float *x, int64_t K) { VD_BODY8(L8_I8, ONE_I8) }
/* 4-bit: a chunk's 16 bytes split into nibbles and interleaved back into element order with byte
 * operations, so that no per-lane shift is needed (variable shifts are slow on some x86 cores); the
 * accumulators get the same elements as in VD_BODY8. */
AVX2 static float u4_8(const uint8_t *q, const float *x, int64_t K) {
    f8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    const __m128i m15 = _mm_set1_epi8(15), c8 = _mm_set1_epi8(8);
    int64_t k_ = 0;
    for (; k_ + LANES <= K; k_ += LANES) {
        const __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(q + k_ / 2));
        const __m128i lo = _mm_and_si128(b, m15), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m15);
        const __m128i e0 = _mm_sub_epi8(_mm_unpacklo_epi8(lo, hi), c8), e1 = _mm_sub_epi8(_mm_unpackhi_epi8(lo, hi), c8);
        f8 x0, x1, x2, x3;
        memcpy(&x0, x + k_, 32), memcpy(&x1, x + k_ + 8, 32), memcpy(&x2, x + k_ + 16, 32), memcpy(&x3, x + k_ + 24, 32);
        a0 += (f8)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(e0)) * x0;
        a1 += (f8)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(e0, 8))) * x1;
        a2 += (f8)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(e1)) * x2;
        a3 += (f8)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(e1, 8))) * x3;
    }
    float f_[LANES];
    const f8 all_[4] = {a0, a1, a2, a3};
    memcpy(f_, all_, sizeof f_);
    VD_TAIL(ONE_U4)
}
AVX2 static void axpy_8(float *y, float a, const float *x, int64_t n) {
    int64_t i = 0;
    const __m256 av = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(av, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) y[i] += a * x[i];
}
AVX2 static double madd_8(int64_t iters, float *sink) { MADD_BODY(f8, 8) }
static const vd_impl wide = {f32_8, bf16_8, i8_8, u4_8, axpy_8};
const vd_impl *vd_wide(void) { return __builtin_cpu_supports("avx2") ? &wide : NULL; }
#else
const vd_impl *vd_wide(void) { return NULL; }
#endif

const vd_impl *vd_narrow(void) { return &narrow; }

static const vd_impl *chosen;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void pick(void) { chosen = simd_avx2() && vd_wide() ? vd_wide() : &narrow; }
/* The width the calls take, chosen once per process. */
static const vd_impl *impl(void) {
    pthread_once(&once, pick);
    return chosen;
}

double vd_madd_work(int64_t iters, float *sink) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (impl() == &wide) return madd_8(iters, sink);
#endif
    return madd_4(iters, sink);
}

void vd_axpy(float *y, float a, const float *x, int64_t n) { impl()->axpy(y, a, x, n); }
float vd_f32(const void *w, const float *x, int64_t K) { return impl()->f32(w, x, K); }
float vd_bf16(const void *w, const float *x, int64_t K) { return impl()->bf16(w, x, K); }
float vd_i8(const int8_t *q, const float *x, int64_t K) { return impl()->i8(q, x, K); }
float vd_u4(const uint8_t *q, const float *x, int64_t K) { return impl()->u4(q, x, K); }
