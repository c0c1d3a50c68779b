/* app/model_load.c: turns a MODEL argument into what generation needs: a model file made by
 * `ernie import` (weights used in place from the map), `demo` (the same, embedded in the binary), or a
 * Hugging Face checkpoint folder (bf16 weights served in place through model/hf_weights.c). */
#include "model_load.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/pool.h"
#include "model/config.h"
#include "model/hf.h"
#include "model/hf_weights.h"
#include "model/modelfile.h"
#include "progress.h"
#include "tokenizer/hf_special.h"

/* assets/demo.ernie, linked in by the Makefile (64-byte aligned). */
extern const unsigned char ernie_asset_demo_start[], ernie_asset_demo_end[];
/* how messages and reports name the built-in model */
#define DEMO_LABEL "demo, built in"
#define DEMO_BYTES ernie_asset_demo_start, (size_t)(ernie_asset_demo_end - ernie_asset_demo_start)

struct loaded_model {
    int demo;
    mf_file *mf;
    be_weight_src src; /* the model file lookup's answer */
    hf_ckpt *hf;
    hfw *w;
    eng_config cfg;
    uint8_t *is_moe;
    tok *tok;
    sampler_params gen;
    char desc[256];
};

static int mf_tokenizer(loaded_model *m, err_t *err) {
    const st_tensor *tm = mf_tokenizer_model(m->mf), *sj = mf_special_tokens(m->mf);
    if (!tm || !sj) return err_set(err, ERR_FORMAT, "%s: the file has no tokenizer", mf_path(m->mf));
    hf_special_table tab = {0};
    if (hf_special_from_json(sj->data, (size_t)sj->nbytes, "tokenizer.special_tokens", &tab, err))
        return err_wrap(err, "%s: ", mf_path(m->mf));
    int rc = tok_create(&m->tok, tm->data, (size_t)tm->nbytes, tab.v, tab.n, err);
    hf_special_table_free(&tab);
    return rc ? err_wrap(err, "%s: tokenizer: ", mf_path(m->mf)) : 0;
}

static const be_weight_src *mf_lookup(void *ctx, const char *name, err_t *err) {
    loaded_model *m = ctx;
    const mf_weight *w = mf_find_weight(m->mf, name);
    if (!w) return err_set(err, ERR_FORMAT, "%s: weight %s is missing", mf_path(m->mf), name), NULL;
    be_weight_src *s = &m->src;
    memset(s, 0, sizeof *s);
    s->name = w->name;
    s->format = w->format;
    s->rows = w->rows;
    s->cols = w->cols;
    s->nparts = w->nparts;
    for (int i = 0; i < w->nparts && i < 12; i++) {
        s->part[i].name = w->part[i].name;
        s->part[i].data = w->part[i].t->data;
        s->part[i].nbytes = (size_t)w->part[i].t->nbytes;
    }
    return s;
}

static void set_gen(loaded_model *m, const cfg_gen *g) {
    m->gen = sampler_defaults();
    m->gen.temp = g->do_sample ? (float)g->temperature : 0.0f;
    m->gen.top_p = (float)g->top_p;
    m->gen.top_k = g->top_k;
    m->gen.repeat_penalty = (float)g->repetition_penalty;
}

static int open_modelfile(loaded_model *m, const char *path, const void *mem, size_t memlen, err_t *err) {
    if (mem ? mf_open_memory(&m->mf, mem, memlen, path, err) : mf_open(&m->mf, path, err)) return -1;
    const cfg_model *c = mf_config(m->mf);
    if (!(m->is_moe = calloc((size_t)c->num_hidden_layers, 1))) return err_set(err, ERR_NOMEM, "out of memory");
    eng_config_from(c, c->is_moe, &m->cfg, m->is_moe);
    if (mf_tokenizer(m, err)) return -1;
    set_gen(m, mf_generation(m->mf));
    int64_t active = 0, total = cfg_param_count(c, &active);
    const char *rec = mf_meta(m->mf, "recipe");
    snprintf(m->desc, sizeof m->desc, "%s, %d layers, %.3gB parameters (%.3gB active), recipe %s", c->architecture,
             c->num_hidden_layers, total / 1e9, active / 1e9, rec ? rec : "?");
    return 0;
}

static int load_tokenizer(loaded_model *m, const char *dir, err_t *err) {
    char *bytes = NULL;
    size_t len = 0;
    hf_special_table tab = {0};
    if (hf_read_tokenizer(dir, &bytes, &len, &tab, err)) return -1;
    int rc = tok_create(&m->tok, bytes, len, tab.v, tab.n, err);
    if (rc) err_wrap(err, "%s/tokenizer.model: ", dir);
    hf_special_table_free(&tab);
    free(bytes);
    return rc;
}

/* Every tensor's checksum and every stored parameter, on all cores, before the engine trusts the file: a
 * damaged file must fail with the tensor's name, never generate garbage. The engine reads every weight
 * anyway (the GPU engine will upload it), so this adds one pass over pages it needs; a bar shows for
 * files of 1 GB or more. threads as -t (0: all cores). */
static int verify_file(const mf_file *f, int threads, err_t *err) {
    pool *p = pool_create(threads);
    double bytes = (double)st_file_size(mf_st(f));
    progress *pr = progress_start("checking", bytes, PROG_BYTES, NULL, bytes < 1e9);
    int rc = mf_verify(f, p, progress_cb_bridge, pr, err);
    progress_finish(pr);
    pool_destroy(p);
    if (rc && err && err->code == ERR_CORRUPT) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        err_set(err, ERR_CORRUPT, "%s ('ernie verify' lists every damaged tensor)", msg);
    }
    return rc;
}

int model_open_file(mf_file **out, const char *name, const char *cmd, err_t *err) {
    *out = NULL;
    if (!strcmp(name, "demo"))
        return mf_open_memory(out, DEMO_BYTES, DEMO_LABEL, err);
    struct stat st;
    if (stat(name, &st) == 0 && S_ISDIR(st.st_mode))
        return err_set(err, ERR_ARG,
                       "%s: %s is a folder, not a model file (for a Hugging Face checkpoint: 'ernie import %s --dry-run')",
                       cmd, name, name);
    return mf_open(out, name, err);
}

int model_load(loaded_model **out, const char *path, int threads, err_t *err) {
    *out = NULL;
    struct stat st;
    loaded_model *m = calloc(1, sizeof *m);
    if (!m) return err_set(err, ERR_NOMEM, "out of memory");
    if (!strcmp(path, "demo")) {
        m->demo = 1;
        if (open_modelfile(m, DEMO_LABEL, DEMO_BYTES, err)) goto fail;
        *out = m;
        return 0;
    }
    if (stat(path, &st) != 0) {
        err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (open_modelfile(m, path, NULL, 0, err) || verify_file(m->mf, threads, err)) goto fail;
        *out = m;
        return 0;
    }
    if (hf_open(&m->hf, path, err) || hf_check(m->hf, NULL, NULL, err)) goto fail;
    const cfg_model *c = hf_config(m->hf);
    if (!(m->w = hfw_create(m->hf)) || !(m->is_moe = calloc((size_t)c->num_hidden_layers, 1))) {
        err_set(err, ERR_NOMEM, "out of memory");
        goto fail;
    }
    hfw_eng_config(m->hf, &m->cfg, m->is_moe);
    if (load_tokenizer(m, path, err)) goto fail;
    set_gen(m, hf_generation(m->hf));
    int64_t active = 0, total = cfg_param_count(c, &active);
    snprintf(m->desc, sizeof m->desc, "%s, %d layers, %.2fB parameters (%.2fB active), bf16 checkpoint %s",
             c->architecture, c->num_hidden_layers, total / 1e9, active / 1e9, path);
    *out = m;
    return 0;
fail:
    model_unload(m);
    return -1;
}

void model_unload(loaded_model *m) {
    if (!m) return;
    tok_free(m->tok);
    hfw_free(m->w);
    hf_close(m->hf);
    mf_close(m->mf);
    free(m->is_moe);
    free(m);
}

const eng_config *model_config(const loaded_model *m) { return &m->cfg; }
int model_max_positions(const loaded_model *m) {
    return (m->mf ? mf_config(m->mf) : hf_config(m->hf))->max_position_embeddings;
}
const tok *model_tok(const loaded_model *m) { return m->tok; }
sampler_params model_gen_defaults(const loaded_model *m) { return m->gen; }
const char *model_describe(const loaded_model *m) { return m->desc; }
int model_is_demo(const loaded_model *m) { return m->demo; }

int model_engine(loaded_model *m, be *b, int ctx, int max_batch, eng **out, err_t *err) {
    if (m->mf) return eng_create(out, &m->cfg, b, mf_lookup, m, ctx, max_batch, err);
    return eng_create(out, &m->cfg, b, hfw_lookup, m->w, ctx, max_batch, err);
}
