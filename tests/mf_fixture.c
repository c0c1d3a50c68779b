/* tests/mf_fixture.c: builders of tiny HF checkpoints and model files for the model/ tests. */
#include "mf_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "harness.h"
#include "ccq/ccq.h"
#include "model/hf.h"
#include "model/modelfile.h"
#include "model/safetensors.h"

void mfx_config(cfg_model *c, int moe) {
    cfg_defaults(c, moe ? "Ernie4_5_MoeForCausalLM" : "Ernie4_5ForCausalLM");
    c->vocab_size = 256;
    c->hidden_size = 64;
    c->intermediate_size = 128;
    c->num_hidden_layers = 3;
    c->num_attention_heads = 4;
    c->num_key_value_heads = 2;
    c->head_dim = 32;
    c->max_position_embeddings = 4096;
    c->tie_word_embeddings = moe ? 0 : 1;
    if (moe) {
        c->moe_num_experts = 4;
        c->moe_k = 2;
        c->moe_intermediate_size = 64;
        c->moe_num_shared_experts = 1;
        c->moe_layer_start_index = 1;
        c->moe_layer_end_index = 2;
        c->moe_layer_interval = 1;
    }
}

float mfx_value(const char *name, uint64_t i) {
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    h ^= (uint32_t)(i * 2654435761u);
    h = (h ^ (h >> 15)) * 2246822519u;
    h ^= h >> 13;
    /* Multiples of 1/128 in [-1, 1): exact in bf16. */
    return (float)((int)(h & 255) - 128) / 128.0f;
}

static int write_text(const char *dir, const char *name, const char *text) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return th_write_file(p, text, strlen(text));
}

int mfx_write_hf(const char *dir, const cfg_model *c, const mfx_hf_opts *o) {
    mfx_hf_opts none = {0};
    if (!o) o = &none;
    char *cj = cfg_to_json(c);
    if (!cj || write_text(dir, "config.json", cj)) return free(cj), -1;
    free(cj);
    if (o->gen_config && write_text(dir, "generation_config.json", "{\"do_sample\": true, \"temperature\": 0.7, \"top_k\": 20}")) return -1;
    hf_need *nd;
    int n = hf_expected(c, &nd);
    if (n < 0) return -1;
    /* Extra entries: MTP and an unexpected tensor. */
    hf_need *all = calloc((size_t)n + 2, sizeof *all);
    memcpy(all, nd, sizeof *nd * (size_t)n);
    free(nd);
    if (o->add_mtp) {
        snprintf(all[n].name, sizeof all[n].name, "model.mtp_emb_norm.0.weight");
        all[n].ndim = 1;
        all[n++].shape[0] = c->hidden_size;
    }
    if (o->extra) {
        snprintf(all[n].name, sizeof all[n].name, "%s", o->extra);
        all[n].ndim = 1;
        all[n++].shape[0] = 4;
    }
    int nsh = o->nshards > 1 ? o->nshards : 1;
    int rc = 0;
    char *index = NULL;
    size_t ilen = 0;
    FILE *mem = open_memstream(&index, &ilen);
    fprintf(mem, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    int first = 1;
    for (int s = 0; s < nsh && !rc; s++) {
        char fname[64], path[1024];
        if (nsh == 1) snprintf(fname, sizeof fname, "model.safetensors");
        else snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, nsh);
        snprintf(path, sizeof path, "%s/%s", dir, fname);
        err_t e = {0};
        st_writer *w;
        if (st_writer_new(&w, path, ST_W_OVERWRITE, &e)) return free(all), -1;
        /* One shard's tensors: every nsh-th of the list. */
        int cnt = 0, cap = n / nsh + 2;
        int *ids = calloc((size_t)cap, sizeof *ids);
        st_dtype *dts = calloc((size_t)cap, sizeof *dts);
        uint64_t *numels = calloc((size_t)cap, sizeof *numels);
        const char **srcs = calloc((size_t)cap, sizeof *srcs);
        for (int i = s; i < n && !rc; i += nsh) {
            if (o->omit && !strcmp(all[i].name, o->omit)) continue;
            int64_t shape[2] = {all[i].shape[0], all[i].shape[1]};
            if (o->wrong_shape && !strcmp(all[i].name, o->wrong_shape)) shape[0]++;
            st_dtype dt = all[i].f32_only || o->f32 ? ST_F32 : ST_BF16;
            if (o->as_bf16 && !strcmp(all[i].name, o->as_bf16)) dt = ST_BF16;
            char nm[110];
            snprintf(nm, sizeof nm, "%s%s", o->paddle && !strncmp(all[i].name, "model.", 6) ? "ernie." : "",
                     o->paddle && !strncmp(all[i].name, "model.", 6) ? all[i].name + 6 : all[i].name);
            srcs[cnt] = all[i].name;
            dts[cnt] = dt;
            numels[cnt] = (uint64_t)shape[0] * (all[i].ndim == 2 ? (uint64_t)shape[1] : 1);
            ids[cnt] = st_writer_add(w, nm, dt, all[i].ndim, shape, &e);
            if (ids[cnt] < 0) rc = -1;
            cnt++;
            fprintf(mem, "%s\"%s\": \"%s\"", first ? "" : ", ", nm, fname);
            first = 0;
        }
        if (!rc && st_writer_begin(w, &e)) rc = -1;
        for (int k = 0; k < cnt && !rc; k++) {
            size_t es = st_dtype_size(dts[k]);
            uint8_t *buf = malloc(numels[k] * es + 1);
            for (uint64_t i = 0; i < numels[k]; i++) {
                float v = mfx_value(srcs[k], i);
                if (es == 4) memcpy(buf + 4 * i, &v, 4);
                else {
                    uint16_t b = f32_to_bf16(v);
                    memcpy(buf + 2 * i, &b, 2);
                }
            }
            if (st_writer_write(w, ids[k], buf, numels[k] * es, &e)) rc = -1;
            free(buf);
        }
        free(ids), free(dts), free(numels), free(srcs);
        if (rc) {
            st_writer_abort(w);
            break;
        }
        if (st_writer_commit(w, &e)) rc = -1;
    }
    fprintf(mem, "}}");
    fclose(mem);
    if (!rc && nsh > 1) rc = write_text(dir, "model.safetensors.index.json", index);
    free(index);
    free(all);
    return rc;
}

/* The mixed recipe of the fixture: one weight class per format, so every layout gets exercised. */
static const char *mixed_format(const char *name) {
    const char *c = mf_component(name);
    if (!strcmp(c, "attention")) return strstr(name, "q_proj") ? "wint8" : strstr(name, "k_proj") ? "wint4g64" : "ccq2.75";
    if (!strcmp(c, "dense mlp")) return "wint4";
    if (!strcmp(c, "experts")) return strstr(name, "down") ? "ccq2.06" : "ccq2.5+icq";
    if (!strcmp(c, "shared experts")) return "ccq2.06";
    if (!strcmp(c, "lm_head")) return "ccq2.75";
    return NULL; /* keep the rule's plain format */
}

const char *MFX_SPECIAL_JSON =
    "{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},{\"id\":1,\"content\":\"<s>\",\"special\":true},"
    "{\"id\":2,\"content\":\"</s>\",\"special\":true}]}";

int mfx_write_model(const char *path, const cfg_model *c, const mfx_model_opts *o) {
    mfx_model_opts none = {0};
    if (!o) o = &none;
    err_t e = {0};
    mf_expect *ex;
    int n = mf_expected(c, &ex);
    if (n < 0) return -1;
    cfg_gen g;
    cfg_gen_defaults(&g);
    g.top_k = 40;
    mf_writer *w;
    if (mf_writer_new(&w, path, o->overwrite, c, &g, o->mixed ? "mixed" : "bf16", &e)) {
        free(ex);
        fprintf(stderr, "mfx_write_model: %s\n", e.msg);
        return -1;
    }
    int rc = 0;
    int *ids = calloc((size_t)n, sizeof *ids);
    const char **fmts = calloc((size_t)n, sizeof *fmts);
    for (int i = 0; i < n && !rc; i++) {
        const char *f = ex[i].rule == MF_ONLY_F32 ? "f32" : "bf16";
        if (o->mixed && ex[i].rule == MF_ANY && mixed_format(ex[i].name)) f = mixed_format(ex[i].name);
        if (o->omit && !strcmp(o->omit, ex[i].name)) continue;
        fmts[i] = f;
        ids[i] = mf_writer_weight(w, ex[i].name, f, ex[i].ndim, ex[i].shape, &e);
        if (ids[i] < 0) rc = -1;
    }
    if (!rc && !o->no_tokenizer) rc = mf_writer_tokenizer(w, "fake spm model bytes", 20, MFX_SPECIAL_JSON, &e);
    if (!rc) rc = mf_writer_meta(w, "source", "mf_fixture", &e);
    if (!rc) rc = mf_writer_begin(w, &e);
    for (int i = 0; i < n && !rc; i++) {
        if (!fmts[i]) continue;
        int64_t rows = ex[i].ndim == 1 ? 1 : ex[i].ndim == 2 ? ex[i].shape[0] : ex[i].shape[0] * ex[i].shape[1];
        int64_t cols = ex[i].shape[ex[i].ndim - 1];
        float *v = malloc(sizeof *v * (size_t)(rows * cols));
        for (int64_t k = 0; k < rows * cols; k++) v[k] = mfx_value(ex[i].name, (uint64_t)k);
        if (!strcmp(fmts[i], "f32")) {
            rc = mf_writer_part(w, ids[i], "weight", v, sizeof *v * (size_t)(rows * cols), &e);
        } else {
            ccq_format f;
            ccq_tensor t;
            rc = ccq_format_parse(fmts[i], &f, &e) || ccq_encode(&f, v, rows, cols, NULL, &t, &e);
            for (int k = 0; !rc && k < t.nparts; k++) rc = mf_writer_part(w, ids[i], t.part[k].name, t.part[k].data, t.part[k].nbytes, &e);
            if (!rc) ccq_free(&t);
        }
        free(v);
    }
    free(ids);
    free(fmts);
    free(ex);
    if (rc) {
        fprintf(stderr, "mfx_write_model: %s\n", e.msg);
        mf_writer_abort(w);
        return -1;
    }
    if (mf_writer_commit(w, &e)) {
        fprintf(stderr, "mfx_write_model: %s\n", e.msg);
        return -1;
    }
    return 0;
}
