/* app/cmd_run.c: `ernie run MODEL`: one-shot generation for pipes and scripts. Only the generated text
 * (or ids) goes to stdout; everything else goes to stderr. */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "device.h"
#include "generate.h"
#include "model_load.h"
#include "sampling_flags.h"
#include "stopstr.h"
#include "textbuf.h"
#include "tokenizer/chat.h"

enum { R_PROMPT = 1, R_FILE, R_NTOK, R_RAW, R_SYSTEM, R_STATS, R_OUTPUT, R_DUMP, R_CTX, R_STOP };

static const cli_opt run_opts[] = {
    {"prompt", 'p', "TEXT", "the prompt (else -f, else standard input)", R_PROMPT, 0},
    {"file", 'f', "FILE", "read the prompt from FILE", R_FILE, 0},
    {"max-tokens", 'n', "N", "stop after N new tokens (default: until the model stops or the context ends)", R_NTOK, 0},
    {"raw", 0, NULL, "no chat template: the text is the whole prompt, special tokens in it are parsed", R_RAW, 0},
    {"system", 's', "TEXT", "system prompt for the chat framing", R_SYSTEM, 0},
    {"ctx", 'c', "N", "context size in tokens (default: 4096, or more when the prompt needs it)", R_CTX, 0},
    {"stats", 0, NULL, "print prompt and generation speed on stderr", R_STATS, 0},
    {"output", 0, "text|ids", "print the text (default) or the generated token ids", R_OUTPUT, 0},
    {"stop", 0, "TEXT", "stop where the text contains TEXT, which is not printed (up to 8 --stop)", R_STOP, 1},
    {"dump-logits", 0, "PATH", "write the logits of every prompt position (float32 LE, [tokens x vocab])", R_DUMP, 0},
    SAMPLING_OPTS,
    {NULL, 0, NULL, NULL, 0, 0},
};

const cli_command CMD_RUN = {
    .name = "run",
    .usage = "MODEL [-p TEXT | -f FILE] [options]",
    .summary = "One-shot generation for pipes and scripts; only the generated text goes to stdout",
    .details = "MODEL is a model file made by `ernie import`, or `demo` for the built-in demo model.\n"
               "Examples:\n"
               "  ernie run model.ernie -p \"Why is the sky blue?\"\n"
               "  echo \"Summarise: ...\" | ernie run model.ernie --temp 0 -n 200\n"
               "  ernie run model.ernie --raw -p \"Once upon a time\" --output ids\n"
               "  ernie run model.ernie -p \"List three colours, one per line.\" --stop $'\\n\\n'\n"
               "With --json, stdout gets one object at the end instead of the stream: the text (or the ids), why it\n"
               "stopped (stop_token, length, context, stop_string, interrupt), token counts and seconds.",
    .opts = run_opts,
};

typedef struct {
    const char *prompt, *file, *system, *output, *dump;
    long long ntok, ctx;
    int raw, stats;
    sampling_flags sf;
    stopstr stops;
} run_args;

static int on_opt(void *c, int key, const char *v) {
    run_args *a = c;
    switch (key) {
    case R_PROMPT: a->prompt = v; return 0;
    case R_FILE: a->file = v; return 0;
    case R_SYSTEM: a->system = v; return 0;
    case R_RAW: a->raw = 1; return 0;
    case R_STATS: a->stats = 1; return 0;
    case R_DUMP: a->dump = v; return 0;
    case R_STOP:
        if (!*v) return cli_usage_error(&CMD_RUN, "--stop needs a non-empty TEXT");
        if (stopstr_add(&a->stops, v)) return cli_usage_error(&CMD_RUN, "at most %d --stop", STOPSTR_MAX);
        return 0;
    case R_NTOK: return cli_int(&CMD_RUN, "-n/--max-tokens", v, 1, 1 << 30, &a->ntok);
    case R_CTX: return cli_int(&CMD_RUN, "-c/--ctx", v, 16, 1 << 24, &a->ctx);
    case R_OUTPUT:
        if (strcmp(v, "text") && strcmp(v, "ids"))
            return cli_usage_error(&CMD_RUN, "invalid value '%s' for --output: expected text or ids", v);
        a->output = v;
        return 0;
    }
    int r = sampling_flag(&CMD_RUN, &a->sf, key, v);
    return r == 1 ? 0 : r;
}

static char *read_all(FILE *f, size_t *len) {
    size_t cap = 4096, n = 0;
    char *b = malloc(cap + 1);
    if (!b) return NULL;
    for (;;) {
        if (n == cap) {
            char *nb = realloc(b, cap * 2 + 1);
            if (!nb) return free(b), NULL;
            b = nb, cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    if (ferror(f)) return free(b), NULL;
    b[n] = 0;
    *len = n;
    return b;
}

static volatile sig_atomic_t interrupted;
static void on_sigint(int s) {
    (void)s;
    interrupted = 1;
}

typedef struct {
    int ids;
    int first;
    stopstr *stops;
    int oom;
    int json;     /* --json: collect, print one object at the end */
    textbuf text; /* the collected text (json) */
    json_t *idv;  /* the collected ids (json) */
} out_ctx;

static void write_out(void *c, const char *s, size_t n) {
    out_ctx *o = c;
    if (!o->json) {
        fwrite(s, 1, n, stdout);
        fflush(stdout);
    } else if (textbuf_append(&o->text, s, n)) {
        o->oom = 1;
    }
}

static void put_text(void *c, const char *s, size_t n) {
    out_ctx *o = c;
    if (stopstr_feed(o->stops, s, n, write_out, o) < 0) o->oom = 1;
}

static int stop_now(void *c) {
    out_ctx *o = c;
    return o->stops->hit || o->oom;
}

static void put_id(void *c, int32_t id) {
    out_ctx *o = c;
    if (o->json) {
        if (json_array_append_new(o->idv, json_integer(id))) o->oom = 1;
        return;
    }
    printf(o->first ? "%d" : " %d", id);
    o->first = 0;
    fflush(stdout);
}

static const char *stop_name(gen_stop s) {
    switch (s) {
    case GEN_STOP_TOKEN: return "stop_token";
    case GEN_STOP_LENGTH: return "length";
    case GEN_STOP_CONTEXT: return "context";
    case GEN_STOP_INTERRUPT: return "interrupt";
    case GEN_STOP_TEXT: return "stop_string";
    }
    return "?";
}

/* --json: the whole result as one object on stdout (the text, or the ids, and why and how fast). */
static int print_json(out_ctx *o, const gen_stats *st) {
    json_t *r = json_object();
    if (!r) return -1;
    int bad = 0;
    if (o->ids) bad |= json_object_set(r, "ids", o->idv);
    else bad |= json_object_set_new(r, "text", json_stringn(o->text.buf ? o->text.buf : "", o->text.len));
    bad |= json_object_set_new(r, "stop", json_string(stop_name(st->stop)));
    bad |= json_object_set_new(r, "prompt_tokens", json_integer(st->n_prompt));
    bad |= json_object_set_new(r, "generated_tokens", json_integer(st->n_gen));
    bad |= json_object_set_new(r, "prompt_seconds", json_real(st->t_prompt));
    bad |= json_object_set_new(r, "generation_seconds", json_real(st->t_gen));
    char *js = bad ? NULL : json_dumps(r, JSON_PRESERVE_ORDER);
    json_decref(r);
    if (!js) return -1;
    printf("%s\n", js);
    free(js);
    return 0;
}

int cmd_run(int argc, char **argv, cli_global *g) {
    run_args a = {0};
    a.output = "text";
    const char *pos[4];
    int np = 0;
    int r = cli_parse(&CMD_RUN, argc, argv, g, on_opt, &a, pos, 1, &np);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_RUN);
        return EXIT_OK;
    }
    if (np < 1) return cli_usage_error(&CMD_RUN, "missing MODEL (a model file, or 'demo')");
    if (a.prompt && a.file) return cli_usage_error(&CMD_RUN, "give -p or -f, not both");
    if (a.raw && a.system) return cli_usage_error(&CMD_RUN, "--system has no meaning with --raw");
    if (a.stops.n && !strcmp(a.output, "ids")) return cli_usage_error(&CMD_RUN, "--stop works on text, not with --output ids");
    err_t derr = {0};
    if (app_device_check(g->device, &derr)) return cli_fail("run: %s", derr.msg);

    out_ctx oc = {.ids = !strcmp(a.output, "ids"), .first = 1, .stops = &a.stops, .json = g->json};
    /* the prompt text */
    char *text = NULL;
    size_t tlen = 0;
    if (a.prompt) {
        text = strdup(a.prompt);
        tlen = strlen(text);
    } else if (a.file) {
        FILE *f = !strcmp(a.file, "-") ? stdin : fopen(a.file, "rb");
        if (!f) return cli_fail("run: %s: %s", a.file, strerror(errno));
        text = read_all(f, &tlen);
        if (f != stdin) fclose(f);
        if (!text) return cli_fail("run: %s: cannot read", a.file);
    } else {
        if (isatty(0)) return cli_usage_error(&CMD_RUN, "no prompt: give -p TEXT, -f FILE, or pipe text in");
        text = read_all(stdin, &tlen);
        if (!text) return cli_fail("run: cannot read standard input");
    }

    err_t err = {0};
    loaded_model *m = NULL;
    gen_session gs = {0};
    float *dump = NULL;
    int rc = EXIT_FAIL;
    if (model_load(&m, pos[0], g->threads, &err)) {
        cli_fail("run: %s", err.msg);
        goto out;
    }
    const tok *t = model_tok(m);
    tok_ids ids = {0};
    if (a.raw) {
        if (tok_encode(t, text, tlen, TOK_PARSE_SPECIAL, &ids, &err)) {
            cli_fail("run: prompt: %s", err.msg);
            goto out;
        }
    } else {
        chat_msg msgs[2];
        int n = 0;
        if (a.system) msgs[n++] = (chat_msg){"system", a.system};
        /* a trailing newline from a pipe is not part of the question */
        while (tlen && (text[tlen - 1] == '\n' || text[tlen - 1] == '\r')) text[--tlen] = 0;
        msgs[n++] = (chat_msg){"user", text};
        if (chat_encode(t, msgs, (size_t)n, 1, &ids, &err)) {
            cli_fail("run: prompt: %s", err.msg);
            goto out;
        }
    }
    if (ids.n == 0) {
        cli_fail("run: the prompt is empty");
        tok_ids_free(&ids);
        goto out;
    }
    int maxpos = model_max_positions(m);
    long long want = (long long)ids.n + (a.ntok ? a.ntok : 256) + 1;
    long long ctx = a.ctx ? a.ctx : (want > 4096 ? want : 4096);
    if (ctx > maxpos) ctx = maxpos;
    if ((long long)ids.n >= ctx) {
        cli_fail("run: the prompt has %zu tokens but the context holds %lld%s", ids.n, ctx,
                 a.ctx ? " (raise -c)" : "");
        tok_ids_free(&ids);
        goto out;
    }
    sampler_params sp = sampling_resolve(&a.sf, model_gen_defaults(m));
    if (gen_session_open(&gs, m, g->threads, (int)ctx, &sp, &err)) {
        cli_fail("run: %s", err.msg);
        tok_ids_free(&ids);
        goto out;
    }
    if (a.dump && !(dump = malloc(ids.n * (size_t)model_config(m)->vocab * sizeof(float)))) {
        cli_fail("run: out of memory for --dump-logits");
        tok_ids_free(&ids);
        goto out;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    if (oc.json && oc.ids && !(oc.idv = json_array())) {
        cli_fail("run: out of memory");
        tok_ids_free(&ids);
        goto out;
    }
    gen_opts go = {.max_new = (int)a.ntok, .interrupt = &interrupted, .ctx = &oc, .decode_flags = TOK_DEC_SKIP_SPECIAL};
    if (oc.ids) go.on_id = put_id;
    else go.on_text = put_text, go.stop_now = stop_now;
    gen_stats st;
    int grc = gen_run(&gs, ids.v, ids.n, &go, &st, dump, &err);
    if (!oc.ids) stopstr_finish(&a.stops, write_out, &oc);
    tok_ids_free(&ids);
    if (oc.oom && !grc) grc = err_set(&err, ERR_NOMEM, "out of memory");
    if (!oc.json && (oc.ids || st.n_gen)) putchar('\n');
    fflush(stdout);
    if (grc) {
        cli_fail("run: %s", err.msg);
        goto out;
    }
    if (a.dump) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp-%d", a.dump, (int)getpid());
        FILE *f = fopen(tmp, "wb");
        size_t nbytes = (size_t)st.n_prompt * model_config(m)->vocab * sizeof(float);
        if (!f || fwrite(dump, 1, nbytes, f) != nbytes || fclose(f) != 0 || rename(tmp, a.dump) != 0) {
            unlink(tmp);
            cli_fail("run: --dump-logits %s: %s", a.dump, strerror(errno));
            goto out;
        }
    }
    if (oc.json && print_json(&oc, &st)) {
        cli_fail("run: out of memory for --json");
        goto out;
    }
    if (st.stop == GEN_STOP_CONTEXT) cli_warn("run: stopped at the end of the context (%lld tokens; raise -c)", ctx);
    if (a.stats)
        fprintf(stderr, "prompt: %d tokens in %.2fs (%.1f tok/s); generation: %d tokens in %.2fs (%.1f tok/s)\n",
                st.n_prompt, st.t_prompt, st.t_prompt > 0 ? st.n_prompt / st.t_prompt : 0, st.n_gen, st.t_gen,
                st.t_gen > 0 ? st.n_gen / st.t_gen : 0);
    rc = st.stop == GEN_STOP_INTERRUPT ? 130 : EXIT_OK;
out:
    stopstr_free(&a.stops);
    textbuf_free(&oc.text);
    json_decref(oc.idv);
    free(dump);
    free(text);
    gen_session_free(&gs);
    model_unload(m);
    return rc;
}
