/* app/cmd_run.c: `ernie run`. One-shot generation for pipes and scripts; only the generated text goes to stdout. */
#include "commands.h"

const cli_command CMD_RUN = {
    .name = "run",
    .usage = "MODEL [-p TEXT | -f FILE] [options]",
    .summary = "One-shot generation for pipes and scripts; only the generated text goes to stdout",
};

int cmd_run(int argc, char **argv, cli_global *g) {
    const char *pos[64];
    int np = 0;
    int r = cli_parse(&CMD_RUN, argc, argv, g, NULL, NULL, pos, 64, &np);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_RUN);
        return EXIT_OK;
    }
    return cmd_not_built(&CMD_RUN, "the CPU engine and the tokenizer are in progress");
}
