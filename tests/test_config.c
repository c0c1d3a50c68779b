/* tests/test_config.c: config.json and generation_config.json: the released models' values, HF-native
 * defaults for absent keys (never the remote-code ones), derived values, round trips, and one clear
 * error per kind of bad config. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "model/config.h"

/* The 21B-A3B-PT config.json as released (spec/ernie.md §1). */
static const char *CFG_21B =
    "{\"architectures\": [\"Ernie4_5_MoeForCausalLM\"], \"bos_token_id\": 1, \"eos_token_id\": 2, \"hidden_act\": \"silu\","
    " \"hidden_size\": 2560, \"intermediate_size\": 12288, \"max_position_embeddings\": 131072, \"model_type\": \"ernie4_5_moe\","
    " \"num_attention_heads\": 20, \"num_key_value_heads\": 4, \"num_hidden_layers\": 28, \"pad_token_id\": 0,"
    " \"rms_norm_eps\": 1e-05, \"use_cache\": false, \"vocab_size\": 103424, \"rope_theta\": 500000, \"use_bias\": false,"
    " \"tie_word_embeddings\": true, \"moe_num_experts\": 64, \"moe_num_shared_experts\": 2, \"moe_layer_start_index\": 1,"
    " \"moe_layer_end_index\": 27, \"moe_intermediate_size\": 1536, \"moe_capacity\": [64, 64, 64], \"moe_gate\": \"topk\","
    " \"moe_k\": 6, \"moe_layer_interval\": 1, \"moe_use_aux_free\": true, \"num_nextn_predict_layers\": 1,"
    " \"torch_dtype\": \"bfloat16\"}";

/* The 300B: no head_dim, no shared experts, untied, MoE from layer 3. */
static const char *CFG_300B =
    "{\"architectures\": [\"Ernie4_5_MoeForCausalLM\"], \"hidden_size\": 8192, \"intermediate_size\": 28672,"
    " \"num_hidden_layers\": 54, \"num_attention_heads\": 64, \"num_key_value_heads\": 8, \"vocab_size\": 103424,"
    " \"rope_theta\": 500000, \"rms_norm_eps\": 1e-05, \"tie_word_embeddings\": false, \"moe_num_experts\": 64, \"moe_k\": 8,"
    " \"moe_intermediate_size\": 3584, \"moe_layer_start_index\": 3, \"moe_layer_end_index\": 53, \"moe_layer_interval\": 1,"
    " \"moe_num_shared_experts\": 0, \"moe_gate_act\": \"softmax\", \"eos_token_id\": 2}";

/* The 0.3B: dense, head_dim 128 explicitly (not 1024/16). */
static const char *CFG_03B =
    "{\"architectures\": [\"Ernie4_5ForCausalLM\"], \"hidden_size\": 1024, \"intermediate_size\": 3072, \"head_dim\": 128,"
    " \"num_hidden_layers\": 18, \"num_attention_heads\": 16, \"num_key_value_heads\": 2, \"vocab_size\": 103424,"
    " \"rope_theta\": 500000, \"rms_norm_eps\": 1e-05, \"tie_word_embeddings\": true, \"rope_scaling\": null,"
    " \"max_position_embeddings\": 131072, \"use_bias\": false}";

static int parse(cfg_model *c, const char *s, err_t *e) { return cfg_parse(c, s, strlen(s), "config.json", e); }

TEST(cfg_21b) {
    cfg_model c;
    err_t e = {0};
    if (!CHECK(parse(&c, CFG_21B, &e) == 0)) return (void)FAIL("%s", e.msg);
    CHECK(c.is_moe);
    CHECK_STR(c.architecture, "Ernie4_5_MoeForCausalLM");
    CHECK_INT(c.head_dim, 128); /* 2560 / 20 */
    CHECK(!cfg_is_moe_layer(&c, 0));
    for (int i = 1; i < 28; i++) CHECK(cfg_is_moe_layer(&c, i));
    CHECK(!cfg_is_moe_layer(&c, 28));
    CHECK_INT(cfg_num_moe_layers(&c), 27);
    CHECK_INT(cfg_shared_width(&c), 3072);
    CHECK(c.tie_word_embeddings);
    CHECK_NEAR(c.rms_norm_eps, 1e-5, 0);
    CHECK_NEAR(c.rope_theta, 500000, 0);
    CHECK_NEAR(c.moe_norm_min, 1e-12, 0);
    int64_t act, tot = cfg_param_count(&c, &act);
    CHECK_NEAR((double)tot / 1e9, 21.8, 0.15); /* spec §1 sanity check */
    CHECK(act < tot / 5);
}

TEST(cfg_300b) {
    cfg_model c;
    err_t e = {0};
    if (!CHECK(parse(&c, CFG_300B, &e) == 0)) return (void)FAIL("%s", e.msg);
    CHECK_INT(c.head_dim, 128);
    for (int i = 0; i < 3; i++) CHECK(!cfg_is_moe_layer(&c, i));
    CHECK_INT(cfg_num_moe_layers(&c), 51);
    CHECK_INT(cfg_shared_width(&c), 0);
    CHECK(!c.tie_word_embeddings);
    CHECK_INT(c.moe_k, 8);
    int64_t act, tot = cfg_param_count(&c, &act);
    /* 299.5 B by the spec's formula (which leaves out norms and routers: a few million). */
    CHECK_NEAR((double)tot / 1e9, 299.5, 0.5);
    CHECK_NEAR((double)act / 1e9, 47.9, 0.6);
}

TEST(cfg_03b_and_old_name) {
    cfg_model c;
    err_t e = {0};
    if (!CHECK(parse(&c, CFG_03B, &e) == 0)) return (void)FAIL("%s", e.msg);
    CHECK(!c.is_moe);
    CHECK_INT(c.head_dim, 128);
    CHECK_INT(cfg_num_moe_layers(&c), 0);
    CHECK_INT(cfg_shared_width(&c), 0);
    CHECK_NEAR((double)cfg_param_count(&c, NULL) / 1e9, 0.361, 0.003);
    /* The old architecture name is the same model. */
    const char *old = "{\"architectures\": [\"Ernie4_5_ForCausalLM\"]}";
    CHECK(parse(&c, old, &e) == 0);
    CHECK_STR(c.architecture, "Ernie4_5ForCausalLM");
    CHECK_INT(c.hidden_size, 1024);
    CHECK_INT(c.head_dim, 128); /* the dense default is 128, not hidden/heads = 64 */
    /* head_dim: null means hidden/heads. */
    CHECK(parse(&c, "{\"architectures\": [\"Ernie4_5ForCausalLM\"], \"head_dim\": null}", &e) == 0);
    CHECK_INT(c.head_dim, 64);
    /* model_type alone is enough. */
    CHECK(parse(&c, "{\"model_type\": \"ernie4_5\"}", &e) == 0);
    CHECK(!c.is_moe);
}

/* Absent keys take transformers' defaults: the 21B's, never Baidu's remote ones (interval 2,
 * start 0, k 2, untied, eps 1e-6, theta 1e4). */
TEST(cfg_hf_native_defaults) {
    cfg_model c;
    err_t e = {0};
    CHECK(parse(&c, "{\"architectures\": [\"Ernie4_5_MoeForCausalLM\"]}", &e) == 0);
    CHECK_INT(c.hidden_size, 2560);
    CHECK_INT(c.intermediate_size, 12288);
    CHECK_INT(c.num_hidden_layers, 28);
    CHECK_INT(c.num_attention_heads, 20);
    CHECK_INT(c.num_key_value_heads, 4);
    CHECK_INT(c.head_dim, 128);
    CHECK_INT(c.moe_layer_interval, 1);
    CHECK_INT(c.moe_layer_start_index, 1);
    CHECK_INT(c.moe_layer_end_index, 27);
    CHECK_INT(c.moe_k, 6);
    CHECK_INT(c.moe_num_shared_experts, 2);
    CHECK(c.tie_word_embeddings);
    CHECK_NEAR(c.rms_norm_eps, 1e-5, 0);
    CHECK_NEAR(c.rope_theta, 500000, 0);
    CHECK_INT(c.vocab_size, 103424);
    CHECK_INT(c.n_eos, 1);
    CHECK_INT(c.eos_token_id[0], 2);
    /* num_key_value_heads null = one KV head per query head; end index -1 = last layer. */
    CHECK(parse(&c, "{\"architectures\": [\"Ernie4_5_MoeForCausalLM\"], \"num_key_value_heads\": null, \"moe_layer_end_index\": -1,"
                    " \"num_hidden_layers\": 4}", &e) == 0);
    CHECK_INT(c.num_key_value_heads, 20);
    CHECK_INT(c.moe_layer_end_index, 3);
    /* transformers' aliases, the v5 rope_parameters, and a list of eos ids. */
    CHECK(parse(&c, "{\"architectures\": [\"Ernie4_5_MoeForCausalLM\"], \"num_experts\": 8, \"num_experts_per_tok\": 2,"
                    " \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 10000.0}, \"eos_token_id\": [2, 100272]}",
                &e) == 0);
    CHECK_INT(c.moe_num_experts, 8);
    CHECK_INT(c.moe_k, 2);
    CHECK_NEAR(c.rope_theta, 10000, 0);
    CHECK_INT(c.n_eos, 2);
    CHECK_INT(c.eos_token_id[1], 100272);
    /* Interval 2 from the file is honoured: layers 1, 3, 5 ... */
    CHECK(parse(&c, "{\"architectures\": [\"Ernie4_5_MoeForCausalLM\"], \"moe_layer_interval\": 2, \"moe_layer_start_index\": 0}", &e) == 0);
    CHECK(!cfg_is_moe_layer(&c, 0) && cfg_is_moe_layer(&c, 1) && !cfg_is_moe_layer(&c, 2) && cfg_is_moe_layer(&c, 27));
    CHECK_INT(cfg_num_moe_layers(&c), 14);
}

static void round_trip(const char *src) {
    cfg_model a, b;
    err_t e = {0};
    if (!CHECK(parse(&a, src, &e) == 0)) return (void)FAIL("%s", e.msg);
    char *j = cfg_to_json(&a);
    if (!CHECK(j != NULL)) return;
    if (!CHECK(parse(&b, j, &e) == 0)) FAIL("%s\n%s", e.msg, j);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    char *j2 = cfg_to_json(&b);
    CHECK_STR(j2, j);
    free(j);
    free(j2);
}

TEST(cfg_round_trips) {
    round_trip(CFG_21B);
    round_trip(CFG_300B);
    round_trip(CFG_03B);
    round_trip("{\"architectures\": [\"Ernie4_5_MoeForCausalLM\"], \"rms_norm_eps\": 1.2345678901234567e-7, \"rope_theta\": 0.1,"
               " \"bos_token_id\": null, \"eos_token_id\": [2, 3, 4]}");
    cfg_model c;
    err_t e = {0};
    CHECK(parse(&c, CFG_300B, &e) == 0);
    char *j = cfg_to_json(&c);
    CHECK_CONTAINS(j, "\"head_dim\": 128"); /* every derived value explicit */
    CHECK_CONTAINS(j, "\"moe_layer_end_index\": 53");
    CHECK_CONTAINS(j, "\"rms_norm_eps\": 1e-05");
    CHECK_CONTAINS(j, "\"rope_theta\": 500000.0");
    free(j);
}

#define BAD(json, want_code, needle)                                                                         \
    do {                                                                                                \
        cfg_model c_;                                                                                   \
        err_t e_ = {0};                                                                                 \
        CHECK_INT(parse(&c_, json, &e_), -1);                                                           \
        CHECK_CONTAINS(e_.msg, needle);                                                                 \
        CHECK_CONTAINS(e_.msg, "config.json");                                                          \
        CHECK_STR(err_code_name(e_.code), err_code_name(want_code));                                         \
    } while (0)

#define MOE "{\"architectures\": [\"Ernie4_5_MoeForCausalLM\"], "

TEST(cfg_errors) {
    BAD("", ERR_FORMAT, "not valid JSON");
    BAD("{\"a\": 1,}", ERR_FORMAT, "not valid JSON");
    BAD("[]", ERR_FORMAT, "not a JSON object");
    BAD("{}", ERR_FORMAT, "neither \"architectures\" nor \"model_type\"");
    BAD("{\"architectures\": [\"LlamaForCausalLM\"]}", ERR_UNSUPPORTED, "architecture 'LlamaForCausalLM' is not supported");
    BAD("{\"architectures\": [\"Ernie4_5_VLMoeForConditionalGeneration\"]}", ERR_UNSUPPORTED, "is not supported");
    BAD("{\"architectures\": []}", ERR_FORMAT, "\"architectures\" must be a non-empty list");
    BAD("{\"architectures\": \"Ernie4_5ForCausalLM\"}", ERR_FORMAT, "\"architectures\" must be");
    BAD("{\"model_type\": \"llama\"}", ERR_UNSUPPORTED, "model_type 'llama'");
    BAD(MOE "\"hidden_size\": \"2560\"}", ERR_FORMAT, "\"hidden_size\" must be an integer");
    BAD(MOE "\"hidden_size\": 2560.5}", ERR_FORMAT, "\"hidden_size\" must be an integer");
    BAD(MOE "\"hidden_size\": -1}", ERR_FORMAT, "\"hidden_size\" = -1 is out of range");
    BAD(MOE "\"hidden_size\": 99999999999}", ERR_FORMAT, "\"hidden_size\"");
    BAD(MOE "\"num_key_value_heads\": 3}", ERR_ARG, "\"num_key_value_heads\" (3) must divide \"num_attention_heads\" (20)");
    BAD(MOE "\"head_dim\": 127}", ERR_ARG, "\"head_dim\" = 127 must be even");
    BAD(MOE "\"head_dim\": null, \"hidden_size\": 2561}", ERR_ARG, "not a multiple");
    BAD(MOE "\"moe_k\": 65}", ERR_ARG, "\"moe_k\" = 65 must be between 1 and \"moe_num_experts\" (64)");
    BAD(MOE "\"moe_k\": 0}", ERR_FORMAT, "\"moe_k\" = 0 is out of range");
    BAD(MOE "\"moe_layer_interval\": 0}", ERR_FORMAT, "\"moe_layer_interval\"");
    BAD(MOE "\"moe_layer_start_index\": 40}", ERR_ARG, "no layer is MoE");
    BAD(MOE "\"moe_layer_end_index\": -2}", ERR_FORMAT, "\"moe_layer_end_index\"");
    BAD(MOE "\"hidden_act\": \"gelu\"}", ERR_UNSUPPORTED, "\"hidden_act\" 'gelu'");
    BAD(MOE "\"use_bias\": true}", ERR_UNSUPPORTED, "\"use_bias\" is true");
    BAD(MOE "\"use_bias\": \"no\"}", ERR_FORMAT, "\"use_bias\" must be true or false");
    BAD(MOE "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}", ERR_UNSUPPORTED, "RoPE type 'linear'");
    BAD(MOE "\"rope_parameters\": {\"rope_type\": \"yarn\"}}", ERR_UNSUPPORTED, "RoPE type 'yarn'");
    BAD(MOE "\"rope_theta\": -5}", ERR_ARG, "\"rope_theta\"");
    BAD(MOE "\"rms_norm_eps\": 0}", ERR_ARG, "\"rms_norm_eps\"");
    BAD(MOE "\"moe_gate_act\": \"sigmoid\"}", ERR_UNSUPPORTED, "\"moe_gate_act\" 'sigmoid'");
    BAD(MOE "\"eos_token_id\": [2, \"x\"]}", ERR_FORMAT, "\"eos_token_id\"[1] is not a token id");
    BAD(MOE "\"eos_token_id\": 200000}", ERR_ARG, "\"eos_token_id\" 200000 is not below \"vocab_size\"");
    BAD(MOE "\"eos_token_id\": []}", ERR_FORMAT, "\"eos_token_id\" must list");
    BAD(MOE "\"vocab_size\": 1, \"hidden_size\": 8, \"hidden_size\": 16}", ERR_FORMAT, "duplicate");
}

TEST(cfg_load_names_the_file) {
    cfg_model c;
    err_t e = {0};
    CHECK(cfg_load(&c, th_tmp("nope.json"), &e) == -1);
    CHECK_CONTAINS(e.msg, "nope.json");
    th_write_file(th_tmp("config.json"), CFG_21B, strlen(CFG_21B));
    CHECK(cfg_load(&c, th_tmp("config.json"), &e) == 0);
    CHECK_INT(c.hidden_size, 2560);
    th_write_file(th_tmp("bad.json"), "{\"architectures\": [\"X\"]}", 24);
    CHECK(cfg_load(&c, th_tmp("bad.json"), &e) == -1);
    CHECK_CONTAINS(e.msg, "bad.json: architecture 'X'");
}

TEST(cfg_generation_defaults_and_file) {
    cfg_gen g;
    cfg_gen_defaults(&g);
    CHECK(g.do_sample);
    CHECK_NEAR(g.temperature, 0.8, 0);
    CHECK_NEAR(g.top_p, 0.8, 0);
    CHECK_INT(g.top_k, 0);
    CHECK_NEAR(g.repetition_penalty, 1.0, 0);
    CHECK_INT(g.n_eos, 1);
    CHECK_INT(g.eos_token_id[0], 2);
    err_t e = {0};
    /* The 0.3B-Base release file (spec §5). */
    const char *rel = "{\"do_sample\": true, \"top_p\": 0.8, \"temperature\": 0.8, \"repetition_penalty\": 1.0,"
                      " \"frequency_penalty\": 0.0, \"presence_penalty\": 0.0, \"bos_token_id\": 1, \"eos_token_id\": 2,"
                      " \"pad_token_id\": 0, \"transformers_version\": \"4.54.0\"}";
    CHECK(cfg_gen_parse(&g, rel, strlen(rel), "generation_config.json", &e) == 0);
    CHECK_NEAR(g.temperature, 0.8, 0);
    const char *other = "{\"do_sample\": false, \"temperature\": 0.0, \"top_k\": 40, \"eos_token_id\": [2, 100272],"
                        " \"repetition_penalty\": 1.1, \"max_new_tokens\": 512}";
    CHECK(cfg_gen_parse(&g, other, strlen(other), "generation_config.json", &e) == 0);
    CHECK(!g.do_sample);
    CHECK_INT(g.top_k, 40);
    CHECK_INT(g.n_eos, 2);
    CHECK_INT(g.max_new_tokens, 512);
    CHECK_NEAR(g.top_p, 0.8, 0); /* absent: kept */
    char *j = cfg_gen_to_json(&g);
    cfg_gen h;
    cfg_gen_defaults(&h);
    CHECK(cfg_gen_parse(&h, j, strlen(j), "x", &e) == 0);
    CHECK(memcmp(&g, &h, sizeof g) == 0);
    free(j);
    /* A missing file keeps the defaults; a broken one is an error naming it and the key. */
    int found = 1;
    cfg_gen_defaults(&g);
    CHECK(cfg_gen_load(&g, th_tmp("generation_config.json"), &found, &e) == 0);
    CHECK_INT(found, 0);
    CHECK_NEAR(g.temperature, 0.8, 0);
    th_write_file(th_tmp("generation_config.json"), "{\"top_p\": 1.5}", 14);
    CHECK(cfg_gen_load(&g, th_tmp("generation_config.json"), &found, &e) == -1);
    CHECK_CONTAINS(e.msg, "generation_config.json: \"top_p\" = 1.5 must be in (0, 1]");
    const char *bads[] = {"{\"temperature\": -1}", "{\"top_k\": -3}", "{\"repetition_penalty\": 0}", "{\"eos_token_id\": \"2\"}",
                          "{\"do_sample\": \"yes\"}", "[1]", "{"};
    for (int i = 0; i < 7; i++) {
        cfg_gen_defaults(&g);
        if (cfg_gen_parse(&g, bads[i], strlen(bads[i]), "gen.json", &e) != -1) FAIL("accepted %s", bads[i]);
        CHECK_CONTAINS(e.msg, "gen.json");
    }
}
