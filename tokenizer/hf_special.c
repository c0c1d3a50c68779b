/* tokenizer/hf_special.c: reads a Hugging Face checkpoint's special-token files into the table
 * tokenizer.c takes (see hf_special.h).
 *
 * These files are outside input: every value is type-checked, every id range-checked, and a file that
 * contradicts another is an error naming both. It must never assume a token's string or id, never
 * print, and never trust a length it has not checked. */
#include "tokenizer/hf_special.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *str;
    int32_t id; /* -1: not given by any file yet */
    int special;
    size_t src; /* index into names: the file that gave the id (or first named the string) */
} cand;

struct hf_special_set {
    cand *v;
    size_t n, cap;
    size_t *slot; /* open-addressing hash of strings: index + 1, 0 = empty */
    size_t nslot;
    char **names;
    size_t nnames;
};

hf_special_set *hf_special_set_new(void) { return calloc(1, sizeof(hf_special_set)); }

void hf_special_set_free(hf_special_set *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) free(s->v[i].str);
    for (size_t i = 0; i < s->nnames; i++) free(s->names[i]);
    free(s->v);
    free(s->slot);
    free(s->names);
    free(s);
}

void hf_special_table_free(hf_special_table *t) {
    for (size_t i = 0; i < t->n; i++) free((char *)t->v[i].str);
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static size_t *lookup_slot(const hf_special_set *s, const char *str) {
    size_t mask = s->nslot - 1;
    for (size_t i = (size_t)hash_str(str) & mask;; i = (i + 1) & mask)
        if (!s->slot[i] || !strcmp(s->v[s->slot[i] - 1].str, str)) return &s->slot[i];
}

static int grow_hash(hf_special_set *s, err_t *err) {
    size_t n = s->nslot ? s->nslot * 2 : 64;
    size_t *old = s->slot, nold = s->nslot;
    s->slot = calloc(n, sizeof *s->slot);
    if (!s->slot) {
        s->slot = old;
        return err_set(err, ERR_NOMEM, "special tokens: out of memory");
    }
    s->nslot = n;
    for (size_t i = 0; i < nold; i++)
        if (old[i]) *lookup_slot(s, s->v[old[i] - 1].str) = old[i];
    free(old);
    return 0;
}

/* Records one token mention: str with id (-1 if the file gives none) from file names[src]. */
static int add(hf_special_set *s, const char *str, json_int_t id, int special, size_t src, const char *where,
               err_t *err) {
    const char *file = s->names[src];
    if (!str[0]) return err_set(err, ERR_FORMAT, "%s: %s: empty token string", file, where);
    if (id < -1 || id > TOK_MAX_ID)
        return err_set(err, ERR_FORMAT, "%s: %s: id %lld is outside 0..%d", file, where, (long long)id, TOK_MAX_ID);
    if (2 * (s->n + 1) > s->nslot && grow_hash(s, err)) return -1;
    size_t *slot = lookup_slot(s, str);
    if (*slot) {
        cand *c = &s->v[*slot - 1];
        if (id >= 0 && c->id >= 0 && c->id != id)
            return err_set(err, ERR_FORMAT, "%s: %s: \"%s\" has id %lld, but %s gives it id %d", file, where, str,
                           (long long)id, s->names[c->src], c->id);
        if (id >= 0 && c->id < 0) {
            c->id = (int32_t)id;
            c->src = src;
        }
        c->special |= special;
        return 0;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        cand *v = realloc(s->v, cap * sizeof *v);
        if (!v) return err_set(err, ERR_NOMEM, "special tokens: out of memory");
        s->v = v;
        s->cap = cap;
    }
    char *copy = strdup(str);
    if (!copy) return err_set(err, ERR_NOMEM, "special tokens: out of memory");
    s->v[s->n] = (cand){copy, (int32_t)id, special, src};
    *slot = ++s->n;
    return 0;
}

/* A token value as transformers writes it: a string, an AddedToken object {"content": ...}, or null
 * (*str = NULL). Anything else is an error. */
static int token_value(const json_t *v, const char **str, const char *file, const char *where, err_t *err) {
    *str = NULL;
    if (json_is_null(v)) return 0;
    if (json_is_string(v)) {
        *str = json_string_value(v);
        return 0;
    }
    if (json_is_object(v)) {
        const json_t *c = json_object_get(v, "content");
        if (json_is_string(c)) {
            *str = json_string_value(c);
            return 0;
        }
        return err_set(err, ERR_FORMAT, "%s: %s: token object has no string \"content\"", file, where);
    }
    return err_set(err, ERR_FORMAT, "%s: %s: expected a token string or object", file, where);
}

/* "special": optional boolean, false when absent (as in transformers' AddedToken). */
static int special_flag(const json_t *obj, int *special, const char *file, const char *where, err_t *err) {
    const json_t *sp = json_object_get(obj, "special");
    *special = 0;
    if (!sp) return 0;
    if (!json_is_boolean(sp)) return err_set(err, ERR_FORMAT, "%s: %s: \"special\" is not true or false", file, where);
    *special = json_is_true(sp);
    return 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a > b && !strcmp(s + a - b, suffix);
}

/* tokenizer_config.json and special_tokens_map.json: named tokens (every "*_token" key holding a token
 * value: bos, eos, unk, pad, cls, sep, mask, sys_start ...), additional_special_tokens, and in the
 * config added_tokens_decoder {"<id>": {"content": ..., "special": ...}}. */
static int read_config(hf_special_set *s, const json_t *root, size_t src, err_t *err) {
    const char *file = s->names[src];
    const char *key;
    const json_t *val;
    char where[160];
    json_object_foreach((json_t *)root, key, val) {
        snprintf(where, sizeof where, "\"%.100s\"", key);
        if (!strcmp(key, "added_tokens_decoder")) {
            if (json_is_null(val)) continue;
            if (!json_is_object(val)) return err_set(err, ERR_FORMAT, "%s: %s is not an object", file, where);
            const char *idkey;
            const json_t *tokv;
            json_object_foreach((json_t *)val, idkey, tokv) {
                snprintf(where, sizeof where, "added_tokens_decoder[\"%.100s\"]", idkey);
                char *end;
                errno = 0;
                long long id = strtoll(idkey, &end, 10);
                if (!idkey[0] || *end || idkey[0] == '-' || idkey[0] == '+' || idkey[0] == ' ' || errno ||
                    id > TOK_MAX_ID)
                    return err_set(err, ERR_FORMAT, "%s: %s: the key is not an id in 0..%d", file, where, TOK_MAX_ID);
                if (!json_is_object(tokv)) return err_set(err, ERR_FORMAT, "%s: %s is not an object", file, where);
                const json_t *c = json_object_get(tokv, "content");
                if (!json_is_string(c)) return err_set(err, ERR_FORMAT, "%s: %s has no string \"content\"", file, where);
                int special;
                if (special_flag(tokv, &special, file, where, err)) return -1;
                if (add(s, json_string_value(c), id, special, src, where, err)) return -1;
            }
        } else if (!strcmp(key, "additional_special_tokens")) {
            if (json_is_null(val)) continue;
            if (!json_is_array(val)) return err_set(err, ERR_FORMAT, "%s: %s is not a list", file, where);
            size_t i;
            const json_t *item;
            json_array_foreach((json_t *)val, i, item) {
                snprintf(where, sizeof where, "additional_special_tokens[%zu]", i);
                const char *str;
                if (token_value(item, &str, file, where, err)) return -1;
                if (str && add(s, str, -1, 1, src, where, err)) return -1;
            }
        } else if (ends_with(key, "_token") && !json_is_boolean(val)) {
            /* Flags such as add_bos_token also end in "_token"; every other value must be a token. */
            const char *str;
            if (token_value(val, &str, file, where, err)) return -1;
            if (str && add(s, str, -1, 1, src, where, err)) return -1;
        }
    }
    return 0;
}

/* added_tokens.json: {"<token>": id, ...}. Not special by itself (transformers' rule). */
static int read_added_tokens(hf_special_set *s, const json_t *root, size_t src, err_t *err) {
    const char *key;
    const json_t *val;
    char where[160];
    json_object_foreach((json_t *)root, key, val) {
        snprintf(where, sizeof where, "\"%.100s\"", key);
        if (!json_is_integer(val))
            return err_set(err, ERR_FORMAT, "%s: %s: the id is not an integer", s->names[src], where);
        json_int_t id = json_integer_value(val);
        if (id < 0) return err_set(err, ERR_FORMAT, "%s: %s: negative id %lld", s->names[src], where, (long long)id);
        if (add(s, key, id, 0, src, where, err)) return -1;
    }
    return 0;
}

/* tokenizer.json: "added_tokens": [{"id": N, "content": "...", "special": bool}, ...]. */
static int read_tokenizer_json(hf_special_set *s, const json_t *root, size_t src, err_t *err) {
    const char *file = s->names[src];
    const json_t *arr = json_object_get(root, "added_tokens");
    if (!arr || json_is_null(arr)) return 0;
    if (!json_is_array(arr)) return err_set(err, ERR_FORMAT, "%s: \"added_tokens\" is not a list", file);
    size_t i;
    const json_t *item;
    char where[64];
    json_array_foreach((json_t *)arr, i, item) {
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        if (!json_is_object(item)) return err_set(err, ERR_FORMAT, "%s: %s is not an object", file, where);
        const json_t *id = json_object_get(item, "id"), *c = json_object_get(item, "content");
        if (!json_is_integer(id)) return err_set(err, ERR_FORMAT, "%s: %s has no integer \"id\"", file, where);
        if (!json_is_string(c)) return err_set(err, ERR_FORMAT, "%s: %s has no string \"content\"", file, where);
        if (json_integer_value(id) < 0)
            return err_set(err, ERR_FORMAT, "%s: %s: negative id %lld", file, where, (long long)json_integer_value(id));
        int special;
        if (special_flag(item, &special, file, where, err)) return -1;
        if (add(s, json_string_value(c), json_integer_value(id), special, src, where, err)) return -1;
    }
    return 0;
}

enum { K_CONFIG, K_MAP, K_ADDED, K_TOKJSON };

static int add_json_kind(hf_special_set *s, int kind, const char *name, const char *json, size_t len, err_t *err) {
    char **names = realloc(s->names, (s->nnames + 1) * sizeof *names);
    if (!names) return err_set(err, ERR_NOMEM, "special tokens: out of memory");
    s->names = names;
    if (!(s->names[s->nnames] = strdup(name))) return err_set(err, ERR_NOMEM, "special tokens: out of memory");
    size_t src = s->nnames++;

    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!root) return err_set(err, ERR_FORMAT, "%s: line %d column %d: %s", name, je.line, je.column, je.text);
    int rc;
    if (!json_is_object(root)) rc = err_set(err, ERR_FORMAT, "%s: the top level is not a JSON object", name);
    else if (kind == K_CONFIG || kind == K_MAP) rc = read_config(s, root, src, err);
    else if (kind == K_ADDED) rc = read_added_tokens(s, root, src, err);
    else rc = read_tokenizer_json(s, root, src, err);
    json_decref(root);
    return rc;
}

int hf_special_add_json(hf_special_set *s, const char *name, const char *json, size_t len, err_t *err) {
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    int kind;
    if (!strcmp(base, "tokenizer_config.json")) kind = K_CONFIG;
    else if (!strcmp(base, "special_tokens_map.json")) kind = K_MAP;
    else if (!strcmp(base, "added_tokens.json")) kind = K_ADDED;
    else if (!strcmp(base, "tokenizer.json")) kind = K_TOKJSON;
    else return err_set(err, ERR_ARG, "%s: not a tokenizer file this reader knows", name);
    return add_json_kind(s, kind, name, json, len, err);
}

static int cmp_special_id(const void *a, const void *b) {
    const tok_special *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

int hf_special_resolve(const hf_special_set *s, const spm *sp, hf_special_table *out, err_t *err) {
    out->v = NULL;
    out->n = 0;
    int vocab = sp ? spm_vocab_size(sp) : 0;
    size_t cap = s->n + (size_t)vocab;
    tok_special *v = calloc(cap ? cap : 1, sizeof *v);
    if (!v) return err_set(err, ERR_NOMEM, "special tokens: out of memory");
    out->v = v;
    for (size_t i = 0; i < s->n; i++) {
        const cand *c = &s->v[i];
        int32_t id = c->id;
        if (id < 0) {
            id = sp ? spm_piece_to_id(sp, c->str, strlen(c->str)) : -1;
            if (id < 0) {
                hf_special_table_free(out);
                return err_set(err, ERR_FORMAT, "%s: \"%s\" is neither an added token nor a piece of the SentencePiece model",
                               s->names[c->src], c->str);
            }
        }
        if (!(v[out->n].str = strdup(c->str))) {
            hf_special_table_free(out);
            return err_set(err, ERR_NOMEM, "special tokens: out of memory");
        }
        v[out->n].id = id;
        v[out->n].special = c->special;
        out->n++;
    }
    /* The model's control and unknown pieces are special by SentencePiece's own definition; the files
     * win where they already give the string or the id. */
    qsort(v, out->n, sizeof *v, cmp_special_id);
    size_t nfiles = out->n;
    for (int id = 0; id < vocab; id++) {
        spm_piece_type ty = spm_type(sp, id);
        if (ty != SPM_CONTROL && ty != SPM_UNKNOWN) continue;
        const char *piece = spm_id_to_piece(sp, id);
        tok_special key = {.id = id};
        if (bsearch(&key, v, nfiles, sizeof *v, cmp_special_id)) continue;
        size_t *slot = s->nslot ? lookup_slot(s, piece) : NULL;
        if (slot && *slot) continue;
        if (!(v[out->n].str = strdup(piece))) {
            hf_special_table_free(out);
            return err_set(err, ERR_NOMEM, "special tokens: out of memory");
        }
        v[out->n].id = id;
        v[out->n].special = 1;
        out->n++;
    }
    qsort(v, out->n, sizeof *v, cmp_special_id);
    for (size_t i = 1; i < out->n; i++)
        if (v[i].id == v[i - 1].id) {
            err_set(err, ERR_FORMAT, "special tokens: id %d is given to both \"%s\" and \"%s\"", v[i].id, v[i - 1].str,
                    v[i].str);
            hf_special_table_free(out);
            return -1;
        }
    return 0;
}

/* Reads a whole file; 1 when it does not exist (skipped), 0 when read, -1 on error. */
static int read_file(const char *path, char **data, size_t *len, err_t *err) {
    *data = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return 1;
        return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, ERR_IO, "%s: not a regular file", path);
    }
    /* tokenizer.json with a 100k vocabulary is ~20 MB; anything past 1 GiB is not a tokenizer file. */
    if (st.st_size > (off_t)1 << 30) {
        close(fd);
        return err_set(err, ERR_FORMAT, "%s: %lld bytes is too large for a tokenizer file", path, (long long)st.st_size);
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return err_set(err, ERR_NOMEM, "%s: out of memory", path);
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            free(buf);
            close(fd);
            return err_set(err, ERR_IO, "%s: %s", path, r < 0 ? strerror(e) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

int hf_special_read_dir(const char *dir, const spm *sp, hf_special_table *out, err_t *err) {
    static const char *const files[] = {"tokenizer.json", "added_tokens.json", "special_tokens_map.json",
                                        "tokenizer_config.json"};
    out->v = NULL;
    out->n = 0;
    hf_special_set *s = hf_special_set_new();
    if (!s) return err_set(err, ERR_NOMEM, "special tokens: out of memory");
    int found = 0, rc = 0;
    for (size_t i = 0; i < 4 && !rc; i++) {
        size_t plen = strlen(dir) + strlen(files[i]) + 2;
        char *path = malloc(plen);
        if (!path) {
            rc = err_set(err, ERR_NOMEM, "special tokens: out of memory");
            break;
        }
        snprintf(path, plen, "%s/%s", dir, files[i]);
        char *data;
        size_t len = 0;
        int r = read_file(path, &data, &len, err);
        if (r < 0) rc = -1;
        else if (r == 0) {
            found++;
            rc = hf_special_add_json(s, path, data, len, err);
            free(data);
        }
        free(path);
    }
    if (!rc && !found)
        rc = err_set(err, ERR_FORMAT, "%s: no tokenizer_config.json, special_tokens_map.json, added_tokens.json or tokenizer.json", dir);
    if (!rc) rc = hf_special_resolve(s, sp, out, err);
    hf_special_set_free(s);
    return rc;
}

int hf_special_to_json(const tok_special *v, size_t n, char **out, err_t *err) {
    *out = NULL;
    json_t *root = json_object(), *arr = json_array();
    int bad = !root || !arr || json_object_set_new(root, "added_tokens", arr);
    if (!root || !arr || bad) {
        if (!bad || !root) json_decref(arr);
        json_decref(root);
        return err_set(err, ERR_NOMEM, "special tokens: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        json_t *str = json_string(v[i].str); /* NULL for invalid UTF-8, which tok_create refuses too */
        if (!str) {
            json_decref(root);
            return err_set(err, ERR_ARG, "special tokens: token %d is not valid UTF-8", v[i].id);
        }
        json_t *o = json_pack("{s:I,s:o,s:b}", "id", (json_int_t)v[i].id, "content", str, "special", v[i].special != 0);
        if (!o || json_array_append_new(arr, o)) {
            json_decref(root);
            return err_set(err, ERR_NOMEM, "special tokens: out of memory");
        }
    }
    *out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!*out) return err_set(err, ERR_NOMEM, "special tokens: out of memory");
    return 0;
}

int hf_special_from_json(const char *json, size_t len, const char *what, hf_special_table *out, err_t *err) {
    out->v = NULL;
    out->n = 0;
    hf_special_set *s = hf_special_set_new();
    if (!s) return err_set(err, ERR_NOMEM, "special tokens: out of memory");
    int rc = add_json_kind(s, K_TOKJSON, what, json, len, err);
    if (!rc) rc = hf_special_resolve(s, NULL, out, err);
    hf_special_set_free(s);
    return rc;
}
