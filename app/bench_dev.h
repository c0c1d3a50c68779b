/* app/bench_dev.h: what the two CUDA kernel benchmarks (app/bench_gpu.c, app/bench_gemm.c) share: device
 * weights with random valid contents in the layout the products read, and timing with CUDA events.
 * Only in builds with CUDA. */
#ifndef ERNIE_APP_BENCH_DEV_H
#define ERNIE_APP_BENCH_DEV_H

#if defined(ERNIE_CUDA) && ERNIE_CUDA

#include <stdint.h>

#include "base/err.h"
#include "kernels/cuda/qgemv.h"

/* A weight of experts x [n][k] on the device: m describes it; buf owns its memory; bytes counts every
 * byte of the format's stored parts (what a product reads). */
typedef struct {
    qmat_dev m;
    void *buf[6];
    double bytes;
} dweight;

/* Random valid contents made on the device from seed (the same seed gives the same weight): bf16 values
 * in [-0.1, 0.1), wint codes with per-row scales, ccq codes with scales that keep every code in range,
 * then the ccq formats tiled with `layout` (QLAYOUT_ROWS, or QLAYOUT_GATE_UP for a gate/up stack). */
int dw_make(dweight *w, qfmt f, int experts, int64_t n, int64_t k, int layout, uint64_t seed, err_t *e);
void dw_free(dweight *w);

/* The median of v[0..n) (sorts v). */
double bench_median(double *v, int n);

/* fn(ctx, i, e) for i = 0..calls-1 is one round. `warm` rounds, then `reps` rounds each between two
 * events: the per-call median and minimum in microseconds (min_us may be NULL). */
typedef int (*bench_call_fn)(void *ctx, int i, err_t *e);
int bench_time_calls(bench_call_fn fn, void *ctx, int calls, int warm, int reps, double *med_us, double *min_us,
                     err_t *e);

#endif
#endif
