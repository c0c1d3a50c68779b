/* model/compare.c */
#include "compare.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/hf.h"

static void add(cmp_row *rows, int *n, int max, const char *name, double err2, double ref2) {
    int i = 0;
    while (i < *n && strcmp(rows[i].name, name)) i++;
    if (i == *n) {
        if (*n == max) return;
        memset(&rows[i], 0, sizeof rows[i]);
        snprintf(rows[i].name, sizeof rows[i].name, "%s", name);
        (*n)++;
    }
    rows[i].err2 += err2;
    rows[i].ref2 += ref2;
}

int cmp_against(const mf_file *f, const char *hf_dir, void (*progress)(void *, double, double), void *ctx,
                cmp_report *r, err_t *e) {
    memset(r, 0, sizeof *r);
    hf_ckpt *h = NULL;
    if (hf_open(&h, hf_dir, e)) return -1;
    int nw = mf_nweights(f), rc = -1;
    float *a = NULL, *b = NULL;
    r->w = calloc((size_t)nw, sizeof *r->w);
    if (!r->w) {
        err_set(e, ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < nw; i++) {
        const mf_weight *w = mf_weight_at(f, i);
        size_t n = (size_t)(w->rows * w->cols);
        free(a), free(b);
        a = malloc(n * sizeof *a);
        b = malloc(n * sizeof *b);
        if (!a || !b) {
            err_set(e, ERR_NOMEM, "out of memory comparing %s", w->name);
            goto out;
        }
        if (mf_weight_decode(w, a, e)) {
            err_wrap(e, "%s: ", mf_path(f));
            goto out;
        }
        int E = w->ndim == 3 ? (int)w->shape[0] : 1;
        size_t per = n / (size_t)E;
        for (int x = 0; x < E; x++) {
            char hub[256];
            hf_source_name(w->name, w->ndim == 3, x, hub, sizeof hub);
            const st_tensor *t = hf_find(h, hub, NULL);
            if (!t || t->numel != per) {
                err_set(e, ERR_FORMAT, "%s: tensor %s is missing or has another shape than %s in the model file", hf_dir,
                        hub, w->name);
                goto out;
            }
            if (hf_to_float(t, 0, per, b + (size_t)x * per, e)) goto out;
        }
        double err2 = 0, ref2 = 0;
        for (size_t k = 0; k < n; k++) {
            double d = (double)a[k] - b[k];
            err2 += d * d;
            ref2 += (double)b[k] * b[k];
        }
        cmp_row *row = &r->w[r->nw++];
        snprintf(row->name, sizeof row->name, "%s", w->name);
        snprintf(row->format, sizeof row->format, "%s", w->format);
        row->err2 = err2;
        row->ref2 = ref2;
        add(r->comp, &r->ncomp, 16, mf_component(w->name), err2, ref2);
        int L;
        char lname[32] = "other";
        if (sscanf(w->name, "model.layers.%d.", &L) == 1) snprintf(lname, sizeof lname, "layer %d", L);
        add(r->layer, &r->nlayer, 512, lname, err2, ref2);
        if (progress) progress(ctx, i + 1, nw);
    }
    rc = 0;
out:
    free(a), free(b);
    hf_close(h);
    return rc;
}

void cmp_free(cmp_report *r) {
    free(r->w);
    memset(r, 0, sizeof *r);
}
