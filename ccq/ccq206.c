/* ccq/ccq206.c: ccq2.06, the "code cluster": (6,4,3) codes behind an 8-bit index (spec §2).
 *
 * Each row n has 256 reachable 15-bit codes on a line, code = floor(fmaf(q, code_scale, code_zp + 0.5f))
 * for the stored byte q, exactly FastDeploy's __float2int_rd(fmaf(...)); v_j = (code >> (9 - 3j)) & 63
 * and w_j = (v_j - 32) * local4 * super[n]. Byte k/4 of the row holds weights k..k+3; group g's local
 * scale is in byte g/2 of the local_scale row, the high nibble for even g, the low nibble for odd g.
 * Parts: qweight U8 [N, K/4], local_scale U8 [N, ceil(K/128)], code_scale F32 [N], code_zp F32 [N],
 * super_scale BF16 [N].
 *
 * Encoding (spec §5 "Code cluster"): per row, 96 candidate (code_scale, code_zp) lines are ranked on a
 * sample of 8 groups with scales guessed from the groups' rms, the best 8 again on the whole row, and
 * the best of those is encoded in full (group scales by grid and least squares, then the super and
 * local scales, each candidate checked with exact searches). For each
 * 4-weight word the byte q is the nearest of the 256 decoded 4-vectors in weight space, never a
 * rounding in code space.
 * Must never change the decode rounding: bit-exact agreement with FastDeploy is the point. */
#include <math.h>
#include <pthread.h>

#include "base/bf16.h"
#include "base/rng.h"
#include "internal.h"

#define GQ 16 /* index bytes per group */

/* The 15-bit code of index q, exactly as the GPU computes it. Out-of-range values (only possible in
 * unvalidated data) are mapped to 0 instead of overflowing the integer conversion. */
static inline uint32_t code_of(int q, float cs, float zp) {
    float f = floorf(fmaf((float)q, cs, zp + 0.5f));
    if (!(f >= -2147483648.0f && f < 2147483648.0f)) return 0;
    return (uint32_t)(int32_t)f;
}

/* The row's 256 decoded 4-vectors (v - 32), 4 floats per index. Built once per row per decode, so it
 * is vectorised where AVX2 and FMA exist (_mm256_fmadd_ps rounds once, exactly as fmaf does). */
static void build_lut_c(float cs, float zp, float *lut) {
    for (int q = 0; q < 256; q++) {
        uint32_t c = code_of(q, cs, zp);
        for (int j = 0; j < 4; j++) lut[4 * q + j] = (float)((int)((c >> (9 - 3 * j)) & 63) - 32);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx2,fma"))) static void build_lut_avx2(float cs, float zp, float *lut) {
    const __m256 vcs = _mm256_set1_ps(cs), vb = _mm256_set1_ps(zp + 0.5f), eight = _mm256_set1_ps(8.0f);
    const __m256 lo = _mm256_set1_ps(-2147483648.0f), hi = _mm256_set1_ps(2147483520.0f);
    const __m256i m63 = _mm256_set1_epi32(63), k32 = _mm256_set1_epi32(32);
    __m256 q = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    for (int i = 0; i < 256; i += 8, q = _mm256_add_ps(q, eight)) {
        __m256 f = _mm256_floor_ps(_mm256_fmadd_ps(q, vcs, vb));
        /* out of int range only in unvalidated data: map to 0 like code_of (NaN compares false) */
        __m256 ok = _mm256_and_ps(_mm256_cmp_ps(f, lo, _CMP_GE_OQ), _mm256_cmp_ps(f, hi, _CMP_LE_OQ));
        __m256i c = _mm256_and_si256(_mm256_cvttps_epi32(_mm256_and_ps(f, ok)), _mm256_castps_si256(ok));
        __m256 v[4];
        for (int j = 0; j < 4; j++)
            v[j] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(_mm256_srli_epi32(c, 9 - 3 * j), m63), k32));
        /* 4 x 8 transpose into eight 4-vectors, stored contiguously */
        __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
        __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        _mm256_storeu_ps(lut + 4 * i, _mm256_permute2f128_ps(u0, u1, 0x20));
        _mm256_storeu_ps(lut + 4 * i + 8, _mm256_permute2f128_ps(u2, u3, 0x20));
        _mm256_storeu_ps(lut + 4 * i + 16, _mm256_permute2f128_ps(u0, u1, 0x31));
        _mm256_storeu_ps(lut + 4 * i + 24, _mm256_permute2f128_ps(u2, u3, 0x31));
    }
}
static void (*build_lut_fn)(float, float, float *);
static pthread_once_t lut_once = PTHREAD_ONCE_INIT;
static void lut_pick(void) {
    build_lut_fn = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? build_lut_avx2 : build_lut_c;
}
static void build_lut(float cs, float zp, float *lut) {
    pthread_once(&lut_once, lut_pick);
    build_lut_fn(cs, zp, lut);
}
#else
static void build_lut(float cs, float zp, float *lut) { build_lut_c(cs, zp, lut); }
#endif

/* 1 when every code of the row is inside [0, 2^15): the line is monotone in q, so the ends decide. */
static int codes_in_range(float cs, float zp) {
    if (!isfinite(cs) || !isfinite(zp)) return 0;
    float a = floorf(fmaf(0.0f, cs, zp + 0.5f)), b = floorf(fmaf(255.0f, cs, zp + 0.5f));
    return a >= 0 && a < 32768 && b >= 0 && b < 32768;
}

static void layout(int64_t N, int64_t K, ccq_part *p) {
    part_set(&p[0], "qweight", "U8", 2, N, K / 4);
    part_set(&p[1], "local_scale", "U8", 2, N, (K + 127) / 128);
    part_set(&p[2], "code_scale", "F32", 1, N, 0);
    part_set(&p[3], "code_zp", "F32", 1, N, 0);
    part_set(&p[4], "super_scale", "BF16", 1, N, 0);
}

static int validate(const ccq_tensor *t, err_t *e) {
    if (check_scales(t, 4, 1, 0, SCALE_MAX, e) || check_local4_pad(t, 1, e)) return -1;
    const uint8_t *cs = part_r(t, 2), *zp = part_r(t, 3);
    for (int64_t r = 0; r < t->rows; r++) {
        float a = ld_f32(cs + 4 * r), b = ld_f32(zp + 4 * r);
        if (!codes_in_range(a, b))
            return err_set(e, ERR_CORRUPT,
                           "row %lld: code_scale %g and code_zp %g give codes outside 0..32767 (or are not finite)",
                           (long long)r, a, b);
    }
    return 0;
}

static void row_begin(rowctx *rc) {
    const ccq_tensor *t = rc->t;
    int64_t r = rc->r;
    rc->q = part_r(t, 0) + r * (rc->K / 4);
    rc->loc = part_r(t, 1) + r * ((rc->K + 127) / 128);
    rc->scale = bf16_to_f32(ld_u16(part_r(t, 4) + 2 * r));
    build_lut(ld_f32(part_r(t, 2) + 4 * r), ld_f32(part_r(t, 3) + 4 * r), rc->lut);
}

static void decode(const rowctx *rc, int64_t k0, int n, float *out) {
    (void)n;
    int64_t g = k0 / G;
    const uint8_t *b = rc->q + g * GQ;
    float s = (float)local4_get(rc->loc, g) * rc->scale;
    for (int j = 0; j < GQ; j++) {
        const float *l = rc->lut + 4 * b[j];
        out[4 * j] = l[0] * s, out[4 * j + 1] = l[1] * s, out[4 * j + 2] = l[2] * s, out[4 * j + 3] = l[3] * s;
    }
}

/* Decode and dot in registers: each index byte's 4-vector from the row's table against four inputs. */
static float dot1(const rowctx *rc, int64_t k0, const float *x) {
    int64_t g = k0 / G;
    const uint8_t *b = rc->q + g * GQ;
    v4f a0 = {0}, a1 = {0};
    for (int j = 0; j < GQ; j += 2) {
        a0 += ld4(rc->lut + 4 * b[j]) * ld4(x + 4 * j);
        a1 += ld4(rc->lut + 4 * b[j + 1]) * ld4(x + 4 * j + 4);
    }
    return (float)local4_get(rc->loc, g) * rc->scale * hsum4(a0 + a1);
}

/* ---- encoding ---- */

/* The row's codebook laid out for the nearest search: coordinate j of index q in u[j][q]. */
typedef struct {
    float u[4][256];
    float u2[4][256];
} book;

static void book_fill(book *bk, float cs, float zp) {
    float lut[1024];
    build_lut(cs, zp, lut);
    for (int q = 0; q < 256; q++)
        for (int j = 0; j < 4; j++) bk->u[j][q] = lut[4 * q + j], bk->u2[j][q] = lut[4 * q + j] * lut[4 * q + j];
}

/* The index q minimising sum_j b_j u_j(q)^2 + c_j u_j(q) (c_j = -2 a_j), ties to the smaller q;
 * *err gets that minimum. W candidates per step in vector registers: one body, compiled for 8-wide
 * AVX2 and for 4-wide SSE/NEON, because GCC splits 8-wide vectors very badly where they do not exist. */
#define NEAREST_BODY(VF, VI, W)                                                                          \
    VF z = {0};                                                                                          \
    VF b0 = z + b[0], b1 = z + b[1], b2 = z + b[2], b3 = z + b[3];                                       \
    VF c0 = z + c[0], c1 = z + c[1], c2 = z + c[2], c3 = z + c[3];                                       \
    VF best = z + INFINITY;                                                                              \
    VI bq = {0}, idx, step = bq + W;                                                                     \
    for (int i = 0; i < W; i++) idx[i] = i;                                                              \
    for (int q = 0; q < 256; q += W) {                                                                   \
        VF u0, u1, u2, u3, w0, w1, w2, w3;                                                               \
        memcpy(&u0, &bk->u[0][q], sizeof(VF)), memcpy(&u1, &bk->u[1][q], sizeof(VF));                    \
        memcpy(&u2, &bk->u[2][q], sizeof(VF)), memcpy(&u3, &bk->u[3][q], sizeof(VF));                    \
        memcpy(&w0, &bk->u2[0][q], sizeof(VF)), memcpy(&w1, &bk->u2[1][q], sizeof(VF));                  \
        memcpy(&w2, &bk->u2[2][q], sizeof(VF)), memcpy(&w3, &bk->u2[3][q], sizeof(VF));                  \
        /* a tree of additions: a chain of eight dependent adds would be the loop's latency */           \
        VF e = ((b0 * w0 + c0 * u0) + (b1 * w1 + c1 * u1)) + ((b2 * w2 + c2 * u2) + (b3 * w3 + c3 * u3)); \
        VI lt = e < best;                                                                                \
        best = (VF)(((VI)e & lt) | ((VI)best & ~lt));                                                    \
        bq = (idx & lt) | (bq & ~lt);                                                                    \
        idx += step;                                                                                     \
    }                                                                                                    \
    float be = best[0];                                                                                  \
    int q = bq[0];                                                                                       \
    for (int i = 1; i < W; i++)                                                                          \
        if (best[i] < be || (best[i] == be && bq[i] < q)) be = best[i], q = bq[i];                       \
    *err = be;                                                                                           \
    return q;

typedef float v4 __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
static int nearest4(const book *bk, const float *b, const float *c, float *err) { NEAREST_BODY(v4, v4i, 4) }

#if defined(__x86_64__) && defined(__GNUC__)
typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
__attribute__((target("avx2"))) static int nearest8(const book *bk, const float *b, const float *c, float *err) {
    NEAREST_BODY(v8, v8i, 8)
}
static int (*nearest)(const book *, const float *, const float *, float *);
static pthread_once_t pick_once = PTHREAD_ONCE_INIT;
static void pick(void) { nearest = __builtin_cpu_supports("avx2") ? nearest8 : nearest4; }
#else
static int (*const nearest)(const book *, const float *, const float *, float *) = nearest4;
static pthread_once_t pick_once = PTHREAD_ONCE_INIT;
static void pick(void) {}
#endif

static float search(const void *ctx, const float *x, const float *h, const float *m, int n, float s,
                    uint8_t *codes, float *u) {
    (void)n;
    const book *bk = (const book *)ctx;
    float tot = 0;
    for (int w = 0; w < GQ; w++) {
        float b[4], c[4], base = 0;
        for (int j = 0; j < 4; j++) {
            int k = 4 * w + j;
            float a = m ? s * m[k] : s;
            b[j] = h[k] * a * a;
            c[j] = -2.0f * h[k] * a * x[k];
            base += h[k] * x[k] * x[k];
        }
        float e;
        int q = nearest(bk, b, c, &e);
        codes[w] = (uint8_t)q;
        for (int j = 0; j < 4; j++) u[4 * w + j] = bk->u[j][q];
        float t = base + e;
        tot += t > 0 ? t : 0;
    }
    return tot;
}

#define NCAND 96  /* candidate lines ranked on a sample of the row */
#define NFULL 1   /* best of those encoded in full */
#define NMID 8    /* best of the sample ranked on the whole row */
#define NSAMPLE 8 /* groups of the sample */

typedef struct {
    book bk;
    float s[]; /* per group: guessed scale, then per-candidate work */
} work206;

static const grp_coder coder_proto = {
    .search = search, .code_bytes = GQ, .alpha = 0.062f, .lbits = 4, .ngrid = 5, .lo = 0.8f, .hi = 1.25f,
};

static size_t scratch(int64_t K) {
    int64_t ng = K / G;
    return sizeof(work206) + sizeof(float) * (size_t)ng + grp_row_scratch(&coder_proto, K) +
           2 * (size_t)ng * (GQ + sizeof(uint16_t)) + 64;
}

/* A candidate line. code_scale is drawn near the values where the 256 points of the line spread best
 * over the (6,4,3) code space (found by scanning code_scale on Gaussian words at the best scale,
 * docs/quant-notes.md: near 120.0 and 120.95 a random code_zp gives about 0.106 relative error, while
 * most of [100, 128] gives 0.11 to 0.16), jittered by up to +-0.08, where they stay as good; code_zp is
 * uniform over the values that keep every code inside [0, 2^15). */
static void candidate(rng_t *rng, float *cs, float *zp) {
    static const float centre[] = {120.0f, 120.95f, 120.0f, 120.95f, 117.8f, 121.76f, 123.1f};
    for (;;) {
        int i = (int)(rng_uniform(rng) * (sizeof centre / sizeof centre[0]));
        float a = centre[i] + (float)(0.16 * rng_uniform(rng) - 0.08);
        float room = 32767.0f - 255.0f * a;
        float b = (float)(room * rng_uniform(rng));
        if (codes_in_range(a, b)) {
            *cs = a, *zp = b;
            return;
        }
    }
}

static void encode_row(const float *x, const float *h, const float *m, int64_t K, void *workp, ccq_tensor *t,
                       int64_t r) {
    const int64_t ng = K / G;
    pthread_once(&pick_once, pick);
    work206 *wk = (work206 *)workp;
    float *sg = wk->s;
    uint8_t *gwork = (uint8_t *)(sg + ng);
    uint8_t *codes = gwork + grp_row_scratch(&coder_proto, K);
    uint8_t *bcodes = codes + ng * GQ;
    uint16_t *local = (uint16_t *)(bcodes + ng * GQ), *blocal = local + ng;
    grp_coder gc = coder_proto;
    gc.ctx = &wk->bk;

    for (int64_t g = 0; g < ng; g++) sg[g] = gc.alpha * grp_rms(x + g * G, h + g * G, m ? m + g * G : NULL, G);
    /* The sample: NSAMPLE groups spread over the row. */
    int64_t ns = ng < NSAMPLE ? ng : NSAMPLE;
    rng_t rng;
    rng_seed(&rng, 0x2060000ull + (uint64_t)r);
    float ccs[NCAND], czp[NCAND], cerr[NCAND];
    uint8_t tc[GQ];
    float tu[G];
    for (int c = 0; c < NCAND; c++) {
        candidate(&rng, &ccs[c], &czp[c]);
        book_fill(&wk->bk, ccs[c], czp[c]);
        float e = 0;
        for (int64_t i = 0; i < ns; i++) {
            int64_t g = i * ng / ns;
            e += search(&wk->bk, x + g * G, h + g * G, m ? m + g * G : NULL, G, sg[g], tc, tu);
        }
        cerr[c] = e;
    }
    /* Stage 2: the best few of the sample, on the whole row at the guessed scales. */
    int nmid = NMID < NCAND ? NMID : NCAND;
    int mid[NMID];
    float merr[NMID];
    for (int i = 0; i < nmid; i++) {
        int c = -1;
        for (int j = 0; j < NCAND; j++)
            if (cerr[j] == cerr[j] && (c < 0 || cerr[j] < cerr[c])) c = j;
        cerr[c] = NAN; /* taken */
        mid[i] = c;
        book_fill(&wk->bk, ccs[c], czp[c]);
        float e = 0;
        for (int64_t g = 0; g < ng; g++) e += search(&wk->bk, x + g * G, h + g * G, m ? m + g * G : NULL, G, sg[g], tc, tu);
        merr[i] = e;
    }
    /* Stage 3: the best NFULL encoded in full (scales searched, super and local scales chosen). */
    double best = INFINITY;
    float bcs = 128.0f, bzp = 0;
    uint16_t bsup = 0;
    for (int f = 0; f < NFULL && f < nmid; f++) {
        int i = -1;
        for (int j = 0; j < nmid; j++)
            if (merr[j] == merr[j] && (i < 0 || merr[j] < merr[i])) i = j;
        merr[i] = NAN;
        int c = mid[i];
        book_fill(&wk->bk, ccs[c], czp[c]);
        uint16_t sup;
        double e = grp_encode_row(&gc, x, h, m, K, gwork, codes, local, &sup);
        if (e < best) {
            best = e, bcs = ccs[c], bzp = czp[c], bsup = sup;
            memcpy(bcodes, codes, (size_t)(ng * GQ));
            memcpy(blocal, local, sizeof(uint16_t) * (size_t)ng);
        }
    }
    memcpy(part_w(t, 0) + r * (K / 4), bcodes, (size_t)(ng * GQ));
    uint8_t *lrow = part_w(t, 1) + r * ((K + 127) / 128);
    memset(lrow, 0, (size_t)((K + 127) / 128));
    for (int64_t g = 0; g < ng; g++) local4_set(lrow, g, blocal[g]);
    st_f32(part_w(t, 2) + 4 * r, bcs);
    st_f32(part_w(t, 3) + 4 * r, bzp);
    st_u16(part_w(t, 4) + 2 * r, bsup);
}

const base_codec CODEC_CCQ206 = {
    .name = "ccq2.06",
    .kmult = G,
    .coarse = 1,
    .nparts = 5,
    .layout = layout,
    .validate = validate,
    .row_begin = row_begin,
    .decode = decode,
    .dot1 = dot1,
    .scratch = scratch,
    .encode_row = encode_row,
};
