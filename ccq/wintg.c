/* ccq/wintg.c: the group-wise scalar formats wint4g64 and wint2g64: one 4-bit local scale per 64-group
 * under a bf16 super scale per row, exactly the scale structure of ccq2.06, so wint2g64 is the plain
 * 2-bit baseline that ccq2.06's code cluster has to beat at the same side cost.
 *
 * Levels are symmetric (mid-rise), w = (q - (2^b - 1)/2) * local4 * super[n]: for 2 bits
 * {-1.5, -0.5, 0.5, 1.5}, for 4 bits -7.5 .. 7.5. Exact in float (at most 17 significant bits).
 * wint4g64: qweight U8 [N, K/2], weight k in byte k/2, low nibble for even k.
 * wint2g64: qweight U8 [N, K/4], weight k in byte k/4 at bits 2*(k%4) (the lowest bits first).
 * Both:     local_scale U8 [N, ceil(K/128)] (nibbles as ccq2.06), super_scale BF16 [N].
 * Must never change those layouts once model files hold them. */
#include <math.h>
#include <pthread.h>

#include "base/bf16.h"
#include "internal.h"

typedef struct {
    int bits;
} gspec;

static const gspec G4 = {4}, G2 = {2};

static float lut4[256][2], lut2[256][4];
static pthread_once_t lut_once = PTHREAD_ONCE_INIT;
static void lut_init(void) {
    for (int c = 0; c < 256; c++) {
        lut4[c][0] = (float)(c & 15) - 7.5f, lut4[c][1] = (float)(c >> 4) - 7.5f;
        for (int j = 0; j < 4; j++) lut2[c][j] = (float)((c >> (2 * j)) & 3) - 1.5f;
    }
}

static void layout(int bits, int64_t N, int64_t K, ccq_part *p) {
    part_set(&p[0], "qweight", "U8", 2, N, K * bits / 8);
    part_set(&p[1], "local_scale", "U8", 2, N, (K + 127) / 128);
    part_set(&p[2], "super_scale", "BF16", 1, N, 0);
}
static void layout4(int64_t N, int64_t K, ccq_part *p) { layout(4, N, K, p); }
static void layout2(int64_t N, int64_t K, ccq_part *p) { layout(2, N, K, p); }

static int validate(const ccq_tensor *t, err_t *e) {
    return check_scales(t, 2, 1, 0, SCALE_MAX, e) || check_local4_pad(t, 1, e) ? -1 : 0;
}

static void row_begin(int bits, rowctx *rc) {
    pthread_once(&lut_once, lut_init);
    const ccq_tensor *t = rc->t;
    rc->q = part_r(t, 0) + rc->r * (rc->K * bits / 8);
    rc->loc = part_r(t, 1) + rc->r * ((rc->K + 127) / 128);
    rc->scale = bf16_to_f32(ld_u16(part_r(t, 2) + 2 * rc->r));
}
static void row_begin4(rowctx *rc) { row_begin(4, rc); }
static void row_begin2(rowctx *rc) { row_begin(2, rc); }

static void decode4(const rowctx *rc, int64_t k0, int n, float *out) {
    (void)n;
    const uint8_t *b = rc->q + k0 / 2;
    float s = (float)local4_get(rc->loc, k0 / G) * rc->scale;
    for (int j = 0; j < 32; j++) out[2 * j] = lut4[b[j]][0] * s, out[2 * j + 1] = lut4[b[j]][1] * s;
}

static void decode2(const rowctx *rc, int64_t k0, int n, float *out) {
    (void)n;
    const uint8_t *b = rc->q + k0 / 4;
    float s = (float)local4_get(rc->loc, k0 / G) * rc->scale;
    for (int j = 0; j < 16; j++) {
        const float *l = lut2[b[j]];
        out[4 * j] = l[0] * s, out[4 * j + 1] = l[1] * s, out[4 * j + 2] = l[2] * s, out[4 * j + 3] = l[3] * s;
    }
}

/* Nearest level for every weight (exact: the levels are scalar), packed as the format stores them. */
static float search(const void *ctx, const float *x, const float *h, const float *m, int n, float s,
                    uint8_t *codes, float *u) {
    const gspec *sp = (const gspec *)ctx;
    const int qmax = (1 << sp->bits) - 1;
    const float off = (float)qmax * 0.5f;
    memset(codes, 0, (size_t)(n * sp->bits / 8));
    float tot = 0;
    for (int k = 0; k < n; k++) {
        float a = m ? s * m[k] : s;
        int q = 0;
        if (a > 0) {
            float f = floorf(x[k] / a + off + 0.5f);
            q = f < 0 ? 0 : f > (float)qmax ? qmax : (int)f;
        }
        u[k] = (float)q - off;
        float d = x[k] - a * u[k];
        tot += h[k] * d * d;
        codes[k * sp->bits / 8] |= (uint8_t)(q << ((k * sp->bits) % 8));
    }
    return tot;
}

static const grp_coder coder4 = {
    .search = search, .ctx = &G4, .code_bytes = 32, .alpha = 0.3f, .lbits = 4, .ngrid = 8, .lo = 0.6f,
    .hi = 1.6f,
};
static const grp_coder coder2 = {
    .search = search, .ctx = &G2, .code_bytes = 16, .alpha = 1.0f, .lbits = 4, .ngrid = 8, .lo = 0.6f,
    .hi = 1.6f,
};

static size_t scratch4(int64_t K) { return grp_row_scratch(&coder4, K) + sizeof(uint16_t) * (size_t)(K / G); }
static size_t scratch2(int64_t K) { return grp_row_scratch(&coder2, K) + sizeof(uint16_t) * (size_t)(K / G); }

static void encode_row(const grp_coder *gc, const float *x, const float *h, const float *m, int64_t K, void *work,
                       ccq_tensor *t, int64_t r) {
    int64_t ng = K / G;
    int bits = ((const gspec *)gc->ctx)->bits;
    uint8_t *q = part_w(t, 0) + r * (K * bits / 8);
    uint16_t *local = (uint16_t *)((uint8_t *)work + grp_row_scratch(gc, K)), sup;
    grp_encode_row(gc, x, h, m, K, work, q, local, &sup);
    uint8_t *lrow = part_w(t, 1) + r * ((K + 127) / 128);
    memset(lrow, 0, (size_t)((K + 127) / 128));
    for (int64_t g = 0; g < ng; g++) local4_set(lrow, g, local[g]);
    st_u16(part_w(t, 2) + 2 * r, sup);
}
static void encode4(const float *x, const float *h, const float *m, int64_t K, void *w, ccq_tensor *t, int64_t r) {
    encode_row(&coder4, x, h, m, K, w, t, r);
}
static void encode2(const float *x, const float *h, const float *m, int64_t K, void *w, ccq_tensor *t, int64_t r) {
    encode_row(&coder2, x, h, m, K, w, t, r);
}

const base_codec CODEC_WINT4G64 = {
    .name = "wint4g64", .kmult = G, .nparts = 3, .layout = layout4, .validate = validate,
    .row_begin = row_begin4, .decode = decode4, .scratch = scratch4, .encode_row = encode4,
};

const base_codec CODEC_WINT2G64 = {
    .name = "wint2g64", .kmult = G, .coarse = 1, .nparts = 3, .layout = layout2, .validate = validate,
    .row_begin = row_begin2, .decode = decode2, .scratch = scratch2, .encode_row = encode2,
};
