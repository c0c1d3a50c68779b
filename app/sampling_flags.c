/* app/sampling_flags.c */
#include "sampling_flags.h"

#include <time.h>

int sampling_flag(const cli_command *cmd, sampling_flags *f, int key, const char *val) {
    double d;
    long long i;
    switch (key) {
    case SF_TEMP:
        if (cli_double(cmd, "--temp", val, 0, 100, &d)) return EXIT_USAGE;
        f->v.temp = (float)d, f->set_temp = 1;
        return 0;
    case SF_TOPK:
        if (cli_int(cmd, "--top-k", val, 0, 1 << 30, &i)) return EXIT_USAGE;
        f->v.top_k = (int)i, f->set_topk = 1;
        return 0;
    case SF_TOPP:
        if (cli_double(cmd, "--top-p", val, 0, 1, &d)) return EXIT_USAGE;
        f->v.top_p = (float)d, f->set_topp = 1;
        return 0;
    case SF_MINP:
        if (cli_double(cmd, "--min-p", val, 0, 1, &d)) return EXIT_USAGE;
        f->v.min_p = (float)d, f->set_minp = 1;
        return 0;
    case SF_REPPEN:
        if (cli_double(cmd, "--repeat-penalty", val, 0.01, 100, &d)) return EXIT_USAGE;
        f->v.repeat_penalty = (float)d, f->set_reppen = 1;
        return 0;
    case SF_REPN:
        if (cli_int(cmd, "--repeat-last-n", val, -1, 1 << 30, &i)) return EXIT_USAGE;
        f->v.repeat_last_n = (int)i, f->set_repn = 1;
        return 0;
    case SF_SEED:
        if (cli_int(cmd, "--seed", val, 0, (long long)1 << 62, &i)) return EXIT_USAGE;
        f->v.seed = (uint64_t)i, f->set_seed = 1;
        return 0;
    }
    return 1;
}

sampler_params sampling_resolve(const sampling_flags *f, sampler_params p) {
    if (f->set_temp) p.temp = f->v.temp;
    if (f->set_topk) p.top_k = f->v.top_k;
    if (f->set_topp) p.top_p = f->v.top_p;
    if (f->set_minp) p.min_p = f->v.min_p;
    if (f->set_reppen) p.repeat_penalty = f->v.repeat_penalty;
    if (f->set_repn) p.repeat_last_n = f->v.repeat_last_n;
    if (f->set_seed) p.seed = f->v.seed;
    else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        p.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
    }
    return p;
}
