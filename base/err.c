/* base/err.c: filling err_t. Must never allocate: it runs on out-of-memory paths. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int err_set(err_t *e, err_code code, const char *fmt, ...) {
    if (!e) return -1;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int err_wrap(err_t *e, const char *fmt, ...) {
    if (!e) return -1;
    char prefix[256], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    size_t pl = strlen(prefix);
    if (pl > sizeof e->msg - 1) pl = sizeof e->msg - 1;
    memcpy(e->msg, prefix, pl);
    size_t ol = strnlen(old, sizeof old - 1);
    if (ol > sizeof e->msg - 1 - pl) ol = sizeof e->msg - 1 - pl;
    memcpy(e->msg + pl, old, ol);
    e->msg[pl + ol] = 0;
    return -1;
}

void err_clear(err_t *e) {
    if (!e) return;
    e->code = ERR_OK;
    e->msg[0] = 0;
}

const char *err_code_name(err_code code) {
    switch (code) {
    case ERR_OK: return "ok";
    case ERR_IO: return "io";
    case ERR_FORMAT: return "format";
    case ERR_CORRUPT: return "corrupt";
    case ERR_UNSUPPORTED: return "unsupported";
    case ERR_NOMEM: return "nomem";
    case ERR_ARG: return "arg";
    case ERR_INTERRUPTED: return "interrupted";
    case ERR_NODEV: return "nodev";
    }
    return "unknown";
}
