/* app/lineedit.h: reading what the user types in `ernie chat`. On a terminal it is libedit (history,
 * editing, history kept across runs in a file); otherwise plain lines from stdin, so chat can be
 * scripted and tested. Multi-line input: a trailing backslash continues the line, and a line holding
 * only """ opens a block that the next such line closes. */
#ifndef ERNIE_APP_LINEEDIT_H
#define ERNIE_APP_LINEEDIT_H

typedef struct lineedit lineedit;

/* history_path may be NULL (no history file). Never fails: without a terminal it reads plain lines. */
lineedit *le_open(const char *history_path);
void le_close(lineedit *le);

/* 1 when reading from a terminal with line editing. */
int le_interactive(const lineedit *le);

/* Reads one message (several lines when continued). Returns a malloc'd string without the final
 * newline, or NULL at end of input (Ctrl-D). *interrupted is set when Ctrl-C abandoned the line
 * (then the result is NULL too, and the caller asks again). */
char *le_read(lineedit *le, const char *prompt, const char *cont_prompt, int *interrupted);

/* Adds a finished message to the history (and the history file). */
void le_remember(lineedit *le, const char *text);

/* The default history file: $XDG_STATE_HOME/ernie/history or ~/.local/state/ernie/history (the folder
 * is created). Returns a static buffer, or NULL when there is no home. */
const char *le_default_history(void);

#endif
