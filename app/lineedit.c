/* app/lineedit.c */
#include "lineedit.h"

#include <errno.h>
#include <histedit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct lineedit {
    EditLine *el;
    History *hist;
    char *hist_path;
    const char *prompt;
};

static const char *le_prompt_fn(EditLine *el) {
    lineedit *le = NULL;
    el_get(el, EL_CLIENTDATA, &le);
    return le && le->prompt ? le->prompt : "> ";
}

lineedit *le_open(const char *history_path) {
    lineedit *le = calloc(1, sizeof *le);
    if (!le) return NULL;
    if (isatty(0) && isatty(1)) {
        le->el = el_init("ernie", stdin, stdout, stderr);
        le->hist = history_init();
        if (le->el && le->hist) {
            HistEvent ev;
            history(le->hist, &ev, H_SETSIZE, 2000);
            history(le->hist, &ev, H_SETUNIQUE, 1);
            el_set(le->el, EL_CLIENTDATA, le);
            el_set(le->el, EL_PROMPT, le_prompt_fn);
            el_set(le->el, EL_EDITOR, "emacs");
            el_set(le->el, EL_HIST, history, le->hist);
            el_set(le->el, EL_SIGNAL, 1); /* restore the terminal on signals */
            el_source(le->el, NULL);      /* ~/.editrc, as users of libedit expect */
            if (history_path) {
                le->hist_path = strdup(history_path);
                history(le->hist, &ev, H_LOAD, history_path);
            }
        } else {
            if (le->el) el_end(le->el);
            if (le->hist) history_end(le->hist);
            le->el = NULL;
            le->hist = NULL;
        }
    }
    return le;
}

void le_close(lineedit *le) {
    if (!le) return;
    if (le->el) el_end(le->el);
    if (le->hist) history_end(le->hist);
    free(le->hist_path);
    free(le);
}

int le_interactive(const lineedit *le) { return le && le->el; }

/* One physical line: malloc'd, newline stripped; NULL at EOF or interrupt. */
static char *read_line(lineedit *le, const char *prompt, int *interrupted) {
    if (le->el) {
        le->prompt = prompt;
        int n = 0;
        errno = 0;
        const char *s = el_gets(le->el, &n);
        if (!s) {
            if (n < 0 && errno == EINTR) *interrupted = 1;
            return NULL;
        }
        char *r = strdup(s);
        size_t len = strlen(r);
        if (len && r[len - 1] == '\n') r[len - 1] = 0;
        return r;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    if (n && line[n - 1] == '\n') line[--n] = 0;
    if (n && line[n - 1] == '\r') line[--n] = 0;
    return line;
}

static int append(char **buf, size_t *len, const char *s, int newline) {
    size_t add = strlen(s) + (newline ? 1 : 0);
    char *b = realloc(*buf, *len + add + 1);
    if (!b) return -1;
    if (newline) b[(*len)++] = '\n';
    memcpy(b + *len, s, strlen(s) + 1);
    *len += strlen(s);
    *buf = b;
    return 0;
}

char *le_read(lineedit *le, const char *prompt, const char *cont_prompt, int *interrupted) {
    *interrupted = 0;
    char *first = read_line(le, prompt, interrupted);
    if (!first) return NULL;
    char *buf = NULL;
    size_t len = 0;
    if (!strcmp(first, "\"\"\"")) { /* a block until the closing """ */
        free(first);
        buf = calloc(1, 1);
        int lines = 0;
        for (;;) {
            char *l = read_line(le, cont_prompt, interrupted);
            if (!l) {
                if (*interrupted) {
                    free(buf);
                    return NULL;
                }
                break; /* EOF closes the block */
            }
            if (!strcmp(l, "\"\"\"")) {
                free(l);
                break;
            }
            append(&buf, &len, l, lines++ > 0);
            free(l);
        }
        return buf;
    }
    buf = first;
    len = strlen(buf);
    while (len && buf[len - 1] == '\\') { /* a trailing backslash continues on the next line */
        buf[--len] = 0;
        char *l = read_line(le, cont_prompt, interrupted);
        if (!l) {
            if (*interrupted) {
                free(buf);
                return NULL;
            }
            break;
        }
        append(&buf, &len, l, 1);
        free(l);
    }
    return buf;
}

void le_remember(lineedit *le, const char *text) {
    if (!le || !le->hist || !text || !*text) return;
    HistEvent ev;
    history(le->hist, &ev, H_ENTER, text);
    if (le->hist_path) history(le->hist, &ev, H_SAVE, le->hist_path);
}

const char *le_default_history(void) {
    static char path[4096];
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    char dir[4000];
    if (xdg && *xdg) snprintf(dir, sizeof dir, "%s/ernie", xdg);
    else if (home && *home) snprintf(dir, sizeof dir, "%s/.local/state/ernie", home);
    else return NULL;
    for (char *p = dir + 1; *p; p++) /* mkdir -p */
        if (*p == '/') {
            *p = 0;
            mkdir(dir, 0700);
            *p = '/';
        }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return NULL;
    snprintf(path, sizeof path, "%s/history", dir);
    return path;
}
