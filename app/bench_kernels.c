/* app/bench_kernels.c: `ernie bench kernels`: the CUDA kernels' speed. The GEMVs of batches 1 to 64
 * (app/bench_gpu.c) by default, the tensor-core GEMM of long prompts (app/bench_gemm.c) with the word
 * `gemm` first; both fail clearly in a binary built without CUDA. */
#include <string.h>

#include "bench.h"
#include "bench_gemm.h"

const cli_command CMD_BENCH_KERNELS = {
    .name = "bench kernels",
    .usage = "[gemm] [--formats LIST] [--reps N] [--json]",
    .summary = "CUDA kernel speed at the ERNIE-4.5-300B shapes against the GPU's measured limits",
};

int bench_kernels(int argc, char **argv, cli_global *g) {
    if (argc > 0 && !strcmp(argv[0], "gemm")) return bench_gemm_cuda(argc - 1, argv + 1, g);
    return bench_kernels_cuda(argc, argv, g);
}
