/* tests/test_vdot.c: the row dot products of base/vdot.h against a plain scalar loop that makes the
 * additions the header promises (lane k mod 32 in order of k, then the pairwise tree), bit for bit, at
 * lengths around the 32-element chunk and at every byte alignment, for both widths (the AVX2 one where
 * the CPU has it); and against double precision. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "base/rng.h"
#include "base/vdot.h"
#include "harness.h"

enum { F32, BF16, I8, U4 };

/* weight k of a row of type ty */
static float weight(int ty, const unsigned char *w, int64_t k) {
    switch (ty) {
    case F32: {
        float f;
        memcpy(&f, w + 4 * k, 4);
        return f;
    }
    case BF16: {
        uint16_t h;
        memcpy(&h, w + 2 * k, 2);
        return bf16_to_f32(h);
    }
    case I8: return (float)(int8_t)w[k];
    default: return (float)((w[k / 2] >> (k & 1 ? 4 : 0)) & 15) - 8.0f;
    }
}

static float ordered(int ty, const unsigned char *w, const float *x, int64_t K) {
    float lane[32] = {0};
    for (int64_t k = 0; k < K; k++) lane[k % 32] += weight(ty, w, k) * x[k];
    for (int h = 16; h; h >>= 1)
        for (int i = 0; i < h; i++) lane[i] += lane[i + h];
    return lane[0];
}

/* im: one width, or NULL for the calls the engine makes */
static float vd(const vd_impl *im, int ty, const unsigned char *w, const float *x, int64_t K) {
    switch (ty) {
    case F32: return im ? im->f32(w, x, K) : vd_f32(w, x, K);
    case BF16: return im ? im->bf16(w, x, K) : vd_bf16(w, x, K);
    case I8: return im ? im->i8((const int8_t *)w, x, K) : vd_i8((const int8_t *)w, x, K);
    default: return im ? im->u4(w, x, K) : vd_u4(w, x, K);
    }
}

TEST(vdot_makes_the_promised_additions) {
    static const char *names[] = {"f32", "bf16", "i8", "u4"};
    static const int64_t Ks[] = {0, 2, 30, 32, 34, 62, 64, 96, 130, 2560, 3584 + 18};
    rng_t r;
    rng_seed(&r, 7);
    for (int ty = F32; ty <= U4; ty++)
        for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
            for (int align = 0; align < 4; align++) {
                const int64_t K = Ks[ki];
                const size_t bytes = ty == F32 ? 4 * (size_t)K : ty == BF16 ? 2 * (size_t)K : ty == I8 ? (size_t)K : (size_t)K / 2;
                unsigned char *buf = malloc(bytes + 8);
                float *xb = malloc(sizeof(float) * (size_t)K + 8);
                unsigned char *w = buf + align;
                float *x = xb; /* x is a float array: 4-byte aligned as the engine's are */
                for (size_t i = 0; i < bytes; i++) w[i] = (unsigned char)(uint32_t)rng_next(&r);
                for (int64_t k = 0; k < K; k++) {
                    /* widely spread magnitudes, so that a different order of additions shows */
                    x[k] = (float)rng_normal(&r) * ldexpf(1.0f, (int)((uint32_t)rng_next(&r) % 24) - 12);
                    if (ty == F32) {
                        float v = (float)rng_normal(&r) * ldexpf(1.0f, (int)((uint32_t)rng_next(&r) % 24) - 12);
                        memcpy(w + 4 * k, &v, 4);
                    } else if (ty == BF16) {
                        uint16_t h = f32_to_bf16((float)rng_normal(&r) * ldexpf(1.0f, (int)((uint32_t)rng_next(&r) % 24) - 12));
                        memcpy(w + 2 * k, &h, 2);
                    }
                }
                const float want = ordered(ty, w, x, K);
                const vd_impl *ims[] = {NULL, vd_narrow(), vd_wide()};
                static const char *iname[] = {"chosen", "4-wide", "8-wide"};
                for (int ii = 0; ii < 3; ii++) {
                    if (ii == 2 && !ims[ii]) continue; /* no AVX2 here */
                    const float g = vd(ims[ii], ty, w, x, K);
                    if (memcmp(&g, &want, sizeof g))
                        FAIL("%s %s K=%lld alignment %d: %.9g, the promised order gives %.9g", iname[ii], names[ty],
                             (long long)K, align, g, want);
                }
                const float got = vd(NULL, ty, w, x, K);
                double s = 0, mag = 0;
                for (int64_t k = 0; k < K; k++) s += (double)weight(ty, w, k) * x[k], mag += fabs((double)weight(ty, w, k) * x[k]);
                if (!(fabs(got - s) <= 1e-5 * mag + 1e-30))
                    FAIL("%s K=%lld: %.9g against %.9g in double precision", names[ty], (long long)K, got, s);
                free(buf), free(xb);
            }
}

/* every nibble value in both halves of a byte, and every int8 value, reach their lanes */
TEST(vdot_decodes_every_code) {
    unsigned char q[128];
    float x[256];
    for (int i = 0; i < 128; i++) q[i] = (unsigned char)(i * 37 + 11);
    for (int k = 0; k < 256; k++) {
        memset(x, 0, sizeof x);
        x[k] = 1.0f;
        float want8 = (float)(int8_t)q[k % 128], want4 = (float)((q[k / 2 % 128] >> (k & 1 ? 4 : 0)) & 15) - 8.0f;
        if (k < 128 && vd_i8((const int8_t *)q, x, 128) != want8) FAIL("i8: element %d", k);
        if (k < 256 && vd_u4(q, x, 256) != want4) FAIL("u4: element %d", k);
    }
}

/* y += a x is elementwise: every width gives the plain loop's bits, at any length and offset */
TEST(vdot_axpy_is_the_plain_loop) {
    rng_t r;
    rng_seed(&r, 11);
    float x[80], y0[80], y1[80], y2[80];
    const vd_impl *ims[] = {vd_narrow(), vd_wide()};
    for (int n = 0; n <= 70; n += 7)
        for (int off = 0; off < 3; off++) {
            for (int i = 0; i < 80; i++) x[i] = (float)rng_normal(&r), y0[i] = (float)rng_normal(&r);
            const float a = (float)rng_normal(&r);
            memcpy(y1, y0, sizeof y0);
            for (int i = 0; i < n; i++) y1[off + i] += a * x[off + i];
            for (int ii = 0; ii < 3; ii++) {
                if (ii < 2 && !ims[ii]) continue;
                memcpy(y2, y0, sizeof y0);
                if (ii < 2) ims[ii]->axpy(y2 + off, a, x + off, n);
                else vd_axpy(y2 + off, a, x + off, n);
                if (memcmp(y1, y2, sizeof y1)) FAIL("axpy (%d) n=%d offset %d differs from the plain loop", ii, n, off);
            }
        }
}
