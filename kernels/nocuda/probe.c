/* kernels/nocuda/probe.c: GPU discovery in a build made without the CUDA toolkit (CUDA=0, or
 * sanitizer builds): there is never a GPU, and the reason says so. */
#include "kernels/gpu_probe.h"

int gpu_probe(gpu_info *out, int max, err_t *err) {
    (void)out;
    (void)max;
    err_set(err, ERR_NODEV, "this binary was built without CUDA");
    return 0;
}

const char *gpu_compiled_archs(void) { return ""; }
const char *gpu_runtime_version(void) { return ""; }
