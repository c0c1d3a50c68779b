/* model/calib.c: sums of squared activations per (weight, expert), in an open-addressing table. */
#include "calib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;     /* NULL: empty slot */
    int expert;
    int K;
    int64_t n;      /* rows seen */
    double *sum;    /* [K] */
} entry;

struct calib {
    entry *tab;
    size_t cap, used;
    int64_t tokens;
    char *first;    /* the first weight observed: counts the tokens */
    err_t err;
};

static uint64_t hash(const char *s, int expert) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uint32_t)expert;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static entry *slot(entry *tab, size_t cap, const char *name, int expert) {
    size_t i = (size_t)hash(name, expert) & (cap - 1);
    while (tab[i].name && (tab[i].expert != expert || strcmp(tab[i].name, name))) i = (i + 1) & (cap - 1);
    return &tab[i];
}

static int grow(calib *c) {
    size_t cap = c->cap ? c->cap * 2 : 256;
    entry *t = calloc(cap, sizeof *t);
    if (!t) return -1;
    for (size_t i = 0; i < c->cap; i++)
        if (c->tab[i].name) *slot(t, cap, c->tab[i].name, c->tab[i].expert) = c->tab[i];
    free(c->tab);
    c->tab = t;
    c->cap = cap;
    return 0;
}

int calib_new(calib **out, err_t *err) {
    *out = calloc(1, sizeof **out);
    if (!*out || grow(*out)) {
        free(*out);
        *out = NULL;
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    return 0;
}

void calib_free(calib *c) {
    if (!c) return;
    for (size_t i = 0; i < c->cap; i++) {
        free(c->tab[i].name);
        free(c->tab[i].sum);
    }
    free(c->tab);
    free(c->first);
    free(c);
}

void calib_observe(void *ctx, const eng_obs *o) {
    calib *c = ctx;
    if (c->err.code) return;
    if (!c->first && !(c->first = strdup(o->weight))) goto oom;
    if (!strcmp(c->first, o->weight)) c->tokens += o->T;
    if (2 * (c->used + 1) > c->cap && grow(c)) goto oom;
    entry *e = slot(c->tab, c->cap, o->weight, o->expert);
    if (!e->name) {
        double *sum = calloc((size_t)o->K, sizeof *sum);
        char *name = strdup(o->weight);
        if (!sum || !name) {
            free(sum);
            free(name);
            goto oom;
        }
        *e = (entry){name, o->expert, o->K, 0, sum};
        c->used++;
    } else if (e->K != o->K) {
        err_set(&c->err, ERR_FORMAT, "calibration: %s was seen with %d and %d input channels", o->weight, e->K, o->K);
        return;
    }
    for (int t = 0; t < o->T; t++) {
        const float *x = o->x + (size_t)t * o->K;
        for (int k = 0; k < o->K; k++) e->sum[k] += (double)x[k] * x[k];
    }
    e->n += o->T;
    return;
oom:
    err_set(&c->err, ERR_NOMEM, "calibration: out of memory");
}

int calib_status(const calib *c, err_t *err) {
    if (!c->err.code) return 0;
    *err = c->err;
    return -1;
}

int64_t calib_tokens(const calib *c) { return c->tokens; }

/* Mean 1, then 1% damping. A vector with no energy at all (a channel path that is always zero) is
 * left at ones: nothing can be learnt from it. */
static void normalise(float *h, int64_t K) {
    double m = 0;
    for (int64_t k = 0; k < K; k++) m += h[k];
    m /= (double)K;
    for (int64_t k = 0; k < K; k++) h[k] = m > 0 ? (float)(0.99 * h[k] / m + 0.01) : 1.0f;
}

float *calib_importance(const calib *c, const char *name, int n_vec, int64_t cols, int *found, err_t *err) {
    *found = 0;
    int stacked = n_vec > 1;
    float *out = calloc((size_t)n_vec * (size_t)cols, sizeof *out);
    double *mean = calloc((size_t)cols, sizeof *mean);
    if (!out || !mean) {
        free(out);
        free(mean);
        err_set(err, ERR_NOMEM, "out of memory");
        return NULL;
    }
    int seen = 0;
    for (int v = 0; v < n_vec; v++) {
        const entry *e = slot(c->tab, c->cap, name, stacked ? v : -1);
        if (!e->name || !e->n) continue;
        if (e->K != cols) {
            err_set(err, ERR_FORMAT, "calibration: %s has %lld input channels, the activations seen had %d", name,
                    (long long)cols, e->K);
            free(out);
            free(mean);
            return NULL;
        }
        float *h = out + (size_t)v * (size_t)cols;
        for (int64_t k = 0; k < cols; k++) {
            h[k] = (float)(e->sum[k] / (double)e->n);
            mean[k] += h[k];
        }
        normalise(h, cols);
        seen++;
    }
    if (!seen) {
        free(out);
        free(mean);
        return NULL;
    }
    *found = 1;
    if (seen < n_vec) { /* experts nobody chose: what the chosen ones saw, as the best guess */
        float *m = malloc((size_t)cols * sizeof *m);
        if (!m) {
            free(out);
            free(mean);
            err_set(err, ERR_NOMEM, "out of memory");
            return NULL;
        }
        for (int64_t k = 0; k < cols; k++) m[k] = (float)(mean[k] / seen);
        normalise(m, cols);
        for (int v = 0; v < n_vec; v++) {
            const entry *e = slot(c->tab, c->cap, name, stacked ? v : -1);
            if (!e->name || !e->n) memcpy(out + (size_t)v * (size_t)cols, m, (size_t)cols * sizeof *m);
        }
        free(m);
    }
    free(mean);
    return out;
}
