/* kernels/cuda/cudev.h: the small part of the CUDA runtime that host code outside kernels/cuda/ needs
 * (device memory, copies, events, device facts, random fills for tests and benchmarks), as plain C with
 * err_t errors, so that no other file includes a CUDA header. Every call checks the runtime's return
 * code; the fills also check the launch. Streams are passed as void * (NULL: the default stream). */
#ifndef ERNIE_KERNELS_CUDA_CUDEV_H
#define ERNIE_KERNELS_CUDA_CUDEV_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Device facts of the current device. name may be NULL. */
typedef struct {
    char name[256];
    int sm_count, cc_major, cc_minor;
    size_t l2_bytes, mem_total, mem_free;
    int clock_khz, mem_clock_khz, mem_bus_bits;
} cu_devinfo;
int cu_device_info(cu_devinfo *d, err_t *err);

/* cudaMalloc; NULL (and err filled) on failure. cu_free(NULL) is a no-op. */
void *cu_malloc(size_t bytes, err_t *err);
void cu_free(void *p);

int cu_h2d(void *dst, const void *src, size_t bytes, err_t *err);
int cu_d2h(void *dst, const void *src, size_t bytes, err_t *err);
int cu_memset(void *p, int byte, size_t bytes, err_t *err);
/* Device-to-device copy on a stream (asynchronous). */
int cu_d2d_async(void *dst, const void *src, size_t bytes, void *stream, err_t *err);
/* Waits for all work on the device; reports an error any earlier asynchronous work left. */
int cu_sync(err_t *err);

/* Events for timing. */
typedef struct cu_event_s *cu_event;
cu_event cu_event_new(err_t *err);
void cu_event_free(cu_event e);
int cu_event_record(cu_event e, void *stream, err_t *err);
/* Waits for b, then gives the milliseconds from a to b. */
int cu_event_ms(cu_event a, cu_event b, float *ms, err_t *err);

/* Random fills on the device (a counter-based hash of seed and index: same seed, same bytes).
 *   cu_fill_bytes: every byte uniform in [lo, hi] (inclusive)
 *   cu_fill_f32 / cu_fill_bf16: uniform in [lo, hi) */
int cu_fill_bytes(void *p, size_t n, int lo, int hi, uint64_t seed, void *stream, err_t *err);
int cu_fill_f32(float *p, size_t n, float lo, float hi, uint64_t seed, void *stream, err_t *err);
int cu_fill_bf16(uint16_t *p, size_t n, float lo, float hi, uint64_t seed, void *stream, err_t *err);

/* Sets the nibbles of a ccq2.06 local_scale array (rows x ceil(k/128) bytes) to random values in
 * 1..15, the padding nibble (odd group count) to zero, as a valid encoding needs. */
int cu_fill_local4(uint8_t *p, int64_t rows, int64_t k, uint64_t seed, void *stream, err_t *err);

#ifdef __cplusplus
}
#endif

#endif
