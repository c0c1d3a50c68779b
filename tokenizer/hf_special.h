/* tokenizer/hf_special.h: the special-token table of a Hugging Face checkpoint folder.
 *
 * Reads what transformers reads: tokenizer_config.json (added_tokens_decoder, the *_token entries such
 * as bos/eos/unk/pad/cls/sep/mask, additional_special_tokens), special_tokens_map.json,
 * added_tokens.json and tokenizer.json's added_tokens, wherever present, and resolves each token string
 * to its id through the files or the SentencePiece model (tokenizer.model). Strings and ids are read,
 * never assumed. The result feeds tok_create().
 *
 * The same table is stored in our model file as JSON in tokenizer.json's added_tokens shape
 * (hf_special_to_json / hf_special_from_json), so one parser serves both.
 *
 * It never prints; every error names the file and the entry at fault. */
#ifndef ERNIE_TOKENIZER_HF_SPECIAL_H
#define ERNIE_TOKENIZER_HF_SPECIAL_H

#include <stddef.h>

#include "base/err.h"
#include "tokenizer/spm.h"
#include "tokenizer/tokenizer.h"

/* A table sorted by id; it owns its strings. */
typedef struct {
    tok_special *v;
    size_t n;
} hf_special_table;

void hf_special_table_free(hf_special_table *t);

/* Tokens gathered from one or more files before their ids are settled. */
typedef struct hf_special_set hf_special_set;

hf_special_set *hf_special_set_new(void); /* NULL when out of memory */
void hf_special_set_free(hf_special_set *s);

/* Adds the tokens of one file's JSON text. `name` is the file's name (a path is fine: its last
 * component picks the reader): tokenizer_config.json, special_tokens_map.json, added_tokens.json or
 * tokenizer.json; anything else is ERR_ARG. Fails with ERR_FORMAT, naming the file and entry, on bad
 * JSON, wrong types, empty strings, ids out of range, or a string given two different ids. */
int hf_special_add_json(hf_special_set *s, const char *name, const char *json, size_t len, err_t *err);

/* Settles every id and produces the table. A string without an id in the files takes its piece's id
 * from `sp`; `sp` may be NULL when every id is explicit. The SentencePiece model's own control and
 * unknown pieces (<s>, </s>, <unk>) are added as special. Fails with ERR_FORMAT when a named token is
 * neither an added token nor a piece, or when two strings end up with one id. */
int hf_special_resolve(const hf_special_set *s, const spm *sp, hf_special_table *out, err_t *err);

/* Reads the four files from dir (missing ones are skipped, but at least one must exist) and resolves
 * against sp. ERR_IO names the file that could not be read. */
int hf_special_read_dir(const char *dir, const spm *sp, hf_special_table *out, err_t *err);

/* The table as {"added_tokens":[{"id":N,"content":"...","special":true},...]} (malloc'd, NUL-terminated),
 * for our model file. */
int hf_special_to_json(const tok_special *v, size_t n, char **out, err_t *err);

/* Reads that JSON back (every id explicit; `what` names the source in errors). */
int hf_special_from_json(const char *json, size_t len, const char *what, hf_special_table *out, err_t *err);

#endif
