/* tests/test_engine_quant.c: the engine over quantized weights (the codec's fused products, never
 * expanded) against the same engine over those weights decoded to f32 by the codec's own decoder: a
 * quantized model must compute exactly the function its decoded weights define, up to the order of
 * fp32 additions. Model files come from `ernie import` of the golden MoE fixture. */
#include <stdlib.h>
#include <string.h>

#include "app/model_load.h"
#include "golden_util.h"
#include "harness.h"
#include "model/hf_weights.h"
#include "model/modelfile.h"

typedef struct {
    mf_file *f;
    be_weight_src src;
    float *dec[256];
    int ndec;
} dec_ctx;

/* Serves every weight as f32, decoded by the codec (mf_weight_decode). */
static const be_weight_src *dec_lookup(void *c, const char *name, err_t *err) {
    dec_ctx *d = c;
    const mf_weight *w = mf_find_weight(d->f, name);
    if (!w) return err_set(err, ERR_FORMAT, "missing %s", name), NULL;
    size_t n = (size_t)(w->rows * w->cols);
    float *out = malloc(n * sizeof *out);
    d->dec[d->ndec++] = out;
    if (mf_weight_decode(w, out, err)) return NULL;
    memset(&d->src, 0, sizeof d->src);
    d->src.name = w->name;
    d->src.format = "f32";
    d->src.rows = w->rows;
    d->src.cols = w->cols;
    d->src.nparts = 1;
    d->src.part[0].name = "weight";
    d->src.part[0].data = out;
    d->src.part[0].nbytes = n * 4;
    return &d->src;
}

static void check_recipe(const char *recipe, const char *override) {
    const char *path = th_tmp("q.ernie");
    char *argv[] = {(char *)th_bin(), "import", "tests/fixtures/golden/moe", "-o", (char *)path, "--force",
                    "--recipe", (char *)recipe, override ? "--tensor-type" : NULL, (char *)override, NULL};
    char *o, *e;
    if (!CHECK_INT(th_run(argv, NULL, NULL, &o, &e), 0)) FAIL("import: %s", e);
    free(o), free(e);
    err_t err = {0};
    loaded_model *m = NULL;
    if (!CHECK_INT(model_load(&m, path, 0, &err), 0)) { FAIL("%s", err.msg); return; }
    dec_ctx d = {0};
    if (!CHECK_INT(mf_open(&d.f, path, &err), 0)) return;
    be *b = be_cpu_create(2, &err);
    eng *eq = NULL, *ed = NULL;
    uint8_t is_moe[64];
    eng_config cfg;
    eng_config_from(mf_config(d.f), 1, &cfg, is_moe);
    CHECK_INT(model_engine(m, b, 64, 16, &eq, &err), 0);
    if (!CHECK_INT(eng_create(&ed, &cfg, b, dec_lookup, &d, 64, 16, &err), 0)) FAIL("%s", err.msg);
    golden g;
    if (eq && ed && golden_load(&g, "moe") == 0) {
        golden_prompt *p = &g.p[3]; /* 33 tokens: two prefill chunks of 16 and one of 1 */
        size_t nv = (size_t)p->n_prompt * g.vocab;
        float *a = malloc(nv * 4), *c = malloc(nv * 4);
        CHECK_INT(eng_forward(eq, p->prompt, p->n_prompt, a, 1, &err), 0);
        CHECK_INT(eng_forward(ed, p->prompt, p->n_prompt, c, 1, &err), 0);
        double rel = golden_rel_err(a, c, p->n_prompt, g.vocab);
        if (rel > 2e-5) FAIL("recipe %s: quantized vs decoded logits differ by %.3g relative", recipe, rel);
        /* and the quantization did change the model (the comparison is not vacuous) */
        double vs_ref = golden_rel_err(a, p->logits, p->n_prompt, g.vocab);
        CHECK(vs_ref > 1e-4);
        free(a), free(c);
        golden_free(&g);
    }
    eng_free(eq);
    eng_free(ed);
    b->ops->destroy(b);
    for (int i = 0; i < d.ndec; i++) free(d.dec[i]);
    mf_close(d.f);
    model_unload(m);
}

TEST(engine_quant_q25_matches_decoded) { check_recipe("q2.5", NULL); }
TEST(engine_quant_baidu_matches_decoded) { check_recipe("baidu", NULL); }
TEST(engine_quant_modifiers_match_decoded) { check_recipe("fit80", "_proj$=ccq2.06+icq"); }
TEST(engine_quant_crvq_matches_decoded) { check_recipe("q2.75", "experts=ccq2.75+crvq"); }
