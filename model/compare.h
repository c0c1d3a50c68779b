/* model/compare.h: how far a model file's weights are from the checkpoint they were imported from
 * (`ernie verify --against`). Decodes each stored weight with the codec and compares it with the source
 * tensors: relative MSE ||W - W_hat||^2 / ||W||^2 and SNR, per weight, per component and per layer.
 * Reads both files in place; one weight's two float copies at a time. Never prints. */
#ifndef ERNIE_MODEL_COMPARE_H
#define ERNIE_MODEL_COMPARE_H

#include "base/err.h"
#include "model/modelfile.h"

typedef struct {
    char name[96];
    char format[64];
    double err2, ref2; /* sums of squared error and of squared source values */
} cmp_row;

typedef struct {
    cmp_row *w;        /* one per weight, in file order */
    int nw;
    cmp_row comp[16];  /* per component (name in .name) */
    int ncomp;
    cmp_row layer[512];/* per layer index (name "layer N"), then "other" for weights outside layers */
    int nlayer;
} cmp_report;

/* progress (may be NULL): weights done and the total. */
int cmp_against(const mf_file *f, const char *hf_dir, void (*progress)(void *ctx, double done, double total),
                void *ctx, cmp_report *out, err_t *e);
void cmp_free(cmp_report *r);

#endif
