/* model/import.h: a Hugging Face checkpoint folder -> one ernie model file (docs/format.md).
 *
 * Planning and doing are separate so the app can show the plan (sizes by component, predicted bits per
 * weight, GPU memory) before the long part starts. The import streams: one weight at a time is read
 * from the mapped shards, quantized on the thread pool, written, and its input pages are released, so
 * peak memory is about one weight's float copy (the largest stacked expert kind), not the model.
 * The output appears atomically or not at all. Never prints: progress and the plan go to the caller. */
#ifndef ERNIE_MODEL_IMPORT_H
#define ERNIE_MODEL_IMPORT_H

#include <signal.h>
#include <stdint.h>

#include "base/err.h"
#include "base/pool.h"
#include "model/calib.h"
#include "model/recipe.h"

enum { IMP_NCOMP = 8 };

typedef struct {
    int nweights, ntensors_in;
    uint64_t bytes_in;                  /* source bytes the model uses */
    uint64_t bytes_out;                 /* weight bytes of the output (tokenizer excluded) */
    int64_t params;                     /* weights in the output */
    struct {
        const char *name;               /* "experts", "attention", ... (mf_component) */
        int64_t params;
        uint64_t bytes;
        char formats[96];               /* the formats used, comma-separated */
    } comp[IMP_NCOMP];
    int ncomp;
    uint64_t kv_bytes_per_token;        /* bf16 KV cache */
    int n_unexpected;                   /* source tensors nobody needs (MTP excluded) */
} imp_plan;

typedef struct {
    const char *hf_dir, *out_path;
    const recipe *recipe;
    int overwrite;
    pool *pool;
    const calib *calib;                 /* importance from calibration, or NULL (all channels equal) */
    const char *calib_desc;             /* recorded in the file's metadata with calib: "FILE, N tokens" */
    volatile sig_atomic_t *stop;        /* set by a signal handler: abort cleanly */
    /* progress: bytes of input done and the total, and the weight being worked on */
    void (*progress)(void *ctx, double done, double total, const char *weight);
    void *progress_ctx;
} imp_opts;

typedef struct {
    double seconds;
    uint64_t file_bytes;
    double bpw;                         /* weight bits over weight count, all side data included */
    uint64_t peak_rss;
} imp_result;

/* Opens the checkpoint and works out every weight's format and size. */
int imp_plan_make(const imp_opts *o, imp_plan *plan, err_t *err);

/* Runs the import. On any error or a stop request the output file does not exist afterwards. */
int imp_run(const imp_opts *o, imp_result *res, err_t *err);

#endif
