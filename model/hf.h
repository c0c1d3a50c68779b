/* model/hf.h: a Hugging Face ERNIE-4.5 checkpoint folder, read in place.
 *
 * A folder holds config.json, optionally generation_config.json, and either
 * model.safetensors.index.json (its "weight_map" says which shard holds each tensor) with the shards,
 * or a single model.safetensors. Opening maps every shard and validates it, so a missing or truncated
 * shard is found at once, not an hour into an import. Tensors are found by their HF name; the MTP
 * head's tensors (any name containing "mtp", spec P14) and our writer's "__pad__.*" fillers are
 * invisible. hf_check compares the tensors
 * with what the config needs (spec/ernie.md §3). Never copies weights, never prints.
 */
#ifndef ERNIE_MODEL_HF_H
#define ERNIE_MODEL_HF_H

#include <stdint.h>

#include "base/err.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "tokenizer/hf_special.h"

typedef struct hf_ckpt hf_ckpt;

/* Opens a checkpoint folder: config (validated), generation defaults (ERNIE's when the file is
 * absent), the index or the single file, and every shard. Errors name the file at fault and, for a
 * weight-map problem, the tensor. */
int hf_open(hf_ckpt **out, const char *dir, err_t *e);
void hf_close(hf_ckpt *h);

const char *hf_dir(const hf_ckpt *h);
const cfg_model *hf_config(const hf_ckpt *h);
const cfg_gen *hf_generation(const hf_ckpt *h);
/* 1 if generation_config.json was present. */
int hf_has_generation_config(const hf_ckpt *h);

/* Shard file names (relative to the folder), in the order first met. */
int hf_nshards(const hf_ckpt *h);
const char *hf_shard(const hf_ckpt *h, int i);

/* Every visible tensor, sorted by name. shard (may be NULL) receives its shard's file name. */
int hf_count(const hf_ckpt *h);
const st_tensor *hf_at(const hf_ckpt *h, int i, const char **shard);
/* By exact HF name; NULL if absent or an MTP tensor. */
const st_tensor *hf_find(const hf_ckpt *h, const char *name, const char **shard);
/* 1 for names loaders skip: the MTP head. */
int hf_is_skipped(const char *name);

/* Converts elements [first, first + n) of a BF16, F16 or F32 tensor to float. Other dtypes are
 * ERR_UNSUPPORTED; a range past the end is ERR_ARG. Works on unaligned data. */
int hf_to_float(const st_tensor *t, uint64_t first, uint64_t n, float *dst, err_t *e);

/* What the config needs, one entry per tensor (spec §3), in model order: embedding, then per layer
 * norms, attention, dense MLP or router + bias + experts + shared experts, then the final norm and,
 * when untied, lm_head. */
typedef struct {
    char name[96];
    int ndim;
    int64_t shape[2];
    int f32_only;   /* router and correction bias: F32 (spec importer rule b) */
    int alt_vector; /* the bias may also be stored as [E] */
} hf_need;

/* Fills a malloc'd list; returns its length, or -1 on out of memory. */
int hf_expected(const cfg_model *c, hf_need **out);

/* Checks every needed tensor is present with the right shape and dtype (BF16, F16 or F32; F32 for
 * the router and the bias), naming the first missing or wrong tensor and its shard. Recognises a
 * Paddle-layout checkpoint (spec P15) and says so. Tensors nobody needs (other than lm_head of a
 * tied model) are counted in *n_unexpected, the first one's name in *first_unexpected (both may be
 * NULL): the caller decides whether that is an error. */
int hf_check(const hf_ckpt *h, int *n_unexpected, const char **first_unexpected, err_t *e);

/* The folder's tokenizer: the bytes of tokenizer.model (malloc'd, *model) and the special-token table
 * from the JSON files beside it, resolved against the model's pieces. Errors name the file. */
int hf_read_tokenizer(const char *dir, char **model, size_t *len, hf_special_table *tab, err_t *e);

/* The hub tensor that holds our weight `weight` (docs/format.md §3): "<weight>.weight", the correction
 * bias by its own name, and for a stacked kind (stacked = 1) expert e's
 * "...mlp.experts.<e>.<kind>.weight". */
void hf_source_name(const char *weight, int stacked, int e, char *out, size_t n);

#endif
