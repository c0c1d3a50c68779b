/* kernels/cuda/cudev.cu: the C wrappers of cudev.h over the CUDA runtime, and the random fill kernels
 * benchmarks use to make large synthetic weights without a host round trip. Every runtime call's status
 * is checked and turned into an err_t naming the call. */
#include "kernels/cuda/cudev.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

static int cu_fail(err_t *err, const char *what, cudaError_t e) {
    return err_set(err, ERR_NODEV, "%s: %s", what, cudaGetErrorString(e));
}
#define CU_CHECK(call, what)                                           \
    do {                                                               \
        cudaError_t e_ = (call);                                       \
        if (e_ != cudaSuccess) return cu_fail(err, what, e_);          \
    } while (0)

extern "C" int cu_device_info(cu_devinfo *d, err_t *err) {
    int dev = 0;
    CU_CHECK(cudaGetDevice(&dev), "cudaGetDevice");
    cudaDeviceProp p;
    CU_CHECK(cudaGetDeviceProperties(&p, dev), "cudaGetDeviceProperties");
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", p.name);
    d->sm_count = p.multiProcessorCount;
    d->cc_major = p.major;
    d->cc_minor = p.minor;
    d->l2_bytes = (size_t)p.l2CacheSize;
    d->mem_total = p.totalGlobalMem;
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrClockRate, dev) == cudaSuccess) d->clock_khz = v;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMemoryClockRate, dev) == cudaSuccess) d->mem_clock_khz = v;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrGlobalMemoryBusWidth, dev) == cudaSuccess) d->mem_bus_bits = v;
    size_t fr = 0, tot = 0;
    CU_CHECK(cudaMemGetInfo(&fr, &tot), "cudaMemGetInfo");
    d->mem_free = fr;
    return 0;
}

extern "C" void *cu_malloc(size_t bytes, err_t *err) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        err_set(err, ERR_NOMEM, "cudaMalloc of %zu bytes: %s", bytes, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

extern "C" void cu_free(void *p) {
    if (p) cudaFree(p);
}

extern "C" int cu_h2d(void *dst, const void *src, size_t bytes, err_t *err) {
    CU_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy host to device");
    return 0;
}

extern "C" int cu_d2h(void *dst, const void *src, size_t bytes, err_t *err) {
    CU_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy device to host");
    return 0;
}

extern "C" int cu_memset(void *p, int byte, size_t bytes, err_t *err) {
    CU_CHECK(cudaMemset(p, byte, bytes), "cudaMemset");
    return 0;
}

extern "C" int cu_d2d_async(void *dst, const void *src, size_t bytes, void *stream, err_t *err) {
    CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, (cudaStream_t)stream),
             "cudaMemcpyAsync device to device");
    return 0;
}

extern "C" int cu_sync(err_t *err) {
    CU_CHECK(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    return 0;
}

extern "C" cu_event cu_event_new(err_t *err) {
    cudaEvent_t e;
    cudaError_t r = cudaEventCreate(&e);
    if (r != cudaSuccess) {
        cu_fail(err, "cudaEventCreate", r);
        return NULL;
    }
    return (cu_event)e;
}

extern "C" void cu_event_free(cu_event e) {
    if (e) cudaEventDestroy((cudaEvent_t)e);
}

extern "C" int cu_event_record(cu_event e, void *stream, err_t *err) {
    CU_CHECK(cudaEventRecord((cudaEvent_t)e, (cudaStream_t)stream), "cudaEventRecord");
    return 0;
}

extern "C" int cu_event_ms(cu_event a, cu_event b, float *ms, err_t *err) {
    CU_CHECK(cudaEventSynchronize((cudaEvent_t)b), "cudaEventSynchronize");
    CU_CHECK(cudaEventElapsedTime(ms, (cudaEvent_t)a, (cudaEvent_t)b), "cudaEventElapsedTime");
    return 0;
}

/* ---- random fills: splitmix64 of (seed, index), one value per index ---- */

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__global__ void k_fill_bytes(uint8_t *p, size_t n, int lo, int span, uint64_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = (uint8_t)(lo + (int)((mix64(seed * 0x100000001B3ull + i) >> 32) % (uint64_t)span));
}

__global__ void k_fill_f32(float *p, size_t n, float lo, float hi, uint64_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float u = (float)(mix64(seed * 0x100000001B3ull + i) >> 40) * (1.0f / 16777216.0f);
        p[i] = lo + (hi - lo) * u;
    }
}

__global__ void k_fill_bf16(uint16_t *p, size_t n, float lo, float hi, uint64_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float u = (float)(mix64(seed * 0x100000001B3ull + i) >> 40) * (1.0f / 16777216.0f);
        float f = lo + (hi - lo) * u;
        uint32_t b = __float_as_uint(f);
        b += 0x7fffu + ((b >> 16) & 1u); /* round to nearest even, as base/bf16.h */
        p[i] = (uint16_t)(b >> 16);
    }
}

__global__ void k_fill_local4(uint8_t *p, int64_t rows, int64_t k, uint64_t seed) {
    int64_t groups = k / 64, per_row = (k + 127) / 128;
    int64_t n = rows * per_row;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = i % per_row;
        uint64_t h = mix64(seed * 0x100000001B3ull + (uint64_t)i);
        int hi = 1 + (int)((h >> 8) % 15), lo = 1 + (int)((h >> 24) % 15);
        if (2 * b + 1 >= groups) lo = 0; /* the padding nibble of an odd group count */
        p[i] = (uint8_t)(hi << 4 | lo);
    }
}

static int fill_launch_check(err_t *err, const char *what) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return cu_fail(err, what, e);
    return 0;
}

static unsigned fill_blocks(size_t n) {
    size_t b = (n + 255) / 256;
    return (unsigned)(b > 4096 ? 4096 : (b ? b : 1));
}

extern "C" int cu_fill_bytes(void *p, size_t n, int lo, int hi, uint64_t seed, void *stream, err_t *err) {
    if (hi < lo || lo < 0 || hi > 255) return err_set(err, ERR_ARG, "cu_fill_bytes: bad range %d..%d", lo, hi);
    k_fill_bytes<<<fill_blocks(n), 256, 0, (cudaStream_t)stream>>>((uint8_t *)p, n, lo, hi - lo + 1, seed);
    return fill_launch_check(err, "fill kernel launch");
}

extern "C" int cu_fill_f32(float *p, size_t n, float lo, float hi, uint64_t seed, void *stream, err_t *err) {
    k_fill_f32<<<fill_blocks(n), 256, 0, (cudaStream_t)stream>>>(p, n, lo, hi, seed);
    return fill_launch_check(err, "fill kernel launch");
}

extern "C" int cu_fill_bf16(uint16_t *p, size_t n, float lo, float hi, uint64_t seed, void *stream, err_t *err) {
    k_fill_bf16<<<fill_blocks(n), 256, 0, (cudaStream_t)stream>>>(p, n, lo, hi, seed);
    return fill_launch_check(err, "fill kernel launch");
}

extern "C" int cu_fill_local4(uint8_t *p, int64_t rows, int64_t k, uint64_t seed, void *stream, err_t *err) {
    k_fill_local4<<<fill_blocks((size_t)(rows * ((k + 127) / 128))), 256, 0, (cudaStream_t)stream>>>(p, rows, k,
                                                                                                      seed);
    return fill_launch_check(err, "fill kernel launch");
}
