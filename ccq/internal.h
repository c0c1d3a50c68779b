/* ccq/internal.h: what the codec's files share and nobody outside ccq/ may include: the table each base
 * format fills (layout, validation, row decoding, row encoding), the per-row decoding state with the
 * ICQ and CRVQ cursors, the exact code search, and the group-scale optimiser.
 *
 * Must never grow I/O or model knowledge: these are pure functions over memory. */
#ifndef ERNIE_CCQ_INTERNAL_H
#define ERNIE_CCQ_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "base/simd.h"
#include "ccq.h"
#include "codes.h"

#define G CCQ_GROUP

/* Unaligned little-endian access: parts come from anywhere (mmap, a fuzzer), so never cast pointers. */
static inline uint16_t ld_u16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline float ld_f32(const void *p) {
    float v;
    memcpy(&v, p, 4);
    return v;
}
static inline void st_u16(void *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void st_f32(void *p, float v) { memcpy(p, &v, 4); }

/* Writable view of a part of a tensor we own (encoding only). */
static inline uint8_t *part_w(ccq_tensor *t, int i) { return (uint8_t *)(uintptr_t)t->part[i].data; }
static inline const uint8_t *part_r(const ccq_tensor *t, int i) { return (const uint8_t *)t->part[i].data; }

/* Four floats in a register (SSE, NEON): the fused one-vector products use them. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
/* Eight lanes: only for functions compiled with target("avx2") (GCC splits them badly elsewhere). */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
static inline v4f ld4(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline float hsum4(v4f v) { return (v[0] + v[2]) + (v[1] + v[3]); }
static inline void st4(float *p, v4f v) { memcpy(p, &v, sizeof v); }

/* conv_search (codes.h) on several independent problems at once, one per vector lane: cost(i, v) is
 * the VF vector of window i's costs at value v for every lane (VI: the matching int32 vector). It makes
 * conv_search's additions and strict comparisons in conv_search's order, lane by lane, so every lane
 * gets exactly the code word (ties included) and the float minimum conv_search returns; only the
 * branches are gone, which made the scalar search slow (it mispredicted on every other candidate).
 * Sets fbest (VF) and code (VI). L, N, S: compile-time constants. */
#define CONV_SEARCH_LANES(VF, VI, L, N, S, cost, fbest, code)                                             \
    do {                                                                                                  \
        enum { NV_ = 1 << (L), NS_ = 1 << ((L) - (S)) };                                                  \
        VF f_[NS_], g_[NS_];                                                                              \
        VI bp_[(N)][NS_], z_ = {0};                                                                       \
        for (int s_ = 0; s_ < NS_; s_++) f_[s_] = cost(0, s_), bp_[0][s_] = z_ + s_;                     \
        for (int v_ = NS_; v_ < NV_; v_++) {                                                              \
            VF c_ = cost(0, v_);                                                                          \
            VI lt_ = c_ < f_[v_ & (NS_ - 1)];                                                             \
            f_[v_ & (NS_ - 1)] = (VF)(((VI)c_ & lt_) | ((VI)f_[v_ & (NS_ - 1)] & ~lt_));                  \
            bp_[0][v_ & (NS_ - 1)] = ((z_ + v_) & lt_) | (bp_[0][v_ & (NS_ - 1)] & ~lt_);                \
        }                                                                                                 \
        for (int i_ = 1; i_ < (N); i_++) {                                                                \
            for (int s_ = 0; s_ < NS_; s_++) g_[s_] = f_[s_ >> (S)] + cost(i_, s_), bp_[i_][s_] = z_ + s_; \
            for (int v_ = NS_; v_ < NV_; v_++) {                                                          \
                VF c_ = f_[v_ >> (S)] + cost(i_, v_);                                                     \
                VI lt_ = c_ < g_[v_ & (NS_ - 1)];                                                         \
                g_[v_ & (NS_ - 1)] = (VF)(((VI)c_ & lt_) | ((VI)g_[v_ & (NS_ - 1)] & ~lt_));              \
                bp_[i_][v_ & (NS_ - 1)] = ((z_ + v_) & lt_) | (bp_[i_][v_ & (NS_ - 1)] & ~lt_);          \
            }                                                                                             \
            memcpy(f_, g_, sizeof f_);                                                                    \
        }                                                                                                 \
        VF b_ = f_[0];                                                                                    \
        VI bs_ = z_;                                                                                      \
        for (int s_ = 1; s_ < NS_; s_++) {                                                                \
            VI lt_ = f_[s_] < b_;                                                                         \
            b_ = (VF)(((VI)f_[s_] & lt_) | ((VI)b_ & ~lt_));                                              \
            bs_ = ((z_ + s_) & lt_) | (bs_ & ~lt_);                                                       \
        }                                                                                                 \
        /* walk back: window i's top L-S bits are window i-1's state */                                  \
        VI st_ = bs_, vv_[(N)];                                                                           \
        for (int i_ = (N) - 1; i_ >= 0; i_--) {                                                           \
            VI v_ = z_;                                                                                   \
            for (int s_ = 0; s_ < NS_; s_++) v_ |= bp_[i_][s_] & (st_ == (z_ + s_));                      \
            vv_[i_] = v_, st_ = v_ >> (S);                                                                \
        }                                                                                                 \
        VI cw_ = vv_[0];                                                                                  \
        for (int i_ = 1; i_ < (N); i_++) cw_ = (cw_ << (S)) | (vv_[i_] & ((1 << (S)) - 1));              \
        (fbest) = b_, (code) = cw_;                                                                       \
    } while (0)

/* The inputs of a lane search over a group of 64 (x, h, m, s in scope): weight k < 63 goes to lane k / P,
 * slot k % P, of the [P][lanes] arrays X, H and A (A: the scale, s m[k] with importance m, else s). */
#define LANE_INPUTS(X, H, A, P)                                                                             \
    for (int k_ = 0; k_ < 63; k_++)                                                                         \
        X[k_ % (P)][k_ / (P)] = x[k_], H[k_ % (P)][k_ / (P)] = h[k_], A[k_ % (P)][k_ / (P)] = m ? s * m[k_] : s;
/* cv[i][v] = h (x - a (v - NV/2))^2 for slot i < P and window value v < NV, lanes b.. of X, H, A: the cost
 * each scalar search used, computed per lane. */
#define LANE_COSTS(VF, cv, X, H, A, P, NV, b)                                                               \
    for (int i_ = 0; i_ < (P); i_++) {                                                                      \
        VF xv_, hv_, av_;                                                                                   \
        memcpy(&xv_, &X[i_][b], sizeof xv_), memcpy(&hv_, &H[i_][b], sizeof hv_), memcpy(&av_, &A[i_][b], sizeof av_); \
        for (int v_ = 0; v_ < (NV); v_++) {                                                                 \
            VF d_ = xv_ - av_ * (float)(v_ - (NV) / 2);                                                     \
            cv[i_][v_] = hv_ * d_ * d_;                                                                     \
        }                                                                                                   \
    }

/* The dotrow hook of a format with one scale per group of 64: GROUP_VEC(rc, k0, x, &scale), an inline
 * function of the format's file, gives a group's unscaled products summed into 4 lanes and its scale;
 * the lanes of all groups are added up scaled, in order of k, and summed once at the end (no
 * horizontal sum per group). K is a multiple of 64 for these formats. */
#define DOTROW_BY_GROUPS(name, GROUP_VEC)                                                                 \
    static float name(const rowctx *rc, const float *x) {                                                 \
        v4f acc_ = {0};                                                                                   \
        for (int64_t k0_ = 0; k0_ < rc->K; k0_ += G) {                                                    \
            float s_;                                                                                     \
            const v4f v_ = GROUP_VEC(rc, k0_, x + k0_, &s_);                                              \
            acc_ += v_ * s_;                                                                              \
        }                                                                                                 \
        return hsum4(acc_);                                                                               \
    }

/* The group search of a format whose code words are searched side by side in lanes: BODY(VF, VI, W) is
 * the body of `float f(x, h, m, s, codes, u)` for vectors VF/VI of W lanes. Defines the grp_coder hook
 * `search`, compiled 4-wide (SSE/NEON) and, on x86-64, also 8-wide with AVX2, chosen by the CPU's
 * features at run time (`lane_search_pick()` must run once before the first search: encode_row calls
 * it). Both widths make the same operations per lane, so the bytes never depend on the CPU. */
/* LANE_ZEROUPPER(W), in a body instantiated for W = 4 and 8: clears the upper halves of the AVX
 * registers in the 8-wide one, before it calls a plain function. GCC did not (2.75 and 2.5 call their
 * 4-wide `finish` from the AVX2 search), and while the halves are dirty every SSE instruction of the
 * process waits on them: the CPU decode step ran 5x slower after an encode (measured, docs/perf-notes-cpu.md). */
#define LANE_ZEROUPPER(W) LANE_ZEROUPPER_(W)
#define LANE_ZEROUPPER_(W) LANE_ZU_##W()
#define LANE_ZU_4() ((void)0)
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LANE_ZU_8() _mm256_zeroupper()
#define LANE_SEARCH_AVX2_(BODY)                                                                              \
    __attribute__((target("avx2"))) static float search_avx2(const float *x, const float *h, const float *m, \
                                                             float s, uint8_t *codes, float *u) {            \
        BODY(v8f, v8i, 8)                                                                                    \
    }                                                                                                        \
    static float (*search_fn)(const float *, const float *, const float *, float, uint8_t *, float *);       \
    static void search_pick_(void) { search_fn = simd_avx2() ? search_avx2 : search_c; }
#else
#define LANE_SEARCH_AVX2_(BODY)                                                                              \
    static float (*const search_fn)(const float *, const float *, const float *, float, uint8_t *,           \
                                    float *) = search_c;                                                     \
    static void search_pick_(void) {}
#endif
#define LANE_SEARCH_DISPATCH(BODY)                                                                           \
    static float search_c(const float *x, const float *h, const float *m, float s, uint8_t *codes, float *u) { \
        BODY(v4f, v4i, 4)                                                                                    \
    }                                                                                                        \
    LANE_SEARCH_AVX2_(BODY)                                                                                  \
    static pthread_once_t search_once_ = PTHREAD_ONCE_INIT;                                                  \
    static void lane_search_pick(void) { pthread_once(&search_once_, search_pick_); }                        \
    static float search(const void *ctx, const float *x, const float *h, const float *m, int n, float s,     \
                        uint8_t *codes, float *u) {                                                          \
        (void)ctx, (void)n;                                                                                  \
        return search_fn(x, h, m, s, codes, u);                                                              \
    }

/* ---- per-row decoding state ---- */

typedef struct {
    const ccq_tensor *t;
    int64_t r, K;
    const uint8_t *q;   /* this row's qweight bytes */
    const uint8_t *loc; /* this row's local scale bytes (group formats with a separate local part) */
    float scale;        /* wint scale, or the bf16 super scale as float */
    float lut[256 * 4]; /* ccq2.06: the row's 256 decoded 4-vectors (v - 32), unscaled */
    /* ICQ: the row's gap stream, read forward; next is the next outlier position (K when done) */
    int icq;
    const uint8_t *icq_bits;
    int64_t icq_sym, icq_nsym, icq_pos, icq_next;
    int icq_b;
    float icq_mult;
    /* CRVQ: the shared sorted channel list and this row's critical block */
    int crvq;
    const uint8_t *crvq_idx;
    int64_t crvq_n, crvq_j;
    const uint8_t *crvq_q;
    float crvq_scale;
    int crvq_bits;
} rowctx;

/* ---- the table of a base format ---- */

typedef struct {
    const char *name;
    int kmult;  /* cols must be a multiple of this */
    int coarse; /* 2-3 bits per weight (ICQ picks its multiplier differently) */
    int nparts; /* base parts, first in the tensor's part list */
    void (*layout)(int64_t N, int64_t K, ccq_part *p);
    /* Checks the base parts' contents (sizes are already checked). */
    int (*validate)(const ccq_tensor *t, err_t *e);
    /* Sets q, loc, scale (and lut) for row rc->r. */
    void (*row_begin)(rowctx *rc);
    /* Decodes base weights [k0, k0 + n) of the row, final values; k0 % 64 == 0, n <= 64. */
    void (*decode)(const rowctx *rc, int64_t k0, int n, float *out);
    /* Optional: the row's dot product with x[0..K) without storing the weights (ccq_dot's path for
     * one vector and no modifiers, the CPU's decode step). Equals decode-then-dot up to rounding: the
     * order of the additions, and scales applied once per group or row to the sum. Must give the same
     * bits on every CPU (4-wide vectors only, or base/vdot.h). */
    float (*dotrow)(const rowctx *rc, const float *x);
    /* Scratch bytes encode_row needs for a row of K. */
    size_t (*scratch)(int64_t K);
    /* Encodes row r from x[K], importance h[K] (>= 0) and per-position multipliers m[K] (NULL: all 1),
     * minimising sum h_k (x_k - m_k * w_k)^2 over the format's decoded weights w; writes the row's slice
     * of every base part. */
    void (*encode_row)(const float *x, const float *h, const float *m, int64_t K, void *scratch, ccq_tensor *t,
                       int64_t r);
} base_codec;

extern const base_codec CODEC_BF16, CODEC_WINT8, CODEC_WINT4, CODEC_WINT4G64, CODEC_WINT2G64, CODEC_CCQ275,
    CODEC_CCQ25, CODEC_CCQ206;
const base_codec *codec_of(ccq_base b);

/* Fills a part description (data NULL). */
void part_set(ccq_part *p, const char *name, const char *dtype, int ndim, int64_t d0, int64_t d1);

/* Index of the first ICQ / CRVQ part of a tensor of format f. */
int icq_part0(const ccq_format *f);
int crvq_part0(const ccq_format *f);

/* ---- decoding a row, with the modifiers applied ---- */

/* Starts decoding row r (base state, ICQ cursor at the row's start, CRVQ cursor at 0). */
void rd_begin(rowctx *rc, const ccq_tensor *t, int64_t r);
/* Decodes weights [k0, k0 + n) of the row (k0 % 64 == 0, n <= 64): base, ICQ multipliers, CRVQ
 * replacements. Calls must go forward in k0 (the cursors only move forward). */
void rd_decode(rowctx *rc, int64_t k0, int n, float *out);

/* ---- ICQ (icq.c) ---- */

/* Symbols per row's gap stream and the stream's bytes per row, from the format and K. */
int64_t icq_symbols(const ccq_format *f, int64_t K);
int64_t icq_row_bytes(const ccq_format *f, int64_t K);
void icq_layout(const ccq_format *f, int64_t N, int64_t K, ccq_part *p);
int icq_validate(const ccq_tensor *t, err_t *e);
void icq_row_begin(rowctx *rc);
/* Applies the row's outliers in [k0, k0 + n) to out (multiplies them by the row's multiplier). */
void icq_apply(rowctx *rc, int64_t k0, int n, float *out);
/* Chooses the row's outliers: the largest |x| (skipping positions where skip[k] != 0, skip may be NULL),
 * at most round(gamma * K) of them, as many as fit the row's fixed stream budget. Writes the stream into
 * bits (icq_row_bytes), marks out[k] = 1 for outliers (others 0), returns their count. work: K ints. */
int64_t icq_select(const ccq_format *f, const float *x, const uint8_t *skip, int64_t K, uint8_t *bits,
                   uint8_t *out, int32_t *work);
/* The row's outlier multiplier for the chosen outliers (finite, in [1, 1024]); skip as in icq_select;
 * coarse: the base has 2-3 bits per weight. */
float icq_multiplier(const float *x, const uint8_t *is_out, const uint8_t *skip, int64_t K, int coarse);

/* ---- RTN with one scale (wint.c) ---- */

/* Rounds x/(s m) to integers in [qmin, qmax] with the best scale s for sum h (x - s m q)^2: a grid of
 * clipping ratios of max |x/m| (over h > 0), then least squares given the codes. Writes q[K] (tq is K
 * bytes of scratch) and returns s (0 when nothing has weight). */
float rtn_scale(const float *x, const float *h, const float *m, int64_t K, int qmin, int qmax, int8_t *q,
                int8_t *tq);

/* ---- CRVQ (crvq.c) ---- */

int64_t crvq_channels(const ccq_format *f, int64_t K);
void crvq_layout(const ccq_format *f, int64_t N, int64_t K, ccq_part *p);
int crvq_validate(const ccq_tensor *t, err_t *e);
void crvq_row_begin(rowctx *rc);
void crvq_apply(rowctx *rc, int64_t k0, int n, float *out);
/* Picks the C channels with the largest score (ties to the lower index) into idx, ascending.
 * work: C int32 then K bytes. */
void crvq_pick(const double *score, int64_t K, int64_t C, uint16_t *idx, int32_t *work);
/* Encodes row r's critical block from x[K] at the channels idx[C] with importance h[K].
 * work: crvq_scratch(C) bytes. */
size_t crvq_scratch(int64_t C);
void crvq_encode_row(const float *x, const float *h, const uint16_t *idx, int64_t C, void *work, ccq_tensor *t,
                     int64_t r);

/* ---- group scales (scales.c) ---- */

/* A group format's exact search: for scale s, the code words of one group minimising
 * sum h (x - s m u)^2, written as the group's packed bytes (local scale bits left 0) and the unscaled
 * values u[n]; returns that minimum. */
typedef float (*grp_search_fn)(const void *ctx, const float *x, const float *h, const float *m, int n, float s,
                               uint8_t *codes, float *u);

typedef struct {
    grp_search_fn search;
    const void *ctx;
    int code_bytes; /* packed bytes of one group's codes */
    float alpha;    /* first scale guess = alpha * weighted rms of x / m */
    int lbits;      /* local scale bits: 4 or 13 */
    int ngrid;      /* grid points of the first scale search */
    float lo, hi;   /* grid range, relative to the guess */
} grp_coder;

/* The best continuous scale for one group: a grid around the guess, then alternating least squares
 * with exact searches. Returns the error, sets *s (0 for a group with no weight or no importance). */
float grp_best_scale(const grp_coder *gc, const float *x, const float *h, const float *m, int n, float *s,
                     uint8_t *codes, float *u, float *tmpu);

/* A whole row of a group format: best scale per group, then the super scale (bf16) and local scales
 * (1 .. 2^lbits - 1) chosen by trying supers around max(s)/(2^lbits - 1) and for each group the two
 * nearest locals, with exact searches. Fills codes[G * code_bytes], local[G], *super. work: see
 * grp_row_scratch. Returns the row's error. */
size_t grp_row_scratch(const grp_coder *gc, int64_t K);
double grp_encode_row(const grp_coder *gc, const float *x, const float *h, const float *m, int64_t K, void *work,
                      uint8_t *codes, uint16_t *local, uint16_t *super);

/* Weighted root mean square of x / m over a group (m may be NULL); 0 when no importance. */
float grp_rms(const float *x, const float *h, const float *m, int n);

/* Nibble access of the local_scale part shared by ccq2.06 and the g64 formats: group g in byte g/2,
 * the high nibble for even g, the low nibble for odd g. */
static inline int local4_get(const uint8_t *row, int64_t g) {
    return (g & 1) ? (row[g >> 1] & 15) : (row[g >> 1] >> 4);
}
static inline void local4_set(uint8_t *row, int64_t g, int v) {
    uint8_t *b = &row[g >> 1];
    *b = (g & 1) ? (uint8_t)((*b & 0xF0) | (v & 15)) : (uint8_t)((*b & 0x0F) | ((v & 15) << 4));
}
/* Bounds on stored scales: with them no decoded weight can overflow a float (the largest code value
 * times a local scale is 4 * 8191, the ICQ multiplier at most ICQ_MULT_MAX: 3.3e4 * 1e25 * 1e6 is far
 * below FLT_MAX). The encoder stays far inside them (weights are at most 1e12). */
#define SCALE_MAX 1e25f
#define ICQ_MULT_MAX 1e6f

/* Validates the local_scale nibble padding (the low nibble of the last byte when K/64 is odd). */
int check_local4_pad(const ccq_tensor *t, int part, err_t *e);
/* Validates a part of scales (bf16 or f32): finite, in [0, vmax], and > 0 when positive is set. */
int check_scales(const ccq_tensor *t, int part, int bf16, int positive, float vmax, err_t *e);

/* The smallest bf16 value >= v (v >= 0, finite), as float. */
float bf16_ceil(float v);

#endif
