/* tests/fuzz/fuzz_config.c: libFuzzer target for the config parsers (model/config.c): config.json as
 * found in checkpoints and in our model file's metadata, and generation_config.json.
 *
 * Input: any bytes, read both as a config and as a generation config. Whatever parses must pass
 * validation again, and must survive the serialisation round trip unchanged (the model file relies
 * on cfg_parse(cfg_to_json(c)) == c); the derived values must stay within the config. Anything else
 * aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1 << 16)) return 0;
    err_t e = {0};
    cfg_model c, d;
    if (cfg_parse(&c, (const char *)data, size, "fuzz", &e) == 0) {
        if (cfg_validate(&c, "fuzz", &e)) abort();
        char *j = cfg_to_json(&c);
        if (!j) abort();
        if (cfg_parse(&d, j, strlen(j), "round trip", &e) || memcmp(&c, &d, sizeof c)) abort();
        free(j);
        int moe = cfg_num_moe_layers(&c);
        if (moe < 0 || moe > c.num_hidden_layers || (!c.is_moe && moe) || (c.is_moe && !moe)) abort();
        if (cfg_shared_width(&c) < 0) abort();
        int64_t act, tot = cfg_param_count(&c, &act);
        if (tot <= 0 || act <= 0 || act > tot) abort();
    } else if (!e.msg[0]) {
        abort();
    }
    cfg_gen g, h;
    cfg_gen_defaults(&g);
    err_clear(&e);
    if (cfg_gen_parse(&g, (const char *)data, size, "fuzz", &e) == 0) {
        char *j = cfg_gen_to_json(&g);
        if (!j) abort();
        cfg_gen_defaults(&h);
        if (cfg_gen_parse(&h, j, strlen(j), "round trip", &e) || memcmp(&g, &h, sizeof g)) abort();
        free(j);
    } else if (!e.msg[0]) {
        abort();
    }
    return 0;
}
