/* ccq/crvq.c: CRVQ-style channel relaxation (+crvq), on top of any quantized base format.
 *
 * The C most important input channels (C = round(fraction * K), importance = CRVQ's
 * sum_n h_k * R[n][k]^2 with R the residual of a first encoding) are permuted together: the stored
 * permutation is "critical channels first, ascending, then the rest in their order", kept as the sorted
 * list of the C critical channels. Those channels get a richer code of their own, a block [N, C] in
 * int8 or int4 with one f32 scale per row, which replaces the base code's values there; the base code
 * still covers every column (so the base kernels are unchanged) but treats critical columns as
 * don't-care (importance 0), so the groups around them are scaled for the remaining weights only.
 * At run time: y = W_base x with x[critical] zeroed + crit_block * x[critical] (a gather of C values).
 * Parts: crvq_index U16 [C] (strictly increasing, < K), crvq_qweight I8 [N, C] (8 bits) or
 *        U8 [N, ceil(C/2)] (4 bits: entry j in byte j/2, low nibble for even j, value nibble - 8),
 *        crvq_scale F32 [N]. Decoding: w[n][idx[j]] = q[n][j] * crvq_scale[n].
 * Must never read an index list past C or a row past its end, whatever the bytes say. */
#include <math.h>
#include <stdlib.h>

#include "internal.h"

int64_t crvq_channels(const ccq_format *f, int64_t K) {
    int64_t C = (f->crvq_frac * K + 5000) / 10000;
    return C < 1 ? 1 : C > K ? K : C;
}

static int64_t row_bytes(const ccq_format *f, int64_t C) { return f->crvq_bits == 8 ? C : (C + 1) / 2; }

void crvq_layout(const ccq_format *f, int64_t N, int64_t K, ccq_part *p) {
    int64_t C = crvq_channels(f, K);
    part_set(&p[0], "crvq_index", "U16", 1, C, 0);
    part_set(&p[1], "crvq_qweight", f->crvq_bits == 8 ? "I8" : "U8", 2, N, row_bytes(f, C));
    part_set(&p[2], "crvq_scale", "F32", 1, N, 0);
}

int crvq_validate(const ccq_tensor *t, err_t *e) {
    int p0 = crvq_part0(&t->fmt);
    if (check_scales(t, p0 + 2, 0, 0, SCALE_MAX, e)) return -1;
    const int64_t C = t->part[p0].shape[0];
    const uint8_t *idx = part_r(t, p0);
    for (int64_t j = 0; j < C; j++) {
        int64_t v = ld_u16(idx + 2 * j);
        if (v >= t->cols)
            return err_set(e, ERR_CORRUPT, "part crvq_index: entry %lld is channel %lld of %lld", (long long)j,
                           (long long)v, (long long)t->cols);
        if (j && v <= ld_u16(idx + 2 * (j - 1)))
            return err_set(e, ERR_CORRUPT, "part crvq_index: entries %lld and %lld are not increasing (%d, %lld)",
                           (long long)j - 1, (long long)j, ld_u16(idx + 2 * (j - 1)), (long long)v);
    }
    if (t->fmt.crvq_bits == 4 && (C & 1)) {
        const ccq_part *q = &t->part[p0 + 1];
        for (int64_t r = 0; r < t->rows; r++)
            if (part_r(t, p0 + 1)[r * q->shape[1] + q->shape[1] - 1] >> 4)
                return err_set(e, ERR_CORRUPT, "part crvq_qweight: row %lld: the unused high nibble is not 0",
                               (long long)r);
    }
    return 0;
}

void crvq_row_begin(rowctx *rc) {
    const ccq_tensor *t = rc->t;
    int p0 = crvq_part0(&t->fmt);
    rc->crvq = 1;
    rc->crvq_idx = part_r(t, p0);
    rc->crvq_n = t->part[p0].shape[0];
    rc->crvq_j = 0;
    rc->crvq_bits = t->fmt.crvq_bits;
    rc->crvq_q = part_r(t, p0 + 1) + rc->r * t->part[p0 + 1].shape[1];
    rc->crvq_scale = ld_f32(part_r(t, p0 + 2) + 4 * rc->r);
}

void crvq_apply(rowctx *rc, int64_t k0, int n, float *out) {
    while (rc->crvq_j < rc->crvq_n) {
        int64_t j = rc->crvq_j, k = ld_u16(rc->crvq_idx + 2 * j);
        if (k >= k0 + n) return;
        if (k >= k0) {
            int v = rc->crvq_bits == 8 ? (int)(int8_t)rc->crvq_q[j]
                                       : (int)((rc->crvq_q[j >> 1] >> (4 * (j & 1))) & 15) - 8;
            out[k - k0] = (float)v * rc->crvq_scale;
        }
        rc->crvq_j++;
    }
}

void crvq_pick(const double *score, int64_t K, int64_t C, uint16_t *idx, int32_t *work) {
    if (K <= 0 || C <= 0) return;
    /* A min-heap of the C best so far (weakest on top: lower score, or the higher index on a tie), then
     * a sweep in channel order: O(K log C) and no allocation. */
    int64_t n = 0;
    for (int64_t k = 0; k < K; k++) {
        int32_t v = (int32_t)k;
        if (n < C) {
            int64_t i = n++;
            work[i] = v;
            while (i > 0) {
                int64_t p = (i - 1) / 2;
                int32_t a = work[i], b = work[p];
                if (score[a] < score[b] || (score[a] == score[b] && a > b)) {
                    work[i] = b, work[p] = a, i = p;
                } else break;
            }
        } else {
            int32_t top = work[0];
            if (!(score[v] > score[top])) continue; /* ties keep the lower index already in */
            work[0] = v;
            int64_t i = 0;
            for (;;) {
                int64_t c = 2 * i + 1;
                if (c >= n) break;
                if (c + 1 < n) {
                    int32_t a = work[c + 1], b = work[c];
                    if (score[a] < score[b] || (score[a] == score[b] && a > b)) c++;
                }
                int32_t a = work[c], b = work[i];
                if (score[a] < score[b] || (score[a] == score[b] && a > b)) {
                    work[c] = b, work[i] = a, i = c;
                } else break;
            }
        }
    }
    /* The chosen channels in ascending order: mark and sweep. */
    uint8_t *mark = (uint8_t *)(work + C);
    memset(mark, 0, (size_t)K);
    for (int64_t i = 0; i < n; i++) mark[work[i]] = 1;
    int64_t j = 0;
    for (int64_t k = 0; k < K; k++)
        if (mark[k]) idx[j++] = (uint16_t)k;
}

size_t crvq_scratch(int64_t C) { return (size_t)C * (2 * sizeof(float) + 2); }

void crvq_encode_row(const float *x, const float *h, const uint16_t *idx, int64_t C, void *work, ccq_tensor *t,
                     int64_t r) {
    const ccq_format *f = &t->fmt;
    int p0 = crvq_part0(f);
    float *xc = (float *)work, *hc = xc + C;
    int8_t *q = (int8_t *)(hc + C), *tq = q + C;
    for (int64_t j = 0; j < C; j++) xc[j] = x[idx[j]], hc[j] = h[idx[j]];
    int qmin = f->crvq_bits == 8 ? -127 : -8, qmax = f->crvq_bits == 8 ? 127 : 7;
    float s = rtn_scale(xc, hc, NULL, C, qmin, qmax, q, tq);
    uint8_t *row = part_w(t, p0 + 1) + r * row_bytes(f, C);
    if (f->crvq_bits == 8) {
        memcpy(row, q, (size_t)C);
    } else {
        memset(row, 0, (size_t)row_bytes(f, C));
        for (int64_t j = 0; j < C; j++) row[j >> 1] |= (uint8_t)((q[j] + 8) << (4 * (j & 1)));
    }
    st_f32(part_w(t, p0 + 2) + 4 * r, s);
}
