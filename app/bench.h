/* app/bench.h: the parts of `ernie bench`. Each parses its own options (argv[0] is the first word after
 * "quant", "cpu" or "kernels") and returns an exit code; all print tables on stdout (JSON with --json)
 * and progress on stderr. */
#ifndef ERNIE_APP_BENCH_H
#define ERNIE_APP_BENCH_H

#include <stdint.h>

#include "cli.h"

extern const cli_command CMD_BENCH_QUANT, CMD_BENCH_CPU, CMD_BENCH_KERNELS;

/* `ernie bench quant`: codec quality (rel MSE, SNR, bpw against the rate-distortion bound) and speed. */
int bench_quant(int argc, char **argv, cli_global *g);

/* app/bench_formats.c. Splits the comma-separated csv into list (at most max names, pointing into *buf,
 * which the caller frees): 0, or the exit code of a usage error naming flag for an empty list (then
 * *buf is NULL). */
int bench_split_formats(const cli_command *cmd, const char *flag, const char *csv, const char **list, int max, int *n,
                        char **buf);
/* 0 when every name is a codec format that can hold a rows x cols weight, else the exit code of a usage
 * error naming flag and the format. */
int bench_check_formats(const cli_command *cmd, const char *flag, const char *const *list, int n, int64_t rows,
                        int64_t cols);

/* `ernie bench cpu`: the CPU decode step's products against the memory read rate (app/bench_cpu.c). */
int bench_cpu(int argc, char **argv, cli_global *g);

/* `ernie bench kernels`: the CUDA kernels against the GPU's limits. */
int bench_kernels(int argc, char **argv, cli_global *g);

/* app/bench_gpu.c: the measurements (a clear failure without CUDA). */
int bench_kernels_cuda(int argc, char **argv, cli_global *g);

#endif
