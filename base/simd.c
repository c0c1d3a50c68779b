/* base/simd.c: the run-time choice of the 8-wide paths (base/simd.h). */
#include <stdlib.h>

#include "simd.h"

int simd_avx2(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    const char *no = getenv("ERNIE_NO_AVX2");
    if (no && *no) return 0;
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}
