/* tests/gpu/test_bench.c: runs the CUDA kernel benchmark (app/bench_gpu.c) from the GPU test runner
 * when ERNIE_GPU_BENCH is set (its value: the benchmark's arguments, space-separated; "1" for none;
 * ERNIE_GPU_BENCH_JSON=1 adds --json), until `ernie bench kernels` calls bench_kernels_cuda itself.
 * Without the variable the test does nothing and passes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"
#include "tests/harness.h"

int bench_kernels_cuda(int argc, char **argv, cli_global *g);

TEST(bench_kernels_when_asked) {
    const char *a = getenv("ERNIE_GPU_BENCH");
    if (!a) return;
    char buf[512];
    char *argv[32];
    int argc = 0;
    snprintf(buf, sizeof buf, "%s", strcmp(a, "1") ? a : "");
    for (char *s = strtok(buf, " "); s && argc < 31; s = strtok(NULL, " ")) argv[argc++] = s;
    argv[argc] = NULL;
    cli_global g;
    cli_global_init(&g);
    g.color = 0;
    if (getenv("ERNIE_GPU_BENCH_JSON")) g.json = 1;
    CHECK_INT(bench_kernels_cuda(argc, argv, &g), 0);
}
