/* app/bench_quant.c: `ernie bench quant`, the codecs' quality and speed on synthetic or real weights.
 *
 * For each format: exact bits per weight of the stored parts (side data included), relative MSE
 * ||W - W_hat||^2 / ||W||^2 and SNR of what ccq_decode returns, the rate-distortion bound 2^(-2 bpw) of
 * a unit Gaussian (only meaningful for --source gaussian) and the ratio to it, and the speed of
 * encoding, of decoding the whole matrix, and of the fused product with one vector (the CPU decode
 * step), in millions of weights per second on the threads used. Table on stdout, progress on stderr.
 * Never reports a figure it did not measure: the codecs are measured as the library ships them, and the
 * only math here is the error sums. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "base/clock.h"
#include "base/pool.h"
#include "base/rng.h"
#include "bench.h"
#include "ccq/ccq.h"
#include "model/safetensors.h"
#include "progress.h"

enum { O_SOURCE = 1, O_TENSOR, O_ROWS, O_COLS, O_FORMAT, O_SEED, O_IMPORTANCE };

static const cli_opt opts[] = {
    {"source", 0, "NAME", "synthetic weights: gaussian, laplace, student4 (t, 4 d.o.f.) or outliers (1% at 10x); default gaussian", O_SOURCE, 0},
    {"tensor", 0, "FILE:NAME", "a real weight from a safetensors file (F32, BF16 or F16; 3-D stacks are rows)", O_TENSOR, 0},
    {"rows", 0, "N", "rows (output channels), default 256; with --tensor, the first N rows", O_ROWS, 0},
    {"cols", 0, "K", "columns (input channels), default 4096", O_COLS, 0},
    {"format", 0, "LIST", "comma-separated formats (default: every format, each also with +icq and +crvq)", O_FORMAT, 0},
    {"seed", 0, "N", "seed of the synthetic source (default 1)", O_SEED, 0},
    {"importance", 0, "KIND", "per-column importance given to the encoders: none (default) or lognormal "
                              "(synthetic diag(X^T X) with a heavy tail; errors are then weighted by it)", O_IMPORTANCE, 0},
    {NULL, 0, NULL, NULL, 0, 0},
};

const cli_command CMD_BENCH_QUANT = {
    .name = "bench quant",
    .usage = "[--source NAME | --tensor FILE:NAME] [--rows N] [--cols K] [--format LIST] [--json]",
    .summary = "Codec quality and speed: bits per weight, relative MSE, SNR, encode/decode rate",
    .details = "Every figure is measured on what the codec stores: bpw counts every part (codes, scales,\n"
               "outlier streams, permutations); the error is that of the decoded weights. 'bound' is the\n"
               "rate-distortion limit 2^(-2 bpw) of a unit Gaussian source (shown for --source gaussian);\n"
               "'ratio' is rel_mse over it. Speeds are millions of weights per second on -t threads:\n"
               "encode, decode of the whole matrix, and the fused product with one vector ('dot').",
    .opts = opts,
};

static const char *const default_formats[] = {
    "bf16",         "wint8",         "wint8+icq",     "wint8+crvq",   "wint4",        "wint4+icq",
    "wint4+crvq",   "wint4g64",      "wint4g64+icq",  "wint4g64+crvq", "ccq2.75",     "ccq2.75+icq",
    "ccq2.75+crvq", "ccq2.5",        "ccq2.5+icq",    "ccq2.5+crvq",  "ccq2.06",      "ccq2.06+icq",
    "ccq2.06+crvq", "wint2g64",      "wint2g64+icq",  "wint2g64+crvq",
};

typedef struct {
    const char *source, *tensor, *formats, *importance;
    long long rows, cols, seed;
    int rows_set, cols_set;
} args;

static int on_opt(void *ctx, int key, const char *v) {
    args *a = (args *)ctx;
    switch (key) {
    case O_SOURCE:
        if (strcmp(v, "gaussian") && strcmp(v, "laplace") && strcmp(v, "student4") && strcmp(v, "outliers"))
            return cli_usage_error(&CMD_BENCH_QUANT, "unknown source '%s' (gaussian, laplace, student4 or outliers)", v);
        a->source = v;
        return 0;
    case O_TENSOR: a->tensor = v; return 0;
    case O_ROWS: a->rows_set = 1; return cli_int(&CMD_BENCH_QUANT, "--rows", v, 1, 1 << 24, &a->rows);
    case O_COLS: a->cols_set = 1; return cli_int(&CMD_BENCH_QUANT, "--cols", v, 1, 1 << 24, &a->cols);
    case O_FORMAT: a->formats = v; return 0;
    case O_SEED: return cli_int(&CMD_BENCH_QUANT, "--seed", v, 0, (1LL << 62), &a->seed);
    case O_IMPORTANCE:
        if (strcmp(v, "none") && strcmp(v, "lognormal"))
            return cli_usage_error(&CMD_BENCH_QUANT, "unknown importance '%s' (none or lognormal)", v);
        a->importance = v;
        return 0;
    }
    return 0;
}

/* Synthetic weights, reproducible from the seed. Heavy-tailed sources keep unit scale so their rows
 * are comparable with the Gaussian. */
static void synth(const char *src, uint64_t seed, float *w, int64_t n) {
    rng_t r;
    rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) {
        double v;
        if (!strcmp(src, "laplace")) {
            double u = rng_uniform(&r) - 0.5;
            v = -(u < 0 ? -1 : 1) * log(1 - 2 * fabs(u)) / sqrt(2.0);
        } else if (!strcmp(src, "student4")) {
            double z = rng_normal(&r), c = 0;
            for (int j = 0; j < 4; j++) {
                double g = rng_normal(&r);
                c += g * g;
            }
            v = z / sqrt(c / 4) / sqrt(2.0); /* t4 has variance 2 */
        } else if (!strcmp(src, "outliers")) {
            v = rng_normal(&r);
            if (rng_uniform(&r) < 0.01) v *= 10;
        } else {
            v = rng_normal(&r);
        }
        w[i] = (float)v;
    }
}

/* Loads FILE:NAME into floats; rows = product of all but the last dimension. */
static int load_tensor(const char *spec, long long maxrows, float **w, int64_t *rows, int64_t *cols) {
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || !colon[1])
        return cli_usage_error(&CMD_BENCH_QUANT, "--tensor wants FILE:NAME, not '%s'", spec);
    char path[4096];
    if ((size_t)(colon - spec) >= sizeof path) return cli_usage_error(&CMD_BENCH_QUANT, "--tensor: path too long");
    memcpy(path, spec, (size_t)(colon - spec));
    path[colon - spec] = 0;
    err_t e = {0};
    st_file *f;
    if (st_open(&f, path, &e)) return cli_fail("bench quant: %s", e.msg);
    const st_tensor *t = st_find(f, colon + 1);
    if (!t) {
        st_close(f);
        return cli_fail("bench quant: %s: no tensor named '%s'", path, colon + 1);
    }
    if (t->ndim < 2 || (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16)) {
        st_close(f);
        return cli_fail("bench quant: %s: tensor %s is %s with %d dimensions; need F32, BF16 or F16 with 2 or more",
                        path, colon + 1, st_dtype_name(t->dtype), t->ndim);
    }
    int64_t k = t->shape[t->ndim - 1], n = (int64_t)(t->numel / (uint64_t)(k ? k : 1));
    if (maxrows > 0 && n > maxrows) n = maxrows;
    float *d = malloc(sizeof(float) * (size_t)(n * k));
    if (!d) {
        st_close(f);
        return cli_fail("bench quant: out of memory for %s", colon + 1);
    }
    const uint8_t *s = (const uint8_t *)t->data;
    for (int64_t i = 0; i < n * k; i++) {
        if (t->dtype == ST_F32) memcpy(&d[i], s + 4 * i, 4);
        else {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            d[i] = t->dtype == ST_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
        }
    }
    st_close(f);
    *w = d, *rows = n, *cols = k;
    return 0;
}

typedef struct {
    char name[64];
    double bpw, rel_mse, snr_db, enc, dec, dot, bound;
} result;

typedef struct {
    const ccq_tensor *t;
    const float *x;
    float *y;
} dot_job;

static void dot_rows(void *ctx, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    dot_job *j = (dot_job *)ctx;
    ccq_dot(j->t, r0, r1, j->x, j->t->cols, 1, j->y + r0, j->t->rows, NULL);
}

/* Runs fn until at least 0.2 s have passed (at least twice); returns seconds per run. */
static double time_it(void (*fn)(void *), void *ctx) {
    fn(ctx); /* warm caches and page in */
    double t0 = clock_now(), t;
    int n = 0;
    do {
        fn(ctx);
        n++;
        t = clock_now() - t0;
    } while (t < 0.2 || n < 2);
    return t / n;
}

typedef struct {
    const ccq_tensor *t;
    float *out;
    pool *p;
    const float *x;
    float *y;
} run_ctx;
static void run_decode(void *c) {
    run_ctx *r = (run_ctx *)c;
    ccq_decode(r->t, r->out, r->p, NULL);
}
static void run_dot(void *c) {
    run_ctx *r = (run_ctx *)c;
    dot_job j = {r->t, r->x, r->y};
    pool_for(r->p, r->t->rows, 16, dot_rows, &j);
}

static int measure(const char *fname, const float *w, const float *imp, int64_t rows, int64_t cols, pool *p, int quiet,
                   int gaussian, result *res) {
    err_t e = {0};
    ccq_format f;
    if (ccq_format_parse(fname, &f, &e)) return cli_usage_error(&CMD_BENCH_QUANT, "%s", e.msg);
    ccq_format_name(&f, res->name, sizeof res->name);
    uint64_t bits;
    if (ccq_bits(&f, rows, cols, &bits, &res->bpw, &e)) return cli_fail("bench quant: %s", e.msg);
    progress *pr = progress_start(res->name, (double)rows * (f.crvq ? 2 : 1), PROG_COUNT, "rows", quiet);
    ccq_encode_opts o = {.importance = imp, .pool = p, .progress = progress_cb_bridge, .progress_ctx = pr};
    ccq_tensor t;
    double t0 = clock_now();
    int rc = ccq_encode(&f, w, rows, cols, &o, &t, &e);
    double te = clock_now() - t0;
    progress_finish(pr);
    if (rc) return cli_fail("bench quant: %s: %s", res->name, e.msg);
    if (ccq_validate(&t, &e)) {
        ccq_free(&t);
        return cli_fail("bench quant: %s: the encoder wrote parts its own validator rejects: %s", res->name, e.msg);
    }
    size_t n = (size_t)(rows * cols);
    float *d = malloc(sizeof(float) * n), *x = malloc(sizeof(float) * (size_t)cols), *y = malloc(sizeof(float) * (size_t)rows);
    if (!d || !x || !y) {
        free(d), free(x), free(y), ccq_free(&t);
        return cli_fail("bench quant: out of memory");
    }
    run_ctx rcx = {&t, d, p, x, y};
    for (int64_t k = 0; k < cols; k++) x[k] = (float)((k % 7) - 3) * 0.25f;
    double td = time_it(run_decode, &rcx);
    double tdot = time_it(run_dot, &rcx);
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double h = imp ? imp[i % (size_t)cols] : 1.0;
        double dd = (double)w[i] - d[i];
        num += h * dd * dd;
        den += h * (double)w[i] * w[i];
    }
    res->rel_mse = den > 0 ? num / den : 0;
    res->snr_db = res->rel_mse > 0 ? -10 * log10(res->rel_mse) : INFINITY;
    res->enc = (double)n / te / 1e6;
    res->dec = (double)n / td / 1e6;
    res->dot = (double)n / tdot / 1e6;
    res->bound = gaussian ? pow(2.0, -2.0 * res->bpw) : NAN;
    free(d), free(x), free(y);
    ccq_free(&t);
    return 0;
}

int bench_quant(int argc, char **argv, cli_global *g) {
    args a = {.source = "gaussian", .importance = "none", .rows = 256, .cols = 4096, .seed = 1};
    int r = cli_parse(&CMD_BENCH_QUANT, argc, argv, g, on_opt, &a, NULL, 0, NULL);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_BENCH_QUANT);
        return EXIT_OK;
    }
    float *w = NULL;
    int64_t rows = a.rows, cols = a.cols;
    int gaussian = 0;
    if (a.tensor) {
        if (a.cols_set) return cli_usage_error(&CMD_BENCH_QUANT, "--cols comes from the tensor; drop it with --tensor");
        if ((r = load_tensor(a.tensor, a.rows_set ? a.rows : 0, &w, &rows, &cols))) return r;
    } else {
        w = malloc(sizeof(float) * (size_t)(rows * cols));
        if (!w) return cli_fail("bench quant: out of memory for %lld x %lld weights", a.rows, a.cols);
        synth(a.source, (uint64_t)a.seed, w, rows * cols);
        gaussian = !strcmp(a.source, "gaussian");
    }
    if (strcmp(a.importance, "none")) gaussian = 0; /* weighted errors have no Gaussian bound */
    float *imp = NULL;
    if (!strcmp(a.importance, "lognormal")) {
        imp = malloc(sizeof(float) * (size_t)cols);
        if (!imp) {
            free(w);
            return cli_fail("bench quant: out of memory");
        }
        rng_t rr;
        rng_seed(&rr, (uint64_t)a.seed ^ 0x1e5a11ce);
        for (int64_t k = 0; k < cols; k++) imp[k] = (float)exp(1.5 * rng_normal(&rr));
    }
    /* The format list: validate every name before the long part starts. */
    const char *list[256];
    int nf = 0;
    char *fbuf = NULL;
    int rc = 0;
    if (a.formats) {
        rc = bench_split_formats(&CMD_BENCH_QUANT, "--format", a.formats, list, 256, &nf, &fbuf);
    } else {
        for (size_t i = 0; i < sizeof default_formats / sizeof *default_formats; i++) list[nf++] = default_formats[i];
    }
    if (!rc) rc = bench_check_formats(&CMD_BENCH_QUANT, "--format", list, nf, rows, cols);
    if (rc) {
        free(fbuf), free(w), free(imp);
        return rc;
    }
    pool *p = pool_create(g->threads);
    if (!p) {
        free(fbuf), free(w), free(imp);
        return cli_fail("bench quant: cannot start threads");
    }
    int nt = pool_size(p);
    result *res = calloc((size_t)nf, sizeof *res);
    int wname = 22; /* the format column fits the longest canonical name */
    for (int i = 0; i < nf; i++) {
        err_t e = {0};
        ccq_format f;
        char nm[64];
        if (!ccq_format_parse(list[i], &f, &e) && (int)strlen(ccq_format_name(&f, nm, sizeof nm)) > wname)
            wname = (int)strlen(nm);
    }
    if (!g->json) {
        printf("source %s%s%s, %lld x %lld, importance %s, %d thread%s\n", a.tensor ? "tensor " : "",
               a.tensor ? a.tensor : a.source, a.tensor ? "" : "", (long long)rows, (long long)cols, a.importance, nt,
               nt == 1 ? "" : "s");
        printf("%-*s %7s %9s %7s %8s %6s %9s %9s %9s\n", wname, "format", "bpw", "rel_mse", "snr_db", "bound", "ratio",
               "enc_mw/s", "dec_mw/s", "dot_mw/s");
        fflush(stdout);
    }
    for (int i = 0; i < nf && !rc; i++) {
        rc = measure(list[i], w, imp, rows, cols, p, g->json, gaussian, &res[i]);
        if (rc || g->json) continue;
        result *x = &res[i];
        char b[16] = "-", ra[16] = "-";
        if (gaussian) snprintf(b, sizeof b, "%.4f", x->bound), snprintf(ra, sizeof ra, "%.2f", x->rel_mse / x->bound);
        printf("%-*s %7.4f %9.5f %7.2f %8s %6s %9.2f %9.1f %9.1f\n", wname, x->name, x->bpw, x->rel_mse, x->snr_db, b, ra,
               x->enc, x->dec, x->dot);
        fflush(stdout);
    }
    if (!rc && g->json) {
        printf("[");
        for (int i = 0; i < nf; i++) {
            result *x = &res[i];
            printf("%s\n  {\"format\": \"%s\", \"bpw\": %.6f, \"rel_mse\": %.6g, \"snr_db\": %.4f, \"encode_mw_s\": %.4g, "
                   "\"decode_mw_s\": %.4g, \"dot_mw_s\": %.4g, \"threads\": %d, \"rd_bound\": ",
                   i ? "," : "", x->name, x->bpw, x->rel_mse, isfinite(x->snr_db) ? x->snr_db : 999.0, x->enc, x->dec,
                   x->dot, nt);
            if (gaussian) printf("%.6g}", x->bound);
            else printf("null}");
        }
        printf("\n]\n");
    }
    free(res), free(fbuf), free(w), free(imp);
    pool_destroy(p);
    return rc;
}
