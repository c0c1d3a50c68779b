/* tools/synth_checkpoint.c: writes a synthetic ERNIE-4.5-21B-A3B-PT checkpoint folder (random weights,
 * the real names, shapes, dtypes and folder layout) so that a full-size import can be measured without
 * downloading 44 GB of real weights. Built and run by tools/synth21b.sh; not part of bin/ernie.
 *
 *   synth_checkpoint OUT_DIR [--tokenizer DIR] [--seed N] [--layers N] [--experts N] [--shard-bytes N]
 *
 * What it writes (spec/ernie.md §1 and §3):
 *   config.json                the 21B-A3B config (vocab 103424, hidden 2560, 28 layers, layer 0 dense,
 *                              1..27 MoE with 64 experts of width 1536, 2 shared experts, k = 6, tied head)
 *   generation_config.json     bos/eos/pad and the released sampling defaults
 *   model-0000i-of-0000n.safetensors and model.safetensors.index.json
 *                              shards of at most --shard-bytes (default 5e9, Hugging Face's "5GB"), filled
 *                              in state-dict order the way save_pretrained does: a tensor that would push
 *                              the shard over the limit starts the next one; the index maps every tensor
 *                              to its shard and records total_size
 *   tokenizer.model + special_tokens_map.json, tokenizer_config.json, added_tokens.json
 *                              copied from --tokenizer (default tests/fixtures/tok, whose SentencePiece
 *                              model is small: the config's vocab_size stays 103424, as in the real one)
 * Weights are bf16 from N(0, 0.02), norms bf16 1 + N(0, 0.02), the router fp32 N(0, 0.02) and the
 * correction bias fp32 N(0, 0.01). The MTP weights of the release (model.mtp_*) are left out: the
 * importer skips them and the spec does not fix their shapes. --layers and --experts shrink the model
 * (same names, config adjusted) for a quick check of the tool itself.
 *
 * Values come from a table of 65536 normal quantiles indexed by 16 random bits (xoshiro256**, seeded
 * from the tensor name and --seed), so a tensor's contents do not depend on the order of writing and
 * 22 billion values take seconds, not the minutes Box-Muller would; the tails stop at 4.3 sigma, which
 * is plenty for timing an import. The shard files are standard safetensors: an 8-byte header length,
 * a JSON header padded with spaces to a multiple of 8, then the tensors back to back. Must never
 * depend on the rest of the project: it is a stand-in for a download. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { BF16, F32 };
enum { K_WEIGHT, K_NORM, K_ROUTER, K_BIAS };

typedef struct {
    char name[112];
    int dtype, kind, ndim;
    int64_t shape[2];
    int shard;
    uint64_t begin, end; /* offsets in the shard's data section */
} tensor;

typedef struct {
    tensor *v;
    int n, cap;
} tlist;

static void die(const char *fmt, const char *arg) {
    fprintf(stderr, "synth_checkpoint: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

static uint64_t nbytes(const tensor *t) {
    uint64_t n = (uint64_t)t->shape[0] * (uint64_t)(t->ndim == 2 ? t->shape[1] : 1);
    return n * (t->dtype == BF16 ? 2u : 4u);
}

static void add(tlist *l, int dtype, int kind, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void add(tlist *l, int dtype, int kind, int64_t d0, int64_t d1, const char *fmt, ...) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 4096;
        l->v = realloc(l->v, sizeof *l->v * (size_t)l->cap);
        if (!l->v) die("%s", "out of memory");
    }
    tensor *t = &l->v[l->n++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->dtype = dtype, t->kind = kind, t->ndim = d1 ? 2 : 1, t->shape[0] = d0, t->shape[1] = d1;
}

/* The 21B-A3B sizes (spec/ernie.md §1). */
typedef struct {
    int vocab, hidden, inter, moe_inter, layers, heads, kv_heads, head_dim, experts, shared, moe_k;
} cfg;

/* Hugging Face's state-dict order: embeddings, then per layer the attention, the MLP, the norms. */
static void tensors(const cfg *c, tlist *l) {
    int64_t H = c->hidden, q = (int64_t)c->heads * c->head_dim, kv = (int64_t)c->kv_heads * c->head_dim;
    add(l, BF16, K_WEIGHT, c->vocab, H, "model.embed_tokens.weight");
    for (int i = 0; i < c->layers; i++) {
        add(l, BF16, K_WEIGHT, q, H, "model.layers.%d.self_attn.q_proj.weight", i);
        add(l, BF16, K_WEIGHT, kv, H, "model.layers.%d.self_attn.k_proj.weight", i);
        add(l, BF16, K_WEIGHT, kv, H, "model.layers.%d.self_attn.v_proj.weight", i);
        add(l, BF16, K_WEIGHT, H, q, "model.layers.%d.self_attn.o_proj.weight", i);
        if (i == 0) { /* moe_layer_start_index = 1: layer 0 is dense */
            add(l, BF16, K_WEIGHT, c->inter, H, "model.layers.%d.mlp.gate_proj.weight", i);
            add(l, BF16, K_WEIGHT, c->inter, H, "model.layers.%d.mlp.up_proj.weight", i);
            add(l, BF16, K_WEIGHT, H, c->inter, "model.layers.%d.mlp.down_proj.weight", i);
        } else {
            add(l, F32, K_ROUTER, c->experts, H, "model.layers.%d.mlp.gate.weight", i);
            for (int e = 0; e < c->experts; e++) {
                add(l, BF16, K_WEIGHT, c->moe_inter, H, "model.layers.%d.mlp.experts.%d.gate_proj.weight", i, e);
                add(l, BF16, K_WEIGHT, c->moe_inter, H, "model.layers.%d.mlp.experts.%d.up_proj.weight", i, e);
                add(l, BF16, K_WEIGHT, H, c->moe_inter, "model.layers.%d.mlp.experts.%d.down_proj.weight", i, e);
            }
            int64_t S = (int64_t)c->shared * c->moe_inter;
            add(l, BF16, K_WEIGHT, S, H, "model.layers.%d.mlp.shared_experts.gate_proj.weight", i);
            add(l, BF16, K_WEIGHT, S, H, "model.layers.%d.mlp.shared_experts.up_proj.weight", i);
            add(l, BF16, K_WEIGHT, H, S, "model.layers.%d.mlp.shared_experts.down_proj.weight", i);
            add(l, F32, K_BIAS, 1, c->experts, "model.layers.%d.mlp.moe_statics.e_score_correction_bias", i);
        }
        add(l, BF16, K_NORM, H, 0, "model.layers.%d.input_layernorm.weight", i);
        add(l, BF16, K_NORM, H, 0, "model.layers.%d.post_attention_layernorm.weight", i);
    }
    add(l, BF16, K_NORM, H, 0, "model.norm.weight");
}

/* ---- values ---- */

typedef struct {
    uint64_t s[4];
} rng;
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t next(rng *r) { /* xoshiro256** */
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = rotl(s[3], 45);
    return res;
}
static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static void seed_for(rng *r, uint64_t seed, const char *name) {
    uint64_t h = 1469598103934665603ull ^ seed; /* FNV-1a of the name, mixed with the seed */
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix(&h);
}

static float quant[65536]; /* quant[i] = Phi^-1((i + 0.5) / 65536) */

static void quant_init(void) {
    for (int i = 0; i < 65536; i++) {
        double p = (i + 0.5) / 65536.0, x = 0;
        for (int it = 0; it < 60; it++) { /* Newton on Phi(x) = p; Phi is smooth and the start is close */
            double f = 0.5 * erfc(-x / sqrt(2.0)) - p, d = exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
            double step = f / d;
            if (step > 1) step = 1;
            if (step < -1) step = -1;
            x -= step;
            if (fabs(step) < 1e-13) break;
        }
        quant[i] = (float)x;
    }
}

static uint16_t to_bf16(float f) { /* round to nearest even; the values here are finite */
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFF + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* Fills n values of tensor t into buf (bf16 or f32), continuing r's stream. */
static void fill(const tensor *t, rng *r, void *buf, size_t n) {
    float mean = t->kind == K_NORM ? 1.0f : 0.0f, sd = t->kind == K_BIAS ? 0.01f : 0.02f;
    uint16_t *b = buf;
    float *f = buf;
    for (size_t i = 0; i < n; i += 4) {
        uint64_t x = next(r);
        for (size_t j = 0; j < 4 && i + j < n; j++, x >>= 16) {
            float v = mean + sd * quant[x & 0xFFFF];
            if (t->dtype == BF16) b[i + j] = to_bf16(v);
            else f[i + j] = v;
        }
    }
}

/* ---- files ---- */

static char *path_join(const char *dir, const char *name) {
    char *p;
    if (asprintf(&p, "%s/%s", dir, name) < 0) die("%s", "out of memory");
    return p;
}

static void copy_file(const char *from_dir, const char *from, const char *to_dir, const char *to) {
    char *a = path_join(from_dir, from), *b = path_join(to_dir, to);
    FILE *in = fopen(a, "rb"), *out = in ? fopen(b, "wb") : NULL;
    if (!in || !out) die("cannot copy %s", a);
    char buf[1 << 16];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, k, out) != k) die("write error on %s", b);
    if (fclose(out)) die("write error on %s", b);
    fclose(in);
    free(a), free(b);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char *p = path_join(dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f)) die("cannot write %s", p);
    free(p);
}

static const char *dtype_name(int d) { return d == BF16 ? "BF16" : "F32"; }

/* One shard: header, then every tensor assigned to it, generated in chunks. */
static void write_shard(const char *dir, const char *fname, tlist *l, int shard, uint64_t seed) {
    size_t cap = 1 << 20, len = 0;
    char *h = malloc(cap);
    if (!h) die("%s", "out of memory");
#define PUT(...)                                                                                                     \
    do {                                                                                                             \
        int k_;                                                                                                      \
        while ((k_ = snprintf(h + len, cap - len, __VA_ARGS__)) >= (int)(cap - len) && (h = realloc(h, cap *= 2))) \
            ;                                                                                                        \
        if (!h) die("%s", "out of memory");                                                                          \
        len += (size_t)k_;                                                                                           \
    } while (0)
    PUT("{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (int i = 0; i < l->n; i++) {
        tensor *t = &l->v[i];
        if (t->shard != shard) continue;
        t->begin = off, t->end = off + nbytes(t), off = t->end;
        PUT(",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld", t->name, dtype_name(t->dtype), (long long)t->shape[0]);
        if (t->ndim == 2) PUT(",%lld", (long long)t->shape[1]);
        PUT("],\"data_offsets\":[%llu,%llu]}", (unsigned long long)t->begin, (unsigned long long)t->end);
    }
    PUT("}");
    while (len % 8) PUT(" "); /* as the Rust writer does: data starts 8-aligned */
#undef PUT
    char *p = path_join(dir, fname);
    FILE *f = fopen(p, "wb");
    if (!f) die("cannot create %s", p);
    uint64_t hl = len;
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(hl >> (8 * i));
    if (fwrite(le, 1, 8, f) != 8 || fwrite(h, 1, len, f) != len) die("write error on %s", p);
    free(h);
    const size_t chunk = (size_t)4 << 20; /* values per write */
    void *buf = malloc(chunk * 4);
    if (!buf) die("%s", "out of memory");
    for (int i = 0; i < l->n; i++) {
        tensor *t = &l->v[i];
        if (t->shard != shard) continue;
        rng r;
        seed_for(&r, seed, t->name);
        size_t esz = t->dtype == BF16 ? 2 : 4, n = (size_t)(nbytes(t) / esz);
        for (size_t done = 0; done < n;) {
            size_t k = n - done < chunk ? n - done : chunk;
            fill(t, &r, buf, k);
            if (fwrite(buf, esz, k, f) != k) die("write error on %s (disk full?)", p);
            done += k;
        }
    }
    free(buf);
    if (fclose(f)) die("write error on %s", p);
    free(p);
}

static const char *CONFIG_FMT =
    "{\n"
    "  \"architectures\": [\"Ernie4_5_MoeForCausalLM\"],\n"
    "  \"model_type\": \"ernie4_5_moe\",\n"
    "  \"bos_token_id\": 1,\n"
    "  \"eos_token_id\": 2,\n"
    "  \"pad_token_id\": 0,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": %d,\n"
    "  \"intermediate_size\": %d,\n"
    "  \"max_position_embeddings\": 131072,\n"
    "  \"num_attention_heads\": %d,\n"
    "  \"num_key_value_heads\": %d,\n"
    "  \"head_dim\": %d,\n"
    "  \"num_hidden_layers\": %d,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_theta\": 500000.0,\n"
    "  \"tie_word_embeddings\": true,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"use_bias\": false,\n"
    "  \"use_cache\": false,\n"
    "  \"vocab_size\": %d,\n"
    "  \"moe_num_experts\": %d,\n"
    "  \"moe_num_shared_experts\": %d,\n"
    "  \"moe_k\": %d,\n"
    "  \"moe_intermediate_size\": %d,\n"
    "  \"moe_layer_start_index\": 1,\n"
    "  \"moe_layer_end_index\": %d,\n"
    "  \"moe_layer_interval\": 1,\n"
    "  \"moe_capacity\": [64, 64, 64],\n"
    "  \"moe_gate\": \"topk\",\n"
    "  \"moe_use_aux_free\": true\n"
    "}\n";

static const char *GENERATION =
    "{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n  \"pad_token_id\": 0,\n  \"do_sample\": true,\n"
    "  \"top_p\": 0.8,\n  \"temperature\": 0.8,\n  \"repetition_penalty\": 1.0,\n  \"frequency_penalty\": 0.0,\n"
    "  \"presence_penalty\": 0.0\n}\n";

static long long num(const char *opt, const char *v, long long lo, long long hi) {
    char *end;
    errno = 0;
    double d = strtod(v ? v : "", &end); /* accepts 5e9 as well as 5000000000 */
    if (!v || *end || errno || d < (double)lo || d > (double)hi || d != floor(d)) die("bad value for %s", opt);
    return (long long)d;
}

static const char *USAGE =
    "usage: synth_checkpoint OUT_DIR [--tokenizer DIR] [--seed N] [--layers N] [--experts N] [--shard-bytes N]";

int main(int argc, char **argv) {
    const char *out = NULL, *tokdir = "tests/fixtures/tok";
    uint64_t seed = 1, shard_bytes = 5000000000ull;
    cfg c = {.vocab = 103424, .hidden = 2560, .inter = 12288, .moe_inter = 1536, .layers = 28, .heads = 20,
             .kv_heads = 4, .head_dim = 128, .experts = 64, .shared = 2, .moe_k = 6};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--tokenizer") && v) tokdir = v, i++;
        else if (!strcmp(a, "--seed")) seed = (uint64_t)num(a, v, 0, 1LL << 62), i++;
        else if (!strcmp(a, "--layers")) c.layers = (int)num(a, v, 2, 28), i++;
        else if (!strcmp(a, "--experts")) c.experts = (int)num(a, v, 6, 64), i++;
        else if (!strcmp(a, "--shard-bytes")) shard_bytes = (uint64_t)num(a, v, 1, 1LL << 50), i++;
        else if (a[0] == '-' || out) fprintf(stderr, "%s\n", USAGE), exit(2);
        else out = a;
    }
    if (!out) fprintf(stderr, "%s\n", USAGE), exit(2);
    if (mkdir(out, 0755) && errno != EEXIST) die("cannot create %s", out);
    quant_init();

    tlist l = {0};
    tensors(&c, &l);
    /* Shards as save_pretrained fills them: in order, a new shard when the next tensor would not fit. */
    int ns = 0;
    uint64_t cur = 0, total = 0;
    for (int i = 0; i < l.n; i++) {
        uint64_t b = nbytes(&l.v[i]);
        if (i == 0 || (cur > 0 && cur + b > shard_bytes)) ns++, cur = 0;
        l.v[i].shard = ns - 1, cur += b, total += b;
    }
    char (*fnames)[64] = calloc((size_t)ns, sizeof *fnames);
    if (!fnames) die("%s", "out of memory");
    for (int s = 0; s < ns; s++) {
        snprintf(fnames[s], sizeof fnames[s], "model-%05d-of-%05d.safetensors", s + 1, ns);
        fprintf(stderr, "synth_checkpoint: writing %s/%s\n", out, fnames[s]);
        write_shard(out, fnames[s], &l, s, seed);
    }
    /* The index, keys sorted as json.dumps(sort_keys=True) writes them. */
    char *idx = path_join(out, "model.safetensors.index.json");
    FILE *f = fopen(idx, "wb");
    if (!f) die("cannot write %s", idx);
    fprintf(f, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {\n",
            (unsigned long long)total);
    int *order = malloc(sizeof *order * (size_t)l.n);
    if (!order) die("%s", "out of memory");
    for (int i = 0; i < l.n; i++) order[i] = i;
    for (int i = 1; i < l.n; i++) /* insertion sort by name: a few thousand names */
        for (int j = i; j > 0 && strcmp(l.v[order[j - 1]].name, l.v[order[j]].name) > 0; j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    for (int i = 0; i < l.n; i++)
        fprintf(f, "    \"%s\": \"%s\"%s\n", l.v[order[i]].name, fnames[l.v[order[i]].shard], i + 1 < l.n ? "," : "");
    fprintf(f, "  }\n}\n");
    if (fclose(f)) die("write error on %s", idx);
    free(idx);

    char cfgtext[4096];
    snprintf(cfgtext, sizeof cfgtext, CONFIG_FMT, c.hidden, c.inter, c.heads, c.kv_heads, c.head_dim, c.layers, c.vocab,
             c.experts, c.shared, c.moe_k, c.moe_inter, c.layers - 1);
    write_text(out, "config.json", cfgtext);
    write_text(out, "generation_config.json", GENERATION);
    /* a Hugging Face folder has tokenizer.model; the test fixture calls it test.model */
    char *tm = path_join(tokdir, "tokenizer.model");
    struct stat st;
    copy_file(tokdir, stat(tm, &st) == 0 ? "tokenizer.model" : "test.model", out, "tokenizer.model");
    free(tm);
    copy_file(tokdir, "special_tokens_map.json", out, "special_tokens_map.json");
    copy_file(tokdir, "tokenizer_config.json", out, "tokenizer_config.json");
    copy_file(tokdir, "added_tokens.json", out, "added_tokens.json");
    fprintf(stderr, "synth_checkpoint: %d tensors, %llu bytes in %d shards\n", l.n, (unsigned long long)total, ns);
    free(order), free(fnames), free(l.v);
    return 0;
}
