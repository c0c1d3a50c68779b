/* base/err.h: the error value every library function fills.
 *
 * Library code never prints or exits: it returns a status and leaves the reason here, and app/
 * turns that into "ernie: <what failed>: <why>". A message names the file, tensor or flag at fault,
 * because "bad header" alone never helped anyone. */
#ifndef ERNIE_BASE_ERR_H
#define ERNIE_BASE_ERR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ERR_OK = 0,
    ERR_IO,          /* open/read/write/fsync/rename failed (errno text in the message) */
    ERR_FORMAT,      /* input is malformed: bad header, bad JSON, out-of-range offsets */
    ERR_CORRUPT,     /* checksum mismatch or parameters that cannot have been written by us */
    ERR_UNSUPPORTED, /* well formed, but not something we handle (architecture, dtype, format) */
    ERR_NOMEM,       /* allocation failed */
    ERR_ARG,         /* a caller passed something invalid (bad shape, unknown format name) */
    ERR_INTERRUPTED, /* the user asked us to stop (Ctrl-C) */
    ERR_NODEV,       /* no usable GPU / driver */
} err_code;

typedef struct {
    err_code code;
    char msg[512];
} err_t;

/* Sets code and a printf-style message; returns -1 so callers can write `return err_set(...)`.
 * A NULL err is allowed (the message is dropped). */
int err_set(err_t *e, err_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message with more context ("tensor X: " + old), keeping the code. Returns -1. */
int err_wrap(err_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears to ERR_OK with an empty message. */
void err_clear(err_t *e);

/* Short name of a code ("io", "format", ...), for logs and tests. */
const char *err_code_name(err_code code);

#ifdef __cplusplus
}
#endif

#endif
