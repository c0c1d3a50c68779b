/* app/sampling_flags.h: the sampling flags `run` and `chat` share (--temp, --top-k, --top-p, --min-p,
 * --repeat-penalty, --repeat-last-n, --seed), parsed onto defaults that come from the model file. */
#ifndef ERNIE_APP_SAMPLING_FLAGS_H
#define ERNIE_APP_SAMPLING_FLAGS_H

#include "cli.h"
#include "model/sampler.h"

enum { SF_TEMP = 100, SF_TOPK, SF_TOPP, SF_MINP, SF_REPPEN, SF_REPN, SF_SEED, SF_LAST };

#define SAMPLING_OPTS                                                                                          \
    {"temp", 0, "T", "temperature; 0 = greedy (default: the model's, ERNIE 0.8)", SF_TEMP, 0},                  \
    {"top-k", 0, "N", "keep the N most likely tokens; 0 = off (default 0)", SF_TOPK, 0},                        \
    {"top-p", 0, "P", "nucleus sampling; 1 = off (default: the model's, ERNIE 0.8)", SF_TOPP, 0},               \
    {"min-p", 0, "P", "drop tokens below P x the most likely one's probability (default 0)", SF_MINP, 0},       \
    {"repeat-penalty", 0, "X", "penalise tokens seen in the last --repeat-last-n (default 1 = off)", SF_REPPEN, 0}, \
    {"repeat-last-n", 0, "N", "window of the repetition penalty; -1 = all (default 64)", SF_REPN, 0},          \
    {"seed", 0, "N", "random seed (default: from the clock)", SF_SEED, 0}

typedef struct {
    int set_temp, set_topk, set_topp, set_minp, set_reppen, set_repn, set_seed;
    sampler_params v;
} sampling_flags;

/* Handles one of the keys above; returns 0, EXIT_USAGE (message printed), or 1 when key is not one
 * of them. */
int sampling_flag(const cli_command *cmd, sampling_flags *f, int key, const char *val);

/* The model's defaults with the given flags applied; an unset seed comes from the clock. */
sampler_params sampling_resolve(const sampling_flags *f, sampler_params defaults);

#endif
