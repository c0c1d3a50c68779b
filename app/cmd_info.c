/* app/cmd_info.c: `ernie info`. What a model file holds and what it needs to run: architecture,
 * sizes, recipe, bits per weight by component, tokenizer, generation defaults, memory for the weights
 * and for the KV cache. Reads the header only (no checksums: that is `ernie verify`). Results go to
 * stdout, as text or with --json as one JSON object; it never changes the file. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "model_load.h"
#include "model/modelfile.h"
#include "progress.h"

const cli_command CMD_INFO = {
    .name = "info",
    .usage = "FILE [--json]",
    .summary = "What a model file holds and what it needs to run",
    .details = "Prints the architecture, sizes, recipe, bits per weight of each component, tokenizer, generation\n"
               "defaults, and the memory the weights and the KV cache need. Reads only the header; 'ernie verify'\n"
               "checks the data. FILE 'demo' is the model built into the binary.",
};

/* Components in the order they are reported. */
static const char *const COMPONENTS[] = {"embedding", "attention", "dense mlp", "experts", "shared experts", "router", "norms", "lm_head", "other"};
#define NCOMP (int)(sizeof COMPONENTS / sizeof COMPONENTS[0])

typedef struct {
    double params, bytes;
    char formats[128]; /* distinct formats, comma separated */
} comp_stat;

static void add_format(char *list, size_t n, const char *f) {
    size_t fl = strlen(f);
    for (const char *p = list; (p = strstr(p, f)); p += fl)
        if ((p == list || p[-1] == ' ') && (p[fl] == ',' || p[fl] == 0)) return;
    size_t l = strlen(list);
    if (l + fl + 3 >= n) return;
    snprintf(list + l, n - l, "%s%s", l ? ", " : "", f);
}

/* KV cache bytes per 1024 positions, keys and values in bf16. */
static double kv_per_1k(const cfg_model *c) {
    return 2.0 * c->num_hidden_layers * c->num_key_value_heads * c->head_dim * 1024 * 2;
}

/* Number of entries in the special-token table, or -1 when it does not parse. */
static int count_special(const st_tensor *t) {
    if (!t) return -1;
    json_t *j = json_loadb(t->data, (size_t)t->nbytes, 0, NULL);
    json_t *a = json_object_get(j, "added_tokens");
    int n = json_is_array(a) ? (int)json_array_size(a) : -1;
    json_decref(j);
    return n;
}

static const char *fmt_count(double n, char *b, size_t sz) {
    if (n >= 1e9) snprintf(b, sz, "%.2fB", n / 1e9);
    else if (n >= 1e6) snprintf(b, sz, "%.1fM", n / 1e6);
    else if (n >= 1e3) snprintf(b, sz, "%.1fK", n / 1e3);
    else snprintf(b, sz, "%.0f", n);
    return b;
}

static void eos_list(const cfg_gen *g, char *b, size_t n) {
    size_t k = (size_t)snprintf(b, n, "[");
    for (int i = 0; i < g->n_eos && k < n; i++) k += (size_t)snprintf(b + k, n - k, i ? ", %d" : "%d", g->eos_token_id[i]);
    if (k < n) snprintf(b + k, n - k, "]");
}

static int print_json(const mf_file *f, const comp_stat *cs, double wbytes, double wparams, int64_t total, int64_t active) {
    const cfg_model *c = mf_config(f);
    const cfg_gen *g = mf_generation(f);
    json_t *o = json_object();
    json_object_set_new(o, "file", json_string(mf_path(f)));
    json_object_set_new(o, "file_bytes", json_integer((json_int_t)st_file_size(mf_st(f))));
    json_object_set_new(o, "format_version", json_integer(mf_version(f)));
    json_object_set_new(o, "architecture", json_string(c->architecture));
    json_object_set_new(o, "moe", json_boolean(c->is_moe));
    json_object_set_new(o, "parameters", json_integer(total));
    json_object_set_new(o, "active_parameters", json_integer(active));
    json_object_set_new(o, "layers", json_integer(c->num_hidden_layers));
    json_object_set_new(o, "moe_layers", json_integer(cfg_num_moe_layers(c)));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(o, "attention_heads", json_integer(c->num_attention_heads));
    json_object_set_new(o, "kv_heads", json_integer(c->num_key_value_heads));
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "context", json_integer(c->max_position_embeddings));
    json_object_set_new(o, "tied_embeddings", json_boolean(c->tie_word_embeddings));
    if (c->is_moe) {
        json_object_set_new(o, "experts", json_integer(c->moe_num_experts));
        json_object_set_new(o, "experts_per_token", json_integer(c->moe_k));
        json_object_set_new(o, "expert_width", json_integer(c->moe_intermediate_size));
        json_object_set_new(o, "shared_expert_width", json_integer(cfg_shared_width(c)));
    }
    const char *recipe = mf_meta(f, "recipe");
    json_object_set_new(o, "recipe", recipe ? json_string(recipe) : json_null());
    json_t *comps = json_array();
    for (int i = 0; i < NCOMP; i++) {
        if (cs[i].params == 0) continue;
        json_t *x = json_object();
        json_object_set_new(x, "component", json_string(COMPONENTS[i]));
        json_object_set_new(x, "parameters", json_integer((json_int_t)cs[i].params));
        json_object_set_new(x, "bytes", json_integer((json_int_t)cs[i].bytes));
        json_object_set_new(x, "bits_per_weight", json_real(8 * cs[i].bytes / cs[i].params));
        json_object_set_new(x, "formats", json_string(cs[i].formats));
        json_array_append_new(comps, x);
    }
    json_object_set_new(o, "components", comps);
    json_object_set_new(o, "weight_bytes", json_integer((json_int_t)wbytes));
    json_object_set_new(o, "bits_per_weight", json_real(wparams > 0 ? 8 * wbytes / wparams : 0));
    json_object_set_new(o, "kv_cache_bytes_per_1k_tokens", json_integer((json_int_t)kv_per_1k(c)));
    json_t *tok = json_object();
    const st_tensor *tm = mf_tokenizer_model(f);
    json_object_set_new(tok, "model_bytes", tm ? json_integer((json_int_t)tm->nbytes) : json_null());
    int ns = count_special(mf_special_tokens(f));
    json_object_set_new(tok, "special_tokens", ns >= 0 ? json_integer(ns) : json_null());
    json_object_set_new(o, "tokenizer", tok);
    json_t *gen = json_object();
    json_object_set_new(gen, "do_sample", json_boolean(g->do_sample));
    json_object_set_new(gen, "temperature", json_real(g->temperature));
    json_object_set_new(gen, "top_p", json_real(g->top_p));
    json_object_set_new(gen, "top_k", json_integer(g->top_k));
    json_object_set_new(gen, "repetition_penalty", json_real(g->repetition_penalty));
    json_t *eos = json_array();
    for (int i = 0; i < g->n_eos; i++) json_array_append_new(eos, json_integer(g->eos_token_id[i]));
    json_object_set_new(gen, "eos_token_id", eos);
    json_object_set_new(o, "generation", gen);
    const char *src = mf_meta(f, "source");
    if (src) json_object_set_new(o, "source", json_string(src));
    const char *cal = mf_meta(f, "calibration");
    if (cal) json_object_set_new(o, "calibration", json_string(cal));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s) return cli_fail("info: out of memory");
    printf("%s\n", s);
    free(s);
    return EXIT_OK;
}

int cmd_info(int argc, char **argv, cli_global *g) {
    const char *pos[2];
    int np = 0;
    int r = cli_parse(&CMD_INFO, argc, argv, g, NULL, NULL, pos, 1, &np);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_INFO);
        return EXIT_OK;
    }
    if (np != 1) return cli_usage_error(&CMD_INFO, "which model file? (ernie info FILE)");
    err_t e = {0};
    mf_file *f;
    if (model_open_file(&f, pos[0], "info", &e)) return cli_fail("%s", e.msg);
    const cfg_model *c = mf_config(f);
    comp_stat cs[NCOMP];
    memset(cs, 0, sizeof cs);
    double wbytes = 0, wparams = 0;
    for (int i = 0; i < mf_nweights(f); i++) {
        const mf_weight *w = mf_weight_at(f, i);
        const char *comp = mf_component(w->name);
        int k = NCOMP - 1;
        for (int j = 0; j < NCOMP; j++)
            if (!strcmp(COMPONENTS[j], comp)) k = j;
        double n = (double)w->rows * (double)w->cols;
        cs[k].params += n;
        cs[k].bytes += (double)w->nbytes;
        add_format(cs[k].formats, sizeof cs[k].formats, w->format);
        wbytes += (double)w->nbytes;
        wparams += n;
    }
    int64_t active, total = cfg_param_count(c, &active);
    if (g->json) {
        int rc = print_json(f, cs, wbytes, wparams, total, active);
        mf_close(f);
        return rc;
    }
    char b1[32], b2[32], b3[32], b4[32];
    printf("file:        %s (%s, format version %d)\n", mf_path(f), progress_fmt_bytes((double)st_file_size(mf_st(f)), b1, sizeof b1),
           mf_version(f));
    printf("model:       ERNIE-4.5 %s (%s), %s parameters", c->is_moe ? "MoE" : "dense", c->architecture, fmt_count((double)total, b1, sizeof b1));
    if (c->is_moe) printf(", %s active per token", fmt_count((double)active, b2, sizeof b2));
    printf("\n");
    int nmoe = cfg_num_moe_layers(c);
    printf("layers:      %d", c->num_hidden_layers);
    if (c->is_moe) printf(" (%d dense, %d MoE)", c->num_hidden_layers - nmoe, nmoe);
    printf(", hidden %d, %d heads / %d KV heads of %d, vocab %d, context %d\n", c->hidden_size, c->num_attention_heads,
           c->num_key_value_heads, c->head_dim, c->vocab_size, c->max_position_embeddings);
    if (c->is_moe) {
        printf("experts:     %d per MoE layer, top-%d, width %d, ", c->moe_num_experts, c->moe_k, c->moe_intermediate_size);
        if (cfg_shared_width(c)) printf("shared expert width %d\n", cfg_shared_width(c));
        else printf("no shared expert\n");
    }
    printf("embeddings:  %s\n", c->tie_word_embeddings ? "tied (the head reuses the embedding)" : "separate lm_head");
    const char *recipe = mf_meta(f, "recipe");
    printf("recipe:      %s\n", recipe ? recipe : "(not recorded)");
    printf("weights:     %s, %.2f bits per weight on average\n", progress_fmt_bytes(wbytes, b1, sizeof b1),
           wparams > 0 ? 8 * wbytes / wparams : 0);
    printf("  %-15s %10s %10s %7s  %s\n", "component", "params", "bytes", "bpw", "formats");
    for (int i = 0; i < NCOMP; i++) {
        if (cs[i].params == 0) continue;
        printf("  %-15s %10s %10s %7.2f  %s\n", COMPONENTS[i], fmt_count(cs[i].params, b1, sizeof b1),
               progress_fmt_bytes(cs[i].bytes, b2, sizeof b2), 8 * cs[i].bytes / cs[i].params, cs[i].formats);
    }
    const st_tensor *tm = mf_tokenizer_model(f);
    int ns = count_special(mf_special_tokens(f));
    if (!tm) printf("tokenizer:   none stored\n");
    else if (ns >= 0) printf("tokenizer:   SentencePiece model (%s), %d special tokens\n", progress_fmt_bytes((double)tm->nbytes, b1, sizeof b1), ns);
    else printf("tokenizer:   SentencePiece model (%s), special-token table unreadable\n", progress_fmt_bytes((double)tm->nbytes, b1, sizeof b1));
    const cfg_gen *gen = mf_generation(f);
    eos_list(gen, b4, sizeof b4);
    printf("generation:  %s, temperature %g, top-p %g, top-k %s, repetition penalty %g, eos %s\n",
           gen->do_sample ? "sampling" : "greedy", gen->temperature, gen->top_p,
           gen->top_k ? (snprintf(b3, sizeof b3, "%d", gen->top_k), b3) : "off", gen->repetition_penalty, b4);
    printf("memory:      weights %s; KV cache %s per 1K tokens of context (bf16 keys and values), %s at the full %d\n",
           progress_fmt_bytes(wbytes, b1, sizeof b1), progress_fmt_bytes(kv_per_1k(c), b2, sizeof b2),
           progress_fmt_bytes(kv_per_1k(c) * c->max_position_embeddings / 1024.0, b3, sizeof b3), c->max_position_embeddings);
    const char *src = mf_meta(f, "source");
    if (src) printf("source:      %s\n", src);
    const char *cal = mf_meta(f, "calibration");
    if (cal) printf("calibrated:  %s\n", cal);
    mf_close(f);
    return EXIT_OK;
}
