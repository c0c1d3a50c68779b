/* kernels/cuda/bf16.cuh: bf16 <-> float on the device for the product kernels (qgemv.cu, qgemm.cu), with
 * the host's rounding (base/bf16.h): round to nearest even, NaN kept quiet. Bit operations only, so the
 * results are the same on every architecture. */
#ifndef ERNIE_KERNELS_CUDA_BF16_CUH
#define ERNIE_KERNELS_CUDA_BF16_CUH

#include <stdint.h>

__device__ __forceinline__ float bf16f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

__device__ __forceinline__ uint16_t f2bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

#endif
