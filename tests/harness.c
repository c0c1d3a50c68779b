/* tests/harness.c: the test runner. Usage: run_tests [--bin PATH] [--fixtures DIR] [-v] [FILTER...]
 * A FILTER runs only tests whose name or file contains it. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>

typedef struct {
    const char *name, *file;
    th_fn fn;
} th_test;

static th_test *tests;
static int ntests, captests;
static int failures; /* within the current (child) test */
static const char *bin_path = "bin/ernie";
static const char *fixtures_dir = "tests/fixtures";
static char tmpdir_buf[512];

void th_register(const char *name, const char *file, th_fn fn) {
    if (ntests == captests) {
        captests = captests ? captests * 2 : 64;
        tests = realloc(tests, (size_t)captests * sizeof *tests);
        if (!tests) abort();
    }
    tests[ntests++] = (th_test){name, file, fn};
}

int th_fail(const char *file, int line, const char *fmt, ...) {
    failures++;
    fprintf(stderr, "    %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 0;
}

int th_check(int ok, const char *expr, const char *file, int line) {
    if (!ok) th_fail(file, line, "CHECK(%s) failed", expr);
    return ok;
}

int th_check_int(long long a, long long b, const char *ea, const char *eb, const char *file, int line) {
    if (a != b) return th_fail(file, line, "%s == %s failed: %lld != %lld", ea, eb, a, b);
    return 1;
}

int th_check_near(double a, double b, double tol, const char *ea, const char *eb, const char *file, int line) {
    if (!(a - b <= tol && b - a <= tol))
        return th_fail(file, line, "%s ~= %s failed: %.9g vs %.9g (tol %.3g)", ea, eb, a, b, tol);
    return 1;
}

int th_check_str(const char *a, const char *b, const char *ea, const char *eb, const char *file, int line) {
    if (!a || !b || strcmp(a, b) != 0)
        return th_fail(file, line, "%s == %s failed:\n      got:      \"%s\"\n      expected: \"%s\"", ea, eb,
                       a ? a : "(null)", b ? b : "(null)");
    return 1;
}

int th_check_contains(const char *hay, const char *needle, const char *eh, const char *file, int line) {
    if (!hay || !strstr(hay, needle))
        return th_fail(file, line, "%s does not contain \"%s\"; it is:\n      \"%s\"", eh, needle, hay ? hay : "(null)");
    return 1;
}

const char *th_bin(void) { return bin_path; }
const char *th_tmpdir(void) { return tmpdir_buf; }
const char *th_fixtures(void) { return fixtures_dir; }

const char *th_tmp(const char *name) {
    static char slots[8][1024];
    static int next;
    char *s = slots[next++ & 7];
    snprintf(s, sizeof slots[0], "%s/%s", tmpdir_buf, name);
    return s;
}

char *th_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int th_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

/* Appends what is readable on fd to a growing buffer; returns 0 at EOF. */
static int drain(int fd, char **buf, size_t *len, size_t *cap) {
    char tmp[65536];
    ssize_t r = read(fd, tmp, sizeof tmp);
    if (r <= 0) return r < 0 && errno == EINTR ? 1 : 0;
    if (*len + (size_t)r + 1 > *cap) {
        while (*len + (size_t)r + 1 > *cap) *cap = *cap ? *cap * 2 : 65536;
        *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *len, tmp, (size_t)r);
    *len += (size_t)r;
    (*buf)[*len] = 0;
    return 1;
}

int th_run(char *const argv[], const char *stdin_text, char *const env[], char **out, char **err) {
    int pin[2], pout[2], perr[2];
    if (pipe(pin) || pipe(pout) || pipe(perr)) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        close(pin[0]); close(pin[1]); close(pout[0]); close(pout[1]); close(perr[0]); close(perr[1]);
        if (env)
            for (int i = 0; env[i]; i++) putenv(env[i]);
        signal(SIGPIPE, SIG_DFL); /* the runner ignores it (see main); the program under test must not */
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    const char *in = stdin_text ? stdin_text : "";
    size_t inlen = strlen(in), inoff = 0;
    if (inlen == 0) {
        close(pin[1]);
        pin[1] = -1;
    } else {
        fcntl(pin[1], F_SETFL, O_NONBLOCK);
    }
    char *ob = NULL, *eb = NULL;
    size_t ol = 0, oc = 0, el = 0, ec = 0;
    int oopen = 1, eopen = 1;
    while (oopen || eopen) {
        struct pollfd fds[3];
        int nf = 0, io = -1, ie = -1, ii = -1;
        if (oopen) { fds[nf] = (struct pollfd){pout[0], POLLIN, 0}; io = nf++; }
        if (eopen) { fds[nf] = (struct pollfd){perr[0], POLLIN, 0}; ie = nf++; }
        if (pin[1] >= 0) { fds[nf] = (struct pollfd){pin[1], POLLOUT, 0}; ii = nf++; }
        if (poll(fds, (nfds_t)nf, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (io >= 0 && fds[io].revents) oopen = drain(pout[0], &ob, &ol, &oc);
        if (ie >= 0 && fds[ie].revents) eopen = drain(perr[0], &eb, &el, &ec);
        if (ii >= 0 && fds[ii].revents) {
            ssize_t w = write(pin[1], in + inoff, inlen - inoff);
            if (w > 0) inoff += (size_t)w;
            if (w < 0 && errno != EAGAIN && errno != EINTR) inoff = inlen;
            if (inoff >= inlen) {
                close(pin[1]);
                pin[1] = -1;
            }
        }
    }
    if (pin[1] >= 0) close(pin[1]);
    close(pout[0]);
    close(perr[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (!ob) ob = calloc(1, 1);
    if (!eb) eb = calloc(1, 1);
    if (out) *out = ob; else free(ob);
    if (err) *err = eb; else free(eb);
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

int th_ernie_env(char **out, char **err, const char *stdin_text, char *const *env, char *const *args) {
    char *argv[32] = {(char *)bin_path};
    int n = 1;
    for (int i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
    argv[n] = NULL;
    return th_run(argv, stdin_text, env, out, err);
}

int th_ernie(char **out, char **err, const char *stdin_text, char *const *args) {
    return th_ernie_env(out, err, stdin_text, NULL, args);
}

static void rm_rf(const char *path) {
    char *argv[] = {"rm", "-rf", (char *)path, NULL};
    th_run(argv, NULL, NULL, NULL, NULL);
}

static int cmp_tests(const void *a, const void *b) {
    const th_test *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : strcmp(x->name, y->name);
}

int main(int argc, char **argv) {
    /* A program that exits without reading all of its stdin (a usage error) must not kill the runner
     * while th_run is still writing that stdin: the write then fails with EPIPE and th_run stops. */
    signal(SIGPIPE, SIG_IGN);
    const char *filters[64];
    int nfilters = 0, verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bin") && i + 1 < argc) bin_path = argv[++i];
        else if (!strcmp(argv[i], "--fixtures") && i + 1 < argc) fixtures_dir = argv[++i];
        else if (!strcmp(argv[i], "-v")) verbose = 1;
        else if (nfilters < 64) filters[nfilters++] = argv[i];
    }
    qsort(tests, (size_t)ntests, sizeof *tests, cmp_tests);
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    int passed = 0, failed = 0;
    char **failed_names = calloc((size_t)ntests + 1, sizeof *failed_names);
    for (int t = 0; t < ntests; t++) {
        int want = nfilters == 0;
        for (int f = 0; f < nfilters; f++)
            if (strstr(tests[t].name, filters[f]) || strstr(tests[t].file, filters[f])) want = 1;
        if (!want) continue;
        snprintf(tmpdir_buf, sizeof tmpdir_buf, "%s/ernie-test-%d-XXXXXX", base, (int)getpid());
        if (!mkdtemp(tmpdir_buf)) {
            fprintf(stderr, "cannot make a temporary directory under %s: %s\n", base, strerror(errno));
            return 1;
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) {
            failures = 0;
            tests[t].fn();
            fflush(stdout);
            fflush(stderr);
            _exit(failures ? 1 : 0);
        }
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
        int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (ok) {
            passed++;
            if (verbose) printf("  ok    %-40s %6.2fs  (%s)\n", tests[t].name, secs, tests[t].file);
            rm_rf(tmpdir_buf);
        } else {
            failed++;
            failed_names[failed - 1] = (char *)tests[t].name;
            if (WIFSIGNALED(st))
                printf("  FAIL  %-40s killed by signal %d  (%s)\n", tests[t].name, WTERMSIG(st), tests[t].file);
            else
                printf("  FAIL  %-40s %6.2fs  (%s; files kept in %s)\n", tests[t].name, secs, tests[t].file, tmpdir_buf);
        }
        fflush(stdout);
    }
    if (failed) {
        printf("failed:");
        for (int i = 0; i < failed; i++) printf(" %s", failed_names[i]);
        printf("\n");
    }
    printf("%d passed, %d failed\n", passed, failed);
    free(failed_names);
    free(tests);
    return failed ? 1 : 0;
}
