/* tests/gpu/test_bench.c: runs the CUDA kernel benchmark (app/bench_gpu.c) from the GPU test runner
 * when ERNIE_GPU_BENCH is set (its value: the benchmark's arguments, space-separated; "1" for none;
 * ERNIE_GPU_BENCH_JSON=1 adds --json), with the test binary's build of the benchmark.
 * Without the variable the test does nothing and passes. */
#include "app/cli.h"
#include "tests/gpu/gpu_util.h"
#include "tests/harness.h"

int bench_kernels_cuda(int argc, char **argv, cli_global *g);

TEST(bench_kernels_when_asked) {
    CHECK_INT(gt_bench_from_env("ERNIE_GPU_BENCH", "ERNIE_GPU_BENCH_JSON", bench_kernels_cuda), 0);
}
