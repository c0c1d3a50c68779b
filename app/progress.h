/* app/progress.h: a progress bar for long work, on stderr.
 *
 * On a terminal: one line redrawn at most 10 times a second with a bar, done/total, rate and ETA.
 * Elsewhere (a log, CI): a plain line every few seconds, so logs stay readable. Updates may come from
 * any thread. Library code never sees this type: it gets a callback (progress_cb) that forwards here. */
#ifndef ERNIE_APP_PROGRESS_H
#define ERNIE_APP_PROGRESS_H

#include <stdint.h>

typedef struct progress progress;

typedef enum {
    PROG_COUNT, /* items: "12/340 tensors" */
    PROG_BYTES, /* bytes: "1.2/4.0 GB", rate in GB/s or MB/s */
} progress_unit;

/* label: "importing"; unit_name for PROG_COUNT ("tensors"). Returns NULL only on out of memory; every
 * function accepts NULL. quiet = 1 prints nothing at all (--json runs, tests). */
progress *progress_start(const char *label, double total, progress_unit unit, const char *unit_name, int quiet);

/* Sets the amount done (absolute, not an increment) and an optional short note ("layer 12"). */
void progress_set(progress *p, double done, const char *note);

/* Adds to the amount done, thread-safe. */
void progress_add(progress *p, double delta);

/* Final redraw and newline; frees p. */
void progress_finish(progress *p);

/* Bridge for library callbacks: ctx is a progress*, done is absolute. */
void progress_cb_bridge(void *ctx, double done, double total);

/* Formats bytes as "1.23 GB" / "456 MB" / "789 KB" / "12 B" (decimal units). */
const char *progress_fmt_bytes(double bytes, char *buf, int n);
/* Formats seconds as "1:02:03", "2:03", "4.5s". */
const char *progress_fmt_secs(double s, char *buf, int n);

#endif
