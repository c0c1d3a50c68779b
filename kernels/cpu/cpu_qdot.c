/* kernels/cpu/cpu_qdot.c: the CPU backend's bridge to the codec library for quantized weights. The
 * parts stay in the caller's memory (the model file's map); ccq_wrap validates them once at load, so a
 * corrupt file is an error here and never a wrong answer later. */
#include <stdlib.h>
#include <string.h>

#include "ccq/ccq.h"
#include "cpu_backend.h"

int cpu_qweight_init(be_weight *w, const be_weight_src *src, err_t *err) {
    ccq_format f;
    if (ccq_format_parse(src->format, &f, err)) return err_wrap(err, "tensor %s: ", w->name);
    ccq_part parts[CCQ_MAX_PARTS];
    int np = 0;
    if (ccq_layout(&f, src->rows, src->cols, parts, &np, err)) return err_wrap(err, "tensor %s: ", w->name);
    for (int i = 0; i < np; i++) {
        int found = 0;
        for (int j = 0; j < src->nparts; j++) {
            if (strcmp(parts[i].name, src->part[j].name)) continue;
            if (src->part[j].nbytes != parts[i].nbytes)
                return err_set(err, ERR_FORMAT, "tensor %s.%s: %zu bytes where %s needs %zu", w->name, parts[i].name,
                               src->part[j].nbytes, src->format, parts[i].nbytes);
            parts[i].data = src->part[j].data;
            found = 1;
        }
        if (!found) return err_set(err, ERR_FORMAT, "tensor %s.%s is missing (format %s)", w->name, parts[i].name, src->format);
    }
    ccq_tensor *t = calloc(1, sizeof *t);
    if (!t) return err_set(err, ERR_NOMEM, "out of memory");
    if (ccq_wrap(&f, src->rows, src->cols, parts, np, t, err)) {
        free(t);
        return err_wrap(err, "tensor %s: ", w->name);
    }
    w->q = t;
    return 0;
}

int cpu_qweight_view_bf16(be_weight *w, err_t *err) {
    ccq_format f;
    ccq_part parts[CCQ_MAX_PARTS];
    int np = 0;
    if (ccq_format_parse("bf16", &f, err) || ccq_layout(&f, w->rows, w->cols, parts, &np, err))
        return err_wrap(err, "tensor %s: ", w->name);
    ccq_tensor *t = calloc(1, sizeof *t);
    if (!t) return err_set(err, ERR_NOMEM, "out of memory");
    parts[0].data = w->data; /* the caller checked its size */
    t->fmt = f, t->rows = w->rows, t->cols = w->cols, t->nparts = np;
    memcpy(t->part, parts, sizeof(ccq_part) * (size_t)np);
    w->q = t;
    return 0;
}

void cpu_qweight_fini(be_weight *w) {
    if (!w->q) return;
    ccq_free(w->q);
    free(w->q);
    w->q = NULL;
}

void cpu_qweight_row(const be_weight *w, int64_t r, float *out) {
    err_t e = {0};
    if (ccq_decode_row(w->q, r, out, &e)) memset(out, 0, (size_t)w->cols * sizeof *out);
}

void cpu_qweight_dot(const be_weight *w, int64_t r0, int64_t r1, const float *x, int T, float *y, int64_t ldy) {
    err_t e = {0};
    ccq_dot(w->q, r0, r1, x, w->cols, T, y, ldy, &e);
}
