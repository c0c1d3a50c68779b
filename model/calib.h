/* model/calib.h: importance weights from calibration text, for the encoders (ccq_encode_opts.importance).
 *
 * For every weight product and input channel k it gathers sum x_k^2 over the tokens the weight saw (the
 * diagonal of X^T X, the part of GPTQ's Hessian that a per-weight error weighting can use), by observing
 * an engine that runs the unquantized model (eng_set_observer). Stacked experts get one vector per
 * expert, from the tokens routed to it. */
#ifndef ERNIE_MODEL_CALIB_H
#define ERNIE_MODEL_CALIB_H

#include <stdint.h>

#include "base/err.h"
#include "model/engine.h"

typedef struct calib calib;

int calib_new(calib **out, err_t *err);
void calib_free(calib *c);

/* The eng_observer (ctx is the calib). A failure (out of memory, a weight seen with two different
 * widths) is kept and reported by calib_status. */
void calib_observe(void *ctx, const eng_obs *o);
int calib_status(const calib *c, err_t *err);

/* Tokens observed so far (counted at the first weight of the model). */
int64_t calib_tokens(const calib *c);

/* The importance of weight `name` as n_vec vectors of cols values (n_vec = number of stacked experts,
 * 1 for a plain matrix), newly allocated, or NULL with *found = 0 when the weight was never observed.
 * Each vector is the mean of x_k^2, scaled to mean 1 and damped by 1% of that mean (h = 0.99 h + 0.01),
 * so that no channel's error is ignored. An expert that no token chose gets the mean of the experts of
 * its weight that were chosen. Errors: observed with a width other than cols (ERR_FORMAT), ERR_NOMEM. */
float *calib_importance(const calib *c, const char *name, int n_vec, int64_t cols, int *found, err_t *err);

#endif
