/* model/modelfile.h: our model file (docs/format.md): a safetensors file with the config, the
 * generation defaults, a weight table, the tokenizer and checksums in it.
 *
 * Opening checks everything but the checksums: the format and version, the config, that every
 * tensor is a part of a listed weight (or the tokenizer, or padding), that every weight has exactly
 * the parts ccq_layout gives for its format and shape, and that the weights are exactly those the
 * config needs. So the engine can trust an opened file's shapes. mf_verify adds the checksums and the
 * codec's own validation of the stored parameters. The writer lays a file out the same way, so what
 * it writes always opens. Never prints; errors name the file and the weight or tensor.
 */
#ifndef ERNIE_MODEL_MODELFILE_H
#define ERNIE_MODEL_MODELFILE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/pool.h"
#include "model/config.h"
#include "model/safetensors.h"

enum { MF_FORMAT_VERSION = 1, MF_MAX_PARTS = 12 };

typedef struct {
    const char *name; /* "qweight", "scale", "weight", ... */
    const st_tensor *t;
} mf_part;

typedef struct {
    const char *name;   /* "model.layers.3.mlp.experts.down_proj" */
    const char *format; /* "bf16", "f32", "ccq2.06+icq", ... as stored */
    int ndim;           /* 1 (a vector), 2, or 3 (stacked experts [E, N, K]) */
    int64_t shape[3];
    int64_t rows, cols; /* [n] -> 1 x n; [N, K]; [E, N, K] -> E*N x K */
    int nparts;
    mf_part part[MF_MAX_PARTS]; /* in the format's layout order */
    uint64_t nbytes;            /* all parts together */
} mf_weight;

typedef struct mf_file mf_file;

/* Opens and checks a model file (see above). */
int mf_open(mf_file **out, const char *path, err_t *e);
/* The same over bytes in memory (the embedded demo model); buf must outlive the mf_file. */
int mf_open_memory(mf_file **out, const void *buf, size_t len, const char *label, err_t *e);
void mf_close(mf_file *f);

const char *mf_path(const mf_file *f);
const st_file *mf_st(const mf_file *f);
int mf_version(const mf_file *f);
const cfg_model *mf_config(const mf_file *f);
const cfg_gen *mf_generation(const mf_file *f);
/* A raw metadata value ("recipe", "chat_template", "source", ...); NULL if absent. */
const char *mf_meta(const mf_file *f, const char *key);

/* Weights in file order. */
int mf_nweights(const mf_file *f);
const mf_weight *mf_weight_at(const mf_file *f, int i);
const mf_weight *mf_find_weight(const mf_file *f, const char *name);
/* A part of a weight by name; NULL if it has none. */
const mf_part *mf_weight_part(const mf_weight *w, const char *part);

/* The tokenizer tensors (NULL when the file has none). */
const st_tensor *mf_tokenizer_model(const mf_file *f);
const st_tensor *mf_special_tokens(const mf_file *f);

/* A weight's component for reports: "embedding", "attention", "dense mlp", "experts",
 * "shared experts", "router", "norms", "lm_head" (or "other"). */
const char *mf_component(const char *weight_name);

/* Recomputes the header checksum and every tensor's checksum (tensors spread over the pool; p may be
 * NULL), then runs the codec's validation of every quantized weight's stored parameters. progress
 * (may be NULL) gets bytes done and the total, from any thread and so not always in order, then last
 * (total, total) from the calling thread once every tensor is hashed. ERR_CORRUPT names the first bad
 * tensor in file order and how many differ. */
int mf_verify(const mf_file *f, pool *p, void (*progress)(void *ctx, double done, double total), void *ctx, err_t *e);

/* Decodes a weight to floats out[rows * cols] with the codec (f32 copied): what the stored bits mean. */
int mf_weight_decode(const mf_weight *w, float *out, err_t *e);

/* ---- the weights a config needs ---------------------------------------------------------------- */

typedef enum { MF_ANY, MF_ONLY_BF16, MF_ONLY_F32 } mf_rule;

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[3];
    mf_rule rule;
} mf_expect;

/* docs/format.md §3 for c, in model order; returns the count (malloc'd list in *out) or -1 (no memory). */
int mf_expected(const cfg_model *c, mf_expect **out);

/* The parts of `format` for a weight of that shape: names, dtypes, shapes (data NULL). 1-D weights
 * take only bf16 or f32; f32 is one F32 "weight" part; everything else is ccq_layout. Up to
 * MF_MAX_PARTS parts. ERR_ARG names the format and shape when they do not fit. */
typedef struct {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[2];
    uint64_t nbytes;
} mf_partspec;
int mf_layout(const char *format, int ndim, const int64_t *shape, mf_partspec parts[MF_MAX_PARTS], int *nparts, err_t *e);

/* ---- writing -------------------------------------------------------------------------------------- */

typedef struct mf_writer mf_writer;

/* Starts a model file at path (overwrite: replace an existing file). Nothing is created until
 * begin. recipe may be NULL ("custom"). */
int mf_writer_new(mf_writer **out, const char *path, int overwrite, const cfg_model *c, const cfg_gen *g, const char *recipe,
                  err_t *e);
/* An extra metadata entry ("source", "created_by"). Before begin. */
int mf_writer_meta(mf_writer *w, const char *key, const char *value, err_t *e);
/* Declares a weight and all its parts; returns its id (0, 1, ...) or -1. Weights are laid out in
 * declaration order. The file must end up with exactly the weights mf_expected lists. */
int mf_writer_weight(mf_writer *w, const char *name, const char *format, int ndim, const int64_t *shape, err_t *e);
/* The tokenizer: the SentencePiece model bytes and the special-token JSON, both copied. Before begin. */
int mf_writer_tokenizer(mf_writer *w, const void *spm, size_t spm_len, const char *special_json, err_t *e);
/* Writes the metadata and the tokenizer; the temporary file exists from here on. */
int mf_writer_begin(mf_writer *w, err_t *e);
/* Appends bytes to one part of a weight (a part's bytes in order; parts and weights in any order,
 * from several threads for different parts). */
int mf_writer_part(mf_writer *w, int weight, const char *part, const void *data, size_t len, err_t *e);
/* Bytes one part needs, 0 for an unknown weight or part. */
uint64_t mf_writer_part_bytes(const mf_writer *w, int weight, const char *part);
/* Checks all was written, stores the checksums, renames into place. Frees w either way. */
int mf_writer_commit(mf_writer *w, err_t *e);
/* Removes the temporary file and frees w; NULL is fine. */
void mf_writer_abort(mf_writer *w);
const char *mf_writer_temp_path(const mf_writer *w);

#endif
