/* kernels/cuda/qgemv.h: products of quantized weights with one activation vector (y = W x) or a small
 * batch of them on the GPU, and the two expert products of one MoE layer (one token, or a small batch of
 * routed tokens), as C launch wrappers over kernels/cuda/qgemv.cu.
 *
 * Formats (spec/ccq.md; the storage layout is the model file's, row-major, one row per output channel):
 *   bf16, wint8, wint4: read as stored.
 *   ccq2.75, ccq2.5, ccq2.06: read from the tiled layout of kernels/cuda/qlayout.cuh, made once at load
 *   time on the GPU by qmat_tile: the bytes of each 16-row tile and 256-column unit in one contiguous
 *   block, in the order the kernels' lanes use them (the same bytes as stored, plus zero padding of rows
 *   to the tile and of K to 256). To find the 64 weights of (expert e, row r, group G) of a tiled weight
 *   m: ql_row_pos(r, m->n, m->layout, &j, &p) gives tile j and tile row p; the block is at
 *   m->q + ql_block_offset(fmt, e, j, G / 4, m->n, m->k, m->layout); ql_group_bytes(fmt, block, p, G % 4,
 *   out, &local4) rebuilds the group's stored bytes (22 / 20 / 16 + the ccq2.06 local scale), which decode
 *   as spec/ccq.md says (all in kernels/cuda/qlayout.cuh, host and device).
 * Activations x are bf16 (the model's activation type): the tensor cores multiply them exactly with the
 * decoded weights and accumulate in fp32, so the result is what an fp32 dot product of the decoded
 * weights with the bf16 values of x gives, up to fp32 rounding. Outputs are fp32 or bf16.
 *
 * Activation vectors (x, h) must be 16-byte aligned for the ccq formats (they are read 8 at a time).
 * Everything here is asynchronous on the given stream (NULL: the default stream); errors found before
 * the launch (bad shapes, missing workspace) and launch errors are returned as -1 with err filled.
 * Never prints, never exits. */
#ifndef ERNIE_KERNELS_CUDA_QGEMV_H
#define ERNIE_KERNELS_CUDA_QGEMV_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* Tilings for qmat_dev.layout (the same values as QL_* in qlayout.cuh). */
enum { QLAYOUT_STORED = 0, QLAYOUT_ROWS = 1, QLAYOUT_GATE_UP = 2 };

/* The largest batch of the *_batch products. */
#define QGEMV_MAX_T 64

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { QF_BF16, QF_WINT8, QF_WINT4, QF_CCQ275, QF_CCQ25, QF_CCQ206, QF_COUNT } qfmt;

typedef enum { QOUT_F32, QOUT_BF16 } qout;

/* A weight on the device. rows = n_experts * n (stacked experts are expert-major), k columns; every
 * format needs k % 64 == 0. Pointers are device pointers; the ones a format does not use are NULL.
 *   bf16:    q = weight bf16 [rows][k]                              (layout QLAYOUT_STORED)
 *   wint8:   q = qweight int8 [rows][k]; scale f32 [rows]           (layout QLAYOUT_STORED)
 *   wint4:   q = qweight u8 [rows][k/2]; scale f32 [rows]           (layout QLAYOUT_STORED)
 *   ccq2.75, ccq2.5: q = the tiled layout (qmat_tile); super bf16 [rows]
 *   ccq2.06: q = the tiled layout (qmat_tile, local scales inside); code_scale, code_zp f32 [rows];
 *            super bf16 [rows]. Before qmat_tile (layout QLAYOUT_STORED): q = qweight u8 [rows][k/4],
 *            local = local_scale u8 [rows][ceil(k/128)], as in the model file.
 * The products take ccq weights only tiled: QLAYOUT_ROWS for qgemv* and qmoe_down, QLAYOUT_GATE_UP for
 * qmoe_gate_up. tail and tail2 are unused (kept for source compatibility). A zeroed struct has layout 0
 * (as stored). */
typedef struct {
    qfmt fmt;
    int64_t n, k;  /* rows of one expert (output channels), columns (input channels) */
    int n_experts; /* 1 for a plain matrix */
    const void *q, *tail, *tail2;
    const uint8_t *local;
    const float *scale, *code_scale, *code_zp;
    const uint16_t *super;
    int layout; /* QLAYOUT_*: how q is laid out */
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
 * Batches keep (rows rounded up to 16) x T (rounded up to 8) partial sums per split: pass max_rows *
 * max_T rows for them (qgemv_batch reports a workspace too small for its split). Zeroes the counters
 * (synchronously). */
int qgemv_ws_alloc(qgemv_ws *ws, int64_t max_rows, int max_splits, err_t *err);
void qgemv_ws_free(qgemv_ws *ws);

/* Format names as in the model file ("ccq2.06"), or "?". */
const char *qfmt_name(qfmt f);

/* Bytes of the weight's stored parts per row (what a product reads per row): the figure benchmarks
 * count. For ccq2.75/2.5 the stored (not the padded kernel) size. */
double qfmt_row_bytes(qfmt f, int64_t k);

/* ---- load-time layout change for ccq2.75, ccq2.5 and ccq2.06 ---- */

/* Bytes of the tiled layout of n_experts x [n][k] (layout QLAYOUT_ROWS or QLAYOUT_GATE_UP); 0 for a format
 * without one or a bad shape. Equal to the stored bytes when n is a multiple of 16 (8 for the gate/up
 * tiling's n/2) and k of 256; otherwise the padding adds at most 15 rows per expert and 192 columns. */
size_t qmat_tile_bytes(qfmt f, int n_experts, int64_t n, int64_t k, int layout);

/* Rewrites the stored weight that m describes (layout QLAYOUT_STORED: q, and local for ccq2.06, on the
 * device) into the tiled layout at dst (device, qmat_tile_bytes of it, 16-byte aligned), on the stream,
 * then points m->q at dst, sets m->layout and clears m->local. The source must stay alive until the
 * stream has run the copy. QLAYOUT_GATE_UP is for gate/up stacks (n = 2 * inter, gate rows first) that
 * qmoe_gate_up will read; QLAYOUT_ROWS for everything else. A GPU kernel: about the time of one read and
 * one write of the weight (docs/perf-notes.md). */
int qmat_tile(qmat_dev *m, int layout, void *dst, void *stream, err_t *err);

/* ---- products ---- */

/* y[n] = sum_k W[n][k] x[k] for a plain matrix (m->n_experts must be 1). x bf16 [k]; y fp32 or bf16 [n].
 * ws may be NULL (then the product is never split across blocks, which is slower for small n). */
int qgemv(const qmat_dev *m, const uint16_t *x, void *y, qout yt, qgemv_ws *ws, void *stream, err_t *err);

/* The same for T tokens (1..QGEMV_MAX_T): x bf16 [T][k], y [T][n], y[t][n] = sum_k W[n][k] x[t][k]. Each
 * weight byte is read and decoded once for all T tokens (the mma's B columns are tokens). Every format.
 * T > 1 needs ws whenever the x of T tokens does not fit a block's shared memory whole (K is then split
 * into parts that are summed through it, in part order): pass one always. T = 1 is qgemv. */
int qgemv_batch(const qmat_dev *m, int T, const uint16_t *x, void *y, qout yt, qgemv_ws *ws, void *stream,
                err_t *err);

/* Gate and up projections of topk experts with SwiGLU: m holds n_experts experts of [2*inter][k] (rows
 * 0..inter-1 the gate, inter..2*inter-1 the up projection of each expert; ccq formats tiled with
 * QLAYOUT_GATE_UP); ids int32 [topk] (device)
 * the selected experts. h[s][c] = silu(gate_s[c]) * up_s[c] for slot s < topk, c < inter; h fp32 or
 * bf16 [topk][inter]. x bf16 [k]. Reads each selected expert's weight bytes once. */
int qmoe_gate_up(const qmat_dev *m, const int32_t *ids, int topk, const uint16_t *x, void *h, qout ht,
                 qgemv_ws *ws, void *stream, err_t *err);

/* Down projection of topk experts, summed with the routing weights: m holds n_experts experts of [n][k]
 * (ccq formats tiled with QLAYOUT_ROWS);
 * y[r] = sum_s route_w[s] * sum_c W_{ids[s]}[r][c] h[s][c]. h bf16 [topk][k]; ids int32 and route_w f32
 * [topk] on the device; y fp32 or bf16 [n]. Needs ws when topk > 1. The sum over slots is done in slot
 * order, so the result does not depend on timing. */
int qmoe_down(const qmat_dev *m, const int32_t *ids, const float *route_w, int topk, const uint16_t *h, void *y,
              qout yt, qgemv_ws *ws, void *stream, err_t *err);

/* ---- several tokens routed to experts (small batches, T = 1..QGEMV_MAX_T) ----
 *
 * The routing of T tokens, each to topk experts, as the grouped products read it (the same offsets and
 * perm as qgemm_grouped in qgemm.h): total = T * topk slots sorted by expert.
 *   offsets int32 [n_experts + 1]: the slots of expert e are offsets[e] .. offsets[e+1] - 1;
 *   perm    int32 [total]: the token of each slot;
 *   slot    int32 [T * topk]: slot[t * topk + j] is the slot of token t's j-th expert (perm's inverse).
 * A token chooses an expert at most once, so an expert has at most T slots. Device arrays; bad values are
 * clamped into range on the device (wrong numbers, never a fault). */
typedef struct {
    int T, topk;
    const int32_t *offsets, *perm, *slot;
} qmoe_route;

/* Builds the routing from the router's choices: ids int32 [T][topk] (device) -> offsets, perm, slot (device
 * arrays of the sizes above, written by one small kernel on the stream), and fills *r. Slots of an expert
 * are in token order. topk <= 64, n_experts <= 4096; ids outside [0, n_experts) are clamped. */
int qmoe_route_build(const int32_t *ids, int T, int topk, int n_experts, int32_t *offsets, int32_t *perm, int32_t *slot,
                     qmoe_route *r, void *stream, err_t *err);

/* Gate and up projections with SwiGLU for every slot, in one launch: m as for qmoe_gate_up (experts of
 * [2*inter][k], ccq formats tiled with QLAYOUT_GATE_UP); x bf16 [T][k]; h fp32 or bf16 [total][inter] in slot
 * order: h[s][c] = silu(gate_e[c] . x[perm[s]]) * (up_e[c] . x[perm[s]]) for the expert e of slot s.
 * Each selected expert's weight bytes are read and decoded once per call for all the tokens that chose it
 * (a block per selected expert and K part; the mma's B columns are its tokens). Needs ws when K is split
 * (x of T tokens too large for shared memory): kparts x total x 2*inter partial sums and n_experts x
 * inter/8 counters, which qgemv_ws_alloc(ws, 2 * inter * max(total, n_experts), 16) covers for k <= 8192
 * (a call reports a workspace too small). The K parts are summed in order: deterministic. */
int qmoe_gate_up_batch(const qmat_dev *m, const qmoe_route *r, const uint16_t *x, void *h, qout ht, qgemv_ws *ws,
                       void *stream, err_t *err);

/* Down projections of every slot with each token's routing-weighted sum, in one launch: m as for qmoe_down
 * (experts of [n][k], ccq formats tiled with QLAYOUT_ROWS); h bf16 [total][k] in slot order (qmoe_gate_up_batch's
 * output); route_w f32 [T][topk] (device), the weight of token t's j-th expert; y fp32 or bf16 [T][n]:
 *   y[t][r] = sum_{j < topk} route_w[t][j] * (W_e[r] . h[slot[t][j]]),  e the expert of that slot.
 * Each selected expert's bytes are read once per call. Always needs ws: every slot's product goes through it
 * (kparts x total x n partial sums, n/16 counters: qgemv_ws_alloc(ws, n * total, 16) for k <= 8192), and the
 * last block to finish an output tile adds a
 * token's experts in the order j = 0 .. topk-1 (and K parts in order): deterministic, no float atomics. */
int qmoe_down_batch(const qmat_dev *m, const qmoe_route *r, const float *route_w, const uint16_t *h, void *y, qout yt,
                    qgemv_ws *ws, void *stream, err_t *err);

#ifdef __cplusplus
}
#endif

#endif
