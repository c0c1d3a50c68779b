/* tests/golden_util.h: reading the golden fixtures (tests/fixtures/golden/<model>/) made by
 * tools/make_golden.py with transformers: the manifest's prompts and greedy paths, and the fp32 logits
 * files. Shared by the engine's golden tests. */
#ifndef ERNIE_TESTS_GOLDEN_UTIL_H
#define ERNIE_TESTS_GOLDEN_UTIL_H

#include <stdint.h>

typedef struct {
    int n_prompt;
    int32_t prompt[64];
    int n_greedy;
    int32_t greedy[64];
    float *logits; /* [n_prompt, vocab] fp32 reference, malloc'd */
} golden_prompt;

typedef struct {
    int vocab;
    int nprompts;
    golden_prompt p[8];
} golden;

/* Loads tests/fixtures/golden/<model>/manifest.json and the fp32 logits; 0 on success. */
int golden_load(golden *g, const char *model);
void golden_free(golden *g);

/* max over rows of ||a - b|| / ||b|| for [rows, vocab] arrays */
double golden_rel_err(const float *a, const float *b, int rows, int vocab);

#endif
