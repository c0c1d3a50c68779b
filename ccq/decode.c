/* ccq/decode.c: decoding rows and tiles, and the fused CPU product ccq_dot (the CPU engine's matvec and
 * prefill hot loop).
 *
 * One definition of the decoded weight: rd_decode (base format, then the ICQ multiplier, then the CRVQ
 * replacement). ccq_decode and ccq_dot both go through it, so the product uses exactly the weights
 * ccq_decode returns. ccq_dot decodes each 64-group of four rows at a time into a small buffer that
 * stays in L1 and uses it for every input vector before moving on: the weights are read and decoded once
 * per call, the vectors once per four rows. Must never allocate or fail inside the loop. */
#include <pthread.h>

#include "internal.h"

void rd_begin(rowctx *rc, const ccq_tensor *t, int64_t r) {
    rc->t = t, rc->r = r, rc->K = t->cols;
    rc->q = rc->loc = NULL;
    rc->scale = 0;
    codec_of(t->fmt.base)->row_begin(rc);
    rc->icq = 0, rc->crvq = 0;
    if (t->fmt.icq) icq_row_begin(rc);
    if (t->fmt.crvq) crvq_row_begin(rc);
}

void rd_decode(rowctx *rc, int64_t k0, int n, float *out) {
    codec_of(rc->t->fmt.base)->decode(rc, k0, n, out);
    if (rc->icq) icq_apply(rc, k0, n, out);
    if (rc->crvq) crvq_apply(rc, k0, n, out);
}

int ccq_decode_tile(const ccq_tensor *t, int64_t r0, int64_t r1, int64_t c0, int64_t c1, float *out, int64_t ldo,
                    err_t *e) {
    if (!t || !t->nparts) return err_set(e, ERR_ARG, "decode: no tensor");
    if (r0 < 0 || r1 < r0 || r1 > t->rows || c0 < 0 || c1 < c0 || c1 > t->cols || ldo < c1 - c0)
        return err_set(e, ERR_ARG, "decode: tile rows [%lld, %lld) columns [%lld, %lld) (ldo %lld) outside [%lld, %lld]",
                       (long long)r0, (long long)r1, (long long)c0, (long long)c1, (long long)ldo,
                       (long long)t->rows, (long long)t->cols);
    const int64_t K = t->cols;
    float buf[G];
    rowctx rc;
    for (int64_t r = r0; r < r1; r++) {
        rd_begin(&rc, t, r);
        float *o = out + (r - r0) * ldo;
        for (int64_t k0 = c0 / G * G; k0 < c1; k0 += G) {
            int n = (int)(K - k0 < G ? K - k0 : G);
            rd_decode(&rc, k0, n, buf);
            int64_t a = k0 > c0 ? k0 : c0, b = k0 + n < c1 ? k0 + n : c1;
            memcpy(o + (a - c0), buf + (a - k0), sizeof(float) * (size_t)(b - a));
        }
    }
    return 0;
}

int ccq_decode_row(const ccq_tensor *t, int64_t r, float *out, err_t *e) {
    return ccq_decode_tile(t, r, r + 1, 0, t ? t->cols : 0, out, t ? t->cols : 0, e);
}

typedef struct {
    const ccq_tensor *t;
    float *out;
} dec_job;

static void dec_rows(void *ctx, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    dec_job *j = (dec_job *)ctx;
    ccq_decode_tile(j->t, r0, r1, 0, j->t->cols, j->out + r0 * j->t->cols, j->t->cols, NULL);
}

int ccq_decode(const ccq_tensor *t, float *out, pool *p, err_t *e) {
    if (!t || !t->nparts) return err_set(e, ERR_ARG, "decode: no tensor");
    dec_job j = {t, out};
    pool_for(p, t->rows, 0, dec_rows, &j);
    return 0;
}

/* ---- the fused product ---- */

#define RB 4 /* rows decoded together */

/* lane[(t * RB + i) * 8 + l] += sum over j = l, l + 8, ... < 64 (in order) of w[i][j] * x[t * ldx + j],
 * for i < RB, t < T: each row's sum for each vector runs in 8 lanes across all the row's groups and
 * is added up once at the end (ccq_dot), not per group (that horizontal sum cost as much as the
 * products). Rows past the block's end are zeros in w; their sums land in lanes the caller ignores.
 * Compiled 8-wide for AVX2, and 4-wide elsewhere as two 4-lane halves of the same 8 lanes (GCC splits
 * 8-wide vectors badly where they do not exist): the same additions in the same order, so logits
 * never depend on the CPU (tests/test_ccq_simd.c). */
#define NL 8 /* lanes per sum */
#define KERNEL_BODY(VF, W)                                                                               \
    for (int64_t t = 0; t < T; t++) {                                                                    \
        const float *xt = x + t * ldx;                                                                   \
        float *lt = lane + t * RB * NL;                                                                  \
        VF a0, a1, a2, a3, b0, b1, b2, b3, xv, wv;                                                       \
        memcpy(&a0, lt, sizeof a0), memcpy(&a1, lt + NL, sizeof a1);                                     \
        memcpy(&a2, lt + 2 * NL, sizeof a2), memcpy(&a3, lt + 3 * NL, sizeof a3);                        \
        if (W == 4) {                                                                                    \
            memcpy(&b0, lt + 4, sizeof b0), memcpy(&b1, lt + NL + 4, sizeof b1);                         \
            memcpy(&b2, lt + 2 * NL + 4, sizeof b2), memcpy(&b3, lt + 3 * NL + 4, sizeof b3);            \
        }                                                                                                \
        for (int j = 0; j < G; j += 8) {                                                                 \
            memcpy(&xv, xt + j, sizeof xv);                                                              \
            memcpy(&wv, w[0] + j, sizeof wv), a0 += wv * xv;                                             \
            memcpy(&wv, w[1] + j, sizeof wv), a1 += wv * xv;                                             \
            memcpy(&wv, w[2] + j, sizeof wv), a2 += wv * xv;                                             \
            memcpy(&wv, w[3] + j, sizeof wv), a3 += wv * xv;                                             \
            if (W == 4) { /* lanes 4..7 */                                                               \
                memcpy(&xv, xt + j + 4, sizeof xv);                                                      \
                memcpy(&wv, w[0] + j + 4, sizeof wv), b0 += wv * xv;                                     \
                memcpy(&wv, w[1] + j + 4, sizeof wv), b1 += wv * xv;                                     \
                memcpy(&wv, w[2] + j + 4, sizeof wv), b2 += wv * xv;                                     \
                memcpy(&wv, w[3] + j + 4, sizeof wv), b3 += wv * xv;                                     \
            }                                                                                            \
        }                                                                                                \
        memcpy(lt, &a0, sizeof a0), memcpy(lt + NL, &a1, sizeof a1);                                     \
        memcpy(lt + 2 * NL, &a2, sizeof a2), memcpy(lt + 3 * NL, &a3, sizeof a3);                        \
        if (W == 4) {                                                                                    \
            memcpy(lt + 4, &b0, sizeof b0), memcpy(lt + NL + 4, &b1, sizeof b1);                         \
            memcpy(lt + 2 * NL + 4, &b2, sizeof b2), memcpy(lt + 3 * NL + 4, &b3, sizeof b3);            \
        }                                                                                                \
    }

typedef float v4 __attribute__((vector_size(16)));
static void kernel4(const float (*w)[G], const float *x, int64_t ldx, int64_t T, float *lane) { KERNEL_BODY(v4, 4) }

#if defined(__x86_64__) && defined(__GNUC__)
typedef float v8 __attribute__((vector_size(32)));
__attribute__((target("avx2"))) static void kernel8_one(const float (*w)[G], const float *x, float *lane) {
    const int64_t T = 1, ldx = 0;
    KERNEL_BODY(v8, 8)
}

/* Two vectors at a time: eight independent sums instead of four, so the additions do not wait on each
 * other's latency; every lane still gets KERNEL_BODY's additions in KERNEL_BODY's order. */
__attribute__((target("avx2"))) static void kernel8(const float (*w)[G], const float *x, int64_t ldx, int64_t T,
                                                    float *lane) {
    int64_t t = 0;
    for (; t + 2 <= T; t += 2) {
        const float *x0 = x + t * ldx, *x1 = x0 + ldx;
        float *l0 = lane + t * RB * NL, *l1 = l0 + RB * NL;
        v8 a0, a1, a2, a3, c0, c1, c2, c3, xv, yv, wv;
        memcpy(&a0, l0, 32), memcpy(&a1, l0 + 8, 32), memcpy(&a2, l0 + 16, 32), memcpy(&a3, l0 + 24, 32);
        memcpy(&c0, l1, 32), memcpy(&c1, l1 + 8, 32), memcpy(&c2, l1 + 16, 32), memcpy(&c3, l1 + 24, 32);
        for (int j = 0; j < G; j += 8) {
            memcpy(&xv, x0 + j, sizeof xv), memcpy(&yv, x1 + j, sizeof yv);
            memcpy(&wv, w[0] + j, sizeof wv), a0 += wv * xv, c0 += wv * yv;
            memcpy(&wv, w[1] + j, sizeof wv), a1 += wv * xv, c1 += wv * yv;
            memcpy(&wv, w[2] + j, sizeof wv), a2 += wv * xv, c2 += wv * yv;
            memcpy(&wv, w[3] + j, sizeof wv), a3 += wv * xv, c3 += wv * yv;
        }
        memcpy(l0, &a0, 32), memcpy(l0 + 8, &a1, 32), memcpy(l0 + 16, &a2, 32), memcpy(l0 + 24, &a3, 32);
        memcpy(l1, &c0, 32), memcpy(l1 + 8, &c1, 32), memcpy(l1 + 16, &c2, 32), memcpy(l1 + 24, &c3, 32);
    }
    if (t < T) kernel8_one(w, x + t * ldx, lane + t * RB * NL); /* the last vector of an odd count */
}
static void (*kernel64)(const float (*)[G], const float *, int64_t, int64_t, float *);
static pthread_once_t pick_once = PTHREAD_ONCE_INIT;
static void pick(void) { kernel64 = simd_avx2() ? kernel8 : kernel4; }
#else
static void (*const kernel64)(const float (*)[G], const float *, int64_t, int64_t, float *) = kernel4;
static pthread_once_t pick_once = PTHREAD_ONCE_INIT;
static void pick(void) {}
#endif

/* The 8 lanes of a sum, added in a fixed order. */
static float lanes_sum(const float *l) { return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])); }

#define TCHUNK 256 /* vectors whose sums are kept on the stack at once */

int ccq_dot(const ccq_tensor *t, int64_t r0, int64_t r1, const float *x, int64_t ldx, int64_t T, float *y,
            int64_t ldy, err_t *e) {
    if (!t || !t->nparts) return err_set(e, ERR_ARG, "dot: no tensor");
    if (r0 < 0 || r1 < r0 || r1 > t->rows || T < 0 || (T > 0 && (ldx < t->cols || ldy < r1 - r0 || !x || !y)))
        return err_set(e, ERR_ARG, "dot: rows [%lld, %lld) of %lld, T %lld, ldx %lld, ldy %lld", (long long)r0,
                       (long long)r1, (long long)t->rows, (long long)T, (long long)ldx, (long long)ldy);
    const int64_t K = t->cols;
    const base_codec *codec = codec_of(t->fmt.base);
    if (T == 1 && codec->dotrow && !t->fmt.icq && !t->fmt.crvq) {
        /* One vector (the decode step): decode and multiply in registers, nothing stored. */
        rowctx rc;
        for (int64_t r = r0; r < r1; r++) {
            rd_begin(&rc, t, r);
            y[r - r0] = codec->dotrow(&rc, x);
        }
        return 0;
    }
    pthread_once(&pick_once, pick);
    rowctx rc[RB];
    float w[RB][G] __attribute__((aligned(32)));
    float lane[TCHUNK * RB * NL];
    for (int64_t rb = r0; rb < r1; rb += RB) {
        int nr = (int)(r1 - rb < RB ? r1 - rb : RB);
        for (int64_t tc = 0; tc < T; tc += TCHUNK) {
            /* Very large T: the group is decoded again per chunk of TCHUNK vectors, which keeps the
             * sums on the stack; at that size the products dwarf the decoding. */
            int64_t nt = T - tc < TCHUNK ? T - tc : TCHUNK;
            for (int i = 0; i < nr; i++) rd_begin(&rc[i], t, rb + i);
            memset(lane, 0, sizeof(float) * (size_t)(nt * RB * NL));
            memset(w, 0, sizeof w);
            for (int64_t k0 = 0; k0 < K; k0 += G) {
                int n = (int)(K - k0 < G ? K - k0 : G);
                for (int i = 0; i < nr; i++) rd_decode(&rc[i], k0, n, w[i]);
                const float *xk = x + tc * ldx + k0;
                if (n == G) {
                    kernel64(w, xk, ldx, nt, lane);
                } else { /* a short last group: into the same lanes, plainly */
                    for (int64_t tt = 0; tt < nt; tt++)
                        for (int i = 0; i < nr; i++)
                            for (int j = 0; j < n; j++) lane[(tt * RB + i) * NL + j % NL] += w[i][j] * xk[tt * ldx + j];
                }
            }
            for (int64_t tt = 0; tt < nt; tt++)
                for (int i = 0; i < nr; i++) y[(tc + tt) * ldy + (rb - r0) + i] = lanes_sum(lane + (tt * RB + i) * NL);
        }
    }
    return 0;
}
