/* tokenizer/tokenizer.h: ERNIE's text front end over a SentencePiece model: special tokens, the two
 * encode modes, streaming decode, and what the sampler needs to know about ids.
 *
 * Special tokens come in as data (a table of {string, id, special}, read from a Hugging Face checkpoint
 * by hf_special.c or from our model file); no id and no token string of any model is written here,
 * except the names of the stop tokens, which are looked up by string.
 *
 * Encoding follows transformers' ERNIE tokenizer (spec §4, §4a): table strings are cut out first,
 * longest match, no whitespace stripping; each stretch of text between them goes to SentencePiece on its
 * own, with the model's own normalizer flags. */
#ifndef ERNIE_TOKENIZER_TOKENIZER_H
#define ERNIE_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "tokenizer/spm.h"

/* One entry of the special-token table. `special` follows Hugging Face: 1 for control tokens (bos, eos,
 * cls, sep, mask, additional_special_tokens, added tokens marked special), which plain text can never
 * produce and decode can drop; 0 for other added tokens, which behave like ordinary words. */
/* The largest id accepted anywhere: far above any real vocabulary, small enough that id + 1 never
 * overflows and a mask of that many bytes is plausible. */
#define TOK_MAX_ID ((1 << 26) - 1)

typedef struct {
    const char *str; /* UTF-8, non-empty */
    int32_t id;      /* 0 .. TOK_MAX_ID; may lie past the SentencePiece vocabulary (added tokens) */
    int special;
} tok_special;

/* A growable id array. Zero-initialise it; the encoders append to it. */
typedef struct {
    int32_t *v;
    size_t n, cap;
} tok_ids;

/* Appends one id; -1 only when memory runs out. */
int tok_ids_push(tok_ids *a, int32_t id, err_t *err);
/* Frees the array and zeroes it. */
void tok_ids_free(tok_ids *a);

typedef struct tok tok;

/* Builds a tokenizer from the bytes of a SentencePiece .model file and a special-token table (both
 * copied). Fails with ERR_ARG on an empty string, a negative id, or a string or id listed twice;
 * ERR_FORMAT when the model bytes are not a SentencePiece model. */
int tok_create(tok **out, const void *spm_model, size_t spm_len, const tok_special *specials, size_t nspecials,
               err_t *err);
void tok_free(tok *t);

/* The wrapped SentencePiece model (for hf_special and diagnostics). */
const spm *tok_spm(const tok *t);

/* Encode modes.
 *  TOK_PARSE_SPECIAL: every table string in the text becomes its id (template scaffolding, `run --raw`).
 *  TOK_PLAIN: user text. Only non-special table strings are matched; text spelling a special token
 *    (even where SentencePiece itself would match it as a user-defined piece) is encoded through byte
 *    pieces, so plain text can never produce the id of a special token or of a stop token (<unk>
 *    excepted: SentencePiece gives it for characters it cannot spell, never for the string "<unk>"). */
enum { TOK_PLAIN = 0, TOK_PARSE_SPECIAL = 1 };

/* Encodes `len` bytes of UTF-8 text and appends the ids to *out. Invalid UTF-8 is ERR_ARG (with the
 * byte offset); empty text appends nothing. */
int tok_encode(const tok *t, const char *text, size_t len, int mode, tok_ids *out, err_t *err);

/* A stretch of text with its own mode, for texts assembled from trusted and untrusted parts. */
typedef struct {
    const char *text;
    size_t len;
    int mode;
} tok_part;

/* Encodes the concatenation of parts as one text, as if it had been rendered into one string first
 * (so SentencePiece sees "User: " + content as one stretch, exactly as transformers does), except that
 * a table string is matched only when it lies wholly inside one part whose mode allows it. */
int tok_encode_parts(const tok *t, const tok_part *parts, size_t nparts, tok_ids *out, err_t *err);

/* The id of a token string: a table entry, else a SentencePiece piece; -1 when neither. */
int32_t tok_find(const tok *t, const char *str);
/* The text of an id: its table string, else its SentencePiece piece; NULL when it has neither. */
const char *tok_piece(const tok *t, int32_t id);
/* 1 when id is a table entry marked special. */
int tok_is_special(const tok *t, int32_t id);

/* Number of SentencePiece pieces. */
int tok_spm_vocab(const tok *t);
/* One past the largest id that is a token (SentencePiece piece or table entry). */
int32_t tok_n_ids(const tok *t);
/* 1 when id is a real token: a SentencePiece piece other than an unused one, or a table entry. The
 * model's logit rows past these (padding, spec P8) must never be sampled. */
int tok_is_real(const tok *t, int32_t id);
/* Fills allow[0 .. n_logits-1] with tok_is_real of each id. */
void tok_logit_mask(const tok *t, uint8_t *allow, size_t n_logits);

/* The ids that end generation: `</s>`, `<|end_of_sentence|>`, `<|begin_of_sentence|>` (spec §4), each
 * looked up by string; those the model lacks are left out. Writes up to max ids, returns how many exist. */
size_t tok_stop_ids(const tok *t, int32_t *out, size_t max);
int tok_is_stop(const tok *t, int32_t id);

/* Streaming decode: feed ids one at a time, get text that never ends inside a UTF-8 character.
 * Byte pieces are assembled into characters; bytes that cannot form one come out as U+FFFD, one per
 * byte, exactly as SentencePiece decodes them. The concatenated output of push()es and finish() equals
 * SentencePiece's decode of the same ids, except that table entries are printed as their strings (also
 * past its vocabulary, and also <s> and </s>, which SentencePiece prints as nothing), as transformers
 * does. */
enum {
    TOK_DEC_SKIP_SPECIAL = 1, /* drop table entries marked special (chat output) instead of printing them */
    TOK_DEC_CONTINUATION = 2, /* the ids continue earlier text: never strip a leading space, which
                                 SentencePiece does at the start of a text for add_dummy_prefix models */
};

typedef struct {
    const tok *t;
    unsigned flags;
    unsigned char pend[4]; /* bytes of an unfinished character */
    int npend;
    int is_bos_ws;   /* SentencePiece Decode's "still at the start" state */
    int bos_ws_seen;
    size_t emitted; /* bytes returned so far */
    char *buf;      /* this call's text */
    size_t len, cap;
} tok_stream;

void tok_stream_init(tok_stream *s, const tok *t, unsigned flags);
/* Adds one id; *text and *len get the text it completes (possibly empty), valid until the next call.
 * An id that is no token (tok_is_real false, or past tok_n_ids) is ERR_ARG and changes nothing. */
int tok_stream_push(tok_stream *s, int32_t id, const char **text, size_t *len, err_t *err);
/* Ends the stream: held bytes of an unfinished character come out as U+FFFD. The stream can then be
 * reused as if freshly initialised with the same flags. */
int tok_stream_finish(tok_stream *s, const char **text, size_t *len, err_t *err);
void tok_stream_free(tok_stream *s);

/* Decodes a whole id array with a stream; *text is malloc'd and NUL-terminated. */
int tok_decode(const tok *t, const int32_t *ids, size_t n, unsigned flags, char **text, size_t *len, err_t *err);

/* 1 when s[0..len) is well-formed UTF-8 (no surrogates, overlongs or code points past U+10FFFF);
 * otherwise 0 and *bad (if not NULL) gets the offset of the first bad byte. */
int tok_utf8_valid(const char *s, size_t len, size_t *bad);

#endif
