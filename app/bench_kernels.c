/* app/bench_kernels.c: `ernie bench kernels`, a placeholder until the CUDA backend lands (its helper
 * replaces this file). Says so and fails; never pretends to measure. */
#include "bench.h"

const cli_command CMD_BENCH_KERNELS = {
    .name = "bench kernels",
    .usage = "[options]",
    .summary = "CUDA kernel speed against the GPU's copy bandwidth and tensor-core rate",
};

int bench_kernels(int argc, char **argv, cli_global *g) {
    int r = cli_parse(&CMD_BENCH_KERNELS, argc, argv, g, NULL, NULL, NULL, 0, NULL);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_BENCH_KERNELS);
        return EXIT_OK;
    }
    return cli_fail("bench kernels: needs the CUDA backend, not built yet");
}
