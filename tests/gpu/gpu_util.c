/* tests/gpu/gpu_util.c */
#include "gpu_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/bf16.h"
#include "kernels/cuda/cudev.h"

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
