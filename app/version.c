/* app/version.c: `ernie --version`: what this binary is and what it can use here. */
#include <stdio.h>

#include "commands.h"
#include "kernels/gpu_probe.h"

extern const char *ernie_git_rev;

void print_version(void) {
    printf("ernie %s\n", ERNIE_VERSION);
    printf("git revision: %s\n", ernie_git_rev);
    printf("build: %s, %s, C compiler %s\n", ERNIE_BUILD_TYPE, __DATE__, __VERSION__);
    const char *archs = gpu_compiled_archs();
    if (archs[0]) printf("CUDA: %s (runtime %s)\n", archs, gpu_runtime_version());
    else printf("CUDA: not compiled in\n");
    gpu_info gi[8];
    err_t err = {0};
    int n = gpu_probe(gi, 8, &err);
    if (n == 0) printf("GPU: none (%s); the CPU backend is used\n", err.msg);
    for (int i = 0; i < n && i < 8; i++)
        printf("GPU %d: %s (sm_%d%d, %d SMs, %.1f GiB, %.1f GiB free)\n", i, gi[i].name, gi[i].cc_major,
               gi[i].cc_minor, gi[i].sm_count, (double)gi[i].mem_total / (1 << 30), (double)gi[i].mem_free / (1 << 30));
}
