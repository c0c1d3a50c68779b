/* app/cmd_verify.c: `ernie verify`. Opens a model file (which checks its structure against its
 * config), then recomputes every checksum and the header checksum and runs the codec's validation of
 * the stored parameters, with a progress bar on stderr. Exit 0 when all is well; exit 1 with one line
 * naming the first bad tensor otherwise. Never changes the file. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/clock.h"
#include "base/pool.h"
#include "commands.h"
#include "model_load.h"
#include "model/compare.h"
#include "model/modelfile.h"
#include "progress.h"

enum { OPT_AGAINST = 1 };

static const cli_opt verify_opts[] = {
    {"against", 0, "HF_DIR", "also measure each weight's error against the source checkpoint", OPT_AGAINST, 0},
    {NULL, 0, NULL, NULL, 0, 0},
};

const cli_command CMD_VERIFY = {
    .name = "verify",
    .usage = "FILE [--against HF_DIR]",
    .summary = "Check a model file's checksums and structure, and its error against the source weights",
    .details = "Checks the structure against the model config, every tensor's XXH3 checksum, the header checksum,\n"
               "and that every quantized weight's stored parameters are ones the codec could have written.\n"
               "Exit code 0 when everything checks out, 1 (naming the first bad tensor) when not. FILE 'demo' is\n"
               "the model built into the binary.",
    .opts = verify_opts,
};

typedef struct {
    const char *against;
} verify_args;

static int on_opt(void *ctx, int key, const char *value) {
    verify_args *a = ctx;
    if (key == OPT_AGAINST) a->against = value;
    return 0;
}

static void print_rows(const char *title, const cmp_row *rows, int n) {
    printf("  %-44s %12s %9s\n", title, "rel MSE", "SNR dB");
    for (int i = 0; i < n; i++) {
        double rel = rows[i].ref2 > 0 ? rows[i].err2 / rows[i].ref2 : 0;
        printf("  %-44s %12.3e %9.2f\n", rows[i].name, rel, rel > 0 ? -10 * log10(rel) : INFINITY);
    }
}

static double rel_of(const cmp_row *r) { return r->ref2 > 0 ? r->err2 / r->ref2 : 0; }

static int by_rel_desc(const void *x, const void *y) {
    double a = rel_of(x), b = rel_of(y);
    return a < b ? 1 : a > b ? -1 : 0;
}

/* --against: the error of every stored weight against its source tensors. */
static int against(const mf_file *f, const char *dir, cli_global *g) {
    cmp_report rep;
    err_t e = {0};
    progress *pr = progress_start("comparing", mf_nweights(f), PROG_COUNT, "weights", g->json);
    int r = cmp_against(f, dir, progress_cb_bridge, pr, &rep, &e);
    progress_finish(pr);
    if (r) return cli_fail("verify: --against %s", e.msg);
    if (g->json) {
        json_t *arr = json_array();
        for (int i = 0; i < rep.nw; i++)
            json_array_append_new(arr, json_pack("{s:s, s:s, s:f}", "weight", rep.w[i].name, "format", rep.w[i].format,
                                                 "rel_mse", rel_of(&rep.w[i])));
        char *s = json_dumps(arr, JSON_PRESERVE_ORDER);
        if (s) printf("%s\n", s);
        free(s);
        json_decref(arr);
    } else {
        printf("error against %s (relative MSE ||W - W_hat||^2 / ||W||^2):\n", dir);
        print_rows("component", rep.comp, rep.ncomp);
        print_rows("layer", rep.layer, rep.nlayer);
        qsort(rep.w, (size_t)rep.nw, sizeof *rep.w, by_rel_desc);
        print_rows("worst weights", rep.w, rep.nw < 5 ? rep.nw : 5);
    }
    cmp_free(&rep);
    return EXIT_OK;
}

int cmd_verify(int argc, char **argv, cli_global *g) {
    const char *pos[2];
    int np = 0;
    verify_args a = {0};
    int r = cli_parse(&CMD_VERIFY, argc, argv, g, on_opt, &a, pos, 1, &np);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_VERIFY);
        return EXIT_OK;
    }
    if (np != 1) return cli_usage_error(&CMD_VERIFY, "which model file? (ernie verify FILE)");
    err_t e = {0};
    mf_file *f;
    if (model_open_file(&f, pos[0], "verify", &e)) return cli_fail("%s", e.msg);
    pool *p = pool_create(g->threads);
    if (!p) {
        mf_close(f);
        return cli_fail("verify: cannot start threads");
    }
    double t0 = clock_now();
    progress *pr = progress_start("verifying", 0, PROG_BYTES, NULL, g->json);
    r = mf_verify(f, p, progress_cb_bridge, pr, &e);
    progress_finish(pr);
    double secs = clock_now() - t0;
    pool_destroy(p);
    double bytes = (double)st_file_size(mf_st(f));
    int nw = mf_nweights(f), nt = st_count(mf_st(f));
    if (r) {
        if (g->json) {
            json_t *o = json_pack("{s:b, s:s, s:s}", "ok", 0, "file", pos[0], "error", e.msg);
            char *s = o ? json_dumps(o, JSON_PRESERVE_ORDER) : NULL;
            if (s) printf("%s\n", s);
            free(s);
            json_decref(o);
        }
        mf_close(f);
        return cli_fail("%s", e.msg);
    }
    char b[32];
    if (g->json) {
        json_t *o = json_pack("{s:b, s:s, s:i, s:i, s:f, s:f}", "ok", 1, "file", pos[0], "weights", nw, "tensors", nt, "bytes", bytes,
                              "seconds", secs);
        char *s = o ? json_dumps(o, JSON_PRESERVE_ORDER) : NULL;
        if (s) printf("%s\n", s);
        free(s);
        json_decref(o);
    } else
        printf("%s: OK: %d weights in %d tensors, %s, structure, checksums and stored parameters checked\n", pos[0], nw, nt,
               progress_fmt_bytes(bytes, b, sizeof b));
    int rc = a.against ? against(f, a.against, g) : EXIT_OK;
    mf_close(f);
    return rc;
}
