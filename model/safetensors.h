/* model/safetensors.h: the safetensors container, read and written.
 *
 * Reading maps the file read-only and validates the header as strictly as Hugging Face's own reader:
 * tensors must cover the data section exactly (no gap, no overlap, nothing after the last one), each
 * tensor's byte length must equal its element count times its dtype size, and no length read from the
 * file is trusted before it is checked against the file size. Tensors are then plain pointers into
 * the map. This module knows nothing about models: it never interprets names or metadata values.
 *
 * Writing is streaming and atomic: the caller declares every tensor and the metadata, the writer lays
 * the data out at 64-byte aligned offsets, writes the header into a temporary file in the target
 * folder, takes each tensor's bytes, and commit makes the file appear under its final name in one
 * rename. Alignment gaps are filled with small U8 tensors named "__pad__.<n>" so the file stays
 * valid for readers that require the data to be contiguous (Hugging Face's does).
 *
 * Checksums (optional, ST_W_CHECKSUMS): the writer hashes each tensor with XXH3-64 while it is
 * written and stores, at commit, the metadata keys "checksums" (a JSON object tensor name -> 16 hex
 * digits, padding tensors excluded) and "header_checksum" (st_header_checksum, below).
 */
#ifndef ERNIE_MODEL_SAFETENSORS_H
#define ERNIE_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef enum {
    ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_U16, ST_U32, ST_U64, ST_BOOL,
    ST_NDTYPES
} st_dtype;

enum { ST_MAX_DIMS = 8 };
/* Hugging Face's reader refuses headers above 100 MB; so do we. */
#define ST_MAX_HEADER ((uint64_t)100000000)
/* Tensor data offsets in files we write are multiples of this (file offsets too). */
#define ST_ALIGN 64
/* Prefix of the alignment filler tensors. Names starting with "__" are reserved for the container. */
#define ST_PAD_PREFIX "__pad__."

/* "F32", "BF16", ...; "?" for an out-of-range value. */
const char *st_dtype_name(st_dtype t);
/* Bytes per element (BOOL is 1). 0 for an out-of-range value. */
size_t st_dtype_size(st_dtype t);
/* Parses a dtype name (exact, upper case). Returns 0 and sets *out, or -1 if unknown. */
int st_dtype_parse(const char *s, st_dtype *out);

typedef struct {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;  /* data_offsets as in the header: relative to the data section */
    uint64_t file_offset; /* absolute position of the first byte in the file */
    uint64_t nbytes;      /* end - begin == numel * dtype size */
    const void *data;     /* into the map; valid until st_close */
} st_tensor;

typedef struct st_file st_file;

/* Opens and maps `path` read-only and validates its header. On failure *out is NULL and the message
 * names the file and, where one is at fault, the tensor. */
int st_open(st_file **out, const char *path, err_t *e);

/* The same over bytes already in memory (an embedded asset, a fuzz input). Nothing is copied: buf must
 * outlive the st_file. `label` names it in messages. */
int st_open_memory(st_file **out, const void *buf, size_t len, const char *label, err_t *e);

/* Unmaps and frees; NULL is fine. Every pointer obtained from f dies with it. */
void st_close(st_file *f);

/* The path or label given at open. */
const char *st_path(const st_file *f);
/* Size of the whole file, and of the 8-byte length + JSON header (the data section starts there). */
uint64_t st_file_size(const st_file *f);
uint64_t st_data_start(const st_file *f);
/* The whole file as mapped (for checksumming ranges). */
const uint8_t *st_bytes(const st_file *f);

/* Tensors in file order (ascending data offset), padding tensors included. i in 0..st_count-1. */
int st_count(const st_file *f);
const st_tensor *st_at(const st_file *f, int i);
/* Lookup by exact name (binary search); NULL if absent. */
const st_tensor *st_find(const st_file *f, const char *name);
/* 1 if a name is one of the writer's alignment fillers. */
int st_is_padding(const char *name);

/* __metadata__ entries, sorted by key. st_meta returns NULL for an absent key. */
int st_meta_count(const st_file *f);
void st_meta_at(const st_file *f, int i, const char **key, const char **value);
const char *st_meta(const st_file *f, const char *key);

/* XXH3-64 (seed 0) of a byte range. */
uint64_t st_hash(const void *data, size_t len);
/* 16 lower-case hex digits + NUL into buf (at least 17 bytes). */
void st_hex64(uint64_t v, char *buf);

/* The checksum of a file's header that the writer stores under "header_checksum": XXH3-64 of, for
 * every metadata key except "header_checksum" in ascending byte order, key NUL value NUL; then for
 * every tensor in file order, name NUL dtype NUL dims-joined-by-commas NUL begin NUL end NUL (numbers
 * in decimal). It covers the checksums, the config and the tensor table, and any implementation can
 * recompute it from a parsed header. */
uint64_t st_header_checksum(const st_file *f);

/* ---- writing ---------------------------------------------------------------------------------- */

typedef struct st_writer st_writer;

enum {
    ST_W_OVERWRITE = 1, /* replace an existing file at path (otherwise that is an error) */
    ST_W_CHECKSUMS = 2, /* store "checksums" and "header_checksum" at commit */
};

/* Every call but commit that fails leaves w as it was (or marks it failed, for write errors); the caller
 * then ends with st_writer_abort, which removes the temporary file. */

/* Starts a writer for `path`. Nothing is created yet. Fails if path exists and ST_W_OVERWRITE is not
 * given, or if its folder does not exist. */
int st_writer_new(st_writer **out, const char *path, unsigned flags, err_t *e);

/* Adds a metadata entry; call before st_writer_begin. Keys are unique; "checksums" and
 * "header_checksum" are reserved when ST_W_CHECKSUMS is set. */
int st_writer_meta(st_writer *w, const char *key, const char *value, err_t *e);

/* Declares a tensor; call before st_writer_begin. Returns its index (0, 1, ... in declaration order,
 * which is also its order in the file) or -1. Names are unique, non-empty and do not start with "__". */
int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape, err_t *e);

/* Lays out the data, creates the temporary file "<path>.ernie-partial-<pid>" in the target folder
 * (O_EXCL), reserves the full size on disk where the filesystem allows it (so a full disk fails here,
 * not an hour later) and writes the header. */
int st_writer_begin(st_writer *w, err_t *e);

/* Appends len bytes to tensor `index`. Tensors may be written in any order, and from several threads
 * at once as long as each tensor is written by one thread at a time; the bytes of one tensor must come
 * in order (they are hashed as they pass). Writing more than the tensor's size is an error. */
int st_writer_write(st_writer *w, int index, const void *data, size_t len, err_t *e);

/* Byte size of a declared tensor (for callers that stream it in chunks). */
uint64_t st_writer_nbytes(const st_writer *w, int index);

/* Checks every tensor was written in full (naming the first that was not), fills in the checksums,
 * fsyncs, renames the temporary file to path (without replacing an existing file unless
 * ST_W_OVERWRITE) and fsyncs the folder. On failure the temporary file is removed. Frees w either
 * way. */
int st_writer_commit(st_writer *w, err_t *e);

/* Removes the temporary file (if any) and frees w. NULL is fine. */
void st_writer_abort(st_writer *w);

/* The temporary file's path once begun ("" before), e.g. for a signal handler that must unlink it. */
const char *st_writer_temp_path(const st_writer *w);

#endif
