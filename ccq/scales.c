/* ccq/scales.c: choosing the scales of the group formats (spec §5 "Scales"), shared by ccq2.75, ccq2.5,
 * ccq2.06 and the g64 formats, plus the validators of the stored scales.
 *
 * Per group: a grid of scales around a guess from the group's rms, each with an exact code search,
 * then alternating least squares (scale given codes) and exact searches (codes given scale) while the
 * error falls. Per row: the bf16 super scale and the integer local scales are chosen together, with an
 * exact search for every candidate, so the codes always fit the scale that is stored.
 * Must never know a format's bit layout: that lives behind grp_search_fn. */
#include <math.h>

#include "base/bf16.h"
#include "internal.h"

float bf16_ceil(float v) {
    if (!(v > 0)) return 0;
    uint16_t b = f32_to_bf16(v);
    if (bf16_to_f32(b) < v) b++;
    return bf16_to_f32(b);
}

float grp_rms(const float *x, const float *h, const float *m, int n) {
    double num = 0, den = 0;
    for (int k = 0; k < n; k++) {
        double xk = m ? x[k] / m[k] : x[k];
        num += h[k] * xk * xk;
        den += h[k];
    }
    return den > 0 ? (float)sqrt(num / den) : 0.0f;
}

float grp_best_scale(const grp_coder *gc, const float *x, const float *h, const float *m, int n, float *s,
                     uint8_t *codes, float *u, float *tmpu) {
    uint8_t tc[64];
    float rms = grp_rms(x, h, m, n);
    if (!(rms > 0)) {
        *s = 0;
        return gc->search(gc->ctx, x, h, m, n, 0, codes, u);
    }
    float s0 = gc->alpha * rms, best = INFINITY, bs = s0;
    for (int i = 0; i < gc->ngrid; i++) {
        float si = s0 * (gc->ngrid > 1 ? gc->lo + (gc->hi - gc->lo) * (float)i / (float)(gc->ngrid - 1) : 1.0f);
        float e = gc->search(gc->ctx, x, h, m, n, si, tc, tmpu);
        if (e < best) {
            best = e, bs = si;
            memcpy(codes, tc, (size_t)gc->code_bytes);
            memcpy(u, tmpu, sizeof(float) * (size_t)n);
        }
    }
    /* Least squares for the scale given the codes: s = sum h m u x / sum h (m u)^2. */
    for (int it = 0; it < 4; it++) {
        double num = 0, den = 0;
        for (int k = 0; k < n; k++) {
            double mu = (m ? m[k] : 1.0) * u[k];
            num += h[k] * mu * x[k];
            den += h[k] * mu * mu;
        }
        if (!(den > 0) || !(num > 0)) break;
        float sn = (float)(num / den);
        if (sn == bs) break;
        float e = gc->search(gc->ctx, x, h, m, n, sn, tc, tmpu);
        if (!(e < best)) break;
        best = e, bs = sn;
        memcpy(codes, tc, (size_t)gc->code_bytes);
        memcpy(u, tmpu, sizeof(float) * (size_t)n);
    }
    *s = bs;
    return best;
}

size_t grp_row_scratch(const grp_coder *gc, int64_t K) {
    int64_t ng = K / G;
    return (size_t)ng * (sizeof(float) + 2 * sizeof(uint16_t) + (size_t)gc->code_bytes) + 256 * sizeof(float) + 64;
}

double grp_encode_row(const grp_coder *gc, const float *x, const float *h, const float *m, int64_t K, void *work,
                      uint8_t *codes, uint16_t *local, uint16_t *super) {
    const int64_t ng = K / G;
    const int cb = gc->code_bytes;
    const int lmax = (1 << gc->lbits) - 1;
    float *sg = (float *)work;
    float *u = sg + ng, *tu = u + 64;
    uint16_t *loc2 = (uint16_t *)(tu + 64);
    uint8_t *codes2 = (uint8_t *)(loc2 + ng);
    float smax = 0;
    for (int64_t g = 0; g < ng; g++) {
        const float *mg = m ? m + g * G : NULL;
        grp_best_scale(gc, x + g * G, h + g * G, mg, G, &sg[g], codes + g * cb, u, tu);
        if (sg[g] > smax) smax = sg[g];
    }
    if (!(smax > 0)) {
        /* Nothing to code (all zero or no importance): super 0 decodes the row to zeros. */
        *super = 0;
        for (int64_t g = 0; g < ng; g++) local[g] = 1;
        return 0;
    }
    /* Candidate supers: max/lmax times a few factors below 1, so that the bulk of the groups can use
     * the finer end of a 4-bit local scale while the largest ones clamp at lmax. A 13-bit local scale
     * is fine enough that max/lmax alone is as good as any. */
    static const float f4[] = {1.0f, 0.93f, 0.86f}; /* lower ones never won (docs/quant-notes.md) */
    static const float f13[] = {1.0f};
    const float *fs = gc->lbits <= 4 ? f4 : f13;
    int nf = gc->lbits <= 4 ? (int)(sizeof f4 / sizeof f4[0]) : 1;
    double best = INFINITY;
    float bsup = 0;
    for (int fi = 0; fi < nf; fi++) {
        float sup = bf16_ceil(smax * fs[fi] / (float)lmax);
        if (!(sup > 0) || isinf(sup)) continue;
        double tot = 0;
        for (int64_t g = 0; g < ng; g++) {
            const float *mg = m ? m + g * G : NULL;
            double r = sg[g] / sup;
            int l0 = (int)floor(r);
            if (l0 < 1) l0 = 1;
            if (l0 > lmax) l0 = lmax;
            int cand[2] = {l0, l0 + 1 <= lmax ? l0 + 1 : l0};
            if (gc->lbits > 4) cand[0] = cand[1] = (int)fmin(fmax(floor(r + 0.5), 1), lmax);
            float be = INFINITY;
            uint8_t tc[64];
            for (int c = 0; c < 2; c++) {
                if (c == 1 && cand[1] == cand[0]) break;
                float e = gc->search(gc->ctx, x + g * G, h + g * G, mg, G, (float)cand[c] * sup, tc, tu);
                if (e < be) {
                    be = e;
                    loc2[g] = (uint16_t)cand[c];
                    memcpy(codes2 + g * cb, tc, (size_t)cb);
                }
            }
            tot += be;
            if (tot >= best) break;
        }
        if (tot < best) {
            best = tot, bsup = sup;
            memcpy(local, loc2, sizeof(uint16_t) * (size_t)ng);
            memcpy(codes, codes2, (size_t)(ng * cb));
        }
    }
    if (best == INFINITY) { /* no usable super (cannot happen for weights within +-1e12) */
        *super = 0;
        for (int64_t g = 0; g < ng; g++) local[g] = 1;
        return 0;
    }
    *super = f32_to_bf16(bsup);
    return best;
}

int check_scales(const ccq_tensor *t, int part, int bf16, int positive, float vmax, err_t *e) {
    const ccq_part *p = &t->part[part];
    const uint8_t *d = (const uint8_t *)p->data;
    size_t n = p->nbytes / (bf16 ? 2 : 4);
    for (size_t i = 0; i < n; i++) {
        float v = bf16 ? bf16_to_f32(ld_u16(d + 2 * i)) : ld_f32(d + 4 * i);
        if (!(v >= 0 && v <= vmax) || (positive && v == 0))
            return err_set(e, ERR_CORRUPT, "part %s: element %zu is %g (must be %s 0 and at most %g)", p->name, i, v,
                           positive ? ">" : ">=", vmax);
    }
    return 0;
}

int check_local4_pad(const ccq_tensor *t, int part, err_t *e) {
    int64_t ng = t->cols / G;
    if (!(ng & 1)) return 0;
    const ccq_part *p = &t->part[part];
    const uint8_t *d = (const uint8_t *)p->data;
    int64_t rb = p->shape[1];
    for (int64_t r = 0; r < t->rows; r++)
        if (d[r * rb + rb - 1] & 15)
            return err_set(e, ERR_CORRUPT, "part %s: row %lld: the unused low nibble of the last byte is not 0",
                           p->name, (long long)r);
    return 0;
}
