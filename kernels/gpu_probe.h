/* kernels/gpu_probe.h: is there a usable GPU, and what is it. For `--version`, `--device auto` and
 * `ernie info`. Safe to call on a machine with no driver: it reports none and says why. */
#ifndef ERNIE_KERNELS_GPU_PROBE_H
#define ERNIE_KERNELS_GPU_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct {
    char name[256];
    int cc_major, cc_minor; /* compute capability */
    int sm_count;
    uint64_t mem_total, mem_free; /* bytes */
    uint64_t l2_bytes;
} gpu_info;

/* Fills up to max entries; returns the number of GPUs (>= 0). With none, returns 0 and err says why
 * ("no CUDA driver found", "built without CUDA"). Never fails otherwise. */
int gpu_probe(gpu_info *out, int max, err_t *err);

/* CUDA architectures compiled into this binary ("" when built without CUDA), and the CUDA runtime
 * version as "13.0" ("" likewise). */
const char *gpu_compiled_archs(void);
const char *gpu_runtime_version(void);

#endif
