/* app/cmd_chat.c: `ernie chat`. Interactive chat in the terminal (no MODEL: the built-in demo model). */
#include "commands.h"

const cli_command CMD_CHAT = {
    .name = "chat",
    .usage = "[MODEL] [options]",
    .summary = "Interactive chat in the terminal (no MODEL: the built-in demo model)",
};

int cmd_chat(int argc, char **argv, cli_global *g) {
    const char *pos[64];
    int np = 0;
    int r = cli_parse(&CMD_CHAT, argc, argv, g, NULL, NULL, pos, 64, &np);
    if (r) return r;
    if (g->help) {
        cli_print_help(&CMD_CHAT);
        return EXIT_OK;
    }
    return cmd_not_built(&CMD_CHAT, "the CPU engine and the tokenizer are in progress");
}
