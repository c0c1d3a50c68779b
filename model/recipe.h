/* model/recipe.h: which format each weight gets. A recipe maps tensor classes (embedding, attention,
 * dense MLP, each MoE layer's experts, shared experts, router, head, vectors) to codec format names,
 * and `--tensor-type REGEX=FORMAT` overrides single weights by name. Knows names and classes, nothing
 * about bits: the codec validates the format strings. Routers and the correction bias always stay
 * f32 and norms bf16, whatever the recipe says (spec: fp32 routing decides which experts run). */
#ifndef ERNIE_MODEL_RECIPE_H
#define ERNIE_MODEL_RECIPE_H

#include <stddef.h>

#include "base/err.h"

typedef enum {
    RC_EMBED,   /* model.embed_tokens */
    RC_HEAD,    /* lm_head (untied models) */
    RC_ATTN,    /* q/k/v/o projections */
    RC_DENSE,   /* gate/up/down of dense layers */
    RC_EXPERTS, /* stacked routed experts of one MoE layer */
    RC_SHARED,  /* shared experts */
    RC_ROUTER,  /* mlp.gate: always f32 */
    RC_VECTOR,  /* norms (bf16) and the correction bias (f32): never quantized */
} rc_class;

typedef struct recipe recipe;

/* Presets: baidu (default), fit80, q2.5, q2.75, wint4, wint8, bf16. ERR_ARG names the unknown one
 * and lists the known ones. */
int recipe_create(recipe **out, const char *preset, err_t *err);
void recipe_free(recipe *r);
/* The preset's name, with "+custom" once an override was added (stored in the model file). */
const char *recipe_name(const recipe *r);

/* One line per preset for --help: "baidu  attention and dense MLP wint8, ...". */
const char *recipe_presets_help(void);

/* Adds an override "REGEX=FORMAT" (POSIX extended regex, matched anywhere in the weight's name; later
 * overrides win). ERR_ARG for a missing '=', a bad regex or an empty format (the codec checks the
 * format name itself). Overrides never apply to routers and vectors. */
int recipe_override(recipe *r, const char *spec, err_t *err);

/* The format of weight `name` of class cls. moe_index is the weight's position among the model's MoE
 * layers (0 for the first MoE layer), -1 for other classes. Writes the format name to out. */
void recipe_format(const recipe *r, const char *name, rc_class cls, int moe_index, char *out, size_t n);

#endif
