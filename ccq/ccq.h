/* ccq/ccq.h: the weight codecs: CCQ 2.75 / 2.5 / 2.06 bpw, WINT8/4 and their group-wise variants, bf16
 * passthrough, and two modifiers on top of any quantized one: ICQ outlier index coding (+icq) and CRVQ
 * channel relaxation (+crvq). The one header the rest of the project includes for quantized weights.
 *
 * The codec knows bit layouts, encoding and decoding, and nothing about models or files: it never does
 * I/O, never prints, never exits. An encoded weight is a list of named parts (safetensors dtype, shape,
 * bytes) so the model-file writer can store part `p` of weight `X` as tensor `X.p` without knowing the
 * format; docs/quant-notes.md and spec/ccq.md describe every part bit for bit.
 *
 * A weight has `rows` = N output channels and `cols` = K input channels; every part is row-major with
 * one row per output channel, K-contiguous. Stacked experts (E experts of [N, K]) are E*N rows.
 * Multi-byte parts are little-endian (the host must be little-endian, which every target is). */
#ifndef ERNIE_CCQ_CCQ_H
#define ERNIE_CCQ_CCQ_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/pool.h"

#define CCQ_GROUP 64     /* weights per group of the group formats (along K) */
#define CCQ_MAX_PARTS 10 /* parts of the richest format (ccq2.06+icq+crvq has 10) */

typedef enum {
    CCQ_BF16,     /* "bf16": passthrough, lossless for bf16 sources */
    CCQ_WINT8,    /* "wint8": RTN symmetric int8, one f32 scale per row */
    CCQ_WINT4,    /* "wint4": RTN symmetric int4, one f32 scale per row */
    CCQ_WINT4G64, /* "wint4g64": int4 per 64-group, 4-bit local scale x bf16 super scale per row */
    CCQ_WINT2G64, /* "wint2g64": plain 2-bit per 64-group, the scalar baseline for ccq2.06 */
    CCQ_CCQ275,   /* "ccq2.75": (4,3,2) codes in bytes, 22 bytes per group */
    CCQ_CCQ25,    /* "ccq2.5": (3,3,2)+(3,4,2) hybrid codes in uint16, 10 words per group */
    CCQ_CCQ206,   /* "ccq2.06": (6,4,3) code cluster behind an 8-bit index */
    CCQ_NBASES
} ccq_base;

/* A format: one base and its modifiers. Parameters are integers so that the printed name round-trips
 * exactly and the reader of a model file derives the same part sizes as the writer did. */
typedef struct {
    ccq_base base;
    int icq;        /* +icq: outlier index coding */
    int icq_gamma;  /* outlier budget in 1/10000 of a row (default 500 = 5%), 1..5000 */
    int icq_bits;   /* gap symbol width B (default 5), 2..12 */
    int crvq;       /* +crvq: channel relaxation */
    int crvq_frac;  /* critical input channels in 1/10000 of K (default 200 = 2%), 1..5000 */
    int crvq_bits;  /* bits of the critical block's code: 4 or 8 (default 8) */
} ccq_format;

/* The default format of a base (no modifiers; modifier parameters at their defaults). */
ccq_format ccq_format_of(ccq_base b);

/* Parses "ccq2.06", "wint4g64+icq", "ccq2.75+icq:0.03:4+crvq:0.02:4" (modifier parameters after ':',
 * each optional: +icq:GAMMA:B, +crvq:FRACTION:BITS; fractions with at most 4 decimals). Modifiers may
 * come in any order, at most once each, and not on bf16. Unknown names, bad numbers and repeats are
 * ERR_ARG with a message naming the offending piece. */
int ccq_format_parse(const char *s, ccq_format *f, err_t *e);

/* The canonical name: base, then +icq, then +crvq, parameters only where not the defaults. Parsing it
 * gives back the same format. Returns buf (truncated to n if too small). */
const char *ccq_format_name(const ccq_format *f, char *buf, size_t n);

/* The base's name ("ccq2.06"), or "?" for an invalid value. */
const char *ccq_base_name(ccq_base b);

/* One stored part of an encoded weight. */
typedef struct {
    const char *name;  /* "qweight", "super_scale", ...: static strings */
    const char *dtype; /* safetensors dtype: "BF16", "F32", "I8", "U8", "U16" */
    int ndim;          /* 1 or 2 */
    int64_t shape[2];  /* shape[1] unused when ndim == 1 */
    size_t nbytes;     /* product of the shape times the dtype's size */
    const void *data;  /* NULL in a layout; else nbytes bytes, any alignment */
} ccq_part;

/* Size in bytes of a safetensors dtype name we use; 0 for any other. */
size_t ccq_dtype_size(const char *dtype);

/* The exact list of parts (names, dtypes, shapes, sizes; data NULL) of format f for a [rows, cols]
 * weight, known before encoding, so a writer can lay out its file up front. Fails with ERR_ARG for
 * shapes the format cannot hold (group formats need cols % 64 == 0, wint4 an even cols, +crvq
 * cols <= 65536) with a message naming the format and the shape. */
int ccq_layout(const ccq_format *f, int64_t rows, int64_t cols, ccq_part parts[CCQ_MAX_PARTS], int *nparts,
               err_t *e);

/* Exact storage of format f for the shape, side data included: total bits (the sum of the parts' bytes
 * times 8) and bits per weight. Same errors as ccq_layout. */
int ccq_bits(const ccq_format *f, int64_t rows, int64_t cols, uint64_t *bits, double *bpw, err_t *e);

/* An encoded weight: the format, the shape, and its parts (in ccq_layout's order). */
typedef struct {
    ccq_format fmt;
    int64_t rows, cols;
    int nparts;
    ccq_part part[CCQ_MAX_PARTS];
    void *owned; /* the one allocation behind every part when ccq_encode made it; NULL when borrowed */
} ccq_tensor;

typedef struct {
    /* Per input channel importance, the diagonal of X^T X from calibration (>= 0, finite): it weights
     * each column's squared error. NULL: all ones. With importance_rows = R > 0 the array holds one
     * vector of cols values per block of R rows (rows / R of them, e.g. one per stacked expert);
     * 0 means one vector for all rows. */
    const float *importance;
    int64_t importance_rows;
    pool *pool; /* threads for the rows; NULL runs on the calling thread */
    /* Called with rows done (absolute) and the total, from any thread; may be NULL. For +crvq the
     * total counts both passes. */
    void (*progress)(void *ctx, double done, double total);
    void *progress_ctx;
} ccq_encode_opts;

/* Encodes w [rows, cols] (row-major, finite) into format f. On success *out owns its parts (free with
 * ccq_free). Errors: ERR_ARG for shapes the format cannot hold, non-finite weights or importance (the
 * message names the row and column), ERR_NOMEM. opts may be NULL. */
int ccq_encode(const ccq_format *f, const float *w, int64_t rows, int64_t cols, const ccq_encode_opts *opts,
               ccq_tensor *out, err_t *e);

/* Builds a tensor over borrowed parts (from a model file) and validates it: every part of the layout
 * must be present once, by name, with the layout's dtype, shape and size (extra parts are an error),
 * and its contents must pass ccq_validate. The tensor points into the caller's buffers. */
int ccq_wrap(const ccq_format *f, int64_t rows, int64_t cols, const ccq_part *parts, int nparts, ccq_tensor *t,
             err_t *e);

/* Checks stored parameters a corrupt file could hold: part names, dtypes, shapes and sizes against the
 * layout; scales finite, >= 0 and at most 1e25 (the ICQ multiplier in (0, 1e6]), so that no decoded
 * weight can overflow; code_scale/code_zp finite with every one of the 256 codes inside [0, 2^15);
 * padding nibbles and bits zero; the ICQ gap stream of every row landing inside the row; CRVQ channel
 * indices strictly increasing and < cols; bf16 weights finite. ERR_CORRUPT names the part, row and
 * value. The decoders never read out of bounds whatever the contents, as long as the part sizes match
 * the layout (ccq_wrap and ccq_encode guarantee that), but only validated data decodes to what the
 * writer meant. */
int ccq_validate(const ccq_tensor *t, err_t *e);

/* Frees what ccq_encode allocated and clears t; safe on a zeroed or borrowed tensor. */
void ccq_free(ccq_tensor *t);

/* Decodes rows [r0, r1) x columns [c0, c1) into out[(r - r0) * ldo + (c - c0)] (ldo >= c1 - c0).
 * Groups are decoded whole and cut, so any column range works. ERR_ARG for ranges outside the shape. */
int ccq_decode_tile(const ccq_tensor *t, int64_t r0, int64_t r1, int64_t c0, int64_t c1, float *out, int64_t ldo,
                    err_t *e);

/* Decodes row r into out[cols]. */
int ccq_decode_row(const ccq_tensor *t, int64_t r, float *out, err_t *e);

/* Decodes the whole matrix into out[rows * cols], rows spread over the pool (NULL: this thread). */
int ccq_decode(const ccq_tensor *t, float *out, pool *p, err_t *e);

/* The fused CPU product of rows [r0, r1) with T vectors, without materialising the rows:
 * y[t * ldy + (r - r0)] = sum_k W[r][k] * x[t * ldx + k] for t < T, where W is exactly what
 * ccq_decode gives (only the order of the additions differs). Each group of weights is decoded once
 * and used for all T vectors. ldx >= cols, ldy >= r1 - r0. This is the CPU engine's matvec and
 * prefill; split rows over threads by calling it on disjoint row ranges. ERR_ARG for bad ranges. */
int ccq_dot(const ccq_tensor *t, int64_t r0, int64_t r1, const float *x, int64_t ldx, int64_t T, float *y,
            int64_t ldy, err_t *e);

#endif
