/* tests/test_info_verify.c: `ernie info` and `ernie verify` on model files written by mf_fixture:
 * the report's figures (recomputed here from the file, not copied from the code), JSON output, the
 * exit codes, and one clear line on stderr for every bad file. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "mf_fixture.h"
#include "model/modelfile.h"

static int ernie(char **out, char **err, const char *a0, const char *a1, const char *a2, const char *a3, const char *a4) {
    char *argv[7] = {(char *)th_bin(), (char *)a0, (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL};
    return th_run(argv, NULL, NULL, out, err);
}

static const char *moe_model(int mixed) {
    cfg_model c;
    mfx_config(&c, 1);
    const char *p = th_tmp(mixed ? "moe-mixed.ernie" : "moe.ernie");
    mfx_model_opts o = {.mixed = mixed};
    if (access(p, F_OK) != 0 && mfx_write_model(p, &c, &o)) FAIL("cannot write the fixture model");
    return p;
}

/* Lines of the report must be one line each. */
static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

TEST(info_text_report) {
    const char *p = moe_model(1);
    char *o, *e;
    CHECK_INT(ernie(&o, &e, "info", p, NULL, NULL, NULL), 0);
    CHECK_STR(e, "");
    CHECK_CONTAINS(o, "model:       ERNIE-4.5 MoE (Ernie4_5_MoeForCausalLM)");
    CHECK_CONTAINS(o, "layers:      3 (1 dense, 2 MoE), hidden 64, 4 heads / 2 KV heads of 32, vocab 256, context 4096");
    CHECK_CONTAINS(o, "experts:     4 per MoE layer, top-2, width 64, shared expert width 64");
    CHECK_CONTAINS(o, "embeddings:  separate lm_head");
    CHECK_CONTAINS(o, "recipe:      mixed");
    CHECK_CONTAINS(o, "ccq2.5+icq, ccq2.06"); /* the experts' formats */
    CHECK_CONTAINS(o, "tokenizer:   SentencePiece model (20 B), 3 special tokens");
    CHECK_CONTAINS(o, "generation:  sampling, temperature 0.8, top-p 0.8, top-k 40, repetition penalty 1, eos [2]");
    /* 2 (K, V) x 3 layers x 2 KV heads x 32 x 1024 positions x 2 bytes = 786432 */
    CHECK_CONTAINS(o, "KV cache 786.4 KB per 1K tokens");
    CHECK_CONTAINS(o, "source:      mf_fixture");
    CHECK(count_lines(o) >= 15);
    free(o), free(e);
}

TEST(info_json_figures) {
    const char *p = moe_model(1);
    char *o, *e;
    CHECK_INT(ernie(&o, &e, "info", p, "--json", NULL, NULL), 0);
    json_error_t je;
    json_t *j = json_loads(o, 0, &je);
    if (!CHECK(json_is_object(j))) {
        FAIL("not JSON: %s\n%s", je.text, o);
        free(o), free(e);
        return;
    }
    CHECK_INT(json_integer_value(json_object_get(j, "layers")), 3);
    CHECK_INT(json_integer_value(json_object_get(j, "moe_layers")), 2);
    CHECK_INT(json_integer_value(json_object_get(j, "kv_cache_bytes_per_1k_tokens")), 786432);
    CHECK_STR(json_string_value(json_object_get(j, "recipe")), "mixed");
    /* Recompute the weight bytes and the per-component bits from the file itself. */
    err_t er = {0};
    mf_file *f;
    if (CHECK(mf_open(&f, p, &er) == 0)) {
        double bytes = 0, norm_bytes = 0, norm_params = 0, ex_bytes = 0, ex_params = 0;
        for (int i = 0; i < mf_nweights(f); i++) {
            const mf_weight *w = mf_weight_at(f, i);
            for (int k = 0; k < w->nparts; k++) bytes += (double)w->part[k].t->nbytes;
            if (strstr(w->name, "layernorm") || !strcmp(w->name, "model.norm")) {
                norm_bytes += (double)w->nbytes;
                norm_params += (double)(w->rows * w->cols);
            }
            if (strstr(w->name, ".mlp.experts.")) {
                ex_bytes += (double)w->nbytes;
                ex_params += (double)(w->rows * w->cols);
            }
        }
        CHECK_NEAR((double)json_integer_value(json_object_get(j, "weight_bytes")), bytes, 0);
        json_t *comps = json_object_get(j, "components");
        int seen = 0;
        for (size_t i = 0; i < json_array_size(comps); i++) {
            json_t *c = json_array_get(comps, i);
            const char *name = json_string_value(json_object_get(c, "component"));
            double bpw = json_real_value(json_object_get(c, "bits_per_weight"));
            if (!strcmp(name, "norms")) CHECK_NEAR(bpw, 8 * norm_bytes / norm_params, 1e-9), CHECK_NEAR(bpw, 16.0, 0), seen++;
            if (!strcmp(name, "router")) CHECK_NEAR(bpw, 32.0, 0), seen++;
            if (!strcmp(name, "experts")) CHECK_NEAR(bpw, 8 * ex_bytes / ex_params, 1e-9), CHECK(bpw < 4), seen++;
        }
        CHECK_INT(seen, 3);
        mf_close(f);
    }
    json_t *tok = json_object_get(j, "tokenizer");
    CHECK_INT(json_integer_value(json_object_get(tok, "special_tokens")), 3);
    CHECK_NEAR(json_real_value(json_object_get(json_object_get(j, "generation"), "temperature")), 0.8, 0);
    json_decref(j);
    free(o), free(e);
}

TEST(info_dense_model) {
    cfg_model c;
    mfx_config(&c, 0);
    const char *p = th_tmp("dense.ernie");
    mfx_model_opts opt = {.no_tokenizer = 1};
    CHECK(mfx_write_model(p, &c, &opt) == 0);
    char *o, *e;
    CHECK_INT(ernie(&o, &e, "info", p, NULL, NULL, NULL), 0);
    CHECK_CONTAINS(o, "ERNIE-4.5 dense (Ernie4_5ForCausalLM)");
    CHECK(strstr(o, "experts:") == NULL);
    CHECK_CONTAINS(o, "embeddings:  tied");
    CHECK_CONTAINS(o, "16.00  bf16");
    CHECK_CONTAINS(o, "tokenizer:   none stored");
    free(o), free(e);
}

TEST(info_bad_files) {
    char *o, *e;
    CHECK_INT(ernie(&o, &e, "info", th_tmp("missing.ernie"), NULL, NULL, NULL), 1);
    CHECK_CONTAINS(e, "ernie: ");
    CHECK_CONTAINS(e, "missing.ernie: No such file");
    CHECK_INT(count_lines(e), 1);
    CHECK_STR(o, "");
    free(o), free(e);
    th_write_file(th_tmp("junk.ernie"), "this is not a model file at all", 31);
    CHECK_INT(ernie(&o, &e, "info", th_tmp("junk.ernie"), NULL, NULL, NULL), 1);
    CHECK_CONTAINS(e, "junk.ernie: header length");
    CHECK_INT(count_lines(e), 1);
    free(o), free(e);
    cfg_model c;
    mfx_config(&c, 0);
    mkdir(th_tmp("hf"), 0755);
    CHECK(mfx_write_hf(th_tmp("hf"), &c, NULL) == 0);
    CHECK_INT(ernie(&o, &e, "info", th_tmp("hf/model.safetensors"), NULL, NULL, NULL), 1);
    CHECK_CONTAINS(e, "a Hugging Face checkpoint file: import the checkpoint first");
    free(o), free(e);
    CHECK_INT(ernie(&o, &e, "info", NULL, NULL, NULL, NULL), 2);
    CHECK_CONTAINS(e, "which model file?");
    free(o), free(e);
    CHECK_INT(ernie(&o, &e, "info", "a", "b", NULL, NULL), 2);
    free(o), free(e);
}

TEST(verify_good_file) {
    const char *p = moe_model(1);
    char *o, *e;
    CHECK_INT(ernie(&o, &e, "verify", p, "-t", "1", NULL), 0);
    CHECK_CONTAINS(o, ": OK: ");
    CHECK_CONTAINS(o, "structure, checksums and stored parameters checked");
    free(o), free(e);
    CHECK_INT(ernie(&o, &e, "verify", p, "-t", "2", "--json"), 0);
    json_t *j = json_loads(o, 0, NULL);
    CHECK(json_is_true(json_object_get(j, "ok")));
    CHECK(json_integer_value(json_object_get(j, "weights")) > 30);
    json_decref(j);
    free(o), free(e);
}

static void flip(const char *p, uint64_t off) {
    FILE *f = fopen(p, "r+b");
    fseek(f, (long)off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, (long)off, SEEK_SET);
    fputc(c ^ 1, f);
    fclose(f);
}

TEST(verify_bad_files) {
    const char *p = moe_model(1);
    err_t er = {0};
    st_file *s;
    if (!CHECK(st_open(&s, p, &er) == 0)) return;
    uint64_t off = st_find(s, "model.layers.1.mlp.shared_experts.down_proj.qweight")->file_offset;
    uint64_t size = st_file_size(s);
    st_close(s);
    flip(p, off + 7);
    char *o, *e;
    CHECK_INT(ernie(&o, &e, "verify", p, "-t", "1", NULL), 1);
    CHECK_CONTAINS(e, "ernie: ");
    CHECK_CONTAINS(e, "tensor 'model.layers.1.mlp.shared_experts.down_proj.qweight' is corrupt");
    CHECK_STR(o, "");
    free(o), free(e);
    CHECK_INT(ernie(&o, &e, "verify", p, "--json", "-t", "1"), 1);
    json_t *j = json_loads(o, 0, NULL);
    CHECK(json_is_false(json_object_get(j, "ok")));
    CHECK_CONTAINS(json_string_value(json_object_get(j, "error")), "is corrupt");
    json_decref(j);
    free(o), free(e);
    flip(p, off + 7);
    /* Truncated: found at open, before any hashing. */
    CHECK(truncate(p, (off_t)size - 1) == 0);
    CHECK_INT(ernie(&o, &e, "verify", p, NULL, NULL, NULL), 1);
    CHECK_CONTAINS(e, "truncated");
    CHECK_INT(count_lines(e), 1);
    free(o), free(e);
    CHECK_INT(ernie(&o, &e, "verify", p, "--against", th_tmpdir(), NULL), 1); /* the file is checked first */
    CHECK_CONTAINS(e, "truncated");
    free(o), free(e);
    CHECK_INT(ernie(&o, &e, "verify", NULL, NULL, NULL, NULL), 2);
    free(o), free(e);
}

TEST(info_and_verify_point_a_folder_to_import) {
    char *o, *e;
    char *a1[] = {"info", "tests/fixtures/golden/moe", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, a1), 1);
    CHECK_CONTAINS(e, "is a folder, not a model file");
    CHECK_CONTAINS(e, "ernie import tests/fixtures/golden/moe --dry-run");
    free(o), free(e);
    char *a2[] = {"verify", "tests/fixtures/golden/moe", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, a2), 1);
    CHECK_CONTAINS(e, "is a folder");
    free(o), free(e);
}

/* `demo` names the model built into the binary here too, as for `run` and `chat`: the same report as the
 * file it was built from (assets/demo.ernie), but for the first line, and a clean verify. */
TEST(info_and_verify_take_the_built_in_demo) {
    char *o, *e, *o2, *e2;
    CHECK_INT(ernie(&o, &e, "info", "demo", NULL, NULL, NULL), 0);
    CHECK_INT(ernie(&o2, &e2, "info", "assets/demo.ernie", NULL, NULL, NULL), 0);
    CHECK_CONTAINS(o, "file:        demo, built in (5.");
    const char *r1 = strchr(o, '\n'), *r2 = strchr(o2, '\n');
    if (CHECK(r1 && r2)) CHECK_STR(r1, r2);
    free(o), free(e), free(o2), free(e2);
    CHECK_INT(ernie(&o, &e, "verify", "demo", "-t", "2", NULL), 0);
    CHECK_CONTAINS(o, "demo: OK: ");
    CHECK_STR(e, "");
    free(o), free(e);
    CHECK_INT(ernie(&o, &e, "info", "./demo", NULL, NULL, NULL), 1); /* a path named demo is a path */
    CHECK_CONTAINS(e, "./demo: No such file");
    free(o), free(e);
}
