// tokenizer/spm.cc: the C API of spm.h over the SentencePiece library. The only C++ file in the project.
//
// It must never let a C++ exception or type cross into C: every entry point catches everything and
// turns it into an err_t. It never prints and never exits. It knows nothing of ERNIE.
//
// The model's normalizer flags are not exposed by SentencePiece's public header (they live in the
// generated protobuf classes, which are not installed), so a tiny protobuf walker below reads the few
// fields the C side needs straight from the model bytes. SentencePiece has already parsed the same
// bytes successfully by then, but the walker still checks every length against the buffer.

// base/err.h is a C header without extern "C" guards: give its functions C linkage here.
extern "C" {
#include "base/err.h"
}
#include "tokenizer/spm.h"

#include <sentencepiece_processor.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

// Declared in SentencePiece's internal common.h (not installed), defined in its util.cc. Its INFO,
// WARNING and ERROR lines go to std::cerr; library code must not print, so they are turned off. FATAL
// stays: SentencePiece aborts after it anyway, and the line says why.
namespace sentencepiece {
namespace logging {
void SetMinLogLevel(int v);
}
}  // namespace sentencepiece

struct spm {
    sentencepiece::SentencePieceProcessor proc;
    spm_flags flags;
    std::string unk_surface;
    std::vector<int32_t> byte_ids;     // byte value -> id, -1 where missing
    std::vector<int16_t> id_byte;      // id -> byte value, -1 where not a byte piece
    std::vector<unsigned char> types;  // id -> spm_piece_type
};

namespace {

// A protobuf wire-format cursor over [p, end).
struct pb {
    const unsigned char *p, *end;

    bool varint(uint64_t *v) {
        uint64_t r = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (p >= end) return false;
            unsigned char b = *p++;
            r |= (uint64_t)(b & 0x7f) << shift;
            if (!(b & 0x80)) {
                *v = r;
                return true;
            }
        }
        return false;
    }
    // Reads the next field; for length-delimited ones sets *sub to its bytes. False at the end or on
    // malformed input (the caller cannot tell which, and does not need to: it stops either way).
    bool next(uint32_t *field, uint32_t *wire, uint64_t *val, pb *sub) {
        uint64_t key;
        if (p >= end || !varint(&key)) return false;
        *field = (uint32_t)(key >> 3);
        *wire = (uint32_t)(key & 7);
        switch (*wire) {
        case 0: return varint(val);
        case 1:
            if (end - p < 8) return false;
            p += 8;
            return true;
        case 5:
            if (end - p < 4) return false;
            p += 4;
            return true;
        case 2: {
            uint64_t n;
            if (!varint(&n) || n > (uint64_t)(end - p)) return false;
            sub->p = p;
            sub->end = p + n;
            p += n;
            return true;
        }
        default: return false;  // groups (3, 4) are not used by this format
        }
    }
};

// ModelProto: 2 trainer_spec, 3 normalizer_spec, 5 denormalizer_spec (see sentencepiece_model.proto).
void read_flags(const void *data, size_t len, spm_flags *f, std::string *unk_surface, bool *has_unk) {
    f->model_type = 1;  // proto defaults
    f->add_dummy_prefix = 1;
    f->remove_extra_whitespaces = 1;
    f->treat_whitespace_as_suffix = 0;
    f->byte_fallback = 0;
    f->has_denormalizer = 0;
    *has_unk = false;
    pb top = {(const unsigned char *)data, (const unsigned char *)data + len};
    uint32_t field, wire;
    uint64_t v;
    pb sub;
    while (top.next(&field, &wire, &v, &sub)) {
        if (wire != 2) continue;
        uint32_t f2, w2;
        uint64_t v2;
        pb s2;
        if (field == 2) {  // TrainerSpec
            while (sub.next(&f2, &w2, &v2, &s2)) {
                if (f2 == 3 && w2 == 0) f->model_type = (int)v2;
                if (f2 == 24 && w2 == 0) f->treat_whitespace_as_suffix = v2 != 0;
                if (f2 == 35 && w2 == 0) f->byte_fallback = v2 != 0;
                if (f2 == 44 && w2 == 2) {
                    unk_surface->assign((const char *)s2.p, (size_t)(s2.end - s2.p));
                    *has_unk = true;
                }
            }
        } else if (field == 3) {  // NormalizerSpec
            while (sub.next(&f2, &w2, &v2, &s2)) {
                if (f2 == 3 && w2 == 0) f->add_dummy_prefix = v2 != 0;
                if (f2 == 4 && w2 == 0) f->remove_extra_whitespaces = v2 != 0;
            }
        } else if (field == 5) {  // denormalizer: only rules (a non-empty charsmap) change the output
            while (sub.next(&f2, &w2, &v2, &s2))
                if (f2 == 2 && w2 == 2 && s2.end > s2.p) f->has_denormalizer = 1;
        }
    }
}

// ModelProto field 1: the pieces, in id order; SentencePiece field 3 is the type (default NORMAL).
bool read_types(const void *data, size_t len, std::vector<unsigned char> *types) {
    types->clear();
    pb top = {(const unsigned char *)data, (const unsigned char *)data + len};
    uint32_t field, wire;
    uint64_t v;
    pb sub;
    while (top.next(&field, &wire, &v, &sub)) {
        if (field != 1 || wire != 2) continue;
        unsigned char t = SPM_NORMAL;
        uint32_t f2, w2;
        uint64_t v2;
        pb s2;
        while (sub.next(&f2, &w2, &v2, &s2))
            if (f2 == 3 && w2 == 0) t = v2 <= 255 ? (unsigned char)v2 : 0;
        types->push_back(t);
    }
    return top.p == top.end;
}

int status_err(err_t *err, err_code code, const char *what, const sentencepiece::util::Status &st) {
    return err_set(err, code, "%s: %s", what, st.ToString().c_str());
}

}  // namespace

extern "C" {

int spm_load(spm **out, const void *data, size_t len, err_t *err) {
    *out = nullptr;
    if (!data && len) return err_set(err, ERR_ARG, "SentencePiece model: no data");
    if (len == 0) return err_set(err, ERR_FORMAT, "SentencePiece model: empty");
    try {
        sentencepiece::logging::SetMinLogLevel(3);  // LOG_FATAL
        std::unique_ptr<spm> s(new spm());
        auto st = s->proc.LoadFromSerializedProto(
            absl::string_view(static_cast<const char *>(data), len));
        if (!st.ok()) {
            return status_err(err, ERR_FORMAT, "SentencePiece model", st);
        }
        bool has_unk = false;
        read_flags(data, len, &s->flags, &s->unk_surface, &has_unk);
        if (!has_unk) s->unk_surface = " \xE2\x81\x87 ";  // SentencePiece's kDefaultUnknownSymbol
        const int n = s->proc.GetPieceSize();
        // Piece types come from the protobuf: the public API has no IsUserDefined. They must agree
        // with what the library says about the types it does expose, or the walker misread the model.
        if (!read_types(data, len, &s->types) || s->types.size() != (size_t)n) {
            return err_set(err, ERR_FORMAT, "SentencePiece model: cannot read the piece table");
        }
        s->byte_ids.assign(256, -1);
        s->id_byte.assign((size_t)n, -1);
        for (int id = 0; id < n; id++) {
            const unsigned t = s->types[(size_t)id];
            if ((t == SPM_UNKNOWN) != s->proc.IsUnknown(id) || (t == SPM_CONTROL) != s->proc.IsControl(id) ||
                (t == SPM_UNUSED) != s->proc.IsUnused(id) || (t == SPM_BYTE) != s->proc.IsByte(id) ||
                t < SPM_NORMAL || t > SPM_BYTE) {
                    return err_set(err, ERR_FORMAT, "SentencePiece model: piece %d has an inconsistent type %u", id, t);
            }
            if (t == SPM_BYTE) {
                const std::string &p = s->proc.IdToPiece(id);
                // SentencePiece names byte pieces "<0x%02X>" and recognises no other spelling.
                unsigned b;
                char canon[8];
                if (p.size() == 6 && std::sscanf(p.c_str(), "<0x%2X>", &b) == 1 && b < 256 &&
                    std::snprintf(canon, sizeof canon, "<0x%02X>", b) == 6 && p == canon) {
                    s->byte_ids[b] = id;
                    s->id_byte[(size_t)id] = (int16_t)b;
                }
            }
        }
        *out = s.release();
        return 0;
    } catch (const std::bad_alloc &) {
        return err_set(err, ERR_NOMEM, "SentencePiece model: out of memory");
    } catch (const std::exception &e) {
        return err_set(err, ERR_FORMAT, "SentencePiece model: %s", e.what());
    } catch (...) {
        return err_set(err, ERR_FORMAT, "SentencePiece model: unknown failure");
    }
}

void spm_free(spm *s) { delete s; }

int spm_vocab_size(const spm *s) { return s->proc.GetPieceSize(); }

int spm_encode(const spm *s, const char *text, size_t len, int32_t **ids, size_t *n, err_t *err) {
    *ids = nullptr;
    *n = 0;
    if (len == 0) return 0;
    try {
        std::vector<int> v;
        auto st = s->proc.Encode(absl::string_view(text, len), &v);
        if (!st.ok()) return status_err(err, ERR_ARG, "SentencePiece encode", st);
        if (v.empty()) return 0;
        int32_t *r = (int32_t *)std::malloc(v.size() * sizeof *r);
        if (!r) return err_set(err, ERR_NOMEM, "SentencePiece encode: out of memory");
        for (size_t i = 0; i < v.size(); i++) r[i] = v[i];
        *ids = r;
        *n = v.size();
        return 0;
    } catch (const std::bad_alloc &) {
        return err_set(err, ERR_NOMEM, "SentencePiece encode: out of memory");
    } catch (...) {
        return err_set(err, ERR_ARG, "SentencePiece encode: unknown failure");
    }
}

int spm_decode(const spm *s, const int32_t *ids, size_t n, char **text, size_t *len, err_t *err) {
    *text = nullptr;
    if (len) *len = 0;
    try {
        const int vocab = s->proc.GetPieceSize();
        std::vector<int> v(ids, ids + n);
        for (size_t i = 0; i < n; i++)
            if (v[i] < 0 || v[i] >= vocab)
                return err_set(err, ERR_ARG, "SentencePiece decode: id %d at position %zu is out of range (0..%d)",
                               v[i], i, vocab - 1);
        std::string out;
        auto st = s->proc.Decode(v, &out);
        if (!st.ok()) return status_err(err, ERR_ARG, "SentencePiece decode", st);
        char *r = (char *)std::malloc(out.size() + 1);
        if (!r) return err_set(err, ERR_NOMEM, "SentencePiece decode: out of memory");
        std::memcpy(r, out.data(), out.size());
        r[out.size()] = 0;
        *text = r;
        if (len) *len = out.size();
        return 0;
    } catch (const std::bad_alloc &) {
        return err_set(err, ERR_NOMEM, "SentencePiece decode: out of memory");
    } catch (...) {
        return err_set(err, ERR_ARG, "SentencePiece decode: unknown failure");
    }
}

const char *spm_id_to_piece(const spm *s, int32_t id) {
    if (id < 0 || id >= s->proc.GetPieceSize()) return nullptr;
    return s->proc.IdToPiece(id).c_str();
}

int32_t spm_piece_to_id(const spm *s, const char *piece, size_t len) {
    try {
        absl::string_view p(piece, len);
        int id = s->proc.PieceToId(p);
        if (id < 0 || id >= s->proc.GetPieceSize()) return -1;
        // PieceToId answers unk_id for unknown strings; only <unk> itself really maps there.
        if (s->proc.IdToPiece(id) != std::string(piece, len)) return -1;
        return id;
    } catch (...) {
        return -1;
    }
}

spm_piece_type spm_type(const spm *s, int32_t id) {
    if (id < 0 || (size_t)id >= s->types.size()) return SPM_NONE;
    return (spm_piece_type)s->types[(size_t)id];
}

int32_t spm_byte_id(const spm *s, uint8_t b) { return s->byte_ids[b]; }

int spm_piece_byte(const spm *s, int32_t id) {
    if (id < 0 || (size_t)id >= s->id_byte.size()) return -1;
    return s->id_byte[(size_t)id];
}

const char *spm_unk_surface(const spm *s) { return s->unk_surface.c_str(); }

void spm_get_flags(const spm *s, spm_flags *f) { *f = s->flags; }

}  // extern "C"
