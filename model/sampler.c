/* model/sampler.c: token selection. Allocation happens once per sampler; sampling itself only touches
 * the candidate buffer, so it costs O(vocab) plus a sort of the few tokens that can matter. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

typedef struct {
    float p;
    int id;
} cand;

struct sampler {
    sampler_params p;
    int vocab;
    rng_t rng;
    cand *c;          /* [vocab] */
    uint8_t *penal;   /* [vocab] marks ids already penalised this step */
};

sampler_params sampler_defaults(void) {
    sampler_params p = {.temp = 0.8f, .top_k = 0, .top_p = 0.8f, .min_p = 0.0f, .repeat_penalty = 1.0f,
                        .repeat_last_n = 64, .seed = 0};
    return p;
}

sampler *sampler_create(const sampler_params *p, int vocab) {
    if (vocab <= 0) return NULL;
    sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->vocab = vocab;
    s->c = malloc((size_t)vocab * sizeof *s->c);
    s->penal = calloc((size_t)vocab, 1);
    if (!s->c || !s->penal) {
        sampler_free(s);
        return NULL;
    }
    s->p = *p;
    rng_seed(&s->rng, p->seed);
    return s;
}

void sampler_free(sampler *s) {
    if (!s) return;
    free(s->c);
    free(s->penal);
    free(s);
}

void sampler_set_params(sampler *s, const sampler_params *p) {
    uint64_t old = s->p.seed;
    s->p = *p;
    if (p->seed != old) rng_seed(&s->rng, p->seed);
}

int sampler_argmax(const float *logits, int n) {
    int best = -1;
    float bv = -INFINITY;
    for (int i = 0; i < n; i++)
        if (logits[i] > bv) { /* NaN compares false: skipped */
            bv = logits[i];
            best = i;
        }
    return best;
}

static int cmp_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id - y->id; /* stable order for equal values: lower id first */
}

static int better(const cand *a, const cand *b) { return a->p > b->p || (a->p == b->p && a->id < b->id); }

/* Moves the k best of c[0..m) to c[0..k) (any order) with a min-heap: O(m log k), no full sort of
 * 100k candidates when top-k is small. Returns k. */
static int select_top(cand *c, int m, int k) {
    /* heap of the current best k in c[0..k), worst at the root */
    for (int i = k / 2 - 1; i >= 0; i--)
        for (int j = i;;) {
            int l = 2 * j + 1, r = l + 1, w = j;
            if (l < k && better(&c[w], &c[l])) w = l;
            if (r < k && better(&c[w], &c[r])) w = r;
            if (w == j) break;
            cand t = c[j]; c[j] = c[w]; c[w] = t;
            j = w;
        }
    for (int i = k; i < m; i++) {
        if (!better(&c[i], &c[0])) continue;
        c[0] = c[i];
        for (int j = 0;;) {
            int l = 2 * j + 1, r = l + 1, w = j;
            if (l < k && better(&c[w], &c[l])) w = l;
            if (r < k && better(&c[w], &c[r])) w = r;
            if (w == j) break;
            cand t = c[j]; c[j] = c[w]; c[w] = t;
            j = w;
        }
    }
    return k;
}

static void apply_penalty(sampler *s, float *logits, const int32_t *hist, int nhist) {
    float pen = s->p.repeat_penalty;
    if (pen == 1.0f || s->p.repeat_last_n == 0 || nhist <= 0) return;
    int start = s->p.repeat_last_n < 0 || s->p.repeat_last_n >= nhist ? 0 : nhist - s->p.repeat_last_n;
    /* Each id is penalised once however often it occurred (HF gathers unique ids). */
    for (int i = start; i < nhist; i++) {
        int id = hist[i];
        if (id < 0 || id >= s->vocab || s->penal[id]) continue;
        s->penal[id] = 1;
        float l = logits[id];
        logits[id] = l > 0 ? l / pen : l * pen;
    }
    for (int i = start; i < nhist; i++)
        if (hist[i] >= 0 && hist[i] < s->vocab) s->penal[hist[i]] = 0;
}

int sampler_sample(sampler *s, float *logits, const int32_t *hist, int nhist) {
    int V = s->vocab;
    apply_penalty(s, logits, hist, nhist);
    if (s->p.temp <= 0.0f) return sampler_argmax(logits, V);

    int best = sampler_argmax(logits, V);
    if (best < 0) return -1;
    float inv_t = 1.0f / s->p.temp, mx = logits[best];
    /* Softmax with temperature, in double for the sum: 100k terms. */
    double sum = 0;
    for (int i = 0; i < V; i++) {
        float e = isfinite(logits[i]) ? expf((logits[i] - mx) * inv_t) : 0.0f;
        s->c[i].p = e;
        s->c[i].id = i;
        sum += e;
    }
    int n = V;
    int k = s->p.top_k > 0 && s->p.top_k < V ? s->p.top_k : 0;
    float top_p = s->p.top_p, min_p = s->p.min_p;
    if (k || top_p < 1.0f || min_p > 0.0f) {
        /* Only tokens that can survive need sorting. Under min-p, anything below min_p * p_max is out
         * (p_max is exp(0) = 1 before normalising, and renormalising keeps ratios). Without top-k, a
         * token whose probability is below (1 - top_p) / (V - 1) can never be inside the nucleus: all the
         * tokens at or below it together hold less than the 1 - top_p that is cut away. With top-k the
         * nucleus is taken over the renormalised top k, where that bound does not hold, so top-k
         * selects exactly instead. */
        double cut = min_p > 0.0f && top_p >= 1.0f ? (double)min_p : 0.0; /* else it would skew the nucleus */
        if (!k && top_p < 1.0f) {
            double c2 = (1.0 - top_p) / (V - 1) * sum;
            if (c2 > cut) cut = c2;
        }
        int m = 0;
        for (int i = 0; i < V; i++)
            if (s->c[i].p > 0 && s->c[i].p >= cut) s->c[m++] = s->c[i];
        if (m == 0) return best; /* cannot happen (the max has p = 1), but never return garbage */
        if (k && m > k) m = select_top(s->c, m, k);
        qsort(s->c, (size_t)m, sizeof *s->c, cmp_desc);
        n = m;
        /* The nucleus is a share of the whole distribution, or of the top k when top-k ran first:
         * never of the pruned candidate list. */
        double tot = sum;
        if (k) {
            tot = 0;
            for (int i = 0; i < n; i++) tot += s->c[i].p;
        }
        if (top_p < 1.0f) {
            double acc = 0;
            int keep = n;
            for (int i = 0; i < n; i++) {
                acc += s->c[i].p;
                if (acc >= top_p * tot) {
                    keep = i + 1;
                    break;
                }
            }
            n = keep;
        }
        if (min_p > 0.0f) {
            float thr = min_p * s->c[0].p;
            int keep = 0;
            while (keep < n && s->c[keep].p >= thr) keep++;
            n = keep > 0 ? keep : 1;
        }
        sum = 0;
        for (int i = 0; i < n; i++) sum += s->c[i].p;
    }
    double r = rng_uniform(&s->rng) * sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += s->c[i].p;
        if (r < acc) return s->c[i].id;
    }
    return s->c[n - 1].id;
}
