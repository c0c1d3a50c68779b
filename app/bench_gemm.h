/* app/bench_gemm.h: the prefill GEMM benchmark (app/bench_gemm.c), for `ernie bench kernels`. */
#ifndef ERNIE_APP_BENCH_GEMM_H
#define ERNIE_APP_BENCH_GEMM_H

#include "cli.h"

extern const cli_command CMD_BENCH_GEMM;

/* Times Y = X W^T (kernels/cuda/qgemm.h) for every format at the ERNIE-4.5-300B shapes and the grouped
 * expert products of one MoE layer, against the bf16 tensor-core rate measured in the same run. argv[0]
 * is the first option. Prints a table on stdout (JSON with --json), progress on stderr; returns an exit
 * code (a clear failure in a build without CUDA or on a machine without a GPU). */
int bench_gemm_cuda(int argc, char **argv, cli_global *g);

#endif
