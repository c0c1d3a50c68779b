/* tests/test_import_matrix.c: `ernie import`, `verify` and `info` through the real binary on small
 * checkpoints of the three ERNIE-4.5 architectures (the 0.3B's dense tied model, the 21B-A3B's MoE with
 * shared experts and a tied head, the 300B-A47B's MoE without shared experts, an untied head and MoE from
 * layer 3) with every recipe preset. The expected format of every weight is written here from the
 * recipes' descriptions (README, issue #4), not taken from model/recipe.c; verify --against must show no
 * error for the lossless formats and an error in the format's range for the others, info must report
 * the recipe and the architecture, and `ernie run` must load every file. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "mf_fixture.h"

typedef enum { ARCH_DENSE, ARCH_21B, ARCH_300B } arch;
static const char *const ARCH_NAME[] = {"dense 0.3B-like", "MoE 21B-like", "MoE 300B-like"};

/* The tokenizer files of the golden fixture; its vocabulary (2112) is the config's. */
static const char *const TOK_FILES[] = {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                                        "added_tokens.json"};

static int make_checkpoint(arch a, const char *dir, cfg_model *c) {
    mkdir(dir, 0755);
    mfx_config(c, a != ARCH_DENSE);
    c->vocab_size = 2112;
    if (a == ARCH_21B) {
        /* MoE from layer 1, 2 shared experts, tied head; 6 MoE layers so that baidu's first four differ
         * from the rest */
        c->num_hidden_layers = 7;
        c->moe_num_shared_experts = 2;
        c->tie_word_embeddings = 1;
        c->moe_layer_start_index = 1;
        c->moe_layer_end_index = 6;
    } else if (a == ARCH_300B) {
        c->num_hidden_layers = 9;
        c->moe_num_shared_experts = 0;
        c->tie_word_embeddings = 0;
        c->moe_layer_start_index = 3;
        c->moe_layer_end_index = 8;
    }
    if (mfx_write_hf(dir, c, NULL)) return -1;
    for (size_t i = 0; i < sizeof TOK_FILES / sizeof *TOK_FILES; i++) {
        char src[1024], dst[1100];
        size_t len;
        snprintf(src, sizeof src, "%s/golden/moe/%s", th_fixtures(), TOK_FILES[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, TOK_FILES[i]);
        char *b = th_read_file(src, &len);
        if (!b || th_write_file(dst, b, len)) return free(b), -1;
        free(b);
    }
    return 0;
}

/* The format the recipe's description gives weight `name` (moe_index: its layer's position among the
 * MoE layers). */
static const char *expected_format(const char *recipe, const char *name, int moe_index) {
    int experts = strstr(name, ".mlp.experts.") != NULL, shared = strstr(name, "shared_experts") != NULL;
    int attn = strstr(name, "self_attn.") != NULL, head = !strcmp(name, "lm_head");
    int dense = strstr(name, ".mlp.") && !experts && !shared && strstr(name, "_proj");
    if (strstr(name, "norm")) return "bf16";
    if (strstr(name, "mlp.gate") && !strstr(name, "gate_proj")) return "f32"; /* router */
    if (strstr(name, "e_score_correction_bias")) return "f32";
    if (!strcmp(name, "model.embed_tokens") || !strcmp(recipe, "bf16")) return "bf16";
    if (!strcmp(recipe, "baidu")) {
        if (experts) return moe_index < 4 ? "wint4" : "ccq2.06";
        if (head) return "bf16";
        if (attn || dense || shared) return "wint8";
    } else if (!strcmp(recipe, "fit80")) {
        if (experts) return "ccq2.06";
        if (head) return "wint8";
        if (attn || dense || shared) return "wint4";
    } else if (!strcmp(recipe, "q2.5") || !strcmp(recipe, "q2.75")) {
        if (experts) return !strcmp(recipe, "q2.5") ? "ccq2.5" : "ccq2.75";
        if (attn || dense || shared || head) return "wint8";
    } else if (!strcmp(recipe, "wint4") || !strcmp(recipe, "wint8")) {
        if (attn || dense || shared || head || experts) return recipe;
    }
    return "?";
}

/* The error range of a format on these weights (uniform multiples of 1/128 in [-1, 1)). */
static int error_in_range(const char *fmt, double rel) {
    if (!strcmp(fmt, "bf16") || !strcmp(fmt, "f32")) return rel == 0.0;
    if (!strcmp(fmt, "wint8")) return rel > 0 && rel < 1e-3;
    if (!strcmp(fmt, "wint4")) return rel > 1e-4 && rel < 0.05;
    return rel > 0.01 && rel < 0.3; /* the ccq formats: about 0.08-0.1 on Gaussian weights */
}

static int layer_of(const char *name) {
    const char *p = strstr(name, "layers.");
    return p ? atoi(p + 7) : -1;
}

static void check_arch(arch a) {
    static const char *const recipes[] = {"baidu", "fit80", "q2.5", "q2.75", "wint4", "wint8", "bf16"};
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/hf%d", th_tmpdir(), (int)a);
    cfg_model c;
    if (!CHECK_INT(make_checkpoint(a, dir, &c), 0)) return;
    for (size_t r = 0; r < sizeof recipes / sizeof *recipes; r++) {
        const char *rc = recipes[r];
        char out[1100], *o, *e;
        snprintf(out, sizeof out, "%s/%s-%d.ernie", th_tmpdir(), rc, (int)a);
        char *imp[] = {"import", dir, "-o", out, "--recipe", (char *)rc, NULL};
        if (!CHECK_INT(th_ernie(&o, &e, NULL, imp), 0)) {
            FAIL("%s, recipe %s: %s", ARCH_NAME[a], rc, e);
            free(o), free(e);
            continue;
        }
        free(o), free(e);

        char *ver[] = {"verify", out, "--against", dir, "--json", NULL};
        if (!CHECK_INT(th_ernie(&o, &e, NULL, ver), 0)) FAIL("%s, recipe %s: %s", ARCH_NAME[a], rc, e);
        char *arr = strchr(o, '[');
        json_error_t je;
        json_t *list = arr ? json_loads(arr, 0, &je) : NULL;
        int seen_head = 0, seen_shared = 0, seen_experts = 0, nweights = 0;
        if (CHECK(json_is_array(list))) {
            size_t i;
            json_t *w;
            json_array_foreach(list, i, w) {
                const char *name = json_string_value(json_object_get(w, "weight"));
                const char *fmt = json_string_value(json_object_get(w, "format"));
                double rel = json_number_value(json_object_get(w, "rel_mse"));
                if (!name || !fmt) {
                    FAIL("%s, recipe %s: a verify entry without weight or format", ARCH_NAME[a], rc);
                    continue;
                }
                int L = layer_of(name), moe_index = L >= c.moe_layer_start_index ? L - c.moe_layer_start_index : -1;
                const char *want = expected_format(rc, name, moe_index);
                if (strcmp(fmt, want)) FAIL("%s, recipe %s: %s is %s, the recipe says %s", ARCH_NAME[a], rc, name, fmt, want);
                if (!error_in_range(fmt, rel)) FAIL("%s, recipe %s: %s (%s) relative error %g", ARCH_NAME[a], rc, name, fmt, rel);
                seen_head += !strcmp(name, "lm_head");
                seen_shared += strstr(name, "shared_experts") != NULL;
                seen_experts += strstr(name, ".mlp.experts.") != NULL;
                nweights++;
            }
        }
        json_decref(list);
        free(o), free(e);
        /* the architecture's parts are all there: untied head only on the 300B, shared experts only on
         * the 21B, three stacked expert weights per MoE layer */
        CHECK_INT(seen_head, a == ARCH_300B);
        CHECK_INT(seen_shared > 0, a == ARCH_21B);
        CHECK_INT(seen_experts, a == ARCH_DENSE ? 0 : 3 * 6);
        CHECK(nweights > 10);

        char *inf[] = {"info", out, "--json", NULL};
        CHECK_INT(th_ernie(&o, &e, NULL, inf), 0);
        json_t *info = json_loads(o, 0, &je);
        if (CHECK(json_is_object(info))) {
            CHECK_STR(json_string_value(json_object_get(info, "recipe")), rc);
            CHECK_INT(json_is_true(json_object_get(info, "moe")), a != ARCH_DENSE);
            CHECK_INT(json_is_true(json_object_get(info, "tied_embeddings")), a != ARCH_300B);
            CHECK_INT(json_integer_value(json_object_get(info, "layers")), c.num_hidden_layers);
        }
        json_decref(info);
        free(o), free(e);

        char *run[] = {"run", out, "--raw", "-p", "hello", "--temp", "0", "-n", "2", "--output", "ids", NULL};
        if (!CHECK_INT(th_ernie(&o, &e, NULL, run), 0)) FAIL("%s, recipe %s: run: %s", ARCH_NAME[a], rc, e);
        free(o), free(e);
    }
}

TEST(import_every_recipe_dense) { check_arch(ARCH_DENSE); }
TEST(import_every_recipe_moe_shared_tied) { check_arch(ARCH_21B); }
TEST(import_every_recipe_moe_untied_no_shared) { check_arch(ARCH_300B); }

/* --dry-run: the same plan as a real import, checks the checkpoint, writes nothing. */
TEST(import_dry_run_plans_and_writes_nothing) {
    char dir[1024], *o, *e;
    snprintf(dir, sizeof dir, "%s/hf", th_tmpdir());
    cfg_model c;
    if (!CHECK_INT(make_checkpoint(ARCH_300B, dir, &c), 0)) return;
    char *dry[] = {"import", dir, "--dry-run", "--recipe", "fit80", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, dry), 0);
    CHECK_CONTAINS(e, "plan (a prediction)");
    CHECK_CONTAINS(e, "ccq2.06");
    CHECK(o[0] == 0);
    free(o), free(e);
    /* nothing but the checkpoint's own files in the folder */
    char *ls[] = {"ls", dir, NULL};
    CHECK_INT(th_run(ls, NULL, NULL, &o, &e), 0);
    CHECK(!strstr(o, ".ernie") && !strstr(o, ".tmp"));
    free(o), free(e);

    char *dj[] = {"import", dir, "--dry-run", "--recipe", "fit80", "--json", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, dj), 0);
    json_error_t je;
    json_t *plan = json_loads(o, 0, &je);
    free(o), free(e);
    const char *out = th_tmp("fit80.ernie");
    char *imp[] = {"import", dir, "-o", (char *)out, "--recipe", "fit80", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, imp), 0);
    free(o), free(e);
    char *inf[] = {"info", (char *)out, "--json", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, inf), 0);
    json_t *info = json_loads(o, 0, &je);
    free(o), free(e);
    if (CHECK(json_is_object(plan) && json_is_object(info))) {
        CHECK_STR(json_string_value(json_object_get(plan, "recipe")), "fit80");
        CHECK_INT(json_integer_value(json_object_get(plan, "parameters")), json_integer_value(json_object_get(info, "parameters")));
        /* the prediction against the bytes the file's weights take */
        double pred = (double)json_integer_value(json_object_get(plan, "predicted_weight_bytes")), got = 0;
        size_t i;
        json_t *cmp;
        json_array_foreach(json_object_get(info, "components"), i, cmp) got += json_number_value(json_object_get(cmp, "bytes"));
        if (!(got > 0 && pred > 0.99 * got && pred < 1.01 * got)) FAIL("predicted %.0f weight bytes, the file holds %.0f", pred, got);
    }
    json_decref(plan), json_decref(info);

    /* a broken checkpoint fails the dry run with the tensor's name */
    struct {
        const char *dir;
        mfx_hf_opts ho;
        const char *tensor;
    } broken[] = {
        {"bad", {.omit = "model.layers.4.mlp.experts.2.down_proj.weight"}, "model.layers.4.mlp.experts.2.down_proj.weight"},
        {"bad2", {.wrong_shape = "model.layers.1.self_attn.k_proj.weight"}, "model.layers.1.self_attn.k_proj.weight"},
    };
    for (size_t b = 0; b < sizeof broken / sizeof *broken; b++) {
        char bad[1100];
        snprintf(bad, sizeof bad, "%s/%s", th_tmpdir(), broken[b].dir);
        mkdir(bad, 0755);
        if (CHECK_INT(mfx_write_hf(bad, &c, &broken[b].ho), 0)) {
            char *db[] = {"import", bad, "--dry-run", NULL};
            CHECK_INT(th_ernie(&o, &e, NULL, db), 1);
            CHECK_CONTAINS(e, broken[b].tensor);
            free(o), free(e);
        }
    }
    char *dc[] = {"import", dir, "--dry-run", "--calib", "x.txt", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, dc), 2);
    CHECK_CONTAINS(e, "--dry-run");
    free(o), free(e);
}
