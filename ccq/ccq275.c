/* ccq/ccq275.c: ccq2.75, the (4,3,2) code: three 4-bit windows per byte at shifts 4, 2, 0 (spec §2).
 *
 * Per 64-group 22 bytes: bytes 0..20 hold weights 0..62 (weight k in byte k/3 at shift {4,2,0}[k%3]),
 * byte 21 = (v63 << 4) | local4. w = (v - 8) * local4 * super[n], super bf16 per row.
 * Parts: qweight U8 [N, K/64*22], super_scale BF16 [N].
 * Must never change that layout: the CUDA kernels and stored model files read exactly this. */
#include <math.h>
#include <pthread.h>

#include "base/bf16.h"
#include "internal.h"

#define GB 22 /* bytes per group */

static float lut[256][4]; /* byte -> its three window values minus 8 */
static pthread_once_t lut_once = PTHREAD_ONCE_INIT;
static void lut_init(void) {
    for (int c = 0; c < 256; c++)
        for (int i = 0; i < 3; i++) lut[c][i] = (float)(((c >> (4 - 2 * i)) & 15) - 8);
}

static void layout(int64_t N, int64_t K, ccq_part *p) {
    part_set(&p[0], "qweight", "U8", 2, N, K / G * GB);
    part_set(&p[1], "super_scale", "BF16", 1, N, 0);
}

static int validate(const ccq_tensor *t, err_t *e) { return check_scales(t, 1, 1, 0, SCALE_MAX, e); }

static void row_begin(rowctx *rc) {
    pthread_once(&lut_once, lut_init);
    const ccq_tensor *t = rc->t;
    rc->q = part_r(t, 0) + rc->r * (rc->K / G * GB);
    rc->scale = bf16_to_f32(ld_u16(part_r(t, 1) + 2 * rc->r));
}

static void decode(const rowctx *rc, int64_t k0, int n, float *out) {
    (void)n;
    const uint8_t *b = rc->q + (k0 / G) * GB;
    float s = (float)(b[21] & 15) * rc->scale;
    /* four lanes per byte (the table's fourth entry is 0): each store's last lane is overwritten by the
     * next byte's, the last one by weight 63 */
    for (int j = 0; j < 21; j++) st4(out + 3 * j, ld4(lut[b[j]]) * s);
    out[63] = (float)((b[21] >> 4) - 8) * s;
}

/* Decode and dot in registers: each byte's three weights (and a zero) against four inputs, four
 * accumulators; weight 63 in lane 0. */
static inline v4f group_vec(const rowctx *rc, int64_t k0, const float *x, float *scale) {
    const uint8_t *b = rc->q + (k0 / G) * GB;
    v4f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    for (int j = 0; j < 20; j += 4) {
        a0 += ld4(lut[b[j]]) * ld4(x + 3 * j);
        a1 += ld4(lut[b[j + 1]]) * ld4(x + 3 * j + 3);
        a2 += ld4(lut[b[j + 2]]) * ld4(x + 3 * j + 6);
        a3 += ld4(lut[b[j + 3]]) * ld4(x + 3 * j + 9);
    }
    a0 += ld4(lut[b[20]]) * ld4(x + 60); /* x[63] meets the table's zero */
    const v4f w63 = {(float)((b[21] >> 4) - 8) * x[63], 0, 0, 0};
    *scale = (float)(b[21] & 15) * rc->scale;
    return ((a0 + a1) + (a2 + a3)) + w63;
}
DOTROW_BY_GROUPS(dotrow, group_vec)

/* Exact codes for one group at scale s: Viterbi per byte, the free weight 63 by itself. The 21 bytes
 * are independent searches, so they run side by side in vector lanes (CONV_SEARCH_LANES: the same
 * additions and comparisons as conv_search, so the same codes and sums bit for bit); the costs are
 * computed per lane by the formula the scalar search used, h (x - a (v - 8))^2. */
#define NB 24 /* lanes: the 21 code bytes, padded to a multiple of 8 (padding lanes cost 0, unused) */
#define CV_(i, v) cv[i][v]
#define SEARCH_BODY(VF, VI, W)                                                                                    \
    float X[3][NB] = {{0}}, H[3][NB] = {{0}}, A[3][NB] = {{0}}, fb[NB];                                           \
    int32_t cw[NB];                                                                                               \
    LANE_INPUTS(X, H, A, 3)                                                                                       \
    for (int b = 0; b < NB; b += (W)) {                                                                           \
        VF cv[3][16], f;                                                                                          \
        VI c;                                                                                                     \
        LANE_COSTS(VF, cv, X, H, A, 3, 16, b)                                                                     \
        CONV_SEARCH_LANES(VF, VI, 4, 3, 2, CV_, f, c);                                                            \
        memcpy(fb + b, &f, sizeof f), memcpy(cw + b, &c, sizeof c);                                               \
    }                                                                                                             \
    LANE_ZEROUPPER(W);                                                                                            \
    return finish(x, h, m, s, fb, cw, codes, u);

/* Sums the bytes' minima in byte order (as the scalar search did), writes the codes and values, and
 * adds weight 63 with its local-scale neighbour left 0. */
static float finish(const float *x, const float *h, const float *m, float s, const float *fb, const int32_t *cw,
                    uint8_t *codes, float *u) {
    float tot = 0;
    for (int j = 0; j < 21; j++) {
        uint32_t c = (uint32_t)cw[j];
        tot += fb[j];
        codes[j] = (uint8_t)c;
        u[3 * j] = (float)((int)(c >> 4) - 8);
        u[3 * j + 1] = (float)((int)((c >> 2) & 15) - 8);
        u[3 * j + 2] = (float)((int)(c & 15) - 8);
    }
    float a = m ? s * m[63] : s, c63[16];
    for (int v = 0; v < 16; v++) {
        float d = x[63] - a * (float)(v - 8);
        c63[v] = h[63] * d * d;
    }
    int bv = 0;
    for (int v = 1; v < 16; v++)
        if (c63[v] < c63[bv]) bv = v;
    codes[21] = (uint8_t)(bv << 4);
    u[63] = (float)(bv - 8);
    return tot + c63[bv];
}

LANE_SEARCH_DISPATCH(SEARCH_BODY)

static const grp_coder coder = {
    .search = search, .code_bytes = GB, .alpha = 0.5f, .lbits = 4, .ngrid = 8, .lo = 0.4f, .hi = 1.3f,
};

static size_t scratch(int64_t K) { return grp_row_scratch(&coder, K) + sizeof(uint16_t) * (size_t)(K / G); }

static void encode_row(const float *x, const float *h, const float *m, int64_t K, void *work, ccq_tensor *t,
                       int64_t r) {
    int64_t ng = K / G;
    uint8_t *q = part_w(t, 0) + r * ng * GB;
    uint16_t *local = (uint16_t *)((uint8_t *)work + grp_row_scratch(&coder, K)), sup;
    lane_search_pick();
    grp_encode_row(&coder, x, h, m, K, work, q, local, &sup);
    for (int64_t g = 0; g < ng; g++) q[g * GB + 21] = (uint8_t)((q[g * GB + 21] & 0xF0) | local[g]);
    st_u16(part_w(t, 1) + 2 * r, sup);
}

const base_codec CODEC_CCQ275 = {
    .name = "ccq2.75",
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
