/* tests/test_sampler.c: the sampler against a brute-force model of Hugging Face's logits processors
 * (full sort, no shortcuts): exact cases, and frequencies of many draws against the reference
 * distribution. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "harness.h"
#include "model/sampler.h"

/* Reference: the probability of each token after temperature, top-k, top-p, min-p (HF order). */
static void ref_dist(const float *logits, int V, sampler_params p, double *out) {
    double *pr = calloc((size_t)V, sizeof *pr);
    int *idx = malloc((size_t)V * sizeof *idx);
    double mx = -INFINITY;
    for (int i = 0; i < V; i++) if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < V; i++) {
        pr[i] = isfinite(logits[i]) ? exp((logits[i] - mx) / p.temp) : 0;
        sum += pr[i];
        idx[i] = i;
    }
    for (int i = 0; i < V; i++) pr[i] /= sum;
    /* sort descending by probability, ties by id (selection sort: V is small in tests) */
    for (int i = 0; i < V; i++)
        for (int j = i + 1; j < V; j++)
            if (pr[idx[j]] > pr[idx[i]] || (pr[idx[j]] == pr[idx[i]] && idx[j] < idx[i])) {
                int t = idx[i]; idx[i] = idx[j]; idx[j] = t;
            }
    int n = V;
    if (p.top_k > 0 && p.top_k < n) n = p.top_k;
    double tot = 0;
    for (int i = 0; i < n; i++) tot += pr[idx[i]];
    if (p.top_p < 1) {
        double acc = 0;
        for (int i = 0; i < n; i++) {
            acc += pr[idx[i]] / tot;
            if (acc >= p.top_p) { n = i + 1; break; }
        }
    }
    if (p.min_p > 0) {
        int keep = 0;
        while (keep < n && pr[idx[keep]] >= p.min_p * pr[idx[0]]) keep++;
        n = keep;
    }
    tot = 0;
    for (int i = 0; i < n; i++) tot += pr[idx[i]];
    memset(out, 0, (size_t)V * sizeof *out);
    for (int i = 0; i < n; i++) out[idx[i]] = pr[idx[i]] / tot;
    free(pr);
    free(idx);
}

static void random_logits(float *l, int V, uint64_t seed, float spread) {
    rng_t r;
    rng_seed(&r, seed);
    for (int i = 0; i < V; i++) l[i] = (float)rng_normal(&r) * spread;
}

TEST(sampler_greedy_is_argmax) {
    float l[5] = {0.1f, 2.0f, -1.0f, 2.0f, NAN};
    sampler_params p = sampler_defaults();
    p.temp = 0;
    sampler *s = sampler_create(&p, 5);
    CHECK_INT(sampler_sample(s, l, NULL, 0), 1); /* lowest id wins ties, NaN ignored */
    sampler_free(s);
    float m[3] = {-INFINITY, -INFINITY, -INFINITY};
    s = sampler_create(&p, 3);
    CHECK_INT(sampler_sample(s, m, NULL, 0), -1);
    sampler_free(s);
}

TEST(sampler_masked_never_chosen) {
    int V = 50;
    float l[50];
    sampler_params p = {.temp = 5.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0, .repeat_penalty = 1, .seed = 3};
    sampler *s = sampler_create(&p, V);
    for (int t = 0; t < 2000; t++) {
        random_logits(l, V, (uint64_t)t, 1.0f);
        for (int i = 0; i < V; i += 2) l[i] = -INFINITY;
        int id = sampler_sample(s, l, NULL, 0);
        if (id < 0 || id % 2 == 0) { FAIL("draw %d chose masked id %d", t, id); break; }
    }
    sampler_free(s);
}

TEST(sampler_repetition_penalty_hf_semantics) {
    float l[4] = {2.0f, 1.9f, -1.0f, -1.1f};
    sampler_params p = sampler_defaults();
    p.temp = 0;
    p.repeat_penalty = 1.5f;
    p.repeat_last_n = 2;
    int32_t hist[3] = {0, 0, 2}; /* window = last 2 = {0, 2} */
    sampler *s = sampler_create(&p, 4);
    CHECK_INT(sampler_sample(s, l, hist, 3), 1);
    CHECK_NEAR(l[0], 2.0 / 1.5, 1e-6);  /* divided once, though it occurs twice */
    CHECK_NEAR(l[2], -1.5, 1e-6);       /* negative: multiplied */
    CHECK_NEAR(l[3], -1.1, 1e-6);       /* not in the window */
    sampler_free(s);
}

/* Draws many samples and compares frequencies with the reference probabilities: each frequency
 * within 5 standard deviations, and no token outside the reference support. */
static void check_distribution(sampler_params p, int V, float spread, uint64_t seed) {
    float *l = malloc((size_t)V * sizeof *l), *tmp = malloc((size_t)V * sizeof *tmp);
    double *ref = malloc((size_t)V * sizeof *ref);
    int *cnt = calloc((size_t)V, sizeof *cnt);
    random_logits(l, V, seed, spread);
    ref_dist(l, V, p, ref);
    sampler *s = sampler_create(&p, V);
    int draws = 40000;
    for (int d = 0; d < draws; d++) {
        memcpy(tmp, l, (size_t)V * sizeof *l);
        int id = sampler_sample(s, tmp, NULL, 0);
        if (id < 0 || id >= V) { FAIL("bad id %d", id); break; }
        cnt[id]++;
    }
    for (int i = 0; i < V; i++) {
        double f = (double)cnt[i] / draws, sd = sqrt(ref[i] * (1 - ref[i]) / draws);
        if (ref[i] == 0 && cnt[i]) { FAIL("token %d drawn %d times but outside the reference support (k=%d p=%g minp=%g)", i, cnt[i], p.top_k, p.top_p, p.min_p); break; }
        if (fabs(f - ref[i]) > 5 * sd + 1e-4) { FAIL("token %d: frequency %.4f vs reference %.4f (V=%d k=%d p=%g minp=%g t=%g)", i, f, ref[i], V, p.top_k, p.top_p, p.min_p, p.temp); break; }
    }
    sampler_free(s);
    free(l), free(tmp), free(ref), free(cnt);
}

TEST(sampler_matches_reference_distribution) {
    sampler_params base = {.temp = 0.8f, .top_k = 0, .top_p = 1.0f, .min_p = 0, .repeat_penalty = 1, .seed = 11};
    sampler_params p = base;
    check_distribution(p, 40, 1.5f, 1);
    p.top_p = 0.8f;
    check_distribution(p, 40, 1.5f, 2);
    p = base; p.top_k = 5;
    check_distribution(p, 40, 1.5f, 3);
    p = base; p.top_k = 7; p.top_p = 0.5f;
    check_distribution(p, 40, 1.0f, 4);
    p = base; p.min_p = 0.2f;
    check_distribution(p, 40, 1.5f, 5);
    p = base; p.temp = 1.7f; p.top_p = 0.95f; p.min_p = 0.05f;
    check_distribution(p, 300, 1.0f, 6);
    p = base; p.top_k = 3; p.top_p = 0.99f;
    check_distribution(p, 1000, 0.2f, 7); /* nearly flat: top-k must not be pruned by the top-p bound */
    p = base; p.top_k = 10; p.top_p = 0.7f; p.min_p = 0.3f;
    check_distribution(p, 60, 1.0f, 8);
    p = base; p.top_p = 0.6f; p.min_p = 0.4f;
    check_distribution(p, 60, 1.0f, 9);
}

TEST(sampler_seed_reproducible) {
    int V = 100;
    float l[100], t1[100], t2[100];
    random_logits(l, V, 9, 1.0f);
    sampler_params p = sampler_defaults();
    p.seed = 1234;
    sampler *a = sampler_create(&p, V), *b = sampler_create(&p, V);
    for (int i = 0; i < 200; i++) {
        memcpy(t1, l, sizeof l);
        memcpy(t2, l, sizeof l);
        if (sampler_sample(a, t1, NULL, 0) != sampler_sample(b, t2, NULL, 0)) { FAIL("streams differ at %d", i); break; }
    }
    sampler_free(a);
    sampler_free(b);
}
