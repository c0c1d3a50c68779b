/* model/hf_weights.c */
#include "hf_weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    void *data;
} copy;

struct hfw {
    hf_ckpt *h;
    be_weight_src src;
    char name[256];
    copy *copies;
    int ncopies, cap;
};

hfw *hfw_create(hf_ckpt *h) {
    hfw *w = calloc(1, sizeof *w);
    if (w) w->h = h;
    return w;
}

void hfw_free(hfw *w) {
    if (!w) return;
    for (int i = 0; i < w->ncopies; i++) {
        free(w->copies[i].name);
        free(w->copies[i].data);
    }
    free(w->copies);
    free(w);
}

static void *keep(hfw *w, const char *name, void *data) {
    if (w->ncopies == w->cap) {
        int cap = w->cap ? w->cap * 2 : 32;
        copy *c = realloc(w->copies, (size_t)cap * sizeof *c);
        if (!c) return NULL;
        w->copies = c;
        w->cap = cap;
    }
    w->copies[w->ncopies++] = (copy){strdup(name), data};
    return data;
}

/* Appends tensor t as bf16 (in place) or f32 (F16 widened) to dst at offset; returns bytes. */
static int tensor_src(hfw *w, const st_tensor *t, const char *name, err_t *err) {
    w->src.part[0].name = "weight";
    w->src.rows = t->ndim == 2 ? t->shape[0] : 1;
    w->src.cols = t->ndim == 2 ? t->shape[1] : (t->ndim == 1 ? t->shape[0] : (int64_t)t->numel);
    if (t->dtype == ST_BF16 || t->dtype == ST_F32) {
        w->src.format = t->dtype == ST_BF16 ? "bf16" : "f32";
        w->src.part[0].data = t->data;
        w->src.part[0].nbytes = t->nbytes;
        return 0;
    }
    float *f = malloc(t->numel * sizeof *f);
    if (!f) return err_set(err, ERR_NOMEM, "out of memory for %s", name);
    if (hf_to_float(t, 0, t->numel, f, err)) {
        free(f);
        return -1;
    }
    if (!keep(w, name, f)) {
        free(f);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    w->src.format = "f32";
    w->src.part[0].data = f;
    w->src.part[0].nbytes = t->numel * sizeof(float);
    return 0;
}

const be_weight_src *hfw_lookup(void *ctx, const char *name, err_t *err) {
    hfw *w = ctx;
    const cfg_model *c = hf_config(w->h);
    char hub[300];
    memset(&w->src, 0, sizeof w->src);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->src.name = w->name;
    w->src.nparts = 1;
    const char *ex = strstr(name, ".mlp.experts.");
    if (ex) {
        int E = c->moe_num_experts;
        const st_tensor *t0 = NULL;
        for (int e = 0; e < E; e++) {
            hf_source_name(name, 1, e, hub, sizeof hub);
            const st_tensor *t = hf_find(w->h, hub, NULL);
            if (!t) return err_set(err, ERR_FORMAT, "%s: tensor %s is missing", hf_dir(w->h), hub), NULL;
            if (t->ndim != 2 || (t0 && (t->shape[0] != t0->shape[0] || t->shape[1] != t0->shape[1] || t->dtype != t0->dtype)))
                return err_set(err, ERR_FORMAT, "%s: tensor %s differs in shape or dtype from expert 0", hf_dir(w->h), hub), NULL;
            if (!t0) t0 = t;
        }
        int wide = t0->dtype != ST_BF16; /* bf16 stacks as bf16; anything else as f32 */
        size_t each = (size_t)t0->numel * (wide ? 4 : 2);
        uint8_t *buf = malloc(each * (size_t)E);
        if (!buf) return err_set(err, ERR_NOMEM, "out of memory stacking %s", name), NULL;
        for (int e = 0; e < E; e++) {
            hf_source_name(name, 1, e, hub, sizeof hub);
            const st_tensor *t = hf_find(w->h, hub, NULL);
            if (!wide) memcpy(buf + each * (size_t)e, t->data, each);
            else if (hf_to_float(t, 0, t->numel, (float *)(buf + each * (size_t)e), err)) {
                free(buf);
                return NULL;
            }
        }
        if (!keep(w, name, buf)) {
            free(buf);
            return err_set(err, ERR_NOMEM, "out of memory"), NULL;
        }
        w->src.format = wide ? "f32" : "bf16";
        w->src.rows = t0->shape[0] * E;
        w->src.cols = t0->shape[1];
        w->src.part[0].name = "weight";
        w->src.part[0].data = buf;
        w->src.part[0].nbytes = each * (size_t)E;
        return &w->src;
    }
    hf_source_name(name, 0, 0, hub, sizeof hub);
    const st_tensor *t = hf_find(w->h, hub, NULL);
    if (!t) return err_set(err, ERR_FORMAT, "%s: tensor %s is missing", hf_dir(w->h), hub), NULL;
    if (tensor_src(w, t, hub, err)) return NULL;
    return &w->src;
}

void hfw_eng_config(const hf_ckpt *h, eng_config *o, uint8_t *is_moe) {
    const cfg_model *c = hf_config(h);
    int bias = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        char name[128];
        snprintf(name, sizeof name, "model.layers.%d.mlp.moe_statics.e_score_correction_bias", l);
        if (c->is_moe && cfg_is_moe_layer(c, l) && hf_find(h, name, NULL)) bias = 1; /* aux-free checkpoints */
    }
    eng_config_from(c, bias, o, is_moe);
}

void eng_config_from(const cfg_model *c, int has_bias, eng_config *o, uint8_t *is_moe) {
    memset(o, 0, sizeof *o);
    o->hidden = c->hidden_size;
    o->n_layers = c->num_hidden_layers;
    o->n_heads = c->num_attention_heads;
    o->n_kv_heads = c->num_key_value_heads;
    o->head_dim = c->head_dim;
    o->vocab = c->vocab_size;
    o->inter = c->intermediate_size;
    o->eps = (float)c->rms_norm_eps;
    o->rope_theta = (float)c->rope_theta;
    o->tie_embeddings = c->tie_word_embeddings;
    if (c->is_moe) {
        o->n_experts = c->moe_num_experts;
        o->moe_k = c->moe_k;
        o->moe_inter = c->moe_intermediate_size;
        o->shared_inter = cfg_shared_width(c);
        o->moe_norm_min = (float)c->moe_norm_min;
        o->moe_bias = has_bias;
    }
    for (int l = 0; l < c->num_hidden_layers; l++) is_moe[l] = c->is_moe && cfg_is_moe_layer(c, l);
    o->is_moe = is_moe;
}
