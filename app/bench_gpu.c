/* app/bench_gpu.c: `ernie bench kernels` for the CUDA kernels: the batch-1 quantized GEMV of every format
 * at the real ERNIE-4.5-300B shapes and the two expert GEMVs of one MoE layer (top-8 of 64 experts),
 * timed with CUDA events after warm-up, against the device-to-device copy bandwidth measured in the
 * same run, the same GEMVs for batches of 4, 16 and 64 tokens, and the expert products of 4, 16 and 64
 * tokens routed top-8 (qmoe_gate_up_batch / qmoe_down_batch; GB/s counts the distinct selected experts). Weights are random
 * valid encodings made on the device (the ccq formats then tiled by qmat_tile, whose time is reported
 * too); each timing round calls the product once on each of several copies of the weight (more bytes than twice the L2 cache in all, so no call
 * finds its weight in L2), and the figure is the median over rounds of round time / calls. For the
 * experts, every call selects a different set of 8 of the 64 experts. The GB/s count every byte of the
 * format's stored parts that the product reads. Prints a table on stdout (JSON with --json) and
 * progress on stderr; never reports a figure it did not measure. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int bench_kernels_cuda(int argc, char **argv, cli_global *g);

enum { O_FORMATS = 1, O_REPS, O_QUICK, O_NO_MOE, O_NO_GEMV };

static const cli_opt bench_opts[] = {
    {"formats", 0, "LIST", "comma-separated formats (default: bf16,wint8,wint4,ccq2.75,ccq2.5,ccq2.06)", O_FORMATS, 0},
    {"reps", 0, "N", "timing rounds per figure (default 30)", O_REPS, 0},
    {"quick", 0, NULL, "fewer rounds and shapes (a smoke run)", O_QUICK, 0},
    {"no-moe", 0, NULL, "skip the expert GEMVs", O_NO_MOE, 0},
    {"no-gemv", 0, NULL, "skip the plain GEMVs", O_NO_GEMV, 0},
    {NULL, 0, NULL, NULL, 0, 0},
};

static const cli_command CMD_BK = {
    .name = "bench kernels",
    .usage = "[--formats LIST] [--reps N] [--quick] [--no-moe] [--no-gemv] [--json]",
    .summary = "CUDA kernel speed against the GPU's measured copy bandwidth",
    .details = "Times the batch-1 quantized GEMV (y = W x, bf16 x) of each format at the ERNIE-4.5-300B shapes\n"
               "and the MoE expert GEMVs (gate+up with SwiGLU, and down with the routing-weighted sum, top-8\n"
               "of 64 experts), and compares the bytes of weight read per second with the device-to-device\n"
               "copy bandwidth (bytes read + written) measured in the same run. Every format is also timed\n"
               "for batches of 4, 16 and 64 tokens, plain and routed to experts. 'ernie bench kernels gemm --help': the tensor-core\n"
               "GEMM of long prompts.",
    .opts = bench_opts,
};

#if defined(ERNIE_CUDA) && ERNIE_CUDA

#include "base/rng.h"
#include "kernels/gpu_probe.h"
#include "kernels/cuda/cudev.h"
#include "kernels/cuda/qgemv.h"
#include "bench_dev.h"

typedef struct {
    unsigned fmask;
    int reps, quick, moe, gemv;
} bopts;

static int on_opt(void *ctx, int key, const char *v) {
    bopts *o = ctx;
    long long n;
    switch (key) {
    case O_FORMATS: {
        o->fmask = 0;
        char buf[256];
        snprintf(buf, sizeof buf, "%s", v);
        for (char *s = strtok(buf, ","); s; s = strtok(NULL, ",")) {
            int found = 0;
            for (int f = 0; f < QF_COUNT; f++)
                if (!strcmp(s, qfmt_name((qfmt)f))) o->fmask |= 1u << f, found = 1;
            if (!found) return cli_usage_error(&CMD_BK, "unknown format '%s' in --formats", s);
        }
        return 0;
    }
    case O_REPS:
        if (cli_int(&CMD_BK, "--reps", v, 3, 100000, &n)) return EXIT_USAGE;
        o->reps = (int)n;
        return 0;
    case O_QUICK: o->quick = 1; return 0;
    case O_NO_MOE: o->moe = 0; return 0;
    case O_NO_GEMV: o->gemv = 0; return 0;
    }
    return 0;
}

/* ---- timing ---- */

typedef struct {
    const char *fmt, *product, *shape;
    double bytes, us, us_min, gbs, ratio;
} result;


typedef struct {
    void *a, *b;
    size_t bytes;
} copy_ctx;

static int call_copy(void *ctx, int i, err_t *e) {
    copy_ctx *c = ctx;
    (void)i;
    return cu_d2d_async(c->b, c->a, c->bytes, NULL, e);
}

typedef struct {
    dweight *w;
    int n;
    const uint16_t *x;
    void *y;
    qgemv_ws *ws;
    int T;
} gemv_ctx;

static int call_gemv(void *ctx, int i, err_t *e) {
    gemv_ctx *c = ctx;
    return qgemv_batch(&c->w[i % c->n].m, c->T, c->x, c->y, QOUT_F32, c->ws, NULL, e);
}

typedef struct {
    dweight *w;
    const int32_t *ids; /* [nsets][topk] */
    const float *rw;
    int nsets, topk, down;
    const uint16_t *x, *h;
    void *out;
    qgemv_ws *ws;
} moe_ctx;

static int call_moe(void *ctx, int i, err_t *e) {
    moe_ctx *c = ctx;
    const int32_t *ids = c->ids + (size_t)(i % c->nsets) * c->topk;
    if (c->down) return qmoe_down(&c->w->m, ids, c->rw, c->topk, c->h, c->out, QOUT_F32, c->ws, NULL, e);
    return qmoe_gate_up(&c->w->m, ids, c->topk, c->x, c->out, QOUT_BF16, c->ws, NULL, e);
}

/* Routings of T tokens (top-k of E experts, uniform), built on the device by qmoe_route_build; RSETS of
 * them used in turn, so that calls do not find the same experts in L2. */
enum { RSETS = 16 };
typedef struct {
    qmoe_route r;
    int32_t *ids, *offsets, *perm, *slot;
} broute;

static void routes_free(broute *rb) {
    for (int i = 0; i < RSETS; i++) cu_free(rb[i].ids), cu_free(rb[i].offsets), cu_free(rb[i].perm), cu_free(rb[i].slot);
    memset(rb, 0, sizeof(broute) * RSETS);
}

/* Makes RSETS routings; *distinct: the mean number of distinct experts a call selects. */
static int routes_make(broute *rb, int T, int topk, int E, uint64_t seed, double *distinct, err_t *e) {
    routes_free(rb);
    rng_t rg;
    rng_seed(&rg, seed);
    int32_t ids[64 * 64];
    double dsum = 0;
    for (int s = 0; s < RSETS; s++) {
        char used[4096] = {0};
        for (int t = 0; t < T; t++)
            for (int j = 0; j < topk; j++) {
                int again;
                do {
                    ids[t * topk + j] = (int32_t)(rng_next(&rg) % (uint64_t)E);
                    again = 0;
                    for (int i = 0; i < j; i++) again |= ids[t * topk + i] == ids[t * topk + j];
                } while (again);
                used[ids[t * topk + j]] = 1;
            }
        for (int i = 0; i < E; i++) dsum += used[i];
        size_t nb = sizeof(int32_t) * (size_t)T * topk;
        rb[s].ids = cu_malloc(nb, e), rb[s].perm = cu_malloc(nb, e), rb[s].slot = cu_malloc(nb, e);
        rb[s].offsets = cu_malloc(sizeof(int32_t) * ((size_t)E + 1), e);
        if (!rb[s].ids || !rb[s].perm || !rb[s].slot || !rb[s].offsets || cu_h2d(rb[s].ids, ids, nb, e) ||
            qmoe_route_build(rb[s].ids, T, topk, E, rb[s].offsets, rb[s].perm, rb[s].slot, &rb[s].r, NULL, e))
            return -1;
    }
    *distinct = dsum / RSETS;
    return cu_sync(e);
}

typedef struct {
    dweight *w;
    broute *rb;
    int nsets, down;
    const uint16_t *x, *h;
    void *out;
    const float *rw;
    qgemv_ws *ws;
} bmoe_ctx;

static int call_bmoe(void *ctx, int i, err_t *e) {
    bmoe_ctx *c = ctx;
    const qmoe_route *r = &c->rb[i % c->nsets].r;
    if (c->down) return qmoe_down_batch(&c->w->m, r, c->rw, c->h, c->out, QOUT_F32, c->ws, NULL, e);
    return qmoe_gate_up_batch(&c->w->m, r, c->x, c->out, QOUT_BF16, c->ws, NULL, e);
}

static void add_result(result *res, int *nres, const char *fmt, const char *product, const char *shape, double bytes,
                       double us, double us_min, double copy_gbs) {
    result *r = &res[(*nres)++];
    r->fmt = fmt, r->product = product, r->shape = shape, r->bytes = bytes, r->us = us, r->us_min = us_min;
    r->gbs = bytes / (us * 1e-6) / 1e9;
    r->ratio = r->gbs / copy_gbs;
    fprintf(stderr, "  %-8s %-22s %-14s %8.2f MB %9.2f us %7.0f GB/s %5.1f%% of copy\n", fmt, product, shape,
            bytes / 1e6, us, r->gbs, 100 * r->ratio);
}

int bench_kernels_cuda(int argc, char **argv, cli_global *g) {
    bopts o = {0};
    o.fmask = (1u << QF_COUNT) - 1, o.reps = 30, o.moe = 1, o.gemv = 1;
    int r = cli_parse(&CMD_BK, argc, argv, g, on_opt, &o, NULL, 0, NULL);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_BK);
        return EXIT_OK;
    }
    if (o.quick && o.reps == 30) o.reps = 5;
    err_t e = {0};
    gpu_info gi;
    if (gpu_probe(&gi, 1, &e) == 0) return cli_fail("bench kernels: no CUDA GPU: %s", e.msg);
    cu_devinfo dev;
    if (cu_device_info(&dev, &e)) return cli_fail("bench kernels: %s", e.msg);
    fprintf(stderr, "device: %s, %d SMs, L2 %.0f MB, %.1f GB free\n", dev.name, dev.sm_count, dev.l2_bytes / 1e6,
            dev.mem_free / 1e9);

    /* the copy bandwidth: 1 GiB device to device, bytes read + written */
    copy_ctx cc = {0};
    cc.bytes = (size_t)1 << 30;
    cc.a = cu_malloc(cc.bytes, &e);
    cc.b = cc.a ? cu_malloc(cc.bytes, &e) : NULL;
    if (!cc.b || cu_fill_bytes(cc.a, cc.bytes, 0, 255, 1, NULL, &e)) return cli_fail("bench kernels: %s", e.msg);
    double copy_us, copy_min;
    if (bench_time_calls(call_copy, &cc, 1, 2, o.reps < 20 ? 20 : o.reps, &copy_us, &copy_min, &e))
        return cli_fail("bench kernels: copy: %s", e.msg);
    double copy_gbs = 2.0 * cc.bytes / (copy_us * 1e-6) / 1e9;
    cu_free(cc.a), cu_free(cc.b);
    fprintf(stderr, "copy bandwidth: %.0f GB/s (read + write, %.2f GB per copy, median of %d)\n", copy_gbs,
            cc.bytes / 1e9, o.reps < 20 ? 20 : o.reps);

    result res[512];
    int nres = 0;
    qgemv_ws ws;
    if (qgemv_ws_alloc(&ws, 65536 * 16, 64, &e)) return cli_fail("bench kernels: %s", e.msg);
    static const struct {
        int64_t n, k;
        const char *name, *shape;
    } shapes[] = {{7168, 8192, "gemv gate_up", "7168x8192"},
                  {8192, 3584, "gemv down", "8192x3584"},
                  {10240, 8192, "gemv qkv", "10240x8192"},
                  {8192, 28672, "gemv dense_down", "8192x28672"}};
    int nshapes = o.quick ? 2 : 4;
    uint16_t *x = cu_malloc(64 * 28672 * 2, &e), *h = cu_malloc(8 * 3584 * 2, &e);
    void *y = cu_malloc(64 * 10240 * 4, &e), *ho = cu_malloc(8 * 3584 * 4, &e);
    if (!x || !h || !y || !ho || cu_fill_bf16(x, 64 * 28672, -2.f, 2.f, 7, NULL, &e) ||
        cu_fill_bf16(h, 8 * 3584, -1.f, 1.f, 8, NULL, &e))
        return cli_fail("bench kernels: %s", e.msg);
    int rc = 0;
    for (int f = 0; f < QF_COUNT && !rc && o.gemv; f++) {
        if (!(o.fmask >> f & 1)) continue;
        for (int s = 0; s < nshapes && !rc; s++) {
            double one = shapes[s].n * qfmt_row_bytes((qfmt)f, shapes[s].k);
            int copies = (int)ceil(4.0 * dev.l2_bytes / one);
            if (copies < 2) copies = 2;
            if (copies > 64) copies = 64;
            dweight w[64];
            memset(w, 0, sizeof w);
            for (int c = 0; c < copies && !rc; c++)
                rc = dw_make(&w[c], (qfmt)f, 1, shapes[s].n, shapes[s].k, QLAYOUT_ROWS, 1000 + 17 * c + 100 * f, &e);
            if (!rc) rc = cu_sync(&e);
            gemv_ctx gc = {w, copies, x, y, &ws, 1};
            double us = 0, mn = 0;
            if (!rc) rc = bench_time_calls(call_gemv, &gc, copies, 2, o.reps, &us, &mn, &e);
            if (!rc) add_result(res, &nres, qfmt_name((qfmt)f), shapes[s].name, shapes[s].shape, w[0].bytes, us, mn, copy_gbs);
            /* batches of T tokens: the same bytes, decoded once for all tokens */
            static const int Ts[] = {4, 16, 64};
            static const char *const bname[] = {"gemv T=4", "gemv T=16", "gemv T=64"};
            for (int b = 0; b < 3 && !rc; b++) {
                gc.T = Ts[b];
                rc = bench_time_calls(call_gemv, &gc, copies, 2, o.reps, &us, &mn, &e);
                if (!rc) add_result(res, &nres, qfmt_name((qfmt)f), bname[b], shapes[s].shape, w[0].bytes, us, mn, copy_gbs);
            }
            for (int c = 0; c < copies; c++) dw_free(&w[c]);
        }
    }
    /* experts: one MoE layer of 64 experts, 64 different top-8 sets used in turn */
    enum { E = 64, TOPK = 8, NSETS = 64 };
    int32_t *ids_d = cu_malloc(sizeof(int32_t) * NSETS * TOPK, &e);
    float *rw_d = cu_malloc(sizeof(float) * TOPK, &e);
    broute rb[RSETS];
    memset(rb, 0, sizeof rb);
    uint16_t *hb = cu_malloc((size_t)64 * TOPK * 3584 * 2, &e);
    float *rw_b = cu_malloc(sizeof(float) * 64 * TOPK, &e);
    if (!rc && (!ids_d || !rw_d || !hb || !rw_b || cu_fill_bf16(hb, (size_t)64 * TOPK * 3584, -1.f, 1.f, 9, NULL, &e) ||
                cu_fill_f32(rw_b, 64 * TOPK, 0.05f, 0.25f, 10, NULL, &e)))
        rc = -1;
    if (!rc) {
        rng_t rg;
        rng_seed(&rg, 42);
        int32_t ids[NSETS * TOPK];
        float rw[TOPK];
        for (int s = 0; s < NSETS; s++)
            for (int j = 0; j < TOPK; j++) {
                int again;
                do {
                    ids[s * TOPK + j] = (int32_t)(rng_next(&rg) % E);
                    again = 0;
                    for (int i = 0; i < j; i++) again |= ids[s * TOPK + i] == ids[s * TOPK + j];
                } while (again);
            }
        for (int j = 0; j < TOPK; j++) rw[j] = 0.125f;
        rc = cu_h2d(ids_d, ids, sizeof ids, &e) || cu_h2d(rw_d, rw, sizeof rw, &e);
    }
    for (int f = 0; f < QF_COUNT && !rc && o.moe; f++) {
        if (!(o.fmask >> f & 1)) continue;
        dweight gu, dn;
        rc = dw_make(&gu, (qfmt)f, E, 2 * 3584, 8192, QLAYOUT_GATE_UP, 500 + f, &e);
        if (!rc) rc = dw_make(&dn, (qfmt)f, E, 8192, 3584, QLAYOUT_ROWS, 600 + f, &e);
        if (!rc) rc = cu_sync(&e);
        double us = 0, mn = 0;
        moe_ctx mc = {&gu, ids_d, rw_d, NSETS, TOPK, 0, x, h, ho, &ws};
        if (!rc) rc = bench_time_calls(call_moe, &mc, NSETS, 2, o.reps, &us, &mn, &e);
        if (!rc)
            add_result(res, &nres, qfmt_name((qfmt)f), "moe gate_up+swiglu", "8x7168x8192", gu.bytes * TOPK / E, us, mn,
                       copy_gbs);
        mc.w = &dn, mc.down = 1, mc.out = y;
        if (!rc) rc = bench_time_calls(call_moe, &mc, NSETS, 2, o.reps, &us, &mn, &e);
        if (!rc) add_result(res, &nres, qfmt_name((qfmt)f), "moe down+sum", "8x8192x3584", dn.bytes * TOPK / E, us, mn, copy_gbs);
        /* T tokens routed top-8 (qmoe_*_batch): GB/s counts the bytes of the distinct selected experts */
        static const int BT[] = {4, 16, 64};
        static const char *const gname[] = {"moe T=4 gate_up", "moe T=16 gate_up", "moe T=64 gate_up"};
        static const char *const dname[] = {"moe T=4 down", "moe T=16 down", "moe T=64 down"};
        for (int b = 0; b < 3 && !rc; b++) {
            double distinct = 0;
            rc = routes_make(rb, BT[b], TOPK, E, 77 + b, &distinct, &e);
            bmoe_ctx bc = {&gu, rb, RSETS, 0, x, hb, y, rw_b, &ws};
            if (!rc) rc = bench_time_calls(call_bmoe, &bc, RSETS, 2, o.reps, &us, &mn, &e);
            if (!rc)
                add_result(res, &nres, qfmt_name((qfmt)f), gname[b], "E64 7168x8192", gu.bytes * distinct / E, us, mn, copy_gbs);
            bc.w = &dn, bc.down = 1;
            if (!rc) rc = bench_time_calls(call_bmoe, &bc, RSETS, 2, o.reps, &us, &mn, &e);
            if (!rc) add_result(res, &nres, qfmt_name((qfmt)f), dname[b], "E64 8192x3584", dn.bytes * distinct / E, us, mn, copy_gbs);
        }
        dw_free(&gu);
        dw_free(&dn);
    }
    /* the load-time tiling of the ccq formats, at the largest shape */
    double rp_us[3] = {0, 0, 0};
    for (int i = 0; i < 3 && !rc; i++) {
        qfmt f = i == 0 ? QF_CCQ275 : i == 1 ? QF_CCQ25 : QF_CCQ206;
        if (!(o.fmask >> f & 1)) continue;
        int64_t rows = 8192, k = 28672;
        size_t sb = f == QF_CCQ206 ? (size_t)rows * k / 4 : (size_t)rows * (k / 64) * (f == QF_CCQ275 ? 22 : 20);
        size_t lb = (size_t)rows * ((k + 127) / 128);
        void *src = cu_malloc(sb, &e), *loc = cu_malloc(lb, &e), *dst = cu_malloc(qmat_tile_bytes(f, 1, rows, k, QLAYOUT_ROWS), &e);
        if (!src || !loc || !dst || cu_fill_bytes(src, sb, 0, 255, 3, NULL, &e) || cu_fill_local4(loc, rows, k, 4, NULL, &e)) rc = -1;
        double v[5];
        for (int t = 0; t < 5 && !rc; t++) {
            qmat_dev m = {0};
            m.fmt = f, m.n = rows, m.k = k, m.n_experts = 1, m.q = src, m.local = loc;
            cu_event a = cu_event_new(&e), b = cu_event_new(&e);
            float ms = 0;
            rc = !a || !b || cu_event_record(a, NULL, &e) || qmat_tile(&m, QLAYOUT_ROWS, dst, NULL, &e) ||
                 cu_event_record(b, NULL, &e) || cu_event_ms(a, b, &ms, &e);
            v[t] = ms * 1000.0;
            cu_event_free(a), cu_event_free(b);
        }
        if (!rc) rp_us[i] = bench_median(v, 5);
        cu_free(src), cu_free(loc), cu_free(dst);
    }
    qgemv_ws_free(&ws);
    cu_free(x), cu_free(h), cu_free(y), cu_free(ho), cu_free(ids_d), cu_free(rw_d), cu_free(hb), cu_free(rw_b);
    routes_free(rb);
    if (rc) return cli_fail("bench kernels: %s", e.msg);

    if (g->json) {
        printf("{\"device\": \"%s\", \"sm_count\": %d, \"l2_bytes\": %zu, \"copy_gbs\": %.1f, \"results\": [", dev.name,
               dev.sm_count, dev.l2_bytes, copy_gbs);
        for (int i = 0; i < nres; i++)
            printf("%s\n  {\"format\": \"%s\", \"product\": \"%s\", \"shape\": \"%s\", \"bytes\": %.0f, \"us\": %.3f, "
                   "\"us_min\": %.3f, \"gbs\": %.1f, \"ratio_to_copy\": %.4f}",
                   i ? "," : "", res[i].fmt, res[i].product, res[i].shape, res[i].bytes, res[i].us, res[i].us_min,
                   res[i].gbs, res[i].ratio);
        printf("\n], \"tile_us\": {\"ccq2.75_8192x28672\": %.1f, \"ccq2.5_8192x28672\": %.1f, \"ccq2.06_8192x28672\": %.1f}}\n",
               rp_us[0], rp_us[1], rp_us[2]);
        return EXIT_OK;
    }
    printf("device: %s (%d SMs, L2 %.0f MB)\n", dev.name, dev.sm_count, dev.l2_bytes / 1e6);
    printf("copy bandwidth (device to device, read + write): %.0f GB/s\n", copy_gbs);
    printf("%-8s %-20s %-12s %9s %9s %9s %7s %7s\n", "format", "product", "shape", "MB read", "us", "us min", "GB/s",
           "%copy");
    for (int i = 0; i < nres; i++)
        printf("%-8s %-20s %-12s %9.2f %9.2f %9.2f %7.0f %6.1f%%\n", res[i].fmt, res[i].product, res[i].shape,
               res[i].bytes / 1e6, res[i].us, res[i].us_min, res[i].gbs, 100 * res[i].ratio);
    if (rp_us[0] > 0 || rp_us[1] > 0 || rp_us[2] > 0)
        printf("load-time tiling (qmat_tile), 8192x28672: ccq2.75 %.1f us, ccq2.5 %.1f us, ccq2.06 %.1f us\n", rp_us[0],
               rp_us[1], rp_us[2]);
    return EXIT_OK;
}

#else

int bench_kernels_cuda(int argc, char **argv, cli_global *g) {
    return cli_help_only(&CMD_BK, argc, argv, g, "this binary was built without CUDA");
}

#endif
