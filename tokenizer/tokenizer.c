/* tokenizer/tokenizer.c: special tokens around SentencePiece, plain-text protection, streaming decode,
 * the stop set and the logit mask (see tokenizer.h).
 *
 * It must never hard-code a token id, never print, and never let plain text produce a special id. */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char *str;
    size_t len;
    int32_t id;
    int special;
} entry;

struct tok {
    spm *sp;
    int vocab;           /* SentencePiece pieces */
    int32_t n_ids;       /* one past the largest token id */
    entry *by_id;        /* the table sorted by id */
    size_t n;
    entry **by_byte;     /* the table sorted by (first byte, length descending), for longest match */
    size_t first[257];   /* by_byte[first[b] .. first[b+1]) start with byte b */
    int32_t *forbidden;  /* sorted ids plain text must not produce */
    size_t nforbidden;
    int32_t stop[3];
    size_t nstop;
    spm_flags flags;
};

static const char SPACE_MARK[] = "\xE2\x96\x81"; /* "▁", SentencePiece's visible space */
static const char REPLACEMENT[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* ---- small helpers ---- */

int tok_ids_push(tok_ids *a, int32_t id, err_t *err) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return err_set(err, ERR_NOMEM, "token ids: out of memory");
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

void tok_ids_free(tok_ids *a) {
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

int tok_utf8_valid(const char *str, size_t len, size_t *bad) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t L;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { L = 2; cp = c & 0x1F; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { L = 3; cp = c & 0x0F; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { L = 4; cp = c & 0x07; min = 0x10000; }
        else goto fail;
        if (len - i < L) goto fail;
        for (size_t k = 1; k < L; k++) {
            if ((s[i + k] & 0xC0) != 0x80) goto fail;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) goto fail;
        i += L;
    }
    return 1;
fail:
    if (bad) *bad = i;
    return 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}
static int cmp_entry_id(const void *a, const void *b) {
    const entry *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}
static int cmp_entry_match(const void *a, const void *b) {
    const entry *x = *(entry *const *)a, *y = *(entry *const *)b;
    unsigned char bx = (unsigned char)x->str[0], by = (unsigned char)y->str[0];
    if (bx != by) return bx < by ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return strcmp(x->str, y->str);
}

static const entry *find_id(const tok *t, int32_t id) {
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->by_id[mid].id == id) return &t->by_id[mid];
        if (t->by_id[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static int is_forbidden(const tok *t, int32_t id) {
    return t->nforbidden && bsearch(&id, t->forbidden, t->nforbidden, sizeof id, cmp_i32) != NULL;
}

/* ---- construction ---- */

void tok_free(tok *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) free(t->by_id[i].str);
    free(t->by_id);
    free(t->by_byte);
    free(t->forbidden);
    spm_free(t->sp);
    free(t);
}

int tok_create(tok **out, const void *spm_model, size_t spm_len, const tok_special *specials, size_t nspecials,
               err_t *err) {
    *out = NULL;
    tok *t = calloc(1, sizeof *t);
    if (!t) return err_set(err, ERR_NOMEM, "tokenizer: out of memory");
    if (spm_load(&t->sp, spm_model, spm_len, err)) {
        tok_free(t);
        return -1;
    }
    t->vocab = spm_vocab_size(t->sp);
    t->n_ids = t->vocab;
    spm_get_flags(t->sp, &t->flags);
    if (t->flags.treat_whitespace_as_suffix || t->flags.has_denormalizer) {
        tok_free(t);
        return err_set(err, ERR_UNSUPPORTED, "tokenizer: SentencePiece models with %s are not supported",
                       t->flags.has_denormalizer ? "denormalization rules" : "treat_whitespace_as_suffix");
    }

    t->by_id = calloc(nspecials ? nspecials : 1, sizeof *t->by_id);
    t->by_byte = calloc(nspecials ? nspecials : 1, sizeof *t->by_byte);
    /* Forbidden: each special entry's id, the piece id of its string, and the stop tokens. */
    t->forbidden = calloc(2 * nspecials + 3, sizeof *t->forbidden);
    if (!t->by_id || !t->by_byte || !t->forbidden) {
        tok_free(t);
        return err_set(err, ERR_NOMEM, "tokenizer: out of memory");
    }
    for (size_t i = 0; i < nspecials; i++) {
        const tok_special *s = &specials[i];
        if (!s->str || !s->str[0]) {
            tok_free(t);
            return err_set(err, ERR_ARG, "tokenizer: special token %zu (id %d) has an empty string", i, s->id);
        }
        if (s->id < 0 || s->id > TOK_MAX_ID) {
            tok_free(t);
            return err_set(err, ERR_ARG, "tokenizer: special token \"%s\" has id %d, outside 0..%d", s->str, s->id,
                           TOK_MAX_ID);
        }
        size_t len = strlen(s->str);
        if (!tok_utf8_valid(s->str, len, NULL)) {
            tok_free(t);
            return err_set(err, ERR_ARG, "tokenizer: special token %d is not valid UTF-8", s->id);
        }
        entry *e = &t->by_id[t->n];
        e->str = malloc(len + 1);
        if (!e->str) {
            tok_free(t);
            return err_set(err, ERR_NOMEM, "tokenizer: out of memory");
        }
        memcpy(e->str, s->str, len + 1);
        e->len = len;
        e->id = s->id;
        e->special = s->special != 0;
        t->n++;
        if (s->id + 1 > t->n_ids) t->n_ids = s->id + 1;
    }
    qsort(t->by_id, t->n, sizeof *t->by_id, cmp_entry_id);
    for (size_t i = 0; i < t->n; i++) {
        if (i && t->by_id[i].id == t->by_id[i - 1].id) {
            err_set(err, ERR_ARG, "tokenizer: id %d is given to both \"%s\" and \"%s\"", t->by_id[i].id,
                    t->by_id[i - 1].str, t->by_id[i].str);
            tok_free(t);
            return -1;
        }
        t->by_byte[i] = &t->by_id[i];
    }
    qsort(t->by_byte, t->n, sizeof *t->by_byte, cmp_entry_match);
    for (size_t i = 1; i < t->n; i++)
        if (!strcmp(t->by_byte[i]->str, t->by_byte[i - 1]->str)) {
            err_set(err, ERR_ARG, "tokenizer: \"%s\" is listed with ids %d and %d", t->by_byte[i]->str,
                    t->by_byte[i - 1]->id, t->by_byte[i]->id);
            tok_free(t);
            return -1;
        }
    for (size_t b = 0, i = 0; b <= 256; b++) {
        while (i < t->n && (unsigned char)t->by_byte[i]->str[0] < b) i++;
        t->first[b] = i;
    }

    static const char *const stop_names[] = {"</s>", "<|end_of_sentence|>", "<|begin_of_sentence|>"};
    for (size_t i = 0; i < 3; i++) {
        int32_t id = tok_find(t, stop_names[i]);
        if (id >= 0) t->stop[t->nstop++] = id;
    }

    /* <unk> stays allowed: SentencePiece gives it for characters it cannot spell (models without byte
     * fallback), never for text spelling "<unk>", so it carries no control meaning. */
    for (size_t i = 0; i < t->n; i++) {
        if (!t->by_id[i].special) continue;
        if (spm_type(t->sp, t->by_id[i].id) != SPM_UNKNOWN) t->forbidden[t->nforbidden++] = t->by_id[i].id;
        int32_t pid = spm_piece_to_id(t->sp, t->by_id[i].str, t->by_id[i].len);
        if (pid >= 0 && spm_type(t->sp, pid) != SPM_UNKNOWN) t->forbidden[t->nforbidden++] = pid;
    }
    for (size_t i = 0; i < t->nstop; i++) t->forbidden[t->nforbidden++] = t->stop[i];
    qsort(t->forbidden, t->nforbidden, sizeof *t->forbidden, cmp_i32);

    *out = t;
    return 0;
}

const spm *tok_spm(const tok *t) { return t->sp; }
int tok_spm_vocab(const tok *t) { return t->vocab; }
int32_t tok_n_ids(const tok *t) { return t->n_ids; }

int32_t tok_find(const tok *t, const char *str) {
    size_t len = strlen(str);
    if (!len) return -1;
    unsigned char b = (unsigned char)str[0];
    for (size_t i = t->first[b]; i < t->first[b + 1]; i++)
        if (t->by_byte[i]->len == len && !memcmp(t->by_byte[i]->str, str, len)) return t->by_byte[i]->id;
    return spm_piece_to_id(t->sp, str, len);
}

const char *tok_piece(const tok *t, int32_t id) {
    const entry *e = find_id(t, id);
    if (e) return e->str;
    return spm_id_to_piece(t->sp, id);
}

int tok_is_special(const tok *t, int32_t id) {
    const entry *e = find_id(t, id);
    return e && e->special;
}

int tok_is_real(const tok *t, int32_t id) {
    if (id < 0 || id >= t->n_ids) return 0;
    if (find_id(t, id)) return 1;
    spm_piece_type ty = spm_type(t->sp, id);
    return ty != SPM_NONE && ty != SPM_UNUSED;
}

void tok_logit_mask(const tok *t, uint8_t *allow, size_t n_logits) {
    for (size_t i = 0; i < n_logits; i++) allow[i] = i < (size_t)t->n_ids && tok_is_real(t, (int32_t)i);
}

size_t tok_stop_ids(const tok *t, int32_t *out, size_t max) {
    for (size_t i = 0; i < t->nstop && i < max; i++) out[i] = t->stop[i];
    return t->nstop;
}

int tok_is_stop(const tok *t, int32_t id) {
    for (size_t i = 0; i < t->nstop; i++)
        if (t->stop[i] == id) return 1;
    return 0;
}

/* ---- encoding ---- */

/* Appends the byte pieces spelling a piece's surface (its text with "▁" read as a space), so the
 * decoded text is unchanged but the forbidden id is gone. */
static int push_as_bytes(const tok *t, int32_t id, tok_ids *out, err_t *err) {
    const char *p = spm_id_to_piece(t->sp, id);
    for (size_t i = 0; p && p[i];) {
        if (!strncmp(p + i, SPACE_MARK, 3)) {
            int32_t b = spm_byte_id(t->sp, ' ');
            if (b < 0) goto nobytes;
            if (tok_ids_push(out, b, err)) return -1;
            i += 3;
            continue;
        }
        int32_t b = spm_byte_id(t->sp, (uint8_t)p[i]);
        if (b < 0) goto nobytes;
        if (tok_ids_push(out, b, err)) return -1;
        i++;
    }
    return 0;
nobytes:
    return err_set(err, ERR_UNSUPPORTED,
                   "tokenizer: plain text spells the special token \"%s\", and the SentencePiece model has no "
                   "byte pieces to spell it safely", p);
}

/* Runs SentencePiece on one stretch of text between table matches. */
static int encode_segment(const tok *t, const char *s, size_t len, tok_ids *out, err_t *err) {
    if (!len) return 0;
    int32_t *ids;
    size_t n;
    if (spm_encode(t->sp, s, len, &ids, &n, err)) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        /* Only text from plain parts can get here as a forbidden id: in parse mode the table match
         * already cut every special string out. */
        if (is_forbidden(t, ids[i])) rc = push_as_bytes(t, ids[i], out, err);
        else rc = tok_ids_push(out, ids[i], err);
    }
    free(ids);
    return rc;
}

/* The longest table entry at s[0..avail) that the mode allows, or NULL. */
static const entry *match_at(const tok *t, const char *s, size_t avail, int mode) {
    unsigned char b = (unsigned char)s[0];
    for (size_t i = t->first[b]; i < t->first[b + 1]; i++) {
        const entry *e = t->by_byte[i];
        if (e->len > avail) continue;
        if (mode != TOK_PARSE_SPECIAL && e->special) continue;
        if (!memcmp(e->str, s, e->len)) return e;
    }
    return NULL;
}

int tok_encode_parts(const tok *t, const tok_part *parts, size_t nparts, tok_ids *out, err_t *err) {
    size_t total = 0;
    for (size_t p = 0; p < nparts; p++) {
        size_t bad;
        if (!parts[p].text && parts[p].len) return err_set(err, ERR_ARG, "tokenizer: text part %zu is NULL", p);
        if (!tok_utf8_valid(parts[p].text, parts[p].len, &bad))
            return err_set(err, ERR_ARG, "tokenizer: text is not valid UTF-8 (byte %zu of part %zu)", bad, p);
        total += parts[p].len;
    }
    /* One buffer, so a SentencePiece stretch can run across part boundaries as in the rendered string. */
    char *all = malloc(total + 1);
    if (!all) return err_set(err, ERR_NOMEM, "tokenizer: out of memory");
    size_t off = 0;
    for (size_t p = 0; p < nparts; p++) {
        if (parts[p].len) memcpy(all + off, parts[p].text, parts[p].len);
        off += parts[p].len;
    }
    size_t seg = 0, pos = 0, part = 0, part_end = nparts ? parts[0].len : 0;
    int rc = 0;
    while (pos < total && !rc) {
        while (pos >= part_end) part_end += parts[++part].len;
        const entry *e = t->first[(unsigned char)all[pos]] == t->first[(unsigned char)all[pos] + 1]
                             ? NULL
                             : match_at(t, all + pos, part_end - pos, parts[part].mode);
        if (!e) {
            pos++;
            continue;
        }
        rc = encode_segment(t, all + seg, pos - seg, out, err);
        if (!rc) rc = tok_ids_push(out, e->id, err);
        pos += e->len;
        seg = pos;
    }
    if (!rc) rc = encode_segment(t, all + seg, total - seg, out, err);
    free(all);
    return rc;
}

int tok_encode(const tok *t, const char *text, size_t len, int mode, tok_ids *out, err_t *err) {
    tok_part p = {text, len, mode};
    return tok_encode_parts(t, &p, 1, out, err);
}

/* ---- streaming decode ---- */

void tok_stream_init(tok_stream *s, const tok *t, unsigned flags) {
    memset(s, 0, sizeof *s);
    s->t = t;
    s->flags = flags;
    s->is_bos_ws = !(flags & TOK_DEC_CONTINUATION);
}

void tok_stream_free(tok_stream *s) {
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = 0;
}

static int emit(tok_stream *s, const char *p, size_t n, err_t *err) {
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->len + n + 1) cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b) return err_set(err, ERR_NOMEM, "decode: out of memory");
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = 0;
    return 0;
}

static void drop_pending(tok_stream *s, int k) {
    memmove(s->pend, s->pend + k, (size_t)(s->npend - k));
    s->npend -= k;
}

/* Emits every character the held bytes decide, with SentencePiece's rules (DecodeUTF8 in its util.cc):
 * a character comes out when complete and valid; a byte that cannot start one becomes U+FFFD and the
 * rest is looked at again. With `final`, an unfinished character is given up the same way. */
static int drain(tok_stream *s, int final, err_t *err) {
    while (s->npend > 0) {
        unsigned c = s->pend[0];
        int L = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        int doomed = L == 0;
        for (int k = 1; k < L && k < s->npend && !doomed; k++)
            if ((s->pend[k] & 0xC0) != 0x80) doomed = 1;
        if (!doomed && s->npend < L) {
            if (!final) return 0; /* wait for the rest of the character */
            doomed = 1;
        }
        if (!doomed && L > 1) {
            static const uint32_t lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07}, minimum[5] = {0, 0, 0x80, 0x800, 0x10000};
            uint32_t cp = c & lead_mask[L];
            for (int k = 1; k < L; k++) cp = cp << 6 | (s->pend[k] & 0x3F);
            if (cp < minimum[L] || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) doomed = 1;
        }
        if (doomed) {
            if (emit(s, REPLACEMENT, 3, err)) return -1;
            drop_pending(s, 1);
        } else {
            if (emit(s, (const char *)s->pend, (size_t)L, err)) return -1;
            drop_pending(s, L);
        }
    }
    return 0;
}

/* Appends a piece's text as SentencePiece's Decode does for a non-byte piece: "▁" becomes a space,
 * and at the start of a text one leading "▁" is dropped when the model adds a dummy prefix (all leading
 * ones when it also removes extra whitespace). */
static int emit_piece(tok_stream *s, const char *piece, err_t *err) {
    const spm_flags *f = &s->t->flags;
    int has_bos_ws = 0;
    if (s->is_bos_ws && (f->add_dummy_prefix || f->remove_extra_whitespaces) && !strncmp(piece, SPACE_MARK, 3)) {
        piece += 3;
        has_bos_ws = !f->remove_extra_whitespaces;
    }
    for (const char *p = piece; *p;) {
        const char *m = strstr(p, SPACE_MARK);
        size_t n = m ? (size_t)(m - p) : strlen(p);
        if (emit(s, p, n, err)) return -1;
        if (!m) break;
        if (emit(s, " ", 1, err)) return -1;
        p = m + 3;
    }
    s->bos_ws_seen = has_bos_ws;
    return 0;
}

int tok_stream_push(tok_stream *s, int32_t id, const char **text, size_t *len, err_t *err) {
    const tok *t = s->t;
    s->len = 0;
    *text = "";
    *len = 0;
    if (!tok_is_real(t, id)) return err_set(err, ERR_ARG, "decode: id %d is not a token of this model", id);
    const entry *e = find_id(t, id);
    if (e && e->special && (s->flags & TOK_DEC_SKIP_SPECIAL)) return 0; /* as if it were not there */
    int byte = e ? -1 : spm_piece_byte(t->sp, id);
    if (byte >= 0) {
        s->pend[s->npend++] = (unsigned char)byte;
        if (drain(s, 0, err)) return -1;
    } else {
        /* Any other piece ends a run of byte pieces. */
        if (drain(s, 1, err)) return -1;
        if (s->bos_ws_seen || s->emitted + s->len > 0) s->is_bos_ws = 0;
        int rc = 0;
        if (e) {
            rc = emit(s, e->str, e->len, err);
            s->bos_ws_seen = 0;
        } else {
            spm_piece_type ty = spm_type(t->sp, id);
            if (ty == SPM_CONTROL) s->bos_ws_seen = 0; /* invisible */
            else if (ty == SPM_UNKNOWN) {
                const char *u = spm_unk_surface(t->sp);
                rc = emit(s, u, strlen(u), err);
                s->bos_ws_seen = 0;
            } else rc = emit_piece(s, spm_id_to_piece(t->sp, id), err);
        }
        if (rc) return -1;
    }
    s->emitted += s->len;
    *text = s->buf ? s->buf : "";
    *len = s->len;
    return 0;
}

int tok_stream_finish(tok_stream *s, const char **text, size_t *len, err_t *err) {
    s->len = 0;
    *text = "";
    *len = 0;
    if (drain(s, 1, err)) return -1;
    *text = s->buf ? s->buf : "";
    *len = s->len;
    s->npend = 0;
    s->is_bos_ws = !(s->flags & TOK_DEC_CONTINUATION);
    s->bos_ws_seen = 0;
    s->emitted = 0;
    return 0;
}

int tok_decode(const tok *t, const int32_t *ids, size_t n, unsigned flags, char **text, size_t *len, err_t *err) {
    tok_stream s;
    tok_stream_init(&s, t, flags);
    char *acc = NULL;
    size_t alen = 0, acap = 0;
    const char *piece;
    size_t plen;
    *text = NULL;
    if (len) *len = 0;
    for (size_t i = 0; i <= n; i++) {
        int rc = i < n ? tok_stream_push(&s, ids[i], &piece, &plen, err) : tok_stream_finish(&s, &piece, &plen, err);
        if (rc) {
            err_wrap(err, "id %zu of %zu: ", i, n);
            goto fail;
        }
        if (alen + plen + 1 > acap) {
            size_t cap = acap ? acap * 2 : 256;
            while (cap < alen + plen + 1) cap *= 2;
            char *b = realloc(acc, cap);
            if (!b) {
                err_set(err, ERR_NOMEM, "decode: out of memory");
                goto fail;
            }
            acc = b;
            acap = cap;
        }
        memcpy(acc + alen, piece, plen);
        alen += plen;
    }
    if (!acc && !(acc = malloc(1))) {
        err_set(err, ERR_NOMEM, "decode: out of memory");
        goto fail;
    }
    acc[alen] = 0;
    tok_stream_free(&s);
    *text = acc;
    if (len) *len = alen;
    return 0;
fail:
    free(acc);
    tok_stream_free(&s);
    return -1;
}
