/* app/device.c */
#include "device.h"

#include <string.h>

int app_device_check(const char *device, err_t *err) {
    if (!device || !strcmp(device, "auto") || !strcmp(device, "cpu")) return 0;
    return err_set(err, ERR_UNSUPPORTED,
                   "--device %s: the GPU engine is not built yet, so this version computes on the CPU only "
                   "(use --device cpu or auto)",
                   device);
}
