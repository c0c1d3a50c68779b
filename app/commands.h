/* app/commands.h: the commands of `ernie`, one file each. Every command parses its own arguments
 * with cli_parse (the global options are already applied to g) and returns an exit code. */
#ifndef ERNIE_APP_COMMANDS_H
#define ERNIE_APP_COMMANDS_H

#include "cli.h"

typedef int (*cmd_fn)(int argc, char **argv, cli_global *g);

typedef struct {
    const cli_command *cli;
    cmd_fn run;
} command;

extern const cli_command CMD_CHAT, CMD_RUN, CMD_IMPORT, CMD_VERIFY, CMD_INFO, CMD_BENCH, CMD_PERPLEXITY;
int cmd_chat(int argc, char **argv, cli_global *g);
int cmd_run(int argc, char **argv, cli_global *g);
int cmd_import(int argc, char **argv, cli_global *g);
int cmd_verify(int argc, char **argv, cli_global *g);
int cmd_info(int argc, char **argv, cli_global *g);
int cmd_bench(int argc, char **argv, cli_global *g);
int cmd_perplexity(int argc, char **argv, cli_global *g);

/* `ernie --version` text on stdout. */
void print_version(void);

#endif
