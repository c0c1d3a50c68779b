/* kernels/cpu/cpu_moe.c: MoE routing and the routed experts on the CPU (spec/ernie.md §2.7). The
 * experts go through cpu_matmul on the rows of each selected expert, so they read quantized weights
 * the same fused way as every other product; tokens are grouped by expert so each expert's weights
 * are streamed once per chunk, not once per token. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"

void cpu_moe_route(be *b, const be_weight *router, const float *bias, const float *x, int T, int E, int k,
                   float norm_min, int32_t *ids, float *w) {
    float *lg = malloc((size_t)T * E * sizeof *lg);
    if (!lg) {
        cpu_fail(b, ERR_NOMEM, "out of memory in MoE routing");
        return;
    }
    cpu_matmul(b, router, 0, E, x, T, lg);
    float p[1024], sel[1024];
    for (int t = 0; t < T; t++) {
        float *l = lg + (size_t)t * E;
        float mx = -INFINITY;
        for (int i = 0; i < E; i++) mx = l[i] > mx ? l[i] : mx;
        double sum = 0;
        for (int i = 0; i < E && i < 1024; i++) {
            p[i] = expf(l[i] - mx);
            sum += p[i];
        }
        for (int i = 0; i < E && i < 1024; i++) {
            p[i] = (float)(p[i] / sum);
            sel[i] = p[i] + (bias ? bias[i] : 0.0f); /* the bias picks experts, never weights them */
        }
        /* k largest biased scores; ties go to the lower expert id */
        int32_t *id = ids + (size_t)t * k;
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int i = 0; i < E; i++)
                if (sel[i] != -INFINITY && (best < 0 || sel[i] > sel[best])) best = i;
            id[j] = best;
            sel[best] = -INFINITY;
        }
        /* ascending expert order: the reference sums experts in index order */
        for (int a = 1; a < k; a++)
            for (int c = a; c > 0 && id[c - 1] > id[c]; c--) {
                int32_t tmp = id[c];
                id[c] = id[c - 1];
                id[c - 1] = tmp;
            }
        float s = 0;
        for (int j = 0; j < k; j++) s += p[id[j]];
        if (s < norm_min) s = norm_min;
        for (int j = 0; j < k; j++) w[(size_t)t * k + j] = p[id[j]] / s;
    }
    free(lg);
}

void cpu_moe_experts(be *b, const be_weight *gate, const be_weight *up, const be_weight *down, const float *x, int T,
                     int H, int I, int k, const int32_t *ids, const float *w, float *out) {
    memset(out, 0, (size_t)T * H * sizeof *out);
    int E = 0;
    for (int i = 0; i < T * k; i++) E = ids[i] + 1 > E ? ids[i] + 1 : E;
    int *tok = malloc((size_t)T * sizeof *tok);
    float *wt = malloc((size_t)T * sizeof *wt);
    float *xg = malloc((size_t)T * H * sizeof *xg);
    float *g = malloc((size_t)T * I * sizeof *g), *u = malloc((size_t)T * I * sizeof *u);
    float *y = malloc((size_t)T * H * sizeof *y);
    if (!(tok && wt && xg && g && u && y)) cpu_fail(b, ERR_NOMEM, "out of memory in the MoE experts");
    else {
        for (int e = 0; e < E; e++) {
            int m = 0;
            for (int t = 0; t < T; t++)
                for (int j = 0; j < k; j++)
                    if (ids[(size_t)t * k + j] == e) {
                        tok[m] = t;
                        wt[m] = w[(size_t)t * k + j];
                        memcpy(xg + (size_t)m * H, x + (size_t)t * H, (size_t)H * sizeof *x);
                        m++;
                    }
            if (!m) continue;
            cpu_matmul(b, gate, (int64_t)e * I, I, xg, m, g);
            cpu_matmul(b, up, (int64_t)e * I, I, xg, m, u);
            cpu_swiglu(b, g, u, (int64_t)m * I, g);
            cpu_matmul(b, down, (int64_t)e * H, H, g, m, y);
            for (int r = 0; r < m; r++) {
                float *o = out + (size_t)tok[r] * H;
                const float *yr = y + (size_t)r * H;
                for (int i = 0; i < H; i++) o[i] += wt[r] * yr[i];
            }
        }
    }
    free(tok), free(wt), free(xg), free(g), free(u), free(y);
}
