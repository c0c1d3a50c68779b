/* kernels/cpu/cpu_backend.c: the CPU backend's table, memory and KV cache. "Device" memory is plain
 * host memory, so upload and download are copies. */
#include "cpu_backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void cpu_destroy(be *b) {
    if (!b) return;
    cpu_be *c = b->impl;
    if (c) {
        pool_destroy(c->pool);
        free(c->att_scratch);
        free(c->mm_scratch);
        free(c);
    }
    free(b);
}

static void *cpu_alloc(be *b, size_t n, err_t *err) {
    (void)b;
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) {
        err_set(err, ERR_NOMEM, "out of memory allocating %zu bytes", n);
        return NULL;
    }
    return p;
}

static void cpu_free(be *b, void *p) {
    (void)b;
    free(p);
}

static int cpu_copy(be *b, void *dst, const void *src, size_t n, err_t *err) {
    (void)b;
    (void)err;
    memcpy(dst, src, n);
    return 0;
}

void cpu_fail(be *b, err_code code, const char *fmt, ...) {
    cpu_be *c = b->impl;
    if (c->err.code != ERR_OK) return;
    c->err.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err.msg, sizeof c->err.msg, fmt, ap);
    va_end(ap);
}

static int cpu_sync(be *b, err_t *err) {
    cpu_be *c = b->impl;
    if (c->err.code == ERR_OK) return 0;
    if (err) *err = c->err;
    err_clear(&c->err);
    return -1;
}

static be_kv *cpu_kv_create(be *b, int nlayers, int ctx, int kvdim, err_t *err) {
    cpu_be *c = b->impl;
    be_kv *kv = calloc(1, sizeof *kv);
    size_t n = (size_t)nlayers * (size_t)ctx * (size_t)kvdim;
    if (!kv || !(kv->k = calloc(n, sizeof(float))) || !(kv->v = calloc(n, sizeof(float)))) {
        if (kv) free(kv->k);
        free(kv);
        err_set(err, ERR_NOMEM, "out of memory for the KV cache (%d layers x %d positions x %d)", nlayers, ctx, kvdim);
        return NULL;
    }
    kv->nlayers = nlayers;
    kv->ctx = ctx;
    kv->kvdim = kvdim;
    if (ctx > c->att_ctx) {
        float *s = realloc(c->att_scratch, (size_t)pool_size(c->pool) * (size_t)ctx * sizeof(float));
        if (!s) {
            free(kv->k);
            free(kv->v);
            free(kv);
            err_set(err, ERR_NOMEM, "out of memory for attention scratch");
            return NULL;
        }
        c->att_scratch = s;
        c->att_ctx = ctx;
    }
    return kv;
}

static void cpu_kv_free(be *b, be_kv *kv) {
    (void)b;
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    free(kv);
}

static void cpu_mem_info(be *b, uint64_t *used, uint64_t *free_bytes) {
    (void)b;
    if (used) *used = 0;
    if (free_bytes) *free_bytes = 0;
}

static const be_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .sync = cpu_sync,
    .weight_load = cpu_weight_load,
    .weight_free = cpu_weight_free,
    .kv_create = cpu_kv_create,
    .kv_free = cpu_kv_free,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .rope = cpu_rope,
    .kv_store = cpu_kv_store,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .moe_route = cpu_moe_route,
    .moe_experts = cpu_moe_experts,
    .mem_info = cpu_mem_info,
};

be *be_cpu_create(int nthreads, err_t *err) {
    be *b = calloc(1, sizeof *b);
    cpu_be *c = calloc(1, sizeof *c);
    if (!b || !c || !(c->pool = pool_create(nthreads))) {
        free(b);
        free(c);
        err_set(err, ERR_NOMEM, "cannot start the CPU backend's threads");
        return NULL;
    }
    b->ops = &cpu_ops;
    b->impl = c;
    b->threads = pool_size(c->pool);
    return b;
}
