/* tests/test_ccq_simd.c: a model file and the logits computed from it do not depend on the CPU. The CCQ
 * encoders, the CPU decode and the row dots (base/vdot.h) have 4-wide and 8-wide (AVX2) paths chosen at
 * run time; ERNIE_NO_AVX2=1 forces the 4-wide ones, so on an AVX2 machine both run here: the same import
 * with each must give the same bytes, and the same prompt the same logits, bit for bit. (On a machine without AVX2 both runs
 * take the 4-wide paths and the test only checks that they repeat.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char *const NO_AVX2[] = {"ERNIE_NO_AVX2=1", NULL};

/* Imports the golden MoE checkpoint with `recipe` twice (8-wide allowed, then 4-wide forced) and
 * compares the files; then the prompt logits of each file under the other width. */
static void same_bytes(const char *recipe) {
    char src[1024], a[512], b[512], la[512], lb[512];
    snprintf(src, sizeof src, "%s/golden/moe", th_fixtures());
    snprintf(a, sizeof a, "%s", th_tmp("wide.ernie"));
    snprintf(b, sizeof b, "%s", th_tmp("narrow.ernie"));
    snprintf(la, sizeof la, "%s", th_tmp("wide.logits"));
    snprintf(lb, sizeof lb, "%s", th_tmp("narrow.logits"));
    char *o, *e;
    char *ia[] = {"import", src, "-o", a, "--recipe", (char *)recipe, "--force", NULL};
    char *ib[] = {"import", src, "-o", b, "--recipe", (char *)recipe, "--force", NULL};
    if (!CHECK_INT(th_ernie_env(&o, &e, NULL, NULL, ia), 0)) FAIL("%s: %s", recipe, e);
    free(o), free(e);
    if (!CHECK_INT(th_ernie_env(&o, &e, NULL, NO_AVX2, ib), 0)) FAIL("%s: %s", recipe, e);
    free(o), free(e);
    size_t na = 0, nb = 0;
    char *fa = th_read_file(a, &na), *fb = th_read_file(b, &nb);
    if (!CHECK(fa && fb)) return;
    if (na != nb || memcmp(fa, fb, na)) FAIL("%s: the 4-wide and 8-wide encoders wrote different files", recipe);
    free(fa), free(fb);
    /* the 8-wide decode reads the 4-wide file and the other way round */
    char *ra[] = {"run", a, "-p", "the cat sat on", "-n", "1", "--temp", "0", "--dump-logits", la, NULL};
    char *rb[] = {"run", b, "-p", "the cat sat on", "-n", "1", "--temp", "0", "--dump-logits", lb, NULL};
    if (!CHECK_INT(th_ernie_env(&o, &e, NULL, NO_AVX2, ra), 0)) FAIL("%s: %s", recipe, e);
    free(o), free(e);
    if (!CHECK_INT(th_ernie_env(&o, &e, NULL, NULL, rb), 0)) FAIL("%s: %s", recipe, e);
    free(o), free(e);
    fa = th_read_file(la, &na), fb = th_read_file(lb, &nb);
    if (!CHECK(fa && fb && na > 0)) return;
    if (na != nb || memcmp(fa, fb, na)) FAIL("%s: the 4-wide and 8-wide decodes gave different logits", recipe);
    free(fa), free(fb);
}

TEST(ccq_files_and_logits_do_not_depend_on_the_cpu) {
    same_bytes("fit80"); /* ccq2.06 experts */
    same_bytes("q2.5");
    same_bytes("q2.75");
    same_bytes("wint8"); /* the row dots of base/vdot.h: int8, and bf16 embeddings and head */
    same_bytes("wint4");
}

/* The AVX registers' upper halves are clean after every 8-wide path returns: while they are dirty,
 * each SSE instruction of the thread waits on them (the 4-wide code, the CPU decode step: 5x slower,
 * measured). XGETBV(1) reports whether the AVX state is in use; CPUs without it skip the check. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>

#include "base/rng.h"
#include "base/vdot.h"
#include "ccq/ccq.h"

static int avx_dirty(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(1));
    return (lo >> 2) & 1;
}

static int xinuse_known(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(0xD, 1, &a, &b, &c, &d)) return 0;
    return (a >> 2) & 1 && __builtin_cpu_supports("avx2");
}

TEST(avx_state_is_clean_after_the_wide_paths) {
    if (!xinuse_known() || getenv("ERNIE_NO_AVX2")) return;
    if (!CHECK(!avx_dirty())) return; /* the harness itself left it clean */
    static const char *formats[] = {"ccq2.75", "ccq2.5", "ccq2.06", "wint8", "wint4", "bf16", "wint4g64"};
    enum { N = 4, K = 128 };
    float w[N * K], x[K], y[N];
    rng_t r;
    rng_seed(&r, 3);
    for (int i = 0; i < N * K; i++) w[i] = (float)rng_normal(&r);
    for (int i = 0; i < K; i++) x[i] = (float)rng_normal(&r);
    for (size_t i = 0; i < sizeof formats / sizeof *formats; i++) {
        ccq_format f;
        ccq_tensor t;
        err_t e = {0};
        if (!CHECK_INT(ccq_format_parse(formats[i], &f, &e), 0) || !CHECK_INT(ccq_encode(&f, w, N, K, NULL, &t, &e), 0))
            continue;
        if (avx_dirty()) FAIL("%s: encoding left the upper halves of the AVX registers dirty", formats[i]);
        ccq_dot(&t, 0, N, x, K, 1, y, N, NULL);
        ccq_dot(&t, 0, N, x, K, 3, y, 1, NULL);
        if (avx_dirty()) FAIL("%s: the product left the upper halves of the AVX registers dirty", formats[i]);
        ccq_free(&t);
    }
    (void)vd_bf16(w, x, K), (void)vd_f32(w, x, K), (void)vd_i8((const int8_t *)w, x, K), (void)vd_u4((const uint8_t *)w, x, K);
    CHECK(!avx_dirty());
}
#endif
