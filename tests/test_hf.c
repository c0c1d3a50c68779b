/* tests/test_hf.c: the Hugging Face checkpoint reader on tiny checkpoints written by mf_fixture:
 * single file and sharded, lookups, conversion, MTP skipping, the structure check against the
 * config, and a clear error for each broken folder (missing/truncated shard, bad index, missing or
 * misshapen tensors, a Paddle layout). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/bf16.h"
#include "harness.h"
#include "mf_fixture.h"
#include "model/hf.h"

static const char *mkdir_tmp(const char *name) {
    const char *d = th_tmp(name);
    mkdir(d, 0755);
    return d;
}

/* Opens dir and checks; returns the error message (static) or NULL when both succeed. */
static const char *open_check(const char *dir, int *unexpected) {
    static err_t e;
    err_clear(&e);
    hf_ckpt *h;
    if (hf_open(&h, dir, &e)) return e.msg;
    int rc = hf_check(h, unexpected, NULL, &e);
    hf_close(h);
    return rc ? e.msg : NULL;
}

TEST(hf_single_file_moe) {
    cfg_model c;
    mfx_config(&c, 1);
    const char *d = mkdir_tmp("ck");
    CHECK(mfx_write_hf(d, &c, NULL) == 0);
    err_t e = {0};
    hf_ckpt *h;
    if (!CHECK(hf_open(&h, d, &e) == 0)) return (void)FAIL("%s", e.msg);
    CHECK(hf_config(h)->is_moe);
    CHECK_INT(hf_config(h)->hidden_size, 64);
    CHECK_INT(hf_nshards(h), 1);
    CHECK_STR(hf_shard(h, 0), "model.safetensors");
    CHECK(!hf_has_generation_config(h));
    CHECK_NEAR(hf_generation(h)->temperature, 0.8, 0);
    hf_need *nd;
    int n = hf_expected(&c, &nd);
    /* 3 layers: layer 0 dense (2 norms + 4 attn + 3 mlp), layers 1-2 MoE (2 + 4 + router + bias +
     * 4 experts x 3 + shared 3), embed, norm, lm_head (untied). */
    CHECK_INT(n, 9 + 2 * (6 + 2 + 12 + 3) + 3);
    CHECK_INT(hf_count(h), n);
    int unexpected = -1;
    CHECK(hf_check(h, &unexpected, NULL, &e) == 0);
    CHECK_INT(unexpected, 0);
    const char *shard;
    const st_tensor *t = hf_find(h, "model.layers.2.mlp.experts.3.down_proj.weight", &shard);
    if (CHECK(t != NULL)) {
        CHECK_STR(shard, "model.safetensors");
        CHECK_INT(t->shape[0], 64);
        CHECK_INT(t->shape[1], 64);
        float v[64 * 64];
        CHECK(hf_to_float(t, 0, t->numel, v, &e) == 0);
        int bad = 0;
        for (uint64_t i = 0; i < t->numel; i++) bad += v[i] != mfx_value(t->name, i);
        CHECK_INT(bad, 0);
        CHECK(hf_to_float(t, 100, 5, v, &e) == 0);
        CHECK(v[0] == mfx_value(t->name, 100) && v[4] == mfx_value(t->name, 104));
        CHECK(hf_to_float(t, t->numel - 1, 2, v, &e) == -1);
        CHECK_CONTAINS(e.msg, "past its");
        CHECK(hf_to_float(t, UINT64_MAX, 2, v, &e) == -1);
    }
    t = hf_find(h, "model.layers.1.mlp.gate.weight", NULL);
    CHECK(t && t->dtype == ST_F32);
    CHECK(hf_find(h, "model.layers.0.mlp.gate.weight", NULL) == NULL); /* layer 0 is dense */
    CHECK(hf_find(h, "nope", NULL) == NULL);
    for (int i = 1; i < hf_count(h); i++) CHECK(strcmp(hf_at(h, i - 1, NULL)->name, hf_at(h, i, NULL)->name) < 0);
    free(nd);
    hf_close(h);
}

TEST(hf_sharded_with_mtp_and_generation_config) {
    cfg_model c;
    mfx_config(&c, 1);
    const char *d = mkdir_tmp("ck");
    mfx_hf_opts o = {.nshards = 3, .add_mtp = 1, .gen_config = 1, .f32 = 1};
    CHECK(mfx_write_hf(d, &c, &o) == 0);
    err_t e = {0};
    hf_ckpt *h;
    if (!CHECK(hf_open(&h, d, &e) == 0)) return (void)FAIL("%s", e.msg);
    CHECK_INT(hf_nshards(h), 3);
    CHECK(hf_has_generation_config(h));
    CHECK_NEAR(hf_generation(h)->temperature, 0.7, 1e-12);
    CHECK_INT(hf_generation(h)->top_k, 20);
    CHECK(hf_find(h, "model.mtp_emb_norm.0.weight", NULL) == NULL);
    CHECK(hf_is_skipped("model.mtp_block.0.mlp.up_proj.weight"));
    int unexpected = -1;
    CHECK(hf_check(h, &unexpected, NULL, &e) == 0);
    CHECK_INT(unexpected, 0);
    const char *shard;
    const st_tensor *t = hf_find(h, "model.norm.weight", &shard);
    if (CHECK(t != NULL)) {
        CHECK_CONTAINS(shard, "-of-00003.safetensors");
        float v[64];
        CHECK(hf_to_float(t, 0, 64, v, &e) == 0);
        CHECK(v[7] == mfx_value("model.norm.weight", 7));
    }
    hf_close(h);
}

TEST(hf_dense_tied_ignores_lm_head) {
    cfg_model c;
    mfx_config(&c, 0);
    const char *d = mkdir_tmp("ck");
    mfx_hf_opts o = {.nshards = 2, .extra = "lm_head.weight"};
    CHECK(mfx_write_hf(d, &c, &o) == 0);
    int unexpected = -1;
    const char *m = open_check(d, &unexpected);
    if (m) FAIL("%s", m);
    CHECK_INT(unexpected, 0);
    /* An unknown extra tensor is counted, not an error. */
    const char *d2 = mkdir_tmp("ck2");
    mfx_hf_opts o2 = {.extra = "model.layers.9.foo.weight"};
    CHECK(mfx_write_hf(d2, &c, &o2) == 0);
    err_t e = {0};
    hf_ckpt *h;
    CHECK(hf_open(&h, d2, &e) == 0);
    const char *first = NULL;
    CHECK(hf_check(h, &unexpected, &first, &e) == 0);
    CHECK_INT(unexpected, 1);
    CHECK_STR(first, "model.layers.9.foo.weight");
    hf_close(h);
}

TEST(hf_structure_errors_name_the_tensor) {
    cfg_model c;
    mfx_config(&c, 1);
    struct {
        mfx_hf_opts o;
        const char *needle;
    } cases[] = {
        {{.omit = "model.layers.1.mlp.experts.2.up_proj.weight"},
         "tensor 'model.layers.1.mlp.experts.2.up_proj.weight' is missing (config.json needs it; model.safetensors lists"},
        {{.nshards = 2, .omit = "lm_head.weight"}, "tensor 'lm_head.weight' is missing (config.json needs it; the weight map"},
        {{.omit = "model.layers.2.mlp.moe_statics.e_score_correction_bias"}, "e_score_correction_bias' is missing"},
        {{.wrong_shape = "model.layers.0.self_attn.q_proj.weight"},
         "tensor 'model.layers.0.self_attn.q_proj.weight' in shard 'model.safetensors' has shape [129, 64]; config.json needs [128, 64]"},
        {{.nshards = 2, .as_bf16 = "model.layers.1.mlp.gate.weight"},
         "'model.layers.1.mlp.gate.weight' in shard 'model-0000"},
        {{.nshards = 2, .as_bf16 = "model.layers.1.mlp.gate.weight"}, "-of-00002.safetensors' is BF16; the router and its correction bias must be F32"},
        {{.paddle = 1}, "Paddle-layout checkpoint"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "ck%zu", i);
        const char *d = mkdir_tmp(name);
        CHECK(mfx_write_hf(d, &c, &cases[i].o) == 0);
        const char *m = open_check(d, NULL);
        if (!m) FAIL("case %zu accepted", i);
        else CHECK_CONTAINS(m, cases[i].needle);
    }
    /* A dense config against MoE weights: the dense MLP of layer 1 is missing. */
    const char *d = mkdir_tmp("mismatch");
    CHECK(mfx_write_hf(d, &c, NULL) == 0);
    cfg_model dense;
    mfx_config(&dense, 0);
    char *j = cfg_to_json(&dense);
    th_write_file(th_tmp("mismatch/config.json"), j, strlen(j));
    free(j);
    const char *m = open_check(d, NULL);
    CHECK(m && strstr(m, "'model.layers.1.mlp.gate_proj.weight' is missing"));
}

TEST(hf_broken_folders) {
    cfg_model c;
    mfx_config(&c, 1);
    err_t e = {0};
    hf_ckpt *h;
    /* Nothing there. */
    const char *d0 = mkdir_tmp("empty");
    CHECK(hf_open(&h, d0, &e) == -1);
    CHECK_CONTAINS(e.msg, "empty/config.json: No such file");
    th_write_file(th_tmp("empty/config.json"), "{\"model_type\": \"ernie4_5\"}", 26);
    CHECK(hf_open(&h, d0, &e) == -1);
    CHECK_CONTAINS(e.msg, "neither model.safetensors.index.json nor model.safetensors");
    /* A bad generation config is an error too. */
    th_write_file(th_tmp("empty/generation_config.json"), "{\"top_p\": 7}", 12);
    CHECK(hf_open(&h, d0, &e) == -1);
    CHECK_CONTAINS(e.msg, "generation_config.json: \"top_p\"");

    /* A missing shard. */
    const char *d = mkdir_tmp("ck");
    mfx_hf_opts o = {.nshards = 3};
    CHECK(mfx_write_hf(d, &c, &o) == 0);
    CHECK(hf_open(&h, d, &e) == 0);
    hf_close(h);
    char p[1024];
    snprintf(p, sizeof p, "%s/model-00002-of-00003.safetensors", d);
    char q[1024];
    snprintf(q, sizeof q, "%s/moved", d);
    rename(p, q);
    CHECK(hf_open(&h, d, &e) == -1);
    CHECK_CONTAINS(e.msg, "model.safetensors.index.json lists shard 'model-00002-of-00003.safetensors', which cannot be used");
    CHECK_CONTAINS(e.msg, "No such file");
    /* A truncated shard. */
    rename(q, p);
    struct stat sb;
    stat(p, &sb);
    CHECK(truncate(p, sb.st_size - 10) == 0);
    CHECK(hf_open(&h, d, &e) == -1);
    CHECK_CONTAINS(e.msg, "model-00002-of-00003.safetensors");
    CHECK_CONTAINS(e.msg, "truncated");

    /* Index problems. */
    const char *d2 = mkdir_tmp("ix");
    CHECK(mfx_write_hf(d2, &c, &o) == 0);
    const char *ix = th_tmp("ix/model.safetensors.index.json");
    const char *bad[][2] = {
        {"{\"weight_map\": {\"model.norm.weight\": \"../etc/passwd\"}}", "shard name '../etc/passwd' is not a plain file name"},
        {"{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00003.safetensors\"}}",
         "tensor 'model.norm.weight' should be in shard 'model-00001-of-00003.safetensors', which has no such tensor"},
        {"{\"weight_map\": {\"model.norm.weight\": 5}}", "weight_map entry 'model.norm.weight' is not a file name"},
        {"{\"metadata\": {}}", "no \"weight_map\" object"},
        {"{\"weight_map\": {}}", "the weight map lists no tensors"},
        {"{\"weight_map\": {", "not valid JSON"},
        {"{\"weight_map\": {\"a\": \"x.safetensors\", \"a\": \"y.safetensors\"}}", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        th_write_file(ix, bad[i][0], strlen(bad[i][0]));
        if (!CHECK(hf_open(&h, d2, &e) == -1)) {
            hf_close(h);
            continue;
        }
        CHECK_CONTAINS(e.msg, bad[i][1]);
        CHECK_CONTAINS(e.msg, "model.safetensors.index.json");
    }
}

TEST(hf_to_float_dtypes) {
    err_t e = {0};
    uint16_t h16[3] = {0x3c00, 0xc000, 0x3555}; /* 1, -2, ~0.333 in IEEE half */
    st_tensor t = {.name = "x", .dtype = ST_F16, .ndim = 1, .shape = {3}, .numel = 3, .nbytes = 6, .data = h16};
    float v[3];
    CHECK(hf_to_float(&t, 0, 3, v, &e) == 0);
    CHECK(v[0] == 1.0f && v[1] == -2.0f);
    CHECK_NEAR(v[2], 0.33325195, 1e-7);
    /* Unaligned BF16 data. */
    uint8_t raw[7] = {0, 0x80, 0x3f, 0x00, 0xc0, 0, 0};
    st_tensor b = {.name = "y", .dtype = ST_BF16, .ndim = 1, .shape = {2}, .numel = 2, .nbytes = 4, .data = raw + 1};
    CHECK(hf_to_float(&b, 0, 2, v, &e) == 0);
    CHECK(v[0] == 1.0f && v[1] == -2.0f);
    st_tensor i32 = {.name = "z", .dtype = ST_I32, .ndim = 1, .shape = {1}, .numel = 1, .nbytes = 4, .data = raw};
    CHECK(hf_to_float(&i32, 0, 1, v, &e) == -1);
    CHECK_CONTAINS(e.msg, "tensor 'z': dtype I32 is not a floating-point weight");
}
