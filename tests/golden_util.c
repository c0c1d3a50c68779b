/* tests/golden_util.c */
#include "golden_util.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

int golden_load(golden *g, const char *model) {
    memset(g, 0, sizeof *g);
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/%s/manifest.json", th_fixtures(), model);
    json_error_t je;
    json_t *m = json_load_file(path, 0, &je);
    if (!m) return FAIL("cannot read %s: %s", path, je.text), -1;
    g->vocab = (int)json_integer_value(json_object_get(m, "vocab_size"));
    json_t *ps = json_object_get(m, "prompts");
    size_t i;
    json_t *p;
    json_array_foreach(ps, i, p) {
        if (i >= 8) break;
        golden_prompt *gp = &g->p[g->nprompts++];
        json_t *ids = json_object_get(p, "ids"), *gr = json_object_get(p, "greedy_ids");
        size_t j;
        json_t *v;
        json_array_foreach(ids, j, v) if (j < 64) gp->prompt[gp->n_prompt++] = (int32_t)json_integer_value(v);
        json_array_foreach(gr, j, v) if (j < 64) gp->greedy[gp->n_greedy++] = (int32_t)json_integer_value(v);
        const char *file = json_string_value(json_object_get(json_object_get(json_object_get(p, "files"), "logits"), "file"));
        snprintf(path, sizeof path, "%s/golden/%s/%s", th_fixtures(), model, file ? file : "?");
        size_t len = 0;
        gp->logits = (float *)th_read_file(path, &len);
        if (!gp->logits || len != (size_t)gp->n_prompt * g->vocab * 4) {
            json_decref(m);
            return FAIL("%s: expected %d x %d floats", path, gp->n_prompt, g->vocab), -1;
        }
    }
    json_decref(m);
    return g->nprompts > 0 ? 0 : -1;
}

void golden_free(golden *g) {
    for (int i = 0; i < g->nprompts; i++) free(g->p[i].logits);
    memset(g, 0, sizeof *g);
}

double golden_rel_err(const float *a, const float *b, int rows, int vocab) {
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        double num = 0, den = 0;
        for (int i = 0; i < vocab; i++) {
            double d = (double)a[(size_t)r * vocab + i] - b[(size_t)r * vocab + i];
            num += d * d;
            den += (double)b[(size_t)r * vocab + i] * b[(size_t)r * vocab + i];
        }
        double e = sqrt(num / (den > 0 ? den : 1));
        if (e > worst) worst = e;
    }
    return worst;
}
