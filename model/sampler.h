/* model/sampler.h: picks the next token from the logits.
 *
 * Order of operations follows Hugging Face's generate(), the reference our users compare against:
 * repetition penalty over the last N tokens, then temperature, top-k, top-p (nucleus), min-p, and a
 * draw from the renormalised distribution. Temperature 0 means greedy (argmax after the penalty).
 * Logits of masked ids must already be -INFINITY; they are never chosen. */
#ifndef ERNIE_MODEL_SAMPLER_H
#define ERNIE_MODEL_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temp;           /* 0 = greedy */
    int top_k;            /* 0 = off */
    float top_p;          /* 1 = off */
    float min_p;          /* 0 = off */
    float repeat_penalty; /* 1 = off; HF semantics: positive logits divided, negative multiplied */
    int repeat_last_n;    /* window of recent tokens the penalty looks at; 0 = off, -1 = all */
    uint64_t seed;
} sampler_params;

/* ERNIE's generation defaults (temperature 0.8, top-p 0.8, no top-k, no penalty). */
sampler_params sampler_defaults(void);

typedef struct sampler sampler;

/* Returns NULL on out of memory. vocab is the logits length. */
sampler *sampler_create(const sampler_params *p, int vocab);
void sampler_free(sampler *s);

/* Changes the parameters (e.g. `/set temp 0.5` in chat); a new seed restarts the random stream. */
void sampler_set_params(sampler *s, const sampler_params *p);

/* Picks a token. logits (length vocab) is modified in place (penalty, temperature). history holds the
 * tokens so far (prompt and generated), oldest first. Returns the id, or -1 if every logit is -inf or NaN. */
int sampler_sample(sampler *s, float *logits, const int32_t *history, int nhist);

/* Index of the largest logit, lowest index on ties; -1 if none is finite. */
int sampler_argmax(const float *logits, int n);

#endif
