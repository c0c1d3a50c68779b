/* app/model_load.h: opening a MODEL argument for `run`, `chat` and `perplexity`: a model file, or
 * `demo` (the model built into the binary). Returns everything generation needs: the engine config,
 * a weight lookup for the engine, the tokenizer and the generation defaults. */
#ifndef ERNIE_APP_MODEL_LOAD_H
#define ERNIE_APP_MODEL_LOAD_H

#include "base/err.h"
#include "model/engine.h"
#include "model/modelfile.h"
#include "model/sampler.h"
#include "tokenizer/tokenizer.h"

typedef struct loaded_model loaded_model;

/* Opens path (or "demo"). A model file's checksums and stored parameters are all checked first, on
 * `threads` threads (the -t value; 0: all cores); ERR_CORRUPT names the first damaged tensor. The message
 * names the file on failure. */
int model_load(loaded_model **out, const char *path, int threads, err_t *err);
void model_unload(loaded_model *m);

const eng_config *model_config(const loaded_model *m);
int model_max_positions(const loaded_model *m);
const tok *model_tok(const loaded_model *m);
sampler_params model_gen_defaults(const loaded_model *m);
/* A short description for banners: "ERNIE-4.5 MoE, 28 layers, 21.8B parameters, recipe baidu". */
const char *model_describe(const loaded_model *m);
int model_is_demo(const loaded_model *m);

/* Opens a model file for `info` and `verify` by the name the user gave: a path, or "demo" for the model
 * built into the binary (as for `run`; a file named demo is ./demo). A folder gets an error that points to
 * `ernie import DIR --dry-run`, prefixed with cmd. Checks nothing beyond what mf_open checks. */
int model_open_file(mf_file **out, const char *name, const char *cmd, err_t *err);

/* Creates an engine over the model's weights on backend b. */
int model_engine(loaded_model *m, be *b, int ctx, int max_batch, eng **out, err_t *err);

#endif
