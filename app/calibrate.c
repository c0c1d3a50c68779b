/* app/calibrate.c: load, tokenize, observe the forward pass window by window. */
#include "calibrate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "model/config.h"
#include "model_load.h"
#include "progress.h"

enum { CALIB_WINDOW = 512, CALIB_MAX_TEXT = 1 << 30 };

int calibrate(const char *hf_dir, const char *text_path, long long max_tokens, int threads, int quiet, calib **out,
              char *desc, size_t desc_len, err_t *err) {
    *out = NULL;
    size_t len = 0;
    int eno = 0;
    char *text = cfg_read_file(text_path, CALIB_MAX_TEXT, &len, &eno, err);
    if (!text) return -1;
    loaded_model *m = NULL;
    be *b = NULL;
    eng *e = NULL;
    calib *c = NULL;
    tok_ids ids = {0};
    int rc = -1;
    if (model_load(&m, hf_dir, threads, err)) goto out;
    if (tok_encode(model_tok(m), text, len, TOK_PLAIN, &ids, err)) {
        err_wrap(err, "%s: ", text_path);
        goto out;
    }
    long long n = (long long)ids.n < max_tokens ? (long long)ids.n : max_tokens;
    if (n < 2) {
        err_set(err, ERR_ARG, "%s: %lld tokens, too few to calibrate with", text_path, (long long)ids.n);
        goto out;
    }
    int W = CALIB_WINDOW;
    if (model_max_positions(m) > 0 && model_max_positions(m) < W) W = model_max_positions(m);
    if (n < W) W = (int)n;
    if (!(b = be_cpu_create(threads, err)) || model_engine(m, b, W, 64, &e, err) || calib_new(&c, err) ||
        eng_set_observer(e, calib_observe, c, err))
        goto out;
    progress *pr = progress_start("calibrating", (double)n, PROG_COUNT, "tokens", quiet);
    for (long long t = 0; t < n; t += W) {
        int T = n - t < W ? (int)(n - t) : W;
        eng_truncate(e, 0);
        if (eng_forward(e, ids.v + t, T, NULL, 0, err) || calib_status(c, err)) {
            progress_finish(pr);
            goto out;
        }
        progress_set(pr, (double)(t + T), NULL);
    }
    progress_finish(pr);
    snprintf(desc, desc_len, "%s, %lld tokens", text_path, (long long)calib_tokens(c));
    *out = c;
    c = NULL;
    rc = 0;
out:
    calib_free(c);
    tok_ids_free(&ids);
    eng_free(e);
    if (b) b->ops->destroy(b);
    model_unload(m);
    free(text);
    return rc;
}
