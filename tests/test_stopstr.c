/* tests/test_stopstr.c: the stop-string filter of `ernie run --stop` against a brute-force reference:
 * random texts (with two-byte UTF-8 characters) and stop strings over a small alphabet, so that partial
 * and overlapping matches are frequent, cut into random pieces. The written text must be exactly the
 * text before the first stop string to be complete, and after each piece what is held back must be
 * exactly the longest end of the text so far that could still start a stop string. */
#include <stdlib.h>
#include <string.h>

#include "app/stopstr.h"
#include "base/rng.h"
#include "harness.h"

typedef struct {
    char buf[512];
    size_t n;
} sink;

static void to_sink(void *c, const char *s, size_t n) {
    sink *k = c;
    if (k->n + n <= sizeof k->buf) memcpy(k->buf + k->n, s, n);
    k->n += n;
}

static const char *const ALPHA[] = {"a", "b", "\xC3\xA9"}; /* a, b, e-acute */

static size_t rand_text(rng_t *r, char *out, int chars) {
    size_t n = 0;
    for (int i = 0; i < chars; i++) {
        const char *c = ALPHA[rng_next(r) % 3];
        memcpy(out + n, c, strlen(c));
        n += strlen(c);
    }
    out[n] = 0;
    return n;
}

/* Reference: where the first stop string to be complete begins (the earliest end; of those ending at the
 * same byte, the earliest start); the text's length if none. Streaming stops there: a longer stop string
 * that began earlier but would end later is never seen whole. */
static size_t first_stop(const char *t, size_t n, char stops[][16], int ns) {
    for (size_t e = 1; e <= n; e++) {
        size_t best = n;
        for (int i = 0; i < ns; i++) {
            size_t l = strlen(stops[i]);
            if (l <= e && !memcmp(t + e - l, stops[i], l) && e - l < best) best = e - l;
        }
        if (best < n) return best;
    }
    return n;
}

/* Reference: the longest end of t[0..n) that is a proper prefix of a stop string. */
static size_t held_ref(const char *t, size_t n, char stops[][16], int ns) {
    size_t best = 0;
    for (int i = 0; i < ns; i++)
        for (size_t k = 1; k < strlen(stops[i]) && k <= n; k++)
            if (!memcmp(t + n - k, stops[i], k) && k > best) best = k;
    return best;
}

TEST(stopstr_matches_brute_force) {
    rng_t r;
    rng_seed(&r, 20261208);
    for (int trial = 0; trial < 4000; trial++) {
        char text[256], stops[STOPSTR_MAX][16];
        size_t n = rand_text(&r, text, 1 + (int)(rng_next(&r) % 40));
        int ns = (int)(rng_next(&r) % 4); /* 0 stop strings: everything passes */
        stopstr f;
        stopstr_init(&f);
        for (int i = 0; i < ns; i++) {
            rand_text(&r, stops[i], 1 + (int)(rng_next(&r) % 4));
            CHECK_INT(stopstr_add(&f, stops[i]), 0);
        }
        const size_t want = first_stop(text, n, stops, ns);
        sink k = {.n = 0};
        size_t fed = 0;
        int hit = 0, ok = 1;
        while (ok && fed < n && !hit) {
            size_t piece = 1 + rng_next(&r) % 6; /* byte pieces: the filter must not care where cuts fall */
            if (piece > n - fed) piece = n - fed;
            int rc = stopstr_feed(&f, text + fed, piece, to_sink, &k);
            fed += piece;
            hit = rc == 1;
            /* a hit exactly when a whole stop string has arrived; until then all but the held end is out */
            ok = CHECK(rc == 0 || rc == 1) && CHECK_INT(hit, first_stop(text, fed, stops, ns) < fed) &&
                 (hit || CHECK_INT((long long)k.n, (long long)(fed - held_ref(text, fed, stops, ns))));
        }
        stopstr_finish(&f, to_sink, &k);
        ok = ok && CHECK_INT((long long)k.n, (long long)want) && CHECK(!memcmp(k.buf, text, want)) &&
             (!hit || (CHECK_INT(stopstr_feed(&f, "b", 1, to_sink, &k), 1) && /* after a hit, nothing goes out */
                       CHECK_INT((long long)k.n, (long long)want)));
        stopstr_free(&f);
        if (!ok) {
            FAIL("trial %d: text \"%s\", %d stop strings: \"%s\" \"%s\" \"%s\", fed %zu, out \"%.*s\"", trial, text, ns,
                 ns > 0 ? stops[0] : "", ns > 1 ? stops[1] : "", ns > 2 ? stops[2] : "", fed, (int)k.n, k.buf);
            return;
        }
    }
}

TEST(stopstr_limits) {
    stopstr f;
    stopstr_init(&f);
    CHECK_INT(stopstr_add(&f, ""), -1);
    for (int i = 0; i < STOPSTR_MAX; i++) CHECK_INT(stopstr_add(&f, "x"), 0);
    CHECK_INT(stopstr_add(&f, "y"), -1);
    stopstr_free(&f);
}
