/* app/cmd_chat.c: `ernie chat [MODEL]`: the interactive chat. Replies stream to stdout; the banner,
 * notices and speed lines go to stderr. Works the same with stdin from a pipe (no line editing, no
 * colours), which is how it is tested. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "device.h"
#include "conv.h"
#include "generate.h"
#include "lineedit.h"
#include "model_load.h"
#include "sampling_flags.h"
#include "term.h"
#include "textbuf.h"
#include "tokenizer/chat.h"

enum { C_SYSTEM = 1, C_CTX, C_NTOK, C_NOHIST };

static const cli_opt chat_opts[] = {
    {"system", 's', "TEXT", "system prompt", C_SYSTEM, 0},
    {"ctx", 'c', "N", "context size in tokens (default 4096, at most the model's)", C_CTX, 0},
    {"max-tokens", 'n', "N", "longest reply in tokens (default: until the model stops)", C_NTOK, 0},
    {"no-history", 0, NULL, "do not read or write the input history file", C_NOHIST, 0},
    SAMPLING_OPTS,
    {NULL, 0, NULL, NULL, 0, 0},
};

const cli_command CMD_CHAT = {
    .name = "chat",
    .usage = "[MODEL] [options]",
    .summary = "Interactive chat in the terminal (no MODEL: the built-in demo model)",
    .details = "Type a message and press Enter. End a line with \\ to continue it, or put \"\"\" on a line of its\n"
               "own to start and end a block. Ctrl-C stops a reply; Ctrl-D or /exit quits. /help lists the\n"
               "commands. The input history is kept in $XDG_STATE_HOME/ernie/history.",
    .opts = chat_opts,
};

static const char *help_text =
    "/help                 this list\n"
    "/clear                start a new conversation (keeps the system prompt)\n"
    "/system TEXT          set the system prompt (empty: none) and start over\n"
    "/regen                answer the last message again\n"
    "/save FILE            save the conversation as JSON\n"
    "/load FILE            load a conversation saved with /save\n"
    "/set NAME VALUE       temp, top_p, top_k, min_p, repeat_penalty or seed\n"
    "/stats                speed of the last reply and of the session\n"
    "/exit                 quit (so does Ctrl-D)\n";

typedef struct {
    const char *system;
    long long ctx, ntok;
    int nohist;
    sampling_flags sf;
} chat_args;

static int on_opt(void *c, int key, const char *v) {
    chat_args *a = c;
    switch (key) {
    case C_SYSTEM: a->system = v; return 0;
    case C_CTX: return cli_int(&CMD_CHAT, "-c/--ctx", v, 64, 1 << 24, &a->ctx);
    case C_NTOK: return cli_int(&CMD_CHAT, "-n/--max-tokens", v, 1, 1 << 30, &a->ntok);
    case C_NOHIST: a->nohist = 1; return 0;
    }
    int r = sampling_flag(&CMD_CHAT, &a->sf, key, v);
    return r == 1 ? 0 : r;
}

static volatile sig_atomic_t interrupted;
static void on_sigint(int s) {
    (void)s;
    interrupted = 1;
}

static void on_text(void *c, const char *s, size_t n) {
    fwrite(s, 1, n, stdout);
    fflush(stdout);
    (void)textbuf_append(c, s, n); /* out of memory: the reply is shown but not kept in the conversation */
}

typedef struct {
    gen_session gs;
    sampler_params sp;
    conv cv;
    const tok *t;
    int ctx, max_new;
    gen_stats last;
    long long tot_gen;
    double tot_time;
} chat_state;

/* The whole conversation as prompt ids, dropping the oldest turns until it fits with room to reply. */
static int build_prompt(chat_state *s, tok_ids *ids, err_t *err) {
    int reserve = s->max_new > 0 && s->max_new < s->ctx / 2 ? s->max_new : s->ctx / 4;
    int dropped = 0;
    for (;;) {
        chat_msg *m = malloc(((size_t)s->cv.n + 1) * sizeof *m);
        if (!m) return err_set(err, ERR_NOMEM, "out of memory");
        size_t n = 0;
        if (s->cv.system) m[n++] = (chat_msg){"system", s->cv.system};
        for (int i = 0; i < s->cv.n; i++) m[n++] = (chat_msg){s->cv.msg[i].role, s->cv.msg[i].content};
        ids->n = 0;
        int rc = chat_encode(s->t, m, n, 1, ids, err);
        free(m);
        if (rc) return -1;
        if ((int)ids->n + reserve <= s->ctx) break;
        if (s->cv.n <= 1) {
            if ((int)ids->n < s->ctx) break; /* a shorter reply is still possible */
            return err_set(err, ERR_ARG, "the message is %zu tokens, more than the context of %d holds", ids->n, s->ctx);
        }
        conv_drop_oldest(&s->cv);
        dropped++;
    }
    if (dropped)
        fprintf(stderr, "%s(the conversation outgrew the context: dropped the oldest %d message%s)%s\n",
                term_sgr(stderr, T_DIM), dropped, dropped > 1 ? "s" : "", term_sgr(stderr, T_RESET));
    return 0;
}

static void reply(chat_state *s) {
    err_t err = {0};
    tok_ids ids = {0};
    if (build_prompt(s, &ids, &err)) {
        fprintf(stderr, "ernie: chat: %s\n", err.msg);
        conv_pop(&s->cv);
        tok_ids_free(&ids);
        return;
    }
    textbuf tb = {0};
    gen_opts go = {.max_new = s->max_new, .interrupt = &interrupted, .on_text = on_text, .ctx = &tb,
                   .decode_flags = TOK_DEC_SKIP_SPECIAL | TOK_DEC_CONTINUATION};
    interrupted = 0;
    int rc = gen_run(&s->gs, ids.v, ids.n, &go, &s->last, NULL, &err);
    tok_ids_free(&ids);
    printf("\n");
    fflush(stdout);
    if (rc) {
        fprintf(stderr, "ernie: chat: %s\n", err.msg);
    } else {
        conv_add(&s->cv, "assistant", tb.buf ? tb.buf : "");
        s->tot_gen += s->last.n_gen;
        s->tot_time += s->last.t_gen;
        if (s->last.stop == GEN_STOP_INTERRUPT) fprintf(stderr, "(stopped)\n");
        if (s->last.stop == GEN_STOP_CONTEXT) fprintf(stderr, "(the reply reached the end of the context)\n");
        if (term_isatty(stderr))
            fprintf(stderr, "%s%d tokens, %.1f tok/s (prompt %d tokens, %.1f tok/s)%s\n", term_sgr(stderr, T_DIM),
                    s->last.n_gen, s->last.t_gen > 0 ? s->last.n_gen / s->last.t_gen : 0, s->last.n_prompt,
                    s->last.t_prompt > 0 ? s->last.n_prompt / s->last.t_prompt : 0, term_sgr(stderr, T_RESET));
    }
    textbuf_free(&tb);
}

static int set_param(chat_state *s, const char *args) {
    char name[32];
    double v;
    if (sscanf(args, "%31s %lf", name, &v) != 2) {
        fprintf(stderr, "usage: /set temp|top_p|top_k|min_p|repeat_penalty|seed VALUE\n");
        return -1;
    }
    sampler_params p = s->sp;
    if (!strcmp(name, "temp") && v >= 0) p.temp = (float)v;
    else if (!strcmp(name, "top_p") && v > 0 && v <= 1) p.top_p = (float)v;
    else if (!strcmp(name, "top_k") && v >= 0) p.top_k = (int)v;
    else if (!strcmp(name, "min_p") && v >= 0 && v <= 1) p.min_p = (float)v;
    else if (!strcmp(name, "repeat_penalty") && v > 0) p.repeat_penalty = (float)v;
    else if (!strcmp(name, "seed") && v >= 0) p.seed = (uint64_t)v;
    else {
        fprintf(stderr, "cannot set %s to %g\n", name, v);
        return -1;
    }
    s->sp = p;
    sampler_set_params(s->gs.s, &p);
    fprintf(stderr, "%s = %g\n", name, v);
    return 0;
}

/* Returns 1 to quit. */
static int chat_command(chat_state *s, char *line) {
    char *arg = strchr(line, ' ');
    if (arg) *arg++ = 0;
    else arg = line + strlen(line);
    err_t err = {0};
    if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) return 1;
    if (!strcmp(line, "/help")) fputs(help_text, stderr);
    else if (!strcmp(line, "/clear")) {
        conv_clear(&s->cv);
        fprintf(stderr, "(new conversation)\n");
    } else if (!strcmp(line, "/system")) {
        conv_set_system(&s->cv, arg);
        conv_clear(&s->cv);
        fprintf(stderr, *arg ? "(system prompt set; new conversation)\n" : "(no system prompt; new conversation)\n");
    } else if (!strcmp(line, "/regen")) {
        if (s->cv.n && !strcmp(s->cv.msg[s->cv.n - 1].role, "assistant")) conv_pop(&s->cv);
        if (!s->cv.n) fprintf(stderr, "(nothing to answer yet)\n");
        else reply(s);
    } else if (!strcmp(line, "/save")) {
        if (!*arg) fprintf(stderr, "usage: /save FILE\n");
        else if (conv_save(&s->cv, arg, &err)) fprintf(stderr, "ernie: chat: %s\n", err.msg);
        else fprintf(stderr, "(saved %d messages to %s)\n", s->cv.n, arg);
    } else if (!strcmp(line, "/load")) {
        if (!*arg) fprintf(stderr, "usage: /load FILE\n");
        else if (conv_load(&s->cv, arg, &err)) fprintf(stderr, "ernie: chat: %s\n", err.msg);
        else fprintf(stderr, "(loaded %d messages from %s)\n", s->cv.n, arg);
    } else if (!strcmp(line, "/set")) {
        set_param(s, arg);
    } else if (!strcmp(line, "/stats")) {
        fprintf(stderr, "last reply: %d tokens in %.2fs (%.1f tok/s), prompt %d tokens in %.2fs\n", s->last.n_gen,
                s->last.t_gen, s->last.t_gen > 0 ? s->last.n_gen / s->last.t_gen : 0, s->last.n_prompt, s->last.t_prompt);
        fprintf(stderr, "session: %lld tokens generated, %.1f tok/s; context %d of %d in use\n", s->tot_gen,
                s->tot_time > 0 ? s->tot_gen / s->tot_time : 0, eng_n_past(s->gs.e), s->ctx);
    } else {
        fprintf(stderr, "unknown command %s (try /help)\n", line);
    }
    return 0;
}

int cmd_chat(int argc, char **argv, cli_global *g) {
    chat_args a = {0};
    const char *pos[2];
    int np = 0;
    int r = cli_parse(&CMD_CHAT, argc, argv, g, on_opt, &a, pos, 1, &np);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_CHAT);
        return EXIT_OK;
    }
    if (g->json) return cli_usage_error(&CMD_CHAT, "--json has no meaning for a chat (for scripts: ernie run --json)");
    const char *path = np ? pos[0] : "demo";
    err_t err = {0};
    loaded_model *m = NULL;
    chat_state s = {0};
    lineedit *le = NULL;
    int rc = EXIT_FAIL;
    if (app_device_check(g->device, &err)) return cli_fail("chat: %s", err.msg);
    if (model_load(&m, path, g->threads, &err)) {
        cli_fail("chat: %s", err.msg);
        goto out;
    }
    int maxpos = model_max_positions(m);
    s.ctx = (int)(a.ctx ? a.ctx : 4096);
    if (s.ctx > maxpos) s.ctx = maxpos;
    s.max_new = (int)a.ntok;
    s.t = model_tok(m);
    s.sp = sampling_resolve(&a.sf, model_gen_defaults(m));
    if (gen_session_open(&s.gs, m, g->threads, s.ctx, &s.sp, &err)) {
        cli_fail("chat: %s", err.msg);
        goto out;
    }
    conv_init(&s.cv);
    if (a.system) conv_set_system(&s.cv, a.system);
    le = le_open(a.nohist ? NULL : le_default_history());
    int tty = le_interactive(le);
    fprintf(stderr, "%s%s%s\n", term_sgr(stderr, T_BOLD), model_describe(m), term_sgr(stderr, T_RESET));
    if (model_is_demo(m))
        fprintf(stderr, "This is a tiny demo model built into ernie (7.7M parameters, trained on the King James Bible,\n"
                        "fortunes and Tang poems): expect fortunes and verses, not wisdom. To chat with ERNIE-4.5 itself,\n"
                        "download a checkpoint and run: ernie import ERNIE-4.5-21B-A3B-PT -o ernie.ernie; ernie chat ernie.ernie\n");
    fprintf(stderr, "Context %d tokens. /help for commands, Ctrl-D to quit.\n", s.ctx);
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    for (;;) {
        int intr = 0;
        char *line = le_read(le, tty ? "> " : "", tty ? "... " : "", &intr);
        if (!line) {
            if (intr) {
                interrupted = 0;
                fprintf(stderr, "\n");
                continue;
            }
            break;
        }
        if (!*line) {
            free(line);
            continue;
        }
        le_remember(le, line);
        if (line[0] == '/') {
            int quit = chat_command(&s, line);
            free(line);
            if (quit) break;
            continue;
        }
        conv_add(&s.cv, "user", line);
        free(line);
        reply(&s);
    }
    if (tty) fprintf(stderr, "\n");
    rc = EXIT_OK;
out:
    le_close(le);
    conv_free(&s.cv);
    gen_session_free(&s.gs);
    model_unload(m);
    return rc;
}
