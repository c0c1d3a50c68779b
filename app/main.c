/* app/main.c: `ernie [global options] COMMAND [args]`. Finds the command, applies the global
 * options that come before it, and hands over. Does no work of its own. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "term.h"

static const command commands[] = {
    {&CMD_CHAT, cmd_chat},     {&CMD_RUN, cmd_run},   {&CMD_IMPORT, cmd_import},
    {&CMD_VERIFY, cmd_verify}, {&CMD_INFO, cmd_info}, {&CMD_BENCH, cmd_bench},
    {&CMD_PERPLEXITY, cmd_perplexity},
};
#define NCOMMANDS (int)(sizeof commands / sizeof commands[0])

static void print_main_help(void) {
    printf("ernie: runs Baidu's ERNIE-4.5 models offline, from a 0.3B demo to the 300B-A47B on one GPU.\n\n"
           "Usage: ernie [global options] COMMAND [args]\n\nCommands:\n");
    for (int i = 0; i < NCOMMANDS; i++) printf("  %-11s %s\n", commands[i].cli->name, commands[i].cli->summary);
    printf("\n");
    cli_print_global_help();
    printf("  %-26s %s\n", "    --version", "version, build and GPU information");
    printf("\n'ernie COMMAND --help' describes one command.\n");
}

/* Global options that take a value, so "--device cuda run" skips the value when looking for the
 * command word. */
static int takes_value(const char *a) {
    return !strcmp(a, "--device") || !strcmp(a, "--threads") || !strcmp(a, "-t");
}

int main(int argc, char **argv) {
    cli_global g;
    cli_global_init(&g);
    int ci = 1;
    while (ci < argc && argv[ci][0] == '-' && strcmp(argv[ci], "--")) {
        if (!strcmp(argv[ci], "--version")) {
            term_init(0);
            print_version();
            return EXIT_OK;
        }
        ci += takes_value(argv[ci]) ? 2 : 1;
    }
    if (ci > argc) ci = argc;
    int r = cli_parse(NULL, ci - 1, argv + 1, &g, NULL, NULL, NULL, 0, NULL);
    term_init(g.color);
    if (r) return r;
    if (ci < argc && !strcmp(argv[ci], "--")) ci++;
    if (ci >= argc) {
        if (g.help) {
            print_main_help();
            return EXIT_OK;
        }
        print_main_help();
        return EXIT_USAGE;
    }
    const char *name = argv[ci];
    if (!strcmp(name, "help")) {
        if (ci + 1 < argc) {
            /* the command prints its own help: some of it (recipes) is assembled when it runs */
            char *help_argv[] = {"--help", NULL};
            for (int i = 0; i < NCOMMANDS; i++)
                if (!strcmp(argv[ci + 1], commands[i].cli->name)) return commands[i].run(1, help_argv, &g);
            return cli_usage_error(NULL, "unknown command '%s'", argv[ci + 1]);
        }
        print_main_help();
        return EXIT_OK;
    }
    if (!strcmp(name, "version")) {
        print_version();
        return EXIT_OK;
    }
    for (int i = 0; i < NCOMMANDS; i++) {
        if (strcmp(name, commands[i].cli->name)) continue;
        return commands[i].run(argc - ci - 1, argv + ci + 1, &g);
    }
    return cli_usage_error(NULL, "unknown command '%s'", name);
}
