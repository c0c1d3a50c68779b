/* model/modelfile.c: reading, verifying and writing our model file (docs/format.md).
 *
 * Must never hand out a weight whose parts differ from its format's layout, never accept a file
 * whose weights are not exactly those its config needs, and never print. The part layouts come from
 * the codec (ccq_layout) so reader, writer and kernels agree by construction. */
#include "modelfile.h"

#include <jansson.h>
#include <stdarg.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/bf16.h"
#include "ccq/ccq.h"

/* ---- layouts ---------------------------------------------------------------------------------- */

static int rows_cols(int ndim, const int64_t *shape, int64_t *rows, int64_t *cols) {
    if (ndim == 1) *rows = 1, *cols = shape[0];
    else if (ndim == 2) *rows = shape[0], *cols = shape[1];
    else if (ndim == 3) {
        if (shape[0] < 1 || shape[1] < 1 || shape[0] > ((int64_t)1 << 40) / shape[1]) return -1;
        *rows = shape[0] * shape[1], *cols = shape[2];
    } else return -1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 1 || shape[i] > ((int64_t)1 << 40)) return -1;
    return 0;
}

static const char *shape_str(int ndim, const int64_t *s, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)s[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

int mf_layout(const char *format, int ndim, const int64_t *shape, mf_partspec parts[MF_MAX_PARTS], int *nparts, err_t *e) {
    char sb[96];
    int64_t rows, cols;
    if (rows_cols(ndim, shape, &rows, &cols))
        return err_set(e, ERR_ARG, "format %s: shape %s is empty, too large or not 1 to 3 dimensions", format,
                       ndim >= 1 && ndim <= 3 ? shape_str(ndim, shape, sb, sizeof sb) : "?");
    int plain32 = !strcmp(format, "f32");
    if (ndim == 1 || plain32) {
        if (!plain32 && strcmp(format, "bf16"))
            return err_set(e, ERR_ARG, "format %s: a vector is stored as bf16 or f32", format);
        mf_partspec *p = &parts[0];
        p->name = "weight";
        p->dtype = plain32 ? ST_F32 : ST_BF16;
        p->ndim = ndim == 1 ? 1 : 2;
        p->shape[0] = ndim == 1 ? cols : rows;
        p->shape[1] = ndim == 1 ? 0 : cols;
        p->nbytes = (uint64_t)rows * (uint64_t)cols * (plain32 ? 4 : 2);
        *nparts = 1;
        return 0;
    }
    ccq_format f;
    if (ccq_format_parse(format, &f, e)) return -1;
    ccq_part cp[CCQ_MAX_PARTS];
    int n;
    if (ccq_layout(&f, rows, cols, cp, &n, e)) return -1;
    if (n > MF_MAX_PARTS) return err_set(e, ERR_ARG, "format %s: %d parts (at most %d)", format, n, MF_MAX_PARTS);
    for (int i = 0; i < n; i++) {
        parts[i].name = cp[i].name;
        if (st_dtype_parse(cp[i].dtype, &parts[i].dtype))
            return err_set(e, ERR_ARG, "format %s: part %s has dtype %s", format, cp[i].name, cp[i].dtype);
        parts[i].ndim = cp[i].ndim;
        parts[i].shape[0] = cp[i].shape[0];
        parts[i].shape[1] = cp[i].ndim == 2 ? cp[i].shape[1] : 0;
        parts[i].nbytes = cp[i].nbytes;
    }
    *nparts = n;
    return 0;
}

/* ---- the weights a config needs ------------------------------------------------------------------ */

typedef struct {
    mf_expect *v;
    int n, cap, oom;
} elist;

static void ex(elist *l, mf_rule rule, int ndim, int64_t a, int64_t b, int64_t c, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static void ex(elist *l, mf_rule rule, int ndim, int64_t a, int64_t b, int64_t c, const char *fmt, ...) {
    if (l->oom) return;
    if (l->n == l->cap) {
        int nc = l->cap ? 2 * l->cap : 128;
        mf_expect *nv = realloc(l->v, sizeof *nv * (size_t)nc);
        if (!nv) {
            l->oom = 1;
            return;
        }
        l->v = nv;
        l->cap = nc;
    }
    mf_expect *x = &l->v[l->n++];
    memset(x, 0, sizeof *x);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->name, sizeof x->name, fmt, ap);
    va_end(ap);
    x->rule = rule;
    x->ndim = ndim;
    x->shape[0] = a, x->shape[1] = b, x->shape[2] = c;
}

int mf_expected(const cfg_model *c, mf_expect **out) {
    elist l = {0};
    int64_t H = c->hidden_size, V = c->vocab_size, d = c->head_dim, q = d * c->num_attention_heads,
            kv = d * c->num_key_value_heads, E = c->moe_num_experts, Im = c->moe_intermediate_size, Is = cfg_shared_width(c);
    ex(&l, MF_ANY, 2, V, H, 0, "model.embed_tokens");
    for (int i = 0; i < c->num_hidden_layers; i++) {
        ex(&l, MF_ONLY_BF16, 1, H, 0, 0, "model.layers.%d.input_layernorm", i);
        ex(&l, MF_ONLY_BF16, 1, H, 0, 0, "model.layers.%d.post_attention_layernorm", i);
        ex(&l, MF_ANY, 2, q, H, 0, "model.layers.%d.self_attn.q_proj", i);
        ex(&l, MF_ANY, 2, kv, H, 0, "model.layers.%d.self_attn.k_proj", i);
        ex(&l, MF_ANY, 2, kv, H, 0, "model.layers.%d.self_attn.v_proj", i);
        ex(&l, MF_ANY, 2, H, q, 0, "model.layers.%d.self_attn.o_proj", i);
        if (!cfg_is_moe_layer(c, i)) {
            int64_t I = c->intermediate_size;
            ex(&l, MF_ANY, 2, I, H, 0, "model.layers.%d.mlp.gate_proj", i);
            ex(&l, MF_ANY, 2, I, H, 0, "model.layers.%d.mlp.up_proj", i);
            ex(&l, MF_ANY, 2, H, I, 0, "model.layers.%d.mlp.down_proj", i);
            continue;
        }
        ex(&l, MF_ONLY_F32, 2, E, H, 0, "model.layers.%d.mlp.gate", i);
        ex(&l, MF_ONLY_F32, 1, E, 0, 0, "model.layers.%d.mlp.moe_statics.e_score_correction_bias", i);
        ex(&l, MF_ANY, 3, E, Im, H, "model.layers.%d.mlp.experts.gate_proj", i);
        ex(&l, MF_ANY, 3, E, Im, H, "model.layers.%d.mlp.experts.up_proj", i);
        ex(&l, MF_ANY, 3, E, H, Im, "model.layers.%d.mlp.experts.down_proj", i);
        if (Is > 0) {
            ex(&l, MF_ANY, 2, Is, H, 0, "model.layers.%d.mlp.shared_experts.gate_proj", i);
            ex(&l, MF_ANY, 2, Is, H, 0, "model.layers.%d.mlp.shared_experts.up_proj", i);
            ex(&l, MF_ANY, 2, H, Is, 0, "model.layers.%d.mlp.shared_experts.down_proj", i);
        }
    }
    ex(&l, MF_ONLY_BF16, 1, H, 0, 0, "model.norm");
    if (!c->tie_word_embeddings) ex(&l, MF_ANY, 2, V, H, 0, "lm_head");
    if (l.oom) {
        free(l.v);
        return -1;
    }
    *out = l.v;
    return l.n;
}

const char *mf_component(const char *n) {
    if (!strcmp(n, "model.embed_tokens")) return "embedding";
    if (!strcmp(n, "lm_head")) return "lm_head";
    if (strstr(n, "layernorm") || !strcmp(n, "model.norm")) return "norms";
    if (strstr(n, ".self_attn.")) return "attention";
    if (strstr(n, ".mlp.shared_experts.")) return "shared experts";
    if (strstr(n, ".mlp.experts.")) return "experts";
    if (strstr(n, ".mlp.gate") && !strstr(n, "_proj")) return "router";
    if (strstr(n, ".moe_statics.")) return "router";
    if (strstr(n, ".mlp.")) return "dense mlp";
    return "other";
}

/* A weight as declared (reader or writer), for the check against the config. */
typedef struct {
    const char *name, *format;
    int ndim;
    const int64_t *shape;
} wref;

static int cmp_wref(const void *a, const void *b) { return strcmp(((const wref *)a)->name, ((const wref *)b)->name); }
static int cmp_expect(const void *a, const void *b) { return strcmp(((const mf_expect *)a)->name, ((const mf_expect *)b)->name); }

/* The declared weights must be exactly the config's, with its shapes and allowed formats. */
static int check_against_config(const wref *v, int n, const cfg_model *c, const char *L, err_t *e) {
    mf_expect *ex;
    int ne = mf_expected(c, &ex);
    if (ne < 0) return err_set(e, ERR_NOMEM, "out of memory");
    wref *sorted = malloc(sizeof *sorted * (size_t)(n ? n : 1));
    if (!sorted) {
        free(ex);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    memcpy(sorted, v, sizeof *v * (size_t)n);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_wref);
    int rc = 0;
    char a[96], b[96];
    for (int i = 0; i < ne && !rc; i++) {
        wref key = {ex[i].name, NULL, 0, NULL};
        const wref *w = bsearch(&key, sorted, (size_t)n, sizeof key, cmp_wref);
        if (!w) {
            rc = err_set(e, ERR_FORMAT, "%s: weight '%s' is missing (the config needs it)", L, ex[i].name);
            break;
        }
        int same = w->ndim == ex[i].ndim;
        for (int k = 0; same && k < w->ndim; k++) same = w->shape[k] == ex[i].shape[k];
        if (!same)
            rc = err_set(e, ERR_FORMAT, "%s: weight '%s' has shape %s; the config needs %s", L, w->name,
                         shape_str(w->ndim, w->shape, a, sizeof a), shape_str(ex[i].ndim, ex[i].shape, b, sizeof b));
        else if (ex[i].rule == MF_ONLY_BF16 && strcmp(w->format, "bf16"))
            rc = err_set(e, ERR_FORMAT, "%s: weight '%s' is stored as %s; norms must be bf16", L, w->name, w->format);
        else if (ex[i].rule == MF_ONLY_F32 && strcmp(w->format, "f32"))
            rc = err_set(e, ERR_FORMAT, "%s: weight '%s' is stored as %s; the router and its correction bias must be f32", L,
                         w->name, w->format);
    }
    if (!rc && n != ne) {
        qsort(ex, (size_t)ne, sizeof *ex, cmp_expect);
        for (int i = 0; i < n; i++) {
            mf_expect key;
            snprintf(key.name, sizeof key.name, "%s", v[i].name);
            if (strlen(v[i].name) >= sizeof key.name || !bsearch(&key, ex, (size_t)ne, sizeof *ex, cmp_expect)) {
                rc = err_set(e, ERR_FORMAT, "%s: weight '%s' is not part of the model its config describes", L, v[i].name);
                break;
            }
        }
        if (!rc) rc = err_set(e, ERR_FORMAT, "%s: a weight is listed twice", L);
    }
    free(ex);
    free(sorted);
    return rc;
}

/* ---- reading ---------------------------------------------------------------------------------- */

typedef struct {
    mf_weight pub;
    mf_partspec spec[MF_MAX_PARTS];
    int nspec;
    uint64_t first; /* smallest file offset of its parts, for file order */
} iweight;

struct mf_file {
    st_file *st;
    int version;
    cfg_model cfg;
    cfg_gen gen;
    iweight *w;
    int nw;
    int *by_name;
    const st_tensor *tok_model, *tok_special;
    uint64_t *sums; /* per st tensor index */
    uint64_t header_sum;
};

static int parse_hex64(const char *s, uint64_t *out) {
    if (!s || strlen(s) != 16) return -1;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

static int cmp_iw_name(const void *a, const void *b, void *base) {
    const iweight *w = base;
    return strcmp(w[*(const int *)a].pub.name, w[*(const int *)b].pub.name);
}
static int cmp_iw_first(const void *a, const void *b) {
    const iweight *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first;
}

static iweight *find_iw(const mf_file *f, const char *name) {
    int lo = 0, hi = f->nw - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->w[f->by_name[mid]].pub.name, name);
        if (!c) return &f->w[f->by_name[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

static int index_names(mf_file *f, err_t *e) {
    free(f->by_name);
    f->by_name = malloc(sizeof *f->by_name * (size_t)(f->nw + 1));
    if (!f->by_name) return err_set(e, ERR_NOMEM, "out of memory");
    for (int i = 0; i < f->nw; i++) f->by_name[i] = i;
    qsort_r(f->by_name, (size_t)f->nw, sizeof *f->by_name, cmp_iw_name, f->w);
    return 0;
}

static int parse_weights(mf_file *f, const char *text, const char *L, err_t *e) {
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root) return err_set(e, ERR_FORMAT, "%s: metadata 'weights' is not valid JSON: %s", L, je.text);
    int rc = -1;
    if (!json_is_object(root)) {
        err_set(e, ERR_FORMAT, "%s: metadata 'weights' is not a JSON object", L);
        goto out;
    }
    f->w = calloc(json_object_size(root) + 1, sizeof *f->w);
    if (!f->w) {
        err_set(e, ERR_NOMEM, "out of memory");
        goto out;
    }
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v) {
        iweight *w = &f->w[f->nw];
        json_t *jf = json_object_get(v, "format"), *js = json_object_get(v, "shape");
        if (!json_is_object(v) || !json_is_string(jf) || !json_is_array(js) || json_array_size(js) < 1 || json_array_size(js) > 3) {
            err_set(e, ERR_FORMAT, "%s: weight '%.200s': entry needs \"format\" and a \"shape\" of 1 to 3 numbers", L, name);
            goto out;
        }
        w->pub.ndim = (int)json_array_size(js);
        for (int k = 0; k < w->pub.ndim; k++) {
            json_t *d = json_array_get(js, (size_t)k);
            if (!json_is_integer(d) || json_integer_value(d) < 1) {
                err_set(e, ERR_FORMAT, "%s: weight '%.200s': shape[%d] is not a positive integer", L, name, k);
                goto out;
            }
            w->pub.shape[k] = json_integer_value(d);
        }
        w->pub.name = strdup(name);
        w->pub.format = strdup(json_string_value(jf));
        f->nw++;
        if (!w->pub.name || !w->pub.format) {
            err_set(e, ERR_NOMEM, "out of memory");
            goto out;
        }
        if (mf_layout(w->pub.format, w->pub.ndim, w->pub.shape, w->spec, &w->nspec, e)) {
            err_wrap(e, "%s: weight '%.200s': ", L, name);
            goto out;
        }
        rows_cols(w->pub.ndim, w->pub.shape, &w->pub.rows, &w->pub.cols);
        w->first = UINT64_MAX;
    }
    rc = index_names(f, e);
out:
    json_decref(root);
    return rc;
}

/* Assigns every tensor to its weight's part, the tokenizer, or padding. */
static int link_tensors(mf_file *f, const char *L, err_t *e) {
    char wname[512];
    for (int i = 0; i < st_count(f->st); i++) {
        const st_tensor *t = st_at(f->st, i);
        if (st_is_padding(t->name)) continue;
        if (!strncmp(t->name, "tokenizer.", 10)) {
            const st_tensor **slot = !strcmp(t->name, "tokenizer.model")            ? &f->tok_model
                                     : !strcmp(t->name, "tokenizer.special_tokens") ? &f->tok_special
                                                                                    : NULL;
            if (!slot) return err_set(e, ERR_FORMAT, "%s: tensor '%s' is not a known tokenizer tensor", L, t->name);
            if (t->dtype != ST_U8 || t->ndim != 1) return err_set(e, ERR_FORMAT, "%s: tensor '%s' must be U8 of one dimension", L, t->name);
            *slot = t;
            continue;
        }
        const char *dot = strrchr(t->name, '.');
        size_t wl = dot ? (size_t)(dot - t->name) : 0;
        iweight *w = NULL;
        if (dot && wl < sizeof wname) {
            memcpy(wname, t->name, wl);
            wname[wl] = 0;
            w = find_iw(f, wname);
        }
        if (!w) return err_set(e, ERR_FORMAT, "%s: tensor '%s' belongs to no weight of the metadata's weight table", L, t->name);
        int k = 0;
        while (k < w->nspec && strcmp(w->spec[k].name, dot + 1)) k++;
        if (k == w->nspec)
            return err_set(e, ERR_FORMAT, "%s: tensor '%s': format %s has no part '%s'", L, t->name, w->pub.format, dot + 1);
        const mf_partspec *s = &w->spec[k];
        int ok = t->dtype == s->dtype && t->ndim == s->ndim && t->shape[0] == s->shape[0] && (s->ndim == 1 || t->shape[1] == s->shape[1]);
        if (!ok) {
            char a[96], b[96];
            return err_set(e, ERR_FORMAT, "%s: tensor '%s' is %s %s; format %s of shape %s needs %s %s", L, t->name,
                           st_dtype_name(t->dtype), shape_str(t->ndim, t->shape, a, sizeof a), w->pub.format,
                           shape_str(w->pub.ndim, w->pub.shape, wname, sizeof wname), st_dtype_name(s->dtype),
                           shape_str(s->ndim, s->shape, b, sizeof b));
        }
        w->pub.part[k] = (mf_part){s->name, t};
        w->pub.nbytes += t->nbytes;
        if (t->file_offset < w->first) w->first = t->file_offset;
    }
    for (int i = 0; i < f->nw; i++) {
        iweight *w = &f->w[i];
        w->pub.nparts = w->nspec;
        for (int k = 0; k < w->nspec; k++)
            if (!w->pub.part[k].t)
                return err_set(e, ERR_FORMAT, "%s: weight '%s' (%s) has no part '%s' (tensor '%s.%s' is missing)", L, w->pub.name,
                               w->pub.format, w->spec[k].name, w->pub.name, w->spec[k].name);
    }
    return 0;
}

static int parse_checksums(mf_file *f, const char *L, err_t *e) {
    const char *s = st_meta(f->st, "checksums"), *hs = st_meta(f->st, "header_checksum");
    if (!s || !hs) return err_set(e, ERR_FORMAT, "%s: no checksums in the metadata (not written by ernie, or its writing never finished)", L);
    if (parse_hex64(hs, &f->header_sum)) return err_set(e, ERR_FORMAT, "%s: metadata 'header_checksum' is not 16 hex digits", L);
    f->sums = calloc((size_t)st_count(f->st) + 1, sizeof *f->sums);
    uint8_t *seen = calloc((size_t)st_count(f->st) + 1, 1);
    if (!f->sums || !seen) {
        free(seen);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    json_error_t je;
    json_t *root = json_loads(s, JSON_REJECT_DUPLICATES, &je);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = err_set(e, ERR_FORMAT, "%s: metadata 'checksums' is not a JSON object%s%s", L, root ? "" : ": ", root ? "" : je.text);
        goto out;
    }
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v) {
        const st_tensor *t = st_find(f->st, name);
        if (!t || st_is_padding(name)) {
            rc = err_set(e, ERR_FORMAT, "%s: metadata 'checksums' lists '%.200s', which is not a tensor of the file", L, name);
            goto out;
        }
        size_t i = (size_t)(t - st_at(f->st, 0));
        if (parse_hex64(json_string_value(v), &f->sums[i])) {
            rc = err_set(e, ERR_FORMAT, "%s: the checksum of '%.200s' is not 16 hex digits", L, name);
            goto out;
        }
        seen[i] = 1;
    }
    for (int i = 0; i < st_count(f->st); i++)
        if (!seen[i] && !st_is_padding(st_at(f->st, i)->name)) {
            rc = err_set(e, ERR_FORMAT, "%s: tensor '%s' has no checksum", L, st_at(f->st, i)->name);
            goto out;
        }
out:
    json_decref(root);
    free(seen);
    return rc;
}

static int finish_open(mf_file *f, mf_file **out, err_t *e) {
    const char *L = st_path(f->st);
    const char *fmt = st_meta(f->st, "format");
    if (!fmt || strcmp(fmt, "ernie")) {
        if (!fmt && st_find(f->st, "model.embed_tokens.weight"))
            return err_set(e, ERR_FORMAT, "%s: not an ernie model file but a Hugging Face checkpoint file: import the checkpoint first", L);
        return err_set(e, ERR_FORMAT, "%s: not an ernie model file (its metadata has no \"format\": \"ernie\")", L);
    }
    const char *ver = st_meta(f->st, "format_version");
    char *end = NULL;
    long v = ver ? strtol(ver, &end, 10) : 0;
    if (!ver || !*ver || *end || v < 1) return err_set(e, ERR_FORMAT, "%s: metadata 'format_version' is missing or not a number", L);
    if (v != MF_FORMAT_VERSION)
        return err_set(e, ERR_UNSUPPORTED, "%s: format version %ld; this ernie reads version %d (a newer ernie wrote it?)", L, v,
                       MF_FORMAT_VERSION);
    f->version = (int)v;
    char lab[600];
    const char *cj = st_meta(f->st, "config"), *gj = st_meta(f->st, "generation"), *wj = st_meta(f->st, "weights");
    if (!cj) return err_set(e, ERR_FORMAT, "%s: no model config in the metadata", L);
    snprintf(lab, sizeof lab, "%s: metadata 'config'", L);
    if (cfg_parse(&f->cfg, cj, strlen(cj), lab, e)) return -1;
    cfg_gen_defaults(&f->gen);
    snprintf(lab, sizeof lab, "%s: metadata 'generation'", L);
    if (gj && cfg_gen_parse(&f->gen, gj, strlen(gj), lab, e)) return -1;
    if (!wj) return err_set(e, ERR_FORMAT, "%s: no weight table ('weights') in the metadata", L);
    if (parse_weights(f, wj, L, e) || link_tensors(f, L, e) || parse_checksums(f, L, e)) return -1;
    qsort(f->w, (size_t)f->nw, sizeof *f->w, cmp_iw_first);
    if (index_names(f, e)) return -1;
    wref *refs = malloc(sizeof *refs * (size_t)(f->nw + 1));
    if (!refs) return err_set(e, ERR_NOMEM, "out of memory");
    for (int i = 0; i < f->nw; i++) refs[i] = (wref){f->w[i].pub.name, f->w[i].pub.format, f->w[i].pub.ndim, f->w[i].pub.shape};
    int rc = check_against_config(refs, f->nw, &f->cfg, L, e);
    free(refs);
    if (rc) return -1;
    *out = f;
    return 0;
}

int mf_open(mf_file **out, const char *path, err_t *e) {
    *out = NULL;
    mf_file *f = calloc(1, sizeof *f);
    if (!f) return err_set(e, ERR_NOMEM, "out of memory");
    if (st_open(&f->st, path, e) || finish_open(f, out, e)) {
        mf_close(f);
        return -1;
    }
    return 0;
}

int mf_open_memory(mf_file **out, const void *buf, size_t len, const char *label, err_t *e) {
    *out = NULL;
    mf_file *f = calloc(1, sizeof *f);
    if (!f) return err_set(e, ERR_NOMEM, "out of memory");
    if (st_open_memory(&f->st, buf, len, label, e) || finish_open(f, out, e)) {
        mf_close(f);
        return -1;
    }
    return 0;
}

void mf_close(mf_file *f) {
    if (!f) return;
    for (int i = 0; i < f->nw; i++) {
        free((char *)f->w[i].pub.name);
        free((char *)f->w[i].pub.format);
    }
    free(f->w);
    free(f->by_name);
    free(f->sums);
    st_close(f->st);
    free(f);
}

const char *mf_path(const mf_file *f) { return st_path(f->st); }
const st_file *mf_st(const mf_file *f) { return f->st; }
int mf_version(const mf_file *f) { return f->version; }
const cfg_model *mf_config(const mf_file *f) { return &f->cfg; }
const cfg_gen *mf_generation(const mf_file *f) { return &f->gen; }
const char *mf_meta(const mf_file *f, const char *key) { return st_meta(f->st, key); }
int mf_nweights(const mf_file *f) { return f->nw; }
const mf_weight *mf_weight_at(const mf_file *f, int i) { return i >= 0 && i < f->nw ? &f->w[i].pub : NULL; }
const st_tensor *mf_tokenizer_model(const mf_file *f) { return f->tok_model; }
const st_tensor *mf_special_tokens(const mf_file *f) { return f->tok_special; }

const mf_weight *mf_find_weight(const mf_file *f, const char *name) {
    const iweight *w = find_iw(f, name);
    return w ? &w->pub : NULL;
}

const mf_part *mf_weight_part(const mf_weight *w, const char *part) {
    for (int i = 0; i < w->nparts; i++)
        if (!strcmp(w->part[i].name, part)) return &w->part[i];
    return NULL;
}

/* ---- verification ------------------------------------------------------------------------------ */

enum { SLICE = 16 << 20 };

/* One unit of verification: a weight (all its parts) or a lone tensor (the tokenizer's). */
typedef struct {
    uint64_t off; /* where it starts in the file: tasks run and report in file order */
    const st_tensor *single;
    const iweight *weight;
} vtask;

static int cmp_vtask(const void *a, const void *b) {
    const vtask *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

typedef struct {
    const mf_file *f;
    vtask *task;
    int ntasks;
    err_t *errs; /* per task; code != ERR_OK marks a failure */
    atomic_uint_fast64_t done;
    double total;
    void (*progress)(void *, double, double);
    void *ctx;
} vjob;

static int hash_tensor(vjob *j, const st_tensor *t, err_t *e) {
    XXH3_state_t *s = XXH3_createState();
    if (!s) return err_set(e, ERR_NOMEM, "out of memory");
    XXH3_64bits_reset(s);
    const uint8_t *p = t->data;
    for (uint64_t off = 0; off < t->nbytes; off += SLICE) {
        size_t n = (size_t)(t->nbytes - off < SLICE ? t->nbytes - off : SLICE);
        XXH3_64bits_update(s, p + off, n);
        uint64_t d = atomic_fetch_add(&j->done, n) + n;
        if (j->progress) j->progress(j->ctx, (double)d, j->total);
    }
    uint64_t h = XXH3_64bits_digest(s);
    XXH3_freeState(s);
    size_t i = (size_t)(t - st_at(j->f->st, 0));
    if (h != j->f->sums[i]) {
        char a[17], b[17];
        st_hex64(h, a);
        st_hex64(j->f->sums[i], b);
        return err_set(e, ERR_CORRUPT, "tensor '%s' is corrupt: its bytes hash to %s, the file says %s", t->name, a, b);
    }
    return 0;
}

/* Values a corrupt file could hold that the codec does not see: non-finite f32 or bf16 vectors. */
static int check_plain(const iweight *w, err_t *e) {
    const st_tensor *t = w->pub.part[0].t;
    const uint8_t *p = t->data;
    for (uint64_t i = 0; i < t->numel; i++) {
        float v;
        if (t->dtype == ST_F32) memcpy(&v, p + 4 * i, 4);
        else {
            uint16_t b;
            memcpy(&b, p + 2 * i, 2);
            v = bf16_to_f32(b);
        }
        if (!isfinite(v)) return err_set(e, ERR_CORRUPT, "weight '%s' holds a non-finite value at element %llu", w->pub.name, (unsigned long long)i);
    }
    return 0;
}

static int validate_weight(const iweight *w, err_t *e) {
    if (w->pub.ndim == 1 || !strcmp(w->pub.format, "f32")) return check_plain(w, e);
    ccq_format fmt;
    if (ccq_format_parse(w->pub.format, &fmt, e)) return -1;
    ccq_part parts[CCQ_MAX_PARTS];
    for (int k = 0; k < w->pub.nparts; k++) {
        const st_tensor *t = w->pub.part[k].t;
        parts[k] = (ccq_part){w->pub.part[k].name, st_dtype_name(t->dtype), t->ndim, {t->shape[0], t->ndim == 2 ? t->shape[1] : 0},
                              (size_t)t->nbytes, t->data};
    }
    ccq_tensor ct;
    int rc = ccq_wrap(&fmt, w->pub.rows, w->pub.cols, parts, w->pub.nparts, &ct, e);
    if (rc) err_wrap(e, "weight '%s': ", w->pub.name);
    else ccq_free(&ct);
    return rc;
}

static void verify_task(void *ctx, int64_t b, int64_t en, int tid) {
    (void)tid;
    vjob *j = ctx;
    for (int64_t i = b; i < en; i++) {
        err_t *e = &j->errs[i];
        if (j->task[i].single) {
            hash_tensor(j, j->task[i].single, e);
            continue;
        }
        const iweight *w = j->task[i].weight;
        int rc = 0;
        for (int k = 0; k < w->pub.nparts && !rc; k++) rc = hash_tensor(j, w->pub.part[k].t, e);
        if (!rc) validate_weight(w, e);
    }
}

int mf_verify(const mf_file *f, pool *p, void (*progress)(void *ctx, double done, double total), void *ctx, err_t *e) {
    const char *L = st_path(f->st);
    uint64_t hs = st_header_checksum(f->st);
    if (hs != f->header_sum) {
        char a[17], b[17];
        st_hex64(hs, a);
        st_hex64(f->header_sum, b);
        return err_set(e, ERR_CORRUPT, "%s: the header checksum is %s, the file says %s: its metadata or tensor table was changed", L, a, b);
    }
    vjob j = {.f = f, .progress = progress, .ctx = ctx};
    j.task = calloc((size_t)f->nw + 2, sizeof *j.task);
    j.errs = calloc((size_t)f->nw + 2, sizeof *j.errs);
    if (!j.task || !j.errs) {
        free(j.task), free(j.errs);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < f->nw; i++) j.task[j.ntasks++] = (vtask){f->w[i].first, NULL, &f->w[i]};
    if (f->tok_model) j.task[j.ntasks++] = (vtask){f->tok_model->file_offset, f->tok_model, NULL};
    if (f->tok_special) j.task[j.ntasks++] = (vtask){f->tok_special->file_offset, f->tok_special, NULL};
    qsort(j.task, (size_t)j.ntasks, sizeof *j.task, cmp_vtask);
    double total = 0;
    for (int i = 0; i < st_count(f->st); i++)
        if (!st_is_padding(st_at(f->st, i)->name)) total += (double)st_at(f->st, i)->nbytes;
    j.total = total;
    atomic_init(&j.done, 0);
    if (progress) progress(ctx, 0, total);
    pool_for(p, j.ntasks, 1, verify_task, &j);
    /* the workers' calls can arrive out of order: end on the whole count, after all of them */
    if (progress) progress(ctx, total, total);
    int bad = 0, first = -1;
    for (int i = 0; i < j.ntasks; i++)
        if (j.errs[i].code != ERR_OK) {
            if (first < 0) first = i;
            bad++;
        }
    int rc = 0;
    if (first >= 0) {
        rc = err_set(e, j.errs[first].code, "%s: %s", L, j.errs[first].msg);
        if (bad > 1) err_wrap(e, "%d weights or tensors are bad; the first: ", bad);
    }
    free(j.task), free(j.errs);
    return rc;
}

/* ---- writing ------------------------------------------------------------------------------------ */

typedef struct {
    char *name, *format;
    int ndim;
    int64_t shape[3];
    mf_partspec spec[MF_MAX_PARTS];
    int nspec;
    int idx[MF_MAX_PARTS]; /* st_writer tensor index per part */
} wweight;

struct mf_writer {
    st_writer *sw;
    char *path;
    cfg_model cfg;
    cfg_gen gen;
    char *recipe;
    wweight *w;
    int nw, cap;
    uint8_t *spm;
    size_t spm_len;
    char *special;
    int tok_idx[2];
    int has_tok;
};

int mf_writer_new(mf_writer **out, const char *path, int overwrite, const cfg_model *c, const cfg_gen *g, const char *recipe,
                  err_t *e) {
    *out = NULL;
    if (cfg_validate(c, path, e)) return -1;
    mf_writer *w = calloc(1, sizeof *w);
    if (!w) return err_set(e, ERR_NOMEM, "out of memory");
    w->cfg = *c;
    if (g) w->gen = *g;
    else cfg_gen_defaults(&w->gen);
    w->path = strdup(path);
    w->recipe = strdup(recipe ? recipe : "custom");
    if (!w->path || !w->recipe) {
        mf_writer_abort(w);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    if (st_writer_new(&w->sw, path, ST_W_CHECKSUMS | (overwrite ? ST_W_OVERWRITE : 0), e)) {
        mf_writer_abort(w);
        return -1;
    }
    *out = w;
    return 0;
}

int mf_writer_meta(mf_writer *w, const char *key, const char *value, err_t *e) {
    static const char *own[] = {"format", "format_version", "config", "generation", "chat_template", "recipe", "weights"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (!strcmp(key, own[i])) return err_set(e, ERR_ARG, "%s: metadata '%s' is written by the model file writer itself", w->path, key);
    return st_writer_meta(w->sw, key, value, e);
}

int mf_writer_weight(mf_writer *w, const char *name, const char *format, int ndim, const int64_t *shape, err_t *e) {
    if (w->nw == w->cap) {
        int c = w->cap ? 2 * w->cap : 64;
        wweight *n = realloc(w->w, sizeof *n * (size_t)c);
        if (!n) return err_set(e, ERR_NOMEM, "out of memory");
        w->w = n;
        w->cap = c;
    }
    wweight *x = &w->w[w->nw];
    memset(x, 0, sizeof *x);
    if (ndim < 1 || ndim > 3) return err_set(e, ERR_ARG, "%s: weight '%s': %d dimensions", w->path, name, ndim);
    if (mf_layout(format, ndim, shape, x->spec, &x->nspec, e)) return err_wrap(e, "%s: weight '%s': ", w->path, name);
    x->ndim = ndim;
    memcpy(x->shape, shape, sizeof(int64_t) * (size_t)ndim);
    x->name = strdup(name);
    x->format = strdup(format);
    if (!x->name || !x->format) {
        free(x->name), free(x->format);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    w->nw++; /* owned from here, so abort frees the names */
    char tn[600];
    for (int k = 0; k < x->nspec; k++) {
        snprintf(tn, sizeof tn, "%s.%s", name, x->spec[k].name);
        int64_t sh[2] = {x->spec[k].shape[0], x->spec[k].shape[1]};
        x->idx[k] = st_writer_add(w->sw, tn, x->spec[k].dtype, x->spec[k].ndim, sh, e);
        if (x->idx[k] < 0) return -1;
    }
    return w->nw - 1;
}

int mf_writer_tokenizer(mf_writer *w, const void *spm, size_t spm_len, const char *special_json, err_t *e) {
    if (w->has_tok) return err_set(e, ERR_ARG, "%s: the tokenizer was given twice", w->path);
    w->spm = malloc(spm_len + 1);
    w->special = strdup(special_json);
    if (!w->spm || !w->special) return err_set(e, ERR_NOMEM, "out of memory");
    memcpy(w->spm, spm, spm_len);
    w->spm_len = spm_len;
    int64_t a[1] = {(int64_t)spm_len}, b[1] = {(int64_t)strlen(special_json)};
    if ((w->tok_idx[0] = st_writer_add(w->sw, "tokenizer.model", ST_U8, 1, a, e)) < 0) return -1;
    if ((w->tok_idx[1] = st_writer_add(w->sw, "tokenizer.special_tokens", ST_U8, 1, b, e)) < 0) return -1;
    w->has_tok = 1;
    return 0;
}

int mf_writer_begin(mf_writer *w, err_t *e) {
    wref *refs = malloc(sizeof *refs * (size_t)(w->nw + 1));
    if (!refs) return err_set(e, ERR_NOMEM, "out of memory");
    for (int i = 0; i < w->nw; i++) refs[i] = (wref){w->w[i].name, w->w[i].format, w->w[i].ndim, w->w[i].shape};
    int rc = check_against_config(refs, w->nw, &w->cfg, w->path, e);
    free(refs);
    if (rc) return -1;
    json_t *tab = json_object();
    for (int i = 0; tab && i < w->nw; i++) {
        json_t *sh = json_array();
        for (int k = 0; k < w->w[i].ndim; k++) json_array_append_new(sh, json_integer(w->w[i].shape[k]));
        json_t *ent = json_object();
        json_object_set_new(ent, "format", json_string(w->w[i].format));
        json_object_set_new(ent, "shape", sh);
        json_object_set_new(tab, w->w[i].name, ent);
    }
    char *wj = tab ? json_dumps(tab, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(tab);
    char *cj = cfg_to_json(&w->cfg), *gj = cfg_gen_to_json(&w->gen);
    char ver[16];
    snprintf(ver, sizeof ver, "%d", MF_FORMAT_VERSION);
    if (!wj || !cj || !gj) rc = err_set(e, ERR_NOMEM, "out of memory");
    if (!rc)
        rc = st_writer_meta(w->sw, "format", "ernie", e) || st_writer_meta(w->sw, "format_version", ver, e) ||
             st_writer_meta(w->sw, "config", cj, e) || st_writer_meta(w->sw, "generation", gj, e) ||
             st_writer_meta(w->sw, "chat_template", "ernie-4.5", e) || st_writer_meta(w->sw, "recipe", w->recipe, e) ||
             st_writer_meta(w->sw, "weights", wj, e);
    free(wj), free(cj), free(gj);
    if (rc || st_writer_begin(w->sw, e)) return -1;
    if (w->has_tok && (st_writer_write(w->sw, w->tok_idx[0], w->spm, w->spm_len, e) ||
                       st_writer_write(w->sw, w->tok_idx[1], w->special, strlen(w->special), e)))
        return -1;
    return 0;
}

static int find_part(const mf_writer *w, int weight, const char *part) {
    if (weight < 0 || weight >= w->nw) return -1;
    for (int k = 0; k < w->w[weight].nspec; k++)
        if (!strcmp(w->w[weight].spec[k].name, part)) return k;
    return -1;
}

int mf_writer_part(mf_writer *w, int weight, const char *part, const void *data, size_t len, err_t *e) {
    int k = find_part(w, weight, part);
    if (k < 0)
        return err_set(e, ERR_ARG, "%s: weight %s has no part '%s'", w->path, weight >= 0 && weight < w->nw ? w->w[weight].name : "?",
                       part);
    return st_writer_write(w->sw, w->w[weight].idx[k], data, len, e);
}

uint64_t mf_writer_part_bytes(const mf_writer *w, int weight, const char *part) {
    int k = find_part(w, weight, part);
    return k < 0 ? 0 : w->w[weight].spec[k].nbytes;
}

static void free_mw(mf_writer *w) {
    for (int i = 0; i < w->nw; i++) {
        free(w->w[i].name);
        free(w->w[i].format);
    }
    free(w->w);
    free(w->spm);
    free(w->special);
    free(w->path);
    free(w->recipe);
    free(w);
}

int mf_writer_commit(mf_writer *w, err_t *e) {
    int rc = st_writer_commit(w->sw, e);
    w->sw = NULL;
    free_mw(w);
    return rc;
}

void mf_writer_abort(mf_writer *w) {
    if (!w) return;
    st_writer_abort(w->sw);
    free_mw(w);
}

const char *mf_writer_temp_path(const mf_writer *w) { return w->sw ? st_writer_temp_path(w->sw) : ""; }

int mf_weight_decode(const mf_weight *w, float *out, err_t *e) {
    size_t n = (size_t)(w->rows * w->cols);
    if (!strcmp(w->format, "f32")) {
        memcpy(out, w->part[0].t->data, n * 4);
        return 0;
    }
    ccq_format f;
    ccq_part parts[CCQ_MAX_PARTS];
    int np = 0;
    if (ccq_format_parse(w->format, &f, e) || ccq_layout(&f, w->rows, w->cols, parts, &np, e)) return -1;
    for (int i = 0; i < np; i++) {
        const mf_part *p = mf_weight_part(w, parts[i].name);
        if (!p) return err_set(e, ERR_FORMAT, "weight %s has no part %s", w->name, parts[i].name);
        parts[i].data = p->t->data;
    }
    ccq_tensor t;
    if (ccq_wrap(&f, w->rows, w->cols, parts, np, &t, e)) return -1;
    int rc = ccq_decode(&t, out, NULL, e);
    ccq_free(&t);
    return rc;
}
