/* tests/test_engine_hf.c: the CPU engine straight from a Hugging Face checkpoint (no import) against
 * transformers' fp32 logits and greedy paths (tests/fixtures/golden, made by tools/make_golden.py).
 * The weight lookup here maps the engine's names to the hub's and stacks experts itself, independently
 * of the importer, so a mistake in either shows up as a disagreement. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden_util.h"
#include "harness.h"
#include "kernels/backend.h"
#include "model/engine.h"
#include "model/safetensors.h"

typedef struct {
    st_file *f;
    be_weight_src src;
    int n_experts;
    void *stack[64]; /* stacked expert copies kept alive for the engine's lifetime */
    int nstack;
} hf_ctx;

static const be_weight_src *hf_lookup(void *c, const char *name, err_t *err) {
    hf_ctx *h = c;
    char hub[300];
    memset(&h->src, 0, sizeof h->src);
    h->src.name = name;
    h->src.nparts = 1;
    h->src.part[0].name = "weight";
    const char *ex = strstr(name, ".mlp.experts.");
    if (ex) { /* stack experts.{e}.X.weight into E*N rows */
        const char *kind = ex + strlen(".mlp.experts.");
        int prefix = (int)(ex - name);
        size_t total = 0, each = 0;
        const st_tensor *t0 = NULL;
        for (int e = 0; e < h->n_experts; e++) {
            snprintf(hub, sizeof hub, "%.*s.mlp.experts.%d.%s.weight", prefix, name, e, kind);
            const st_tensor *t = st_find(h->f, hub);
            if (!t) return err_set(err, ERR_FORMAT, "missing %s", hub), NULL;
            if (!t0) t0 = t, each = t->nbytes;
            total += t->nbytes;
        }
        uint8_t *buf = malloc(total);
        for (int e = 0; e < h->n_experts; e++) {
            snprintf(hub, sizeof hub, "%.*s.mlp.experts.%d.%s.weight", prefix, name, e, kind);
            memcpy(buf + e * each, st_find(h->f, hub)->data, each);
        }
        h->stack[h->nstack++] = buf;
        h->src.format = "bf16";
        h->src.rows = t0->shape[0] * h->n_experts;
        h->src.cols = t0->shape[1];
        h->src.part[0].data = buf;
        h->src.part[0].nbytes = total;
        return &h->src;
    }
    if (strstr(name, "e_score_correction_bias")) snprintf(hub, sizeof hub, "%s", name); /* no .weight */
    else snprintf(hub, sizeof hub, "%s.weight", name);
    const st_tensor *t = st_find(h->f, hub);
    if (!t) return err_set(err, ERR_FORMAT, "missing %s", hub), NULL;
    h->src.format = t->dtype == ST_F32 ? "f32" : "bf16";
    h->src.rows = t->ndim == 2 ? t->shape[0] : 1;
    h->src.cols = t->ndim == 2 ? t->shape[1] : t->shape[t->ndim - 1];
    h->src.part[0].data = t->data;
    h->src.part[0].nbytes = t->nbytes;
    return &h->src;
}

static int geti(json_t *c, const char *k, int def) {
    json_t *v = json_object_get(c, k);
    return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

static void run_golden(const char *model, int max_batch) {
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/%s/config.json", th_fixtures(), model);
    json_error_t je;
    json_t *c = json_load_file(path, 0, &je);
    if (!CHECK(c)) return;
    eng_config cfg = {0};
    cfg.hidden = geti(c, "hidden_size", 0);
    cfg.n_layers = geti(c, "num_hidden_layers", 0);
    cfg.n_heads = geti(c, "num_attention_heads", 0);
    cfg.n_kv_heads = geti(c, "num_key_value_heads", 0);
    cfg.head_dim = geti(c, "head_dim", cfg.hidden / cfg.n_heads);
    cfg.vocab = geti(c, "vocab_size", 0);
    cfg.inter = geti(c, "intermediate_size", 0);
    cfg.n_experts = geti(c, "moe_num_experts", 0);
    cfg.moe_k = geti(c, "moe_k", 0);
    cfg.moe_inter = geti(c, "moe_intermediate_size", 0);
    cfg.shared_inter = cfg.moe_inter * geti(c, "moe_num_shared_experts", 0);
    cfg.eps = (float)json_number_value(json_object_get(c, "rms_norm_eps"));
    cfg.rope_theta = (float)json_number_value(json_object_get(c, "rope_theta"));
    cfg.moe_norm_min = 1e-12f;
    cfg.tie_embeddings = json_is_true(json_object_get(c, "tie_word_embeddings"));
    cfg.moe_bias = json_is_true(json_object_get(c, "moe_use_aux_free"));
    uint8_t is_moe[64] = {0};
    int start = geti(c, "moe_layer_start_index", 0), end = geti(c, "moe_layer_end_index", cfg.n_layers - 1),
        every = geti(c, "moe_layer_interval", 1);
    for (int l = 0; l < cfg.n_layers && cfg.n_experts; l++) is_moe[l] = (l + 1) % every == 0 && l >= start && l <= end;
    cfg.is_moe = is_moe;
    json_decref(c);

    hf_ctx h = {0};
    h.n_experts = cfg.n_experts;
    err_t e = {0};
    snprintf(path, sizeof path, "%s/golden/%s/model.safetensors", th_fixtures(), model);
    if (!CHECK_INT(st_open(&h.f, path, &e), 0)) { FAIL("%s", e.msg); return; }
    golden g;
    if (golden_load(&g, model)) return;
    be *b = be_cpu_create(2, &e);
    for (int pi = 0; pi < g.nprompts; pi++) {
        golden_prompt *p = &g.p[pi];
        eng *en = NULL;
        if (!CHECK_INT(eng_create(&en, &cfg, b, hf_lookup, &h, 128, max_batch, &e), 0)) { FAIL("%s", e.msg); break; }
        float *lg = malloc((size_t)p->n_prompt * g.vocab * sizeof *lg);
        if (!CHECK_INT(eng_forward(en, p->prompt, p->n_prompt, lg, 1, &e), 0)) FAIL("%s", e.msg);
        double err = golden_rel_err(lg, p->logits, p->n_prompt, g.vocab);
        if (err > 1e-4) FAIL("%s prompt %d: logits relative error %.3g (limit 1e-4)", model, pi, err);
        /* greedy continuation, one token at a time through the KV cache */
        float *last = malloc((size_t)g.vocab * sizeof *last);
        memcpy(last, lg + (size_t)(p->n_prompt - 1) * g.vocab, (size_t)g.vocab * sizeof *last);
        for (int s = 0; s < p->n_greedy; s++) {
            int best = 0;
            for (int i = 1; i < g.vocab; i++) if (last[i] > last[best]) best = i;
            if (best != p->greedy[s]) { FAIL("%s prompt %d: greedy step %d is %d, transformers says %d", model, pi, s, best, p->greedy[s]); break; }
            int32_t id = best;
            if (eng_forward(en, &id, 1, last, 0, &e)) { FAIL("%s", e.msg); break; }
        }
        free(last);
        free(lg);
        eng_free(en);
    }
    b->ops->destroy(b);
    golden_free(&g);
    for (int i = 0; i < h.nstack; i++) free(h.stack[i]);
    st_close(h.f);
}

TEST(engine_hf_dense_matches_transformers) { run_golden("dense", 64); }
TEST(engine_hf_moe_matches_transformers) { run_golden("moe", 64); }
/* small prefill chunks: the chunked path and the KV cache must give the same logits */
TEST(engine_hf_moe_chunked_prefill) { run_golden("moe", 5); }
