/* model/import.c: the importer. Reads through model/hf.h, encodes through ccq/ccq.h, writes through
 * model/modelfile.h; knows the mapping from our weight names to the hub's (spec §3) and nothing about
 * bit layouts. */
#include "import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/clock.h"
#include "ccq/ccq.h"
#include "model/hf.h"
#include "model/modelfile.h"
#include "tokenizer/hf_special.h"
#include "tokenizer/spm.h"

static rc_class classify(const char *n) {
    if (!strcmp(n, "model.embed_tokens")) return RC_EMBED;
    if (!strcmp(n, "lm_head")) return RC_HEAD;
    if (strstr(n, "e_score_correction_bias") || strstr(n, "layernorm") || !strcmp(n, "model.norm")) return RC_VECTOR;
    if (strstr(n, ".self_attn.")) return RC_ATTN;
    if (strstr(n, ".mlp.experts.")) return RC_EXPERTS;
    if (strstr(n, ".mlp.shared_experts.")) return RC_SHARED;
    size_t l = strlen(n);
    if (l > 9 && !strcmp(n + l - 9, ".mlp.gate")) return RC_ROUTER;
    return RC_DENSE;
}

/* Position of the weight's layer among the MoE layers (0 = first MoE layer), -1 when not in one. */
static int moe_index(const cfg_model *c, const char *n) {
    int L;
    if (sscanf(n, "model.layers.%d.", &L) != 1 || !cfg_is_moe_layer(c, L)) return -1;
    int k = 0;
    for (int i = 0; i < L; i++) k += cfg_is_moe_layer(c, i);
    return k;
}

static void fmt_of(const cfg_model *c, const recipe *r, const mf_expect *x, char *out, size_t n) {
    if (x->rule == MF_ONLY_F32) snprintf(out, n, "f32");
    else if (x->rule == MF_ONLY_BF16) snprintf(out, n, "bf16");
    else recipe_format(r, x->name, classify(x->name), moe_index(c, x->name), out, n);
}

/* The hub tensor holding weight x (expert e for stacked kinds). */
static void hub_name(const mf_expect *x, int e, char *out, size_t n) { hf_source_name(x->name, x->ndim == 3, e, out, n); }

static void rows_cols(const mf_expect *x, int64_t *rows, int64_t *cols) {
    if (x->ndim == 1) *rows = 1, *cols = x->shape[0];
    else if (x->ndim == 2) *rows = x->shape[0], *cols = x->shape[1];
    else *rows = x->shape[0] * x->shape[1], *cols = x->shape[2];
}

int imp_plan_make(const imp_opts *o, imp_plan *p, err_t *err) {
    memset(p, 0, sizeof *p);
    hf_ckpt *h = NULL;
    mf_expect *xs = NULL;
    int rc = -1;
    if (hf_open(&h, o->hf_dir, err)) return -1;
    const char *first = NULL;
    if (hf_check(h, &p->n_unexpected, &first, err)) goto out;
    const cfg_model *c = hf_config(h);
    int n = mf_expected(c, &xs);
    if (n < 0) {
        err_set(err, ERR_NOMEM, "out of memory");
        goto out;
    }
    p->nweights = n;
    for (int i = 0; i < n; i++) {
        char fmt[96];
        fmt_of(c, o->recipe, &xs[i], fmt, sizeof fmt);
        mf_partspec parts[MF_MAX_PARTS];
        int np = 0;
        if (mf_layout(fmt, xs[i].ndim, xs[i].shape, parts, &np, err)) {
            err_wrap(err, "weight %s: ", xs[i].name);
            goto out;
        }
        int64_t rows, cols;
        rows_cols(&xs[i], &rows, &cols);
        uint64_t bytes = 0;
        for (int j = 0; j < np; j++) bytes += parts[j].nbytes;
        int E = xs[i].ndim == 3 ? (int)xs[i].shape[0] : 1;
        for (int e = 0; e < E; e++) {
            char hub[256];
            hub_name(&xs[i], e, hub, sizeof hub);
            const st_tensor *t = hf_find(h, hub, NULL);
            if (t) p->bytes_in += t->nbytes, p->ntensors_in++;
        }
        p->params += rows * cols;
        p->bytes_out += bytes;
        const char *cn = mf_component(xs[i].name);
        int k = 0;
        while (k < p->ncomp && strcmp(p->comp[k].name, cn)) k++;
        if (k == p->ncomp && p->ncomp < IMP_NCOMP) p->comp[p->ncomp++].name = cn;
        if (k < IMP_NCOMP) {
            p->comp[k].params += rows * cols;
            p->comp[k].bytes += bytes;
            char *fl = p->comp[k].formats;
            if (!strstr(fl, fmt)) {
                size_t l = strlen(fl);
                snprintf(fl + l, sizeof p->comp[k].formats - l, "%s%s", l ? "," : "", fmt);
            }
        }
    }
    p->kv_bytes_per_token = (uint64_t)c->num_hidden_layers * 2 * (uint64_t)c->num_key_value_heads * (uint64_t)c->head_dim * 2;
    rc = 0;
out:
    free(xs);
    hf_close(h);
    return rc;
}

/* Returns the mapped pages of a tensor to the kernel: the import has read them for good. */
static void release(const st_tensor *t) {
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)t->data, b = a + t->nbytes;
    a = (a + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    b &= ~((uintptr_t)pg - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

static int add_tokenizer(mf_writer *w, const char *dir, err_t *err) {
    char *bytes = NULL, *json = NULL;
    size_t len = 0;
    hf_special_table tab = {0};
    if (hf_read_tokenizer(dir, &bytes, &len, &tab, err)) return -1;
    int rc = hf_special_to_json(tab.v, tab.n, &json, err) ? -1 : mf_writer_tokenizer(w, bytes, len, json, err);
    free(json);
    hf_special_table_free(&tab);
    free(bytes);
    return rc;
}

typedef struct {
    const imp_opts *o;
    double done, total;
    const char *name;
} prog;

static void enc_progress(void *ctx, double rows_done, double rows_total) {
    prog *p = ctx;
    (void)rows_total;
    (void)rows_done;
    if (p->o->progress) p->o->progress(p->o->progress_ctx, p->done, p->total, p->name);
}

int imp_run(const imp_opts *o, imp_result *res, err_t *err) {
    memset(res, 0, sizeof *res);
    double t0 = clock_now();
    hf_ckpt *h = NULL;
    mf_expect *xs = NULL;
    mf_writer *w = NULL;
    float *buf = NULL;
    int *ids = NULL;
    char (*fmts)[96] = NULL; /* each weight's format, decided once */
    int rc = -1;
    if (hf_open(&h, o->hf_dir, err) || hf_check(h, NULL, NULL, err)) goto out;
    const cfg_model *c = hf_config(h);
    int n = mf_expected(c, &xs);
    if (n < 0) {
        err_set(err, ERR_NOMEM, "out of memory");
        goto out;
    }
    if (mf_writer_new(&w, o->out_path, o->overwrite, c, hf_generation(h), recipe_name(o->recipe), err)) goto out;
    char src[4096];
    snprintf(src, sizeof src, "%s", o->hf_dir);
    mf_writer_meta(w, "source", src, NULL);
    if (o->calib && o->calib_desc) mf_writer_meta(w, "calibration", o->calib_desc, NULL);
    ids = calloc((size_t)n, sizeof *ids);
    fmts = calloc((size_t)n, sizeof *fmts);
    if (!ids || !fmts) {
        err_set(err, ERR_NOMEM, "out of memory");
        goto out;
    }
    uint64_t total_in = 0;
    for (int i = 0; i < n; i++) {
        fmt_of(c, o->recipe, &xs[i], fmts[i], sizeof fmts[i]);
        if ((ids[i] = mf_writer_weight(w, xs[i].name, fmts[i], xs[i].ndim, xs[i].shape, err)) < 0) goto out;
        int E = xs[i].ndim == 3 ? (int)xs[i].shape[0] : 1;
        for (int e = 0; e < E; e++) {
            char hub[256];
            hub_name(&xs[i], e, hub, sizeof hub);
            const st_tensor *t = hf_find(h, hub, NULL);
            if (t) total_in += t->nbytes;
        }
    }
    if (add_tokenizer(w, o->hf_dir, err) || mf_writer_begin(w, err)) goto out;

    prog pg = {o, 0, (double)total_in, NULL};
    uint64_t wbits = 0, wcount = 0;
    for (int i = 0; i < n; i++) {
        if (o->stop && *o->stop) {
            err_set(err, ERR_INTERRUPTED, "interrupted; no file was written");
            goto out;
        }
        const mf_expect *x = &xs[i];
        int64_t rows, cols;
        rows_cols(x, &rows, &cols);
        int E = x->ndim == 3 ? (int)x->shape[0] : 1;
        size_t per = (size_t)(rows / E) * (size_t)cols;
        free(buf);
        buf = malloc((size_t)rows * (size_t)cols * sizeof *buf);
        if (!buf) {
            err_set(err, ERR_NOMEM, "out of memory reading %s (%lld x %lld floats)", x->name, (long long)rows, (long long)cols);
            goto out;
        }
        pg.name = x->name;
        for (int e = 0; e < E; e++) {
            char hub[256];
            const char *shard = NULL;
            hub_name(x, e, hub, sizeof hub);
            const st_tensor *t = hf_find(h, hub, &shard);
            if (!t || t->numel != per) {
                err_set(err, ERR_FORMAT, "%s: tensor %s is missing or has %llu values, %zu expected", o->hf_dir, hub,
                        t ? (unsigned long long)t->numel : 0ull, per);
                goto out;
            }
            if (hf_to_float(t, 0, per, buf + (size_t)e * per, err)) {
                err_wrap(err, "%s (%s): ", hub, shard ? shard : "?");
                goto out;
            }
            release(t);
            pg.done += (double)t->nbytes;
        }
        const char *fmt = fmts[i];
        if (!strcmp(fmt, "f32")) {
            if (mf_writer_part(w, ids[i], "weight", buf, (size_t)rows * (size_t)cols * 4, err)) goto out;
            wbits += (uint64_t)rows * (uint64_t)cols * 32;
        } else {
            ccq_format f;
            if (ccq_format_parse(fmt, &f, err)) {
                err_wrap(err, "weight %s: ", x->name);
                goto out;
            }
            ccq_tensor q = {0};
            ccq_encode_opts eo = {.pool = o->pool, .progress = enc_progress, .progress_ctx = &pg};
            float *imp = NULL;
            if (o->calib && strcmp(fmt, "bf16")) {
                int found;
                err_t ie = {0};
                imp = calib_importance(o->calib, x->name, E, cols, &found, &ie);
                if (ie.code) {
                    *err = ie;
                    goto out;
                }
                eo.importance = imp;
                eo.importance_rows = E > 1 ? rows / E : 0;
            }
            int erc = ccq_encode(&f, buf, rows, cols, &eo, &q, err);
            free(imp);
            if (erc) {
                err_wrap(err, "weight %s: ", x->name);
                goto out;
            }
            for (int j = 0; j < q.nparts; j++) {
                if (mf_writer_part(w, ids[i], q.part[j].name, q.part[j].data, q.part[j].nbytes, err)) {
                    ccq_free(&q);
                    goto out;
                }
                wbits += (uint64_t)q.part[j].nbytes * 8;
            }
            ccq_free(&q);
        }
        wcount += (uint64_t)rows * (uint64_t)cols;
        if (o->progress) o->progress(o->progress_ctx, pg.done, pg.total, x->name);
    }
    free(buf);
    buf = NULL;
    if (o->stop && *o->stop) {
        err_set(err, ERR_INTERRUPTED, "interrupted; no file was written");
        goto out;
    }
    int crc = mf_writer_commit(w, err);
    w = NULL;
    if (crc) goto out;
    FILE *f = fopen(o->out_path, "rb");
    if (f) {
        fseek(f, 0, SEEK_END);
        res->file_bytes = (uint64_t)ftell(f);
        fclose(f);
    }
    res->bpw = wcount ? (double)wbits / (double)wcount : 0;
    rc = 0;
out:
    if (w) mf_writer_abort(w);
    free(buf);
    free(ids);
    free(fmts);
    free(xs);
    hf_close(h);
    res->seconds = clock_now() - t0;
    res->peak_rss = clock_peak_rss();
    return rc;
}
