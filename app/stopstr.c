/* app/stopstr.c: see stopstr.h. */
#include "stopstr.h"

#include <string.h>

void stopstr_init(stopstr *f) { memset(f, 0, sizeof *f); }

int stopstr_add(stopstr *f, const char *s) {
    if (!s || !*s || f->n == STOPSTR_MAX) return -1;
    f->s[f->n] = s;
    f->len[f->n++] = strlen(s);
    return 0;
}

/* The longest suffix of held[0..n) that is a proper prefix of some stop string (the rest is safe to write). */
static size_t pending_suffix(const stopstr *f, size_t n) {
    size_t best = 0;
    for (int i = 0; i < f->n; i++) {
        size_t m = f->len[i] - 1 < n ? f->len[i] - 1 : n;
        for (size_t k = m; k > best; k--)
            if (!memcmp(f->held.buf + n - k, f->s[i], k)) {
                best = k;
                break;
            }
    }
    return best;
}

int stopstr_feed(stopstr *f, const char *s, size_t n, stopstr_out out, void *ctx) {
    if (f->hit) return 1;
    if (f->n == 0) {
        if (n) out(ctx, s, n);
        return 0;
    }
    if (textbuf_append(&f->held, s, n)) return -1;
    const char *h = f->held.buf;
    const size_t nh = f->held.len;
    /* The first stop string to be complete: the earliest end, and of those the earliest start, so the
     * result does not depend on how the text was cut (a later, longer one may have started earlier). */
    size_t first = nh;
    for (size_t end = 1; end <= nh && first == nh; end++)
        for (int i = 0; i < f->n; i++)
            if (f->len[i] <= end && end - f->len[i] < first && !memcmp(h + end - f->len[i], f->s[i], f->len[i]))
                first = end - f->len[i];
    if (first < nh) {
        if (first) out(ctx, h, first);
        f->hit = 1;
        textbuf_keep_tail(&f->held, 0);
        return 1;
    }
    size_t keep = pending_suffix(f, nh);
    if (nh > keep) {
        out(ctx, h, nh - keep);
        textbuf_keep_tail(&f->held, keep);
    }
    return 0;
}

void stopstr_finish(stopstr *f, stopstr_out out, void *ctx) {
    if (!f->hit && f->held.len) out(ctx, f->held.buf, f->held.len);
    textbuf_keep_tail(&f->held, 0);
}

void stopstr_free(stopstr *f) {
    textbuf_free(&f->held);
    memset(f, 0, sizeof *f);
}
