/* app/bench_cpu.c: `ernie bench cpu`: the CPU engine's one-token products (the decode step reads every
 * weight once per token) against the memory read rate measured in the same run, on the same threads.
 *
 * Each format's matrix is encoded once from Gaussian weights and copied until the copies fill the
 * working set (--mib, default 512 MiB, far above any last-level cache); call i multiplies copy
 * i mod copies with one vector, through ccq_dot on the thread pool with the CPU backend's split of the
 * rows, so every call reads its weights from memory as a decode step does. Reported: the median time
 * of the calls after a warm-up pass over every copy, the weight bytes over that time, and that rate over
 * the read rate (the best of several passes of plain 16-byte loads over the working set). Never prints
 * a figure it did not measure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/pool.h"
#include "base/rng.h"
#include "base/vdot.h"
#include "bench.h"
#include "ccq/ccq.h"
#include "progress.h"

enum { O_FORMATS = 1, O_ROWS, O_COLS, O_MIB, O_REPS, O_TOKENS };

static const cli_opt opts[] = {
    {"formats", 0, "LIST", "comma-separated formats (default bf16,wint8,wint4,ccq2.75,ccq2.5,ccq2.06)", O_FORMATS, 0},
    {"rows", 0, "N", "output channels of the matrix, default 8192", O_ROWS, 0},
    {"cols", 0, "K", "input channels, default 2560 (ERNIE-4.5-21B's hidden size)", O_COLS, 0},
    {"mib", 0, "N", "working set in MiB, filled with copies of each matrix (default 512)", O_MIB, 0},
    {"reps", 0, "N", "timed calls per format (default 50)", O_REPS, 0},
    {"tokens", 0, "T", "vectors per call (default 1, the decode step; more: prefill, against the multiply-add peak)", O_TOKENS, 0},
    {NULL, 0, NULL, NULL, 0, 0},
};

const cli_command CMD_BENCH_CPU = {
    .name = "bench cpu",
    .usage = "[--formats LIST] [--rows N] [--cols K] [--mib N] [--reps N] [--tokens T] [--json]",
    .summary = "The CPU decode step's products against the memory read rate measured in the same run",
    .details = "Each call multiplies one copy of the matrix (copies fill --mib, so the weights come from\n"
               "memory, as in a decode step) with one vector on -t threads. 'us' is the median call,\n"
               "'GB/s' the weight bytes over it, 'of read' that over the read rate of the same threads.\n"
               "With --tokens T > 1 (prefill) each call multiplies T vectors; 'GMAC/s' is rows x cols x T\n"
               "over the median call, 'of peak' that over the multiply-add rate of the same threads\n"
               "(independent vector multiply-then-add chains: the products' own arithmetic, no FMA).",
    .opts = opts,
};

typedef struct {
    const char *formats;
    long long rows, cols, mib, reps, tokens;
} args;

static int on_opt(void *ctx, int key, const char *v) {
    args *a = (args *)ctx;
    switch (key) {
    case O_FORMATS: a->formats = v; return 0;
    case O_ROWS: return cli_int(&CMD_BENCH_CPU, "--rows", v, 1, 1 << 20, &a->rows);
    case O_COLS: return cli_int(&CMD_BENCH_CPU, "--cols", v, 64, 1 << 20, &a->cols);
    case O_MIB: return cli_int(&CMD_BENCH_CPU, "--mib", v, 16, 1 << 20, &a->mib);
    case O_REPS: return cli_int(&CMD_BENCH_CPU, "--reps", v, 1, 100000, &a->reps);
    case O_TOKENS: return cli_int(&CMD_BENCH_CPU, "--tokens", v, 1, 4096, &a->tokens);
    }
    return 0;
}

/* ---- the read rate ---- */

typedef uint64_t u64x2 __attribute__((vector_size(16)));

typedef struct {
    const unsigned char *buf;
    size_t bytes;
    u64x2 sink[256]; /* per thread, so that the loads cannot be dropped */
} read_job;

enum { PAGE = 1 << 16 };

static void read_pages(void *ctx, int64_t p0, int64_t p1, int tid) {
    read_job *j = ctx;
    u64x2 a = {0}, b = {0}, c = {0}, d = {0};
    const unsigned char *s = j->buf + (size_t)p0 * PAGE, *e = j->buf + (size_t)p1 * PAGE;
    for (; s < e; s += 64) {
        u64x2 v0, v1, v2, v3;
        memcpy(&v0, s, 16), memcpy(&v1, s + 16, 16), memcpy(&v2, s + 32, 16), memcpy(&v3, s + 48, 16);
        a += v0, b += v1, c += v2, d += v3;
    }
    j->sink[tid & 255] += (a + b) + (c + d);
}

/* Bytes per second of the best of 5 passes over bytes of memory on the pool's threads. */
static double read_rate(pool *p, size_t bytes) {
    read_job *j = calloc(1, sizeof *j);
    unsigned char *buf = malloc(bytes);
    if (!j || !buf) {
        free(j), free(buf);
        return 0;
    }
    memset(buf, 1, bytes); /* touch every page before timing */
    j->buf = buf, j->bytes = bytes;
    int64_t pages = (int64_t)(bytes / PAGE);
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = clock_now();
        pool_for(p, pages, pages / (8 * pool_size(p)) + 1, read_pages, j);
        double t = clock_now() - t0;
        double rate = (double)pages * PAGE / t;
        if (rate > best) best = rate;
    }
    free(buf), free(j);
    return best;
}

/* ---- the products ---- */

typedef struct {
    const ccq_tensor *t;
    const float *x;
    float *y;
    int64_t T;
} dot_job;

static void dot_rows(void *ctx, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    dot_job *j = ctx;
    ccq_dot(j->t, r0, r1, j->x, j->t->cols, j->T, j->y + r0, j->t->rows, NULL);
}

/* ---- the multiply-add peak (for --tokens > 1) ---- */

typedef struct {
    int64_t iters;
    float sink[256];
    double macs[256]; /* per thread: what vd_madd_work says it did */
} madd_job;

static void madd_threads(void *ctx, int64_t b, int64_t e, int tid) {
    madd_job *j = ctx;
    for (int64_t i = b; i < e; i++) j->macs[tid & 255] += vd_madd_work(j->iters, &j->sink[tid & 255]);
}

/* Multiply-adds per second of all the pool's threads at once (one chain set per thread): the best of 3
 * passes of about 0.2 s each. */
static double madd_peak(pool *p) {
    madd_job *j = calloc(1, sizeof *j);
    if (!j) return 0;
    j->iters = 1 << 16;
    double t0 = clock_now();
    vd_madd_work(j->iters, &j->sink[0]);
    const double one = clock_now() - t0;
    j->iters = (int64_t)((double)j->iters * 0.2 / (one > 1e-6 ? one : 1e-6)) + 1;
    const int nt = pool_size(p);
    double best = 0;
    for (int r = 0; r < 3; r++) {
        memset(j->macs, 0, sizeof j->macs);
        t0 = clock_now();
        pool_for(p, nt, 1, madd_threads, j);
        const double t = clock_now() - t0;
        double macs = 0;
        for (int i = 0; i < 256; i++) macs += j->macs[i];
        if (macs / t > best) best = macs / t;
    }
    free(j);
    return best;
}

typedef struct {
    char name[64];
    double bpw, bytes, us, gbs, gmacs;
} result;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int measure(const char *fname, const args *a, pool *p, int quiet, result *res) {
    err_t e = {0};
    ccq_format f;
    if (ccq_format_parse(fname, &f, &e)) return cli_usage_error(&CMD_BENCH_CPU, "--formats: %s", e.msg);
    ccq_format_name(&f, res->name, sizeof res->name);
    const int64_t rows = a->rows, cols = a->cols;
    uint64_t bits;
    if (ccq_bits(&f, rows, cols, &bits, &res->bpw, &e)) return cli_usage_error(&CMD_BENCH_CPU, "--formats: %s", e.msg);
    float *w = malloc(sizeof(float) * (size_t)(rows * cols));
    if (!w) return cli_fail("bench cpu: out of memory for %lld x %lld weights", a->rows, a->cols);
    rng_t r;
    rng_seed(&r, 1);
    for (int64_t i = 0; i < rows * cols; i++) w[i] = (float)rng_normal(&r);
    progress *pr = progress_start(res->name, (double)rows, PROG_COUNT, "rows encoded", quiet);
    ccq_encode_opts o = {.pool = p, .progress = progress_cb_bridge, .progress_ctx = pr};
    ccq_tensor src;
    int rc = ccq_encode(&f, w, rows, cols, &o, &src, &e);
    progress_finish(pr);
    free(w);
    if (rc) return cli_fail("bench cpu: %s: %s", res->name, e.msg);
    const size_t one = (size_t)(bits / 8);
    res->bytes = (double)one;
    int ncopy = (int)(((size_t)a->mib << 20) / one);
    if (ncopy < 2) ncopy = 2;
    ccq_tensor *t = calloc((size_t)ncopy, sizeof *t);
    unsigned char *store = malloc(one * (size_t)ncopy);
    const int64_t T = a->tokens;
    float *x = malloc(sizeof(float) * (size_t)(T * cols)), *y = malloc(sizeof(float) * (size_t)(T * rows));
    double *us = malloc(sizeof(double) * (size_t)a->reps);
    if (!t || !store || !x || !y || !us) {
        free(t), free(store), free(x), free(y), free(us), ccq_free(&src);
        return cli_fail("bench cpu: out of memory for %d copies of %s (lower --mib)", ncopy, res->name);
    }
    for (int c = 0; c < ncopy && !rc; c++) {
        ccq_part parts[CCQ_MAX_PARTS];
        size_t at = 0;
        for (int i = 0; i < src.nparts; i++) {
            parts[i] = src.part[i];
            parts[i].data = store + (size_t)c * one + at;
            memcpy(store + (size_t)c * one + at, src.part[i].data, src.part[i].nbytes);
            at += src.part[i].nbytes;
        }
        if (ccq_wrap(&f, rows, cols, parts, src.nparts, &t[c], &e)) rc = cli_fail("bench cpu: %s: %s", res->name, e.msg);
    }
    for (int64_t k = 0; k < T * cols; k++) x[k] = (float)((k % 7) - 3) * 0.25f;
    const int64_t grain = rows / (8 * pool_size(p)) > 4 ? rows / (8 * pool_size(p)) : 4; /* as cpu_matmul */
    for (int c = 0; c < ncopy && !rc; c++) { /* warm-up: every copy paged in (one vector), the pool awake */
        dot_job j = {&t[c], x, y, 1};
        pool_for(p, rows, grain, dot_rows, &j);
    }
    for (long long i = 0; i < a->reps && !rc; i++) {
        dot_job j = {&t[i % ncopy], x, y, T};
        double t0 = clock_now();
        pool_for(p, rows, grain, dot_rows, &j);
        us[i] = (clock_now() - t0) * 1e6;
    }
    if (!rc) {
        qsort(us, (size_t)a->reps, sizeof *us, cmp_double);
        res->us = us[a->reps / 2];
        res->gbs = res->bytes / res->us / 1e3;
        res->gmacs = (double)rows * (double)cols * (double)T / res->us / 1e3;
    }
    free(t), free(store), free(x), free(y), free(us);
    ccq_free(&src);
    return rc;
}

int bench_cpu(int argc, char **argv, cli_global *g) {
    args a = {.formats = "bf16,wint8,wint4,ccq2.75,ccq2.5,ccq2.06", .rows = 8192, .cols = 2560, .mib = 512, .reps = 50,
              .tokens = 1};
    int r = cli_parse(&CMD_BENCH_CPU, argc, argv, g, on_opt, &a, NULL, 0, NULL);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_BENCH_CPU);
        return EXIT_OK;
    }
    /* the working set is touched page by page: past the memory the system has, it would be killed */
    const long long phys_mib = (long long)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE) >> 20;
    if (phys_mib > 0 && a.mib > phys_mib / 2)
        return cli_usage_error(&CMD_BENCH_CPU, "--mib %lld is more than half of this machine's %lld MiB of memory", a.mib,
                               phys_mib);
    const char *list[64];
    int nf = 0;
    char *fbuf = NULL;
    if ((r = bench_split_formats(&CMD_BENCH_CPU, "--formats", a.formats, list, 64, &nf, &fbuf)) ||
        (r = bench_check_formats(&CMD_BENCH_CPU, "--formats", list, nf, a.rows, a.cols))) {
        free(fbuf);
        return r;
    }
    pool *p = pool_create(g->threads);
    if (!p) {
        free(fbuf);
        return cli_fail("bench cpu: cannot start threads");
    }
    const int nt = pool_size(p);
    const double rate = read_rate(p, (size_t)a.mib << 20);
    if (rate <= 0) {
        free(fbuf), pool_destroy(p);
        return cli_fail("bench cpu: out of memory for a %lld MiB working set (lower --mib)", a.mib);
    }
    const double peak = a.tokens > 1 ? madd_peak(p) : 0;
    if (a.tokens > 1 && peak <= 0) {
        free(fbuf), pool_destroy(p);
        return cli_fail("bench cpu: out of memory");
    }
    if (!g->json) {
        if (a.tokens == 1) {
            printf("one-token products, %lld x %lld, %d thread%s; read rate %.1f GB/s (%lld MiB)\n", a.rows, a.cols, nt,
                   nt == 1 ? "" : "s", rate / 1e9, a.mib);
            printf("%-10s %7s %9s %9s %8s %8s\n", "format", "bpw", "MB", "us", "GB/s", "of read");
        } else {
            printf("%lld-token products, %lld x %lld, %d thread%s; multiply-add peak %.1f GMAC/s\n", a.tokens, a.rows,
                   a.cols, nt, nt == 1 ? "" : "s", peak / 1e9);
            printf("%-10s %7s %9s %9s %8s %8s\n", "format", "bpw", "MB", "us", "GMAC/s", "of peak");
        }
        fflush(stdout);
    }
    result *res = calloc((size_t)nf, sizeof *res);
    int rc = res ? 0 : cli_fail("bench cpu: out of memory");
    for (int i = 0; i < nf && !rc; i++) {
        rc = measure(list[i], &a, p, g->json, &res[i]);
        if (rc || g->json) continue;
        if (a.tokens == 1)
            printf("%-10s %7.3f %9.2f %9.1f %8.2f %7.1f%%\n", res[i].name, res[i].bpw, res[i].bytes / 1e6, res[i].us,
                   res[i].gbs, 100 * res[i].gbs * 1e9 / rate);
        else
            printf("%-10s %7.3f %9.2f %9.1f %8.2f %7.1f%%\n", res[i].name, res[i].bpw, res[i].bytes / 1e6, res[i].us,
                   res[i].gmacs, 100 * res[i].gmacs * 1e9 / peak);
        fflush(stdout);
    }
    if (!rc && g->json) {
        printf("{\"rows\": %lld, \"cols\": %lld, \"tokens\": %lld, \"threads\": %d, \"read_gb_s\": %.4g, "
               "\"madd_peak_gmac_s\": %.4g, \"results\": [",
               a.rows, a.cols, a.tokens, nt, rate / 1e9, peak / 1e9);
        for (int i = 0; i < nf; i++)
            printf("%s\n  {\"format\": \"%s\", \"bpw\": %.6f, \"bytes\": %.0f, \"us\": %.4g, \"gb_s\": %.4g, "
                   "\"of_read\": %.4g, \"gmac_s\": %.4g}",
                   i ? "," : "", res[i].name, res[i].bpw, res[i].bytes, res[i].us, res[i].gbs, res[i].gbs * 1e9 / rate,
                   res[i].gmacs);
        printf("\n]}\n");
    }
    free(res), free(fbuf);
    pool_destroy(p);
    return rc;
}
