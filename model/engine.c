/* model/engine.c: the forward pass, read top to bottom as the math does (spec/ernie.md §2).
 * Where the time goes: the weight products (matmul, moe_experts) stream every weight byte once per
 * chunk of tokens; everything else is O(tokens * hidden). Never touches the hardware directly. */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"

typedef struct {
    float *attn_norm, *ffn_norm;          /* (hidden) backend memory */
    be_weight *wq, *wk, *wv, *wo;         /* (nq*hd, H) (nkv*hd, H) (nkv*hd, H) (H, nq*hd) */
    be_weight *w_gate, *w_up, *w_down;    /* dense: (I, H) (I, H) (H, I) */
    be_weight *router;                    /* moe: f32 (E, H) */
    float *bias;                          /* moe: (E) backend memory, or NULL */
    be_weight *e_gate, *e_up, *e_down;    /* moe: (E*Im, H) (E*Im, H) (E*H, Im) */
    be_weight *s_gate, *s_up, *s_down;    /* shared experts: (Is, H) (Is, H) (H, Is), or NULL */
} layer_w;

struct eng {
    eng_config cfg;
    uint8_t *is_moe;                      /* own copy, [n_layers] */
    be *b;
    int ctx, max_batch, n_past;
    be_weight *embed, *lm_head;           /* lm_head == embed when tied */
    float *final_norm;
    layer_w *L;
    be_kv *kv;
    /* activations, backend memory, [max_batch, dim] */
    float *x, *xb, *xb2, *q, *k, *v, *att, *g, *u, *moe_w, *logits;
    int32_t *moe_ids;
    /* observer (eng_set_observer): host copies of activations, one backend scratch for gathered rows */
    eng_observer obs;
    void *obs_ctx;
    float *obs_all, *obs_rows, *obs_xg;   /* host [max_batch][obs_w] x2, backend [max_batch][hidden] */
    int32_t *obs_ids;                     /* host [max_batch][moe_k] */
    int obs_failed;
    err_t obs_err;
};

static int load_w(eng *e, eng_lookup lk, void *lc, const char *name, be_weight **out, err_t *err) {
    const be_weight_src *src = lk(lc, name, err);
    if (!src) return -1;
    *out = e->b->ops->weight_load(e->b, src, err);
    return *out ? 0 : -1;
}

/* A vector (norm weight, correction bias) in bf16 or f32, converted to fp32 in backend memory. */
static int load_vec(eng *e, eng_lookup lk, void *lc, const char *name, int n, float **out, err_t *err) {
    const be_weight_src *src = lk(lc, name, err);
    if (!src) return -1;
    if (src->nparts < 1 || src->rows * src->cols != n)
        return err_set(err, ERR_FORMAT, "tensor %s: expected %d values, found %lld x %lld", name, n,
                       (long long)src->rows, (long long)src->cols);
    float *h = malloc((size_t)n * sizeof *h);
    if (!h) return err_set(err, ERR_NOMEM, "out of memory");
    const void *d = src->part[0].data;
    if (!strcmp(src->format, "bf16") && src->part[0].nbytes == (size_t)n * 2) {
        for (int i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, (const uint8_t *)d + 2 * (size_t)i, 2);
            h[i] = bf16_to_f32(v);
        }
    } else if (!strcmp(src->format, "f32") && src->part[0].nbytes == (size_t)n * 4) {
        memcpy(h, d, (size_t)n * 4);
    } else {
        free(h);
        return err_set(err, ERR_FORMAT, "tensor %s: a vector must be bf16 or f32, not %s", name, src->format);
    }
    *out = e->b->ops->alloc(e->b, (size_t)n * sizeof(float), err);
    int r = *out ? e->b->ops->upload(e->b, *out, h, (size_t)n * sizeof(float), err) : -1;
    free(h);
    return r;
}

static float *act(eng *e, size_t n, err_t *err) { return e->b->ops->alloc(e->b, n * sizeof(float), err); }

int eng_create(eng **out, const eng_config *cfg, be *b, eng_lookup lk, void *lc, int ctx, int max_batch,
               err_t *err) {
    *out = NULL;
    const eng_config *c = cfg;
    if (c->hidden <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 || c->head_dim <= 0 ||
        c->vocab <= 0 || c->n_heads % c->n_kv_heads || c->head_dim % 2 || (c->n_experts && (c->moe_k <= 0 || c->moe_k > c->n_experts)))
        return err_set(err, ERR_ARG, "engine: inconsistent model configuration");
    if (ctx <= 0 || max_batch <= 0) return err_set(err, ERR_ARG, "engine: context and batch must be positive");
    eng *e = calloc(1, sizeof *e);
    if (!e) return err_set(err, ERR_NOMEM, "out of memory");
    e->cfg = *c;
    e->b = b;
    e->ctx = ctx;
    e->max_batch = max_batch;
    e->is_moe = calloc((size_t)c->n_layers, 1);
    e->L = calloc((size_t)c->n_layers, sizeof *e->L);
    if (!e->is_moe || !e->L) goto oom;
    if (c->is_moe) memcpy(e->is_moe, c->is_moe, (size_t)c->n_layers);
    e->cfg.is_moe = e->is_moe;

    char name[256];
    if (load_w(e, lk, lc, "model.embed_tokens", &e->embed, err)) goto fail;
    if (c->tie_embeddings) e->lm_head = e->embed;
    else if (load_w(e, lk, lc, "lm_head", &e->lm_head, err)) goto fail;
    if (load_vec(e, lk, lc, "model.norm", c->hidden, &e->final_norm, err)) goto fail;
    for (int l = 0; l < c->n_layers; l++) {
        layer_w *w = &e->L[l];
#define W(field, fmt)                                                   \
    snprintf(name, sizeof name, "model.layers.%d." fmt, l);             \
    if (load_w(e, lk, lc, name, &w->field, err)) goto fail;
#define V(field, fmt, n)                                                \
    snprintf(name, sizeof name, "model.layers.%d." fmt, l);             \
    if (load_vec(e, lk, lc, name, n, &w->field, err)) goto fail;
        V(attn_norm, "input_layernorm", c->hidden);
        V(ffn_norm, "post_attention_layernorm", c->hidden);
        W(wq, "self_attn.q_proj");
        W(wk, "self_attn.k_proj");
        W(wv, "self_attn.v_proj");
        W(wo, "self_attn.o_proj");
        if (e->is_moe[l]) {
            W(router, "mlp.gate");
            if (c->moe_bias) { /* a missing bias must not silently change which experts run */
                V(bias, "mlp.moe_statics.e_score_correction_bias", c->n_experts);
            }
            W(e_gate, "mlp.experts.gate_proj");
            W(e_up, "mlp.experts.up_proj");
            W(e_down, "mlp.experts.down_proj");
            if (c->shared_inter > 0) {
                W(s_gate, "mlp.shared_experts.gate_proj");
                W(s_up, "mlp.shared_experts.up_proj");
                W(s_down, "mlp.shared_experts.down_proj");
            }
        } else {
            W(w_gate, "mlp.gate_proj");
            W(w_up, "mlp.up_proj");
            W(w_down, "mlp.down_proj");
        }
#undef W
#undef V
    }
    int kvdim = c->n_kv_heads * c->head_dim, qdim = c->n_heads * c->head_dim;
    e->kv = b->ops->kv_create(b, c->n_layers, ctx, kvdim, err);
    if (!e->kv) goto fail;
    size_t T = (size_t)max_batch;
    int ffn = c->inter > c->shared_inter ? c->inter : c->shared_inter;
    if (c->moe_inter > ffn) ffn = c->moe_inter;
    if (!(e->x = act(e, T * c->hidden, err)) || !(e->xb = act(e, T * c->hidden, err)) ||
        !(e->xb2 = act(e, T * c->hidden, err)) || !(e->q = act(e, T * qdim, err)) ||
        !(e->k = act(e, T * kvdim, err)) || !(e->v = act(e, T * kvdim, err)) || !(e->att = act(e, T * qdim, err)) ||
        !(e->g = act(e, T * ffn, err)) || !(e->u = act(e, T * ffn, err)) ||
        !(e->logits = act(e, T * (size_t)c->vocab, err)))
        goto fail;
    if (c->n_experts) {
        if (!(e->moe_w = act(e, T * c->moe_k, err))) goto fail;
        e->moe_ids = b->ops->alloc(b, T * c->moe_k * sizeof(int32_t), err);
        if (!e->moe_ids) goto fail;
    }
    *out = e;
    return 0;
oom:
    err_set(err, ERR_NOMEM, "out of memory");
fail:
    eng_free(e);
    return -1;
}

void eng_free(eng *e) {
    if (!e) return;
    be *b = e->b;
    const be_ops *o = b->ops;
    if (e->L)
        for (int l = 0; l < e->cfg.n_layers; l++) {
            layer_w *w = &e->L[l];
            be_weight *ws[] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down, w->router,
                               w->e_gate, w->e_up, w->e_down, w->s_gate, w->s_up, w->s_down};
            for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
                if (ws[i]) o->weight_free(b, ws[i]);
            o->free(b, w->attn_norm);
            o->free(b, w->ffn_norm);
            o->free(b, w->bias);
        }
    if (e->lm_head && e->lm_head != e->embed) o->weight_free(b, e->lm_head);
    if (e->embed) o->weight_free(b, e->embed);
    o->free(b, e->final_norm);
    if (e->kv) o->kv_free(b, e->kv);
    float *acts[] = {e->x, e->xb, e->xb2, e->q, e->k, e->v, e->att, e->g, e->u, e->moe_w, e->logits};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) o->free(b, acts[i]);
    o->free(b, e->moe_ids);
    o->free(b, e->obs_xg);
    free(e->obs_all);
    free(e->obs_rows);
    free(e->obs_ids);
    free(e->L);
    free(e->is_moe);
    free(e);
}

/* Hands the T x K activations at dev to the observer once per weight kind they feed (names relative to
 * layer l, or absolute when l < 0). */
static void observe(eng *e, int l, const char *const *kinds, int nk, const float *dev, int T, int K) {
    if (!e->obs || e->obs_failed) return;
    if (e->b->ops->download(e->b, e->obs_all, dev, (size_t)T * K * sizeof(float), &e->obs_err)) {
        e->obs_failed = 1;
        return;
    }
    char name[256];
    for (int i = 0; i < nk; i++) {
        if (l >= 0) snprintf(name, sizeof name, "model.layers.%d.%s", l, kinds[i]);
        else snprintf(name, sizeof name, "%s", kinds[i]);
        eng_obs ob = {name, -1, e->obs_all, T, K};
        e->obs(e->obs_ctx, &ob);
    }
}

/* The routed experts' inputs, expert by expert: the rows of the tokens that chose it for gate and up,
 * and its SwiGLU activations (recomputed here from the same backend products) for down. Uses e->g and
 * e->u, which are free between the routed and the shared experts. */
static void observe_experts(eng *e, int l, int T) {
    if (!e->obs || e->obs_failed) return;
    const eng_config *c = &e->cfg;
    be *b = e->b;
    const be_ops *o = b->ops;
    int H = c->hidden, Im = c->moe_inter, k = c->moe_k;
    err_t *err = &e->obs_err;
    if (o->download(b, e->obs_all, e->xb, (size_t)T * H * sizeof(float), err) ||
        o->download(b, e->obs_ids, e->moe_ids, (size_t)T * k * sizeof(int32_t), err)) {
        e->obs_failed = 1;
        return;
    }
    char name[256];
    for (int x = 0; x < c->n_experts; x++) {
        int n = 0;
        for (int t = 0; t < T; t++)
            for (int j = 0; j < k; j++)
                if (e->obs_ids[(size_t)t * k + j] == x) {
                    memcpy(e->obs_rows + (size_t)n++ * H, e->obs_all + (size_t)t * H, (size_t)H * sizeof(float));
                    break;
                }
        if (!n) continue;
        static const char *const gu[2] = {"mlp.experts.gate_proj", "mlp.experts.up_proj"};
        for (int i = 0; i < 2; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s", l, gu[i]);
            eng_obs ob = {name, x, e->obs_rows, n, H};
            e->obs(e->obs_ctx, &ob);
        }
        if (o->upload(b, e->obs_xg, e->obs_rows, (size_t)n * H * sizeof(float), err)) {
            e->obs_failed = 1;
            return;
        }
        o->matmul(b, e->L[l].e_gate, (int64_t)x * Im, Im, e->obs_xg, n, e->g);
        o->matmul(b, e->L[l].e_up, (int64_t)x * Im, Im, e->obs_xg, n, e->u);
        o->swiglu(b, e->g, e->u, (int64_t)n * Im, e->g);
        if (o->download(b, e->obs_rows, e->g, (size_t)n * Im * sizeof(float), err)) {
            e->obs_failed = 1;
            return;
        }
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.down_proj", l);
        eng_obs ob = {name, x, e->obs_rows, n, Im};
        e->obs(e->obs_ctx, &ob);
    }
}

int eng_set_observer(eng *e, eng_observer fn, void *ctx, err_t *err) {
    e->obs = fn;
    e->obs_ctx = ctx;
    e->obs_failed = 0;
    if (!fn || e->obs_all) return 0;
    const eng_config *c = &e->cfg;
    size_t w = (size_t)c->hidden;
    size_t dims[] = {(size_t)c->n_heads * c->head_dim, (size_t)c->inter, (size_t)c->shared_inter, (size_t)c->moe_inter};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i] > w) w = dims[i];
    size_t T = (size_t)e->max_batch;
    e->obs_all = malloc(T * w * sizeof(float));
    e->obs_rows = malloc(T * w * sizeof(float));
    e->obs_ids = malloc(T * (size_t)(c->moe_k > 0 ? c->moe_k : 1) * sizeof(int32_t));
    if (!e->obs_all || !e->obs_rows || !e->obs_ids) {
        e->obs = NULL;
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    if (c->n_experts && !(e->obs_xg = act(e, T * (size_t)c->hidden, err))) {
        e->obs = NULL;
        return -1;
    }
    return 0;
}

/* One chunk of T <= max_batch tokens at positions n_past.. */
static const char *const K_QKV[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"};
static const char *const K_O[] = {"self_attn.o_proj"};
static const char *const K_GU[] = {"mlp.gate_proj", "mlp.up_proj"};
static const char *const K_D[] = {"mlp.down_proj"};
static const char *const K_SGU[] = {"mlp.shared_experts.gate_proj", "mlp.shared_experts.up_proj"};
static const char *const K_SD[] = {"mlp.shared_experts.down_proj"};
static const char *const K_HEAD[] = {"lm_head"};
static const char *const K_EMB[] = {"model.embed_tokens"};

/* A SwiGLU MLP of width I on e->xb (T rows of H): e->xb = down(silu(gate x) * up x). The dense layers'
 * MLP and the shared experts; kinds name its products for the observer. */
static void swiglu_mlp(eng *e, int l, be_weight *gate, be_weight *up, be_weight *down, int I,
                       const char *const *k_gu, const char *const *k_d, int T) {
    be *b = e->b;
    int H = e->cfg.hidden;
    observe(e, l, k_gu, 2, e->xb, T, H);
    b->ops->matmul(b, gate, 0, I, e->xb, T, e->g);
    b->ops->matmul(b, up, 0, I, e->xb, T, e->u);
    b->ops->swiglu(b, e->g, e->u, (int64_t)T * I, e->g);
    observe(e, l, k_d, 1, e->g, T, I);
    b->ops->matmul(b, down, 0, H, e->g, T, e->xb);
}

static void forward_chunk(eng *e, const int32_t *ids, int T) {
    const eng_config *c = &e->cfg;
    be *b = e->b;
    const be_ops *o = b->ops;
    int H = c->hidden, hd = c->head_dim, nq = c->n_heads, nkv = c->n_kv_heads, pos = e->n_past;
    int qdim = nq * hd, kvdim = nkv * hd;
    size_t n = (size_t)T * H;

    o->embed(b, e->embed, ids, T, e->x);
    for (int l = 0; l < c->n_layers; l++) {
        layer_w *w = &e->L[l];
        /* attention: x += Wo . attn(rope(Wq xn), rope(Wk xn), Wv xn) */
        o->rmsnorm(b, e->x, w->attn_norm, c->eps, T, H, e->xb);
        observe(e, l, K_QKV, 3, e->xb, T, H);
        o->matmul(b, w->wq, 0, qdim, e->xb, T, e->q);
        o->matmul(b, w->wk, 0, kvdim, e->xb, T, e->k);
        o->matmul(b, w->wv, 0, kvdim, e->xb, T, e->v);
        o->rope(b, e->q, T, nq, hd, pos, c->rope_theta);
        o->rope(b, e->k, T, nkv, hd, pos, c->rope_theta);
        o->kv_store(b, e->kv, l, pos, T, e->k, e->v);
        o->attention(b, e->kv, l, e->q, T, pos, nq, nkv, hd, e->att);
        observe(e, l, K_O, 1, e->att, T, qdim);
        o->matmul(b, w->wo, 0, H, e->att, T, e->xb);
        o->add(b, e->x, e->xb, (int64_t)n);

        /* feed-forward: x += FFN(xn) or MoE(xn) */
        o->rmsnorm(b, e->x, w->ffn_norm, c->eps, T, H, e->xb);
        if (e->is_moe[l]) {
            o->moe_route(b, w->router, w->bias, e->xb, T, c->n_experts, c->moe_k, c->moe_norm_min, e->moe_ids, e->moe_w);
            o->moe_experts(b, w->e_gate, w->e_up, w->e_down, e->xb, T, H, c->moe_inter, c->moe_k, e->moe_ids, e->moe_w,
                           e->xb2);
            observe_experts(e, l, T);
            if (w->s_gate) { /* shared experts: computed from the same input, added after routing */
                swiglu_mlp(e, l, w->s_gate, w->s_up, w->s_down, c->shared_inter, K_SGU, K_SD, T);
                o->add(b, e->xb2, e->xb, (int64_t)n);
            }
            o->add(b, e->x, e->xb2, (int64_t)n);
        } else {
            swiglu_mlp(e, l, w->w_gate, w->w_up, w->w_down, c->inter, K_GU, K_D, T);
            o->add(b, e->x, e->xb, (int64_t)n);
        }
    }
    o->rmsnorm(b, e->x, e->final_norm, c->eps, T, H, e->xb);
    observe(e, -1, c->tie_embeddings ? K_EMB : K_HEAD, 1, e->xb, T, H);
}

int eng_forward(eng *e, const int32_t *ids, int T, float *logits, int all_rows, err_t *err) {
    const eng_config *c = &e->cfg;
    if (T <= 0) return 0;
    if (e->n_past + T > e->ctx)
        return err_set(err, ERR_ARG, "%d tokens do not fit the context: %d of %d positions are in use", T, e->n_past,
                       e->ctx);
    for (int i = 0; i < T; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return err_set(err, ERR_ARG, "token id %d is outside the vocabulary (%d)", ids[i], c->vocab);
    be *b = e->b;
    const be_ops *o = b->ops;
    size_t V = (size_t)c->vocab;
    for (int done = 0; done < T;) {
        int t = T - done < e->max_batch ? T - done : e->max_batch;
        forward_chunk(e, ids + done, t);
        e->n_past += t;
        int last = done + t == T;
        if (logits && (all_rows || last)) {
            /* all rows, or only the last token's */
            int r0 = all_rows ? 0 : t - 1, nr = all_rows ? t : 1;
            o->matmul(b, e->lm_head, 0, (int64_t)V, e->xb + (size_t)r0 * c->hidden, nr, e->logits);
            float *dst = all_rows ? logits + (size_t)done * V : logits;
            if (o->download(b, dst, e->logits, (size_t)nr * V * sizeof(float), err)) return -1;
        }
        if (o->sync(b, err)) return -1;
        if (e->obs_failed) {
            *err = e->obs_err;
            return -1;
        }
        done += t;
    }
    return 0;
}

int eng_n_past(const eng *e) { return e->n_past; }
int eng_ctx(const eng *e) { return e->ctx; }
void eng_truncate(eng *e, int n) {
    if (n >= 0 && n < e->n_past) e->n_past = n;
}
const eng_config *eng_cfg(const eng *e) { return &e->cfg; }
