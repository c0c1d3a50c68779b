/* app/cmd_import.c: `ernie import HF_DIR -o FILE`: quantize a downloaded checkpoint into one model
 * file. Shows the plan first, then a progress bar, then a summary; Ctrl-C leaves no file behind. */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/pool.h"
#include "calibrate.h"
#include "commands.h"
#include "device.h"
#include "model/import.h"
#include "model/recipe.h"
#include "progress.h"

enum { I_OUT = 1, I_RECIPE, I_TT, I_FORCE, I_CALIB, I_CALIB_TOKENS, I_DRY };

static const cli_opt import_opts[] = {
    {"output", 'o', "FILE", "the model file to write (required)", I_OUT, 0},
    {"recipe", 0, "NAME", "which format each weight gets (default baidu; see below)", I_RECIPE, 0},
    {"tensor-type", 0, "REGEX=FORMAT", "override the format of weights whose name matches (repeatable)", I_TT, 1},
    {"force", 0, NULL, "replace FILE if it exists", I_FORCE, 0},
    {"calib", 0, "TEXTFILE", "weight each input channel's error by its activations on this text", I_CALIB, 0},
    {"calib-tokens", 0, "N", "calibrate on at most N tokens of TEXTFILE (default 8192)", I_CALIB_TOKENS, 0},
    {"dry-run", 0, NULL, "check the checkpoint and print the plan; write nothing (-o not needed)", I_DRY, 0},
    {NULL, 0, NULL, NULL, 0, 0},
};

static char details[2048];

const cli_command CMD_IMPORT = {
    .name = "import",
    .usage = "HF_DIR -o FILE [--recipe NAME] [--tensor-type REGEX=FORMAT]... [--calib TEXTFILE] [--force]\n"
             "       ernie import HF_DIR --dry-run [--recipe NAME] [--tensor-type REGEX=FORMAT]...",
    .summary = "Quantize a downloaded Hugging Face checkpoint into one ernie model file",
    .details = details,
    .opts = import_opts,
};

typedef struct {
    const char *out, *recipe, *calib;
    long long calib_tokens;
    const char *tt[64];
    int ntt, force, dry;
} imp_args;

static int on_opt(void *c, int key, const char *v) {
    imp_args *a = c;
    switch (key) {
    case I_OUT: a->out = v; return 0;
    case I_RECIPE: a->recipe = v; return 0;
    case I_FORCE: a->force = 1; return 0;
    case I_DRY: a->dry = 1; return 0;
    case I_CALIB: a->calib = v; return 0;
    case I_CALIB_TOKENS: return cli_int(&CMD_IMPORT, "--calib-tokens", v, 2, 1LL << 40, &a->calib_tokens);
    case I_TT:
        if (a->ntt == 64) return cli_usage_error(&CMD_IMPORT, "too many --tensor-type options (64 at most)");
        a->tt[a->ntt++] = v;
        return 0;
    }
    return 0;
}

static volatile sig_atomic_t stop_flag;
static void on_signal(int s) {
    (void)s;
    stop_flag = 1;
}

static void on_progress(void *ctx, double done, double total, const char *weight) {
    (void)total;
    progress_set(ctx, done, weight);
}

static void print_plan(const imp_plan *p, const char *recipe) {
    char a[32], b[32];
    fprintf(stderr, "plan (a prediction): %d weights from %d tensors, %s in, %s of weights out, recipe %s\n", p->nweights,
            p->ntensors_in, progress_fmt_bytes((double)p->bytes_in, a, sizeof a),
            progress_fmt_bytes((double)p->bytes_out, b, sizeof b), recipe);
    fprintf(stderr, "  %-15s %14s %12s %8s  %s\n", "component", "parameters", "bytes", "bpw", "formats");
    for (int i = 0; i < p->ncomp; i++)
        fprintf(stderr, "  %-15s %14lld %12s %8.3f  %s\n", p->comp[i].name, (long long)p->comp[i].params,
                progress_fmt_bytes((double)p->comp[i].bytes, a, sizeof a),
                p->comp[i].params ? 8.0 * (double)p->comp[i].bytes / (double)p->comp[i].params : 0, p->comp[i].formats);
    fprintf(stderr, "  %-15s %14lld %12s %8.3f\n", "total", (long long)p->params,
            progress_fmt_bytes((double)p->bytes_out, a, sizeof a), p->params ? 8.0 * (double)p->bytes_out / (double)p->params : 0);
    for (int ctx = 4096; ctx <= 32768; ctx *= 8)
        fprintf(stderr, "  GPU memory at %dK context: %s (weights + bf16 KV cache)\n", ctx / 1024,
                progress_fmt_bytes((double)(p->bytes_out + p->kv_bytes_per_token * (uint64_t)ctx), a, sizeof a));
}

/* The plan as one JSON object on stdout (--json). */
static void print_plan_json(const imp_plan *p, const char *recipe) {
    json_t *o = json_object(), *comps = json_array();
    json_object_set_new(o, "recipe", json_string(recipe));
    json_object_set_new(o, "weights", json_integer(p->nweights));
    json_object_set_new(o, "tensors_in", json_integer(p->ntensors_in));
    json_object_set_new(o, "bytes_in", json_integer((json_int_t)p->bytes_in));
    json_object_set_new(o, "predicted_weight_bytes", json_integer((json_int_t)p->bytes_out));
    json_object_set_new(o, "parameters", json_integer(p->params));
    json_object_set_new(o, "predicted_bpw", json_real(p->params ? 8.0 * (double)p->bytes_out / (double)p->params : 0));
    for (int i = 0; i < p->ncomp; i++) {
        json_t *c = json_object();
        json_object_set_new(c, "component", json_string(p->comp[i].name));
        json_object_set_new(c, "parameters", json_integer(p->comp[i].params));
        json_object_set_new(c, "bytes", json_integer((json_int_t)p->comp[i].bytes));
        json_object_set_new(c, "formats", json_string(p->comp[i].formats));
        json_array_append_new(comps, c);
    }
    json_object_set_new(o, "components", comps);
    json_object_set_new(o, "kv_bytes_per_token", json_integer((json_int_t)p->kv_bytes_per_token));
    json_object_set_new(o, "gpu_bytes_4k", json_integer((json_int_t)(p->bytes_out + p->kv_bytes_per_token * 4096)));
    json_object_set_new(o, "gpu_bytes_32k", json_integer((json_int_t)(p->bytes_out + p->kv_bytes_per_token * 32768)));
    json_object_set_new(o, "unused_tensors", json_integer(p->n_unexpected));
    char *s = json_dumps(o, JSON_PRESERVE_ORDER);
    if (s) printf("%s\n", s);
    free(s);
    json_decref(o);
}

int cmd_import(int argc, char **argv, cli_global *g) {
    snprintf(details, sizeof details,
             "Recipes:\n%sFORMAT is a codec name: bf16, wint8, wint4, wint4g64, wint2g64, ccq2.75, ccq2.5, ccq2.06,\n"
             "optionally with +icq and/or +crvq (e.g. ccq2.06+icq). Routers and the correction bias stay f32,\n"
             "norms bf16. Example:\n  ernie import ERNIE-4.5-21B-A3B-PT -o ernie-21b.ernie --recipe q2.5 \\\n"
             "      --tensor-type 'layers\\.1\\..*experts=wint4'",
             recipe_presets_help());
    imp_args a = {.recipe = "baidu", .calib_tokens = 8192};
    const char *pos[2];
    int np = 0;
    int r = cli_parse(&CMD_IMPORT, argc, argv, g, on_opt, &a, pos, 1, &np);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_IMPORT);
        return EXIT_OK;
    }
    if (np < 1) return cli_usage_error(&CMD_IMPORT, "missing HF_DIR");
    if (!a.out && !a.dry) return cli_usage_error(&CMD_IMPORT, "missing -o FILE");
    if (a.dry && a.calib) return cli_usage_error(&CMD_IMPORT, "--calib runs the model: it has no place in a --dry-run");
    err_t derr = {0};
    if (a.calib && app_device_check(g->device, &derr)) return cli_fail("import: --calib: %s", derr.msg);
    err_t err = {0};
    recipe *rec = NULL;
    if (recipe_create(&rec, a.recipe, &err)) return cli_usage_error(&CMD_IMPORT, "--recipe: %s", err.msg);
    for (int i = 0; i < a.ntt; i++)
        if (recipe_override(rec, a.tt[i], &err)) {
            recipe_free(rec);
            return cli_usage_error(&CMD_IMPORT, "--tensor-type: %s", err.msg);
        }
    pool *p = pool_create(g->threads);
    imp_opts o = {.hf_dir = pos[0], .out_path = a.out, .recipe = rec, .overwrite = a.force, .pool = p, .stop = &stop_flag};
    imp_plan plan;
    calib *cal = NULL;
    int rc = EXIT_FAIL;
    if (imp_plan_make(&o, &plan, &err)) {
        cli_fail("import: %s", err.msg);
        goto out;
    }
    if (!g->json) print_plan(&plan, recipe_name(rec));
    else if (a.dry) print_plan_json(&plan, recipe_name(rec));
    if (plan.n_unexpected) cli_warn("import: %d tensors of %s are not used by the model", plan.n_unexpected, pos[0]);
    if (a.dry) {
        rc = EXIT_OK;
        goto out;
    }
    char desc[1200];
    if (a.calib) {
        if (calibrate(pos[0], a.calib, a.calib_tokens, g->threads, g->json, &cal, desc, sizeof desc, &err)) {
            cli_fail("import: --calib: %s", err.msg);
            goto out;
        }
        o.calib = cal;
        o.calib_desc = desc;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    progress *pr = progress_start("importing", (double)plan.bytes_in, PROG_BYTES, NULL, g->json);
    o.progress = on_progress;
    o.progress_ctx = pr;
    imp_result res;
    int ir = imp_run(&o, &res, &err);
    progress_finish(pr);
    if (ir) {
        cli_fail("import: %s", err.code == ERR_INTERRUPTED ? "interrupted; no file was written" : err.msg);
        goto out;
    }
    char a1[32], a2[32];
    if (g->json) {
        json_t *j = json_pack("{s:s, s:f, s:I, s:f, s:I}", "file", a.out, "seconds", res.seconds, "bytes",
                              (json_int_t)res.file_bytes, "bpw", res.bpw, "peak_rss", (json_int_t)res.peak_rss);
        char *s = j ? json_dumps(j, JSON_PRESERVE_ORDER) : NULL;
        if (s) printf("%s\n", s);
        free(s);
        json_decref(j);
    } else
        fprintf(stderr, "wrote %s: %s, %.3f bits per weight, in %.1fs, peak memory %s\n", a.out,
                progress_fmt_bytes((double)res.file_bytes, a1, sizeof a1), res.bpw, res.seconds,
                progress_fmt_bytes((double)res.peak_rss, a2, sizeof a2));
    rc = EXIT_OK;
out:
    calib_free(cal);
    pool_destroy(p);
    recipe_free(rec);
    return rc;
}
