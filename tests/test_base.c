/* tests/test_base.c: the base module: bf16/f16 conversions against exhaustive and hand-computed
 * references, the thread pool, the generator, error values. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/bf16.h"
#include "base/err.h"
#include "base/pool.h"
#include "base/rng.h"
#include "harness.h"

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

TEST(bf16_rounds_to_nearest_even) {
    /* 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties go to even (1.0). */
    CHECK_INT(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    /* 1 + 3*2^-8 is halfway between 1.0078125 (odd mantissa) and 1.015625: goes up. */
    CHECK_INT(f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    CHECK_INT(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81); /* above halfway: up */
    CHECK_INT(f32_to_bf16(-2.0f), 0xc000);
    CHECK_INT(f32_to_bf16(INFINITY), 0x7f80);
    CHECK(isnan(bf16_to_f32(f32_to_bf16(NAN))));
    /* The largest float rounds to bf16 infinity, as in PyTorch. */
    CHECK_INT(f32_to_bf16(from_bits(0x7f7fffff)), 0x7f80);
}

TEST(bf16_round_trip_all_values) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = bf16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (f32_to_bf16(f) != h) {
            FAIL("bf16 0x%04x does not survive the round trip", h);
            return;
        }
    }
}

TEST(f16_round_trip_all_values) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (f32_to_f16(f) != h) {
            FAIL("f16 0x%04x -> %g -> 0x%04x", h, f, f32_to_f16(f));
            return;
        }
    }
    CHECK(f16_to_f32(0x3c00) == 1.0f);
    CHECK(f16_to_f32(0x0001) == 0x1p-24f); /* smallest subnormal */
    CHECK(f16_to_f32(0x7bff) == 65504.0f);
    CHECK_INT(f32_to_f16(65520.0f), 0x7c00); /* rounds up to infinity */
    CHECK_INT(f32_to_f16(1.0f + 0x1p-11f), 0x3c00); /* tie to even */
}

typedef struct {
    atomic_long sum;
    atomic_int calls;
    int max_tid;
} pool_ctx;

static void add_range(void *c, int64_t b, int64_t e, int tid) {
    pool_ctx *p = c;
    long s = 0;
    for (int64_t i = b; i < e; i++) s += (long)i;
    atomic_fetch_add(&p->sum, s);
    atomic_fetch_add(&p->calls, 1);
    if (tid > p->max_tid) p->max_tid = tid;
}

TEST(pool_for_covers_every_index_once) {
    int sizes[] = {1, 2, 3, 8};
    for (int s = 0; s < 4; s++) {
        pool *p = pool_create(sizes[s]);
        if (!CHECK(p)) return;
        CHECK_INT(pool_size(p), sizes[s]);
        for (int rep = 0; rep < 50; rep++) {
            pool_ctx c = {0};
            int64_t n = 1000 + rep * 37;
            pool_for(p, n, rep % 5, add_range, &c);
            CHECK_INT(atomic_load(&c.sum), n * (n - 1) / 2);
            CHECK(c.max_tid < sizes[s]);
        }
        pool_ctx c = {0};
        pool_for(p, 0, 1, add_range, &c);
        CHECK_INT(atomic_load(&c.calls), 0);
        pool_destroy(p);
    }
    /* Many short-lived pools: a worker must never see its arguments half-written (a crash seen once). */
    for (int rep = 0; rep < 200; rep++) {
        pool *q = pool_create(4);
        pool_ctx d = {0};
        pool_for(q, 100, 1, add_range, &d);
        CHECK_INT(atomic_load(&d.sum), 4950);
        pool_destroy(q);
    }
    pool_ctx c = {0};
    pool_for(NULL, 10, 3, add_range, &c); /* no pool: inline */
    CHECK_INT(atomic_load(&c.sum), 45);
}

/* Workers spin between jobs and then sleep: jobs right after one another (caught spinning), after a
 * pause long enough for every worker to fall asleep, and mixed, each covering every index once; a lost
 * wake-up would hang here (the harness's time limit) or miss chunks. */
TEST(pool_for_wakes_spinning_and_sleeping_workers) {
    pool *p = pool_create(4);
    if (!CHECK(p)) return;
    for (int rep = 0; rep < 400; rep++) {
        if (rep % 40 == 0) {
            struct timespec ts = {0, 3000000}; /* 3 ms: far past the spin */
            nanosleep(&ts, NULL);
        }
        pool_ctx c = {0};
        int64_t n = 64 + rep % 7;
        pool_for(p, n, 1, add_range, &c);
        if (atomic_load(&c.sum) != n * (n - 1) / 2 || atomic_load(&c.calls) != n) {
            FAIL("job %d: sum %ld over %d calls", rep, (long)atomic_load(&c.sum), atomic_load(&c.calls));
            break;
        }
    }
    pool_destroy(p);
}

TEST(rng_is_reproducible_and_sane) {
    rng_t a, b;
    rng_seed(&a, 42);
    rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) CHECK(rng_next(&a) == rng_next(&b));
    double s = 0, s2 = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double x = rng_normal(&a);
        s += x;
        s2 += x * x;
    }
    CHECK_NEAR(s / n, 0.0, 0.01);
    CHECK_NEAR(s2 / n, 1.0, 0.02);
}

TEST(err_set_and_wrap) {
    err_t e = {0};
    CHECK_INT(err_set(&e, ERR_FORMAT, "bad %s", "header"), -1);
    CHECK_INT(e.code, ERR_FORMAT);
    err_wrap(&e, "file %s: ", "a.safetensors");
    CHECK_STR(e.msg, "file a.safetensors: bad header");
    CHECK_STR(err_code_name(ERR_CORRUPT), "corrupt");
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    err_set(&e, ERR_IO, "%s", big);
    err_wrap(&e, "%s", big); /* truncates, never overflows */
    CHECK_INT((long long)strlen(e.msg), (long long)sizeof e.msg - 1);
    CHECK_INT(err_set(NULL, ERR_IO, "ignored"), -1);
}
