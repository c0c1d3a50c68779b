/* tests/test_cli.c: the real binary's command-line frame: help, version, exit codes and the
 * one-line errors for bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* Runs `ernie ARGS...` and returns the exit code; out/err must be freed. */
static int ernie(char **out, char **err, const char *a0, const char *a1, const char *a2, const char *a3) {
    char *argv[6] = {(char *)th_bin(), (char *)a0, (char *)a1, (char *)a2, (char *)a3, NULL};
    return th_run(argv, NULL, NULL, out, err);
}

TEST(cli_version) {
    char *o, *e;
    CHECK_INT(ernie(&o, &e, "--version", NULL, NULL, NULL), 0);
    CHECK_CONTAINS(o, "ernie 0.");
    CHECK_CONTAINS(o, "git revision: ");
    CHECK_CONTAINS(o, "build: ");
    CHECK(strstr(o, "\nGPU") != NULL);
    free(o), free(e);
}

TEST(cli_help_lists_every_command) {
    char *o, *e;
    CHECK_INT(ernie(&o, &e, "--help", NULL, NULL, NULL), 0);
    const char *cmds[] = {"chat", "run", "import", "verify", "info", "bench", "--device", "--threads", "--no-color"};
    for (int i = 0; i < 9; i++) CHECK_CONTAINS(o, cmds[i]);
    free(o), free(e);
    CHECK_INT(ernie(&o, &e, NULL, NULL, NULL, NULL), 2); /* no command: help, but usage exit */
    CHECK_CONTAINS(o, "Usage: ernie");
    free(o), free(e);
}

TEST(cli_command_help) {
    const char *cmds[] = {"chat", "run", "import", "verify", "info", "bench", "perplexity"};
    for (int i = 0; i < 7; i++) {
        char *o, *e;
        CHECK_INT(ernie(&o, &e, cmds[i], "--help", NULL, NULL), 0);
        char want[64];
        snprintf(want, sizeof want, "Usage: ernie %s", cmds[i]);
        CHECK_CONTAINS(o, want);
        CHECK_CONTAINS(o, "Global options");
        char *o2, *e2;
        CHECK_INT(ernie(&o2, &e2, "help", cmds[i], NULL, NULL), 0);
        CHECK_STR(o2, o); /* `ernie help X` is exactly `ernie X --help` */
        free(o), free(e), free(o2), free(e2);
    }
}

TEST(cli_unknown_command_is_usage_error) {
    char *o, *e;
    CHECK_INT(ernie(&o, &e, "frobnicate", NULL, NULL, NULL), 2);
    CHECK_CONTAINS(e, "ernie: unknown command 'frobnicate'");
    CHECK_STR(o, "");
    free(o), free(e);
}

TEST(cli_unknown_flag_names_it) {
    char *o, *e;
    CHECK_INT(ernie(&o, &e, "info", "--frob", NULL, NULL), 2);
    CHECK_CONTAINS(e, "ernie: info: unknown option '--frob'");
    free(o), free(e);
    CHECK_INT(ernie(&o, &e, "--frob", "info", NULL, NULL), 2);
    CHECK_CONTAINS(e, "unknown option '--frob'");
    free(o), free(e);
    CHECK_INT(ernie(&o, &e, "info", "-Z", NULL, NULL), 2);
    CHECK_CONTAINS(e, "unknown option '-Z'");
    free(o), free(e);
}

TEST(cli_bad_numbers_name_the_flag) {
    char *o, *e;
    CHECK_INT(ernie(&o, &e, "-t", "abc", "info", NULL), 2);
    CHECK_CONTAINS(e, "invalid value 'abc' for -t/--threads");
    free(o), free(e);
    CHECK_INT(ernie(&o, &e, "info", "--threads=0", NULL, NULL), 2);
    CHECK_CONTAINS(e, "invalid value '0' for -t/--threads");
    free(o), free(e);
    CHECK_INT(ernie(&o, &e, "info", "-t", "4x", NULL), 2);
    CHECK_CONTAINS(e, "'4x'");
    free(o), free(e);
    CHECK_INT(ernie(&o, &e, "info", "--threads", NULL, NULL), 2);
    CHECK_CONTAINS(e, "needs a value");
    free(o), free(e);
    CHECK_INT(ernie(&o, &e, "--device", "gpu", "info", NULL), 2);
    CHECK_CONTAINS(e, "invalid value 'gpu' for --device");
    free(o), free(e);
    CHECK_INT(ernie(&o, &e, "--no-color=1", "info", NULL, NULL), 2);
    CHECK_CONTAINS(e, "takes no value");
    free(o), free(e);
}

TEST(cli_global_options_anywhere) {
    char *o, *e;
    /* Valid global options before and after the command reach the command (which then asks for --help). */
    CHECK_INT(ernie(&o, &e, "--device", "cpu", "info", "--help"), 0);
    CHECK_CONTAINS(o, "Usage: ernie info");
    free(o), free(e);
    CHECK_INT(ernie(&o, &e, "info", "-vt2", "--help", NULL), 0);
    free(o), free(e);
}

TEST(cli_errors_have_no_colour_off_a_terminal) {
    char *o, *e;
    CHECK_INT(ernie(&o, &e, "nope", NULL, NULL, NULL), 2);
    CHECK(strchr(e, '\033') == NULL);
    free(o), free(e);
}

TEST(cli_binary_is_static_but_glibc) {
    char *o, *e;
    CHECK_INT(ernie(&o, &e, "--version", NULL, NULL, NULL), 0);
    int san = strstr(o, "build: sanitize") != NULL;
    free(o), free(e);
    if (san) return; /* sanitizer runtimes are shared libraries by design */
    char *argv[] = {"ldd", (char *)th_bin(), NULL};
    if (!CHECK_INT(th_run(argv, NULL, NULL, &o, &e), 0)) return;
    /* Every line must be glibc's: vdso, libc, libm, libdl, libpthread, librt, the loader. */
    const char *ok[] = {"linux-vdso", "libc.so", "libm.so", "libdl.so", "libpthread.so", "librt.so", "ld-linux"};
    for (char *line = strtok(o, "\n"); line; line = strtok(NULL, "\n")) {
        int good = 0;
        for (int i = 0; i < 7; i++) good |= strstr(line, ok[i]) != NULL;
        if (!good) FAIL("ldd shows a non-glibc library: %s", line);
    }
    free(o), free(e);
}

/* Until the GPU engine exists, asking for a GPU must fail clearly, not compute on the CPU unasked. */
TEST(cli_device_cuda_is_refused_not_ignored) {
    char *o, *e;
    char *a1[] = {"run", "demo", "-p", "hi", "-n", "2", "--device", "cuda", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, a1), 1);
    CHECK_CONTAINS(e, "--device cuda");
    CHECK(o[0] == 0);
    free(o), free(e);
    char *a2[] = {"chat", "--device", "cuda:0", NULL};
    CHECK_INT(th_ernie(&o, &e, "hello\n", a2), 1);
    CHECK_CONTAINS(e, "--device cuda:0");
    free(o), free(e);
    char *a3[] = {"run", "demo", "-p", "hi", "-n", "2", "--temp", "0", "--device", "cpu", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, a3), 0);
    CHECK(strlen(o) > 0);
    free(o), free(e);
}
