/* model/config.h: the ERNIE-4.5 model configuration and the generation defaults.
 *
 * Parses Hugging Face config.json (Ernie4_5_MoeForCausalLM, Ernie4_5ForCausalLM and the older name
 * Ernie4_5_ForCausalLM) with transformers' own defaults for absent keys, never the defaults of Baidu's
 * remote code (spec/ernie.md §1: those would turn the 21B into a model with MoE in every other layer).
 * The same parser reads the config stored in our model file, which we write with every key explicit,
 * so it is itself a valid config.json. Everything is validated: a config that parses is one the
 * engine can run. This module does no I/O beyond reading the one file it is given, and never prints.
 */
#ifndef ERNIE_MODEL_CONFIG_H
#define ERNIE_MODEL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

enum { CFG_MAX_EOS = 8 };

typedef struct {
    char architecture[48]; /* "Ernie4_5_MoeForCausalLM" | "Ernie4_5ForCausalLM" (the old spelling normalised) */
    int is_moe;            /* the MoE architecture (it may still have dense leading layers) */
    int vocab_size;        /* rows of the embedding and the head (103424; more than the tokenizer has) */
    int hidden_size;
    int intermediate_size; /* dense FFN width (dense layers only) */
    int num_hidden_layers;
    int num_attention_heads;
    int num_key_value_heads;
    int head_dim; /* explicit in the file, or hidden/heads (MoE) / 128 (dense) when absent */
    int max_position_embeddings;
    double rope_theta;
    double rms_norm_eps;
    int tie_word_embeddings; /* 1: the head is embed_tokens; lm_head.weight is ignored even if present */
    /* MoE only (zero for dense models). */
    int moe_num_experts;
    int moe_k;
    int moe_intermediate_size;
    int moe_num_shared_experts; /* 0: no shared expert (300B) */
    int moe_layer_start_index;
    int moe_layer_end_index; /* resolved: -1 in the file means num_hidden_layers - 1 */
    int moe_layer_interval;
    double moe_norm_min;
    /* Special ids from config.json (the tokenizer has the authoritative table). */
    int bos_token_id, pad_token_id; /* -1 when null */
    int n_eos;
    int eos_token_id[CFG_MAX_EOS];
} cfg_model;

/* The HF-native defaults of an architecture (the 21B for MoE, the 0.3B for dense). Returns -1 for an
 * unknown architecture name. */
int cfg_defaults(cfg_model *c, const char *architecture);

/* Parses config.json text. `label` (a file name) starts every error message, which names the key at
 * fault. ERR_UNSUPPORTED for an architecture or feature we do not run (rope scaling, biases, another
 * activation), ERR_FORMAT for malformed JSON or values, ERR_ARG for inconsistent sizes. */
int cfg_parse(cfg_model *c, const char *json, size_t len, const char *label, err_t *e);

/* Reads and parses a config.json file. */
int cfg_load(cfg_model *c, const char *path, err_t *e);

/* Re-checks a filled struct (cfg_parse calls it): sizes positive and within bounds, heads divisible
 * by KV heads, even head_dim, 1 <= moe_k <= experts, and so on. */
int cfg_validate(const cfg_model *c, const char *label, err_t *e);

/* Serialises with every key explicit, as a config.json transformers would also read. malloc'd; NULL
 * on out of memory. cfg_parse(cfg_to_json(c)) gives back c exactly (doubles round-trip). */
char *cfg_to_json(const cfg_model *c);

/* Derived values. */
/* 1 if layer i (0-based) is a MoE layer: (i+1) % interval == 0 and start <= i <= end. */
int cfg_is_moe_layer(const cfg_model *c, int layer);
int cfg_num_moe_layers(const cfg_model *c);
/* Width of one shared-expert MLP: moe_intermediate_size * moe_num_shared_experts (never a formula
 * from the KV heads, spec P4). 0 when there is none. */
int cfg_shared_width(const cfg_model *c);
/* Parameters of the network (embedding, head if untied, all layers); *active (may be NULL) counts
 * only the top-k experts of each MoE layer. */
int64_t cfg_param_count(const cfg_model *c, int64_t *active);

/* ---- generation_config.json ---------------------------------------------------------------- */

typedef struct {
    int do_sample;              /* 0: greedy decoding, whatever the temperature says */
    double temperature;         /* >= 0; 0 = greedy */
    double top_p;               /* (0, 1]; 1 = off */
    int top_k;                  /* 0 = off */
    double repetition_penalty;  /* 1 = off */
    double frequency_penalty;   /* 0 = off */
    double presence_penalty;    /* 0 = off */
    int max_new_tokens;         /* 0 = no limit given */
    int bos_token_id, pad_token_id; /* -1 when absent */
    int n_eos;
    int eos_token_id[CFG_MAX_EOS];
} cfg_gen;

/* ERNIE-4.5's release defaults (generation_config.json of the -PT models and the model card):
 * sampling on, temperature 0.8, top_p 0.8, no top_k, no penalties, bos 1, eos [2], pad 0. */
void cfg_gen_defaults(cfg_gen *g);

/* Parses generation_config.json text over the defaults (absent keys keep them). */
int cfg_gen_parse(cfg_gen *g, const char *json, size_t len, const char *label, err_t *e);

/* Reads a file; a missing file is not an error (*found = 0, defaults kept). found may be NULL. */
int cfg_gen_load(cfg_gen *g, const char *path, int *found, err_t *e);

/* Serialises every field; malloc'd, NULL on out of memory. Round-trips through cfg_gen_parse. */
char *cfg_gen_to_json(const cfg_gen *g);

/* Reads a whole small text file (at most max_bytes) for the parsers above; malloc'd and
 * NUL-terminated. ENOENT gives ERR_IO with errno kept in *errno_out (may be NULL). */
char *cfg_read_file(const char *path, size_t max_bytes, size_t *len, int *errno_out, err_t *e);

#endif
