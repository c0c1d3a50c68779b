/* app/progress.c */
#include "progress.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "term.h"

struct progress {
    pthread_mutex_t mu;
    char label[64], unit_name[32], note[64];
    double total, done;
    progress_unit unit;
    int tty, quiet;
    double t0, last_draw;
    int drawn;
};

const char *progress_fmt_bytes(double b, char *buf, int n) {
    if (b >= 1e9) snprintf(buf, (size_t)n, "%.2f GB", b / 1e9);
    else if (b >= 1e6) snprintf(buf, (size_t)n, "%.1f MB", b / 1e6);
    else if (b >= 1e3) snprintf(buf, (size_t)n, "%.1f KB", b / 1e3);
    else snprintf(buf, (size_t)n, "%.0f B", b);
    return buf;
}

const char *progress_fmt_secs(double s, char *buf, int n) {
    if (!isfinite(s) || s < 0) snprintf(buf, (size_t)n, "?");
    else if (s < 60) snprintf(buf, (size_t)n, "%.1fs", s);
    else if (s < 3600) snprintf(buf, (size_t)n, "%d:%02d", (int)s / 60, (int)s % 60);
    else snprintf(buf, (size_t)n, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
    return buf;
}

progress *progress_start(const char *label, double total, progress_unit unit, const char *unit_name, int quiet) {
    progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    pthread_mutex_init(&p->mu, NULL);
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    snprintf(p->unit_name, sizeof p->unit_name, "%s", unit_name ? unit_name : "");
    p->total = total;
    p->unit = unit;
    p->tty = term_isatty(stderr);
    p->quiet = quiet;
    p->t0 = clock_now();
    p->last_draw = p->t0;
    return p;
}

static void draw(progress *p, int final) {
    if (p->quiet) return;
    double now = clock_now(), el = now - p->t0;
    double frac = p->total > 0 ? p->done / p->total : 0;
    if (frac > 1) frac = 1;
    double rate = el > 0 ? p->done / el : 0;
    double eta = rate > 0 ? (p->total - p->done) / rate : NAN;
    char amount[64], rate_s[48], t[32], a[24], b[24];
    if (p->unit == PROG_BYTES) {
        snprintf(amount, sizeof amount, "%s/%s", progress_fmt_bytes(p->done, a, sizeof a),
                 progress_fmt_bytes(p->total, b, sizeof b));
        snprintf(rate_s, sizeof rate_s, "%s/s", progress_fmt_bytes(rate, a, sizeof a));
    } else {
        snprintf(amount, sizeof amount, "%.0f/%.0f %s", p->done, p->total, p->unit_name);
        snprintf(rate_s, sizeof rate_s, "%.1f/s", rate);
    }
    if (final) snprintf(t, sizeof t, "in %s", progress_fmt_secs(el, a, sizeof a));
    else snprintf(t, sizeof t, "ETA %s", progress_fmt_secs(eta, a, sizeof a));
    if (p->tty) {
        int w = term_width();
        int barw = w - (int)strlen(p->label) - (int)strlen(amount) - (int)strlen(rate_s) - (int)strlen(t) - 16 -
                   (p->note[0] ? (int)strlen(p->note) + 1 : 0);
        if (barw > 40) barw = 40;
        char bar[64] = {0};
        if (barw >= 5) {
            int fill = (int)(frac * barw + 0.5);
            for (int i = 0; i < barw; i++) bar[i] = i < fill ? '#' : '.';
            bar[barw] = 0;
        }
        fprintf(stderr, "\r\033[K%s %s%s%s %3.0f%% %s %s %s%s%s", p->label, term_sgr(stderr, T_CYAN), bar,
                term_sgr(stderr, T_RESET), frac * 100, amount, rate_s, t, p->note[0] ? " " : "", p->note);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s: %.0f%% %s %s %s%s%s\n", p->label, frac * 100, amount, rate_s, t, p->note[0] ? " " : "",
                p->note);
    }
    fflush(stderr);
    p->last_draw = now;
    p->drawn = 1;
}

static void maybe_draw(progress *p) {
    double now = clock_now();
    double every = p->tty ? 0.1 : 5.0;
    if (now - p->last_draw >= every) draw(p, 0);
}

void progress_set(progress *p, double done, const char *note) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->done = done;
    if (note) snprintf(p->note, sizeof p->note, "%s", note);
    maybe_draw(p);
    pthread_mutex_unlock(&p->mu);
}

void progress_add(progress *p, double delta) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->done += delta;
    maybe_draw(p);
    pthread_mutex_unlock(&p->mu);
}

void progress_cb_bridge(void *ctx, double done, double total) {
    progress *p = ctx;
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    if (total > 0) p->total = total;
    p->done = done;
    maybe_draw(p);
    pthread_mutex_unlock(&p->mu);
}

void progress_finish(progress *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    if (p->tty || p->drawn || clock_now() - p->t0 > 1.0) draw(p, 1);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
