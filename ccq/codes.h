/* ccq/codes.h: the exact search for one code word of an (L, N, S) convolutional code.
 *
 * Code words are independent (spec §1), so the best one for given per-window costs is a shortest path
 * through the shared bits: window i shares its top L-S bits with the low L-S bits of window i-1, so a
 * Viterbi pass over 2^(L-S) states costs N * 2^L instead of 2^T. Inline, so that each format's call
 * with constant (L, N, S) compiles to straight-line code: this search is most of an encoder's time.
 * Tests check it against brute force. Must never depend on a particular format. */
#ifndef ERNIE_CCQ_CODES_H
#define ERNIE_CCQ_CODES_H

#include <assert.h>
#include <stdint.h>
#include <string.h>

/* The window values of code word c of an (L, n, S) code, by the spec's formula:
 * v_i = (c >> (T - L - i*S)) & (2^L - 1) with T = L + (n-1)*S. */
static inline void conv_windows(int L, int n, int S, uint32_t c, int *v) {
    int T = L + (n - 1) * S;
    uint32_t mask = (1u << L) - 1;
    for (int i = 0; i < n; i++) v[i] = (int)((c >> (T - L - i * S)) & mask);
}

/* The minimum of sum_i cost[i * 2^L + v_i] over every code word of an (L, n, S) code; writes the code
 * word. Ties go to the smaller window values. L <= 8, n <= 8, T <= 32. */
static inline float conv_search(int L, int n, int S, const float *cost, uint32_t *code) {
    assert(L >= 1 && L <= 8 && n >= 1 && n <= 8 && S >= 1 && S <= L && L + (n - 1) * S <= 32);
    const int O = L - S, NV = 1 << L, NS = 1 << O;
    const uint32_t smask = (uint32_t)NS - 1;
    float f[256], g[256];
    uint8_t bp[8][256]; /* window value that reached each state */
    /* Each state's first candidate is v = state itself (v < NS <= NV), which also keeps the back
     * pointers defined when costs are infinite. */
    for (int s = 0; s < NS; s++) f[s] = cost[s], bp[0][s] = (uint8_t)s;
    for (int v = NS; v < NV; v++) {
        uint32_t st = (uint32_t)v & smask;
        if (cost[v] < f[st]) f[st] = cost[v], bp[0][st] = (uint8_t)v;
    }
    for (int i = 1; i < n; i++) {
        const float *ci = cost + (size_t)i * NV;
        for (int s = 0; s < NS; s++) g[s] = f[s >> S] + ci[s], bp[i][s] = (uint8_t)s;
        for (int v = NS; v < NV; v++) {
            float c = f[v >> S] + ci[v];
            uint32_t st = (uint32_t)v & smask;
            if (c < g[st]) g[st] = c, bp[i][st] = (uint8_t)v;
        }
        memcpy(f, g, sizeof(float) * (size_t)NS);
    }
    int best = 0;
    for (int s = 1; s < NS; s++)
        if (f[s] < f[best]) best = s;
    /* Walk back: window i's top O bits are window i-1's state. */
    int v[8] = {0};
    uint32_t st = (uint32_t)best;
    for (int i = n - 1; i >= 0; i--) {
        v[i] = bp[i][st];
        st = (uint32_t)v[i] >> S;
    }
    uint32_t c = (uint32_t)v[0];
    for (int i = 1; i < n; i++) c = (c << S) | ((uint32_t)v[i] & ((1u << S) - 1));
    *code = c;
    return f[best];
}

#endif
