/* ccq/icq.c: ICQuant-style outlier index coding (+icq), on top of any quantized base format.
 *
 * Per row, the largest |w| (about gamma of the row) are outliers. The base code still covers every
 * position; an outlier's decoded base value is multiplied by the row's multiplier M (>= 1), so the
 * group scales only have to fit the inliers (their range roughly halves) while outliers reach M times
 * further. The encoder knows this: it codes an outlier's x as x / M with importance scaled by M^2.
 * Positions are stored as gaps in B-bit symbols (spec landscape §6): the symbol 2^B - 1 is an escape
 * (advance 2^B - 1 positions, no outlier); any other symbol s means "skip s positions, then an outlier".
 * Every row has the same fixed budget of S = ceil(gamma K / (1 - (1 - gamma)^(2^B - 1))) symbols (the
 * expected need for gamma K random positions), so the parts' sizes follow from the shape alone and row
 * r's stream starts at byte r * ceil(S B / 8); unused symbols are escapes. Symbol i occupies bits
 * [i B, i B + B) of the row's bytes, least significant bit first (bit b is bit b % 8 of byte b / 8).
 * Parts: icq_index U8 [N, ceil(S B / 8)], icq_scale F32 [N] (the multiplier M).
 * Decoding: w = base_w * icq_scale[n] at outlier positions (one float multiply), base_w elsewhere.
 * Must never read a stream past its row, whatever the bytes say. */
#include <math.h>

#include "internal.h"

int64_t icq_symbols(const ccq_format *f, int64_t K) {
    double g = f->icq_gamma / 10000.0;
    double E = (double)((1 << f->icq_bits) - 1);
    double s = g * (double)K / (1.0 - pow(1.0 - g, E));
    int64_t S = (int64_t)ceil(s - 1e-9);
    return S < 1 ? 1 : S;
}

int64_t icq_row_bytes(const ccq_format *f, int64_t K) { return (icq_symbols(f, K) * f->icq_bits + 7) / 8; }

void icq_layout(const ccq_format *f, int64_t N, int64_t K, ccq_part *p) {
    part_set(&p[0], "icq_index", "U8", 2, N, icq_row_bytes(f, K));
    part_set(&p[1], "icq_scale", "F32", 1, N, 0);
}

/* Symbol i of a row's stream; the caller guarantees i < S, so the bytes read stay inside the row. */
static inline unsigned sym_get(const uint8_t *row, int64_t nbytes, int64_t i, int B) {
    int64_t bit = i * B;
    int64_t byte = bit >> 3;
    uint32_t w = 0;
    if (byte + 4 <= nbytes) {
        memcpy(&w, row + byte, 4); /* little-endian host */
    } else {
        for (int j = 0; j < 3 && byte + j < nbytes; j++) w |= (uint32_t)row[byte + j] << (8 * j);
    }
    return (w >> (bit & 7)) & ((1u << B) - 1);
}

static inline void sym_put(uint8_t *row, int64_t i, int B, unsigned v) {
    for (int j = 0; j < B; j++) {
        int64_t bit = i * B + j;
        if (v >> j & 1) row[bit >> 3] |= (uint8_t)(1u << (bit & 7));
    }
}

/* Next outlier position of the row from the cursor, or K when the stream has no more. A symbol that
 * lands at or past K ends the row (only corrupt data does that; validation rejects it). */
static int64_t next_outlier(rowctx *rc) {
    const unsigned E = (1u << rc->icq_b) - 1;
    const int64_t nbytes = (rc->icq_nsym * rc->icq_b + 7) / 8;
    while (rc->icq_sym < rc->icq_nsym) {
        unsigned s = sym_get(rc->icq_bits, nbytes, rc->icq_sym++, rc->icq_b);
        if (s == E) {
            rc->icq_pos += E;
            continue;
        }
        int64_t p = rc->icq_pos + s;
        rc->icq_pos = p + 1;
        if (p < rc->K) return p;
        rc->icq_sym = rc->icq_nsym;
    }
    return rc->K;
}

void icq_row_begin(rowctx *rc) {
    const ccq_tensor *t = rc->t;
    int p0 = icq_part0(&t->fmt);
    rc->icq = 1;
    rc->icq_b = t->fmt.icq_bits;
    rc->icq_nsym = icq_symbols(&t->fmt, rc->K);
    rc->icq_bits = part_r(t, p0) + rc->r * t->part[p0].shape[1];
    rc->icq_mult = ld_f32(part_r(t, p0 + 1) + 4 * rc->r);
    rc->icq_sym = 0, rc->icq_pos = 0;
    rc->icq_next = next_outlier(rc);
}

void icq_apply(rowctx *rc, int64_t k0, int n, float *out) {
    while (rc->icq_next < k0 + n) {
        if (rc->icq_next >= k0) out[rc->icq_next - k0] *= rc->icq_mult;
        rc->icq_next = next_outlier(rc);
    }
}

int icq_validate(const ccq_tensor *t, err_t *e) {
    int p0 = icq_part0(&t->fmt);
    if (check_scales(t, p0 + 1, 0, 1, ICQ_MULT_MAX, e)) return -1;
    const int B = t->fmt.icq_bits;
    const unsigned E = (1u << B) - 1;
    const int64_t S = icq_symbols(&t->fmt, t->cols), nb = t->part[p0].shape[1];
    const uint8_t *d = part_r(t, p0);
    for (int64_t r = 0; r < t->rows; r++) {
        const uint8_t *row = d + r * nb;
        int64_t pos = 0;
        for (int64_t i = 0; i < S; i++) {
            unsigned s = sym_get(row, nb, i, B);
            if (s == E) {
                pos += E;
                continue;
            }
            if (pos + s >= t->cols)
                return err_set(e, ERR_CORRUPT, "part icq_index: row %lld: symbol %lld puts an outlier at column %lld of %lld",
                               (long long)r, (long long)i, (long long)(pos + s), (long long)t->cols);
            pos += s + 1;
        }
        int used = (int)((S * B) & 7);
        if (used && (row[nb - 1] >> used))
            return err_set(e, ERR_CORRUPT, "part icq_index: row %lld: padding bits after the last symbol are not 0",
                           (long long)r);
    }
    return 0;
}

/* Symbols needed for a gap of g non-outlier positions before an outlier. */
static inline int64_t gap_cost(int64_t g, int64_t E) { return g / E + 1; }

/* Sorts idx by |x| descending, ties by index ascending (heap sort: no allocation, deterministic). */
static int before(const float *x, int32_t a, int32_t b) {
    float fa = fabsf(x[a]), fb = fabsf(x[b]);
    return fa < fb || (fa == fb && a > b); /* "a sorts after b" in the final order */
}
static void sift(const float *x, int32_t *v, int64_t i, int64_t n) {
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && before(x, v[c + 1], v[c])) c++;
        if (!before(x, v[c], v[i])) return;
        int32_t t = v[c];
        v[c] = v[i], v[i] = t;
        i = c;
    }
}
static void sort_desc(const float *x, int32_t *v, int64_t n) {
    /* A min-heap under "before" keeps the element that sorts last on top; popping it to the end
     * leaves the array in descending order of |x|. */
    for (int64_t i = n / 2 - 1; i >= 0; i--) sift(x, v, i, n);
    for (int64_t e = n - 1; e > 0; e--) {
        int32_t t = v[0];
        v[0] = v[e], v[e] = t;
        sift(x, v, 0, e);
    }
}

int64_t icq_select(const ccq_format *f, const float *x, const uint8_t *skip, int64_t K, uint8_t *bits,
                   uint8_t *out, int32_t *work) {
    const int B = f->icq_bits;
    const int64_t E = (1 << B) - 1, S = icq_symbols(f, K);
    const int64_t target = (int64_t)((f->icq_gamma * K + 5000) / 10000);
    if (K <= 0) return 0;
    int64_t n = 0;
    for (int64_t k = 0; k < K; k++)
        if (!(skip && skip[k]) && x[k] != 0) work[n++] = (int32_t)k;
    sort_desc(x, work, n);
    memset(out, 0, (size_t)K);
    int64_t used = 0, count = 0;
    for (int64_t i = 0; i < n && count < target; i++) {
        int64_t p = work[i], a = p - 1, b = p + 1;
        while (a >= 0 && !out[a]) a--;
        while (b < K && !out[b]) b++;
        int64_t delta = gap_cost(p - a - 1, E) + (b < K ? gap_cost(b - p - 1, E) - gap_cost(b - a - 1, E) : 0);
        if (used + delta > S) continue;
        out[p] = 1, used += delta, count++;
    }
    /* Write the stream: gaps as escapes plus a final symbol, then escapes to fill the budget. */
    int64_t nb = icq_row_bytes(f, K), i = 0, prev = -1;
    memset(bits, 0, (size_t)nb);
    for (int64_t k = 0; k < K; k++) {
        if (!out[k]) continue;
        int64_t g = k - prev - 1;
        for (; g >= E; g -= E) sym_put(bits, i++, B, (unsigned)E);
        sym_put(bits, i++, B, (unsigned)g);
        prev = k;
    }
    while (i < S) sym_put(bits, i++, B, (unsigned)E);
    return count;
}

float icq_multiplier(const float *x, const uint8_t *is_out, const uint8_t *skip, int64_t K, int coarse) {
    float omax = 0, imax = 0;
    for (int64_t k = 0; k < K; k++) {
        if (skip && skip[k]) continue;
        float a = fabsf(x[k]);
        if (is_out[k]) omax = a > omax ? a : omax;
        else imax = a > imax ? a : imax;
    }
    /* r = M that maps the largest outlier onto the largest inlier. Coarse codes do better with less
     * when r is large (a few huge outliers among moderate ones): 2 sqrt(r) trades the huge ones'
     * clipping for a finer grid on the rest (docs/quant-notes.md has the measurements). */
    float r = imax > 0 ? omax / imax : 1;
    float M = coarse ? fminf(r, 2.0f * sqrtf(r)) : r;
    if (!(M >= 1)) M = 1;
    if (M > 1024) M = 1024;
    return M;
}
