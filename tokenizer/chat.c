/* tokenizer/chat.c: the ERNIE-4.5 chat template (see chat.h).
 *
 * One function lays the conversation out as parts (scaffolding or content); rendering and encoding both
 * use it, so the string and the ids can never disagree. It must never parse special tokens in message
 * contents, and never print. */
#include "tokenizer/chat.h"

#include <stdlib.h>
#include <string.h>

/* The template's strings, from the release's tokenizer_config.json chat_template (spec §4). */
static const char BOS[] = "<|begin_of_sentence|>";
static const char EOT[] = "<|end_of_sentence|>";

static void part(tok_part *p, size_t *n, const char *text, int mode) {
    p[*n].text = text;
    p[*n].len = strlen(text);
    p[*n].mode = mode;
    (*n)++;
}

/* Fills parts (room for 1 + 3n + 1 entries) and returns how many. */
static int layout(const chat_msg *m, size_t n, int gen, tok_part *p, size_t *np, err_t *err) {
    *np = 0;
    part(p, np, BOS, TOK_PARSE_SPECIAL);
    for (size_t i = 0; i < n; i++) {
        if (!m[i].role || !m[i].content) return err_set(err, ERR_ARG, "chat: message %zu has no %s", i, m[i].role ? "content" : "role");
        if (!strcmp(m[i].role, "system")) {
            part(p, np, m[i].content, TOK_PLAIN);
            part(p, np, "\n", TOK_PARSE_SPECIAL);
        } else if (!strcmp(m[i].role, "user")) {
            part(p, np, "User: ", TOK_PARSE_SPECIAL);
            part(p, np, m[i].content, TOK_PLAIN);
            part(p, np, "\n", TOK_PARSE_SPECIAL);
        } else if (!strcmp(m[i].role, "assistant")) {
            part(p, np, "Assistant: ", TOK_PARSE_SPECIAL);
            part(p, np, m[i].content, TOK_PLAIN);
            part(p, np, EOT, TOK_PARSE_SPECIAL);
        } /* other roles: dropped, as the template does */
    }
    if (gen) part(p, np, "Assistant: ", TOK_PARSE_SPECIAL);
    return 0;
}

static tok_part *alloc_parts(size_t n, err_t *err) {
    if (n > ((size_t)-1 / sizeof(tok_part) - 2) / 3) {
        err_set(err, ERR_ARG, "chat: too many messages");
        return NULL;
    }
    tok_part *p = malloc((3 * n + 2) * sizeof *p);
    if (!p) err_set(err, ERR_NOMEM, "chat: out of memory");
    return p;
}

int chat_render(const chat_msg *msgs, size_t n, int add_generation_prompt, char **out, err_t *err) {
    *out = NULL;
    tok_part *p = alloc_parts(n, err);
    if (!p) return -1;
    size_t np, total = 0;
    if (layout(msgs, n, add_generation_prompt, p, &np, err)) {
        free(p);
        return -1;
    }
    for (size_t i = 0; i < np; i++) total += p[i].len;
    char *s = malloc(total + 1);
    if (!s) {
        free(p);
        return err_set(err, ERR_NOMEM, "chat: out of memory");
    }
    size_t off = 0;
    for (size_t i = 0; i < np; i++) {
        memcpy(s + off, p[i].text, p[i].len);
        off += p[i].len;
    }
    s[off] = 0;
    free(p);
    *out = s;
    return 0;
}

int chat_encode(const tok *t, const chat_msg *msgs, size_t n, int add_generation_prompt, tok_ids *out, err_t *err) {
    tok_part *p = alloc_parts(n, err);
    if (!p) return -1;
    size_t np;
    int rc = layout(msgs, n, add_generation_prompt, p, &np, err);
    if (!rc) rc = tok_encode_parts(t, p, np, out, err);
    free(p);
    return rc;
}
