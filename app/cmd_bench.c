/* app/cmd_bench.c: `ernie bench`, which hands over to `bench quant` (app/bench_quant.c), `bench cpu`
 * (app/bench_cpu.c) or `bench kernels` (app/bench_kernels.c). Does no measuring itself. */
#include <string.h>

#include "bench.h"
#include "commands.h"

const cli_command CMD_BENCH = {
    .name = "bench",
    .usage = "quant|cpu|kernels [options]",
    .summary = "Measured speed and quality against the hardware limit",
    .details = "  quant     codec quality (relative MSE, SNR, bits per weight against the rate-distortion\n"
               "            bound) and encode/decode speed; 'ernie bench quant --help' lists its options\n"
               "  cpu       the CPU decode step's one-token products against the memory read rate\n"
               "  kernels   CUDA GEMV speed (batch 1 to 64) against the measured copy bandwidth;\n"
               "            'kernels gemm': the prefill GEMM against the bf16 tensor-core rate",
};

int cmd_bench(int argc, char **argv, cli_global *g) {
    /* The subcommand is the first word that is not an option; global options may come before it. */
    int i = 0;
    while (i < argc && argv[i][0] == '-' && strcmp(argv[i], "--")) {
        if (!strcmp(argv[i], "--device") || !strcmp(argv[i], "--threads") || !strcmp(argv[i], "-t")) i++;
        i++;
    }
    if (i < argc && !strcmp(argv[i], "quant")) {
        int r = cli_parse(&CMD_BENCH, i, argv, g, NULL, NULL, NULL, 0, NULL);
        return r ? r : bench_quant(argc - i - 1, argv + i + 1, g);
    }
    if (i < argc && !strcmp(argv[i], "cpu")) {
        int r = cli_parse(&CMD_BENCH, i, argv, g, NULL, NULL, NULL, 0, NULL);
        return r ? r : bench_cpu(argc - i - 1, argv + i + 1, g);
    }
    if (i < argc && !strcmp(argv[i], "kernels")) {
        int r = cli_parse(&CMD_BENCH, i, argv, g, NULL, NULL, NULL, 0, NULL);
        return r ? r : bench_kernels(argc - i - 1, argv + i + 1, g);
    }
    const char *pos[1];
    int np = 0;
    int r = cli_parse(&CMD_BENCH, argc, argv, g, NULL, NULL, pos, 1, &np);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_BENCH);
        return EXIT_OK;
    }
    if (np) return cli_usage_error(&CMD_BENCH, "unknown benchmark '%s' (quant, cpu or kernels)", pos[0]);
    return cli_usage_error(&CMD_BENCH, "which benchmark: quant, cpu or kernels?");
}
