/* tests/test_modelfile.c: our model file: written by mf_writer (bf16 and every codec format), opened,
 * verified; then each kind of damage (flipped data bytes, an edited header, stored parameters that
 * decode to infinity) and each structural fault (files rewritten with a tensor dropped, renamed,
 * reshaped, or the metadata changed) gives one clear error naming the file and the weight/tensor. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/pool.h"
#include "harness.h"
#include "mf_fixture.h"
#include "model/modelfile.h"

static mf_file *open_ok(const char *p) {
    err_t e = {0};
    mf_file *f = NULL;
    if (mf_open(&f, p, &e)) FAIL("mf_open: %s", e.msg);
    return f;
}

TEST(mf_bf16_round_trip) {
    cfg_model c;
    mfx_config(&c, 1);
    const char *p = th_tmp("m.ernie");
    if (!CHECK(mfx_write_model(p, &c, NULL) == 0)) return;
    mf_file *f = open_ok(p);
    if (!f) return;
    CHECK_INT(mf_version(f), 1);
    CHECK(memcmp(mf_config(f), &c, sizeof c) == 0);
    CHECK_INT(mf_generation(f)->top_k, 40);
    CHECK_STR(mf_meta(f, "recipe"), "bf16");
    CHECK_STR(mf_meta(f, "chat_template"), "ernie-4.5");
    CHECK_STR(mf_meta(f, "source"), "mf_fixture");
    mf_expect *ex;
    int n = mf_expected(&c, &ex);
    CHECK_INT(mf_nweights(f), n);
    /* File order is model order (the writer's declaration order). */
    for (int i = 0; i < n && i < mf_nweights(f); i++) CHECK_STR(mf_weight_at(f, i)->name, ex[i].name);
    free(ex);
    const mf_weight *w = mf_find_weight(f, "model.layers.1.mlp.experts.down_proj");
    if (CHECK(w != NULL)) {
        CHECK_STR(w->format, "bf16");
        CHECK_INT(w->ndim, 3);
        CHECK_INT(w->rows, 4 * 64);
        CHECK_INT(w->cols, 64);
        const mf_part *pt = mf_weight_part(w, "weight");
        CHECK(pt && pt->t->dtype == ST_BF16 && pt->t->shape[0] == 256 && pt->t->shape[1] == 64);
        CHECK_STR(pt->t->name, "model.layers.1.mlp.experts.down_proj.weight");
        CHECK_INT(pt->t->file_offset % 64, 0);
        CHECK(mf_weight_part(w, "qweight") == NULL);
    }
    w = mf_find_weight(f, "model.layers.2.mlp.moe_statics.e_score_correction_bias");
    CHECK(w && !strcmp(w->format, "f32") && w->ndim == 1 && w->rows == 1 && w->cols == 4);
    w = mf_find_weight(f, "model.norm");
    CHECK(w && w->part[0].t && !strcmp(w->part[0].t->name, "model.norm.weight"));
    CHECK(mf_find_weight(f, "model.layers.0.mlp.gate") == NULL);
    const st_tensor *tm = mf_tokenizer_model(f), *ts = mf_special_tokens(f);
    CHECK(tm && tm->nbytes == 20 && !memcmp(tm->data, "fake spm model bytes", 20));
    CHECK(ts && ts->nbytes == strlen(MFX_SPECIAL_JSON));
    err_t e = {0};
    if (!CHECK(mf_verify(f, NULL, NULL, NULL, &e) == 0)) FAIL("%s", e.msg);
    mf_close(f);
}

TEST(mf_every_codec_format) {
    cfg_model c;
    mfx_config(&c, 1);
    const char *p = th_tmp("q.ernie");
    mfx_model_opts o = {.mixed = 1};
    if (!CHECK(mfx_write_model(p, &c, &o) == 0)) return;
    mf_file *f = open_ok(p);
    if (!f) return;
    const mf_weight *w = mf_find_weight(f, "model.layers.1.mlp.experts.down_proj");
    if (CHECK(w && !strcmp(w->format, "ccq2.06"))) {
        const char *parts[] = {"qweight", "local_scale", "code_scale", "code_zp", "super_scale"};
        for (int i = 0; i < 5; i++) CHECK(mf_weight_part(w, parts[i]) != NULL);
        const mf_part *q = mf_weight_part(w, "qweight");
        CHECK(q && q->t->dtype == ST_U8 && q->t->shape[0] == 256 && q->t->shape[1] == 16);
        const mf_part *ls = mf_weight_part(w, "local_scale");
        CHECK(ls && ls->t->shape[1] == 1); /* ceil(64 / 128) */
    }
    w = mf_find_weight(f, "model.layers.0.self_attn.q_proj");
    CHECK(w && !strcmp(w->format, "wint8") && mf_weight_part(w, "scale") && mf_weight_part(w, "qweight")->t->dtype == ST_I8);
    w = mf_find_weight(f, "model.layers.0.mlp.up_proj");
    CHECK(w && !strcmp(w->format, "wint4") && mf_weight_part(w, "qweight")->t->shape[1] == 32);
    w = mf_find_weight(f, "model.layers.1.mlp.experts.up_proj");
    CHECK(w && !strcmp(w->format, "ccq2.5+icq") && w->nparts > 2 && mf_weight_part(w, "qweight")->t->dtype == ST_U16);
    CHECK(mf_find_weight(f, "lm_head") && !strcmp(mf_find_weight(f, "lm_head")->format, "ccq2.75"));
    err_t e = {0};
    if (!CHECK(mf_verify(f, NULL, NULL, NULL, &e) == 0)) FAIL("%s", e.msg);
    /* In memory too. */
    size_t len;
    char *buf = th_read_file(p, &len);
    mf_file *g = NULL;
    CHECK(mf_open_memory(&g, buf, len, "embedded", &e) == 0);
    CHECK(g && mf_nweights(g) == mf_nweights(f));
    CHECK(g && mf_verify(g, NULL, NULL, NULL, &e) == 0);
    mf_close(g);
    free(buf);
    mf_close(f);
}

typedef struct {
    double last, total;
    int calls, backwards;
    pthread_mutex_t mu; /* the workers report concurrently */
} prog;
static void on_progress(void *ctx, double done, double total) {
    prog *p = ctx;
    pthread_mutex_lock(&p->mu);
    p->calls++;
    p->total = total;
    p->last = done; /* the last call must be the whole count (threads may report out of order before it) */
    pthread_mutex_unlock(&p->mu);
}

TEST(mf_verify_threads_and_progress) {
    alarm(60); /* a pool that hangs fails the test instead of the run */
    cfg_model c;
    mfx_config(&c, 1);
    const char *p = th_tmp("m.ernie");
    mfx_model_opts o = {.mixed = 1};
    if (!CHECK(mfx_write_model(p, &c, &o) == 0)) return;
    mf_file *f = open_ok(p);
    if (!f) return;
    pool *pl = pool_create(3);
    /* Workers report out of order now and then: without mf_verify's final call, 200 runs ended short of
     * the total in 3 of 4 tries here (40 runs: 3 of 6) */
    for (int rep = 0; rep < 200; rep++) {
        prog pr = {.mu = PTHREAD_MUTEX_INITIALIZER};
        err_t e = {0};
        if (!CHECK(mf_verify(f, pl, on_progress, &pr, &e) == 0)) break;
        if (!CHECK(pr.calls > mf_nweights(f))) break;
        if (!CHECK(pr.total > 0 && pr.last == pr.total)) break;
    }
    pool_destroy(pl);
    mf_close(f);
}

/* Flips one byte at a file offset. */
static void flip(const char *p, uint64_t off) {
    FILE *f = fopen(p, "r+b");
    fseek(f, (long)off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, (long)off, SEEK_SET);
    fputc(c ^ 0x20, f);
    fclose(f);
}

static uint64_t tensor_offset(const char *p, const char *name) {
    err_t e = {0};
    st_file *s;
    if (st_open(&s, p, &e)) return 0;
    const st_tensor *t = st_find(s, name);
    uint64_t o = t ? t->file_offset : 0;
    st_close(s);
    return o;
}

static const char *verify_msg(const char *p, int *code) {
    static err_t e;
    err_clear(&e);
    mf_file *f;
    if (mf_open(&f, p, &e)) {
        *code = -1;
        return e.msg;
    }
    *code = mf_verify(f, NULL, NULL, NULL, &e) ? (int)e.code : 0;
    mf_close(f);
    return e.msg;
}

TEST(mf_verify_finds_damage) {
    cfg_model c;
    mfx_config(&c, 1);
    const char *p = th_tmp("m.ernie");
    mfx_model_opts o = {.mixed = 1};
    if (!CHECK(mfx_write_model(p, &c, &o) == 0)) return;
    int code;
    /* One byte of one expert stack. */
    uint64_t a = tensor_offset(p, "model.layers.2.mlp.experts.down_proj.qweight");
    flip(p, a + 100);
    const char *m = verify_msg(p, &code);
    CHECK_INT(code, ERR_CORRUPT);
    CHECK_CONTAINS(m, "m.ernie: tensor 'model.layers.2.mlp.experts.down_proj.qweight' is corrupt");
    /* A second, earlier one: reported first, with the count. */
    uint64_t b = tensor_offset(p, "model.layers.0.self_attn.k_proj.qweight");
    flip(p, b + 3);
    m = verify_msg(p, &code);
    CHECK_CONTAINS(m, "2 weights or tensors are bad; the first: ");
    CHECK_CONTAINS(m, "'model.layers.0.self_attn.k_proj.qweight' is corrupt");
    flip(p, a + 100);
    flip(p, b + 3);
    m = verify_msg(p, &code);
    CHECK_INT(code, 0);
    /* The tokenizer is covered too. */
    uint64_t t = tensor_offset(p, "tokenizer.model");
    flip(p, t);
    m = verify_msg(p, &code);
    CHECK_CONTAINS(m, "tensor 'tokenizer.model' is corrupt");
    flip(p, t);
    /* An edit of the header that keeps it valid JSON: the recipe's name. */
    size_t len;
    char *buf = th_read_file(p, &len);
    const char *rk = "\"recipe\":\"mixed\"";
    char *r = memmem(buf, len, rk, strlen(rk));
    if (CHECK(r != NULL)) {
        flip(p, (uint64_t)(r - buf) + 11);
        m = verify_msg(p, &code);
        CHECK_INT(code, ERR_CORRUPT);
        CHECK_CONTAINS(m, "the header checksum is");
        flip(p, (uint64_t)(r - buf) + 11);
    }
    /* A checksum digit edited: the header checksum catches it before the tensor is even read. */
    const char *sk = "\"model.norm.weight\\\":\\\"";
    char *s = memmem(buf, len, sk, strlen(sk));
    if (CHECK(s != NULL)) {
        uint64_t at = (uint64_t)(s - buf) + strlen("\"model.norm.weight\\\":\\\"");
        FILE *fp = fopen(p, "r+b");
        fseek(fp, (long)at, SEEK_SET);
        fputc(buf[at] == '0' ? '1' : '0', fp);
        fclose(fp);
        m = verify_msg(p, &code);
        CHECK_CONTAINS(m, "the header checksum is");
    }
    free(buf);
}

/* Copies src to dst through the safetensors writer (fresh checksums), with one change. */
typedef struct {
    const char *drop;       /* tensor to leave out */
    const char *rename_from, *rename_to;
    const char *reshape;    /* tensor whose first dimension grows by one (data padded with zeros) */
    const char *meta_key;   /* metadata to replace (or add; NULL value removes) */
    const char *meta_value;
    const char *meta2_key, *meta2_value; /* a second one to add */
    const char *add;        /* an extra U8 [4] tensor */
    const char *patch;      /* tensor whose first 4 bytes become patch_bytes */
    const char *patch_bytes;
    int no_checksums;
} change;

static int rewrite(const char *src, const char *dst, const change *ch) {
    err_t e = {0};
    st_file *s;
    if (st_open(&s, src, &e)) return -1;
    st_writer *w;
    if (st_writer_new(&w, dst, ST_W_OVERWRITE | (ch->no_checksums ? 0 : ST_W_CHECKSUMS), &e)) return st_close(s), -1;
    int rc = 0, replaced = 0;
    for (int i = 0; i < st_meta_count(s) && !rc; i++) {
        const char *k, *v;
        st_meta_at(s, i, &k, &v);
        if (!strcmp(k, "checksums") || !strcmp(k, "header_checksum")) continue;
        if (ch->meta_key && !strcmp(k, ch->meta_key)) {
            replaced = 1;
            if (!ch->meta_value) continue;
            v = ch->meta_value;
        }
        rc = st_writer_meta(w, k, v, &e);
    }
    if (!rc && ch->meta_key && ch->meta_value && !replaced) rc = st_writer_meta(w, ch->meta_key, ch->meta_value, &e);
    if (!rc && ch->meta2_key) rc = st_writer_meta(w, ch->meta2_key, ch->meta2_value, &e);
    int *idx = calloc((size_t)st_count(s) + 1, sizeof *idx);
    for (int i = 0; i < st_count(s) && !rc; i++) {
        const st_tensor *t = st_at(s, i);
        idx[i] = -1;
        if (st_is_padding(t->name) || (ch->drop && !strcmp(t->name, ch->drop))) continue;
        const char *nm = ch->rename_from && !strcmp(t->name, ch->rename_from) ? ch->rename_to : t->name;
        int64_t sh[ST_MAX_DIMS];
        memcpy(sh, t->shape, sizeof sh);
        if (ch->reshape && !strcmp(t->name, ch->reshape)) sh[0]++;
        idx[i] = st_writer_add(w, nm, t->dtype, t->ndim, sh, &e);
        if (idx[i] < 0) rc = -1;
    }
    int extra = -1;
    int64_t four[1] = {4};
    if (!rc && ch->add) rc = (extra = st_writer_add(w, ch->add, ST_U8, 1, four, &e)) < 0;
    if (!rc) rc = st_writer_begin(w, &e);
    for (int i = 0; i < st_count(s) && !rc; i++) {
        if (idx[i] < 0) continue;
        const st_tensor *t = st_at(s, i);
        uint64_t need = st_writer_nbytes(w, idx[i]);
        uint8_t *buf = calloc(1, need + 1);
        memcpy(buf, t->data, t->nbytes < need ? t->nbytes : need);
        if (ch->patch && !strcmp(t->name, ch->patch)) memcpy(buf, ch->patch_bytes, 4);
        rc = st_writer_write(w, idx[i], buf, need, &e);
        free(buf);
    }
    if (!rc && extra >= 0) rc = st_writer_write(w, extra, "abcd", 4, &e);
    free(idx);
    st_close(s);
    if (rc) {
        fprintf(stderr, "rewrite: %s\n", e.msg);
        st_writer_abort(w);
        return -1;
    }
    return st_writer_commit(w, &e);
}

static const char *open_msg(const char *p, int *code) {
    static err_t e;
    err_clear(&e);
    mf_file *f;
    int rc = mf_open(&f, p, &e);
    if (!rc) mf_close(f);
    *code = rc ? (int)e.code : 0;
    return e.msg;
}

TEST(mf_open_rejects_structural_faults) {
    cfg_model c;
    mfx_config(&c, 1);
    const char *good = th_tmp("good.ernie");
    mfx_model_opts o = {.mixed = 1};
    if (!CHECK(mfx_write_model(good, &c, &o) == 0)) return;
    cfg_model dense;
    mfx_config(&dense, 0);
    char *dense_json = cfg_to_json(&dense);
    struct {
        change ch;
        int code;
        const char *needle;
    } cases[] = {
        {{.drop = "model.layers.1.mlp.experts.down_proj.code_zp"}, ERR_FORMAT,
         "weight 'model.layers.1.mlp.experts.down_proj' (ccq2.06) has no part 'code_zp' (tensor 'model.layers.1.mlp.experts.down_proj.code_zp' is missing)"},
        {{.rename_from = "model.norm.weight", .rename_to = "model.norm2.weight"}, ERR_FORMAT,
         "tensor 'model.norm2.weight' belongs to no weight of the metadata's weight table"},
        {{.rename_from = "model.norm.weight", .rename_to = "model.norm.qweight"}, ERR_FORMAT,
         "tensor 'model.norm.qweight': format bf16 has no part 'qweight'"},
        {{.reshape = "model.layers.0.self_attn.q_proj.scale"}, ERR_FORMAT,
         "tensor 'model.layers.0.self_attn.q_proj.scale' is F32 [129]; format wint8 of shape [128, 64] needs F32 [128]"},
        {{.add = "tokenizer.vocab"}, ERR_FORMAT, "tensor 'tokenizer.vocab' is not a known tokenizer tensor"},
        {{.add = "stray"}, ERR_FORMAT, "tensor 'stray' belongs to no weight"},
        {{.meta_key = "format", .meta_value = "gguf"}, ERR_FORMAT, "not an ernie model file"},
        {{.meta_key = "format", .meta_value = NULL}, ERR_FORMAT, "not an ernie model file"},
        {{.meta_key = "format_version", .meta_value = "2"}, ERR_UNSUPPORTED, "format version 2; this ernie reads version 1"},
        {{.meta_key = "format_version", .meta_value = "1x"}, ERR_FORMAT, "'format_version' is missing or not a number"},
        {{.meta_key = "config", .meta_value = "{\"architectures\": [\"Llama\"]}"}, ERR_UNSUPPORTED,
         "good2.ernie: metadata 'config': architecture 'Llama'"},
        {{.meta_key = "config", .meta_value = dense_json}, ERR_FORMAT, "weight 'model.layers.1.mlp.gate_proj' is missing (the config needs it)"},
        {{.meta_key = "config", .meta_value = NULL}, ERR_FORMAT, "no model config in the metadata"},
        {{.meta_key = "generation", .meta_value = "{\"top_p\": 2}"}, ERR_FORMAT, "metadata 'generation': \"top_p\""},
        {{.meta_key = "weights", .meta_value = "[]"}, ERR_FORMAT, "metadata 'weights' is not a JSON object"},
        {{.meta_key = "weights", .meta_value = "{\"model.norm\": {\"format\": \"bf16\", \"shape\": [0]}}"}, ERR_FORMAT,
         "shape[0] is not a positive integer"},
        {{.meta_key = "weights", .meta_value = "{\"model.norm\": {\"format\": \"ccq9\", \"shape\": [64, 64]}}"}, ERR_ARG,
         "weight 'model.norm': "},
        {{.meta_key = "weights", .meta_value = NULL}, ERR_FORMAT, "no weight table"},
        {{.no_checksums = 1}, ERR_FORMAT, "no checksums in the metadata"},
    };
    const char *bad = th_tmp("good2.ernie");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!CHECK(rewrite(good, bad, &cases[i].ch) == 0)) continue;
        int code;
        const char *m = open_msg(bad, &code);
        if (code != cases[i].code) FAIL("case %zu: code %d, wanted %d (%s)", i, code, cases[i].code, m);
        CHECK_CONTAINS(m, cases[i].needle);
        CHECK_CONTAINS(m, "good2.ernie");
    }
    free(dense_json);
    /* A weight missing from the table and its tensors: the config still needs it. */
    mf_expect *ex;
    int n = mf_expected(&c, &ex);
    (void)n;
    free(ex);
    /* A Hugging Face shard is recognised. */
    const char *d = th_tmp("hf");
    mkdir(d, 0755);
    CHECK(mfx_write_hf(d, &c, NULL) == 0);
    char hp[1024];
    snprintf(hp, sizeof hp, "%s/model.safetensors", d);
    int code;
    CHECK_CONTAINS(open_msg(hp, &code), "a Hugging Face checkpoint file: import the checkpoint first");
}

TEST(mf_checksum_table_faults) {
    cfg_model c;
    mfx_config(&c, 0);
    const char *good = th_tmp("good.ernie"), *bad = th_tmp("bad.ernie");
    if (!CHECK(mfx_write_model(good, &c, NULL) == 0)) return;
    /* Forged tables, written without the writer's own checksums. */
    struct {
        const char *sums, *hsum, *needle;
    } cases[] = {
        {"{\"nope\": \"0000000000000000\"}", "0000000000000000", "metadata 'checksums' lists 'nope', which is not a tensor of the file"},
        {"{}", "0000000000000000", "has no checksum"},
        {"{\"model.norm.weight\": \"12\"}", "0000000000000000", "the checksum of 'model.norm.weight' is not 16 hex digits"},
        {"[]", "0000000000000000", "metadata 'checksums' is not a JSON object"},
        {"{}", "xyz", "'header_checksum' is not 16 hex digits"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        change ch = {.no_checksums = 1, .meta_key = "checksums", .meta_value = cases[i].sums, .meta2_key = "header_checksum",
                     .meta2_value = cases[i].hsum};
        if (!CHECK(rewrite(good, bad, &ch) == 0)) continue;
        int code;
        const char *m = open_msg(bad, &code);
        CHECK_INT(code, ERR_FORMAT);
        CHECK_CONTAINS(m, cases[i].needle);
    }
}

TEST(mf_writer_refuses_bad_models) {
    cfg_model c;
    mfx_config(&c, 1);
    const char *p = th_tmp("w.ernie");
    mfx_model_opts o = {.omit = "model.layers.2.mlp.shared_experts.up_proj"};
    CHECK(mfx_write_model(p, &c, &o) == -1);
    CHECK_INT(access(p, F_OK), -1);
    err_t e = {0};
    mf_writer *w;
    CHECK(mf_writer_new(&w, p, 0, &c, NULL, NULL, &e) == 0);
    int64_t sh[2] = {128, 64}, v[1] = {64}, odd[2] = {128, 32};
    CHECK(mf_writer_weight(w, "model.layers.0.self_attn.q_proj", "ccq9", 2, sh, &e) == -1);
    CHECK_CONTAINS(e.msg, "weight 'model.layers.0.self_attn.q_proj': ");
    CHECK(mf_writer_weight(w, "model.layers.0.self_attn.q_proj", "ccq2.06", 2, odd, &e) == -1);
    CHECK_CONTAINS(e.msg, "not a multiple of 64");
    CHECK(mf_writer_weight(w, "model.norm", "wint8", 1, v, &e) == -1);
    CHECK_CONTAINS(e.msg, "a vector is stored as bf16 or f32");
    CHECK(mf_writer_meta(w, "config", "{}", &e) == -1);
    CHECK_CONTAINS(e.msg, "written by the model file writer itself");
    int id = mf_writer_weight(w, "model.layers.0.self_attn.q_proj", "wint8", 2, sh, &e);
    CHECK(id >= 0);
    CHECK_INT(mf_writer_part_bytes(w, id, "qweight"), 128 * 64);
    CHECK_INT(mf_writer_part_bytes(w, id, "scale"), 128 * 4);
    CHECK_INT(mf_writer_part_bytes(w, id, "nope"), 0);
    CHECK(mf_writer_begin(w, &e) == -1); /* nearly every weight is missing */
    CHECK_CONTAINS(e.msg, "weight 'model.embed_tokens' is missing (the config needs it)");
    mf_writer_abort(w);
    /* A norm quantized or a router in bf16: refused at begin, by name. */
    mf_expect *ex;
    int n = mf_expected(&c, &ex);
    for (int pass = 0; pass < 2; pass++) {
        CHECK(mf_writer_new(&w, p, 0, &c, NULL, NULL, &e) == 0);
        for (int i = 0; i < n; i++) {
            const char *f = ex[i].rule == MF_ONLY_F32 ? "f32" : "bf16";
            if (pass == 0 && !strcmp(ex[i].name, "model.layers.1.mlp.gate")) f = "bf16";
            if (pass == 1 && !strcmp(ex[i].name, "model.layers.2.input_layernorm")) f = "f32";
            CHECK(mf_writer_weight(w, ex[i].name, f, ex[i].ndim, ex[i].shape, &e) >= 0);
        }
        CHECK(mf_writer_begin(w, &e) == -1);
        CHECK_CONTAINS(e.msg, pass == 0 ? "weight 'model.layers.1.mlp.gate' is stored as bf16; the router and its correction bias must be f32"
                                        : "weight 'model.layers.2.input_layernorm' is stored as f32; norms must be bf16");
        mf_writer_abort(w);
    }
    free(ex);
    CHECK_INT(access(p, F_OK), -1);
    /* Writing a part that does not exist, or too much of one. */
    CHECK(mfx_write_model(p, &c, NULL) == 0);
    CHECK(mf_writer_new(&w, p, 0, &c, NULL, NULL, &e) == -1); /* exists */
    CHECK_CONTAINS(e.msg, "file exists");
}

/* Stored parameters that hash correctly but cannot have been written by us: the codec's validation
 * (and the plain-vector check) names the weight. */
TEST(mf_verify_validates_parameters) {
    cfg_model c;
    mfx_config(&c, 1);
    const char *good = th_tmp("good.ernie"), *bad = th_tmp("bad.ernie");
    mfx_model_opts o = {.mixed = 1};
    if (!CHECK(mfx_write_model(good, &c, &o) == 0)) return;
    struct {
        const char *tensor, *bytes, *needle;
    } cases[] = {
        {"model.layers.1.mlp.gate.weight", "\x00\x00\xc0\x7f", "weight 'model.layers.1.mlp.gate' holds a non-finite value at element 0"},
        {"model.norm.weight", "\x80\x7f\x00\x00", "weight 'model.norm' holds a non-finite value at element 0"},
        {"model.layers.2.mlp.experts.down_proj.super_scale", "\x80\x7f\x80\x7f", "weight 'model.layers.2.mlp.experts.down_proj': "},
        {"model.layers.0.self_attn.q_proj.scale", "\x00\x00\xc0\x7f", "weight 'model.layers.0.self_attn.q_proj': "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        change ch = {.patch = cases[i].tensor, .patch_bytes = cases[i].bytes};
        if (!CHECK(rewrite(good, bad, &ch) == 0)) continue;
        int code;
        const char *m = verify_msg(bad, &code);
        if (code != ERR_CORRUPT) FAIL("case %zu: code %d: %s", i, code, m);
        CHECK_CONTAINS(m, cases[i].needle);
    }
}
