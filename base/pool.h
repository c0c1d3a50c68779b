/* base/pool.h: a small fixed thread pool with one operation, a parallel for.
 *
 * Every multithreaded loop in ernie (encoding, matvec, checksums) is "split 0..n into chunks, run
 * them on all cores, wait". One shape keeps the threading in one place. The caller's thread works too,
 * so a pool of N threads starts N-1 workers. Not reentrant: a pool_for callback must not call
 * pool_for on the same pool (it asserts). */
#ifndef ERNIE_BASE_POOL_H
#define ERNIE_BASE_POOL_H

#include <stdint.h>

typedef struct pool pool;

/* fn runs on [begin, end) with tid in 0..pool_size-1 (tid 0 is the caller); tid lets callbacks use
 * per-thread scratch without locks. */
typedef void (*pool_fn)(void *ctx, int64_t begin, int64_t end, int tid);

/* nthreads <= 0 means all online cores. Returns NULL on failure (out of memory or no threads). */
pool *pool_create(int nthreads);
void pool_destroy(pool *p);

/* Number of threads that run callbacks (>= 1). pool_size(NULL) is 1. */
int pool_size(const pool *p);

/* Runs fn over 0..n in chunks of about `grain` items (grain <= 0: n / (4 * threads)), returns when
 * all are done. Chunks are handed out dynamically, so uneven work balances. p == NULL runs inline. */
void pool_for(pool *p, int64_t n, int64_t grain, pool_fn fn, void *ctx);

/* Number of online CPU cores (>= 1). */
int pool_ncpu(void);

#endif
