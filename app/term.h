/* app/term.h: what the terminal can do. Colours only when the stream is a terminal, NO_COLOR is
 * unset and --no-color was not given; everything else sees plain text. */
#ifndef ERNIE_APP_TERM_H
#define ERNIE_APP_TERM_H

#include <stdio.h>

/* Decides once whether stderr/stdout get colour; call after parsing --no-color. */
void term_init(int allow_color);

/* 1 if the stream is a terminal. */
int term_isatty(FILE *f);

/* Width of the terminal on stderr in columns (80 when unknown). */
int term_width(void);

typedef enum { T_RESET, T_BOLD, T_DIM, T_RED, T_GREEN, T_YELLOW, T_CYAN } term_style;

/* The escape sequence for the style on that stream, or "" when colour is off for it. */
const char *term_sgr(FILE *f, term_style s);

#endif
