/* app/bench_kernels.c: `ernie bench kernels`: the CUDA kernels' speed (app/bench_gpu.c), or a clear
 * failure in a binary built without CUDA. */
#include "bench.h"

const cli_command CMD_BENCH_KERNELS = {
    .name = "bench kernels",
    .usage = "[--formats LIST] [--reps N] [--json]",
    .summary = "CUDA kernel speed at the ERNIE-4.5-300B shapes against the GPU's measured copy bandwidth",
};

int bench_kernels(int argc, char **argv, cli_global *g) { return bench_kernels_cuda(argc, argv, g); }
