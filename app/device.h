/* app/device.h: what `--device` may ask of the commands that compute (run, chat, perplexity, import
 * --calib). Today every model computes on the CPU backend; the CUDA kernels exist (kernels/cuda/) but
 * the GPU engine that would use them does not, so asking for a GPU explicitly must fail clearly instead
 * of running on the CPU behind the user's back. */
#ifndef ERNIE_APP_DEVICE_H
#define ERNIE_APP_DEVICE_H

#include "base/err.h"

/* 0 when DEVICE ("auto", "cpu", "cuda", "cuda:N", as the CLI validated it) can be honoured by this
 * build; otherwise -1 with ERR_UNSUPPORTED and a message that names the flag and the way out. */
int app_device_check(const char *device, err_t *err);

#endif
