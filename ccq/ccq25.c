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
        const float *a = luta[w >> 9], *c = lutb[w & 511];
        float *o = out + 7 * z;
        o[0] = a[0] * s, o[1] = a[1] * s, o[2] = a[2] * s;
        o[3] = c[0] * s, o[4] = c[1] * s, o[5] = c[2] * s, o[6] = c[3] * s;
    }
    out[63] = (float)((w9 >> 13) - 4) * s;
}

/* Decode and dot in registers: per word, three weights (and a zero) and four weights against inputs. */
static float dot1(const rowctx *rc, int64_t k0, const float *x) {
    const uint8_t *b = rc->q + (k0 / G) * GW * 2;
    v4f a0 = {0}, a1 = {0};
    for (int z = 0; z < 9; z++) {
        uint16_t w = ld_u16(b + 2 * z);
        a0 += ld4(luta[w >> 9]) * ld4(x + 7 * z); /* the fourth input meets the table's zero */
        a1 += ld4(lutb[w & 511]) * ld4(x + 7 * z + 3);
    }
    uint16_t w9 = ld_u16(b + 18);
    float s = (float)(w9 & 0x1FFF) * rc->scale;
    return s * (hsum4(a0 + a1) + (float)((w9 >> 13) - 4) * x[63]);
}

/* Exact codes for one group at scale s: Viterbi for each half of each word, weight 63 by itself. */
static float search(const void *ctx, const float *x, const float *h, const float *m, int n, float s,
                    uint8_t *codes, float *u) {
    (void)ctx, (void)n;
    float cost[64 * 8];
    for (int k = 0; k < 64; k++) {
        float a = m ? s * m[k] : s;
        for (int v = 0; v < 8; v++) {
            float d = x[k] - a * (float)(v - 4);
            cost[k * 8 + v] = h[k] * d * d;
        }
    }
    float tot = 0;
    for (int z = 0; z < 9; z++) {
        uint32_t ca, cb;
        tot += conv_search(3, 3, 2, cost + 7 * z * 8, &ca);
        tot += conv_search(3, 4, 2, cost + (7 * z + 3) * 8, &cb);
        uint16_t w = (uint16_t)((ca << 9) | cb);
        st_u16(codes + 2 * z, w);
        static const int sh[7] = {13, 11, 9, 6, 4, 2, 0};
        for (int i = 0; i < 7; i++) u[7 * z + i] = (float)((int)((w >> sh[i]) & 7) - 4);
    }
    int bv = 0;
    for (int v = 1; v < 8; v++)
        if (cost[63 * 8 + v] < cost[63 * 8 + bv]) bv = v;
    st_u16(codes + 18, (uint16_t)(bv << 13));
    u[63] = (float)(bv - 4);
    return tot + cost[63 * 8 + bv];
}

static const grp_coder coder = {
    .search = search, .code_bytes = GW * 2, .alpha = 0.8f, .lbits = 13, .ngrid = 8, .lo = 0.6f, .hi = 1.6f,
};

static size_t scratch(int64_t K) { return grp_row_scratch(&coder, K) + sizeof(uint16_t) * (size_t)(K / G); }

static void encode_row(const float *x, const float *h, const float *m, int64_t K, void *work, ccq_tensor *t,
                       int64_t r) {
    int64_t ng = K / G;
    uint8_t *q = part_w(t, 0) + r * ng * GW * 2;
    uint16_t *local = (uint16_t *)((uint8_t *)work + grp_row_scratch(&coder, K)), sup;
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
    .dot1 = dot1,
    .scratch = scratch,
    .encode_row = encode_row,
};
