/* base/clock.h: monotonic time and peak memory, for progress bars, stats and benchmarks. */
#ifndef ERNIE_BASE_CLOCK_H
#define ERNIE_BASE_CLOCK_H

#include <stdint.h>

/* Seconds from an arbitrary fixed point, monotonic, sub-microsecond resolution. */
double clock_now(void);

/* Peak resident set size of this process in bytes (getrusage), 0 if unknown. */
uint64_t clock_peak_rss(void);

#endif
