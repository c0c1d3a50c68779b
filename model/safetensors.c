/* model/safetensors.c: reading and writing safetensors files.
 *
 * Must never trust a number from the file before checking it against the file size, never print,
 * and never leave a partial output file under the target name. The JSON header is parsed with
 * jansson (duplicate keys rejected); the header we write is serialised here by hand, because commit
 * patches checksum placeholders in place and needs the byte layout under its control. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* ---- dtypes ----------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
} dtypes[ST_NDTYPES] = {
    [ST_F64] = {"F64", 8}, [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2},  [ST_BF16] = {"BF16", 2},
    [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4}, [ST_I16] = {"I16", 2},  [ST_I8] = {"I8", 1},
    [ST_U8] = {"U8", 1},   [ST_U16] = {"U16", 2}, [ST_U32] = {"U32", 4}, [ST_U64] = {"U64", 8},
    [ST_BOOL] = {"BOOL", 1},
};

const char *st_dtype_name(st_dtype t) { return (unsigned)t < ST_NDTYPES ? dtypes[t].name : "?"; }
size_t st_dtype_size(st_dtype t) { return (unsigned)t < ST_NDTYPES ? dtypes[t].size : 0; }

int st_dtype_parse(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (!strcmp(s, dtypes[i].name)) {
            *out = (st_dtype)i;
            return 0;
        }
    return -1;
}

int st_is_padding(const char *name) { return strncmp(name, ST_PAD_PREFIX, strlen(ST_PAD_PREFIX)) == 0; }

uint64_t st_hash(const void *data, size_t len) { return XXH3_64bits(data, len); }

void st_hex64(uint64_t v, char *buf) {
    static const char hx[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4) buf[i] = hx[v & 15];
    buf[16] = 0;
}

/* Element count and byte size of a shape, refusing overflow. */
static int shape_size(int ndim, const int64_t *shape, st_dtype dt, uint64_t *numel, uint64_t *nbytes) {
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return -1;
    }
    uint64_t b;
    if (__builtin_mul_overflow(n, (uint64_t)st_dtype_size(dt), &b)) return -1;
    *numel = n;
    *nbytes = b;
    return 0;
}

/* The canonical header checksum over sorted metadata and tensors in file order (see the header). */
static uint64_t header_checksum(int nmeta, char *const *keys, char *const *vals, int nt, const st_tensor *t) {
    XXH3_state_t *s = XXH3_createState();
    if (!s) return 0;
    XXH3_64bits_reset(s);
    static const char nul = 0;
    for (int i = 0; i < nmeta; i++) {
        if (!strcmp(keys[i], "header_checksum")) continue;
        XXH3_64bits_update(s, keys[i], strlen(keys[i]));
        XXH3_64bits_update(s, &nul, 1);
        XXH3_64bits_update(s, vals[i], strlen(vals[i]));
        XXH3_64bits_update(s, &nul, 1);
    }
    char buf[64];
    for (int i = 0; i < nt; i++) {
        XXH3_64bits_update(s, t[i].name, strlen(t[i].name) + 1);
        XXH3_64bits_update(s, st_dtype_name(t[i].dtype), strlen(st_dtype_name(t[i].dtype)) + 1);
        for (int d = 0; d < t[i].ndim; d++) {
            int n = snprintf(buf, sizeof buf, d ? ",%lld" : "%lld", (long long)t[i].shape[d]);
            XXH3_64bits_update(s, buf, (size_t)n);
        }
        XXH3_64bits_update(s, &nul, 1);
        int n = snprintf(buf, sizeof buf, "%llu", (unsigned long long)t[i].begin);
        XXH3_64bits_update(s, buf, (size_t)n + 1);
        n = snprintf(buf, sizeof buf, "%llu", (unsigned long long)t[i].end);
        XXH3_64bits_update(s, buf, (size_t)n + 1);
    }
    uint64_t h = XXH3_64bits_digest(s);
    XXH3_freeState(s);
    return h;
}

/* ---- reading ---------------------------------------------------------------------------------- */

struct st_file {
    char *path;
    const uint8_t *base;
    size_t size;
    int mapped;
    uint64_t data_start;
    st_tensor *t; /* file order */
    int nt;
    int *by_name; /* indices into t, sorted by name */
    char **keys, **vals;
    int nmeta;
};

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int cmp_offsets(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_names_idx(const void *a, const void *b, void *base) {
    const st_tensor *t = base;
    return strcmp(t[*(const int *)a].name, t[*(const int *)b].name);
}

typedef struct {
    char *k, *v;
} kv;
static int cmp_kv(const void *a, const void *b) { return strcmp(((const kv *)a)->k, ((const kv *)b)->k); }

/* A JSON value as a non-negative integer, or -1. */
static long long json_nonneg(const json_t *v) {
    if (!json_is_integer(v)) return -1;
    long long x = json_integer_value(v);
    return x < 0 ? -1 : x;
}

static int parse_tensor(st_file *f, const char *name, json_t *v, st_tensor *t, uint64_t dlen, err_t *e) {
    const char *P = f->path;
    if (!name[0]) return err_set(e, ERR_FORMAT, "%s: a tensor has an empty name", P);
    if (!json_is_object(v)) return err_set(e, ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", P, name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"), *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd)) return err_set(e, ERR_FORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", P, name);
    if (st_dtype_parse(json_string_value(jd), &t->dtype))
        return err_set(e, ERR_UNSUPPORTED, "%s: tensor '%s': dtype '%.32s' is not supported", P, name, json_string_value(jd));
    if (!json_is_array(js)) return err_set(e, ERR_FORMAT, "%s: tensor '%s': missing or non-array \"shape\"", P, name);
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS)
        return err_set(e, ERR_UNSUPPORTED, "%s: tensor '%s': %zu dimensions (at most %d are supported)", P, name, nd, ST_MAX_DIMS);
    t->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        long long d = json_nonneg(json_array_get(js, i));
        if (d < 0) return err_set(e, ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer", P, name, i);
        t->shape[i] = d;
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return err_set(e, ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be an array of two integers", P, name);
    long long b = json_nonneg(json_array_get(jo, 0)), en = json_nonneg(json_array_get(jo, 1));
    if (b < 0 || en < 0)
        return err_set(e, ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be non-negative integers", P, name);
    if (en < b) return err_set(e, ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] end before they begin", P, name, b, en);
    if (shape_size(t->ndim, t->shape, t->dtype, &t->numel, &t->nbytes))
        return err_set(e, ERR_FORMAT, "%s: tensor '%s': shape is too large (element count overflows)", P, name);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)en;
    if (t->end - t->begin != t->nbytes)
        return err_set(e, ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] hold %llu bytes but %s with %llu elements needs %llu",
                       P, name, b, en, (unsigned long long)(t->end - t->begin), st_dtype_name(t->dtype),
                       (unsigned long long)t->numel, (unsigned long long)t->nbytes);
    if (t->end > dlen)
        return err_set(e, ERR_FORMAT, "%s: tensor '%s': data ends at byte %llu of the data section, which has only %llu bytes (truncated file?)",
                       P, name, (unsigned long long)t->end, (unsigned long long)dlen);
    t->name = strdup(name);
    if (!t->name) return err_set(e, ERR_NOMEM, "%s: out of memory", P);
    t->file_offset = f->data_start + t->begin;
    t->data = f->base + t->file_offset;
    return 0;
}

static int parse_meta(st_file *f, json_t *m, err_t *e) {
    if (!json_is_object(m)) return err_set(e, ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", f->path);
    size_t n = json_object_size(m);
    kv *list = calloc(n ? n : 1, sizeof *list);
    f->keys = calloc(n ? n : 1, sizeof *f->keys);
    f->vals = calloc(n ? n : 1, sizeof *f->vals);
    if (!list || !f->keys || !f->vals) {
        free(list);
        return err_set(e, ERR_NOMEM, "%s: out of memory", f->path);
    }
    const char *k;
    json_t *v;
    size_t i = 0;
    int rc = 0;
    json_object_foreach(m, k, v) {
        if (!json_is_string(v)) {
            rc = err_set(e, ERR_FORMAT, "%s: metadata value of '%.100s' is not a string", f->path, k);
            break;
        }
        list[i].k = strdup(k);
        list[i].v = strdup(json_string_value(v));
        i++;
        if (!list[i - 1].k || !list[i - 1].v) {
            rc = err_set(e, ERR_NOMEM, "%s: out of memory", f->path);
            break;
        }
    }
    qsort(list, i, sizeof *list, cmp_kv);
    for (size_t j = 0; j < i; j++) {
        f->keys[j] = list[j].k;
        f->vals[j] = list[j].v;
    }
    f->nmeta = (int)i;
    free(list);
    return rc;
}

static int parse(st_file *f, err_t *e) {
    const char *P = f->path;
    if (f->size < 8)
        return err_set(e, ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file (no 8-byte header length)", P, f->size);
    uint64_t n = le64(f->base);
    if (n > ST_MAX_HEADER)
        return err_set(e, ERR_FORMAT, "%s: header length %llu is above the 100 MB limit (not a safetensors file?)", P,
                       (unsigned long long)n);
    if (n > f->size - 8)
        return err_set(e, ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes): truncated or not a safetensors file",
                       P, (unsigned long long)n, f->size);
    if (n < 2) return err_set(e, ERR_FORMAT, "%s: header length %llu is too small for a JSON object", P, (unsigned long long)n);
    f->data_start = 8 + n;
    uint64_t dlen = f->size - f->data_start;
    json_error_t je;
    json_t *root = json_loadb((const char *)f->base + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    if (!root) return err_set(e, ERR_FORMAT, "%s: header is not valid JSON: %s (at byte %d of the header)", P, je.text, je.position);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = err_set(e, ERR_FORMAT, "%s: header is not a JSON object", P);
        goto out;
    }
    size_t cnt = json_object_size(root);
    f->t = calloc(cnt ? cnt : 1, sizeof *f->t);
    if (!f->t) {
        rc = err_set(e, ERR_NOMEM, "%s: out of memory", P);
        goto out;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (!strcmp(k, "__metadata__")) {
            if ((rc = parse_meta(f, v, e))) goto out;
            continue;
        }
        if ((rc = parse_tensor(f, k, v, &f->t[f->nt], dlen, e))) goto out;
        f->nt++;
    }
    qsort(f->t, (size_t)f->nt, sizeof *f->t, cmp_offsets);
    /* The tensors must tile the data section exactly, as Hugging Face's reader requires. */
    uint64_t pos = 0;
    const char *prev = NULL;
    for (int i = 0; i < f->nt; i++) {
        const st_tensor *t = &f->t[i];
        if (t->begin < pos) {
            rc = err_set(e, ERR_FORMAT, "%s: tensor '%s' (bytes %llu..%llu) overlaps tensor '%s' (ending at %llu)", P, t->name,
                         (unsigned long long)t->begin, (unsigned long long)t->end, prev, (unsigned long long)pos);
            goto out;
        }
        if (t->begin > pos) {
            rc = err_set(e, ERR_FORMAT, "%s: bytes %llu..%llu of the data section belong to no tensor (gap before '%s')", P,
                         (unsigned long long)pos, (unsigned long long)t->begin, t->name);
            goto out;
        }
        if (t->end > pos) {
            pos = t->end;
            prev = t->name;
        }
    }
    if (pos != dlen) {
        rc = err_set(e, ERR_FORMAT, "%s: %llu bytes follow the last tensor's data (the tensors cover %llu of %llu data bytes)", P,
                     (unsigned long long)(dlen - pos), (unsigned long long)pos, (unsigned long long)dlen);
        goto out;
    }
    f->by_name = calloc((size_t)f->nt + 1, sizeof *f->by_name);
    if (!f->by_name) {
        rc = err_set(e, ERR_NOMEM, "%s: out of memory", P);
        goto out;
    }
    for (int i = 0; i < f->nt; i++) f->by_name[i] = i;
    qsort_r(f->by_name, (size_t)f->nt, sizeof *f->by_name, cmp_names_idx, f->t);
out:
    json_decref(root);
    return rc;
}

static int finish_open(st_file *f, st_file **out, err_t *e) {
    if (parse(f, e)) {
        st_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

int st_open_memory(st_file **out, const void *buf, size_t len, const char *label, err_t *e) {
    *out = NULL;
    st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(label ? label : "(memory)"))) {
        free(f);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    f->base = buf;
    f->size = len;
    return finish_open(f, out, e);
}

int st_open(st_file **out, const char *path, err_t *e) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int er = errno;
        close(fd);
        return err_set(e, ERR_IO, "%s: %s", path, strerror(er));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return err_set(e, ERR_IO, "%s: not a regular file", path);
    }
    st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        close(fd);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    f->size = (size_t)sb.st_size;
    if (f->size >= 8) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            int er = errno;
            close(fd);
            st_close(f);
            return err_set(e, ERR_IO, "%s: cannot map the file: %s", path, strerror(er));
        }
        f->base = m;
        f->mapped = 1;
    }
    close(fd);
    return finish_open(f, out, e);
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->mapped) munmap((void *)f->base, f->size);
    for (int i = 0; i < f->nt; i++) free((char *)f->t[i].name);
    for (int i = 0; i < f->nmeta; i++) {
        free(f->keys[i]);
        free(f->vals[i]);
    }
    free(f->keys);
    free(f->vals);
    free(f->t);
    free(f->by_name);
    free(f->path);
    free(f);
}

const char *st_path(const st_file *f) { return f->path; }
uint64_t st_file_size(const st_file *f) { return f->size; }
uint64_t st_data_start(const st_file *f) { return f->data_start; }
const uint8_t *st_bytes(const st_file *f) { return f->base; }
int st_count(const st_file *f) { return f->nt; }
const st_tensor *st_at(const st_file *f, int i) { return i >= 0 && i < f->nt ? &f->t[i] : NULL; }

const st_tensor *st_find(const st_file *f, const char *name) {
    int lo = 0, hi = f->nt - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->t[f->by_name[mid]].name, name);
        if (!c) return &f->t[f->by_name[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

int st_meta_count(const st_file *f) { return f->nmeta; }

void st_meta_at(const st_file *f, int i, const char **key, const char **value) {
    *key = i >= 0 && i < f->nmeta ? f->keys[i] : NULL;
    *value = i >= 0 && i < f->nmeta ? f->vals[i] : NULL;
}

const char *st_meta(const st_file *f, const char *key) {
    int lo = 0, hi = f->nmeta - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->keys[mid], key);
        if (!c) return f->vals[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

uint64_t st_header_checksum(const st_file *f) { return header_checksum(f->nmeta, f->keys, f->vals, f->nt, f->t); }

/* ---- writing ---------------------------------------------------------------------------------- */

typedef struct {
    st_tensor t;
    int is_pad;
    int busy;
    uint64_t written;
    XXH3_state_t *h;
    uint64_t digest;
} wtensor;

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} sbuf;

enum { W_DECLARING, W_WRITING, W_DONE };

struct st_writer {
    char *path, *tmp;
    unsigned flags;
    int state;
    int fd;
    pthread_mutex_t mu;
    wtensor *t; /* declared tensors and, after begin, the pads between them, in file order */
    int nt, cap;
    int *user; /* user index -> position in t */
    int nuser;
    kv *meta;
    int nmeta, capmeta;
    uint64_t header_len; /* 8 + JSON + spaces */
    uint64_t total;
    int failed;
    err_t fail;
};

static void sb_add(sbuf *s, const char *p, size_t n) {
    if (s->oom) return;
    if (s->len + n + 1 > s->cap) {
        size_t c = s->cap ? s->cap : 4096;
        while (s->len + n + 1 > c) c *= 2;
        char *nb = realloc(s->buf, c);
        if (!nb) {
            s->oom = 1;
            return;
        }
        s->buf = nb;
        s->cap = c;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = 0;
}
static void sb_str(sbuf *s, const char *p) { sb_add(s, p, strlen(p)); }

/* A JSON string literal: quotes, backslashes and control characters escaped, UTF-8 passed through. */
static void sb_json(sbuf *s, const char *p) {
    sb_add(s, "\"", 1);
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sb_add(s, esc, 2);
        } else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_add(s, esc, 6);
        } else {
            sb_add(s, (const char *)&c, 1);
        }
    }
    sb_add(s, "\"", 1);
}

/* Strict UTF-8 (no overlongs, no surrogates), as JSON readers demand. */
static int valid_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int n;
        unsigned min;
        if (c < 0x80) { p++; continue; }
        if ((c & 0xe0) == 0xc0) { n = 1; min = 0x80; c &= 0x1f; }
        else if ((c & 0xf0) == 0xe0) { n = 2; min = 0x800; c &= 0x0f; }
        else if ((c & 0xf8) == 0xf0) { n = 3; min = 0x10000; c &= 0x07; }
        else return 0;
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) return 0;
            c = c << 6 | (p[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
        p += n + 1;
    }
    return 1;
}

int st_writer_new(st_writer **out, const char *path, unsigned flags, err_t *e) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return err_set(e, ERR_IO, "%s: is a directory", path);
        if (!(flags & ST_W_OVERWRITE)) return err_set(e, ERR_IO, "%s: file exists; refusing to overwrite it", path);
    }
    char *dir = strdup(path);
    if (!dir) return err_set(e, ERR_NOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
    if (stat(d, &sb) != 0) {
        err_set(e, ERR_IO, "%s: folder %s: %s", path, d, strerror(errno));
        free(dir);
        return -1;
    }
    if (!S_ISDIR(sb.st_mode)) {
        err_set(e, ERR_IO, "%s: %s is not a folder", path, d);
        free(dir);
        return -1;
    }
    free(dir);
    st_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    w->flags = flags;
    w->fd = -1;
    pthread_mutex_init(&w->mu, NULL);
    *out = w;
    return 0;
}

int st_writer_meta(st_writer *w, const char *key, const char *value, err_t *e) {
    if (w->state != W_DECLARING) return err_set(e, ERR_ARG, "%s: metadata '%s' added after the header was written", w->path, key);
    if (!valid_utf8(key) || !valid_utf8(value))
        return err_set(e, ERR_ARG, "%s: metadata '%s': not valid UTF-8", w->path, key);
    if ((w->flags & ST_W_CHECKSUMS) && (!strcmp(key, "checksums") || !strcmp(key, "header_checksum")))
        return err_set(e, ERR_ARG, "%s: metadata key '%s' is reserved for the writer's checksums", w->path, key);
    for (int i = 0; i < w->nmeta; i++)
        if (!strcmp(w->meta[i].k, key)) return err_set(e, ERR_ARG, "%s: metadata key '%s' given twice", w->path, key);
    if (w->nmeta == w->capmeta) {
        int c = w->capmeta ? 2 * w->capmeta : 16;
        kv *n = realloc(w->meta, sizeof *n * (size_t)c);
        if (!n) return err_set(e, ERR_NOMEM, "out of memory");
        w->meta = n;
        w->capmeta = c;
    }
    kv *m = &w->meta[w->nmeta];
    m->k = strdup(key);
    m->v = strdup(value);
    if (!m->k || !m->v) {
        free(m->k);
        free(m->v);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    w->nmeta++;
    return 0;
}

static int push_tensor(st_writer *w, err_t *e) {
    if (w->nt == w->cap) {
        int c = w->cap ? 2 * w->cap : 64;
        wtensor *n = realloc(w->t, sizeof *n * (size_t)c);
        if (!n) return err_set(e, ERR_NOMEM, "out of memory");
        w->t = n;
        w->cap = c;
    }
    memset(&w->t[w->nt], 0, sizeof w->t[0]);
    return w->nt++;
}

int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape, err_t *e) {
    if (w->state != W_DECLARING) return err_set(e, ERR_ARG, "%s: tensor '%s' declared after the header was written", w->path, name);
    if (!name[0]) return err_set(e, ERR_ARG, "%s: a tensor needs a name", w->path);
    if (!strncmp(name, "__", 2)) return err_set(e, ERR_ARG, "%s: tensor name '%s': names starting with \"__\" are reserved", w->path, name);
    if (!valid_utf8(name)) return err_set(e, ERR_ARG, "%s: tensor name '%s' is not valid UTF-8", w->path, name);
    if ((unsigned)dtype >= ST_NDTYPES) return err_set(e, ERR_ARG, "%s: tensor '%s': bad dtype %d", w->path, name, (int)dtype);
    if (ndim < 0 || ndim > ST_MAX_DIMS)
        return err_set(e, ERR_ARG, "%s: tensor '%s': %d dimensions (0..%d allowed)", w->path, name, ndim, ST_MAX_DIMS);
    /* Duplicate names are caught at begin (sorted), not here: a linear scan per add is quadratic. */
    int i = push_tensor(w, e);
    if (i < 0) return -1;
    st_tensor *t = &w->t[i].t;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    if (shape_size(ndim, t->shape, dtype, &t->numel, &t->nbytes)) {
        w->nt--;
        return err_set(e, ERR_ARG, "%s: tensor '%s': negative or overflowing shape", w->path, name);
    }
    t->name = strdup(name);
    if (!t->name) {
        w->nt--;
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    return w->nuser++;
}

uint64_t st_writer_nbytes(const st_writer *w, int index) {
    if (index < 0 || index >= w->nuser) return 0;
    return w->state == W_DECLARING ? w->t[index].t.nbytes : w->t[w->user[index]].t.nbytes;
}

/* Serialises the header (JSON + alignment spaces, without the 8-byte length). With fill = 0 the
 * checksums are 16 '0' placeholders; with fill = 1 they are the digests. Both have the same length. */
static int build_header(st_writer *w, int fill, sbuf *out, err_t *e) {
    kv *meta = malloc(sizeof *meta * (size_t)(w->nmeta + 2));
    if (!meta) return err_set(e, ERR_NOMEM, "out of memory");
    int nm = 0;
    for (int i = 0; i < w->nmeta; i++) meta[nm++] = w->meta[i];
    sbuf sums = {0};
    char hex[17] = "0000000000000000";
    char hhex[17] = "0000000000000000";
    if (w->flags & ST_W_CHECKSUMS) {
        sb_str(&sums, "{");
        int first = 1;
        for (int i = 0; i < w->nt; i++) {
            if (w->t[i].is_pad) continue;
            if (!first) sb_str(&sums, ",");
            first = 0;
            sb_json(&sums, w->t[i].t.name);
            sb_str(&sums, ":");
            if (fill) st_hex64(w->t[i].digest, hex);
            sb_json(&sums, hex);
        }
        sb_str(&sums, "}");
        if (sums.oom) {
            free(meta);
            free(sums.buf);
            return err_set(e, ERR_NOMEM, "out of memory");
        }
        meta[nm++] = (kv){"checksums", sums.buf};
        meta[nm++] = (kv){"header_checksum", hhex};
    }
    qsort(meta, (size_t)nm, sizeof *meta, cmp_kv);
    if (fill && (w->flags & ST_W_CHECKSUMS)) {
        char **ks = malloc(sizeof *ks * (size_t)nm), **vs = malloc(sizeof *vs * (size_t)nm);
        st_tensor *tt = malloc(sizeof *tt * (size_t)(w->nt ? w->nt : 1));
        if (!ks || !vs || !tt) {
            free(ks), free(vs), free(tt), free(meta), free(sums.buf);
            return err_set(e, ERR_NOMEM, "out of memory");
        }
        for (int i = 0; i < nm; i++) ks[i] = meta[i].k, vs[i] = meta[i].v;
        for (int i = 0; i < w->nt; i++) tt[i] = w->t[i].t;
        st_hex64(header_checksum(nm, ks, vs, w->nt, tt), hhex);
        free(ks), free(vs), free(tt);
    }
    out->len = 0;
    sb_str(out, "{");
    if (nm) {
        sb_str(out, "\"__metadata__\":{");
        for (int i = 0; i < nm; i++) {
            if (i) sb_str(out, ",");
            sb_json(out, meta[i].k);
            sb_str(out, ":");
            sb_json(out, meta[i].v);
        }
        sb_str(out, "}");
    }
    char num[64];
    for (int i = 0; i < w->nt; i++) {
        const st_tensor *t = &w->t[i].t;
        sb_str(out, nm || i ? "," : "");
        sb_json(out, t->name);
        sb_str(out, ":{\"dtype\":");
        sb_json(out, st_dtype_name(t->dtype));
        sb_str(out, ",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)t->shape[d]);
            sb_str(out, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)t->begin, (unsigned long long)t->end);
        sb_str(out, num);
    }
    sb_str(out, "}");
    /* Spaces up to the next multiple of ST_ALIGN, counting the 8-byte length in front. */
    while (!out->oom && (8 + out->len) % ST_ALIGN) sb_add(out, " ", 1);
    free(meta);
    free(sums.buf);
    if (out->oom) return err_set(e, ERR_NOMEM, "out of memory");
    if (out->len > ST_MAX_HEADER) return err_set(e, ERR_ARG, "%s: the header would exceed 100 MB", w->path);
    return 0;
}

static int pwrite_all(int fd, const void *p, size_t n, uint64_t off) {
    const char *c = p;
    while (n) {
        ssize_t r = pwrite(fd, c, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) {
            errno = EIO;
            return -1;
        }
        c += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int write_header(st_writer *w, const sbuf *h, err_t *e) {
    uint8_t len[8];
    uint64_t n = h->len;
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(n >> (8 * i));
    if (pwrite_all(w->fd, len, 8, 0) || pwrite_all(w->fd, h->buf, h->len, 8))
        return err_set(e, ERR_IO, "%s: writing the header: %s", w->tmp, strerror(errno));
    return 0;
}

static int cmp_wnames(const void *a, const void *b, void *base) {
    const wtensor *t = base;
    return strcmp(t[*(const int *)a].t.name, t[*(const int *)b].t.name);
}

int st_writer_begin(st_writer *w, err_t *e) {
    if (w->state != W_DECLARING) return err_set(e, ERR_ARG, "%s: st_writer_begin called twice", w->path);
    /* Duplicate names. */
    int *idx = malloc(sizeof *idx * (size_t)(w->nt ? w->nt : 1));
    if (!idx) return err_set(e, ERR_NOMEM, "out of memory");
    for (int i = 0; i < w->nt; i++) idx[i] = i;
    qsort_r(idx, (size_t)w->nt, sizeof *idx, cmp_wnames, w->t);
    for (int i = 1; i < w->nt; i++)
        if (!strcmp(w->t[idx[i]].t.name, w->t[idx[i - 1]].t.name)) {
            err_set(e, ERR_ARG, "%s: tensor '%s' declared twice", w->path, w->t[idx[i]].t.name);
            free(idx);
            return -1;
        }
    free(idx);
    /* Lay out in declaration order, each tensor at a multiple of ST_ALIGN; fill the gaps with pads. */
    int nuser = w->nt;
    wtensor *decl = w->t;
    w->t = NULL;
    w->nt = w->cap = 0;
    w->user = malloc(sizeof *w->user * (size_t)(nuser ? nuser : 1));
    if (!w->user) {
        w->t = decl, w->nt = nuser;
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    uint64_t off = 0;
    int npad = 0;
    for (int i = 0; i < nuser; i++) {
        uint64_t gap = (ST_ALIGN - off % ST_ALIGN) % ST_ALIGN;
        if (gap) {
            int p = push_tensor(w, e);
            char name[48];
            snprintf(name, sizeof name, ST_PAD_PREFIX "%d", npad++);
            if (p < 0 || !(w->t[p].t.name = strdup(name))) goto oom;
            st_tensor *t = &w->t[p].t;
            t->dtype = ST_U8;
            t->ndim = 1;
            t->shape[0] = (int64_t)gap;
            t->numel = t->nbytes = gap;
            t->begin = off;
            t->end = off + gap;
            w->t[p].is_pad = 1;
            w->t[p].written = gap;
            off += gap;
        }
        int q = push_tensor(w, e);
        if (q < 0) goto oom;
        w->t[q] = decl[i];
        decl[i].t.name = NULL;
        w->t[q].t.begin = off;
        if (__builtin_add_overflow(off, w->t[q].t.nbytes, &off)) goto oom;
        w->t[q].t.end = off;
        w->user[i] = q;
    }
    free(decl);
    decl = NULL;
    w->nuser = nuser;
    sbuf h = {0};
    if (build_header(w, 0, &h, e)) {
        free(h.buf);
        return -1;
    }
    w->header_len = 8 + h.len;
    for (int i = 0; i < w->nt; i++) w->t[i].t.file_offset = w->header_len + w->t[i].t.begin;
    w->total = w->header_len + off;
    /* The temporary name says what it is, so a crashed import's leftover is recognisable. */
    size_t tl = strlen(w->path) + 64;
    w->tmp = malloc(tl);
    if (!w->tmp) {
        free(h.buf);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    snprintf(w->tmp, tl, "%s.ernie-partial-%d", w->path, (int)getpid());
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (w->fd < 0) {
        int er = errno;
        free(h.buf);
        err_set(e, ERR_IO, "%s: cannot create %s: %s", w->path, w->tmp, strerror(er));
        w->tmp[0] = 0;
        return -1;
    }
    w->state = W_WRITING;
    if (fallocate(w->fd, 0, 0, (off_t)w->total) != 0 && errno != EOPNOTSUPP && errno != ENOSYS) {
        int er = errno;
        free(h.buf);
        return err_set(e, ERR_IO, "%s: cannot reserve %llu bytes: %s", w->tmp, (unsigned long long)w->total, strerror(er));
    }
    if (ftruncate(w->fd, (off_t)w->total) != 0) {
        int er = errno;
        free(h.buf);
        return err_set(e, ERR_IO, "%s: cannot size the file to %llu bytes: %s", w->tmp, (unsigned long long)w->total, strerror(er));
    }
    int rc = write_header(w, &h, e);
    free(h.buf);
    return rc;
oom:
    if (decl) {
        for (int i = 0; i < nuser; i++) free((char *)decl[i].t.name);
        free(decl);
    }
    return err_set(e, ERR_NOMEM, "out of memory");
}

const char *st_writer_temp_path(const st_writer *w) { return w->tmp ? w->tmp : ""; }

int st_writer_write(st_writer *w, int index, const void *data, size_t len, err_t *e) {
    pthread_mutex_lock(&w->mu);
    if (w->state != W_WRITING) {
        pthread_mutex_unlock(&w->mu);
        return err_set(e, ERR_ARG, "%s: tensor data written before st_writer_begin", w->path);
    }
    if (w->failed) {
        err_t f = w->fail;
        pthread_mutex_unlock(&w->mu);
        return err_set(e, f.code, "%s", f.msg);
    }
    if (index < 0 || index >= w->nuser) {
        pthread_mutex_unlock(&w->mu);
        return err_set(e, ERR_ARG, "%s: no tensor with index %d", w->path, index);
    }
    wtensor *t = &w->t[w->user[index]];
    if (t->busy) {
        pthread_mutex_unlock(&w->mu);
        return err_set(e, ERR_ARG, "%s: tensor '%s' is being written by another thread", w->path, t->t.name);
    }
    if (len > t->t.nbytes - t->written) {
        pthread_mutex_unlock(&w->mu);
        return err_set(e, ERR_ARG, "%s: tensor '%s': %zu more bytes after %llu would pass its size of %llu", w->path, t->t.name,
                       len, (unsigned long long)t->written, (unsigned long long)t->t.nbytes);
    }
    t->busy = 1;
    uint64_t off = t->t.file_offset + t->written;
    pthread_mutex_unlock(&w->mu);

    int rc = 0;
    if (!t->h) {
        t->h = XXH3_createState();
        if (!t->h) rc = err_set(e, ERR_NOMEM, "out of memory");
        else XXH3_64bits_reset(t->h);
    }
    if (!rc && len && pwrite_all(w->fd, data, len, off))
        rc = err_set(e, ERR_IO, "%s: writing tensor '%s': %s", w->tmp, t->t.name, strerror(errno));
    if (!rc) XXH3_64bits_update(t->h, data, len);

    pthread_mutex_lock(&w->mu);
    t->busy = 0;
    if (rc) {
        if (!w->failed) w->fail = *e;
        w->failed = 1;
    } else {
        t->written += len;
        if (t->written == t->t.nbytes) {
            t->digest = XXH3_64bits_digest(t->h);
            XXH3_freeState(t->h);
            t->h = NULL;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

static void free_writer(st_writer *w) {
    if (w->fd >= 0) close(w->fd);
    for (int i = 0; i < w->nt; i++) {
        free((char *)w->t[i].t.name);
        if (w->t[i].h) XXH3_freeState(w->t[i].h);
    }
    for (int i = 0; i < w->nmeta; i++) {
        free(w->meta[i].k);
        free(w->meta[i].v);
    }
    free(w->meta);
    free(w->t);
    free(w->user);
    free(w->tmp);
    free(w->path);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

void st_writer_abort(st_writer *w) {
    if (!w) return;
    if (w->tmp && w->tmp[0]) unlink(w->tmp);
    free_writer(w);
}

/* Renames without replacing an existing file: renameat2 where the filesystem has it, else a hard
 * link (which fails on an existing name) and unlink. */
static int rename_noreplace(const char *from, const char *to) {
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) return -1;
    if (link(from, to) == 0) {
        unlink(from);
        return 0;
    }
    if (errno == EEXIST) return -1;
    if (access(to, F_OK) == 0) {
        errno = EEXIST;
        return -1;
    }
    return rename(from, to);
}

static void fsync_dir(const char *path) {
    char *d = strdup(path);
    if (!d) return;
    char *s = strrchr(d, '/');
    const char *dir = s ? (s == d ? "/" : (*s = 0, d)) : ".";
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd); /* best effort: some filesystems refuse fsync on folders */
        close(fd);
    }
    free(d);
}

int st_writer_commit(st_writer *w, err_t *e) {
    int rc = 0;
    if (w->state != W_WRITING) {
        rc = err_set(e, ERR_ARG, "%s: commit before st_writer_begin", w->path);
        goto fail;
    }
    if (w->failed) {
        rc = err_set(e, w->fail.code, "%s", w->fail.msg);
        goto fail;
    }
    for (int i = 0; i < w->nt; i++) {
        wtensor *t = &w->t[i];
        if (t->is_pad) continue;
        if (t->written != t->t.nbytes) {
            rc = err_set(e, ERR_ARG, "%s: tensor '%s': only %llu of %llu bytes were written", w->path, t->t.name,
                         (unsigned long long)t->written, (unsigned long long)t->t.nbytes);
            goto fail;
        }
        if (t->t.nbytes == 0) t->digest = XXH3_64bits(NULL, 0);
    }
    if (w->flags & ST_W_CHECKSUMS) {
        sbuf h = {0};
        if (build_header(w, 1, &h, e)) {
            free(h.buf);
            rc = -1;
            goto fail;
        }
        if (8 + h.len != w->header_len) {
            free(h.buf);
            rc = err_set(e, ERR_IO, "%s: internal error: the header changed length when the checksums were filled in", w->path);
            goto fail;
        }
        rc = write_header(w, &h, e);
        free(h.buf);
        if (rc) goto fail;
    }
    if (fsync(w->fd) != 0) {
        rc = err_set(e, ERR_IO, "%s: fsync: %s", w->tmp, strerror(errno));
        goto fail;
    }
    if (close(w->fd) != 0) {
        w->fd = -1;
        rc = err_set(e, ERR_IO, "%s: close: %s", w->tmp, strerror(errno));
        goto fail;
    }
    w->fd = -1;
    if ((w->flags & ST_W_OVERWRITE) ? rename(w->tmp, w->path) : rename_noreplace(w->tmp, w->path)) {
        int er = errno;
        rc = er == EEXIST ? err_set(e, ERR_IO, "%s: file exists (created while we wrote); refusing to overwrite it", w->path)
                          : err_set(e, ERR_IO, "%s: cannot rename %s to it: %s", w->path, w->tmp, strerror(er));
        goto fail;
    }
    fsync_dir(w->path);
    free_writer(w);
    return 0;
fail:
    st_writer_abort(w);
    return rc;
}
