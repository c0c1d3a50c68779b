/* app/cmd_perplexity.c: `ernie perplexity MODEL FILE`: how well a model predicts a text, and with
 * --ref how far its next-token distributions are from a reference model's (mean KL divergence and
 * top-1 agreement). The text is cut into windows of N tokens, each evaluated from an empty cache, the
 * usual fixed-window method; every position but the first of a window is scored. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "device.h"
#include "model_load.h"
#include "progress.h"

enum { P_CTX = 1, P_REF, P_WINDOWS };

static const cli_opt ppl_opts[] = {
    {"ctx", 'c', "N", "window length in tokens (default 512)", P_CTX, 0},
    {"ref", 0, "MODEL", "also compare with this reference model: mean KL divergence, top-1 agreement", P_REF, 0},
    {"windows", 0, "N", "evaluate only the first N windows (default: all)", P_WINDOWS, 0},
    {NULL, 0, NULL, NULL, 0, 0},
};

const cli_command CMD_PERPLEXITY = {
    .name = "perplexity",
    .usage = "MODEL FILE [--ref MODEL] [-c N] [--json]",
    .summary = "Perplexity of a model over a text file, and its divergence from a reference model",
    .details = "Example: ernie perplexity model-q2.ernie heldout.txt --ref model-bf16.ernie -c 256",
    .opts = ppl_opts,
};

typedef struct {
    long long ctx, windows;
    const char *ref;
} ppl_args;

static int on_opt(void *c, int key, const char *v) {
    ppl_args *a = c;
    switch (key) {
    case P_CTX: return cli_int(&CMD_PERPLEXITY, "-c/--ctx", v, 2, 1 << 20, &a->ctx);
    case P_WINDOWS: return cli_int(&CMD_PERPLEXITY, "--windows", v, 1, 1 << 30, &a->windows);
    case P_REF: a->ref = v; return 0;
    }
    return 0;
}

/* log-softmax of row into out; returns the argmax */
static int log_softmax(const float *row, int V, double *out) {
    double mx = -INFINITY;
    int am = 0;
    for (int i = 0; i < V; i++)
        if (row[i] > mx) mx = row[i], am = i;
    double s = 0;
    for (int i = 0; i < V; i++) s += exp(row[i] - mx);
    double l = mx + log(s);
    for (int i = 0; i < V; i++) out[i] = row[i] - l;
    return am;
}

int cmd_perplexity(int argc, char **argv, cli_global *g) {
    ppl_args a = {.ctx = 512};
    const char *pos[3];
    int np = 0;
    int r = cli_parse(&CMD_PERPLEXITY, argc, argv, g, on_opt, &a, pos, 2, &np);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_PERPLEXITY);
        return EXIT_OK;
    }
    if (np < 2) return cli_usage_error(&CMD_PERPLEXITY, "needs MODEL and FILE");
    err_t err = {0};
    if (app_device_check(g->device, &err)) return cli_fail("perplexity: %s", err.msg);
    int rc = EXIT_FAIL;
    loaded_model *m = NULL, *rm = NULL;
    be *b = NULL;
    eng *e = NULL, *re = NULL;
    char *text = NULL;
    tok_ids ids = {0};
    float *lg = NULL, *rlg = NULL;
    double *lp = NULL, *rlp = NULL;
    FILE *f = fopen(pos[1], "rb");
    if (!f) return cli_fail("perplexity: %s: %s", pos[1], strerror(errno));
    fseek(f, 0, SEEK_END);
    long flen = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = malloc((size_t)flen + 1);
    if (!text || fread(text, 1, (size_t)flen, f) != (size_t)flen) {
        fclose(f);
        free(text);
        return cli_fail("perplexity: %s: cannot read", pos[1]);
    }
    fclose(f);
    if (model_load(&m, pos[0], g->threads, &err) || (a.ref && model_load(&rm, a.ref, g->threads, &err))) {
        cli_fail("perplexity: %s", err.msg);
        goto out;
    }
    if (tok_encode(model_tok(m), text, (size_t)flen, TOK_PLAIN, &ids, &err)) {
        cli_fail("perplexity: %s: %s", pos[1], err.msg);
        goto out;
    }
    int N = (int)a.ctx, V = model_config(m)->vocab;
    if (rm && model_config(rm)->vocab != V) {
        cli_fail("perplexity: the reference has %d vocabulary rows, the model %d", model_config(rm)->vocab, V);
        goto out;
    }
    long long nw = (long long)ids.n / N;
    if (a.windows && nw > a.windows) nw = a.windows;
    if (nw < 1) {
        cli_fail("perplexity: %s has %zu tokens, fewer than one window of %d (lower -c)", pos[1], ids.n, N);
        goto out;
    }
    if (!(b = be_cpu_create(g->threads, &err)) || model_engine(m, b, N, 64, &e, &err) ||
        (rm && model_engine(rm, b, N, 64, &re, &err))) {
        cli_fail("perplexity: %s", err.msg);
        goto out;
    }
    lg = malloc((size_t)N * V * sizeof *lg);
    lp = malloc((size_t)V * sizeof *lp);
    if (rm) {
        rlg = malloc((size_t)N * V * sizeof *rlg);
        rlp = malloc((size_t)V * sizeof *rlp);
    }
    if (!lg || !lp || (rm && (!rlg || !rlp))) {
        cli_fail("perplexity: out of memory");
        goto out;
    }
    progress *pr = progress_start("perplexity", (double)nw, PROG_COUNT, "windows", g->json);
    double nll = 0, kl = 0;
    long long scored = 0, agree = 0;
    for (long long w = 0; w < nw; w++) {
        const int32_t *win = ids.v + w * N;
        eng_truncate(e, 0);
        if (eng_forward(e, win, N, lg, 1, &err)) break;
        if (re) {
            eng_truncate(re, 0);
            if (eng_forward(re, win, N, rlg, 1, &err)) break;
        }
        for (int t = 0; t + 1 < N; t++) {
            int am = log_softmax(lg + (size_t)t * V, V, lp);
            nll -= lp[win[t + 1]];
            if (re) {
                int ram = log_softmax(rlg + (size_t)t * V, V, rlp);
                double k = 0;
                for (int i = 0; i < V; i++) k += exp(rlp[i]) * (rlp[i] - lp[i]);
                kl += k;
                agree += am == ram;
            }
            scored++;
        }
        progress_set(pr, (double)(w + 1), NULL);
    }
    progress_finish(pr);
    if (err.code) {
        cli_fail("perplexity: %s", err.msg);
        goto out;
    }
    double mean = nll / (double)scored;
    if (g->json) {
        printf("{\"tokens_scored\": %lld, \"windows\": %lld, \"ctx\": %d, \"nll\": %.6f, \"perplexity\": %.4f", scored, nw, N,
               mean, exp(mean));
        if (re) printf(", \"kl\": %.6f, \"top1_agreement\": %.5f", kl / (double)scored, (double)agree / (double)scored);
        printf("}\n");
    } else {
        printf("windows: %lld x %d tokens, %lld predictions scored\n", nw, N, scored);
        printf("mean NLL: %.4f   perplexity: %.3f\n", mean, exp(mean));
        if (re)
            printf("KL from reference: %.5f   top-1 agreement: %.2f%%\n", kl / (double)scored,
                   100.0 * (double)agree / (double)scored);
    }
    rc = EXIT_OK;
out:
    free(lg), free(rlg), free(lp), free(rlp), free(text);
    tok_ids_free(&ids);
    eng_free(e);
    eng_free(re);
    if (b) b->ops->destroy(b);
    model_unload(m);
    model_unload(rm);
    return rc;
}
