/* app/term.c */
#include "term.h"

#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int color_out, color_err;

int term_isatty(FILE *f) { return isatty(fileno(f)); }

void term_init(int allow_color) {
    const char *nc = getenv("NO_COLOR");
    int ok = allow_color && !(nc && *nc);
    const char *t = getenv("TERM");
    if (t && !__builtin_strcmp(t, "dumb")) ok = 0;
    color_out = ok && isatty(1);
    color_err = ok && isatty(2);
}

int term_width(void) {
    struct winsize ws;
    if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10) return ws.ws_col;
    return 80;
}

const char *term_sgr(FILE *f, term_style s) {
    int on = f == stdout ? color_out : f == stderr ? color_err : 0;
    if (!on) return "";
    switch (s) {
    case T_RESET: return "\033[0m";
    case T_BOLD: return "\033[1m";
    case T_DIM: return "\033[2m";
    case T_RED: return "\033[1;31m";
    case T_GREEN: return "\033[32m";
    case T_YELLOW: return "\033[33m";
    case T_CYAN: return "\033[36m";
    }
    return "";
}
