/* app/bench_formats.c: the format lists of the CPU benchmarks (bench quant, bench cpu): split, and every
 * name and the benchmark's shape checked before any long work starts. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "ccq/ccq.h"

int bench_split_formats(const cli_command *cmd, const char *flag, const char *csv, const char **list, int max, int *n,
                        char **buf) {
    *n = 0;
    *buf = strdup(csv);
    if (!*buf) return cli_fail("%s: out of memory", cmd->name);
    for (char *s = strtok(*buf, ","); s && *n < max; s = strtok(NULL, ",")) list[(*n)++] = s;
    if (*n) return 0;
    free(*buf);
    *buf = NULL;
    return cli_usage_error(cmd, "%s: empty list", flag);
}

int bench_check_formats(const cli_command *cmd, const char *flag, const char *const *list, int n, int64_t rows,
                        int64_t cols) {
    for (int i = 0; i < n; i++) {
        err_t e = {0};
        ccq_format f;
        if (ccq_format_parse(list[i], &f, &e) || ccq_bits(&f, rows, cols, NULL, NULL, &e))
            return cli_usage_error(cmd, "%s: %s", flag, e.msg);
    }
    return 0;
}
