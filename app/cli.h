/* app/cli.h: command-line parsing shared by every command.
 *
 * Each command describes its options in a table; cli_parse walks argv once, accepts the global
 * options anywhere (before or after the command name), collects positional arguments, and reports
 * bad usage as one line naming the flag, with exit code 2. Help text is printed from the same tables,
 * so it cannot drift from what is accepted. */
#ifndef ERNIE_APP_CLI_H
#define ERNIE_APP_CLI_H

#include <stddef.h>
#include <stdint.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* Options every command shares. */
typedef struct {
    const char *device; /* "auto", "cpu", "cuda", "cuda:N" */
    int threads;        /* 0 = all cores */
    int verbose;
    int color;          /* resolved: stderr is a terminal, NO_COLOR unset, no --no-color */
    int json;           /* --json given */
    int help;           /* --help given: the command prints its help and exits 0 */
} cli_global;

typedef struct {
    const char *lname; /* long name without "--", or NULL */
    char sname;        /* short letter, or 0 */
    const char *arg;   /* NULL for a flag; else the value's name in help ("N", "FILE") */
    const char *help;
    int key;           /* handed back to the command; must be > 0 */
    int repeat;        /* 1: may be given several times */
} cli_opt;

typedef struct {
    const char *name;     /* "run" */
    const char *usage;    /* "MODEL [-p TEXT | -f FILE] [options]" */
    const char *summary;  /* one line */
    const char *details;  /* paragraphs after the usage; may be NULL */
    const cli_opt *opts;  /* terminated by an entry with key 0; may be NULL */
} cli_command;

/* Called for each command option in argv order; value is NULL for flags. Return 0, or EXIT_USAGE
 * after printing a message with cli_usage_error. */
typedef int (*cli_on_opt)(void *ctx, int key, const char *value);

/* For a command this build cannot run (the GPU benchmarks without CUDA): parses the command line so that
 * --help prints the command's help (EXIT_OK) and a bad option is a usage error; otherwise prints
 * "ernie: NAME: why" and returns EXIT_FAIL. */
int cli_help_only(const cli_command *cmd, int argc, char **argv, cli_global *g, const char *why);

/* Parses argv[0..argc) (argv[0] is the first word after the command name). Positionals are stored in
 * pos[] (at most max_pos; more is a usage error unless max_pos < 0 means "any"). Returns 0 or
 * EXIT_USAGE (message printed). When --help is seen, g->help is set and parsing stops with 0. */
int cli_parse(const cli_command *cmd, int argc, char **argv, cli_global *g, cli_on_opt on_opt, void *ctx,
              const char **pos, int max_pos, int *npos);

/* Prints "ernie: CMD: message (see 'ernie CMD --help')" on stderr; returns EXIT_USAGE. */
int cli_usage_error(const cli_command *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "ernie: message" on stderr in the error colour; returns EXIT_FAIL. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints a warning line "ernie: warning: ..." on stderr. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints a line on stderr only with -v. */
void cli_verbose(const cli_global *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Full help of one command on stdout. */
void cli_print_help(const cli_command *cmd);
/* The global options section, shared by every help page. */
void cli_print_global_help(void);

/* Strict number parsing for flag values: the whole string must be a number within [min, max].
 * On failure prints "ernie: CMD: invalid value 'S' for FLAG: expected ..." and returns EXIT_USAGE. */
int cli_int(const cli_command *cmd, const char *flag, const char *s, long long min, long long max, long long *out);
int cli_double(const cli_command *cmd, const char *flag, const char *s, double min, double max, double *out);

/* Sets up cli_global defaults (color from the terminal and NO_COLOR). */
void cli_global_init(cli_global *g);

/* The global options' "--name" spelled for messages: "-t/--threads". */
const char *cli_flag_name(const cli_opt *o, char *buf, int n);

#endif
