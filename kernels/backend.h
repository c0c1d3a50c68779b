/* kernels/backend.h: the seam between the engine and the hardware.
 *
 * The engine (model/engine.c) knows ERNIE and nothing about instruction sets; a backend (CPU or
 * CUDA) knows how to run each operation fast and nothing about ERNIE. This header is the only thing
 * the engine includes from kernels/. A backend is a table of function pointers behind an opaque
 * handle (ggml-backend style), so the engine never includes a CUDA header.
 *
 * Conventions:
 * - Memory: be->alloc returns memory the backend computes on (host RAM for the CPU, device memory for
 *   CUDA). The engine does pointer arithmetic on it (typed float* offsets) but never dereferences it.
 * - Activations are fp32, row-major [T, dim] (T tokens). A backend may compute internally in another
 *   precision as long as results stay within the tolerance it documents.
 * - Weights are loaded once from host memory (usually the mmapped model file) into backend-resident
 *   handles; quantized formats are read through the codec's fused decode, never expanded.
 * - Compute operations return nothing; a failure (a CUDA launch error) is latched and reported by the
 *   next be_sync. Operations run in issue order. */
#ifndef ERNIE_KERNELS_BACKEND_H
#define ERNIE_KERNELS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct be be;
typedef struct be_weight be_weight;
typedef struct be_kv be_kv;

/* One stored weight as the model file holds it: a codec format and its parts (host memory). */
typedef struct {
    const char *name;   /* for messages: "model.layers.3.mlp.experts.down_proj" */
    const char *format; /* codec format name ("bf16", "wint8", "ccq2.06", ...) or "f32" */
    int64_t rows, cols; /* N (stacked experts: E*N), K */
    int nparts;
    struct {
        const char *name; /* "weight", "qweight", "scale", ... */
        const void *data;
        size_t nbytes;
    } part[12];
} be_weight_src;

typedef struct {
    const char *name;
    void (*destroy)(be *b);

    /* memory */
    void *(*alloc)(be *b, size_t bytes, err_t *err);
    void (*free)(be *b, void *p);
    int (*upload)(be *b, void *dst, const void *src, size_t n, err_t *err);
    int (*download)(be *b, void *dst, const void *src, size_t n, err_t *err);
    int (*sync)(be *b, err_t *err);

    /* weights: the source bytes must stay valid while the weight lives (the CPU backend reads them in
     * place; CUDA copies) */
    be_weight *(*weight_load)(be *b, const be_weight_src *src, err_t *err);
    void (*weight_free)(be *b, be_weight *w);

    /* KV cache for nlayers x ctx positions x kvdim (= n_kv_heads * head_dim), keys and values. */
    be_kv *(*kv_create)(be *b, int nlayers, int ctx, int kvdim, err_t *err);
    void (*kv_free)(be *b, be_kv *kv);

    /* x[t, :] = row ids[t] of the table (dequantized). ids is host memory, T entries. */
    void (*embed)(be *b, const be_weight *table, const int32_t *ids, int T, float *x);

    /* y[t] = x[t] * rsqrt(mean(x[t]^2) + eps) * w (fp32), w fp32 [H] in backend memory.
     * y may equal x. */
    void (*rmsnorm)(be *b, const float *x, const float *w, float eps, int T, int H, float *y);

    /* y[T, N] = x[T, K] . W[row0 .. row0+N)^T, K = W's cols. */
    void (*matmul)(be *b, const be_weight *W, int64_t row0, int64_t N, const float *x, int T, float *y);

    /* Interleaved-pair rotary embedding (GPT-J style, spec §2.5) in place on x[T, nheads*hd], token t
     * at position pos0 + t. */
    void (*rope)(be *b, float *x, int T, int nheads, int hd, int pos0, float theta);

    /* Stores k, v [T, kvdim] of `layer` at positions pos0 .. pos0+T-1. */
    void (*kv_store)(be *b, be_kv *kv, int layer, int pos0, int T, const float *k, const float *v);

    /* Causal GQA attention: q [T, nq*hd] at positions pos0.., against the cache positions
     * 0 .. pos0+t; out [T, nq*hd]. Scale 1/sqrt(hd); kv head j serves q heads j*g .. j*g+g-1. */
    void (*attention)(be *b, const be_kv *kv, int layer, const float *q, int T, int pos0, int nq, int nkv, int hd,
                      float *out);

    /* out[t, i] = silu(gate[t, i]) * up[t, i], n = T * I. out may equal gate. */
    void (*swiglu)(be *b, const float *gate, const float *up, int64_t n, float *out);

    /* y[i] += x[i] */
    void (*add)(be *b, float *y, const float *x, int64_t n);

    /* MoE routing (spec §2.7): logits = x . router^T in fp32, p = softmax, the k experts with the
     * largest p + bias (bias may be NULL), weights p_sel / max(sum p_sel, norm_min). ids [T, k] int32
     * and w [T, k] fp32 are backend memory, sorted by ascending expert id within each token. */
    void (*moe_route)(be *b, const be_weight *router, const float *bias, const float *x, int T, int E, int k,
                      float norm_min, int32_t *ids, float *w);

    /* Routed experts: out[t] = sum over the k selected e (ascending) of w[t,j] * down_e(silu(gate_e x)
     * * up_e x). gate/up are stacked [E*I, H], down [E*H, I]. out [T, H] is overwritten. */
    void (*moe_experts)(be *b, const be_weight *gate, const be_weight *up, const be_weight *down, const float *x,
                        int T, int H, int I, int k, const int32_t *ids, const float *w, float *out);

    /* Bytes of backend memory in use and free (for planning the context size); 0 if unknown. */
    void (*mem_info)(be *b, uint64_t *used, uint64_t *free_bytes);
} be_ops;

struct be {
    const be_ops *ops;
    void *impl;
    int threads;
};

/* The CPU backend with a pool of nthreads (0 = all cores). */
be *be_cpu_create(int nthreads, err_t *err);

#endif
