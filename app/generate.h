/* app/generate.h: the generation loop shared by `ernie run` and `ernie chat`: feed the prompt, then
 * sample, stream the text out, and stop on a stop token, the length limit, the end of the context or
 * Ctrl-C. Token ids go in the cache as they are produced, so a conversation continues where it was. */
#ifndef ERNIE_APP_GENERATE_H
#define ERNIE_APP_GENERATE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "app/model_load.h"
#include "kernels/backend.h"
#include "model/engine.h"
#include "model/sampler.h"
#include "tokenizer/tokenizer.h"

typedef enum { GEN_STOP_TOKEN, GEN_STOP_LENGTH, GEN_STOP_CONTEXT, GEN_STOP_INTERRUPT, GEN_STOP_TEXT } gen_stop;

typedef struct {
    int max_new;                          /* <= 0: until a stop token or the end of the context */
    volatile sig_atomic_t *interrupt;     /* set by a SIGINT handler; may be NULL */
    void (*on_text)(void *ctx, const char *s, size_t n); /* streamed text (never half a character) */
    void (*on_id)(void *ctx, int32_t id); /* each generated id, stop token excluded; may be NULL */
    int (*stop_now)(void *ctx);           /* asked after each token's text; nonzero stops (GEN_STOP_TEXT) */
    void *ctx;
    unsigned decode_flags;                /* TOK_DEC_SKIP_SPECIAL for chat */
} gen_opts;

typedef struct {
    int n_prompt, n_gen;       /* tokens evaluated for the prompt, tokens generated */
    double t_prompt, t_gen;    /* seconds */
    gen_stop stop;
} gen_stats;

/* The session: a CPU backend, an engine over the model, a sampler, and what is in the engine's cache
 * as ids. It owns all of them. */
typedef struct {
    be *b;
    eng *e;
    sampler *s;
    const tok *t;
    uint8_t *allow;            /* [vocab] ids that may be sampled */
    tok_ids ids;               /* every id in the cache, in order */
} gen_session;

/* Opens a session over a loaded model: threads CPU threads (0 = all cores), ctx positions, sampling
 * params sp. The cache starts empty. On failure everything opened so far is freed. */
int gen_session_open(gen_session *g, loaded_model *m, int threads, int ctx, const sampler_params *sp, err_t *err);
/* Frees what the session opened; safe on a zeroed session. */
void gen_session_free(gen_session *g);

/* Makes the cache hold exactly `prompt` (keeping the longest common prefix of what it holds), then
 * generates. Returns 0 with stats, or -1 on error (the prompt does not fit the context, engine failure).
 * `logits_dump` (may be NULL) receives the logits of every prompt position [np, vocab]: the cache is
 * then rebuilt from scratch so every position is computed. */
int gen_run(gen_session *g, const int32_t *prompt, size_t np, const gen_opts *o, gen_stats *st, float *logits_dump,
            err_t *err);

#endif
