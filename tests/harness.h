/* tests/harness.h: the test framework, small enough to read in a minute.
 *
 * TEST(name) { ... } registers a test at load time; CHECK* record failures and carry on, so one run
 * shows every broken expectation of a test. Each test runs in a forked child, so a crash or an abort
 * fails that test and not the run. The runner ends with the line "N passed, N failed". */
#ifndef ERNIE_TESTS_HARNESS_H
#define ERNIE_TESTS_HARNESS_H

#include <stddef.h>
#include <stdint.h>

typedef void (*th_fn)(void);
void th_register(const char *name, const char *file, th_fn fn);

#define TEST(name)                                                                               \
    static void name(void);                                                                      \
    __attribute__((constructor)) static void th_reg_##name(void) { th_register(#name, __FILE__, name); } \
    static void name(void)

/* Each returns its condition so a test can stop early: if (!CHECK(p)) return; */
int th_check(int ok, const char *expr, const char *file, int line);
int th_check_int(long long a, long long b, const char *ea, const char *eb, const char *file, int line);
int th_check_near(double a, double b, double tol, const char *ea, const char *eb, const char *file, int line);
int th_check_str(const char *a, const char *b, const char *ea, const char *eb, const char *file, int line);
int th_check_contains(const char *hay, const char *needle, const char *eh, const char *file, int line);
/* Records a failure with a printf-style message. Returns 0. */
int th_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define CHECK(c) th_check(!!(c), #c, __FILE__, __LINE__)
#define CHECK_INT(a, b) th_check_int((long long)(a), (long long)(b), #a, #b, __FILE__, __LINE__)
/* |a - b| <= tol */
#define CHECK_NEAR(a, b, tol) th_check_near((a), (b), (tol), #a, #b, __FILE__, __LINE__)
#define CHECK_STR(a, b) th_check_str((a), (b), #a, #b, __FILE__, __LINE__)
#define CHECK_CONTAINS(hay, needle) th_check_contains((hay), (needle), #hay, __FILE__, __LINE__)
#define FAIL(...) th_fail(__FILE__, __LINE__, __VA_ARGS__)

/* The ernie binary under test (from --bin), a fresh temporary directory for this test (removed after
 * the run unless it fails), and the source tree's tests/fixtures directory. */
const char *th_bin(void);
const char *th_tmpdir(void);
const char *th_fixtures(void);

/* Joins th_tmpdir() and name into a static buffer that lives until the next call (8 slots rotate). */
const char *th_tmp(const char *name);

/* Runs argv (argv[0] is looked up on PATH unless it holds a '/') with stdin_text on standard input
 * (NULL: /dev/null), collects stdout and stderr (malloc'd, NUL-terminated; caller frees), and
 * returns the exit code, or 128 + signal number, or -1 if it could not start. `env` entries
 * ("NAME=value") are added to the environment; NULL for none. */
int th_run(char *const argv[], const char *stdin_text, char *const env[], char **out, char **err);

/* Runs the ernie binary under test with args (NULL-terminated, at most 30) and stdin_text (may be NULL). */
int th_ernie(char **out, char **err, const char *stdin_text, char *const *args);
/* The same with `env` entries ("NAME=value", NULL-terminated) added to its environment. */
int th_ernie_env(char **out, char **err, const char *stdin_text, char *const *env, char *const *args);

/* Reads a whole file (malloc'd, NUL-terminated); NULL if it cannot. *len may be NULL. */
char *th_read_file(const char *path, size_t *len);
/* Writes a whole file; returns 0 on success. */
int th_write_file(const char *path, const void *data, size_t len);

#endif
