/* app/stopstr.h: stop strings over streamed text (`ernie run --stop`). The filter holds back the end of
 * the text while it could still be the start of a stop string, so that exactly the text before the first
 * stop string to be complete (the earliest end; of those ending together, the longest) is written, however
 * the text arrives cut into pieces. */
#ifndef ERNIE_APP_STOPSTR_H
#define ERNIE_APP_STOPSTR_H

#include <stddef.h>

#include "textbuf.h"

#define STOPSTR_MAX 8

typedef void (*stopstr_out)(void *ctx, const char *s, size_t n);

typedef struct {
    const char *s[STOPSTR_MAX]; /* not copied: the caller keeps them alive */
    size_t len[STOPSTR_MAX];
    int n;
    textbuf held; /* text not written yet: a possible start of a stop string */
    int hit; /* a stop string was completed */
} stopstr;

void stopstr_init(stopstr *f);
/* Adds a stop string; -1 if it is empty or STOPSTR_MAX are set. */
int stopstr_add(stopstr *f, const char *s);
/* Takes the next piece of text and writes through out all of it that can no longer be part of a stop
 * string. Returns 1 once a stop string is complete: the text before it has been written, and from then on
 * nothing more is (the stop string and what follows are dropped). 0 otherwise, -1 when out of memory.
 * Pieces cut inside a UTF-8 character stay whole: a held suffix starts where a stop string starts. */
int stopstr_feed(stopstr *f, const char *s, size_t n, stopstr_out out, void *ctx);
/* The text ended: writes what is still held, unless a stop string was hit. */
void stopstr_finish(stopstr *f, stopstr_out out, void *ctx);
void stopstr_free(stopstr *f);

#endif
