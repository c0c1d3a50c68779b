/* app/bench.h: the parts of `ernie bench`. Each parses its own options (argv[0] is the first word after
 * "quant", "cpu" or "kernels") and returns an exit code; all print tables on stdout (JSON with --json)
 * and progress on stderr. */
#ifndef ERNIE_APP_BENCH_H
#define ERNIE_APP_BENCH_H

#include "cli.h"

extern const cli_command CMD_BENCH_QUANT, CMD_BENCH_CPU, CMD_BENCH_KERNELS;

/* `ernie bench quant`: codec quality (rel MSE, SNR, bpw against the rate-distortion bound) and speed. */
int bench_quant(int argc, char **argv, cli_global *g);

/* `ernie bench cpu`: the CPU decode step's products against the memory read rate (app/bench_cpu.c). */
int bench_cpu(int argc, char **argv, cli_global *g);

/* `ernie bench kernels`: the CUDA kernels against the GPU's limits. */
int bench_kernels(int argc, char **argv, cli_global *g);

/* app/bench_gpu.c: the measurements (a clear failure without CUDA). */
int bench_kernels_cuda(int argc, char **argv, cli_global *g);

#endif
