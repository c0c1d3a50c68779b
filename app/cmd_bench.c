/* app/cmd_bench.c: `ernie bench`. Measured speed and quality against the hardware limit. */
#include "commands.h"

const cli_command CMD_BENCH = {
    .name = "bench",
    .usage = "quant|kernels [options]",
    .summary = "Measured speed and quality against the hardware limit",
};

int cmd_bench(int argc, char **argv, cli_global *g) {
    const char *pos[64];
    int np = 0;
    int r = cli_parse(&CMD_BENCH, argc, argv, g, NULL, NULL, pos, 64, &np);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_BENCH);
        return EXIT_OK;
    }
    return cmd_not_built(&CMD_BENCH, "the codec and kernel benchmarks are in progress");
}
