/* tokenizer/spm.h: a small C API over the SentencePiece library (tokenizer/spm.cc, the project's only
 * C++ file).
 *
 * It wraps one SentencePiece model: encode text to ids, decode ids to text, look pieces up. It knows
 * nothing of ERNIE, special-token tables or chat; tokenizer.c builds those on top. No C++ type or
 * exception crosses this header: every failure comes back as -1 with an err_t. */
#ifndef ERNIE_TOKENIZER_SPM_H
#define ERNIE_TOKENIZER_SPM_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct spm spm;

/* The piece types of SentencePiece's model format (ModelProto.SentencePiece.Type), same numbers. */
typedef enum {
    SPM_NONE = 0, /* not a piece: the id is out of range */
    SPM_NORMAL = 1,
    SPM_UNKNOWN = 2,      /* <unk> */
    SPM_CONTROL = 3,      /* <s>, </s>: never produced from text, decode to nothing */
    SPM_USER_DEFINED = 4, /* matched atomically inside text by SentencePiece itself */
    SPM_UNUSED = 5,
    SPM_BYTE = 6, /* <0xNN> byte-fallback pieces */
} spm_piece_type;

/* Settings read from the model's own protobuf, which decide how text maps to pieces and back. */
typedef struct {
    int model_type;                 /* 1 unigram, 2 BPE, 3 word, 4 char */
    int add_dummy_prefix;           /* normalizer adds "▁" in front of the text */
    int remove_extra_whitespaces;   /* normalizer trims and collapses spaces */
    int treat_whitespace_as_suffix; /* "▁" ends pieces instead of starting them */
    int byte_fallback;              /* unknown characters become <0xNN> pieces */
    int has_denormalizer;           /* decode rewrites its output with extra rules */
} spm_flags;

/* Loads a model from the bytes of a .model file (copied; `data` may be freed afterwards).
 * On success *out is a new handle; on failure *out is NULL and err says why (ERR_FORMAT for bytes that
 * are not a SentencePiece model). */
int spm_load(spm **out, const void *data, size_t len, err_t *err);

/* Frees the handle; NULL is fine. */
void spm_free(spm *s);

/* Number of pieces: valid ids are 0 .. spm_vocab_size()-1. */
int spm_vocab_size(const spm *s);

/* Encodes `len` bytes of text (any bytes, NUL included) exactly as SentencePiece's Encode does, the
 * model's normalizer flags applied. *ids is malloc'd (the caller frees it; NULL when *n is 0). */
int spm_encode(const spm *s, const char *text, size_t len, int32_t **ids, size_t *n, err_t *err);

/* Decodes ids exactly as SentencePiece's Decode does; *text is malloc'd and NUL-terminated, *len its
 * length (len may be NULL). An id out of range is ERR_ARG. */
int spm_decode(const spm *s, const int32_t *ids, size_t n, char **text, size_t *len, err_t *err);

/* The piece string of an id ("▁the", "<0x0A>", "<s>"), NUL-terminated and valid while the handle
 * lives; NULL when the id is out of range. */
const char *spm_id_to_piece(const spm *s, int32_t id);

/* The id of a piece string, or -1 when the model has no such piece (SentencePiece itself would
 * answer unk_id; this does not). */
int32_t spm_piece_to_id(const spm *s, const char *piece, size_t len);

/* The type of an id; SPM_NONE when out of range. */
spm_piece_type spm_type(const spm *s, int32_t id);

/* The id of the byte-fallback piece <0xNN> for byte b, or -1 when the model has none. */
int32_t spm_byte_id(const spm *s, uint8_t b);

/* The byte value of a byte piece, or -1 when id is not one. */
int spm_piece_byte(const spm *s, int32_t id);

/* What decode prints for <unk> (the model's unk_surface, by default " ⁇ "). */
const char *spm_unk_surface(const spm *s);

/* The model's settings (see spm_flags). */
void spm_get_flags(const spm *s, spm_flags *f);

#ifdef __cplusplus
}
#endif

#endif
