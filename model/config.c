/* model/config.c: config.json and generation_config.json, parsed, defaulted, validated, serialised.
 *
 * Must never fall back to Baidu's remote-code defaults, never accept a config the engine would run
 * wrongly (rope scaling, biases, another activation), and never print. */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Bounds far above any released model, low enough that products of two of them fit in int64. */
#define MAX_HIDDEN 65536
#define MAX_WIDTH (1 << 20)
#define MAX_VOCAB (1 << 22)
#define MAX_LAYERS 1024
#define MAX_HEADS 1024
#define MAX_HEAD_DIM 1024
#define MAX_EXPERTS 1024
#define MAX_POSITIONS (1 << 30)

static const char *const MOE_ARCH = "Ernie4_5_MoeForCausalLM";
static const char *const DENSE_ARCH = "Ernie4_5ForCausalLM";

int cfg_defaults(cfg_model *c, const char *arch) {
    memset(c, 0, sizeof *c);
    int moe;
    if (!strcmp(arch, MOE_ARCH)) moe = 1;
    else if (!strcmp(arch, DENSE_ARCH) || !strcmp(arch, "Ernie4_5_ForCausalLM")) moe = 0;
    else return -1;
    c->is_moe = moe;
    snprintf(c->architecture, sizeof c->architecture, "%s", moe ? MOE_ARCH : DENSE_ARCH);
    c->vocab_size = 103424;
    c->max_position_embeddings = 131072;
    c->rope_theta = 500000.0;
    c->rms_norm_eps = 1e-5;
    c->tie_word_embeddings = 1;
    c->bos_token_id = 1;
    c->pad_token_id = 0;
    c->n_eos = 1;
    c->eos_token_id[0] = 2;
    if (moe) { /* transformers Ernie4_5_MoeConfig: "similar to ERNIE-4.5-21B-A3B-PT" */
        c->hidden_size = 2560;
        c->intermediate_size = 12288;
        c->num_hidden_layers = 28;
        c->num_attention_heads = 20;
        c->num_key_value_heads = 4;
        c->head_dim = 0; /* hidden / heads, resolved after parsing */
        c->moe_num_experts = 64;
        c->moe_k = 6;
        c->moe_intermediate_size = 1536;
        c->moe_num_shared_experts = 2;
        c->moe_layer_start_index = 1;
        c->moe_layer_end_index = -1;
        c->moe_layer_interval = 1;
        c->moe_norm_min = 1e-12;
    } else { /* transformers Ernie4_5Config: the 0.3B */
        c->hidden_size = 1024;
        c->intermediate_size = 3072;
        c->num_hidden_layers = 18;
        c->num_attention_heads = 16;
        c->num_key_value_heads = 2;
        c->head_dim = 128;
    }
    return 0;
}

/* ---- small JSON helpers: every one names the key in its message ------------------------------ */

/* Reads an integer key into *out when present and not null. Returns 1 if set, 0 if absent/null, -1. */
static int get_int(json_t *o, const char *key, long long lo, long long hi, int *out, const char *L, err_t *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) {
        /* transformers writes integers, but a hand-edited 2560.0 is still unambiguous. */
        double d = json_is_real(v) ? json_real_value(v) : NAN;
        if (!(d == floor(d)) || !isfinite(d) || d < (double)lo || d > (double)hi)
            return err_set(e, ERR_FORMAT, "%s: \"%s\" must be an integer", L, key);
        *out = (int)d;
        return 1;
    }
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return err_set(e, ERR_FORMAT, "%s: \"%s\" = %lld is out of range (%lld..%lld)", L, key, x, lo, hi);
    *out = (int)x;
    return 1;
}

static int get_num(json_t *o, const char *key, double *out, const char *L, err_t *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return err_set(e, ERR_FORMAT, "%s: \"%s\" must be a number", L, key);
    double d = json_number_value(v);
    if (!isfinite(d)) return err_set(e, ERR_FORMAT, "%s: \"%s\" is not finite", L, key);
    *out = d;
    return 1;
}

static int get_bool(json_t *o, const char *key, int *out, const char *L, err_t *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (json_is_boolean(v)) *out = json_is_true(v);
    else if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1)) *out = (int)json_integer_value(v);
    else return err_set(e, ERR_FORMAT, "%s: \"%s\" must be true or false", L, key);
    return 1;
}

/* Optional string; *out points into the JSON object. */
static int get_str(json_t *o, const char *key, const char **out, const char *L, err_t *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return err_set(e, ERR_FORMAT, "%s: \"%s\" must be a string", L, key);
    *out = json_string_value(v);
    return 1;
}

/* An id or a list of ids (eos_token_id may be either). */
static int get_ids(json_t *o, const char *key, int *ids, int *n, const char *L, err_t *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (json_is_integer(v)) {
        long long x = json_integer_value(v);
        if (x < 0 || x >= MAX_VOCAB) return err_set(e, ERR_FORMAT, "%s: \"%s\" = %lld is not a token id", L, key, x);
        ids[0] = (int)x;
        *n = 1;
        return 1;
    }
    if (!json_is_array(v)) return err_set(e, ERR_FORMAT, "%s: \"%s\" must be a token id or a list of them", L, key);
    size_t k = json_array_size(v);
    if (k == 0 || k > CFG_MAX_EOS) return err_set(e, ERR_FORMAT, "%s: \"%s\" must list 1 to %d token ids", L, key, CFG_MAX_EOS);
    for (size_t i = 0; i < k; i++) {
        json_t *x = json_array_get(v, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= MAX_VOCAB)
            return err_set(e, ERR_FORMAT, "%s: \"%s\"[%zu] is not a token id", L, key, i);
        ids[i] = (int)json_integer_value(x);
    }
    *n = (int)k;
    return 1;
}

/* A single optional id that may be null (-1). */
static int get_id(json_t *o, const char *key, int *out, const char *L, err_t *e) {
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (json_is_null(v)) {
        *out = -1;
        return 1;
    }
    return get_int(o, key, 0, MAX_VOCAB - 1, out, L, e);
}

static json_t *load_object(const char *json, size_t len, const char *L, err_t *e) {
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        err_set(e, ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", L, je.text, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        err_set(e, ERR_FORMAT, "%s: not a JSON object", L);
        return NULL;
    }
    return root;
}

/* ---- config.json -------------------------------------------------------------------------------- */

static int parse_rope(json_t *root, cfg_model *c, const char *L, err_t *e) {
    if (get_num(root, "rope_theta", &c->rope_theta, L, e) < 0) return -1;
    /* transformers 5 moved the theta into rope_parameters; scaling of any kind we do not implement. */
    const char *names[] = {"rope_parameters", "rope_scaling"};
    for (int i = 0; i < 2; i++) {
        json_t *rp = json_object_get(root, names[i]);
        if (!rp || json_is_null(rp)) continue;
        if (!json_is_object(rp)) return err_set(e, ERR_FORMAT, "%s: \"%s\" must be an object or null", L, names[i]);
        if (get_num(rp, "rope_theta", &c->rope_theta, L, e) < 0) return -1;
        const char *type = NULL;
        if (get_str(rp, "rope_type", &type, L, e) < 0 || (!type && get_str(rp, "type", &type, L, e) < 0)) return -1;
        if (type && strcmp(type, "default"))
            return err_set(e, ERR_UNSUPPORTED, "%s: \"%s\" asks for RoPE type '%.40s'; only the default is supported", L, names[i], type);
    }
    return 0;
}

int cfg_parse(cfg_model *c, const char *json, size_t len, const char *L, err_t *e) {
    json_t *root = load_object(json, len, L, e);
    if (!root) return -1;
    int rc = -1;
    const char *arch = NULL;
    json_t *ja = json_object_get(root, "architectures");
    if (ja && !json_is_null(ja)) {
        if (!json_is_array(ja) || json_array_size(ja) == 0 || !json_is_string(json_array_get(ja, 0))) {
            err_set(e, ERR_FORMAT, "%s: \"architectures\" must be a non-empty list of names", L);
            goto out;
        }
        arch = json_string_value(json_array_get(ja, 0));
    } else {
        const char *mt = NULL;
        if (get_str(root, "model_type", &mt, L, e) < 0) goto out;
        if (!mt) {
            err_set(e, ERR_FORMAT, "%s: neither \"architectures\" nor \"model_type\" says what model this is", L);
            goto out;
        }
        if (!strcmp(mt, "ernie4_5_moe")) arch = MOE_ARCH;
        else if (!strcmp(mt, "ernie4_5")) arch = DENSE_ARCH;
        else {
            err_set(e, ERR_UNSUPPORTED, "%s: model_type '%.60s' is not supported (ernie4_5 and ernie4_5_moe are)", L, mt);
            goto out;
        }
    }
    if (cfg_defaults(c, arch)) {
        err_set(e, ERR_UNSUPPORTED, "%s: architecture '%.80s' is not supported (%s, %s and Ernie4_5_ForCausalLM are)", L, arch,
                MOE_ARCH, DENSE_ARCH);
        goto out;
    }
    /* Sizes. head_dim: an explicit null means hidden/heads in both classes; absent means 128 for
     * the dense class (Ernie4_5Config's default) and hidden/heads for MoE (getattr fallback). */
    struct {
        const char *key;
        int *dst, lo, hi;
    } ints[] = {
        {"vocab_size", &c->vocab_size, 1, MAX_VOCAB},
        {"hidden_size", &c->hidden_size, 1, MAX_HIDDEN},
        {"intermediate_size", &c->intermediate_size, 1, MAX_WIDTH},
        {"num_hidden_layers", &c->num_hidden_layers, 1, MAX_LAYERS},
        {"num_attention_heads", &c->num_attention_heads, 1, MAX_HEADS},
        {"max_position_embeddings", &c->max_position_embeddings, 1, MAX_POSITIONS},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (get_int(root, ints[i].key, ints[i].lo, ints[i].hi, ints[i].dst, L, e) < 0) goto out;
    json_t *kv = json_object_get(root, "num_key_value_heads");
    if (kv && json_is_null(kv)) c->num_key_value_heads = c->num_attention_heads;
    else if (get_int(root, "num_key_value_heads", 1, MAX_HEADS, &c->num_key_value_heads, L, e) < 0) goto out;
    json_t *hd = json_object_get(root, "head_dim");
    if (hd && json_is_null(hd)) c->head_dim = 0;
    else if (get_int(root, "head_dim", 1, MAX_HEAD_DIM, &c->head_dim, L, e) < 0) goto out;
    if (c->head_dim == 0) {
        if (c->hidden_size % c->num_attention_heads) {
            err_set(e, ERR_ARG, "%s: no \"head_dim\", and \"hidden_size\" (%d) is not a multiple of \"num_attention_heads\" (%d)", L,
                    c->hidden_size, c->num_attention_heads);
            goto out;
        }
        c->head_dim = c->hidden_size / c->num_attention_heads;
    }
    if (parse_rope(root, c, L, e)) goto out;
    if (get_num(root, "rms_norm_eps", &c->rms_norm_eps, L, e) < 0) goto out;
    if (get_bool(root, "tie_word_embeddings", &c->tie_word_embeddings, L, e) < 0) goto out;
    int use_bias = 0;
    if (get_bool(root, "use_bias", &use_bias, L, e) < 0) goto out;
    if (use_bias) {
        err_set(e, ERR_UNSUPPORTED, "%s: \"use_bias\" is true; ERNIE-4.5 has no biases and the engine has none", L);
        goto out;
    }
    const char *act = NULL;
    if (get_str(root, "hidden_act", &act, L, e) < 0) goto out;
    if (act && strcmp(act, "silu")) {
        err_set(e, ERR_UNSUPPORTED, "%s: \"hidden_act\" '%.40s' is not supported (silu is)", L, act);
        goto out;
    }
    if (get_id(root, "bos_token_id", &c->bos_token_id, L, e) < 0 || get_id(root, "pad_token_id", &c->pad_token_id, L, e) < 0 ||
        get_ids(root, "eos_token_id", c->eos_token_id, &c->n_eos, L, e) < 0)
        goto out;
    if (c->is_moe) {
        /* transformers' attribute_map aliases: num_experts, num_experts_per_tok. */
        struct {
            const char *key, *alias;
            int *dst, lo, hi;
        } m[] = {
            {"moe_num_experts", "num_experts", &c->moe_num_experts, 1, MAX_EXPERTS},
            {"moe_k", "num_experts_per_tok", &c->moe_k, 1, MAX_EXPERTS},
            {"moe_intermediate_size", NULL, &c->moe_intermediate_size, 1, MAX_WIDTH},
            {"moe_num_shared_experts", NULL, &c->moe_num_shared_experts, 0, 64},
            {"moe_layer_start_index", NULL, &c->moe_layer_start_index, 0, MAX_LAYERS},
            {"moe_layer_end_index", NULL, &c->moe_layer_end_index, -1, MAX_LAYERS},
            {"moe_layer_interval", NULL, &c->moe_layer_interval, 1, MAX_LAYERS},
        };
        for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
            int r = get_int(root, m[i].key, m[i].lo, m[i].hi, m[i].dst, L, e);
            if (r < 0 || (r == 0 && m[i].alias && get_int(root, m[i].alias, m[i].lo, m[i].hi, m[i].dst, L, e) < 0)) goto out;
        }
        if (c->moe_layer_end_index == -1) c->moe_layer_end_index = c->num_hidden_layers - 1;
        if (get_num(root, "moe_norm_min", &c->moe_norm_min, L, e) < 0) goto out;
        const char *gate_act = NULL;
        if (get_str(root, "moe_gate_act", &gate_act, L, e) < 0) goto out;
        if (gate_act && strcmp(gate_act, "softmax")) {
            err_set(e, ERR_UNSUPPORTED, "%s: \"moe_gate_act\" '%.40s' is not supported (softmax is)", L, gate_act);
            goto out;
        }
    }
    rc = cfg_validate(c, L, e);
out:
    json_decref(root);
    return rc;
}

int cfg_validate(const cfg_model *c, const char *L, err_t *e) {
#define BAD(...) return err_set(e, ERR_ARG, __VA_ARGS__)
    if (c->vocab_size < 1 || c->vocab_size > MAX_VOCAB) BAD("%s: \"vocab_size\" = %d is out of range", L, c->vocab_size);
    if (c->hidden_size < 1 || c->hidden_size > MAX_HIDDEN) BAD("%s: \"hidden_size\" = %d is out of range", L, c->hidden_size);
    if (c->num_hidden_layers < 1 || c->num_hidden_layers > MAX_LAYERS)
        BAD("%s: \"num_hidden_layers\" = %d is out of range", L, c->num_hidden_layers);
    if (c->num_attention_heads < 1 || c->num_attention_heads > MAX_HEADS)
        BAD("%s: \"num_attention_heads\" = %d is out of range", L, c->num_attention_heads);
    if (c->num_key_value_heads < 1 || c->num_key_value_heads > c->num_attention_heads ||
        c->num_attention_heads % c->num_key_value_heads)
        BAD("%s: \"num_key_value_heads\" (%d) must divide \"num_attention_heads\" (%d)", L, c->num_key_value_heads,
            c->num_attention_heads);
    if (c->head_dim < 2 || c->head_dim > MAX_HEAD_DIM || c->head_dim % 2)
        BAD("%s: \"head_dim\" = %d must be even (RoPE rotates pairs) and at most %d", L, c->head_dim, MAX_HEAD_DIM);
    if (c->max_position_embeddings < 1) BAD("%s: \"max_position_embeddings\" = %d", L, c->max_position_embeddings);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta)) BAD("%s: \"rope_theta\" = %g must be positive", L, c->rope_theta);
    if (!(c->rms_norm_eps > 0 && c->rms_norm_eps < 1)) BAD("%s: \"rms_norm_eps\" = %g must be in (0, 1)", L, c->rms_norm_eps);
    if (c->n_eos < 0 || c->n_eos > CFG_MAX_EOS) BAD("%s: %d eos ids", L, c->n_eos);
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_token_id[i] < 0 || c->eos_token_id[i] >= c->vocab_size)
            BAD("%s: \"eos_token_id\" %d is not below \"vocab_size\" (%d)", L, c->eos_token_id[i], c->vocab_size);
    if (c->bos_token_id >= c->vocab_size) BAD("%s: \"bos_token_id\" %d is not below \"vocab_size\"", L, c->bos_token_id);
    if (c->pad_token_id >= c->vocab_size) BAD("%s: \"pad_token_id\" %d is not below \"vocab_size\"", L, c->pad_token_id);
    int dense_layers = c->num_hidden_layers - cfg_num_moe_layers(c);
    if (dense_layers > 0 && (c->intermediate_size < 1 || c->intermediate_size > MAX_WIDTH))
        BAD("%s: \"intermediate_size\" = %d is out of range", L, c->intermediate_size);
    if (c->is_moe) {
        if (c->moe_num_experts < 1 || c->moe_num_experts > MAX_EXPERTS)
            BAD("%s: \"moe_num_experts\" = %d is out of range", L, c->moe_num_experts);
        if (c->moe_k < 1 || c->moe_k > c->moe_num_experts)
            BAD("%s: \"moe_k\" = %d must be between 1 and \"moe_num_experts\" (%d)", L, c->moe_k, c->moe_num_experts);
        if (c->moe_intermediate_size < 1 || c->moe_intermediate_size > MAX_WIDTH)
            BAD("%s: \"moe_intermediate_size\" = %d is out of range", L, c->moe_intermediate_size);
        if (c->moe_num_shared_experts < 0 || (int64_t)c->moe_num_shared_experts * c->moe_intermediate_size > MAX_WIDTH)
            BAD("%s: \"moe_num_shared_experts\" = %d is out of range", L, c->moe_num_shared_experts);
        if (c->moe_layer_interval < 1) BAD("%s: \"moe_layer_interval\" = %d must be at least 1", L, c->moe_layer_interval);
        if (c->moe_layer_start_index < 0 || c->moe_layer_end_index < 0)
            BAD("%s: \"moe_layer_start_index\"/\"moe_layer_end_index\" must not be negative", L);
        if (!(c->moe_norm_min > 0) || !isfinite(c->moe_norm_min)) BAD("%s: \"moe_norm_min\" must be positive", L);
        if (cfg_num_moe_layers(c) == 0)
            BAD("%s: no layer is MoE (start %d, end %d, interval %d over %d layers): not an ERNIE MoE model", L,
                c->moe_layer_start_index, c->moe_layer_end_index, c->moe_layer_interval, c->num_hidden_layers);
    }
#undef BAD
    return 0;
}

int cfg_load(cfg_model *c, const char *path, err_t *e) {
    size_t len;
    char *s = cfg_read_file(path, 16 << 20, &len, NULL, e);
    if (!s) return -1;
    int rc = cfg_parse(c, s, len, path, e);
    free(s);
    return rc;
}

int cfg_is_moe_layer(const cfg_model *c, int i) {
    return c->is_moe && i >= 0 && i < c->num_hidden_layers && (i + 1) % c->moe_layer_interval == 0 &&
           i >= c->moe_layer_start_index && i <= c->moe_layer_end_index;
}

int cfg_num_moe_layers(const cfg_model *c) {
    int n = 0;
    for (int i = 0; i < c->num_hidden_layers; i++) n += cfg_is_moe_layer(c, i);
    return n;
}

int cfg_shared_width(const cfg_model *c) { return c->is_moe ? c->moe_intermediate_size * c->moe_num_shared_experts : 0; }

int64_t cfg_param_count(const cfg_model *c, int64_t *active) {
    /* In double: the bounds allow configs (1024 layers of 1024 experts of width 2^20) whose count
     * would overflow int64; such counts are clamped. */
    double H = c->hidden_size, V = c->vocab_size, d = c->head_dim;
    double attn = H * d * (2.0 * c->num_attention_heads + 2.0 * c->num_key_value_heads);
    double total = V * H * (c->tie_word_embeddings ? 1 : 2) + H; /* + final norm */
    double act = total;
    for (int i = 0; i < c->num_hidden_layers; i++) {
        double common = attn + 2 * H;
        total += common;
        act += common;
        if (cfg_is_moe_layer(c, i)) {
            double ex = 3 * H * c->moe_intermediate_size, sh = 3 * H * cfg_shared_width(c);
            double router = (double)c->moe_num_experts * (H + 1);
            total += ex * c->moe_num_experts + sh + router;
            act += ex * c->moe_k + sh + router;
        } else {
            total += 3 * H * c->intermediate_size;
            act += 3 * H * c->intermediate_size;
        }
    }
    const double cap = 9.2e18;
    if (active) *active = act > cap ? (int64_t)cap : (int64_t)act;
    return total > cap ? (int64_t)cap : (int64_t)total;
}

/* ---- serialisation ------------------------------------------------------------------------------ */

/* The shortest %g form that reads back to the same double. */
static void fmt_double(char *buf, size_t n, double v) {
    for (int p = 6; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, v);
        if (strtod(buf, NULL) == v) break;
    }
    /* JSON readers keep 1e-05 a float anyway; make integral values visibly real too. */
    if (!strpbrk(buf, ".eEn")) strncat(buf, ".0", n - strlen(buf) - 1);
}

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out_t *o, const char *fmt, ...) {
    if (o->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf ? o->buf + o->len : NULL, o->buf ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = 1;
            return;
        }
        if (o->buf && o->len + (size_t)n < o->cap) {
            o->len += (size_t)n;
            return;
        }
        size_t c = o->cap ? o->cap * 2 : 1024;
        while (c < o->len + (size_t)n + 1) c *= 2;
        char *b = realloc(o->buf, c);
        if (!b) {
            o->oom = 1;
            return;
        }
        o->buf = b;
        o->cap = c;
    }
}

static void put_ids(out_t *o, const char *key, const int *ids, int n) {
    if (n == 1) {
        put(o, ",\n  \"%s\": %d", key, ids[0]);
        return;
    }
    put(o, ",\n  \"%s\": [", key);
    for (int i = 0; i < n; i++) put(o, i ? ", %d" : "%d", ids[i]);
    put(o, "]");
}

static void put_id(out_t *o, const char *key, int id) {
    if (id < 0) put(o, ",\n  \"%s\": null", key);
    else put(o, ",\n  \"%s\": %d", key, id);
}

static char *finish(out_t *o) {
    put(o, "\n}\n");
    if (o->oom) {
        free(o->buf);
        return NULL;
    }
    return o->buf;
}

char *cfg_to_json(const cfg_model *c) {
    out_t o = {0};
    char d1[40], d2[40], d3[40];
    fmt_double(d1, sizeof d1, c->rope_theta);
    fmt_double(d2, sizeof d2, c->rms_norm_eps);
    put(&o, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\"", c->architecture, c->is_moe ? "ernie4_5_moe" : "ernie4_5");
    put(&o, ",\n  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d", c->vocab_size,
        c->hidden_size, c->intermediate_size, c->num_hidden_layers);
    put(&o, ",\n  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"head_dim\": %d", c->num_attention_heads,
        c->num_key_value_heads, c->head_dim);
    put(&o, ",\n  \"max_position_embeddings\": %d,\n  \"rope_theta\": %s,\n  \"rms_norm_eps\": %s", c->max_position_embeddings, d1, d2);
    put(&o, ",\n  \"hidden_act\": \"silu\",\n  \"use_bias\": false,\n  \"tie_word_embeddings\": %s", c->tie_word_embeddings ? "true" : "false");
    put_id(&o, "bos_token_id", c->bos_token_id);
    put_id(&o, "pad_token_id", c->pad_token_id);
    if (c->n_eos > 0) put_ids(&o, "eos_token_id", c->eos_token_id, c->n_eos);
    if (c->is_moe) {
        fmt_double(d3, sizeof d3, c->moe_norm_min);
        put(&o, ",\n  \"moe_num_experts\": %d,\n  \"moe_k\": %d,\n  \"moe_intermediate_size\": %d,\n  \"moe_num_shared_experts\": %d",
            c->moe_num_experts, c->moe_k, c->moe_intermediate_size, c->moe_num_shared_experts);
        put(&o, ",\n  \"moe_layer_start_index\": %d,\n  \"moe_layer_end_index\": %d,\n  \"moe_layer_interval\": %d", c->moe_layer_start_index,
            c->moe_layer_end_index, c->moe_layer_interval);
        put(&o, ",\n  \"moe_norm_min\": %s,\n  \"moe_gate_act\": \"softmax\"", d3);
    }
    return finish(&o);
}

/* ---- generation_config.json ------------------------------------------------------------------ */

void cfg_gen_defaults(cfg_gen *g) {
    memset(g, 0, sizeof *g);
    g->do_sample = 1;
    g->temperature = 0.8;
    g->top_p = 0.8;
    g->top_k = 0;
    g->repetition_penalty = 1.0;
    g->bos_token_id = 1;
    g->pad_token_id = 0;
    g->n_eos = 1;
    g->eos_token_id[0] = 2;
}

int cfg_gen_parse(cfg_gen *g, const char *json, size_t len, const char *L, err_t *e) {
    json_t *root = load_object(json, len, L, e);
    if (!root) return -1;
    int rc = -1;
    if (get_bool(root, "do_sample", &g->do_sample, L, e) < 0 || get_num(root, "temperature", &g->temperature, L, e) < 0 ||
        get_num(root, "top_p", &g->top_p, L, e) < 0 || get_int(root, "top_k", 0, MAX_VOCAB, &g->top_k, L, e) < 0 ||
        get_num(root, "repetition_penalty", &g->repetition_penalty, L, e) < 0 ||
        get_num(root, "frequency_penalty", &g->frequency_penalty, L, e) < 0 ||
        get_num(root, "presence_penalty", &g->presence_penalty, L, e) < 0 ||
        get_int(root, "max_new_tokens", 0, MAX_POSITIONS, &g->max_new_tokens, L, e) < 0 ||
        get_id(root, "bos_token_id", &g->bos_token_id, L, e) < 0 || get_id(root, "pad_token_id", &g->pad_token_id, L, e) < 0 ||
        get_ids(root, "eos_token_id", g->eos_token_id, &g->n_eos, L, e) < 0)
        goto out;
#define BAD(...)                                                                                        \
    do {                                                                                                \
        err_set(e, ERR_FORMAT, __VA_ARGS__);                                                            \
        goto out;                                                                                       \
    } while (0)
    if (!(g->temperature >= 0 && g->temperature <= 100)) BAD("%s: \"temperature\" = %g must be in [0, 100]", L, g->temperature);
    if (!(g->top_p > 0 && g->top_p <= 1)) BAD("%s: \"top_p\" = %g must be in (0, 1]", L, g->top_p);
    if (!(g->repetition_penalty > 0 && g->repetition_penalty <= 100))
        BAD("%s: \"repetition_penalty\" = %g must be in (0, 100]", L, g->repetition_penalty);
    if (fabs(g->frequency_penalty) > 100 || fabs(g->presence_penalty) > 100) BAD("%s: a penalty is out of range", L);
#undef BAD
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int cfg_gen_load(cfg_gen *g, const char *path, int *found, err_t *e) {
    if (found) *found = 0;
    size_t len;
    int er = 0;
    char *s = cfg_read_file(path, 1 << 20, &len, &er, e);
    if (!s) return er == ENOENT ? (err_clear(e), 0) : -1;
    if (found) *found = 1;
    int rc = cfg_gen_parse(g, s, len, path, e);
    free(s);
    return rc;
}

char *cfg_gen_to_json(const cfg_gen *g) {
    out_t o = {0};
    char t[40], p[40], r[40], f[40], pr[40];
    fmt_double(t, sizeof t, g->temperature);
    fmt_double(p, sizeof p, g->top_p);
    fmt_double(r, sizeof r, g->repetition_penalty);
    fmt_double(f, sizeof f, g->frequency_penalty);
    fmt_double(pr, sizeof pr, g->presence_penalty);
    put(&o, "{\n  \"do_sample\": %s,\n  \"temperature\": %s,\n  \"top_p\": %s,\n  \"top_k\": %d", g->do_sample ? "true" : "false", t, p,
        g->top_k);
    put(&o, ",\n  \"repetition_penalty\": %s,\n  \"frequency_penalty\": %s,\n  \"presence_penalty\": %s,\n  \"max_new_tokens\": %d", r, f,
        pr, g->max_new_tokens);
    put_id(&o, "bos_token_id", g->bos_token_id);
    put_id(&o, "pad_token_id", g->pad_token_id);
    if (g->n_eos > 0) put_ids(&o, "eos_token_id", g->eos_token_id, g->n_eos);
    return finish(&o);
}

char *cfg_read_file(const char *path, size_t max_bytes, size_t *len, int *errno_out, err_t *e) {
    if (errno_out) *errno_out = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno_out) *errno_out = errno;
        err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        err_set(e, ERR_IO, "%s: not a regular file", path);
        return NULL;
    }
    if ((uint64_t)sb.st_size > max_bytes) {
        fclose(f);
        err_set(e, ERR_FORMAT, "%s: %lld bytes is too large for this file (at most %zu)", path, (long long)sb.st_size, max_bytes);
        return NULL;
    }
    size_t n = (size_t)sb.st_size;
    char *b = malloc(n + 1);
    if (!b) {
        fclose(f);
        err_set(e, ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    size_t got = fread(b, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(b);
        err_set(e, ERR_IO, "%s: read error", path);
        return NULL;
    }
    b[n] = 0;
    if (len) *len = n;
    return b;
}
