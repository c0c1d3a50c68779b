/* tests/fuzz/fuzz_hf_special.c: libFuzzer target for the special-token readers of tokenizer/hf_special.c
 * (tokenizer_config.json, special_tokens_map.json, added_tokens.json, tokenizer.json and the model
 * file's copy of the table).
 *
 * Input: one selector byte, then up to four JSON documents separated by the line "\n#\n". Document k is
 * read as file kind (selector >> 2k) & 3, so contradicting files meet too. The set is resolved without
 * a SentencePiece model. Whatever comes out must survive the model-file round trip unchanged, and must
 * be accepted by tok_create's table rules (sorted, unique ids and strings); anything else aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/hf_special.h"

static const char *const NAMES[4] = {"tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                                     "fuzz/tokenizer.json"};

static void check_table(const hf_special_table *t) {
    for (size_t i = 0; i < t->n; i++) {
        if (!t->v[i].str || !t->v[i].str[0] || t->v[i].id < 0 || t->v[i].id > TOK_MAX_ID) abort();
        if (i && t->v[i - 1].id >= t->v[i].id) abort(); /* sorted, ids unique */
        for (size_t j = 0; j < i; j++)
            if (!strcmp(t->v[i].str, t->v[j].str)) abort(); /* strings unique */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > (1 << 20)) return 0;
    unsigned sel = data[0];
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    hf_special_set *s = hf_special_set_new();
    if (!s) return 0;
    err_t err;
    int rc = 0;
    for (int k = 0; k < 4 && p <= end && !rc; k++) {
        const char *sep = memmem(p, (size_t)(end - p), "\n#\n", 3);
        const char *stop = sep ? sep : end;
        rc = hf_special_add_json(s, NAMES[(sel >> (2 * k)) & 3], p, (size_t)(stop - p), &err);
        if (rc && err.msg[0] == 0) abort(); /* every failure says why */
        if (!sep) break;
        p = sep + 3;
    }
    hf_special_table tab = {0};
    if (!rc && hf_special_resolve(s, NULL, &tab, &err) == 0) {
        check_table(&tab);
        char *json;
        if (hf_special_to_json(tab.v, tab.n, &json, &err) == 0) {
            hf_special_table back;
            if (hf_special_from_json(json, strlen(json), "round trip", &back, &err)) abort();
            if (back.n != tab.n) abort();
            for (size_t i = 0; i < tab.n; i++)
                if (strcmp(back.v[i].str, tab.v[i].str) || back.v[i].id != tab.v[i].id ||
                    back.v[i].special != tab.v[i].special)
                    abort();
            hf_special_table_free(&back);
            free(json);
        }
        hf_special_table_free(&tab);
    }
    /* The model-file reader on the raw documents as well. */
    if (hf_special_from_json((const char *)data + 1, size - 1, "fuzz", &tab, &err) == 0) {
        check_table(&tab);
        hf_special_table_free(&tab);
    }
    hf_special_set_free(s);
    return 0;
}
