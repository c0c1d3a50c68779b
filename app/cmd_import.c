/* app/cmd_import.c: `ernie import`. Quantize a downloaded Hugging Face checkpoint into one ernie model file. */
#include "commands.h"

const cli_command CMD_IMPORT = {
    .name = "import",
    .usage = "HF_DIR -o FILE [options]",
    .summary = "Quantize a downloaded Hugging Face checkpoint into one ernie model file",
};

int cmd_import(int argc, char **argv, cli_global *g) {
    const char *pos[64];
    int np = 0;
    int r = cli_parse(&CMD_IMPORT, argc, argv, g, NULL, NULL, pos, 64, &np);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_IMPORT);
        return EXIT_OK;
    }
    return cmd_not_built(&CMD_IMPORT, "the model file writer is in progress");
}
