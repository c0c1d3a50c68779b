/* base/pool.c: the thread pool. A job is published by bumping a generation counter, chunks are claimed
 * with an atomic counter, and the caller waits until every worker has checked out of the job.
 *
 * Between jobs a worker first spins on the generation for a while (about 50-100 us) and only then
 * sleeps on a condition variable; the caller likewise spins before it sleeps waiting for the workers.
 * A decode step runs hundreds of short products back to back, and waking sleeping threads through the
 * kernel cost about 25 us per job on a 2-vCPU VM (more with more threads), a large part of a step.
 * No wake-up is lost: a worker announces that it sleeps (sleepers) before it checks the generation a
 * last time under the mutex, and the caller publishes the generation before it looks at sleepers, both
 * sequentially consistent, so one of the two sees the other; the caller then broadcasts under the mutex. */
#include "pool.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define SPINS 2000 /* pause instructions before sleeping: tens of microseconds */

struct pool {
    int nthreads;
    int spins; /* SPINS, or 0 when there are more threads than cores (a spinning thread would hold a
                * core another one needs: 9% slower at 4 threads on 2 cores) */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* sleeping workers wait for a new generation */
    pthread_cond_t done; /* a sleeping caller waits for active == 0 */
    atomic_uint_fast64_t generation;
    atomic_int active;   /* workers still inside the current job */
    atomic_int sleepers; /* workers asleep (or about to be) on wake */
    atomic_int quit;
    atomic_int busy;     /* a job is running: guards against reentry */
    /* the current job, written before the generation is published */
    pool_fn fn;
    void *ctx;
    int64_t n, grain;
    atomic_int_fast64_t next;
};

typedef struct {
    pool *p;
    int tid;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void run_chunks(pool *p, int tid) {
    for (;;) {
        int64_t b = atomic_fetch_add(&p->next, p->grain);
        if (b >= p->n) break;
        int64_t e = b + p->grain < p->n ? b + p->grain : p->n;
        p->fn(p->ctx, b, e, tid);
    }
}

static void *worker(void *argp) {
    worker_arg a = *(worker_arg *)argp;
    free(argp);
    pool *p = a.p;
    uint64_t seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load(&p->generation) == seen && !atomic_load(&p->quit) && spins < p->spins) spins++, cpu_relax();
        if (atomic_load(&p->generation) == seen && !atomic_load(&p->quit)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (!atomic_load(&p->quit) && atomic_load(&p->generation) == seen) pthread_cond_wait(&p->wake, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) break;
        seen = atomic_load(&p->generation);
        run_chunks(p, a.tid);
        if (atomic_fetch_sub(&p->active, 1) == 1) { /* the last one out: wake a sleeping caller */
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

int pool_ncpu(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

pool *pool_create(int nthreads) {
    if (nthreads <= 0) nthreads = pool_ncpu();
    pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->nthreads = nthreads;
    p->spins = nthreads <= pool_ncpu() ? SPINS : 0;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (nthreads > 1) {
        p->threads = calloc((size_t)nthreads - 1, sizeof *p->threads);
        if (!p->threads) {
            free(p);
            return NULL;
        }
    }
    for (int i = 1; i < nthreads; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (a) { /* filled before the thread starts: it reads them at once */
            a->p = p;
            a->tid = i;
        }
        if (!a || pthread_create(&p->threads[i - 1], NULL, worker, a) != 0) {
            free(a);
            p->nthreads = i; /* keep the ones that started */
            break;
        }
    }
    return p;
}

void pool_destroy(pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->nthreads; i++) pthread_join(p->threads[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int pool_size(const pool *p) { return p ? p->nthreads : 1; }

void pool_for(pool *p, int64_t n, int64_t grain, pool_fn fn, void *ctx) {
    if (n <= 0) return;
    int nt = pool_size(p);
    if (grain <= 0) {
        grain = n / (4 * (int64_t)nt);
        if (grain < 1) grain = 1;
    }
    if (!p || nt == 1 || n <= grain) {
        for (int64_t b = 0; b < n; b += grain) fn(ctx, b, b + grain < n ? b + grain : n, 0);
        return;
    }
    int was_busy = atomic_exchange(&p->busy, 1);
    assert(!was_busy && "pool_for is not reentrant");
    (void)was_busy;
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->grain = grain;
    atomic_store(&p->next, 0);
    atomic_store(&p->active, p->nthreads - 1);
    atomic_fetch_add(&p->generation, 1); /* publishes the job: the workers read it after seeing this */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }

    run_chunks(p, 0);

    int spins = 0;
    while (atomic_load(&p->active) > 0 && spins < p->spins) spins++, cpu_relax();
    if (atomic_load(&p->active) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->active) > 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    atomic_store(&p->busy, 0);
}
