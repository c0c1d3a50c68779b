/* tests/test_safetensors.c: the safetensors container: write -> read round trips, alignment, the
 * checksums, atomic writing (nothing left behind on any failure, no overwrite unless asked, a full
 * disk), and one clear error for each kind of malformed header. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>
#include <jansson.h>

#include <pthread.h>
#include "harness.h"
#include "model/safetensors.h"

/* Number of entries in a folder other than . and .. */
static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

static int exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* Deterministic bytes for tensor i. */
static void fill(uint8_t *p, size_t n, int i) {
    for (size_t k = 0; k < n; k++) p[k] = (uint8_t)(k * 31 + (size_t)i * 7 + 1);
}

typedef struct {
    const char *name;
    st_dtype dt;
    int ndim;
    int64_t shape[3];
} spec;

static const spec specs[] = {
    {"model.embed_tokens.weight", ST_BF16, 2, {7, 5}},   /* 70 bytes: needs a pad after */
    {"scalar", ST_F64, 0, {0}},                          /* 8 bytes, ndim 0 */
    {"empty", ST_F32, 2, {0, 4}},                        /* 0 bytes */
    {"layers.0.q \"quoted\"", ST_I8, 1, {3}},
    {"bytes", ST_U8, 1, {130}},
    {"ints", ST_I64, 2, {2, 2}},
    {"flags", ST_BOOL, 1, {1}},
    {"half", ST_F16, 3, {2, 2, 3}},
    {"u16", ST_U16, 1, {5}},
    {"u32", ST_U32, 1, {3}},
    {"u64", ST_U64, 1, {1}},
    {"i16", ST_I16, 1, {9}},
    {"i32", ST_I32, 1, {4}},
    {"w", ST_F32, 2, {16, 4}}, /* exactly 256 bytes */
};
#define NSPECS (int)(sizeof specs / sizeof specs[0])

static uint64_t nbytes_of(const spec *s) {
    uint64_t n = st_dtype_size(s->dt);
    for (int d = 0; d < s->ndim; d++) n *= (uint64_t)s->shape[d];
    return n;
}

/* Writes specs to path; order 0 = declaration order, 1 = reverse, 2 = in 3-byte chunks. */
static int write_specs(const char *path, unsigned flags, int order, err_t *e) {
    st_writer *w;
    if (st_writer_new(&w, path, flags, e)) return -1;
    if (st_writer_meta(w, "format", "test", e) || st_writer_meta(w, "note", "caf\xc3\xa9 \"q\" \\ \n tab\t", e)) goto fail;
    for (int i = 0; i < NSPECS; i++)
        if (st_writer_add(w, specs[i].name, specs[i].dt, specs[i].ndim, specs[i].shape, e) != i) goto fail;
    if (st_writer_begin(w, e)) goto fail;
    for (int j = 0; j < NSPECS; j++) {
        int i = order == 1 ? NSPECS - 1 - j : j;
        size_t n = (size_t)nbytes_of(&specs[i]);
        uint8_t *buf = malloc(n + 1);
        fill(buf, n, i);
        int rc = 0;
        if (order == 2) {
            for (size_t o = 0; o < n && !rc; o += 3) rc = st_writer_write(w, i, buf + o, n - o < 3 ? n - o : 3, e);
        } else {
            rc = st_writer_write(w, i, buf, n, e);
        }
        free(buf);
        if (rc) goto fail;
    }
    return st_writer_commit(w, e);
fail:
    st_writer_abort(w);
    return -1;
}

static void check_specs(const char *path, int with_sums) {
    err_t e = {0};
    st_file *f;
    if (!CHECK(st_open(&f, path, &e) == 0)) {
        FAIL("%s", e.msg);
        return;
    }
    CHECK_STR(st_meta(f, "format"), "test");
    CHECK_STR(st_meta(f, "note"), "caf\xc3\xa9 \"q\" \\ \n tab\t");
    CHECK(st_meta(f, "absent") == NULL);
    CHECK_INT(st_data_start(f) % ST_ALIGN, 0);
    int real = 0;
    uint64_t prev_end = 0;
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        CHECK_INT(t->begin, prev_end); /* file order, contiguous */
        prev_end = t->end;
        if (st_is_padding(t->name)) {
            CHECK(t->dtype == ST_U8 && t->nbytes > 0 && t->nbytes < ST_ALIGN);
            continue;
        }
        real++;
        CHECK_INT(t->file_offset % ST_ALIGN, 0);
        CHECK_INT((uintptr_t)t->data % ST_ALIGN, 0);
    }
    CHECK_INT(real, NSPECS);
    CHECK_INT(prev_end + st_data_start(f), st_file_size(f));
    json_t *sums = NULL;
    if (with_sums) {
        const char *s = st_meta(f, "checksums");
        CHECK(s != NULL);
        sums = s ? json_loads(s, 0, NULL) : NULL;
        CHECK(json_is_object(sums));
        CHECK_INT(json_object_size(sums), NSPECS);
        char hx[17];
        st_hex64(st_header_checksum(f), hx);
        CHECK_STR(st_meta(f, "header_checksum"), hx);
    } else {
        CHECK(st_meta(f, "checksums") == NULL);
    }
    for (int i = 0; i < NSPECS; i++) {
        const st_tensor *t = st_find(f, specs[i].name);
        if (!CHECK(t != NULL)) continue;
        CHECK_STR(t->name, specs[i].name);
        CHECK_INT(t->dtype, specs[i].dt);
        CHECK_INT(t->ndim, specs[i].ndim);
        for (int d = 0; d < t->ndim; d++) CHECK_INT(t->shape[d], specs[i].shape[d]);
        CHECK_INT(t->nbytes, nbytes_of(&specs[i]));
        uint8_t *want = malloc(t->nbytes + 1);
        fill(want, t->nbytes, i);
        CHECK(memcmp(want, t->data, t->nbytes) == 0);
        if (sums) {
            char hx[17];
            st_hex64(st_hash(want, t->nbytes), hx);
            CHECK_STR(json_string_value(json_object_get(sums, specs[i].name)), hx);
        }
        free(want);
    }
    json_decref(sums);
    st_close(f);
}

TEST(st_round_trip_all_dtypes_aligned) {
    err_t e = {0};
    const char *p = th_tmp("a.safetensors");
    if (!CHECK(write_specs(p, ST_W_CHECKSUMS, 0, &e) == 0)) FAIL("%s", e.msg);
    check_specs(p, 1);
    CHECK_INT(count_files(th_tmpdir()), 1); /* no temporary file left */
    const char *q = th_tmp("b.safetensors");
    if (!CHECK(write_specs(q, 0, 0, &e) == 0)) FAIL("%s", e.msg);
    check_specs(q, 0);
}

TEST(st_round_trip_any_order_and_chunks) {
    err_t e = {0};
    const char *p = th_tmp("rev.safetensors"), *q = th_tmp("chunks.safetensors");
    if (!CHECK(write_specs(p, ST_W_CHECKSUMS, 1, &e) == 0)) FAIL("%s", e.msg);
    check_specs(p, 1);
    if (!CHECK(write_specs(q, ST_W_CHECKSUMS, 2, &e) == 0)) FAIL("%s", e.msg);
    check_specs(q, 1);
    /* Same content, same layout: the files are byte-identical whatever the write order. */
    size_t la, lb;
    char *a = th_read_file(p, &la), *b = th_read_file(q, &lb);
    CHECK(a && b && la == lb && memcmp(a, b, la) == 0);
    free(a), free(b);
}

TEST(st_empty_file_is_valid) {
    err_t e = {0};
    const char *p = th_tmp("empty.safetensors");
    st_writer *w;
    CHECK(st_writer_new(&w, p, ST_W_CHECKSUMS, &e) == 0);
    CHECK(st_writer_begin(w, &e) == 0);
    CHECK(st_writer_commit(w, &e) == 0);
    st_file *f;
    if (!CHECK(st_open(&f, p, &e) == 0)) return (void)FAIL("%s", e.msg);
    CHECK_INT(st_count(f), 0);
    CHECK_STR(st_meta(f, "checksums"), "{}");
    st_close(f);
}

/* The header is exactly what Hugging Face's writer would accept: a JSON object padded with spaces. */
TEST(st_header_bytes_are_plain_json) {
    err_t e = {0};
    const char *p = th_tmp("h.safetensors");
    CHECK(write_specs(p, ST_W_CHECKSUMS, 0, &e) == 0);
    size_t len;
    unsigned char *b = (unsigned char *)th_read_file(p, &len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    CHECK((8 + n) % 64 == 0);
    CHECK(b[8] == '{');
    size_t end = 8 + (size_t)n;
    while (end > 8 && b[end - 1] == ' ') end--;
    CHECK(b[end - 1] == '}');
    json_error_t je;
    json_t *j = json_loadb((char *)b + 8, end - 8, JSON_REJECT_DUPLICATES, &je);
    CHECK(json_is_object(j));
    json_decref(j);
    free(b);
}

typedef struct {
    st_writer *w;
    int first, fails;
} mt_ctx;

/* Plain threads, each writing every fourth tensor, so the writer's locking is what is tested. */
static void *mt_write(void *ctx) {
    mt_ctx *c = ctx;
    for (int i = c->first; i < 64; i += 4) {
        uint8_t buf[1000];
        fill(buf, sizeof buf, i);
        err_t e = {0};
        for (int k = 0; k < 4; k++)
            if (st_writer_write(c->w, i, buf + 250 * k, 250, &e)) c->fails++;
    }
    return NULL;
}

TEST(st_parallel_writes) {
    err_t e = {0};
    const char *p = th_tmp("mt.safetensors");
    st_writer *w;
    CHECK(st_writer_new(&w, p, ST_W_CHECKSUMS, &e) == 0);
    char name[32];
    int64_t shape[1] = {1000};
    for (int i = 0; i < 64; i++) {
        snprintf(name, sizeof name, "t%02d", i);
        CHECK_INT(st_writer_add(w, name, ST_U8, 1, shape, &e), i);
    }
    CHECK(st_writer_begin(w, &e) == 0);
    pthread_t th[4];
    mt_ctx c[4];
    for (int i = 0; i < 4; i++) {
        c[i] = (mt_ctx){w, i, 0};
        pthread_create(&th[i], NULL, mt_write, &c[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(c[i].fails, 0);
    }
    if (!CHECK(st_writer_commit(w, &e) == 0)) return (void)FAIL("%s", e.msg);
    st_file *f;
    CHECK(st_open(&f, p, &e) == 0);
    json_t *sums = json_loads(st_meta(f, "checksums"), 0, NULL);
    for (int i = 0; i < 64; i++) {
        snprintf(name, sizeof name, "t%02d", i);
        const st_tensor *t = st_find(f, name);
        uint8_t buf[1000];
        fill(buf, sizeof buf, i);
        CHECK(t && memcmp(t->data, buf, 1000) == 0);
        char hx[17];
        st_hex64(st_hash(buf, 1000), hx);
        CHECK_STR(json_string_value(json_object_get(sums, name)), hx);
    }
    json_decref(sums);
    st_close(f);
}

TEST(st_refuses_to_overwrite) {
    err_t e = {0};
    const char *p = th_tmp("x.safetensors");
    th_write_file(p, "keep", 4);
    st_writer *w;
    CHECK(st_writer_new(&w, p, 0, &e) == -1);
    CHECK_CONTAINS(e.msg, "file exists");
    CHECK_CONTAINS(e.msg, "x.safetensors");
    /* Created by someone else while we wrote: commit still refuses. */
    const char *q = th_tmp("y.safetensors");
    CHECK(st_writer_new(&w, q, 0, &e) == 0);
    CHECK(st_writer_begin(w, &e) == 0);
    th_write_file(q, "other", 5);
    CHECK(st_writer_commit(w, &e) == -1);
    CHECK_CONTAINS(e.msg, "refusing to overwrite");
    size_t n;
    char *s = th_read_file(q, &n);
    CHECK_STR(s, "other");
    free(s);
    CHECK_INT(count_files(th_tmpdir()), 2);
    /* Asked to: replaced. */
    CHECK(write_specs(p, ST_W_OVERWRITE | ST_W_CHECKSUMS, 0, &e) == 0);
    check_specs(p, 1);
    CHECK_INT(count_files(th_tmpdir()), 2);
}

TEST(st_writer_misuse_is_reported_and_leaves_nothing) {
    err_t e = {0};
    const char *p = th_tmp("m.safetensors");
    st_writer *w;
    int64_t sh[2] = {4, 4};
    CHECK(st_writer_new(&w, th_tmp("nodir/m.safetensors"), 0, &e) == -1);
    CHECK_CONTAINS(e.msg, "nodir");
    CHECK(st_writer_new(&w, p, ST_W_CHECKSUMS, &e) == 0);
    CHECK(st_writer_add(w, "", ST_F32, 2, sh, &e) == -1);
    CHECK(st_writer_add(w, "__pad__.0", ST_F32, 2, sh, &e) == -1);
    CHECK_CONTAINS(e.msg, "reserved");
    CHECK(st_writer_add(w, "bad\xff", ST_F32, 2, sh, &e) == -1);
    CHECK_CONTAINS(e.msg, "UTF-8");
    int64_t neg[1] = {-1};
    CHECK(st_writer_add(w, "neg", ST_F32, 1, neg, &e) == -1);
    int64_t huge[2] = {INT64_MAX, 4};
    CHECK(st_writer_add(w, "huge", ST_F32, 2, huge, &e) == -1);
    CHECK(st_writer_meta(w, "checksums", "x", &e) == -1);
    CHECK(st_writer_meta(w, "k", "v", &e) == 0);
    CHECK(st_writer_meta(w, "k", "v2", &e) == -1);
    CHECK_CONTAINS(e.msg, "twice");
    CHECK_INT(st_writer_add(w, "a", ST_F32, 2, sh, &e), 0);
    CHECK_INT(st_writer_add(w, "b", ST_F32, 2, sh, &e), 1);
    CHECK(st_writer_write(w, 0, "x", 1, &e) == -1); /* before begin */
    CHECK(st_writer_begin(w, &e) == 0);
    CHECK(exists(st_writer_temp_path(w)));
    CHECK_CONTAINS(st_writer_temp_path(w), "m.safetensors.ernie-partial-");
    CHECK(st_writer_add(w, "c", ST_F32, 2, sh, &e) == -1);
    float buf[17] = {0};
    CHECK(st_writer_write(w, 0, buf, 68, &e) == -1); /* too long */
    CHECK_CONTAINS(e.msg, "'a'");
    CHECK(st_writer_write(w, 2, buf, 4, &e) == -1); /* no such tensor */
    CHECK(st_writer_write(w, 0, buf, 64, &e) == 0);
    CHECK(st_writer_write(w, 1, buf, 32, &e) == 0);
    CHECK(st_writer_commit(w, &e) == -1); /* b is half written */
    CHECK_CONTAINS(e.msg, "tensor 'b': only 32 of 64 bytes");
    CHECK_INT(count_files(th_tmpdir()), 0);
    /* Duplicate names are found at begin. */
    CHECK(st_writer_new(&w, p, 0, &e) == 0);
    CHECK(st_writer_add(w, "a", ST_F32, 2, sh, &e) == 0);
    CHECK(st_writer_add(w, "a", ST_F32, 2, sh, &e) == 1);
    CHECK(st_writer_begin(w, &e) == -1);
    CHECK_CONTAINS(e.msg, "'a' declared twice");
    st_writer_abort(w);
    /* Abort after begin removes the temporary file. */
    CHECK(st_writer_new(&w, p, 0, &e) == 0);
    CHECK(st_writer_add(w, "a", ST_F32, 2, sh, &e) == 0);
    CHECK(st_writer_begin(w, &e) == 0);
    CHECK(st_writer_write(w, 0, buf, 64, &e) == 0);
    st_writer_abort(w);
    CHECK_INT(count_files(th_tmpdir()), 0);
}

/* A full disk, simulated with a file size limit: the error names the file and nothing is left. */
TEST(st_full_disk_leaves_nothing) {
    err_t e = {0};
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {100000, 100000};
    setrlimit(RLIMIT_FSIZE, &rl);
    const char *p = th_tmp("big.safetensors");
    st_writer *w;
    CHECK(st_writer_new(&w, p, 0, &e) == 0);
    int64_t sh[1] = {200000};
    CHECK(st_writer_add(w, "big", ST_U8, 1, sh, &e) == 0);
    int rc = st_writer_begin(w, &e);
    if (rc == 0) { /* reserving space did not fail (filesystem without fallocate): the write will */
        uint8_t *buf = calloc(1, 200000);
        rc = st_writer_write(w, 0, buf, 200000, &e);
        free(buf);
    }
    CHECK(rc == -1);
    CHECK_CONTAINS(e.msg, "big.safetensors");
    st_writer_abort(w);
    CHECK_INT(count_files(th_tmpdir()), 0);
}

/* ---- malformed input ---------------------------------------------------------------------------- */

/* Writes 8-byte length + header + ndata bytes, then opens it. Returns the error message (static). */
static const char *open_bad(const char *header, size_t ndata, uint64_t force_len, int *rc_out) {
    static err_t e;
    err_clear(&e);
    size_t hl = strlen(header);
    size_t n = 8 + hl + ndata;
    uint8_t *b = calloc(1, n + 1);
    uint64_t L = force_len ? force_len : hl;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(L >> (8 * i));
    memcpy(b + 8, header, hl);
    const char *p = th_tmp("bad.safetensors");
    th_write_file(p, b, n);
    st_file *f = NULL;
    int rc = st_open(&f, p, &e);
    /* The in-memory path must agree with the file path. */
    st_file *g = NULL;
    err_t e2 = {0};
    int rc2 = st_open_memory(&g, b, n, p, &e2);
    if (rc != rc2 || strcmp(e.msg, e2.msg)) FAIL("file and memory readers disagree: '%s' vs '%s'", e.msg, e2.msg);
    st_close(f);
    st_close(g);
    free(b);
    if (rc_out) *rc_out = rc;
    return e.msg;
}

#define BAD(hdr, ndata, needle)                                                                         \
    do {                                                                                                \
        int rc_;                                                                                        \
        const char *m_ = open_bad(hdr, ndata, 0, &rc_);                                                 \
        CHECK_INT(rc_, -1);                                                                             \
        CHECK_CONTAINS(m_, needle);                                                                     \
        CHECK_CONTAINS(m_, "bad.safetensors");                                                          \
    } while (0)

TEST(st_rejects_malformed_headers) {
    BAD("not json", 0, "not valid JSON");
    BAD("[1,2]", 0, "not a JSON object");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{}}", 4, "not valid JSON");
    BAD("{\"a\":5}", 0, "tensor 'a': entry is not a JSON object");
    BAD("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'a': missing or non-string \"dtype\"");
    BAD("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "dtype 'F8_E4M3' is not supported");
    BAD("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "'a': missing or non-array \"shape\"");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0] is not a non-negative integer");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "shape[0] is not a non-negative integer");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "9 dimensions");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "array of two integers");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "array of two integers");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "non-negative");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "end before they begin");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,4]}}", 4, "overflows");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}", 4, "not valid JSON");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "hold 4 bytes but F32 with 2 elements needs 8");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "data ends at byte 8 of the data section, which has only 4");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
        "tensor 'b' (bytes 4..8) overlaps tensor 'a'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "bytes 0..4 of the data section belong to no tensor");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12, "8 bytes follow the last tensor");
    BAD("{\"__metadata__\":{\"k\":5}}", 0, "metadata value of 'k' is not a string");
    BAD("{\"__metadata__\":[1]}", 0, "\"__metadata__\" is not a JSON object");
    BAD("{\"\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, "empty name");
    BAD("{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, "not valid JSON");
    BAD("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, "not valid JSON");
    BAD("{", 0, "too small");
    /* Lengths: longer than the file, absurd, tiny file. */
    int rc;
    CHECK_CONTAINS(open_bad("{}", 0, 3, &rc), "runs past the end of the file");
    CHECK_CONTAINS(open_bad("{}", 0, (uint64_t)1 << 40, &rc), "above the 100 MB limit");
    CHECK_CONTAINS(open_bad("{}", 0, UINT64_MAX, &rc), "above the 100 MB limit");
    err_t e = {0};
    th_write_file(th_tmp("short"), "abc", 3);
    st_file *f;
    CHECK(st_open(&f, th_tmp("short"), &e) == -1);
    CHECK_CONTAINS(e.msg, "3 bytes is too short");
    th_write_file(th_tmp("zero"), "", 0);
    CHECK(st_open(&f, th_tmp("zero"), &e) == -1);
    CHECK_CONTAINS(e.msg, "0 bytes is too short");
    CHECK(st_open(&f, th_tmp("missing"), &e) == -1);
    CHECK_CONTAINS(e.msg, "No such file");
    CHECK(st_open(&f, th_tmpdir(), &e) == -1);
    CHECK_CONTAINS(e.msg, "not a regular file");
    /* Accepted oddities: trailing spaces, unknown keys in an entry, zero-size tensors anywhere. */
    CHECK(open_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0],\"x\":1}}      ", 0, 0, &rc) && rc == 0);
}

/* Every truncation of a valid file is refused with a clear message, never a crash. */
TEST(st_truncated_files) {
    err_t e = {0};
    const char *p = th_tmp("t.safetensors");
    CHECK(write_specs(p, ST_W_CHECKSUMS, 0, &e) == 0);
    size_t n;
    char *b = th_read_file(p, &n);
    for (size_t cut = 0; cut < n; cut += (cut < 600 ? 1 : 7)) {
        st_file *f = NULL;
        if (st_open_memory(&f, b, cut, "t.safetensors", &e) == 0) {
            FAIL("a file cut to %zu of %zu bytes was accepted", cut, n);
            st_close(f);
            break;
        }
        if (!strstr(e.msg, "t.safetensors")) FAIL("message does not name the file: %s", e.msg);
    }
    st_file *f = NULL;
    CHECK(st_open_memory(&f, b, n - 1, "t.safetensors", &e) == -1);
    CHECK_CONTAINS(e.msg, "truncated");
    free(b);
}

/* Random single-byte corruptions of the header: either a clean error or a valid parse. */
TEST(st_corrupted_headers_never_crash) {
    err_t e = {0};
    const char *p = th_tmp("c.safetensors");
    CHECK(write_specs(p, 0, 0, &e) == 0);
    size_t n;
    char *b = th_read_file(p, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | (uint8_t)b[i];
    uint32_t s = 12345;
    for (int it = 0; it < 3000; it++) {
        char *c = malloc(n);
        memcpy(c, b, n);
        s = s * 1664525u + 1013904223u;
        size_t pos = (s >> 8) % (8 + hl);
        s = s * 1664525u + 1013904223u;
        c[pos] = (char)(s >> 24);
        st_file *f = NULL;
        if (st_open_memory(&f, c, n, "c", &e) == 0) {
            for (int i = 0; i < st_count(f); i++) {
                const st_tensor *t = st_at(f, i);
                if (t->file_offset + t->nbytes > n) FAIL("tensor %s runs past the buffer", t->name);
            }
            st_close(f);
        } else if (!e.msg[0]) {
            FAIL("an error without a message");
        }
        free(c);
    }
    free(b);
}

/* A file written by Hugging Face's own writer (safetensors 0.8.0, torch save_file; kept with the fuzz
 * seeds): unaligned offsets, tensors sorted by dtype, a zero-size and a scalar tensor. */
TEST(st_reads_hugging_face_writer_output) {
    err_t e = {0};
    st_file *f;
    if (!CHECK(st_open(&f, "tests/fuzz/corpus/fuzz_safetensors/hf-written.safetensors", &e) == 0)) return (void)FAIL("%s", e.msg);
    CHECK_STR(st_meta(f, "format"), "pt");
    CHECK_INT(st_count(f), 5);
    const st_tensor *b = st_find(f, "b"), *a = st_find(f, "a"), *c = st_find(f, "c"), *d = st_find(f, "d"), *x = st_find(f, "e");
    if (!CHECK(a && b && c && d && x)) return;
    CHECK(b->dtype == ST_F32 && b->ndim == 2 && b->shape[0] == 2 && b->shape[1] == 3);
    for (int i = 0; i < 6; i++) {
        float v;
        memcpy(&v, (const char *)b->data + 4 * i, 4);
        CHECK(v == (float)i);
    }
    uint16_t h;
    memcpy(&h, a->data, 2);
    CHECK(a->dtype == ST_BF16 && a->numel == 5 && h == 0x3f80);
    CHECK(c->dtype == ST_I8 && !memcmp(c->data, "\x01\x02\x03", 3));
    CHECK(d->dtype == ST_F16 && d->numel == 0 && d->nbytes == 0 && d->ndim == 2);
    int64_t seven;
    memcpy(&seven, x->data, 8);
    CHECK(x->dtype == ST_I64 && x->ndim == 0 && x->numel == 1 && seven == 7);
    st_close(f);
}
