/* ccq/ccq25.c: ccq2.5, the "hybrid" code: a (3,3,2) code in bits 15..9 and a (3,4,2) code in bits 8..0 of
 * one uint16, 7 weights per word (spec §2).
 *
 * Per 64-group 10 little-endian words: weight 7z+i in word z at shift {13,11,9,6,4,2,0}[i];
 * word 9 = (v63 << 13) | local13. w = (v - 4) * local13 * super[n], super bf16 per row.
 * Parts: qweight U16 [N, K/64*10], super_scale BF16 [N].
 * Must never change that layout: the CUDA kernels and stored model files read exactly this. */
#include <math.h>
#include <pthread.h>

#include "base/bf16.h"
#include "internal.h"

#define GW 10 /* words per group */

static float luta[128][4]; /* bits 15..9 -> weights 0..2 of the word, minus 4 */
static float lutb[512][4]; /* bits 8..0 -> weights 3..6 */
static pthread_once_t lut_once = PTHREAD_ONCE_INIT;
static void lut_init(void) {
    for (int c = 0; c < 128; c++)
        for (int i = 0; i < 3; i++) luta[c][i] = (float)(((c >> (4 - 2 * i)) & 7) - 4);
    for (int c = 0; c < 512; c++)
        for (int i = 0; i < 4; i++) lutb[c][i] = (float)(((c >> (6 - 2 * i)) & 7) - 4);
}

static void layout(int64_t N, int64_t K, ccq_part *p) {
    part_set(&p[0], "qweight", "U16", 2, N, K / G * GW);
    part_set(&p[1], "super_scale", "BF16", 1, N, 0);
}

static int validate(const ccq_tensor *t, err_t *e) { return check_scales(t, 1, 1, 0, SCALE_MAX, e); }

static void row_begin(rowctx *rc) {
    pthread_once(&lut_once, lut_init);
    const ccq_tensor *t = rc->t;
    rc->q = part_r(t, 0) + rc->r * (rc->K / G * GW * 2);
    rc->scale = bf16_to_f32(ld_u16(part_r(t, 1) + 2 * rc->r));
}

static void decode(const rowctx *rc, int64_t k0, int n, float *out) {
    (void)n;
    const uint8_t *b = rc->q + (k0 / G) * GW * 2;
    uint16_t w9 = ld_u16(b + 18);
    float s = (float)(w9 & 0x1FFF) * rc->scale;
    for (int z = 0; z < 9; z++) {
        uint16_t w = ld_u16(b + 2 * z);
        /* weights 0..2 in four lanes (the fourth, 0, is overwritten by weight 3), then weights 3..6 */
        st4(out + 7 * z, ld4(luta[w >> 9]) * s);
        st4(out + 7 * z + 3, ld4(lutb[w & 511]) * s);
    }
    out[63] = (float)((w9 >> 13) - 4) * s;
}

/* Decode and dot in registers: per word, three weights (and a zero) and four weights against inputs;
 * even and odd words in their own accumulators; weight 63 in lane 0. */
static inline v4f group_vec(const rowctx *rc, int64_t k0, const float *x, float *scale) {
    const uint8_t *b = rc->q + (k0 / G) * GW * 2;
    v4f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    for (int z = 0; z < 8; z += 2) {
        uint16_t w = ld_u16(b + 2 * z), v = ld_u16(b + 2 * z + 2);
        a0 += ld4(luta[w >> 9]) * ld4(x + 7 * z); /* the fourth input meets the table's zero */
        a1 += ld4(lutb[w & 511]) * ld4(x + 7 * z + 3);
        a2 += ld4(luta[v >> 9]) * ld4(x + 7 * z + 7);
        a3 += ld4(lutb[v & 511]) * ld4(x + 7 * z + 10);
    }
    uint16_t w = ld_u16(b + 16);
    a0 += ld4(luta[w >> 9]) * ld4(x + 56);
    a1 += ld4(lutb[w & 511]) * ld4(x + 59);
    uint16_t w9 = ld_u16(b + 18);
    const v4f w63 = {(float)((w9 >> 13) - 4) * x[63], 0, 0, 0};
    *scale = (float)(w9 & 0x1FFF) * rc->scale;
    return ((a0 + a1) + (a2 + a3)) + w63;
}
DOTROW_BY_GROUPS(dotrow, group_vec)

/* Exact codes for one group at scale s: Viterbi for each half of each word, weight 63 by itself. The
 * 9 words are independent searches, so they run side by side in vector lanes (CONV_SEARCH_LANES: the
 * same additions and comparisons as conv_search, so the same codes and sums bit for bit); the costs
 * are computed per lane by the formula the scalar search used, h (x - a (v - 4))^2. */
#define NZ 16 /* lanes: the 9 words, padded to a multiple of 8 (padding lanes cost 0, unused) */
#define CVA_(i, v) cv[i][v]
#define CVB_(i, v) cv[3 + (i)][v]
#define SEARCH_BODY(VF, VI, W)                                                                                 \
    float X[7][NZ] = {{0}}, H[7][NZ] = {{0}}, A[7][NZ] = {{0}}, fa[NZ], fb[NZ];                                \
    int32_t ca[NZ], cb[NZ];                                                                                    \
    LANE_INPUTS(X, H, A, 7)                                                                                    \
    for (int b = 0; b < NZ; b += (W)) {                                                                        \
        VF cv[7][8], f;                                                                                        \
        VI c;                                                                                                  \
        LANE_COSTS(VF, cv, X, H, A, 7, 8, b)                                                                   \
        CONV_SEARCH_LANES(VF, VI, 3, 3, 2, CVA_, f, c);                                                        \
        memcpy(fa + b, &f, sizeof f), memcpy(ca + b, &c, sizeof c);                                            \
        CONV_SEARCH_LANES(VF, VI, 3, 4, 2, CVB_, f, c);                                                        \
        memcpy(fb + b, &f, sizeof f), memcpy(cb + b, &c, sizeof c);                                            \
    }                                                                                                          \
    LANE_ZEROUPPER(W);                                                                                         \
    return finish(x, h, m, s, fa, fb, ca, cb, codes, u);

/* Sums the words' minima in word order, each word's (3,3,2) half then its (3,4,2) half (as the scalar
 * search did), writes the codes and values, and adds weight 63 with its local scale bits left 0. */
static float finish(const float *x, const float *h, const float *m, float s, const float *fa, const float *fb,
                    const int32_t *ca, const int32_t *cb, uint8_t *codes, float *u) {
    static const int sh[7] = {13, 11, 9, 6, 4, 2, 0};
    float tot = 0;
    for (int z = 0; z < 9; z++) {
        tot += fa[z];
        tot += fb[z];
        uint16_t w = (uint16_t)(((uint32_t)ca[z] << 9) | (uint32_t)cb[z]);
        st_u16(codes + 2 * z, w);
        for (int i = 0; i < 7; i++) u[7 * z + i] = (float)((int)((w >> sh[i]) & 7) - 4);
    }
    float a = m ? s * m[63] : s, c63[8];
    for (int v = 0; v < 8; v++) {
        float d = x[63] - a * (float)(v - 4);
        c63[v] = h[63] * d * d;
    }
    int bv = 0;
    for (int v = 1; v < 8; v++)
        if (c63[v] < c63[bv]) bv = v;
    st_u16(codes + 18, (uint16_t)(bv << 13));
    u[63] = (float)(bv - 4);
    return tot + c63[bv];
}

LANE_SEARCH_DISPATCH(SEARCH_BODY)

static const grp_coder coder = {
    .search = search, .code_bytes = GW * 2, .alpha = 0.8f, .lbits = 13, .ngrid = 8, .lo = 0.6f, .hi = 1.6f,
};

static size_t scratch(int64_t K) { return grp_row_scratch(&coder, K) + sizeof(uint16_t) * (size_t)(K / G); }

static void encode_row(const float *x, const float *h, const float *m, int64_t K, void *work, ccq_tensor *t,
                       int64_t r) {
    int64_t ng = K / G;
    uint8_t *q = part_w(t, 0) + r * ng * GW * 2;
    uint16_t *local = (uint16_t *)((uint8_t *)work + grp_row_scratch(&coder, K)), sup;
    lane_search_pick();
    grp_encode_row(&coder, x, h, m, K, work, q, local, &sup);
    for (int64_t g = 0; g < ng; g++) {
        uint8_t *w9 = q + g * GW * 2 + 18;
        st_u16(w9, (uint16_t)((ld_u16(w9) & 0xE000) | local[g]));
    }
    st_u16(part_w(t, 1) + 2 * r, sup);
}

const base_codec CODEC_CCQ25 = {
    .name = "ccq2.5",
    .kmult = G,
    .coarse = 1,
    .nparts = 2,
    .layout = layout,
    .validate = validate,
    .row_begin = row_begin,
    .decode = decode,
    .dotrow = dotrow,
    .scratch = scratch,
    .encode_row = encode_row,
};
