/* kernels/cuda/qgemm.h: products of quantized weights with many bf16 activation rows on the GPU (long
 * prompts): Y = X W^T, plain and grouped over the experts of one MoE layer, as C launch wrappers over
 * kernels/cuda/qgemm.cu. The batch-1 products are in qgemv.h; the weight (qmat_dev) and the formats are
 * described there: bf16, wint8, wint4 as stored (layout QLAYOUT_STORED); ccq2.75 and ccq2.5 in the tiled
 * layout made by qmat_tile (QLAYOUT_ROWS or QLAYOUT_GATE_UP); ccq2.06 tiled or as stored.
 *
 * Arithmetic: each weight is decoded exactly to the small integer its format stores (times the local
 * scale where that stays exact in bf16), the tensor cores multiply it with the bf16 activations and sum
 * each 64-column step, the steps are added in fp32 registers, and the per-row (and for ccq2.5 / ccq2.06
 * the per-group) scales are applied to the fp32 sums. So the result is an fp32 dot product of the decoded
 * weights with the bf16 values of X, up to fp32 rounding (the same function the codec's ccq_decode
 * followed by a product gives): measured within 4e-7 relative at K = 28672.
 *
 * Everything here is asynchronous on the given stream (NULL: the default stream); errors found before
 * the launch (bad shapes, NULL or misaligned pointers) and launch errors are returned as -1 with err
 * filled. Never prints, never exits. No workspace: the weight is decoded in shared memory. */
#ifndef ERNIE_KERNELS_CUDA_QGEMM_H
#define ERNIE_KERNELS_CUDA_QGEMM_H

#include <stdint.h>

#include "base/err.h"
#include "kernels/cuda/qgemv.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Y[t][r] = sum_c W[r][c] X[t][c] for t < T, r < m->n (m->n_experts must be 1). X bf16 [T][k] row-major,
 * 16-byte aligned, T * k < 2^31; Y fp32 or bf16 [T][n] row-major. T >= 1 (any value; no padding). */
int qgemm(const qmat_dev *m, const uint16_t *x, int64_t T, void *y, qout yt, void *stream, err_t *err);

/* The experts' products in one launch. m holds n_experts experts of [n][k] (expert-major rows). Rows of
 * Y are token slots sorted by expert: slot i in [offsets[e], offsets[e+1]) belongs to expert e, and
 *   Y[i][r] = sum_c W_e[r][c] X[src(i)][c],  src(i) = perm ? perm[i] : i.
 * offsets int32 [n_experts + 1] and perm int32 [total] are device arrays; offsets must rise from 0 to
 * total and perm values lie in [0, x_rows) (out-of-range values are clamped into range on the device,
 * so bad routing data gives wrong numbers, never a fault). X bf16 [x_rows][k] (x_rows * k < 2^31);
 * Y fp32 or bf16 [total][n]. total may be 0 (nothing is launched). */
int qgemm_grouped(const qmat_dev *m, const uint16_t *x, int64_t x_rows, const int32_t *perm, const int32_t *offsets,
                  int64_t total, void *y, qout yt, void *stream, err_t *err);

/* Which kernel the products use. QGEMM_AUTO: on Hopper (when this binary holds its sm_90a code) the
 * wgmma kernel with fp32 sums per 64-column step (QGEMM_WGMMA_FLUSH), elsewhere (Ampere, Ada) the mma.sync
 * kernel, which sums the same way. QGEMM_WGMMA instead lets the tensor cores accumulate over all of K for
 * the formats without group scales (bf16, wint8, wint4, ccq2.75): their additions truncate, so the error
 * grows with K (3e-5 relative at K = 28672); ccq2.5 and ccq2.06 always use per-step sums. Forcing a wgmma
 * path where it cannot run makes the products fail with ERR_UNSUPPORTED. For tests and benchmarks; not
 * thread-safe. */
typedef enum { QGEMM_AUTO = 0, QGEMM_MMA = 1, QGEMM_WGMMA = 2, QGEMM_WGMMA_FLUSH = 3 } qgemm_path;
void qgemm_set_path(qgemm_path p);

/* The kernel QGEMM_AUTO uses on the current device ("wgmma", "wgmma-flush" or "mma.sync"), or NULL with
 * err filled when the device cannot be queried. The first call on a device (and the first product) runs
 * a one-thread probe kernel synchronously to see which of the binary's machine codes the driver loaded. */
const char *qgemm_auto_path(err_t *err);

#ifdef __cplusplus
}
#endif

#endif
