/* ccq/format.c: format names (parse and print), the parts of a format for a shape, bit accounting,
 * wrapping borrowed parts and validating them.
 *
 * The layout is the contract with the model-file writer and the CUDA kernels: sizes follow from the
 * format and the shape alone. Must never depend on the weights' values. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

static const char *const base_names[CCQ_NBASES] = {
    [CCQ_BF16] = "bf16",         [CCQ_WINT8] = "wint8",     [CCQ_WINT4] = "wint4",
    [CCQ_WINT4G64] = "wint4g64", [CCQ_WINT2G64] = "wint2g64", [CCQ_CCQ275] = "ccq2.75",
    [CCQ_CCQ25] = "ccq2.5",      [CCQ_CCQ206] = "ccq2.06",
};

enum { DEF_ICQ_GAMMA = 500, DEF_ICQ_BITS = 5, DEF_CRVQ_FRAC = 200, DEF_CRVQ_BITS = 8 };

const base_codec *codec_of(ccq_base b) {
    switch (b) {
    case CCQ_BF16: return &CODEC_BF16;
    case CCQ_WINT8: return &CODEC_WINT8;
    case CCQ_WINT4: return &CODEC_WINT4;
    case CCQ_WINT4G64: return &CODEC_WINT4G64;
    case CCQ_WINT2G64: return &CODEC_WINT2G64;
    case CCQ_CCQ275: return &CODEC_CCQ275;
    case CCQ_CCQ25: return &CODEC_CCQ25;
    case CCQ_CCQ206: return &CODEC_CCQ206;
    default: return NULL;
    }
}

const char *ccq_base_name(ccq_base b) { return (unsigned)b < CCQ_NBASES ? base_names[b] : "?"; }

ccq_format ccq_format_of(ccq_base b) {
    ccq_format f = {.base = b, .icq_gamma = DEF_ICQ_GAMMA, .icq_bits = DEF_ICQ_BITS,
                    .crvq_frac = DEF_CRVQ_FRAC, .crvq_bits = DEF_CRVQ_BITS};
    return f;
}

/* A fraction in (0, 0.5] with at most 4 decimals, as 1/10000 units. */
static int parse_frac(const char *s, size_t n, int *out) {
    char buf[32];
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (*end || errno || !(v > 0) || v > 0.5) return -1;
    double u = v * 10000.0;
    long r = lround(u);
    if (fabs(u - (double)r) > 1e-6 || r < 1) return -1;
    *out = (int)r;
    return 0;
}

static int parse_int(const char *s, size_t n, int lo, int hi, int *out) {
    if (n == 0 || n > 3) return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int ccq_format_parse(const char *s, ccq_format *f, err_t *e) {
    if (!s) return err_set(e, ERR_ARG, "no format name");
    size_t bl = strcspn(s, "+");
    int b = -1;
    for (int i = 0; i < CCQ_NBASES; i++)
        if (strlen(base_names[i]) == bl && !strncmp(s, base_names[i], bl)) b = i;
    if (b < 0)
        return err_set(e, ERR_ARG,
                       "unknown format '%.*s' (known: bf16, wint8, wint4, wint4g64, wint2g64, ccq2.75, ccq2.5, "
                       "ccq2.06, each with +icq and/or +crvq)",
                       (int)bl, s);
    ccq_format r = ccq_format_of((ccq_base)b);
    const char *p = s + bl;
    while (*p == '+') {
        p++;
        size_t ml = strcspn(p, "+");
        size_t nl = strcspn(p, ":+");
        const char *arg = p + nl, *end = p + ml;
        /* up to two ':'-separated parameters */
        const char *a1 = NULL, *a2 = NULL;
        size_t l1 = 0, l2 = 0;
        if (arg < end) {
            a1 = arg + 1;
            const char *c2 = memchr(a1, ':', (size_t)(end - a1));
            if (c2) {
                l1 = (size_t)(c2 - a1), a2 = c2 + 1, l2 = (size_t)(end - a2);
                if (memchr(a2, ':', l2)) return err_set(e, ERR_ARG, "format '%s': too many parameters in '+%.*s'", s, (int)ml, p);
            } else {
                l1 = (size_t)(end - a1);
            }
        }
        if (nl == 3 && !strncmp(p, "icq", 3)) {
            if (r.icq) return err_set(e, ERR_ARG, "format '%s': +icq given twice", s);
            r.icq = 1;
            if (a1 && parse_frac(a1, l1, &r.icq_gamma))
                return err_set(e, ERR_ARG, "format '%s': icq gamma '%.*s' is not a fraction in (0, 0.5] with at most 4 decimals", s, (int)l1, a1);
            if (a2 && parse_int(a2, l2, 2, 12, &r.icq_bits))
                return err_set(e, ERR_ARG, "format '%s': icq symbol width '%.*s' is not an integer from 2 to 12", s, (int)l2, a2);
        } else if (nl == 4 && !strncmp(p, "crvq", 4)) {
            if (r.crvq) return err_set(e, ERR_ARG, "format '%s': +crvq given twice", s);
            r.crvq = 1;
            if (a1 && parse_frac(a1, l1, &r.crvq_frac))
                return err_set(e, ERR_ARG, "format '%s': crvq fraction '%.*s' is not a fraction in (0, 0.5] with at most 4 decimals", s, (int)l1, a1);
            if (a2 && (parse_int(a2, l2, 4, 8, &r.crvq_bits) || (r.crvq_bits != 4 && r.crvq_bits != 8)))
                return err_set(e, ERR_ARG, "format '%s': crvq bits '%.*s' must be 4 or 8", s, (int)l2, a2);
        } else {
            return err_set(e, ERR_ARG, "format '%s': unknown modifier '+%.*s' (known: +icq, +crvq)", s, (int)nl, p);
        }
        p = end;
    }
    if (*p) return err_set(e, ERR_ARG, "format '%s': unexpected '%s'", s, p);
    if (r.base == CCQ_BF16 && (r.icq || r.crvq))
        return err_set(e, ERR_ARG, "format '%s': bf16 is a passthrough and takes no +icq or +crvq", s);
    *f = r;
    return 0;
}

const char *ccq_format_name(const ccq_format *f, char *buf, size_t n) {
    size_t o = 0;
    int w = snprintf(buf, n, "%s", ccq_base_name(f->base));
    o = w > 0 ? (size_t)w : 0;
    if (f->icq && o < n) {
        if (f->icq_gamma == DEF_ICQ_GAMMA && f->icq_bits == DEF_ICQ_BITS) w = snprintf(buf + o, n - o, "+icq");
        else w = snprintf(buf + o, n - o, "+icq:%g:%d", f->icq_gamma / 10000.0, f->icq_bits);
        o += w > 0 ? (size_t)w : 0;
    }
    if (f->crvq && o < n) {
        if (f->crvq_frac == DEF_CRVQ_FRAC && f->crvq_bits == DEF_CRVQ_BITS) snprintf(buf + o, n - o, "+crvq");
        else snprintf(buf + o, n - o, "+crvq:%g:%d", f->crvq_frac / 10000.0, f->crvq_bits);
    }
    return buf;
}

size_t ccq_dtype_size(const char *d) {
    if (!d) return 0;
    if (!strcmp(d, "U8") || !strcmp(d, "I8")) return 1;
    if (!strcmp(d, "BF16") || !strcmp(d, "U16") || !strcmp(d, "F16") || !strcmp(d, "I16")) return 2;
    if (!strcmp(d, "F32") || !strcmp(d, "I32") || !strcmp(d, "U32")) return 4;
    return 0;
}

void part_set(ccq_part *p, const char *name, const char *dtype, int ndim, int64_t d0, int64_t d1) {
    p->name = name, p->dtype = dtype, p->ndim = ndim;
    p->shape[0] = d0, p->shape[1] = ndim == 2 ? d1 : 0;
    p->nbytes = (size_t)d0 * (size_t)(ndim == 2 ? d1 : 1) * ccq_dtype_size(dtype);
    p->data = NULL;
}

int icq_part0(const ccq_format *f) { return codec_of(f->base)->nparts; }
int crvq_part0(const ccq_format *f) { return codec_of(f->base)->nparts + (f->icq ? 2 : 0); }

static int check_format(const ccq_format *f, err_t *e) {
    if (!codec_of(f->base)) return err_set(e, ERR_ARG, "invalid format (base %d)", (int)f->base);
    if (f->base == CCQ_BF16 && (f->icq || f->crvq))
        return err_set(e, ERR_ARG, "format bf16 takes no +icq or +crvq");
    if (f->icq && (f->icq_gamma < 1 || f->icq_gamma > 5000 || f->icq_bits < 2 || f->icq_bits > 12))
        return err_set(e, ERR_ARG, "invalid +icq parameters (gamma %d/10000, B %d)", f->icq_gamma, f->icq_bits);
    if (f->crvq && (f->crvq_frac < 1 || f->crvq_frac > 5000 || (f->crvq_bits != 4 && f->crvq_bits != 8)))
        return err_set(e, ERR_ARG, "invalid +crvq parameters (fraction %d/10000, bits %d)", f->crvq_frac,
                       f->crvq_bits);
    return 0;
}

int ccq_layout(const ccq_format *f, int64_t rows, int64_t cols, ccq_part parts[CCQ_MAX_PARTS], int *nparts,
               err_t *e) {
    if (check_format(f, e)) return -1;
    char nm[64];
    ccq_format_name(f, nm, sizeof nm);
    const base_codec *c = codec_of(f->base);
    if (rows < 1 || cols < 1 || rows > ((int64_t)1 << 40) || cols > ((int64_t)1 << 30) ||
        rows > ((int64_t)1 << 46) / cols)
        return err_set(e, ERR_ARG, "format %s: shape [%lld, %lld] is empty or too large", nm, (long long)rows,
                       (long long)cols);
    if (cols % c->kmult)
        return err_set(e, ERR_ARG, "format %s: the input dimension %lld is not a multiple of %d", nm, (long long)cols,
                       c->kmult);
    if (f->crvq && cols > 65536)
        return err_set(e, ERR_ARG, "format %s: +crvq needs at most 65536 input channels, not %lld", nm,
                       (long long)cols);
    int n = 0;
    c->layout(rows, cols, parts);
    n = c->nparts;
    if (f->icq) icq_layout(f, rows, cols, parts + n), n += 2;
    if (f->crvq) crvq_layout(f, rows, cols, parts + n), n += 3;
    *nparts = n;
    return 0;
}

int ccq_bits(const ccq_format *f, int64_t rows, int64_t cols, uint64_t *bits, double *bpw, err_t *e) {
    ccq_part p[CCQ_MAX_PARTS];
    int n;
    if (ccq_layout(f, rows, cols, p, &n, e)) return -1;
    uint64_t b = 0;
    for (int i = 0; i < n; i++) b += (uint64_t)p[i].nbytes * 8;
    if (bits) *bits = b;
    if (bpw) *bpw = (double)b / ((double)rows * (double)cols);
    return 0;
}

/* The tensor's parts against the layout: same names in order, dtypes, shapes, sizes, data present. */
static int check_parts(const ccq_tensor *t, err_t *e) {
    ccq_part want[CCQ_MAX_PARTS];
    int n;
    if (ccq_layout(&t->fmt, t->rows, t->cols, want, &n, e)) return -1;
    if (t->nparts != n) return err_set(e, ERR_CORRUPT, "%d parts where the format has %d", t->nparts, n);
    for (int i = 0; i < n; i++) {
        const ccq_part *p = &t->part[i], *w = &want[i];
        if (!p->name || strcmp(p->name, w->name)) return err_set(e, ERR_CORRUPT, "part %d is not %s", i, w->name);
        if (!p->dtype || strcmp(p->dtype, w->dtype))
            return err_set(e, ERR_CORRUPT, "part %s: dtype %s, expected %s", w->name, p->dtype ? p->dtype : "?",
                           w->dtype);
        if (p->ndim != w->ndim || p->shape[0] != w->shape[0] || (w->ndim == 2 && p->shape[1] != w->shape[1]))
            return err_set(e, ERR_CORRUPT, "part %s: shape [%lld, %lld], expected [%lld, %lld]", w->name,
                           (long long)p->shape[0], (long long)p->shape[1], (long long)w->shape[0],
                           (long long)w->shape[1]);
        if (p->nbytes != w->nbytes || (!p->data && w->nbytes))
            return err_set(e, ERR_CORRUPT, "part %s: %zu bytes, expected %zu", w->name, p->data ? p->nbytes : 0,
                           w->nbytes);
    }
    return 0;
}

int ccq_validate(const ccq_tensor *t, err_t *e) {
    if (check_parts(t, e)) return -1;
    if (codec_of(t->fmt.base)->validate(t, e)) return -1;
    if (t->fmt.icq && icq_validate(t, e)) return -1;
    if (t->fmt.crvq && crvq_validate(t, e)) return -1;
    return 0;
}

int ccq_wrap(const ccq_format *f, int64_t rows, int64_t cols, const ccq_part *parts, int nparts, ccq_tensor *t,
             err_t *e) {
    ccq_part want[CCQ_MAX_PARTS];
    int n;
    memset(t, 0, sizeof *t);
    if (ccq_layout(f, rows, cols, want, &n, e)) return -1;
    if (nparts < 0 || (nparts > 0 && !parts)) return err_set(e, ERR_ARG, "no parts given");
    for (int j = 0; j < nparts; j++) {
        int found = 0;
        for (int i = 0; i < n; i++) found |= parts[j].name && !strcmp(parts[j].name, want[i].name);
        if (!found)
            return err_set(e, ERR_CORRUPT, "unexpected part '%s' for this format", parts[j].name ? parts[j].name : "?");
    }
    t->fmt = *f, t->rows = rows, t->cols = cols, t->nparts = n;
    for (int i = 0; i < n; i++) {
        int hit = -1;
        for (int j = 0; j < nparts; j++)
            if (parts[j].name && !strcmp(parts[j].name, want[i].name)) {
                if (hit >= 0) return err_set(e, ERR_CORRUPT, "part %s given twice", want[i].name);
                hit = j;
            }
        if (hit < 0) return err_set(e, ERR_CORRUPT, "part %s is missing", want[i].name);
        t->part[i] = parts[hit];
        t->part[i].name = want[i].name; /* static strings, independent of the caller's buffers */
    }
    if (ccq_validate(t, e)) {
        memset(t, 0, sizeof *t);
        return -1;
    }
    for (int i = 0; i < n; i++) t->part[i].dtype = want[i].dtype;
    return 0;
}

void ccq_free(ccq_tensor *t) {
    if (!t) return;
    free(t->owned);
    memset(t, 0, sizeof *t);
}
