/* app/textbuf.h: a growing text buffer (a reply being collected, text held back), always NUL-terminated
 * once anything was appended. */
#ifndef ERNIE_APP_TEXTBUF_H
#define ERNIE_APP_TEXTBUF_H

#include <stddef.h>

typedef struct {
    char *buf; /* NULL until the first append */
    size_t len, cap;
} textbuf;

/* Appends n bytes; -1 when out of memory (the buffer is then unchanged). */
int textbuf_append(textbuf *t, const char *s, size_t n);
/* Keeps only the last `keep` bytes (keep <= len). */
void textbuf_keep_tail(textbuf *t, size_t keep);
void textbuf_free(textbuf *t);

#endif
