/* kernels/cpu/cpu_qdot.c: the CPU backend's bridge to the codec library for quantized weights. */
#include "cpu_backend.h"

int cpu_qweight_init(be_weight *w, const be_weight_src *src, err_t *err) {
    return err_set(err, ERR_UNSUPPORTED, "tensor %s: format %s is not supported by the CPU backend yet", w->name,
                   src->format);
}
void cpu_qweight_fini(be_weight *w) { (void)w; }
void cpu_qweight_row(const be_weight *w, int64_t r, float *out) {
    (void)w, (void)r, (void)out;
}
void cpu_qweight_dot(const be_weight *w, int64_t r0, int64_t r1, const float *x, int T, float *y, int64_t ldy) {
    (void)w, (void)r0, (void)r1, (void)x, (void)T, (void)y, (void)ldy;
}
