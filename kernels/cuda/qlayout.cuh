/* kernels/cuda/qlayout.cuh: the tiled kernel layout of ccq2.75, ccq2.5 and ccq2.06 weights on the GPU (made
 * at load time by qmat_tile in qgemv.cu), and how any reader finds the 64 weights of one (row, group) in it.
 * Host and device code may include it (CUDA C++ only); it holds constants and inline functions, no state.
 *
 * Why this layout. The batch-1 products read each weight byte once at the speed of the memory, and a
 * warp of the products owns 16 rows (the mma M). In the model file's row-major order, the 16 rows of a
 * warp are 16 distant streams and the side data (tails, local scales) are small scattered pieces; the
 * tiled layout stores, for each tile of 16 rows and each "unit" of 256 columns (4 groups of 64), all the
 * bytes the warp needs for that step as one contiguous block, in the order the lanes use them. A warp
 * copies a block with 16-byte copies of consecutive addresses, and every lane finds its bytes in the
 * copy. No byte is stored twice: a block holds exactly the stored bytes of its 16 x 4 (row, group)
 * pairs (rows past the weight's end and groups past K are zero padding).
 *
 * Geometry. A weight of E experts x [n][k]. Tiles are per expert: QL_ROWS tiling puts rows 16j..16j+15
 * of an expert into tile j (ceil(n/16) tiles per expert); QL_GATE_UP tiling (a gate/up stack, n = 2 *
 * inter: rows 0..inter-1 the gate, inter..n-1 the up projection) puts gate channels 8j..8j+7 into tile
 * rows 0..7 and up channels 8j..8j+7 into tile rows 8..15 (ceil(inter/8) tiles per expert), so that one
 * warp holds a channel's gate and up sums together. Units: ceil(k/256) per row. Block (expert e, tile j,
 * unit u) starts at byte ((e * tiles_per_expert + j) * units + u) * ql_unit_bytes(fmt).
 *
 * Inside a block: tile row p = 8h + g (h = 0, 1; g = 0..7) and lane L = 4g + t (t = 0..3) of the warp,
 * which holds rows g and g+8. Group Gi (0..3) of the unit is group 4u + Gi of the row. Each lane holds
 * one quarter of every group (16 of its 64 weights), so that all four lanes of a row work on the same
 * group in one mma step (one local scale per step, which batched products need):
 *   ccq2.75 (1408 bytes): [h*512 + L*16 + 4Gi, +4)  bytes 5t..5t+3 of the group (stored order)
 *                         [1024 + h*128 + L*4 + Gi]  byte 5t+4
 *                         [1280 + h*64 + g*8 + 2Gi, +2)  bytes 20 and 21 (weights 60..62; v63 << 4 | local)
 *   ccq2.5  (1280 bytes): [h*512 + L*16 + 4Gi, +4)  words 2t (low 16 bits) and 2t+1 (high) of the group
 *                         [1024 + h*128 + g*16 + 4Gi, +4)  word 8 (low) and word 9 (high: v63 << 13 | local)
 *   ccq2.06 (1056 bytes): [h*512 + L*16 + 4Gi, +4)  q bytes 4t..4t+3 of the group (weights 16t..16t+15)
 *                         [1024 + g*4, +4)  the local scales: bits 16h + 4Gi .. +3 hold the 4-bit local of
 *                         group Gi of row 8h+g
 * The per-row side data stays in separate arrays (super_scale; ccq2.06 code_scale and code_zp), as
 * stored. The decoding rules are those of spec/ccq.md; ql_group_bytes below rebuilds the stored bytes of
 * one group, so a reader can reuse its decoder for the stored format. */
#ifndef ERNIE_KERNELS_CUDA_QLAYOUT_CUH
#define ERNIE_KERNELS_CUDA_QLAYOUT_CUH

#include <stdint.h>

/* Tilings (qmat_dev.layout): 0 means "as stored in the model file" (bf16, wint8, wint4). */
enum { QL_STORED = 0, QL_ROWS = 1, QL_GATE_UP = 2 };
enum { QL_UNIT_K = 256, QL_TILE_ROWS = 16 };

/* fmt: the qfmt value (QF_CCQ275 = 3, QF_CCQ25 = 4, QF_CCQ206 = 5; see qgemv.h). 0 for untiled formats. */
__host__ __device__ inline int ql_unit_bytes(int fmt) { return fmt == 3 ? 1408 : fmt == 4 ? 1280 : fmt == 5 ? 1056 : 0; }
__host__ __device__ inline int64_t ql_units(int64_t k) { return (k + QL_UNIT_K - 1) / QL_UNIT_K; }
__host__ __device__ inline int64_t ql_tiles_per_expert(int64_t n, int layout) {
    return layout == QL_GATE_UP ? (n / 2 + 7) / 8 : (n + 15) / 16;
}

/* Where row r (0..n-1) of an expert sits: tile j and tile row p (0..15). */
__host__ __device__ inline void ql_row_pos(int64_t r, int64_t n, int layout, int64_t *j, int *p) {
    if (layout == QL_GATE_UP) {
        int64_t inter = n / 2, c = r < inter ? r : r - inter;
        *j = c / 8;
        *p = (int)(c % 8) + (r < inter ? 0 : 8);
    } else {
        *j = r / 16;
        *p = (int)(r % 16);
    }
}

/* The first byte of block (expert e, tile j, unit u). */
__host__ __device__ inline int64_t ql_block_offset(int fmt, int64_t e, int64_t j, int64_t u, int64_t n, int64_t k,
                                                   int layout) {
    return ((e * ql_tiles_per_expert(n, layout) + j) * ql_units(k) + u) * ql_unit_bytes(fmt);
}

/* The stored bytes of the group at tile row p, group Gi of a block: 22 bytes (ccq2.75), 20 bytes = 10
 * little-endian u16 words (ccq2.5), or 16 q bytes (ccq2.06, with *local4 set to its local scale). */
__host__ __device__ inline void ql_group_bytes(int fmt, const uint8_t *blk, int p, int Gi, uint8_t *out, int *local4) {
    int h = p / 8, g = p % 8;
    for (int t = 0; t < 4; t++) {
        const uint8_t *a = blk + h * 512 + (4 * g + t) * 16 + 4 * Gi;
        if (fmt == 3) {
            for (int i = 0; i < 4; i++) out[5 * t + i] = a[i];
            out[5 * t + 4] = blk[1024 + h * 128 + (4 * g + t) * 4 + Gi];
        } else {
            for (int i = 0; i < 4; i++) out[4 * t + i] = a[i];
        }
    }
    if (fmt == 3) {
        out[20] = blk[1280 + h * 64 + g * 8 + 2 * Gi];
        out[21] = blk[1280 + h * 64 + g * 8 + 2 * Gi + 1];
    } else if (fmt == 4) {
        for (int i = 0; i < 4; i++) out[16 + i] = blk[1024 + h * 128 + g * 16 + 4 * Gi + i];
    } else if (fmt == 5 && local4) {
        uint32_t w = blk[1024 + g * 4] | blk[1024 + g * 4 + 1] << 8 | blk[1024 + g * 4 + 2] << 16 |
                     (uint32_t)blk[1024 + g * 4 + 3] << 24;
        *local4 = (int)(w >> (16 * h + 4 * Gi)) & 15;
    }
}

#endif
