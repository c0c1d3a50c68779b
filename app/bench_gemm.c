/* app/bench_gemm.c: the prefill GEMM benchmark: Y = X W^T (kernels/cuda/qgemm.h) for every format at the
 * ERNIE-4.5-300B shapes and token counts, and the grouped expert products of one MoE layer, timed with
 * CUDA events after warm-up. The yardstick is the bf16 tensor-core rate measured in the same run: the
 * best of this file's bf16 products at 8192 x 8192 x 8192 (the same kernels with bf16 weights, i.e. a
 * plain bf16 GEMM, on every kernel this GPU runs). That kernel reaches about half of cuBLAS, which this
 * binary does not link: --ref-tflops adds a column against a rate measured outside (torch.matmul on the
 * same GPU, in the same session; the command is in the help text). Weights are random valid encodings
 * made on the device; each timing round calls the product once on each of several copies of the weight
 * (together more bytes than twice the L2 cache), and the figure is the median over rounds of round time
 * / calls. Flops count 2 n k per token. Outputs
 * are bf16 (the model's activation type). Never reports a figure it did not measure. */
#include "bench_gemm.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { O_FORMATS = 1, O_TOKENS, O_REPS, O_PATHS, O_NO_MOE, O_NO_PLAIN, O_QUICK, O_REF };

static const cli_opt gemm_opts[] = {
    {"formats", 0, "LIST", "comma-separated formats (default: bf16,wint8,wint4,ccq2.75,ccq2.5,ccq2.06)", O_FORMATS, 0},
    {"tokens", 0, "LIST", "comma-separated token counts T of the plain products (default 256,512,2048)", O_TOKENS, 0},
    {"reps", 0, "N", "timing rounds per figure (default 10)", O_REPS, 0},
    {"paths", 0, "LIST", "kernels to time: auto, mma, wgmma, flush (default auto)", O_PATHS, 0},
    {"no-moe", 0, NULL, "skip the grouped expert products", O_NO_MOE, 0},
    {"no-plain", 0, NULL, "skip the plain products", O_NO_PLAIN, 0},
    {"quick", 0, NULL, "fewer rounds, T = 2048 only (a smoke run)", O_QUICK, 0},
    {"ref-tflops", 0, "X", "a bf16 rate measured elsewhere on this GPU in this session (torch.matmul): adds a column", O_REF, 0},
    {NULL, 0, NULL, NULL, 0, 0},
};

const cli_command CMD_BENCH_GEMM = {
    .name = "bench kernels gemm",
    .usage = "[--formats LIST] [--tokens LIST] [--reps N] [--paths LIST] [--no-moe] [--no-plain] [--quick]\n"
             "       [--ref-tflops X] [--json]",
    .summary = "prefill GEMM speed against the bf16 tensor-core rate",
    .details = "Times Y = X W^T with bf16 X of T rows for each weight format at the ERNIE-4.5-300B shapes, and\n"
               "the grouped gate/up and down products of one MoE layer (64 experts, T = 2048 tokens, top-8),\n"
               "and compares the rate with the best bf16 product at 8192 x 8192 x 8192 measured in the same run\n"
               "(this binary's own bf16 kernels, about half of cuBLAS). For the cuBLAS rate, measure torch on the\n"
               "same GPU just before and pass it with --ref-tflops (python3 with torch, on the GPU machine):\n"
               "  python3 - <<'EOF'\n"
               "  import torch\n"
               "  n = 8192; a = torch.randn(n, n, device='cuda', dtype=torch.bfloat16); b = torch.randn_like(a)\n"
               "  for _ in range(5): a @ b\n"
               "  s, e, r = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True), []\n"
               "  for _ in range(9):\n"
               "      s.record(); [a @ b for _ in range(5)]; e.record(); e.synchronize(); r.append(s.elapsed_time(e) / 5)\n"
               "  print(2 * n**3 / sorted(r)[4] / 1e9)  # TFLOP/s, median of 9\n"
               "  EOF",
    .opts = gemm_opts,
};

#if defined(ERNIE_CUDA) && ERNIE_CUDA

#include "base/rng.h"
#include "kernels/cuda/cudev.h"
#include "kernels/cuda/qgemm.h"
#include "bench_dev.h"

#define MAX_T 8
#define MAX_P 4

typedef struct {
    unsigned fmask;
    int64_t tokens[MAX_T];
    int ntok, reps, moe, plain, quick;
    qgemm_path paths[MAX_P];
    int npaths;
    double ref; /* an outside bf16 rate (TFLOP/s), 0: none */
} gopts;

static int parse_list(const char *v, char out[][32], int max) {
    char buf[256];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", v);
    for (char *s = strtok(buf, ","); s && n < max; s = strtok(NULL, ",")) snprintf(out[n++], 32, "%s", s);
    return n;
}

static int on_opt(void *ctx, int key, const char *v) {
    gopts *o = ctx;
    char items[16][32];
    long long n;
    switch (key) {
    case O_FORMATS: {
        o->fmask = 0;
        int c = parse_list(v, items, 16);
        for (int i = 0; i < c; i++) {
            int found = 0;
            for (int f = 0; f < QF_COUNT; f++)
                if (!strcmp(items[i], qfmt_name((qfmt)f))) o->fmask |= 1u << f, found = 1;
            if (!found) return cli_usage_error(&CMD_BENCH_GEMM, "unknown format '%s' in --formats", items[i]);
        }
        return 0;
    }
    case O_TOKENS: {
        int c = parse_list(v, items, MAX_T);
        o->ntok = 0;
        for (int i = 0; i < c; i++) {
            if (cli_int(&CMD_BENCH_GEMM, "--tokens", items[i], 1, 65536, &n)) return EXIT_USAGE;
            o->tokens[o->ntok++] = n;
        }
        return 0;
    }
    case O_REPS:
        if (cli_int(&CMD_BENCH_GEMM, "--reps", v, 3, 100000, &n)) return EXIT_USAGE;
        o->reps = (int)n;
        return 0;
    case O_PATHS: {
        int c = parse_list(v, items, MAX_P);
        o->npaths = 0;
        for (int i = 0; i < c; i++) {
            qgemm_path p;
            if (!strcmp(items[i], "auto")) p = QGEMM_AUTO;
            else if (!strcmp(items[i], "mma")) p = QGEMM_MMA;
            else if (!strcmp(items[i], "wgmma")) p = QGEMM_WGMMA;
            else if (!strcmp(items[i], "flush")) p = QGEMM_WGMMA_FLUSH;
            else return cli_usage_error(&CMD_BENCH_GEMM, "unknown kernel '%s' in --paths", items[i]);
            o->paths[o->npaths++] = p;
        }
        return 0;
    }
    case O_NO_MOE: o->moe = 0; return 0;
    case O_NO_PLAIN: o->plain = 0; return 0;
    case O_QUICK: o->quick = 1; return 0;
    case O_REF: return cli_double(&CMD_BENCH_GEMM, "--ref-tflops", v, 1, 1e5, &o->ref) ? EXIT_USAGE : 0;
    }
    return 0;
}

static const char *path_name(qgemm_path p) {
    return p == QGEMM_MMA ? "mma.sync" : p == QGEMM_WGMMA ? "wgmma" : p == QGEMM_WGMMA_FLUSH ? "wgmma-flush" : "auto";
}

/* ---- timing ---- */

typedef struct {
    dweight *w;
    int n;
    const uint16_t *x;
    int64_t T, x_rows;
    const int32_t *perm, *off;
    void *y;
} call_ctx;

static int call_once(void *ctx, int i, err_t *e) {
    const call_ctx *c = ctx;
    const qmat_dev *m = &c->w[i % c->n].m;
    if (c->off) return qgemm_grouped(m, c->x, c->x_rows, c->perm, c->off, c->T, c->y, QOUT_BF16, NULL, e);
    return qgemm(m, c->x, c->T, c->y, QOUT_BF16, NULL, e);
}


typedef struct {
    const char *fmt, *product, *path;
    char shape[32];
    int64_t T;
    double us, tflops;
} result;

/* Times one product on `copies` copies of the weight (made here, freed here). */
static int bench_one(qfmt f, int experts, int64_t n, int64_t k, int layout, int64_t T, int64_t x_rows, const int32_t *perm,
                     const int32_t *off, double flops, qgemm_path path, const uint16_t *x, void *y, size_t l2, int reps,
                     double *us, err_t *e) {
    double one = (double)experts * n * qfmt_row_bytes(f, k);
    int copies = (int)ceil(2.0 * (double)l2 / one);
    if (copies < 2) copies = 2;
    if (copies > 16) copies = 16;
    if (experts > 1) copies = 1; /* a whole MoE layer is many times the L2 */
    dweight w[16];
    memset(w, 0, sizeof w);
    int rc = 0;
    for (int c = 0; c < copies && !rc; c++) rc = dw_make(&w[c], f, experts, n, k, layout, 1000 + 17 * c + 100 * f, e);
    if (!rc) rc = cu_sync(e);
    call_ctx cc = {w, copies, x, T, x_rows, perm, off, y};
    qgemm_set_path(path);
    int calls = copies;
    /* about 20 ms of work per round at 400 TFLOP/s, at least one call per copy */
    while (calls * flops < 8e12 * 0.001 * 20 && calls < 64 * copies) calls += copies;
    if (!rc) rc = bench_time_calls(call_once, &cc, calls, 1, reps, us, NULL, e);
    qgemm_set_path(QGEMM_AUTO);
    for (int c = 0; c < copies; c++) dw_free(&w[c]);
    return rc;
}

int bench_gemm_cuda(int argc, char **argv, cli_global *g) {
    gopts o;
    memset(&o, 0, sizeof o);
    o.fmask = (1u << QF_COUNT) - 1, o.reps = 10, o.moe = 1, o.plain = 1;
    o.tokens[0] = 256, o.tokens[1] = 512, o.tokens[2] = 2048, o.ntok = 3;
    o.paths[0] = QGEMM_AUTO, o.npaths = 1;
    int r = cli_parse(&CMD_BENCH_GEMM, argc, argv, g, on_opt, &o, NULL, 0, NULL);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_BENCH_GEMM);
        return EXIT_OK;
    }
    if (o.quick) {
        if (o.reps == 10) o.reps = 5;
        o.tokens[0] = 2048, o.ntok = 1;
    }
    err_t e = {0};
    cu_devinfo dev;
    if (cu_device_info(&dev, &e)) return cli_fail("bench gemm: no CUDA GPU: %s", e.msg);
    const char *autop = qgemm_auto_path(&e);
    if (!autop) return cli_fail("bench gemm: %s", e.msg);
    fprintf(stderr, "device: %s (sm_%d%d, %d SMs, L2 %.0f MB), qgemm default kernel: %s\n", dev.name, dev.cc_major,
            dev.cc_minor, dev.sm_count, dev.l2_bytes / 1e6, autop);

    /* buffers for the largest product: X [8192][8192] or [2048][28672] or [16384][8192] bf16; Y likewise */
    size_t xmax = (size_t)16384 * 8192, ymax = (size_t)16384 * 10240;
    uint16_t *x = cu_malloc(xmax * 2, &e);
    void *y = x ? cu_malloc(ymax * 2, &e) : NULL;
    if (!y || cu_fill_bf16(x, xmax, -2.f, 2.f, 7, NULL, &e)) return cli_fail("bench gemm: %s", e.msg);

    /* the yardstick: bf16 8192 x 8192 x 8192, best over the kernels timed */
    double peak = 0;
    const char *peak_path = "";
    int rc = 0;
    /* every kernel this GPU runs, not only those asked for: the yardstick is the best bf16 rate we have */
    qgemm_path ypaths[2] = {QGEMM_AUTO, QGEMM_WGMMA};
    int nyp = strcmp(autop, "mma.sync") ? 2 : 1;
    for (int pi = 0; pi < nyp && !rc; pi++) {
        double us = 0, fl = 2.0 * 8192 * 8192 * 8192;
        rc = bench_one(QF_BF16, 1, 8192, 8192, QLAYOUT_STORED, 8192, 8192, NULL, NULL, fl, ypaths[pi], x, y, dev.l2_bytes, o.reps, &us, &e);
        if (!rc && fl / (us * 1e-6) / 1e12 > peak) peak = fl / (us * 1e-6) / 1e12, peak_path = path_name(ypaths[pi]);
        if (!rc) fprintf(stderr, "bf16 8192^3 (%s): %.1f us, %.1f TFLOP/s\n", path_name(ypaths[pi]), us, fl / (us * 1e-6) / 1e12);
    }
    if (rc) return cli_fail("bench gemm: bf16 reference: %s", e.msg);

    static const struct {
        int64_t n, k;
        const char *name, *shape;
    } shapes[] = {{7168, 8192, "gate_up", "7168x8192"},
                  {8192, 3584, "down", "8192x3584"},
                  {10240, 8192, "qkv", "10240x8192"},
                  {8192, 28672, "dense_down", "8192x28672"}};
    result *res = calloc(512, sizeof *res);
    int nres = 0;
    for (int f = 0; f < QF_COUNT && !rc && o.plain; f++) {
        if (!(o.fmask >> f & 1)) continue;
        for (int s = 0; s < 4 && !rc; s++)
            for (int ti = 0; ti < o.ntok && !rc; ti++)
                for (int pi = 0; pi < o.npaths && !rc && nres < 512; pi++) {
                    int64_t T = o.tokens[ti];
                    if ((size_t)(T * shapes[s].k) > xmax || (size_t)(T * shapes[s].n) > ymax) continue;
                    double us = 0, fl = 2.0 * T * shapes[s].n * shapes[s].k;
                    rc = bench_one((qfmt)f, 1, shapes[s].n, shapes[s].k, QLAYOUT_ROWS, T, T, NULL, NULL, fl, o.paths[pi], x, y,
                                   dev.l2_bytes, o.reps, &us, &e);
                    if (rc) break;
                    result *q = &res[nres++];
                    q->fmt = qfmt_name((qfmt)f), q->product = shapes[s].name, q->path = path_name(o.paths[pi]);
                    snprintf(q->shape, sizeof q->shape, "%s", shapes[s].shape);
                    q->T = T, q->us = us, q->tflops = fl / (us * 1e-6) / 1e12;
                    fprintf(stderr, "  %-8s %-10s %-11s T=%-5lld %-11s %10.1f us %7.1f TFLOP/s %5.1f%%\n", q->fmt,
                            q->product, q->shape, (long long)T, q->path, us, q->tflops, 100 * q->tflops / peak);
                }
    }
    /* one MoE layer: 64 experts, 2048 tokens routed to 8 distinct experts each (uniform at random),
     * slots sorted by expert; gate/up gathers X rows through the permutation, down reads sorted rows */
    enum { E = 64, TOK = 2048, TOPK = 8, SLOTS = TOK * TOPK };
    int32_t *perm_d = cu_malloc(sizeof(int32_t) * SLOTS, &e), *off_d = cu_malloc(sizeof(int32_t) * (E + 1), &e);
    if (!rc && o.moe && (!perm_d || !off_d)) rc = -1;
    if (!rc && o.moe) {
        rng_t rg;
        rng_seed(&rg, 42);
        static int32_t choice[TOK][TOPK], perm[SLOTS], off[E + 1];
        int cnt[E] = {0};
        for (int t = 0; t < TOK; t++)
            for (int j = 0; j < TOPK; j++) {
                int again;
                do {
                    choice[t][j] = (int32_t)(rng_next(&rg) % E);
                    again = 0;
                    for (int i = 0; i < j; i++) again |= choice[t][i] == choice[t][j];
                } while (again);
                cnt[choice[t][j]]++;
            }
        off[0] = 0;
        for (int x2 = 0; x2 < E; x2++) off[x2 + 1] = off[x2] + cnt[x2];
        int fill[E];
        for (int x2 = 0; x2 < E; x2++) fill[x2] = off[x2];
        for (int t = 0; t < TOK; t++)
            for (int j = 0; j < TOPK; j++) perm[fill[choice[t][j]]++] = t;
        rc = cu_h2d(perm_d, perm, sizeof perm, &e) || cu_h2d(off_d, off, sizeof off, &e);
    }
    for (int f = 0; f < QF_COUNT && !rc && o.moe; f++) {
        if (!(o.fmask >> f & 1)) continue;
        for (int d = 0; d < 2 && !rc; d++)
            for (int pi = 0; pi < o.npaths && !rc && nres < 512; pi++) {
                int64_t n = d ? 8192 : 7168, k = d ? 3584 : 8192;
                double us = 0, fl = 2.0 * SLOTS * n * k;
                rc = bench_one((qfmt)f, E, n, k, d ? QLAYOUT_ROWS : QLAYOUT_GATE_UP, SLOTS, d ? SLOTS : TOK, d ? NULL : perm_d, off_d, fl, o.paths[pi], x, y,
                               dev.l2_bytes, o.reps, &us, &e);
                if (rc) break;
                result *q = &res[nres++];
                q->fmt = qfmt_name((qfmt)f), q->product = d ? "moe down" : "moe gate_up", q->path = path_name(o.paths[pi]);
                snprintf(q->shape, sizeof q->shape, "64x%lldx%lld", (long long)n, (long long)k);
                q->T = TOK, q->us = us, q->tflops = fl / (us * 1e-6) / 1e12;
                fprintf(stderr, "  %-8s %-11s %-14s T=%-5d %-11s %10.1f us %7.1f TFLOP/s %5.1f%%\n", q->fmt, q->product,
                        q->shape, TOK, q->path, us, q->tflops, 100 * q->tflops / peak);
            }
    }
    cu_free(perm_d), cu_free(off_d), cu_free(x), cu_free(y);
    if (rc) {
        free(res);
        return cli_fail("bench gemm: %s", e.msg);
    }
    if (g->json) {
        printf("{\"device\": \"%s\", \"sm_count\": %d, \"default_kernel\": \"%s\", \"bf16_peak_tflops\": %.1f, "
               "\"bf16_peak_kernel\": \"%s\", \"results\": [",
               dev.name, dev.sm_count, autop, peak, peak_path);
        for (int i = 0; i < nres; i++)
            printf("%s\n  {\"format\": \"%s\", \"product\": \"%s\", \"shape\": \"%s\", \"T\": %lld, \"kernel\": \"%s\", "
                   "\"us\": %.2f, \"tflops\": %.2f, \"ratio_to_bf16_peak\": %.4f, \"ratio_to_ref\": %.4f}",
                   i ? "," : "", res[i].fmt, res[i].product, res[i].shape, (long long)res[i].T, res[i].path, res[i].us,
                   res[i].tflops, res[i].tflops / peak, o.ref > 0 ? res[i].tflops / o.ref : 0.0);
        printf("\n], \"ref_tflops\": %.1f}\n", o.ref);
    } else {
        printf("device: %s (sm_%d%d, %d SMs), qgemm default kernel: %s\n", dev.name, dev.cc_major, dev.cc_minor,
               dev.sm_count, autop);
        printf("bf16 tensor-core rate (this binary's best bf16 kernel at 8192^3, %s): %.1f TFLOP/s (%%bf16)\n", peak_path,
               peak);
        if (o.ref > 0) printf("outside bf16 rate given with --ref-tflops: %.1f TFLOP/s (%%ref)\n", o.ref);
        printf("%-8s %-11s %-14s %6s %-11s %10s %8s %7s%s\n", "format", "product", "shape", "T", "kernel", "us", "TFLOP/s",
               "%bf16", o.ref > 0 ? "    %ref" : "");
        for (int i = 0; i < nres; i++) {
            printf("%-8s %-11s %-14s %6lld %-11s %10.1f %8.1f %6.1f%%", res[i].fmt, res[i].product, res[i].shape,
                   (long long)res[i].T, res[i].path, res[i].us, res[i].tflops, 100 * res[i].tflops / peak);
            if (o.ref > 0) printf(" %6.1f%%", 100 * res[i].tflops / o.ref);
            printf("\n");
        }
    }
    free(res);
    return EXIT_OK;
}

#else

int bench_gemm_cuda(int argc, char **argv, cli_global *g) {
    return cli_help_only(&CMD_BENCH_GEMM, argc, argv, g, "this binary was built without CUDA");
}

#endif
