/* app/generate.c */
#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"

int gen_session_open(gen_session *g, loaded_model *m, int threads, int ctx, const sampler_params *sp, err_t *err) {
    memset(g, 0, sizeof *g);
    g->t = model_tok(m);
    int V = model_config(m)->vocab;
    if (!(g->b = be_cpu_create(threads, err)) || model_engine(m, g->b, ctx, 64, &g->e, err)) goto fail;
    if (!(g->s = sampler_create(sp, V)) || !(g->allow = malloc((size_t)V))) {
        err_set(err, ERR_NOMEM, "out of memory");
        goto fail;
    }
    tok_logit_mask(g->t, g->allow, (size_t)V);
    return 0;
fail:
    gen_session_free(g);
    return -1;
}

void gen_session_free(gen_session *g) {
    free(g->allow);
    tok_ids_free(&g->ids);
    sampler_free(g->s);
    eng_free(g->e);
    if (g->b) g->b->ops->destroy(g->b);
    memset(g, 0, sizeof *g);
}

static int push(gen_session *g, int32_t id, err_t *err) { return tok_ids_push(&g->ids, id, err); }

int gen_run(gen_session *g, const int32_t *prompt, size_t np, const gen_opts *o, gen_stats *st, float *dump,
            err_t *err) {
    memset(st, 0, sizeof *st);
    eng *e = g->e;
    int V = eng_cfg(e)->vocab, ctx = eng_ctx(e);
    if (np == 0) return err_set(err, ERR_ARG, "the prompt is empty");
    if ((int64_t)np >= ctx)
        return err_set(err, ERR_ARG, "the prompt has %zu tokens but the context holds %d (raise -c)", np, ctx);
    /* reuse the cached prefix; always recompute at least the last prompt token for its logits */
    size_t keep = 0;
    if (!dump)
        while (keep < g->ids.n && keep < np - 1 && g->ids.v[keep] == prompt[keep]) keep++;
    eng_truncate(e, (int)keep);
    g->ids.n = keep;
    float *logits = malloc((size_t)V * sizeof *logits);
    if (!logits) return err_set(err, ERR_NOMEM, "out of memory");
    double t0 = clock_now();
    int rc = 0;
    if (dump) {
        if (eng_forward(e, prompt, (int)np, dump, 1, err)) goto fail;
        memcpy(logits, dump + (np - 1) * (size_t)V, (size_t)V * sizeof *logits);
    } else if (eng_forward(e, prompt + keep, (int)(np - keep), logits, 0, err)) {
        goto fail;
    }
    for (size_t i = keep; i < np; i++)
        if (push(g, prompt[i], err)) goto fail;
    st->n_prompt = (int)(np - keep);
    st->t_prompt = clock_now() - t0;

    tok_stream ts;
    tok_stream_init(&ts, g->t, o->decode_flags);
    double t1 = clock_now();
    st->stop = GEN_STOP_LENGTH;
    for (;;) {
        if (o->max_new > 0 && st->n_gen >= o->max_new) break;
        if (o->interrupt && *o->interrupt) {
            st->stop = GEN_STOP_INTERRUPT;
            break;
        }
        for (int i = 0; i < V; i++)
            if (!g->allow[i]) logits[i] = -INFINITY;
        int id = sampler_sample(g->s, logits, g->ids.v, (int)g->ids.n);
        if (id < 0) {
            rc = err_set(err, ERR_ARG, "the model produced no finite logit");
            break;
        }
        if (tok_is_stop(g->t, id)) {
            st->stop = GEN_STOP_TOKEN;
            break;
        }
        st->n_gen++;
        if (o->on_id) o->on_id(o->ctx, id);
        const char *txt;
        size_t len;
        if (tok_stream_push(&ts, id, &txt, &len, err) == 0 && len && o->on_text) o->on_text(o->ctx, txt, len);
        if (o->stop_now && o->stop_now(o->ctx)) {
            st->stop = GEN_STOP_TEXT;
            break;
        }
        if (eng_n_past(e) >= ctx) { /* the sampled token would not fit: stop before feeding it */
            st->stop = GEN_STOP_CONTEXT;
            break;
        }
        if (eng_forward(e, (int32_t *)&id, 1, logits, 0, err) || push(g, id, err)) {
            rc = -1;
            break;
        }
    }
    const char *txt;
    size_t len;
    if (tok_stream_finish(&ts, &txt, &len, err) == 0 && len && o->on_text) o->on_text(o->ctx, txt, len);
    tok_stream_free(&ts);
    st->t_gen = clock_now() - t1;
    free(logits);
    return rc;
fail:
    free(logits);
    return -1;
}
