/* app/cmd_verify.c: `ernie verify`. Check a model file's checksums and structure, and its error against the source weights. */
#include "commands.h"

const cli_command CMD_VERIFY = {
    .name = "verify",
    .usage = "FILE [--against HF_DIR]",
    .summary = "Check a model file's checksums and structure, and its error against the source weights",
};

int cmd_verify(int argc, char **argv, cli_global *g) {
    const char *pos[64];
    int np = 0;
    int r = cli_parse(&CMD_VERIFY, argc, argv, g, NULL, NULL, pos, 64, &np);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_VERIFY);
        return EXIT_OK;
    }
    return cmd_not_built(&CMD_VERIFY, "the model file reader is in progress");
}
