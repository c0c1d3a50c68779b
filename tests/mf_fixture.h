/* tests/mf_fixture.h: tiny ERNIE checkpoints and model files for the tests of model/ (HF reader,
 * model file, info, verify), written with our own safetensors writer. Values are a fixed function
 * of (tensor name, element index), so a test can recompute any of them. */
#ifndef ERNIE_TESTS_MF_FIXTURE_H
#define ERNIE_TESTS_MF_FIXTURE_H

#include <stdint.h>

#include "model/config.h"

/* A tiny config: hidden 64, 4 heads of 32 (head_dim explicit, not hidden/heads), 2 KV heads,
 * vocab 256, 3 layers, dense width 128; MoE: 4 experts, k 2, width 64, 1 shared expert, MoE from
 * layer 1, untied. */
void mfx_config(cfg_model *c, int moe);

/* The value stored at element i of tensor `name` (exact in bf16). */
float mfx_value(const char *name, uint64_t i);

/* Options for mfx_write_hf; zero means "as it should be". */
typedef struct {
    int nshards;             /* 0 or 1: one model.safetensors; more: an index and that many shards */
    const char *omit;        /* leave this tensor out */
    const char *wrong_shape; /* give this tensor one row too many */
    const char *as_bf16;     /* store this (F32) tensor as BF16 */
    int add_mtp;             /* add an MTP tensor (must be invisible) */
    const char *extra;       /* add an unexpected tensor of this name */
    int paddle;              /* rename model. -> ernie. (the Paddle layout) */
    int f32;                 /* store weights as F32 instead of BF16 */
    int gen_config;          /* also write generation_config.json (temperature 0.7, top_k 20) */
} mfx_hf_opts;

/* Writes config.json and the weights of c into the existing folder dir. Returns 0 or -1. */
int mfx_write_hf(const char *dir, const cfg_model *c, const mfx_hf_opts *o);

/* Options for mfx_write_model. */
typedef struct {
    int mixed;        /* quantize with one format per class (wint8, wint4, wint4g64, ccq2.75, ccq2.5+icq, ccq2.06) */
    int no_tokenizer; /* leave the tokenizer tensors out */
    const char *omit; /* leave this weight out (the writer must refuse) */
    int overwrite;
} mfx_model_opts;

/* The special-token JSON stored by mfx_write_model (3 tokens). */
extern const char *MFX_SPECIAL_JSON;

/* Writes a model file for c with our writer (values from mfx_value, quantized by the codec when
 * mixed). Returns 0 or -1 (the reason on stderr). */
int mfx_write_model(const char *path, const cfg_model *c, const mfx_model_opts *o);

#endif
