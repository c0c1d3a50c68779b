/* ccq/encode.c: ccq_encode, the driver: checks the input, allocates the parts, spreads rows over the
 * thread pool, and composes the base encoder with the modifiers.
 *
 * Per row: importance h (normalised to mean 1 per importance vector, so thresholds do not depend on
 * the calibration set's size), then +icq picks outliers and their multiplier, then the base encoder
 * codes the row knowing both, then +crvq codes the critical block. +crvq needs the base's residual to
 * rank channels, so it encodes twice: a first pass as if without +crvq, then the real one with the
 * critical columns as don't-care. Must never print or touch files; results do not depend on the
 * number of threads. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "internal.h"

#define WMAX 1e12f /* larger weights would overflow the float error sums */

typedef struct {
    const ccq_format *f;
    const base_codec *codec;
    ccq_tensor *t;
    const float *w;
    const float *imp; /* normalised importance, NULL = ones */
    int64_t imp_rows; /* rows per importance vector */
    int64_t K;
    int pass;                /* 1: +crvq's ranking pass, 2 (or 0 without +crvq): the real one */
    const uint8_t *critical; /* [K] for the real pass of +crvq */
    const uint16_t *cidx;
    int64_t C;
    uint8_t *scratch; /* per thread */
    size_t scratch_bytes;
    double *score; /* pass 1: per thread [K] residual energies */
    atomic_llong done;
    double total;
    const ccq_encode_opts *o;
} job;

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static void encode_rows(void *ctxp, int64_t r0, int64_t r1, int tid) {
    job *j = (job *)ctxp;
    const int64_t K = j->K;
    uint8_t *s = j->scratch + (size_t)tid * j->scratch_bytes;
    float *h = (float *)s, *hc = h + K, *m = hc + K, *dec = m + K;
    uint8_t *isout = (uint8_t *)(dec + K);
    int32_t *iw = (int32_t *)(isout + align64((size_t)K));
    uint8_t *cs = (uint8_t *)(iw + K);
    uint8_t *bs = cs + align64(crvq_scratch(j->C));
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->w + r * K;
        const float *src = j->imp ? j->imp + (r / j->imp_rows) * K : NULL;
        for (int64_t k = 0; k < K; k++) hc[k] = src ? src[k] : 1.0f;
        memcpy(h, hc, sizeof(float) * (size_t)K);
        if (j->critical)
            for (int64_t c = 0; c < j->C; c++) h[j->cidx[c]] = 0;
        const float *mm = NULL;
        if (j->f->icq) {
            int p0 = icq_part0(j->f);
            uint8_t *bits = part_w(j->t, p0) + r * j->t->part[p0].shape[1];
            icq_select(j->f, x, j->critical, K, bits, isout, iw);
            float M = icq_multiplier(x, isout, j->critical, K, j->codec->coarse);
            for (int64_t k = 0; k < K; k++) m[k] = isout[k] ? M : 1.0f;
            st_f32(part_w(j->t, p0 + 1) + 4 * r, M);
            mm = m;
        }
        j->codec->encode_row(x, h, mm, K, bs, j->t, r);
        if (j->critical) crvq_encode_row(x, hc, j->cidx, j->C, cs, j->t, r);
        if (j->pass == 1) {
            rowctx rc;
            rd_begin(&rc, j->t, r);
            rc.crvq = 0; /* the critical block is not written yet */
            for (int64_t k0 = 0; k0 < K; k0 += G) rd_decode(&rc, k0, (int)(K - k0 < G ? K - k0 : G), dec + k0);
            double *sc = j->score + (size_t)tid * (size_t)K;
            for (int64_t k = 0; k < K; k++) {
                double d = (double)x[k] - dec[k];
                sc[k] += hc[k] * d * d;
            }
        }
    }
    long long d = atomic_fetch_add(&j->done, r1 - r0) + (r1 - r0);
    if (j->o && j->o->progress) j->o->progress(j->o->progress_ctx, (double)d, j->total);
}

int ccq_encode(const ccq_format *f, const float *w, int64_t rows, int64_t cols, const ccq_encode_opts *opts,
               ccq_tensor *out, err_t *e) {
    static const ccq_encode_opts none = {0};
    const ccq_encode_opts *o = opts ? opts : &none;
    memset(out, 0, sizeof *out);
    ccq_part parts[CCQ_MAX_PARTS];
    int np;
    if (ccq_layout(f, rows, cols, parts, &np, e)) return -1;
    if (!w) return err_set(e, ERR_ARG, "no weights to encode");
    const int64_t K = cols;
    for (int64_t i = 0; i < rows * K; i++)
        if (!(fabsf(w[i]) <= WMAX))
            return err_set(e, ERR_ARG, "weight at row %lld column %lld is %g: not finite or beyond +-1e12",
                           (long long)(i / K), (long long)(i % K), w[i]);
    int64_t ir = o->importance_rows > 0 ? o->importance_rows : rows;
    if (o->importance && rows % ir)
        return err_set(e, ERR_ARG, "importance: %lld rows per vector do not divide %lld rows", (long long)ir,
                       (long long)rows);
    float *imp = NULL;
    if (o->importance) {
        int64_t nv = rows / ir;
        imp = malloc(sizeof(float) * (size_t)(nv * K));
        if (!imp) return err_set(e, ERR_NOMEM, "out of memory for the importance");
        for (int64_t v = 0; v < nv; v++) {
            const float *s = o->importance + v * K;
            double sum = 0;
            for (int64_t k = 0; k < K; k++) {
                if (!(s[k] >= 0 && isfinite(s[k]))) {
                    free(imp);
                    return err_set(e, ERR_ARG, "importance of vector %lld column %lld is %g: must be finite and >= 0",
                                   (long long)v, (long long)k, s[k]);
                }
                sum += s[k];
            }
            double mean = sum / (double)K;
            for (int64_t k = 0; k < K; k++) imp[v * K + k] = mean > 0 ? (float)(s[k] / mean) : 0.0f;
        }
    }
    /* One allocation for every part, each at a 64-byte aligned offset. */
    size_t total = 0, off[CCQ_MAX_PARTS];
    for (int i = 0; i < np; i++) off[i] = total, total += align64(parts[i].nbytes);
    uint8_t *buf = aligned_alloc(64, total ? total : 64);
    if (!buf) {
        free(imp);
        return err_set(e, ERR_NOMEM, "out of memory for %zu bytes of encoded weight", total);
    }
    memset(buf, 0, total);
    out->fmt = *f, out->rows = rows, out->cols = cols, out->nparts = np, out->owned = buf;
    for (int i = 0; i < np; i++) out->part[i] = parts[i], out->part[i].data = buf + off[i];

    const base_codec *codec = codec_of(f->base);
    int nt = pool_size(o->pool);
    int64_t C = f->crvq ? crvq_channels(f, K) : 0;
    job j = {.f = f, .codec = codec, .t = out, .w = w, .imp = imp, .imp_rows = ir, .K = K, .C = C, .o = o,
             .total = (double)rows * (f->crvq ? 2 : 1)};
    atomic_init(&j.done, 0);
    j.scratch_bytes = align64(sizeof(float) * 4 * (size_t)K) + align64((size_t)K) + align64(4 * (size_t)K) +
                      align64(crvq_scratch(C)) + align64(codec->scratch(K));
    j.scratch = aligned_alloc(64, j.scratch_bytes * (size_t)nt);
    uint8_t *critical = f->crvq ? calloc((size_t)K, 1) : NULL;
    int32_t *pw = f->crvq ? malloc((size_t)K * 5) : NULL;
    if (f->crvq) j.score = calloc((size_t)nt * (size_t)K, sizeof(double));
    if (!j.scratch || (f->crvq && (!critical || !pw || !j.score))) {
        free(j.scratch), free(critical), free(pw), free(j.score), free(imp);
        ccq_free(out);
        return err_set(e, ERR_NOMEM, "out of memory for the encoder's scratch");
    }
    int64_t grain = rows / (8 * nt) > 0 ? (rows / (8 * nt) < 16 ? rows / (8 * nt) : 16) : 1;
    if (f->crvq) {
        j.pass = 1;
        pool_for(o->pool, rows, grain, encode_rows, &j);
        for (int i = 1; i < nt; i++)
            for (int64_t k = 0; k < K; k++) j.score[k] += j.score[(size_t)i * (size_t)K + k];
        int p0 = crvq_part0(f);
        uint16_t *cidx = (uint16_t *)part_w(out, p0);
        crvq_pick(j.score, K, C, cidx, pw);
        for (int64_t c = 0; c < C; c++) critical[cidx[c]] = 1;
        j.critical = critical, j.cidx = cidx;
        /* The first pass wrote every base part and the ICQ parts; the second overwrites them all. */
        for (int i = 0; i < p0; i++) memset(part_w(out, i), 0, out->part[i].nbytes);
    }
    j.pass = 2;
    pool_for(o->pool, rows, grain, encode_rows, &j);
    free(j.scratch), free(critical), free(pw), free(j.score), free(imp);
    return 0;
}
