/* base/vdot.h: the dot product of one float vector with one weight row stored as f32, bf16, int8 or
 * packed 4-bit: the CPU's one-token products. A decode step reads every weight once per token, so these
 * loops set the CPU engine's speed; the weights are converted in registers, never stored.
 *
 * The additions are fixed, whatever the CPU: element k's product goes to lane k mod 32 (lanes add in
 * order of k), then the 32 lanes are summed by a fixed pairwise tree (lane i += lane i + w for
 * w = 16, 8, 4, 2, 1). The 8-wide AVX2 path and the 4-wide path make exactly these operations, so the
 * result is the same bits on every CPU (ERNIE_NO_AVX2 picks the 4-wide one, base/simd.h). Products and
 * sums are separate float operations, never fused. Any K >= 0 (K = 0 gives 0); no alignment needed. */
#ifndef ERNIE_BASE_VDOT_H
#define ERNIE_BASE_VDOT_H

#include <stdint.h>

/* sum w[k] x[k], w: K floats (any alignment) */
float vd_f32(const void *w, const float *x, int64_t K);
/* sum bf16(w[k]) x[k], w: K bf16 values (any alignment) */
float vd_bf16(const void *w, const float *x, int64_t K);
/* sum q[k] x[k], q: K int8 (the caller applies the row's scale) */
float vd_i8(const int8_t *q, const float *x, int64_t K);
/* sum (n_k - 8) x[k], n_k the low nibble of byte k/2 for even k, the high nibble for odd k; K even */
float vd_u4(const uint8_t *q, const float *x, int64_t K);

/* y[i] += a * x[i] for i < n (a multiply, then an add, per element: the same bits at any width). */
void vd_axpy(float *y, float a, const float *x, int64_t n);

/* Runs `iters` rounds of independent vector multiply-then-add chains at the chosen width (the products'
 * own arithmetic, no FMA) and returns the multiply-adds done: the yardstick of a compute-bound product,
 * timed by the caller. The result keeps the work from being optimised away only through *sink. */
double vd_madd_work(int64_t iters, float *sink);

/* The two widths behind the calls above, so that a test can compare both on one machine: wide is NULL
 * where the CPU has no AVX2 (ERNIE_NO_AVX2 does not change these, only the choice above). */
typedef struct {
    float (*f32)(const void *w, const float *x, int64_t K);
    float (*bf16)(const void *w, const float *x, int64_t K);
    float (*i8)(const int8_t *q, const float *x, int64_t K);
    float (*u4)(const uint8_t *q, const float *x, int64_t K);
    void (*axpy)(float *y, float a, const float *x, int64_t n);
} vd_impl;
const vd_impl *vd_narrow(void);
const vd_impl *vd_wide(void);

#endif
