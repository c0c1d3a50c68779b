/* app/cmd_verify.c: `ernie verify`. Opens a model file (which checks its structure against its
 * config), then recomputes every checksum and the header checksum and runs the codec's validation of
 * the stored parameters, with a progress bar on stderr. Exit 0 when all is well; exit 1 with one line
 * naming the first bad tensor otherwise. Never changes the file. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/clock.h"
#include "base/pool.h"
#include "commands.h"
#include "model/modelfile.h"
#include "progress.h"

enum { OPT_AGAINST = 1 };

static const cli_opt verify_opts[] = {
    {"against", 0, "HF_DIR", "also measure the error against the source checkpoint (comes with the importer)", OPT_AGAINST, 0},
    {NULL, 0, NULL, NULL, 0, 0},
};

const cli_command CMD_VERIFY = {
    .name = "verify",
    .usage = "FILE [--against HF_DIR]",
    .summary = "Check a model file's checksums and structure, and its error against the source weights",
    .details = "Checks the structure against the model config, every tensor's XXH3 checksum, the header checksum,\n"
               "and that every quantized weight's stored parameters are ones the codec could have written.\n"
               "Exit code 0 when everything checks out, 1 (naming the first bad tensor) when not.",
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
    if (a.against) return cmd_not_built(&CMD_VERIFY, "--against needs the importer, which is in progress");
    err_t e = {0};
    mf_file *f;
    if (mf_open(&f, pos[0], &e)) return cli_fail("%s", e.msg);
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
    mf_close(f);
    return EXIT_OK;
}
