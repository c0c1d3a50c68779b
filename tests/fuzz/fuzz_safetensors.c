/* tests/fuzz/fuzz_safetensors.c: libFuzzer target for the safetensors reader (model/safetensors.c) and
 * the model-file layer on top of it (model/modelfile.c: metadata, config, weight table, checksums).
 *
 * Input: the bytes of a file. Whatever st_open_memory accepts must describe tensors that lie inside
 * the input, tile the data section, and be found again by name; every byte of every tensor is read,
 * so the sanitizers catch an out-of-bounds pointer. Whatever mf_open_memory accepts is verified
 * (checksums and the codec's validation) and its weights' parts must be inside the input too.
 * Any broken promise aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/modelfile.h"
#include "model/safetensors.h"

static volatile uint8_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    err_t e = {0};
    st_file *f = NULL;
    if (st_open_memory(&f, data, size, "fuzz", &e) == 0) {
        uint64_t pos = 0;
        for (int i = 0; i < st_count(f); i++) {
            const st_tensor *t = st_at(f, i);
            if (t->begin != pos || t->end < t->begin || t->nbytes != t->end - t->begin) abort();
            if (t->file_offset + t->nbytes > size || (const uint8_t *)t->data != data + t->file_offset) abort();
            pos = t->end;
            uint8_t x = 0;
            for (uint64_t k = 0; k < t->nbytes; k++) x ^= ((const uint8_t *)t->data)[k];
            sink = x;
            if (st_find(f, t->name) == NULL || strcmp(st_find(f, t->name)->name, t->name)) abort();
        }
        if (st_data_start(f) + pos != size) abort();
        for (int i = 0; i < st_meta_count(f); i++) {
            const char *k, *v;
            st_meta_at(f, i, &k, &v);
            if (!k || !v || st_meta(f, k) != v) abort();
        }
        sink = (uint8_t)st_header_checksum(f);
        st_close(f);
    } else if (!e.msg[0]) {
        abort(); /* every failure explains itself */
    }
    mf_file *m = NULL;
    err_clear(&e);
    if (mf_open_memory(&m, data, size, "fuzz", &e) == 0) {
        for (int i = 0; i < mf_nweights(m); i++) {
            const mf_weight *w = mf_weight_at(m, i);
            for (int k = 0; k < w->nparts; k++)
                if (!w->part[k].t || w->part[k].t->file_offset + w->part[k].t->nbytes > size) abort();
        }
        mf_verify(m, NULL, NULL, NULL, &e);
        mf_close(m);
    } else if (!e.msg[0]) {
        abort();
    }
    return 0;
}
