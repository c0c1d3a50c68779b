/* tokenizer/chat.h: the ERNIE-4.5 chat template (spec §4), as a string and as token ids.
 *
 *   <|begin_of_sentence|>                       once, at the start
 *   system:    content + "\n"
 *   user:      "User: " + content + "\n"
 *   assistant: "Assistant: " + content + "<|end_of_sentence|>"
 *   any other role is dropped
 *   generation prompt: "Assistant: "
 *
 * The scaffolding is parsed for special tokens; message contents are plain text, so nothing a user
 * types can become a control token (tokenizer.h, TOK_PLAIN). */
#ifndef ERNIE_TOKENIZER_CHAT_H
#define ERNIE_TOKENIZER_CHAT_H

#include <stddef.h>

#include "base/err.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    const char *role;    /* "system", "user", "assistant"; anything else is dropped */
    const char *content; /* UTF-8 */
} chat_msg;

/* Renders the template to a malloc'd, NUL-terminated string, exactly the text transformers'
 * apply_chat_template(tokenize=False) gives. A NULL role or content is ERR_ARG. */
int chat_render(const chat_msg *msgs, size_t n, int add_generation_prompt, char **out, err_t *err);

/* Appends the prompt's token ids to *out: the ids of the rendered string, encoded as one text (so
 * SentencePiece sees "User: " + content + "\n" as one stretch, like transformers), with special
 * tokens recognised only in the scaffolding. */
int chat_encode(const tok *t, const chat_msg *msgs, size_t n, int add_generation_prompt, tok_ids *out, err_t *err);

#endif
