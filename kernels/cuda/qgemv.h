/* kernels/cuda/qgemv.h: batch-1 products of quantized weights with one activation vector on the GPU
 * (y = W x), and the two expert products of one MoE layer, as C launch wrappers over kernels/cuda/qgemv.cu.
 *
 * Formats (spec/ccq.md; the storage layout is the model file's, row-major, one row per output channel):
 *   bf16, wint8, wint4, ccq2.06: read as stored.
 *   ccq2.75, ccq2.5: read from a kernel layout made once at load time by qmat_repack (16-byte aligned
 *   group heads plus small tails; same number of bytes as stored, plus row padding to 4 groups).
 * Activations x are bf16 (the model's activation type): the tensor cores multiply them exactly with the
 * decoded weights and accumulate in fp32, so the result is what an fp32 dot product of the decoded
 * weights with the bf16 values of x gives, up to fp32 rounding. Outputs are fp32 or bf16.
 *
 * Everything here is asynchronous on the given stream (NULL: the default stream); errors found before
 * the launch (bad shapes, missing workspace) and launch errors are returned as -1 with err filled.
 * Never prints, never exits. */
#ifndef ERNIE_KERNELS_CUDA_QGEMV_H
#define ERNIE_KERNELS_CUDA_QGEMV_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { QF_BF16, QF_WINT8, QF_WINT4, QF_CCQ275, QF_CCQ25, QF_CCQ206, QF_COUNT } qfmt;

typedef enum { QOUT_F32, QOUT_BF16 } qout;

/* A weight on the device. rows = n_experts * n (stacked experts are expert-major), k columns; every
 * format needs k % 64 == 0. Pointers are device pointers; the ones a format does not use are NULL.
 *   bf16:    q = weight bf16 [rows][k]
 *   wint8:   q = qweight int8 [rows][k]; scale f32 [rows]
 *   wint4:   q = qweight u8 [rows][k/2]; scale f32 [rows]
 *   ccq2.06: q = qweight u8 [rows][k/4]; local = local_scale u8 [rows][ceil(k/128)];
 *            code_scale, code_zp f32 [rows]; super bf16 [rows]
 *   ccq2.75: kernel layout from qmat_repack (q = heads, tail = bytes 16..19, tail2 = bytes 20,21 of each
 *            group); super bf16 [rows]
 *   ccq2.5:  kernel layout from qmat_repack (q = heads, tail = words 8,9 of each group); super bf16 [rows] */
typedef struct {
    qfmt fmt;
    int64_t n, k;  /* rows of one expert (output channels), columns (input channels) */
    int n_experts; /* 1 for a plain matrix */
    const void *q, *tail, *tail2;
    const uint8_t *local;
    const float *scale, *code_scale, *code_zp;
    const uint16_t *super;
} qmat_dev;

/* Scratch for products that are split across thread blocks and summed at the end (K split, experts
 * summed in the down projection): fp32 partial sums and arrival counters, which must start at zero and
 * are left at zero by every call. One workspace per stream: two products running at the same time
 * must not share one. */
typedef struct {
    float *partial;
    int *count;
    size_t partial_floats, count_ints;
} qgemv_ws;

/* Allocates a workspace that fits every product in this header up to max_rows output rows per split and
 * max_splits splits (64 rows x 64 splits is plenty for the 300B model: use qgemv_ws_alloc(ws, 65536, 64)).
 * Zeroes the counters (synchronously). */
int qgemv_ws_alloc(qgemv_ws *ws, int64_t max_rows, int max_splits, err_t *err);
void qgemv_ws_free(qgemv_ws *ws);

/* Format names as in the model file ("ccq2.06"), or "?". */
const char *qfmt_name(qfmt f);

/* Bytes of the weight's stored parts per row (what a product reads per row): the figure benchmarks
 * count. For ccq2.75/2.5 the stored (not the padded kernel) size. */
double qfmt_row_bytes(qfmt f, int64_t k);

/* ---- load-time layout change for ccq2.75 and ccq2.5 ---- */

/* Bytes of the kernel layout of a [rows][k] ccq2.75 or ccq2.5 weight (0 for formats read as stored). */
size_t qmat_repack_bytes(qfmt f, int64_t rows, int64_t k);

/* Converts a stored ccq2.75 qweight (u8 [rows][k/64*22]) or ccq2.5 qweight (u16 [rows][k/64*10]) at src
 * (device) into the kernel layout in dst (device, qmat_repack_bytes of it, 16-byte aligned), and points
 * m->q, m->tail, m->tail2 into dst. The other fields of m are not touched. */
int qmat_repack(qfmt f, const void *src, int64_t rows, int64_t k, void *dst, qmat_dev *m, void *stream,
                err_t *err);

/* ---- products ---- */

/* y[n] = sum_k W[n][k] x[k] for a plain matrix (m->n_experts must be 1). x bf16 [k]; y fp32 or bf16 [n].
 * ws may be NULL (then the product is never split across blocks, which is slower for small n). */
int qgemv(const qmat_dev *m, const uint16_t *x, void *y, qout yt, qgemv_ws *ws, void *stream, err_t *err);

/* Gate and up projections of topk experts with SwiGLU: m holds n_experts experts of [2*inter][k] (rows
 * 0..inter-1 the gate, inter..2*inter-1 the up projection of each expert); ids int32 [topk] (device)
 * the selected experts. h[s][c] = silu(gate_s[c]) * up_s[c] for slot s < topk, c < inter; h fp32 or
 * bf16 [topk][inter]. x bf16 [k]. Reads each selected expert's weight bytes once. */
int qmoe_gate_up(const qmat_dev *m, const int32_t *ids, int topk, const uint16_t *x, void *h, qout ht,
                 qgemv_ws *ws, void *stream, err_t *err);

/* Down projection of topk experts, summed with the routing weights: m holds n_experts experts of [n][k];
 * y[r] = sum_s route_w[s] * sum_c W_{ids[s]}[r][c] h[s][c]. h bf16 [topk][k]; ids int32 and route_w f32
 * [topk] on the device; y fp32 or bf16 [n]. Needs ws when topk > 1. The sum over slots is done in slot
 * order, so the result does not depend on timing. */
int qmoe_down(const qmat_dev *m, const int32_t *ids, const float *route_w, int topk, const uint16_t *h, void *y,
              qout yt, qgemv_ws *ws, void *stream, err_t *err);

/* ccq2.06 plain and gate/up products use per-row lookup tables in shared memory (the fast path) unless
 * this is called with 0; then, as always for the down projection, the code is decoded arithmetically.
 * For benchmarks and tests of both paths; not thread-safe. */
void qgemv_ccq206_use_table(int on);

#ifdef __cplusplus
}
#endif

#endif
