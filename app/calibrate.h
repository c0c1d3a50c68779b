/* app/calibrate.h: `ernie import --calib`: runs the unquantized checkpoint over calibration text on the
 * CPU and gathers the importance statistics (model/calib.h) the encoders weight their errors with. */
#ifndef ERNIE_APP_CALIBRATE_H
#define ERNIE_APP_CALIBRATE_H

#include <stddef.h>

#include "base/err.h"
#include "model/calib.h"

/* Reads text_path, tokenizes it with hf_dir's tokenizer, and runs hf_dir's weights over at most
 * max_tokens of it in windows of up to 512 tokens, each from an empty cache. threads: CPU threads (0 =
 * all); quiet: no progress bar. On success *out holds the statistics and desc a line for the model
 * file ("FILE, N tokens"). Errors name the file. */
int calibrate(const char *hf_dir, const char *text_path, long long max_tokens, int threads, int quiet, calib **out,
              char *desc, size_t desc_len, err_t *err);

#endif
