/* app/textbuf.c: see textbuf.h. */
#include "textbuf.h"

#include <stdlib.h>
#include <string.h>

int textbuf_append(textbuf *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *b = realloc(t->buf, cap);
        if (!b) return -1;
        t->buf = b, t->cap = cap;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = 0;
    return 0;
}

void textbuf_keep_tail(textbuf *t, size_t keep) {
    if (!t->buf || keep >= t->len) return;
    memmove(t->buf, t->buf + t->len - keep, keep);
    t->len = keep;
    t->buf[keep] = 0;
}

void textbuf_free(textbuf *t) {
    free(t->buf);
    t->buf = NULL, t->len = t->cap = 0;
}
