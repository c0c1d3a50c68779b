/* tests/gpu/gpu_util.h: what the CUDA kernel tests share: fresh seeds, the codec base of a kernel format,
 * random activations, poisoned device outputs, and running a benchmark from an environment variable. */
#ifndef ERNIE_TESTS_GPU_GPU_UTIL_H
#define ERNIE_TESTS_GPU_GPU_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "app/cli.h"
#include "base/err.h"
#include "base/rng.h"
#include "ccq/ccq.h"
#include "kernels/cuda/qgemv.h"

/* A seed that differs on every run (clock and pid), so every run draws fresh inputs; tests print it on
 * failure. */
uint64_t gt_fresh_seed(void);

/* The codec format whose decode defines kernel format f. */
ccq_base gt_base_of(qfmt f);

/* Uniform in [lo, hi). */
float gt_unif(rng_t *r, float lo, float hi);

/* n activations: normal, with every 97th (from index 3) 30 times larger; xb as bf16, xf the same values
 * as floats. */
void gt_random_x(rng_t *r, uint16_t *xb, float *xf, int64_t n);

/* A device buffer filled with 0xFF bytes (NaN as fp32 and bf16), so an unwritten output shows; NULL with
 * e filled on failure. */
void *gt_poisoned(size_t bytes, err_t *e);

/* When environment variable var is set, runs bench(argc, argv, g) with its value split at spaces as the
 * arguments ("1": none), colours off, --json when json_var is set (json_var may be NULL); returns the
 * benchmark's exit code, or 0 without running when var is unset. */
int gt_bench_from_env(const char *var, const char *json_var, int (*bench)(int, char **, cli_global *));

/* The parts of a random valid encoding of a rows x k weight in format f (every stored value drawn within its
 * valid range: fast enough for the real shapes, and it reaches code words an encoder would rarely pick):
 * lays them out in parts[] (*np of them), each in a malloc'd host[i] the caller frees (also on failure).
 * ccq2.06's code_scale and code_zp are left for the caller's own draw of code lines, at *cs and *zp (NULL
 * for other formats). Returns 1, or 0 after a FAIL. */
int gt_random_parts(qfmt f, int64_t rows, int64_t k, rng_t *r, ccq_part *parts, int *np, void **host, float **cs,
                    float **zp);

#endif
