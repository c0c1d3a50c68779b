/* base/rng.h: a small seeded generator (xoshiro256**) for sampling, synthetic benchmarks and tests.
 * Same seed, same stream, on every machine: benchmark sources and samplers must be reproducible. */
#ifndef ERNIE_BASE_RNG_H
#define ERNIE_BASE_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} rng_t;

void rng_seed(rng_t *r, uint64_t seed);
uint64_t rng_next(rng_t *r);
/* Uniform in [0, 1) with 53 random bits. */
double rng_uniform(rng_t *r);
/* Standard normal (Box-Muller; one value per call). */
double rng_normal(rng_t *r);

#endif
