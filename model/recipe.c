/* model/recipe.c: the presets and overrides. */
#include "recipe.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name, *help;
    const char *embed, *head, *attn, *dense, *shared;
    const char *experts_early; /* experts of the first `n_early` MoE layers */
    int n_early;
    const char *experts;
} preset;

/* Baidu's released 300B mix keeps experts of layers 3-6 (its first four MoE layers) at wint4: the
 * first MoE layers are the most sensitive. "First four MoE layers" carries that to other sizes. */
static const preset presets[] = {
    {"baidu", "attention and dense MLP wint8, experts of the first 4 MoE layers wint4, other experts ccq2.06, "
              "embeddings and head bf16 (Baidu's released 2-bit mix)",
     "bf16", "bf16", "wint8", "wint8", "wint8", "wint4", 4, "ccq2.06"},
    {"fit80", "attention, dense and shared MLP wint4, experts ccq2.06, head wint8, embeddings bf16 "
              "(the 300B on one 80 GB GPU)",
     "bf16", "wint8", "wint4", "wint4", "wint4", "ccq2.06", 0, "ccq2.06"},
    {"q2.5", "experts ccq2.5, attention, dense and shared MLP and head wint8, embeddings bf16",
     "bf16", "wint8", "wint8", "wint8", "wint8", "ccq2.5", 0, "ccq2.5"},
    {"q2.75", "experts ccq2.75, attention, dense and shared MLP and head wint8, embeddings bf16",
     "bf16", "wint8", "wint8", "wint8", "wint8", "ccq2.75", 0, "ccq2.75"},
    {"wint4", "every matrix wint4 but the embeddings (bf16)", "bf16", "wint4", "wint4", "wint4", "wint4", "wint4", 0,
     "wint4"},
    {"wint8", "every matrix wint8 but the embeddings (bf16)", "bf16", "wint8", "wint8", "wint8", "wint8", "wint8", 0,
     "wint8"},
    {"bf16", "everything bf16 (lossless for bf16 checkpoints)", "bf16", "bf16", "bf16", "bf16", "bf16", "bf16", 0,
     "bf16"},
};
#define NPRESETS (int)(sizeof presets / sizeof presets[0])

typedef struct {
    regex_t re;
    char *fmt;
} override;

struct recipe {
    const preset *p;
    char name[64]; /* "baidu", or "baidu+custom" once overrides are added */
    override *ov;
    int nov;
};

const char *recipe_presets_help(void) {
    static char buf[2048];
    size_t n = 0;
    for (int i = 0; i < NPRESETS; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "  %-6s %s\n", presets[i].name, presets[i].help);
    return buf;
}

int recipe_create(recipe **out, const char *name, err_t *err) {
    *out = NULL;
    for (int i = 0; i < NPRESETS; i++) {
        if (strcmp(presets[i].name, name)) continue;
        recipe *r = calloc(1, sizeof *r);
        if (!r) return err_set(err, ERR_NOMEM, "out of memory");
        r->p = &presets[i];
        snprintf(r->name, sizeof r->name, "%s", presets[i].name);
        *out = r;
        return 0;
    }
    char known[256];
    size_t n = 0;
    for (int i = 0; i < NPRESETS; i++) n += (size_t)snprintf(known + n, sizeof known - n, "%s%s", i ? ", " : "", presets[i].name);
    return err_set(err, ERR_ARG, "unknown recipe '%s' (known: %s)", name, known);
}

void recipe_free(recipe *r) {
    if (!r) return;
    for (int i = 0; i < r->nov; i++) {
        regfree(&r->ov[i].re);
        free(r->ov[i].fmt);
    }
    free(r->ov);
    free(r);
}

const char *recipe_name(const recipe *r) { return r->name; }

int recipe_override(recipe *r, const char *spec, err_t *err) {
    const char *eq = strrchr(spec, '=');
    if (!eq || eq == spec || !eq[1]) return err_set(err, ERR_ARG, "'%s' is not REGEX=FORMAT", spec);
    char *pat = strndup(spec, (size_t)(eq - spec));
    override *o = realloc(r->ov, (size_t)(r->nov + 1) * sizeof *o);
    if (!pat || !o) {
        free(pat);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    r->ov = o;
    int rc = regcomp(&o[r->nov].re, pat, REG_EXTENDED | REG_NOSUB);
    if (rc) {
        char msg[128];
        regerror(rc, &o[r->nov].re, msg, sizeof msg);
        err_set(err, ERR_ARG, "bad regular expression '%s': %s", pat, msg);
        free(pat);
        return -1;
    }
    free(pat);
    o[r->nov].fmt = strdup(eq + 1);
    if (!o[r->nov].fmt) {
        regfree(&o[r->nov].re);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    r->nov++;
    snprintf(r->name, sizeof r->name, "%s+custom", r->p->name);
    return 0;
}

void recipe_format(const recipe *r, const char *name, rc_class cls, int moe_index, char *out, size_t n) {
    const preset *p = r->p;
    const char *f = "bf16";
    switch (cls) {
    case RC_EMBED: f = p->embed; break;
    case RC_HEAD: f = p->head; break;
    case RC_ATTN: f = p->attn; break;
    case RC_DENSE: f = p->dense; break;
    case RC_SHARED: f = p->shared; break;
    case RC_EXPERTS: f = moe_index >= 0 && moe_index < p->n_early ? p->experts_early : p->experts; break;
    case RC_ROUTER: snprintf(out, n, "f32"); return;
    case RC_VECTOR: snprintf(out, n, "bf16"); return;
    }
    for (int i = r->nov - 1; i >= 0; i--)
        if (regexec(&r->ov[i].re, name, 0, NULL, 0) == 0) {
            f = r->ov[i].fmt;
            break;
        }
    snprintf(out, n, "%s", f);
}
