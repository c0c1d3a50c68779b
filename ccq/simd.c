/* ccq/simd.c: whether the codecs' 8-wide (AVX2) paths run. They are chosen by the CPU's features, and
 * ERNIE_NO_AVX2 (set, not empty) forces the 4-wide paths on any x86-64 machine, so that the tests can
 * compare the two widths byte for byte on the machine they have: both are written to make the same
 * operations per lane, and an encoded file must never depend on the CPU that wrote it. */
#include <stdlib.h>

#include "internal.h"

int ccq_cpu_avx2(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    const char *no = getenv("ERNIE_NO_AVX2");
    if (no && *no) return 0;
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}
