/* app/cmd_info.c: `ernie info`. What a model file holds and what it needs to run. */
#include "commands.h"

const cli_command CMD_INFO = {
    .name = "info",
    .usage = "FILE [--json]",
    .summary = "What a model file holds and what it needs to run",
};

int cmd_info(int argc, char **argv, cli_global *g) {
    const char *pos[64];
    int np = 0;
    int r = cli_parse(&CMD_INFO, argc, argv, g, NULL, NULL, pos, 64, &np);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_INFO);
        return EXIT_OK;
    }
    return cmd_not_built(&CMD_INFO, "the model file reader is in progress");
}
