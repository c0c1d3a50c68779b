/* model/hf_weights.h: serves a Hugging Face checkpoint's weights to the engine under the engine's
 * names (engine.h's eng_lookup), so `ernie run HF_DIR` works without an import. Experts of a layer are
 * stacked into one E*N-row weight (one copy per stacked kind, made on first use); bf16 and f32 tensors
 * are otherwise used in place, F16 is widened to f32. Never prints. */
#ifndef ERNIE_MODEL_HF_WEIGHTS_H
#define ERNIE_MODEL_HF_WEIGHTS_H

#include "kernels/backend.h"
#include "model/engine.h"
#include "model/hf.h"

typedef struct hfw hfw;

/* Wraps an open checkpoint (which must outlive the hfw). */
hfw *hfw_create(hf_ckpt *h);
void hfw_free(hfw *w);

/* The eng_lookup callback; ctx is the hfw. */
const be_weight_src *hfw_lookup(void *ctx, const char *name, err_t *err);

/* The engine config of a checkpoint (is_moe points into out_is_moe, which must hold
 * num_hidden_layers bytes). The correction bias is required when the checkpoint has one. */
void hfw_eng_config(const hf_ckpt *h, eng_config *out, uint8_t *out_is_moe);

/* The engine config of a model config; has_bias says whether MoE layers carry the correction bias. */
void eng_config_from(const cfg_model *c, int has_bias, eng_config *out, uint8_t *out_is_moe);

#endif
