/* tests/fuzz/fuzz_ccq.c: libFuzzer target for the codec's validator and decoders (ccq/), which read
 * encoded weights straight from model files.
 *
 * Input: a 4-byte header, then the bytes of every part in layout order (a short input is padded with
 * zeros, so small inputs still reach the contents checks). Header byte 0 picks the base format (mod 8)
 * and the modifiers (bit 3: +icq, bit 4: +crvq, bits 5..7: their parameters), byte 1 the rows (1..8),
 * byte 2 the columns (in units of 64 for group formats, 2 for wint4, any for the others: 1..512), and
 * byte 3 flips one part's dtype or shape so the part-list checks are reached too.
 * Whatever ccq_wrap accepts must decode (whole, by tile, and fused with inputs) to finite values;
 * anything else aborts. The sanitizers catch every out-of-bounds read. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ccq/ccq.h"

static const char *const BASES[8] = {"bf16", "wint8", "wint4", "wint4g64", "wint2g64", "ccq2.75", "ccq2.5", "ccq2.06"};
static const char *const ICQ[4] = {"+icq", "+icq:0.1:3", "+icq:0.01:8", "+icq:0.5:2"};
static const char *const CRVQ[2] = {"+crvq", "+crvq:0.1:4"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4 || size > (1 << 20)) return 0;
    int b = data[0] & 7, icq = data[0] >> 3 & 1, crvq = data[0] >> 4 & 1;
    char name[64];
    strcpy(name, BASES[b]);
    if (b != 0 && icq) strcat(name, ICQ[data[0] >> 5 & 3]);
    if (b != 0 && crvq) strcat(name, CRVQ[data[0] >> 7 & 1]);
    int64_t rows = 1 + data[1] % 8;
    int64_t unit = (b >= 3) ? 64 : b == 2 ? 2 : 1;
    int64_t cols = unit * (1 + data[2] % (unit == 64 ? 8 : 512 / unit));
    ccq_format f;
    err_t e;
    if (ccq_format_parse(name, &f, &e)) abort(); /* our own names always parse */
    ccq_part p[CCQ_MAX_PARTS];
    int n;
    if (ccq_layout(&f, rows, cols, p, &n, &e)) abort(); /* and fit the shapes chosen above */
    size_t need = 0;
    for (int i = 0; i < n; i++) need += p[i].nbytes;
    uint8_t *buf = calloc(need + 1, 1);
    if (!buf) return 0;
    size_t have = size - 4 < need ? size - 4 : need;
    memcpy(buf, data + 4, have);
    size_t off = 0;
    for (int i = 0; i < n; i++) p[i].data = buf + off, off += p[i].nbytes;
    int flip = data[3];
    if (flip & 0x80) {
        ccq_part *q = &p[(flip & 0x7F) % n];
        if (flip & 0x40) q->dtype = "F32";
        else q->shape[0]++;
    }
    ccq_tensor t;
    if (ccq_wrap(&f, rows, cols, p, n, &t, &e) == 0) {
        float *w = malloc(sizeof(float) * (size_t)(rows * cols));
        float x[2 * 512], y[2 * 8];
        for (int64_t k = 0; k < 2 * cols; k++) x[k] = (float)((k % 5) - 2);
        if (w) {
            if (ccq_decode(&t, w, NULL, &e)) abort();
            for (int64_t i = 0; i < rows * cols; i++)
                if (!isfinite(w[i])) abort();
            if (ccq_decode_tile(&t, rows / 2, rows, cols / 3, cols, w, cols, &e)) abort();
            if (ccq_dot(&t, 0, rows, x, cols, 2, y, rows, &e)) abort();
            if (ccq_dot(&t, 0, rows, x, cols, 1, y, rows, &e)) abort(); /* the one-vector path (dotrow) */
            free(w);
        }
    } else if (e.code != ERR_CORRUPT || !e.msg[0]) {
        abort();
    }
    free(buf);
    return 0;
}
