/* model/engine.h: the ERNIE-4.5 forward pass (dense and MoE) over a backend, with its KV cache.
 *
 * The engine knows the network and nothing about instruction sets: every operation goes through
 * kernels/backend.h. It reads weights by name through a lookup callback, so it does not care whether
 * they come from a model file, an embedded asset or a test. Positions are implicit: each forward call
 * appends its tokens after the ones already in the cache. */
#ifndef ERNIE_MODEL_ENGINE_H
#define ERNIE_MODEL_ENGINE_H

#include <stdint.h>

#include "base/err.h"
#include "kernels/backend.h"

typedef struct {
    int hidden, n_layers, n_heads, n_kv_heads, head_dim, vocab;
    int inter;                            /* dense SwiGLU width */
    int n_experts, moe_k, moe_inter;      /* n_experts == 0: a dense model */
    int shared_inter;                     /* moe_inter * num_shared_experts; 0 = none */
    float eps, rope_theta, moe_norm_min;
    int tie_embeddings;
    int moe_bias;                         /* MoE layers carry e_score_correction_bias (aux-free) */
    const uint8_t *is_moe;                /* [n_layers] (NULL for dense) */
} eng_config;

/* Finds a stored weight by its name without the part suffix ("model.layers.0.self_attn.q_proj",
 * "model.layers.1.mlp.experts.gate_proj" for a stacked kind, "model.layers.1.mlp.gate" for the router,
 * "model.layers.1.mlp.moe_statics.e_score_correction_bias", "model.norm", "lm_head"). Returns NULL and
 * fills err when absent. The returned struct may be reused by the next call. */
typedef const be_weight_src *(*eng_lookup)(void *ctx, const char *name, err_t *err);

typedef struct eng eng;

/* Loads every weight the config needs onto the backend and allocates the KV cache for ctx positions
 * and activations for prefill chunks of up to max_batch tokens. */
int eng_create(eng **out, const eng_config *cfg, be *b, eng_lookup lookup, void *lookup_ctx, int ctx,
               int max_batch, err_t *err);
void eng_free(eng *e);

/* Runs ids[0..T) at positions n_past .. n_past+T-1 (prefill in chunks of max_batch), then advances
 * n_past. If logits is not NULL it receives fp32 logits [vocab] of the last token (all_rows = 0) or
 * [T, vocab] of every token (all_rows = 1), in host memory. Fails without changing n_past when the
 * tokens do not fit the context. */
int eng_forward(eng *e, const int32_t *ids, int T, float *logits, int all_rows, err_t *err);

/* Tokens in the cache, the context size, and forgetting everything from position n on (n <= n_past):
 * eng_truncate(e, 0) starts a new conversation. */
int eng_n_past(const eng *e);
int eng_ctx(const eng *e);
void eng_truncate(eng *e, int n);

const eng_config *eng_cfg(const eng *e);

/* ---- observing the inputs of the weight products (calibration) ---- */

/* One weight product's input, in host memory: x [T][K] rows that the weight named `weight` (as
 * eng_lookup names it) multiplies. For stacked experts, expert says which one and x holds only the
 * tokens routed to it (for down_proj: the SwiGLU activations of that expert, which the engine computes
 * a second time for the observer). expert is -1 for the other weights. */
typedef struct {
    const char *weight;
    int expert;
    const float *x;
    int T, K;
} eng_obs;

typedef void (*eng_observer)(void *ctx, const eng_obs *o);

/* From now on, every eng_forward calls fn for each weight product's input (q, k and v each get the same
 * rows, as do gate and up). Observing copies every activation to the host and runs the routed experts'
 * gate and up products twice, so it is for calibration, not for serving. fn NULL stops observing.
 * Allocates its scratch here (ERR_NOMEM). */
int eng_set_observer(eng *e, eng_observer fn, void *ctx, err_t *err);

#endif
