/* kernels/cuda/probe.c: host-side GPU discovery through the static CUDA runtime. The runtime opens
 * libcuda.so at the first call, so a machine without a driver gets an error code here, not a failure
 * to start the program. */
#include "kernels/gpu_probe.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <string.h>

int gpu_probe(gpu_info *out, int max, err_t *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (e == cudaErrorInsufficientDriver) err_set(err, ERR_NODEV, "no CUDA driver found (or one older than the runtime)");
        else if (e == cudaErrorNoDevice) err_set(err, ERR_NODEV, "no CUDA device found");
        else err_set(err, ERR_NODEV, "CUDA runtime: %s", cudaGetErrorString(e));
        return 0;
    }
    if (n == 0) {
        err_set(err, ERR_NODEV, "no CUDA device found");
        return 0;
    }
    for (int i = 0; i < n && i < max; i++) {
        struct cudaDeviceProp p;
        gpu_info *g = &out[i];
        memset(g, 0, sizeof *g);
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
        snprintf(g->name, sizeof g->name, "%s", p.name);
        g->cc_major = p.major;
        g->cc_minor = p.minor;
        g->sm_count = p.multiProcessorCount;
        g->mem_total = p.totalGlobalMem;
        g->l2_bytes = (uint64_t)p.l2CacheSize;
        size_t fr = 0, tot = 0;
        if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&fr, &tot) == cudaSuccess) g->mem_free = fr;
    }
    return n;
}

const char *gpu_compiled_archs(void) {
#ifdef ERNIE_CUDA_ARCHS
    return ERNIE_CUDA_ARCHS;
#else
    return "";
#endif
}

const char *gpu_runtime_version(void) {
    static char buf[32];
    int v = 0;
    if (cudaRuntimeGetVersion(&v) != cudaSuccess) return "";
    snprintf(buf, sizeof buf, "%d.%d", v / 1000, v % 1000 / 10);
    return buf;
}
