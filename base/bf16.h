/* base/bf16.h: bfloat16 <-> float conversions, matching PyTorch bit for bit.
 *
 * PyTorch rounds float -> bf16 to nearest even and keeps NaNs quiet; our reference outputs come from
 * PyTorch, so any other rounding (truncation) would show up as 1-ulp differences everywhere. */
#ifndef ERNIE_BASE_BF16_H
#define ERNIE_BASE_BF16_H

#include <stdint.h>
#include <string.h>

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                                          /* round to nearest even */
    return (uint16_t)(u >> 16);
}

/* Rounds a float to the nearest bf16 value and back: the "cast to bf16" of the reference. */
static inline float bf16_round(float f) { return bf16_to_f32(f32_to_bf16(f)); }

/* IEEE half (fp16) <-> float, for safetensors F16 inputs. Round to nearest even. */
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

#endif
