/* tests/gpu/gpu_util.c */
#include "gpu_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/bf16.h"
#include "kernels/cuda/cudev.h"
#include "tests/harness.h"

uint64_t gt_fresh_seed(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
}

ccq_base gt_base_of(qfmt f) {
    switch (f) {
    case QF_BF16: return CCQ_BF16;
    case QF_WINT8: return CCQ_WINT8;
    case QF_WINT4: return CCQ_WINT4;
    case QF_CCQ275: return CCQ_CCQ275;
    case QF_CCQ25: return CCQ_CCQ25;
    default: return CCQ_CCQ206;
    }
}

float gt_unif(rng_t *r, float lo, float hi) { return lo + (hi - lo) * (float)rng_uniform(r); }

void gt_random_x(rng_t *r, uint16_t *xb, float *xf, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = (float)rng_normal(r);
        if (i % 97 == 3) v *= 30.0f; /* a few large activations */
        xb[i] = f32_to_bf16(v);
        xf[i] = bf16_to_f32(xb[i]);
    }
}

void *gt_poisoned(size_t bytes, err_t *e) {
    void *p = cu_malloc(bytes, e);
    if (p && cu_memset(p, 0xFF, bytes, e)) {
        cu_free(p);
        return NULL;
    }
    return p;
}

int gt_bench_from_env(const char *var, const char *json_var, int (*bench)(int, char **, cli_global *)) {
    const char *a = getenv(var);
    if (!a) return 0;
    char buf[512];
    char *argv[32];
    int argc = 0;
    snprintf(buf, sizeof buf, "%s", strcmp(a, "1") ? a : "");
    for (char *s = strtok(buf, " "); s && argc < 31; s = strtok(NULL, " ")) argv[argc++] = s;
    argv[argc] = NULL;
    cli_global g;
    cli_global_init(&g);
    g.color = 0;
    if (json_var && getenv(json_var)) g.json = 1;
    return bench(argc, argv, &g);
}

int gt_random_parts(qfmt f, int64_t rows, int64_t k, rng_t *r, ccq_part *parts, int *np, void **host, float **cs,
                    float **zp) {
    err_t e = {0};
    ccq_format cf = ccq_format_of(gt_base_of(f));
    *cs = *zp = NULL;
    if (ccq_layout(&cf, rows, k, parts, np, &e)) return FAIL("ccq_layout: %s", e.msg);
    int64_t ng = k / 64;
    for (int i = 0; i < *np; i++) {
        ccq_part *p = &parts[i];
        uint8_t *d = malloc(p->nbytes ? p->nbytes : 1);
        if (!d) return FAIL("out of host memory");
        host[i] = d;
        p->data = d;
        const char *nm = p->name;
        if (!strcmp(nm, "weight")) {
            uint16_t *v = (uint16_t *)d;
            for (size_t j = 0; j < p->nbytes / 2; j++) /* uniform in (-0.1, 0.1): fast for 10^9 weights */
                v[j] = f32_to_bf16(((float)(rng_next(r) >> 40) * (1.0f / 16777216.0f) - 0.5f) * 0.2f);
        } else if (!strcmp(nm, "qweight")) {
            for (size_t j = 0; j < p->nbytes; j += 8) {
                uint64_t x = rng_next(r);
                memcpy(d + j, &x, p->nbytes - j < 8 ? p->nbytes - j : 8);
            }
            if (f == QF_CCQ275) /* byte 21 of a group: v63 << 4 | local4, local in 1..15 */
                for (int64_t g = 0; g < rows * ng; g++) {
                    uint8_t *b = d + g * 22 + 21;
                    *b = (uint8_t)((*b & 0xF0) | (1 + rng_next(r) % 15));
                }
            if (f == QF_CCQ25) /* word 9: v63 << 13 | local13, local in 1..8191 */
                for (int64_t g = 0; g < rows * ng; g++) {
                    uint16_t wd;
                    memcpy(&wd, d + g * 20 + 18, 2);
                    wd = (uint16_t)((wd & 0xE000) | (1 + rng_next(r) % 8191));
                    memcpy(d + g * 20 + 18, &wd, 2);
                }
        } else if (!strcmp(nm, "scale")) {
            float *v = (float *)d;
            for (int64_t j = 0; j < rows; j++) v[j] = gt_unif(r, 0.5e-3f, 2e-3f);
        } else if (!strcmp(nm, "super_scale")) {
            uint16_t *v = (uint16_t *)d;
            for (int64_t j = 0; j < rows; j++) v[j] = f32_to_bf16(gt_unif(r, 0.5e-3f, 2e-3f));
        } else if (!strcmp(nm, "local_scale")) {
            int64_t rb = p->shape[1];
            for (int64_t j = 0; j < rows; j++)
                for (int64_t b = 0; b < rb; b++) {
                    int hi = 1 + (int)(rng_next(r) % 15), lo = 1 + (int)(rng_next(r) % 15);
                    if (2 * b + 1 >= ng) lo = 0;
                    d[j * rb + b] = (uint8_t)(hi << 4 | lo);
                }
        } else if (!strcmp(nm, "code_scale")) {
            *cs = (float *)d;
        } else if (!strcmp(nm, "code_zp")) {
            *zp = (float *)d;
        } else {
            return FAIL("unexpected part %s of %s", nm, qfmt_name(f));
        }
    }
    if (f == QF_CCQ206 && (!*cs || !*zp)) return FAIL("ccq2.06 without code_scale/code_zp parts");
    return 1;
}
