/* base/pool.c: the thread pool. Workers sleep on a condition variable between jobs; a job is
 * published by bumping a generation counter, chunks are claimed with an atomic counter, and the
 * caller waits until every worker has checked out of the job. */
#include "pool.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct pool {
    int nthreads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* workers wait for a new generation */
    pthread_cond_t done; /* the caller waits for active == 0 */
    uint64_t generation;
    int active; /* workers still inside the current job */
    int quit;
    int busy;   /* a job is running: guards against reentry */
    /* the current job */
    pool_fn fn;
    void *ctx;
    int64_t n, grain;
    atomic_int_fast64_t next;
};

typedef struct {
    pool *p;
    int tid;
} worker_arg;

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
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_chunks(p, a.tid);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
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
    p->quit = 1;
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
    pthread_mutex_lock(&p->mu);
    assert(!p->busy && "pool_for is not reentrant");
    p->busy = 1;
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->grain = grain;
    atomic_store(&p->next, 0);
    p->active = p->nthreads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    run_chunks(p, 0);

    pthread_mutex_lock(&p->mu);
    while (p->active > 0) pthread_cond_wait(&p->done, &p->mu);
    p->busy = 0;
    pthread_mutex_unlock(&p->mu);
}
