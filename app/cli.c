/* app/cli.c: argument parsing and usage errors. This is the one place that knows the spelling of
 * flags; commands only see keys and values. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "term.h"

enum { G_DEVICE = -1, G_THREADS = -2, G_VERBOSE = -3, G_NOCOLOR = -4, G_JSON = -5, G_HELP = -6 };

static const cli_opt global_opts[] = {
    {"device", 0, "DEV", "where to compute: auto, cpu, cuda or cuda:N (default auto)", G_DEVICE, 0},
    {"threads", 't', "N", "CPU threads (default: all cores)", G_THREADS, 0},
    {"verbose", 'v', NULL, "say more on stderr", G_VERBOSE, 0},
    {"no-color", 0, NULL, "no colours (also when NO_COLOR is set)", G_NOCOLOR, 0},
    {"json", 0, NULL, "print the report as JSON on stdout", G_JSON, 0},
    {"help", 'h', NULL, "show this help", G_HELP, 0},
    {NULL, 0, NULL, NULL, 0, 0},
};

void cli_global_init(cli_global *g) {
    memset(g, 0, sizeof *g);
    g->device = "auto";
    g->color = 1;
}

const char *cli_flag_name(const cli_opt *o, char *buf, int n) {
    if (o->sname && o->lname) snprintf(buf, (size_t)n, "-%c/--%s", o->sname, o->lname);
    else if (o->lname) snprintf(buf, (size_t)n, "--%s", o->lname);
    else snprintf(buf, (size_t)n, "-%c", o->sname);
    return buf;
}

int cli_usage_error(const cli_command *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%sernie:%s ", term_sgr(stderr, T_RED), term_sgr(stderr, T_RESET));
    if (cmd) fprintf(stderr, "%s: ", cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd) fprintf(stderr, " (see 'ernie %s --help')\n", cmd->name);
    else fprintf(stderr, " (see 'ernie --help')\n");
    return EXIT_USAGE;
}

int cli_fail(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%sernie:%s ", term_sgr(stderr, T_RED), term_sgr(stderr, T_RESET));
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_FAIL;
}

void cli_warn(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%sernie: warning:%s ", term_sgr(stderr, T_YELLOW), term_sgr(stderr, T_RESET));
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_verbose(const cli_global *g, const char *fmt, ...) {
    if (!g || !g->verbose) return;
    va_list ap;
    fprintf(stderr, "%s", term_sgr(stderr, T_DIM));
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", term_sgr(stderr, T_RESET));
}

int cli_int(const cli_command *cmd, const char *flag, const char *s, long long min, long long max, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno == ERANGE || v < min || v > max)
        return cli_usage_error(cmd, "invalid value '%s' for %s: expected an integer from %lld to %lld", s, flag, min, max);
    *out = v;
    return 0;
}

int cli_double(const cli_command *cmd, const char *flag, const char *s, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno == ERANGE || !isfinite(v) || v < min || v > max)
        return cli_usage_error(cmd, "invalid value '%s' for %s: expected a number from %g to %g", s, flag, min, max);
    *out = v;
    return 0;
}

static int valid_device(const char *d) {
    if (!strcmp(d, "auto") || !strcmp(d, "cpu") || !strcmp(d, "cuda")) return 1;
    if (strncmp(d, "cuda:", 5) == 0 && d[5]) {
        for (const char *p = d + 5; *p; p++)
            if (*p < '0' || *p > '9') return 0;
        return strlen(d + 5) <= 3;
    }
    return 0;
}

static int apply_global(const cli_command *cmd, cli_global *g, const cli_opt *o, const char *val) {
    char fb[64];
    long long v;
    switch (o->key) {
    case G_DEVICE:
        if (!valid_device(val))
            return cli_usage_error(cmd, "invalid value '%s' for --device: expected auto, cpu, cuda or cuda:N", val);
        g->device = val;
        return 0;
    case G_THREADS:
        if (cli_int(cmd, cli_flag_name(o, fb, sizeof fb), val, 1, 4096, &v)) return EXIT_USAGE;
        g->threads = (int)v;
        return 0;
    case G_VERBOSE: g->verbose = 1; return 0;
    case G_NOCOLOR: g->color = 0; return 0;
    case G_JSON: g->json = 1; return 0;
    case G_HELP: g->help = 1; return 0;
    }
    return 0;
}

static const cli_opt *find_long(const cli_opt *tab, const char *name, size_t len) {
    for (const cli_opt *o = tab; o && o->key; o++)
        if (o->lname && strlen(o->lname) == len && !strncmp(o->lname, name, len)) return o;
    return NULL;
}

static const cli_opt *find_short(const cli_opt *tab, char c) {
    for (const cli_opt *o = tab; o && o->key; o++)
        if (o->sname == c) return o;
    return NULL;
}

int cli_parse(const cli_command *cmd, int argc, char **argv, cli_global *g, cli_on_opt on_opt, void *ctx,
              const char **pos, int max_pos, int *npos) {
    int np = 0, only_pos = 0;
    unsigned char seen[256] = {0}; /* by option index, to refuse repeats of single-valued options */
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const cli_opt *o = NULL;
        const char *val = NULL;
        char spelled[80];
        if (only_pos || a[0] != '-' || a[1] == 0) {
            if (max_pos >= 0 && np >= max_pos) return cli_usage_error(cmd, "unexpected argument '%s'", a);
            if (pos) pos[np] = a;
            np++;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = 1;
            continue;
        }
        if (a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            o = find_long(cmd ? cmd->opts : NULL, name, len);
            if (!o) o = find_long(global_opts, name, len);
            if (!o) return cli_usage_error(cmd, "unknown option '--%.*s'", (int)len, name);
            snprintf(spelled, sizeof spelled, "--%s", o->lname);
            if (o->arg) {
                if (eq) val = eq + 1;
                else if (i + 1 < argc) val = argv[++i];
                else return cli_usage_error(cmd, "option '%s' needs a value (%s)", spelled, o->arg);
            } else if (eq) {
                return cli_usage_error(cmd, "option '%s' takes no value", spelled);
            }
        } else {
            /* Short options: "-v", "-t4", "-t 4"; clusters of flags like "-vh". */
            for (const char *p = a + 1; *p; p++) {
                o = find_short(cmd ? cmd->opts : NULL, *p);
                if (!o) o = find_short(global_opts, *p);
                if (!o) return cli_usage_error(cmd, "unknown option '-%c'", *p);
                snprintf(spelled, sizeof spelled, "-%c", *p);
                if (o->arg) {
                    if (p[1]) val = p + 1;
                    else if (i + 1 < argc) val = argv[++i];
                    else return cli_usage_error(cmd, "option '%s' needs a value (%s)", spelled, o->arg);
                    break;
                }
                if (p[1]) { /* a flag inside a cluster: apply it now and go on */
                    int r = o->key < 0 ? apply_global(cmd, g, o, NULL) : on_opt(ctx, o->key, NULL);
                    if (r) return r;
                    if (g->help) return 0;
                    o = NULL;
                }
            }
            if (!o) continue;
        }
        int idx = o->key < 0 ? 128 - o->key : o->key;
        if (idx >= 0 && idx < 256) {
            if (seen[idx] && !o->repeat && o->arg && o->key > 0)
                return cli_usage_error(cmd, "option '%s' given twice", spelled);
            seen[idx] = 1;
        }
        int r = o->key < 0 ? apply_global(cmd, g, o, val) : (on_opt ? on_opt(ctx, o->key, val) : 0);
        if (r) return r;
        if (g->help) return 0;
    }
    if (npos) *npos = np;
    return 0;
}

static void print_opts(const cli_opt *tab) {
    for (const cli_opt *o = tab; o && o->key; o++) {
        char left[96];
        int n = 0;
        if (o->sname) n += snprintf(left + n, sizeof left - (size_t)n, "-%c%s", o->sname, o->lname ? ", " : "");
        else n += snprintf(left + n, sizeof left - (size_t)n, "    ");
        if (o->lname) n += snprintf(left + n, sizeof left - (size_t)n, "--%s", o->lname);
        if (o->arg) snprintf(left + n, sizeof left - (size_t)n, " %s", o->arg);
        printf("  %-26s %s\n", left, o->help);
    }
}

void cli_print_global_help(void) {
    printf("Global options (any command):\n");
    print_opts(global_opts);
}

void cli_print_help(const cli_command *cmd) {
    printf("Usage: ernie %s %s\n\n%s\n", cmd->name, cmd->usage, cmd->summary);
    if (cmd->details) printf("\n%s\n", cmd->details);
    if (cmd->opts && cmd->opts->key) {
        printf("\nOptions:\n");
        print_opts(cmd->opts);
    }
    printf("\n");
    cli_print_global_help();
}

static int ignore_opt(void *ctx, int key, const char *value) {
    (void)ctx, (void)key, (void)value;
    return 0;
}

int cli_help_only(const cli_command *cmd, int argc, char **argv, cli_global *g, const char *why) {
    int r = cli_parse(cmd, argc, argv, g, ignore_opt, NULL, NULL, 0, NULL);
    if (r) return r;
    if (g->help) {
        cli_print_help(cmd);
        return EXIT_OK;
    }
    return cli_fail("%s: %s", cmd->name, why);
}
