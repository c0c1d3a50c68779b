/* tests/test_ccq_bench.c: `ernie bench quant`, `ernie bench cpu` and `ernie bench kernels` through the
 * real binary: the table and the JSON report, exact bpw and bytes in the report, usage errors naming the
 * flag or format, --tensor on a safetensors file written here by hand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static int ernie(char **out, char **err, const char *const *args) {
    char *argv[24];
    int n = 0;
    argv[n++] = (char *)th_bin();
    for (; *args && n < 23; args++) argv[n++] = (char *)*args;
    argv[n] = NULL;
    return th_run(argv, NULL, NULL, out, err);
}

TEST(bench_quant_json_report) {
    char *o, *e;
    const char *a[] = {"bench", "quant", "--rows", "4", "--cols", "128", "--format", "ccq2.06,wint4+icq", "--json", NULL};
    CHECK_INT(ernie(&o, &e, a), 0);
    CHECK(o[0] == '[');
    CHECK_CONTAINS(o, "\"format\": \"ccq2.06\"");
    CHECK_CONTAINS(o, "\"format\": \"wint4+icq\"");
    /* 2 bits + 8 bits of local scales per 128 weights + 80 bits of row data per 128 weights */
    CHECK_CONTAINS(o, "\"bpw\": 2.687500");
    const char *keys[] = {"\"rel_mse\": ", "\"snr_db\": ", "\"encode_mw_s\": ", "\"decode_mw_s\": ", "\"rd_bound\": "};
    for (int i = 0; i < 5; i++) CHECK_CONTAINS(o, keys[i]);
    /* the relative error is a sane number */
    const char *p = strstr(o, "\"rel_mse\": ");
    double m = p ? atof(p + 11) : -1;
    CHECK(m > 0.01 && m < 0.3);
    free(o), free(e);
}

TEST(bench_quant_table_and_sources) {
    char *o, *e;
    const char *a[] = {"bench", "quant", "--source", "outliers", "--rows", "3", "--cols", "64", "--format", "wint8,bf16", NULL};
    CHECK_INT(ernie(&o, &e, a), 0);
    CHECK_CONTAINS(o, "source outliers, 3 x 64");
    CHECK_CONTAINS(o, "rel_mse");
    CHECK_CONTAINS(o, "\nwint8 ");
    CHECK_CONTAINS(o, "\nbf16 ");
    free(o), free(e);
    const char *srcs[] = {"gaussian", "laplace", "student4"};
    for (int i = 0; i < 3; i++) {
        const char *b[] = {"bench", "quant", "--source", srcs[i], "--rows", "2", "--cols", "64", "--format", "wint2g64", "--importance", "lognormal", NULL};
        CHECK_INT(ernie(&o, &e, b), 0);
        CHECK_CONTAINS(o, "wint2g64");
        free(o), free(e);
    }
}

TEST(bench_quant_usage_errors) {
    struct {
        const char *a[12];
        int code;
        const char *msg;
    } c[] = {
        {{"bench", "quant", "--format", "ccq9", NULL}, 2, "unknown format 'ccq9'"},
        {{"bench", "quant", "--cols", "100", "--format", "ccq2.06", NULL}, 2, "not a multiple of 64"},
        {{"bench", "quant", "--source", "cauchy", NULL}, 2, "unknown source 'cauchy'"},
        {{"bench", "quant", "--rows", "0", NULL}, 2, "--rows"},
        {{"bench", "quant", "--format", "", NULL}, 2, "--format"},
        {{"bench", "quant", "--tensor", "nofile", NULL}, 2, "FILE:NAME"},
        {{"bench", "quant", "--tensor", "/nonexistent/x.safetensors:w", NULL}, 1, "nonexistent"},
        {{"bench", "kernels", NULL}, 1, "ernie: bench kernels: "}, /* no GPU here (or no CUDA in the build) */
        {{"bench", "kernels", "--frob", NULL}, 2, "unknown option '--frob'"},
        {{"bench", NULL}, 2, "quant, cpu or kernels"},
        {{"bench", "cpu", "--formats", "ccq9", NULL}, 2, "unknown format 'ccq9'"},
        {{"bench", "cpu", "--cols", "100", "--formats", "ccq2.06", NULL}, 2, "not a multiple of 64"},
        {{"bench", "cpu", "--mib", "1", NULL}, 2, "--mib"},
        {{"bench", "cpu", "--mib", "1048576", NULL}, 2, "--mib 1048576 is more than half of this machine's"},
        {{"bench", "cpu", "--formats", "", NULL}, 2, "--formats"},
        {{"bench", "frob", NULL}, 2, "unknown benchmark 'frob'"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        char *o, *e;
        CHECK_INT(ernie(&o, &e, c[i].a), c[i].code);
        CHECK_CONTAINS(e, c[i].msg);
        free(o), free(e);
    }
    /* every benchmark's help, the GPU ones too in a build without CUDA (they used to fail there) */
    struct {
        const char *a[6], *usage, *flag;
    } h[] = {
        {{"bench", "quant", "--help", NULL}, "Usage: ernie bench quant", "--format LIST"},
        {{"bench", "cpu", "--help", NULL}, "Usage: ernie bench cpu", "--mib N"},
        {{"bench", "kernels", "--help", NULL}, "Usage: ernie bench kernels", "--no-moe"},
        {{"bench", "kernels", "gemm", "--help", NULL}, "Usage: ernie bench kernels gemm", "--ref-tflops"},
    };
    char *o, *e;
    for (size_t i = 0; i < sizeof h / sizeof *h; i++) {
        CHECK_INT(ernie(&o, &e, h[i].a), 0);
        CHECK_CONTAINS(o, h[i].usage);
        CHECK_CONTAINS(o, h[i].flag);
        free(o), free(e);
    }
}

TEST(bench_cpu_table_and_json) {
    char *o, *e;
    const char *a[] = {"bench", "cpu", "--rows", "64", "--cols", "128", "--mib", "16", "--reps", "3", "--formats",
                       "wint8,ccq2.75", "-t", "2", NULL};
    CHECK_INT(ernie(&o, &e, a), 0);
    CHECK_CONTAINS(o, "64 x 128, 2 threads; read rate ");
    CHECK_CONTAINS(o, "\nwint8 ");
    CHECK_CONTAINS(o, "\nccq2.75 ");
    free(o), free(e);
    const char *b[] = {"bench", "cpu", "--rows", "64", "--cols", "128", "--mib", "16", "--reps", "3", "--formats",
                       "wint8", "--json", NULL};
    CHECK_INT(ernie(&o, &e, b), 0);
    CHECK(o[0] == '{');
    CHECK_CONTAINS(o, "\"format\": \"wint8\"");
    CHECK_CONTAINS(o, "\"bytes\": 8448,"); /* 64 x 128 int8 and 64 f32 scales */
    const char *p = strstr(o, "\"read_gb_s\": "), *q = strstr(o, "\"gb_s\": ");
    CHECK(p && atof(p + 13) > 0);
    CHECK(q && atof(q + 9) > 0);
    free(o), free(e);
}

/* --tokens > 1: the batched products against the measured multiply-add peak */
TEST(bench_cpu_batched_products) {
    char *o, *e;
    const char *a[] = {"bench", "cpu", "--rows", "64", "--cols", "128", "--mib", "16", "--reps", "2", "--tokens", "5",
                       "--formats", "ccq2.06,bf16", NULL};
    CHECK_INT(ernie(&o, &e, a), 0);
    CHECK_CONTAINS(o, "5-token products, 64 x 128");
    CHECK_CONTAINS(o, "multiply-add peak ");
    CHECK_CONTAINS(o, "GMAC/s");
    CHECK_CONTAINS(o, "\nccq2.06 ");
    free(o), free(e);
    const char *b[] = {"bench", "cpu", "--rows", "64", "--cols", "128", "--mib", "16", "--reps", "2", "--tokens", "3",
                       "--formats", "wint4", "--json", NULL};
    CHECK_INT(ernie(&o, &e, b), 0);
    CHECK_CONTAINS(o, "\"tokens\": 3,");
    const char *p = strstr(o, "\"madd_peak_gmac_s\": "), *q = strstr(o, "\"gmac_s\": ");
    CHECK(p && atof(p + 21) > 0);
    CHECK(q && atof(q + 11) > 0);
    free(o), free(e);
    const char *c[] = {"bench", "cpu", "--tokens", "0", NULL};
    CHECK_INT(ernie(&o, &e, c), 2);
    CHECK_CONTAINS(e, "--tokens");
    free(o), free(e);
}

TEST(bench_quant_reads_a_safetensors_tensor) {
    /* A hand-written safetensors file: 8-byte little-endian header size, JSON header, data. */
    const char *hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3,64],\"data_offsets\":[0,1536]}}";
    size_t hl = strlen(hdr);
    size_t total = 8 + hl + 1536;
    unsigned char *buf = calloc(1, total);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    for (int i = 0; i < 384; i++) {
        float v = (float)((i * 7919) % 200 - 100) / 50.0f;
        memcpy(buf + 8 + hl + 4 * i, &v, 4);
    }
    const char *path = th_tmp("w.safetensors");
    CHECK_INT(th_write_file(path, buf, total), 0);
    free(buf);
    char spec[1024], *o, *e;
    snprintf(spec, sizeof spec, "%s:w", path);
    const char *a[] = {"bench", "quant", "--tensor", spec, "--format", "wint8,ccq2.75", NULL};
    CHECK_INT(ernie(&o, &e, a), 0);
    CHECK_CONTAINS(o, "6 x 64"); /* a 3-D stack is rows */
    CHECK_CONTAINS(o, "ccq2.75");
    free(o), free(e);
    snprintf(spec, sizeof spec, "%s:nope", path);
    const char *b[] = {"bench", "quant", "--tensor", spec, NULL};
    CHECK_INT(ernie(&o, &e, b), 1);
    CHECK_CONTAINS(e, "no tensor named 'nope'");
    free(o), free(e);
}
