/* model/hf.c: reading a Hugging Face checkpoint folder: config, index, shards, tensor lookup.
 *
 * Must never follow a shard name out of the folder (names with '/' or ".." are refused), never
 * trust the index without opening what it points at, and never print. */
#include "hf.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "tokenizer/spm.h"

typedef struct {
    const char *name; /* owned by the shard's st_file */
    int shard;
    const st_tensor *t;
} entry;

struct hf_ckpt {
    char *dir;
    cfg_model cfg;
    cfg_gen gen;
    int has_gen;
    int indexed; /* 1: model.safetensors.index.json; 0: one model.safetensors */
    char **shard_names;
    st_file **shards;
    int nshards;
    entry *ents;
    int nents;
};

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int hf_is_skipped(const char *name) { return strstr(name, "mtp") != NULL; }

static int cmp_entry(const void *a, const void *b) { return strcmp(((const entry *)a)->name, ((const entry *)b)->name); }

/* Adds a shard by file name (deduplicated); returns its index or -1. */
static int add_shard(hf_ckpt *h, const char *name, const char *index_label, err_t *e) {
    for (int i = 0; i < h->nshards; i++)
        if (!strcmp(h->shard_names[i], name)) return i;
    if (!name[0] || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return err_set(e, ERR_FORMAT, "%s: shard name '%.200s' is not a plain file name in the folder", index_label, name);
    char **nn = realloc(h->shard_names, sizeof *nn * (size_t)(h->nshards + 1));
    if (!nn) return err_set(e, ERR_NOMEM, "out of memory");
    h->shard_names = nn;
    st_file **ns = realloc(h->shards, sizeof *ns * (size_t)(h->nshards + 1));
    if (!ns) return err_set(e, ERR_NOMEM, "out of memory");
    h->shards = ns;
    h->shard_names[h->nshards] = strdup(name);
    h->shards[h->nshards] = NULL;
    if (!h->shard_names[h->nshards]) return err_set(e, ERR_NOMEM, "out of memory");
    char *path = join(h->dir, name);
    if (!path) return err_set(e, ERR_NOMEM, "out of memory");
    int rc = st_open(&h->shards[h->nshards], path, e);
    free(path);
    h->nshards++;
    if (rc) {
        if (index_label) err_wrap(e, "%s lists shard '%s', which cannot be used: ", index_label, name);
        return -1;
    }
    return h->nshards - 1;
}

static int add_entry(hf_ckpt *h, int shard, const st_tensor *t, int *cap, err_t *e) {
    if (h->nents == *cap) {
        int c = *cap ? *cap * 2 : 1024;
        entry *n = realloc(h->ents, sizeof *n * (size_t)c);
        if (!n) return err_set(e, ERR_NOMEM, "out of memory");
        h->ents = n;
        *cap = c;
    }
    h->ents[h->nents++] = (entry){t->name, shard, t};
    return 0;
}

static int read_index(hf_ckpt *h, const char *path, err_t *e) {
    size_t len;
    char *text = cfg_read_file(path, 64 << 20, &len, NULL, e);
    if (!text) return -1;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root) return err_set(e, ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", path, je.text, je.line, je.column);
    int rc = -1, cap = 0;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(root) || !json_is_object(wm)) {
        err_set(e, ERR_FORMAT, "%s: no \"weight_map\" object", path);
        goto out;
    }
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v)) {
            err_set(e, ERR_FORMAT, "%s: weight_map entry '%.200s' is not a file name", path, name);
            goto out;
        }
        if (hf_is_skipped(name)) continue;
        int s = add_shard(h, json_string_value(v), path, e);
        if (s < 0) goto out;
        const st_tensor *t = st_find(h->shards[s], name);
        if (!t) {
            err_set(e, ERR_FORMAT, "%s: tensor '%.200s' should be in shard '%s', which has no such tensor", path, name,
                    json_string_value(v));
            goto out;
        }
        if (add_entry(h, s, t, &cap, e)) goto out;
    }
    if (h->nents == 0) {
        err_set(e, ERR_FORMAT, "%s: the weight map lists no tensors", path);
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int hf_open(hf_ckpt **out, const char *dir, err_t *e) {
    *out = NULL;
    hf_ckpt *h = calloc(1, sizeof *h);
    if (!h || !(h->dir = strdup(dir))) {
        free(h);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    char *p = join(dir, "config.json");
    int rc = p ? cfg_load(&h->cfg, p, e) : err_set(e, ERR_NOMEM, "out of memory");
    free(p);
    if (rc) goto fail;
    cfg_gen_defaults(&h->gen);
    p = join(dir, "generation_config.json");
    rc = p ? cfg_gen_load(&h->gen, p, &h->has_gen, e) : err_set(e, ERR_NOMEM, "out of memory");
    free(p);
    if (rc) goto fail;
    char *idx = join(dir, "model.safetensors.index.json");
    char *single = join(dir, "model.safetensors");
    if (!idx || !single) {
        free(idx), free(single);
        err_set(e, ERR_NOMEM, "out of memory");
        goto fail;
    }
    FILE *f = fopen(idx, "rb");
    if (f) {
        fclose(f);
        h->indexed = 1;
        rc = read_index(h, idx, e);
    } else if ((f = fopen(single, "rb"))) {
        fclose(f);
        rc = add_shard(h, "model.safetensors", NULL, e);
        int cap = 0;
        for (int i = 0; rc >= 0 && i < st_count(h->shards[0]); i++) {
            const st_tensor *t = st_at(h->shards[0], i);
            if (!hf_is_skipped(t->name) && !st_is_padding(t->name) && add_entry(h, 0, t, &cap, e)) rc = -1;
        }
        rc = rc < 0 ? -1 : 0;
    } else {
        rc = err_set(e, ERR_IO, "%s: neither model.safetensors.index.json nor model.safetensors is there", dir);
    }
    free(idx);
    free(single);
    if (rc) goto fail;
    qsort(h->ents, (size_t)h->nents, sizeof *h->ents, cmp_entry);
    for (int i = 1; i < h->nents; i++)
        if (!strcmp(h->ents[i].name, h->ents[i - 1].name)) {
            err_set(e, ERR_FORMAT, "%s: tensor '%.200s' is in two shards", dir, h->ents[i].name);
            goto fail;
        }
    *out = h;
    return 0;
fail:
    hf_close(h);
    return -1;
}

void hf_close(hf_ckpt *h) {
    if (!h) return;
    for (int i = 0; i < h->nshards; i++) {
        st_close(h->shards[i]);
        free(h->shard_names[i]);
    }
    free(h->shards);
    free(h->shard_names);
    free(h->ents);
    free(h->dir);
    free(h);
}

const char *hf_dir(const hf_ckpt *h) { return h->dir; }
const cfg_model *hf_config(const hf_ckpt *h) { return &h->cfg; }
const cfg_gen *hf_generation(const hf_ckpt *h) { return &h->gen; }
int hf_has_generation_config(const hf_ckpt *h) { return h->has_gen; }
int hf_nshards(const hf_ckpt *h) { return h->nshards; }
const char *hf_shard(const hf_ckpt *h, int i) { return i >= 0 && i < h->nshards ? h->shard_names[i] : NULL; }
int hf_count(const hf_ckpt *h) { return h->nents; }

const st_tensor *hf_at(const hf_ckpt *h, int i, const char **shard) {
    if (i < 0 || i >= h->nents) return NULL;
    if (shard) *shard = h->shard_names[h->ents[i].shard];
    return h->ents[i].t;
}

const st_tensor *hf_find(const hf_ckpt *h, const char *name, const char **shard) {
    entry key = {name, 0, NULL};
    const entry *en = bsearch(&key, h->ents, (size_t)h->nents, sizeof key, cmp_entry);
    if (!en) return NULL;
    if (shard) *shard = h->shard_names[en->shard];
    return en->t;
}

int hf_to_float(const st_tensor *t, uint64_t first, uint64_t n, float *dst, err_t *e) {
    if (first > t->numel || n > t->numel - first)
        return err_set(e, ERR_ARG, "tensor '%s': elements %llu..%llu are past its %llu", t->name, (unsigned long long)first,
                       (unsigned long long)(first + n), (unsigned long long)t->numel);
    const uint8_t *p = (const uint8_t *)t->data;
    switch (t->dtype) {
    case ST_F32:
        memcpy(dst, p + first * 4, n * 4);
        return 0;
    case ST_BF16:
    case ST_F16:
        p += first * 2;
        for (uint64_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            dst[i] = t->dtype == ST_BF16 ? bf16_to_f32(v) : f16_to_f32(v);
        }
        return 0;
    default:
        return err_set(e, ERR_UNSUPPORTED, "tensor '%s': dtype %s is not a floating-point weight (BF16, F16 or F32)", t->name,
                       st_dtype_name(t->dtype));
    }
}

/* ---- what the config needs ---------------------------------------------------------------------- */

typedef struct {
    hf_need *v;
    int n, cap, oom;
} needs;

static void need(needs *l, int f32, int alt, int ndim, int64_t a, int64_t b, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static void need(needs *l, int f32, int alt, int ndim, int64_t a, int64_t b, const char *fmt, ...) {
    if (l->oom) return;
    if (l->n == l->cap) {
        int c = l->cap ? l->cap * 2 : 256;
        hf_need *nv = realloc(l->v, sizeof *nv * (size_t)c);
        if (!nv) {
            l->oom = 1;
            return;
        }
        l->v = nv;
        l->cap = c;
    }
    hf_need *x = &l->v[l->n++];
    memset(x, 0, sizeof *x);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->name, sizeof x->name, fmt, ap);
    va_end(ap);
    x->f32_only = f32;
    x->alt_vector = alt;
    x->ndim = ndim;
    x->shape[0] = a;
    x->shape[1] = b;
}

static void mlp(needs *l, int64_t H, int64_t I, const char *prefix) {
    need(l, 0, 0, 2, I, H, "%s.gate_proj.weight", prefix);
    need(l, 0, 0, 2, I, H, "%s.up_proj.weight", prefix);
    need(l, 0, 0, 2, H, I, "%s.down_proj.weight", prefix);
}

int hf_expected(const cfg_model *c, hf_need **out) {
    needs l = {0};
    int64_t H = c->hidden_size, V = c->vocab_size, d = c->head_dim;
    int64_t q = d * c->num_attention_heads, kv = d * c->num_key_value_heads;
    char pre[96];
    need(&l, 0, 0, 2, V, H, "model.embed_tokens.weight");
    for (int i = 0; i < c->num_hidden_layers; i++) {
        need(&l, 0, 0, 1, H, 0, "model.layers.%d.input_layernorm.weight", i);
        need(&l, 0, 0, 1, H, 0, "model.layers.%d.post_attention_layernorm.weight", i);
        need(&l, 0, 0, 2, q, H, "model.layers.%d.self_attn.q_proj.weight", i);
        need(&l, 0, 0, 2, kv, H, "model.layers.%d.self_attn.k_proj.weight", i);
        need(&l, 0, 0, 2, kv, H, "model.layers.%d.self_attn.v_proj.weight", i);
        need(&l, 0, 0, 2, H, q, "model.layers.%d.self_attn.o_proj.weight", i);
        if (!cfg_is_moe_layer(c, i)) {
            snprintf(pre, sizeof pre, "model.layers.%d.mlp", i);
            mlp(&l, H, c->intermediate_size, pre);
            continue;
        }
        int64_t E = c->moe_num_experts;
        need(&l, 1, 0, 2, E, H, "model.layers.%d.mlp.gate.weight", i);
        need(&l, 1, 1, 2, 1, E, "model.layers.%d.mlp.moe_statics.e_score_correction_bias", i);
        for (int x = 0; x < E; x++) {
            snprintf(pre, sizeof pre, "model.layers.%d.mlp.experts.%d", i, x);
            mlp(&l, H, c->moe_intermediate_size, pre);
        }
        if (cfg_shared_width(c) > 0) {
            snprintf(pre, sizeof pre, "model.layers.%d.mlp.shared_experts", i);
            mlp(&l, H, cfg_shared_width(c), pre);
        }
    }
    need(&l, 0, 0, 1, H, 0, "model.norm.weight");
    if (!c->tie_word_embeddings) need(&l, 0, 0, 2, V, H, "lm_head.weight");
    if (l.oom) {
        free(l.v);
        return -1;
    }
    *out = l.v;
    return l.n;
}

static const char *fmt_shape(int ndim, const int64_t *s, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)s[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

static int cmp_need(const void *a, const void *b) { return strcmp(((const hf_need *)a)->name, ((const hf_need *)b)->name); }

int hf_check(const hf_ckpt *h, int *n_unexpected, const char **first_unexpected, err_t *e) {
    if (n_unexpected) *n_unexpected = 0;
    if (first_unexpected) *first_unexpected = NULL;
    const cfg_model *c = &h->cfg;
    if (!hf_find(h, "model.embed_tokens.weight", NULL) && hf_find(h, "ernie.embed_tokens.weight", NULL))
        return err_set(e, ERR_UNSUPPORTED, "%s: this is a Paddle-layout checkpoint (names start with 'ernie.'); use the -PT release", h->dir);
    hf_need *nd;
    int n = hf_expected(c, &nd);
    if (n < 0) return err_set(e, ERR_NOMEM, "out of memory");
    int rc = 0;
    char want[96], got[96];
    for (int i = 0; i < n && !rc; i++) {
        const char *shard;
        const st_tensor *t = hf_find(h, nd[i].name, &shard);
        if (!t) {
            rc = err_set(e, ERR_FORMAT, "%s: tensor '%s' is missing (config.json needs it; %s lists no such tensor)", h->dir,
                         nd[i].name, h->indexed ? "the weight map" : "model.safetensors");
            break;
        }
        int shape_ok = t->ndim == nd[i].ndim;
        for (int k = 0; shape_ok && k < nd[i].ndim; k++) shape_ok = t->shape[k] == nd[i].shape[k];
        if (!shape_ok && nd[i].alt_vector) shape_ok = t->ndim == 1 && t->shape[0] == nd[i].shape[1];
        if (!shape_ok) {
            rc = err_set(e, ERR_FORMAT, "%s: tensor '%s' in shard '%s' has shape %s; config.json needs %s", h->dir, nd[i].name, shard,
                         fmt_shape(t->ndim, t->shape, got, sizeof got), fmt_shape(nd[i].ndim, nd[i].shape, want, sizeof want));
        } else if (nd[i].f32_only && t->dtype != ST_F32) {
            rc = err_set(e, ERR_FORMAT, "%s: tensor '%s' in shard '%s' is %s; the router and its correction bias must be F32", h->dir,
                         nd[i].name, shard, st_dtype_name(t->dtype));
        } else if (t->dtype != ST_BF16 && t->dtype != ST_F16 && t->dtype != ST_F32) {
            rc = err_set(e, ERR_FORMAT, "%s: tensor '%s' in shard '%s' is %s; weights must be BF16, F16 or F32", h->dir, nd[i].name,
                         shard, st_dtype_name(t->dtype));
        }
    }
    if (!rc) {
        qsort(nd, (size_t)n, sizeof *nd, cmp_need);
        for (int i = 0; i < h->nents; i++) {
            hf_need key;
            snprintf(key.name, sizeof key.name, "%s", h->ents[i].name);
            if (strlen(h->ents[i].name) < sizeof key.name && bsearch(&key, nd, (size_t)n, sizeof *nd, cmp_need)) continue;
            if (c->tie_word_embeddings && !strcmp(h->ents[i].name, "lm_head.weight")) continue;
            if (n_unexpected && (*n_unexpected)++ == 0 && first_unexpected) *first_unexpected = h->ents[i].name;
        }
    }
    free(nd);
    return rc;
}

int hf_read_tokenizer(const char *dir, char **model, size_t *len, hf_special_table *tab, err_t *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    *model = cfg_read_file(path, (size_t)256 << 20, len, NULL, e);
    if (!*model) return -1;
    spm *sp = NULL;
    int rc = 0;
    if (spm_load(&sp, *model, *len, e)) rc = err_wrap(e, "%s: ", path);
    else if (hf_special_read_dir(dir, sp, tab, e)) rc = -1;
    spm_free(sp);
    if (rc) {
        free(*model);
        *model = NULL;
    }
    return rc;
}

void hf_source_name(const char *weight, int stacked, int e, char *out, size_t n) {
    const char *ex = strstr(weight, ".mlp.experts.");
    if (stacked && ex)
        snprintf(out, n, "%.*s.mlp.experts.%d.%s.weight", (int)(ex - weight), weight, e, ex + strlen(".mlp.experts."));
    else if (strstr(weight, "e_score_correction_bias")) snprintf(out, n, "%s", weight);
    else snprintf(out, n, "%s.weight", weight);
}
