/* base/simd.h: whether the 8-wide (AVX2) paths of the codecs and the CPU products may run.
 *
 * Every such path has a 4-wide twin that makes the same operations per lane, so results never depend
 * on the CPU; ERNIE_NO_AVX2 (set, not empty) forces the twins on any x86-64 machine, so that the tests
 * can compare the two widths bit for bit on the machine they have. */
#ifndef ERNIE_BASE_SIMD_H
#define ERNIE_BASE_SIMD_H

/* 1 when the CPU has AVX2 and ERNIE_NO_AVX2 is unset or empty, else 0 (always 0 off x86-64). Reads the
 * environment: callers ask once (pthread_once) and keep the answer. */
int simd_avx2(void);

#endif
