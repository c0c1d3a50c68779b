/* tests/test_recipe.c: recipe presets and --tensor-type overrides. */
#include <stdlib.h>

#include "harness.h"
#include "model/recipe.h"

TEST(recipe_baidu_mix) {
    recipe *r;
    err_t e = {0};
    if (!CHECK_INT(recipe_create(&r, "baidu", &e), 0)) return;
    char f[64];
    recipe_format(r, "model.layers.0.self_attn.q_proj", RC_ATTN, -1, f, sizeof f);
    CHECK_STR(f, "wint8");
    recipe_format(r, "model.layers.3.mlp.experts.down_proj", RC_EXPERTS, 0, f, sizeof f);
    CHECK_STR(f, "wint4");
    recipe_format(r, "model.layers.6.mlp.experts.down_proj", RC_EXPERTS, 3, f, sizeof f);
    CHECK_STR(f, "wint4");
    recipe_format(r, "model.layers.7.mlp.experts.down_proj", RC_EXPERTS, 4, f, sizeof f);
    CHECK_STR(f, "ccq2.06");
    recipe_format(r, "model.embed_tokens", RC_EMBED, -1, f, sizeof f);
    CHECK_STR(f, "bf16");
    recipe_format(r, "model.layers.3.mlp.gate", RC_ROUTER, -1, f, sizeof f);
    CHECK_STR(f, "f32");
    recipe_free(r);
}

TEST(recipe_overrides_last_wins_never_router) {
    recipe *r;
    err_t e = {0};
    recipe_create(&r, "bf16", &e);
    CHECK_INT(recipe_override(r, "experts\\.(gate|up)_proj=ccq2.5", &e), 0);
    CHECK_INT(recipe_override(r, "layers\\.2\\..*experts=ccq2.06+icq", &e), 0);
    CHECK_INT(recipe_override(r, "mlp.gate=wint4", &e), 0);
    char f[64];
    recipe_format(r, "model.layers.1.mlp.experts.up_proj", RC_EXPERTS, 0, f, sizeof f);
    CHECK_STR(f, "ccq2.5");
    recipe_format(r, "model.layers.2.mlp.experts.up_proj", RC_EXPERTS, 1, f, sizeof f);
    CHECK_STR(f, "ccq2.06+icq");
    recipe_format(r, "model.layers.1.mlp.experts.down_proj", RC_EXPERTS, 0, f, sizeof f);
    CHECK_STR(f, "bf16");
    recipe_format(r, "model.layers.1.mlp.gate", RC_ROUTER, -1, f, sizeof f);
    CHECK_STR(f, "f32");
    CHECK_INT(recipe_override(r, "noequals", &e), -1);
    CHECK_CONTAINS(e.msg, "REGEX=FORMAT");
    CHECK_INT(recipe_override(r, "([=wint4", &e), -1);
    CHECK_CONTAINS(e.msg, "bad regular expression");
    recipe_free(r);
    CHECK_INT(recipe_create(&r, "q3", &e), -1);
    CHECK_CONTAINS(e.msg, "unknown recipe 'q3'");
    CHECK_CONTAINS(e.msg, "fit80");
}
