/* kernels/cuda/qgemm.cu: Y = X W^T for quantized W and many bf16 rows of X (prefill), on the tensor cores,
 * plain and grouped over experts. Computed as Y^T = W X^T: weight rows are the M dimension, tokens the N
 * dimension, so a decoded weight tile is the A operand and a tile of X (K-major, as stored) is B.
 *
 * Why decode in shared memory. At T = 2048 every decoded weight is used by up to 256 tokens, so the
 * decode is cheap next to the multiply-adds (spec/ccq.md's batch-1 budget does not apply); what matters
 * is that the tensor cores never wait. Each block decodes its 128 x 64 weight tile once per K step into
 * bf16 in shared memory, in the layout the matrix instructions read, and all 256 tokens of the block's
 * tile use it. Decoded values are small integers (the format's v - offset, times the 4-bit local scale
 * for ccq2.75), exact in bf16; the per-row scale is applied to the fp32 sums, and for ccq2.5 and ccq2.06,
 * whose v times local scale can need more than bf16's 8 significant bits, the local scale multiplies the
 * group's fp32 sums (one FFMA per sum and group).
 *
 * Sums. By default ("flush", SEP below) the tensor cores sum one 64-column step at a time and every step's
 * sums are added into fp32 registers: the tensor cores' own additions are not IEEE fp32 (they truncate),
 * and over K = 28672 they drifted to 3e-5 relative error, against 4e-7 this way. The step's sums take 64
 * registers per half of the 256-token tile (two n128 wgmma batches per step), the running sums 128;
 * setmaxnreg moves registers from the producer (88) to the consumers (208). QGEMM_WGMMA keeps the
 * tensor-core accumulation (m64n256, 128 registers) for the formats without group scales.
 *
 * Block: 384 threads, three warpgroups. Warpgroup 0 is the producer: it copies weight bytes (its thread r
 * owns weight row r of the tile) and the X tile into a ring of S shared-memory slots with cp.async,
 * decodes the weights of each slot into the A tile, and hands the slot over. Warpgroups 1 and 2 are the
 * consumers, 64 weight rows each, over all tokens of the tile: on Hopper (sm_90a) with wgmma.mma_async
 * straight from shared memory (both operands through matrix descriptors, 128-byte swizzle), elsewhere
 * with ldmatrix + mma.sync m16n8k16 on the same layout (128-token tiles, 2 slots: fits Ada's 99 KB).
 *
 * Hand-over: named barriers, no mbarriers. FULL(c, s): the producer arrives, consumer warpgroup c syncs
 * (one barrier per consumer warpgroup, so the two consumers are not held in lockstep and their matrix
 * work interleaves on the tensor cores while the other one adds its sums). EMPTY(s): both consumers
 * arrive once their reads of slot s are complete, the producer syncs before refilling it. The producer
 * fills slot s only after EMPTY(s), arrives at FULL(c, s) only after its copies landed and its decoded
 * stores are fenced for the async proxy (fence.proxy.async: wgmma reads shared memory through it).
 *
 * Shared-memory layout of a slot (1024-byte aligned parts: the 128-byte swizzle is a function of the
 * address bits, and wgmma descriptors assume 1024-byte aligned 8-row atoms):
 *   A   [128 rows][64 k] bf16, row r at r * 128 bytes, 16-byte chunk c at ((c ^ (r & 7)) * 16)
 *   B   [BN tokens][64 k] bf16, the same swizzle
 *   raw [128 rows][RAWSTRIDE] the weight bytes of one 64-group per row as loaded (wint8, wint4, ccq2.06
 *       as stored; bf16 is copied straight into A); RAWSTRIDE / 16 odd, so 8 rows read with 16-byte loads
 *       hit 8 bank groups
 *   lsc [128] f32 local scales of the group (ccq2.5, ccq2.06)
 * and after the slots, for the tiled formats, two unit buffers [128 rows][USTRIDE]: a row's bytes of one
 * 256-column unit (4 groups), copied in the unit's first step with 16-byte copies and decoded over its 4.
 * Weights: bf16, wint8, wint4 as stored; ccq2.75, ccq2.5 in the tiled layout of kernels/cuda/qlayout.cuh
 * (qmat_tile), ccq2.06 tiled or as stored. Only the format structs' load() / load_unit() and decode()
 * know where a group's bytes are.
 *
 * Tiles: see find_tile (block order) and choose_wide (128-token tiles where they shorten the last wave);
 * a tile of at most 128 tokens runs one half with the narrowest wgmma that holds its tokens (sep_loop).
 *
 * Must never: keep an expanded copy of W in device memory, read outside the weight's parts (rows and
 * tokens past the ends are clamped, never masked with reads), or depend on block order. */
#include "kernels/cuda/qgemm.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cuda/qgemm_wgmma.cuh"
#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/qlayout.cuh"

namespace {

constexpr int BM = 128;       /* weight rows per block */
constexpr int NTHREAD = 384;  /* producer warpgroup + two consumer warpgroups */

struct GParams {
    const uint8_t *q, *tail, *tail2, *local;
    const float *scale, *cs, *zp;
    const uint16_t *super;
    int n, k;     /* rows of one expert, columns */
    int layout;   /* QL_STORED, QL_ROWS, QL_GATE_UP (kernels/cuda/qlayout.cuh) */
    int units;    /* 256-column units per row of the tiled layout */
    int lstride;  /* bytes per row of local (ccq2.06 as stored) */
    const uint16_t *x;
    int64_t x_rows;
    void *y;
    int out_bf16;
    const int32_t *perm, *off; /* off NULL: one expert with slots [0, total) */
    int n_experts;
    int64_t total;
    int row_tiles; /* ceil(n / BM) */
    int tok_tiles; /* token tiles per row tile (grouped: an upper bound; the surplus blocks exit) */
    int nwide;     /* plain: the first nwide token tiles are BN wide, the rest BN / 2 (find_tile) */
};

/* ---- small device helpers ---- */

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void cp16(uint32_t dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp8(uint32_t dst, const void *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp4(uint32_t dst, const void *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

__device__ __forceinline__ void bar_sync(int id, int count) {
    asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(count) : "memory");
}
__device__ __forceinline__ void bar_arrive(int id, int count) {
    asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(count) : "memory");
}

/* Generic-proxy shared-memory writes (st.shared, cp.async) made visible to the async proxy (wgmma). */
__device__ __forceinline__ void fence_async_smem() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}

/* 2^23 + v as a float, for v < 2^23: an integer to float with one LOP instead of a conversion. */
__device__ __forceinline__ float mag(uint32_t v) { return __uint_as_float(0x4B000000u | v); }

/* Two floats (exactly representable) to a bf16 pair, lo in the low half. */
__device__ __forceinline__ uint32_t bf2(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

/* The bf16 0x4300 | v is 128 + v for v < 128 (7 mantissa bits), so two small unsigned fields become a bf16
 * pair with shifts, masks and an OR, and one packed fma takes the offset away: a * b + c with a single
 * rounding, exact because every value involved is a small integer. Two fields per 4 or 5 integer
 * instructions and one fma, instead of two int-to-float tricks, two FADDs and a (quarter-rate)
 * float-to-bf16 conversion per pair. */
constexpr uint32_t BF_BIAS2 = 0x43004300u, BF_ONE2 = 0x3F803F80u;
__device__ __forceinline__ uint32_t bfma2(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t d;
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}
/* (wlo >> slo) & m in the low half, (whi >> shi) & m in the high half, plus the 128 bias in both. */
__device__ __forceinline__ uint32_t fields2(uint32_t wlo, int slo, uint32_t whi, int shi, uint32_t m) {
    return ((wlo >> slo) & m) | (((whi >> shi) & m) << 16) | BF_BIAS2;
}

/* ---- formats ----
 * Each format: GROUPED (local scale applied per group to the fp32 sums), DIRECT (bf16: copied straight
 * into the A tile), RAW (bytes of one row's group in the raw area) or UNIT (bytes of one row's 4-group
 * unit in a unit buffer), Row (per-thread constants of its weight row, made once per tile), load() (the
 * cp.async of group g of the row) or load_unit() (of unit u), decode() (the 64 weights of group g from
 * the raw area or unit buffer to 32 bf16 pairs in k order, and the group's local scale), scale() (the
 * per-row factor applied at the end). load() / load_unit() and decode() are the only code that knows
 * where a group's bytes are: a new weight layout changes these functions. */

struct Row {
    const uint8_t *q; /* start of the row in q (bf16, wint, ccq2.06 as stored); for the tiled layout the
                         row's lane-0 bytes in unit 0 of its block row */
    int64_t ti;       /* ccq2.06 as stored: row * lstride */
    int h, gg;        /* tiled layout: tile row p = 8 h + gg */
    float cs, zp5;    /* ccq2.06 code line */
};

/* The tiled layout (qlayout.cuh): block (expert, tile, unit u) of ql_unit_bytes per 16 rows x 256
 * columns; group g of the row is group g & 3 of unit g >> 2. Sets w.q to the row's first lane's bytes in
 * unit 0 (h * 512 + gg * 64 into the block) and w.h, w.gg. */
template <int FMT>
__device__ __forceinline__ void tiled_row(Row &w, const GParams &p, int64_t r) {
    int64_t e = r / p.n, rr = r - e * p.n, j;
    int pp;
    ql_row_pos(rr, p.n, p.layout, &j, &pp);
    w.h = pp >> 3, w.gg = pp & 7;
    w.q = p.q + ql_block_offset(FMT, e, j, 0, p.n, p.k, p.layout) + w.h * 512 + w.gg * 64;
}

/* A tiled row's bytes of unit u (4 groups) into the unit buffer: the 64 main bytes (lane t's 16 bytes at
 * 16 t, group Gi's 4 of them at 16 t + 4 Gi) with four 16-byte copies; returns the block for the side
 * bytes. Loading a unit every fourth step instead of 4-byte pieces every step: a quarter of the copies,
 * and no 32-byte sector fetched for 4 bytes of it. */
template <int FMT>
__device__ __forceinline__ const uint8_t *tiled_unit(uint32_t dst, const Row &w, int u) {
    const uint8_t *b = w.q + (int64_t)u * ql_unit_bytes(FMT);
#pragma unroll
    for (int t = 0; t < 4; t++) cp16(dst + 16 * t, b + 16 * t);
    return b - w.h * 512 - w.gg * 64; /* the block */
}

/* Lane t's 4 main bytes of group Gi from a unit buffer row. */
__device__ __forceinline__ void unit_main(const uint8_t *raw, int Gi, uint32_t (&wd)[4]) {
#pragma unroll
    for (int t = 0; t < 4; t++) wd[t] = *(const uint32_t *)(raw + 16 * t + 4 * Gi);
}

struct FBf16 {
    static constexpr bool GROUPED = false, DIRECT = true;
    static constexpr int RAW = 0;
    static constexpr int UNIT = 0;
    static __device__ __forceinline__ void row_init(Row &w, const GParams &p, int64_t r) {
        w.q = p.q + r * p.k * 2;
    }
    /* dst: the row in the A tile (swizzled) */
    static __device__ __forceinline__ void load(uint32_t dst, const Row &w, const GParams &, int g, int r) {
#pragma unroll
        for (int c = 0; c < 8; c++) cp16(dst + ((c ^ (r & 7)) << 4), w.q + g * 128 + c * 16);
    }
    static __device__ __forceinline__ float scale(const GParams &, int64_t) { return 1.0f; }
};

/* wint8: q + 128 via XOR, as 2^23 + (q + 128) and one FADD. */
struct FWint8 {
    static constexpr bool GROUPED = false, DIRECT = false;
    static constexpr int RAW = 64;
    static constexpr int UNIT = 0;
    static __device__ __forceinline__ void row_init(Row &w, const GParams &p, int64_t r) { w.q = p.q + r * p.k; }
    static __device__ __forceinline__ void load(uint32_t dst, const Row &w, const GParams &, int g, int) {
#pragma unroll
        for (int c = 0; c < 4; c++) cp16(dst + c * 16, w.q + g * 64 + c * 16);
    }
    static __device__ __forceinline__ void decode(const uint8_t *raw, const Row &, int, uint32_t (&o)[32], float &) {
#pragma unroll
        for (int c = 0; c < 4; c++) {
            uint4 v = *(const uint4 *)(raw + c * 16);
            uint32_t wd[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int i = 0; i < 4; i++) {
                uint32_t x = wd[i] ^ 0x80808080u;
                float f[4];
#pragma unroll
                for (int b = 0; b < 4; b++) f[b] = mag((x >> (8 * b)) & 0xFFu) - 8388736.0f;
                o[c * 8 + 2 * i] = bf2(f[0], f[1]);
                o[c * 8 + 2 * i + 1] = bf2(f[2], f[3]);
            }
        }
    }
    static __device__ __forceinline__ float scale(const GParams &p, int64_t r) { return __ldg(p.scale + r); }
};

/* wint4: low nibble = even k; n - 8. */
struct FWint4 {
    static constexpr bool GROUPED = false, DIRECT = false;
    static constexpr int RAW = 32;
    static constexpr int UNIT = 0;
    static __device__ __forceinline__ void row_init(Row &w, const GParams &p, int64_t r) { w.q = p.q + r * (p.k / 2); }
    static __device__ __forceinline__ void load(uint32_t dst, const Row &w, const GParams &, int g, int) {
        cp16(dst, w.q + g * 32);
        cp16(dst + 16, w.q + g * 32 + 16);
    }
    static __device__ __forceinline__ void decode(const uint8_t *raw, const Row &, int, uint32_t (&o)[32], float &) {
#pragma unroll
        for (int c = 0; c < 2; c++) {
            uint4 v = *(const uint4 *)(raw + c * 16);
            uint32_t wd[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int i = 0; i < 4; i++) {
#pragma unroll
                for (int m = 0; m < 4; m++) {
                    float lo = mag((wd[i] >> (8 * m)) & 15u) - 8388616.0f;
                    float hi = mag((wd[i] >> (8 * m + 4)) & 15u) - 8388616.0f;
                    o[c * 16 + i * 4 + m] = bf2(lo, hi);
                }
            }
        }
    }
    static __device__ __forceinline__ float scale(const GParams &p, int64_t r) { return __ldg(p.scale + r); }
};

/* ccq2.75, tiled: unit buffer = the 64 main bytes (lane t's stored bytes 5t..5t+3 of group Gi at 16 t +
 * 4 Gi), the 4 words whose byte Gi is stored byte 5t+4 (64..79), and the 8 bytes holding bytes 20, 21 of
 * the unit's 4 groups (80..87). (v - 8) * local4 has at most 7 significant bits: exact in bf16, so the
 * local scale goes into A. */
struct FCcq275 {
    static constexpr bool GROUPED = false, DIRECT = false;
    static constexpr int RAW = 0, UNIT = 88;
    static __device__ __forceinline__ void row_init(Row &w, const GParams &p, int64_t r) { tiled_row<QF_CCQ275>(w, p, r); }
    static __device__ __forceinline__ void load_unit(uint32_t dst, const Row &w, const GParams &, int u) {
        const uint8_t *blk = tiled_unit<QF_CCQ275>(dst, w, u);
        cp16(dst + 64, blk + 1024 + w.h * 128 + w.gg * 16);
        cp8(dst + 80, blk + 1280 + w.h * 64 + w.gg * 8);
    }
    static __device__ __forceinline__ void decode(const uint8_t *raw, const Row &, int g, uint32_t (&o)[32], float &) {
        const uint4 x = *(const uint4 *)(raw + 64);
        const uint2 y = *(const uint2 *)(raw + 80);
        const int Gi = g & 3;
        uint32_t mw[4];
        unit_main(raw, Gi, mw);
        const uint32_t xb[4] = {x.x >> (8 * Gi), x.y >> (8 * Gi), x.z >> (8 * Gi), x.w >> (8 * Gi)};
        const uint32_t t2 = ((Gi & 2 ? y.y : y.x) >> (16 * (Gi & 1))) & 0xFFFFu; /* byte 20 | byte 21 << 8 */
        /* weight k: bits (4 - 2 (k % 3)) .. + 3 of byte k / 3; byte i is bits wsh(i) of word wsrc(i) */
        auto src = [&](int i) { return i < 20 ? (i % 5 < 4 ? mw[i / 5] : xb[i / 5]) : t2; };
        auto sh = [](int i) { return i < 20 ? (i % 5 < 4 ? 8 * (i % 5) : 0) : 8 * (i - 20); };
        /* (v - 8) L = (128 + v) L - 136 L: all exact in bf16 (136 L = 8 * 17 L has at most 8 significant bits) */
        const float L = mag((t2 >> 8) & 15u) - 8388608.0f;
        const uint32_t l2 = bf2(L, L), c2 = bf2(-136.0f * L, -136.0f * L);
#pragma unroll
        for (int i = 0; i < 32; i++) {
            const int k0 = 2 * i, k1 = 2 * i + 1;
            const int b0 = k0 / 3, b1 = k1 / 3;
            const uint32_t w = fields2(src(b0), sh(b0) + 4 - 2 * (k0 % 3), src(b1), sh(b1) + 4 - 2 * (k1 % 3), 15u);
            o[i] = bfma2(w, l2, c2);
        }
    }
    static __device__ __forceinline__ float scale(const GParams &p, int64_t r) { return bf16f(__ldg(p.super + r)); }
};

/* ccq2.5, tiled: unit buffer = the 64 main bytes (lane t's words 2t | 2t+1 << 16 of group Gi at 16 t +
 * 4 Gi), then word 8 | word 9 << 16 of each group (64 + 4 Gi). A = v - 4; the 13-bit local scale is
 * applied to the group's fp32 sums. */
struct FCcq25 {
    static constexpr bool GROUPED = true, DIRECT = false;
    static constexpr int RAW = 0, UNIT = 80;
    static __device__ __forceinline__ void row_init(Row &w, const GParams &p, int64_t r) { tiled_row<QF_CCQ25>(w, p, r); }
    static __device__ __forceinline__ void load_unit(uint32_t dst, const Row &w, const GParams &, int u) {
        const uint8_t *blk = tiled_unit<QF_CCQ25>(dst, w, u);
        cp16(dst + 64, blk + 1024 + w.h * 128 + w.gg * 16);
    }
    static __device__ __forceinline__ void decode(const uint8_t *raw, const Row &, int g, uint32_t (&o)[32], float &loc) {
        uint32_t h[4];
        unit_main(raw, g & 3, h);
        const uint32_t tl = *(const uint32_t *)(raw + 64 + 4 * (g & 3));
        const uint32_t wd[5] = {h[0], h[1], h[2], h[3], tl};
        /* weight k < 63 of word z = k / 7 at shift {13,11,9,6,4,2,0}[k % 7]; weight 63 at bits 13..15 of word 9 */
        auto sh = [](int k) {
            if (k == 63) return 29;
            const int z = k / 7, i = k % 7;
            return 16 * (z & 1) + (i == 0 ? 13 : i == 1 ? 11 : i == 2 ? 9 : i == 3 ? 6 : i == 4 ? 4 : i == 5 ? 2 : 0);
        };
        auto src = [&](int k) { return k == 63 ? tl : wd[(k / 7) >> 1]; };
#pragma unroll
        for (int i = 0; i < 32; i++) /* v - 4 = (128 + v) - 132 */
            o[i] = bfma2(fields2(src(2 * i), sh(2 * i), src(2 * i + 1), sh(2 * i + 1), 7u), BF_ONE2, 0xC304C304u);
        loc = (float)((tl >> 16) & 0x1FFFu);
    }
    static __device__ __forceinline__ float scale(const GParams &p, int64_t r) { return bf16f(__ldg(p.super + r)); }
};

/* ccq2.06: code = floor(fmaf(q, cs, zp + 0.5)) exactly as FastDeploy; A = v - 32. floor(y) by adding
 * 1.5 * 2^23 rounding down: for |y| < 2^22 the float's low mantissa bits are floor(y) mod 2^23, the same
 * low 15 bits as __float2int_rd(y), on the FMA pipe instead of a quarter-rate conversion; v_j = code bits
 * 9 - 3 j .. + 5 (bits above 14 never reach a field). wd: the group's 16 code bytes. */
__device__ __forceinline__ void decode206(const uint32_t (&wd)[4], float cs, float zp5, uint32_t (&o)[32]) {
#pragma unroll
    for (int j = 0; j < 16; j++) {
        const float qf = __uint_as_float(__byte_perm(wd[j >> 2], 0x4B000000u, 0x7440u | (j & 3))) - 8388608.0f;
        const uint32_t c = __float_as_uint(__fadd_rd(fmaf(qf, cs, zp5), 12582912.0f));
        /* v - 32 = (128 + v) - 160 */
        o[2 * j] = bfma2(((c >> 9) & 0x3Fu) | ((c << 10) & 0x3F0000u) | BF_BIAS2, BF_ONE2, 0xC320C320u);
        o[2 * j + 1] = bfma2(((c >> 3) & 0x3Fu) | ((c << 16) & 0x3F0000u) | BF_BIAS2, BF_ONE2, 0xC320C320u);
    }
}

/* ccq2.06, tiled: unit buffer = the 64 main bytes, then the local word of tile rows gg and gg + 8 (64..67):
 * group Gi's local at bits 16 h + 4 Gi. */
struct FCcq206 {
    static constexpr bool GROUPED = true, DIRECT = false;
    static constexpr int RAW = 0, UNIT = 68;
    static __device__ __forceinline__ void row_init(Row &w, const GParams &p, int64_t r) {
        tiled_row<QF_CCQ206>(w, p, r);
        w.cs = __ldg(p.cs + r);
        w.zp5 = __ldg(p.zp + r) + 0.5f;
    }
    static __device__ __forceinline__ void load_unit(uint32_t dst, const Row &w, const GParams &, int u) {
        const uint8_t *blk = tiled_unit<QF_CCQ206>(dst, w, u);
        cp4(dst + 64, blk + 1024 + w.gg * 4);
    }
    static __device__ __forceinline__ void decode(const uint8_t *raw, const Row &w, int g, uint32_t (&o)[32],
                                                  float &loc) {
        uint32_t wd[4];
        unit_main(raw, g & 3, wd);
        const uint32_t lw = *(const uint32_t *)(raw + 64);
        loc = (float)((lw >> (16 * w.h + 4 * (g & 3))) & 15u);
        decode206(wd, w.cs, w.zp5, o);
    }
    static __device__ __forceinline__ float scale(const GParams &p, int64_t r) { return bf16f(__ldg(p.super + r)); }
};

/* ccq2.06 as stored: raw = the group's 16 code bytes (0..15) and the aligned word of local holding its
 * local-scale byte g / 2 (16..19; high nibble for even g). */
struct FCcq206S {
    static constexpr bool GROUPED = true, DIRECT = false;
    static constexpr int RAW = 20, UNIT = 0;
    static __device__ __forceinline__ void row_init(Row &w, const GParams &p, int64_t r) {
        w.q = p.q + r * (p.k / 4), w.ti = r * p.lstride, w.h = -1;
        w.cs = __ldg(p.cs + r);
        w.zp5 = __ldg(p.zp + r) + 0.5f;
    }
    static __device__ __forceinline__ void load(uint32_t dst, const Row &w, const GParams &p, int g, int) {
        cp16(dst, w.q + g * 16);
        cp4(dst + 16, p.local + ((w.ti + (g >> 1)) & ~(int64_t)3));
    }
    static __device__ __forceinline__ void decode(const uint8_t *raw, const Row &w, int g, uint32_t (&o)[32],
                                                  float &loc) {
        const uint4 h = *(const uint4 *)raw;
        const uint32_t wd[4] = {h.x, h.y, h.z, h.w};
        const uint32_t lw = *(const uint32_t *)(raw + 16);
        const uint32_t lb = (lw >> (8 * (int)((w.ti + (g >> 1)) & 3))) & 0xFFu;
        loc = (float)((g & 1) ? (lb & 15u) : (lb >> 4));
        decode206(wd, w.cs, w.zp5, o);
    }
    static __device__ __forceinline__ float scale(const GParams &p, int64_t r) { return bf16f(__ldg(p.super + r)); }
};

/* ---- configuration ---- */

/* Raw-area row stride: the group's bytes rounded up to 16-byte units, an odd number of units. */
template <class F>
constexpr int raw_stride() {
    return F::RAW == 0 ? 0 : ((F::RAW + 15) / 16 % 2 ? (F::RAW + 15) / 16 * 16 : (F::RAW + 15) / 16 * 16 + 16);
}
template <class F>
constexpr int slot_bytes(int BN) {
    return (BM * 128 + BN * 128 + BM * raw_stride<F>() + (F::GROUPED ? BM * 4 : 0) + 1023) / 1024 * 1024;
}
/* The unit buffers of the tiled formats (two: the unit being decoded and the next one being copied). */
template <class F>
constexpr int unit_stride() {
    return F::UNIT == 0 ? 0 : ((F::UNIT + 15) / 16 % 2 ? (F::UNIT + 15) / 16 * 16 : (F::UNIT + 15) / 16 * 16 + 16);
}
template <class F>
constexpr int unit_bytes() {
    return 2 * BM * unit_stride<F>();
}
/* Ring slots: 4, or 3 where 4 do not fit the 227 KB of shared memory (wint8's raw rows are larger). */
template <class F, int BN>
constexpr int slots() {
    return 4 * slot_bytes<F>(BN) + unit_bytes<F>() + 1024 <= 232448 ? 4 : 3;
}

/* SEP: each 64-k step is summed on its own by the tensor cores and added to fp32 running sums in
 * registers (with the group's local scale for the group-scaled formats). Without it the tensor cores
 * accumulate over all of K, which rounds more coarsely (their additions are not IEEE fp32). */
template <class F, int BN_, int S_, bool SEP_>
struct Cfg {
    static constexpr int BN = BN_, S = S_;
    enum : int {
        SEP = SEP_ || F::GROUPED,
        RAWSTRIDE = raw_stride<F>(),
        A_OFF = 0,
        B_OFF = BM * 128,
        RAW_OFF = B_OFF + BN * 128,
        LSC_OFF = RAW_OFF + BM * RAWSTRIDE,
        SLOT = slot_bytes<F>(BN),
        USTRIDE = unit_stride<F>(),
        U_OFF = S * SLOT, /* unit buffer b at U_OFF + b * BM * USTRIDE */
        SMEM = S * SLOT + unit_bytes<F>() + 1024
    };
    static_assert(S <= 5, "a unit buffer is refilled only after its last step's decode (needs S <= 5)");
    static_assert(3 * S <= 15, "named barriers: 1 + 3 S ids");
    static_assert(BN % 32 == 0 && BN <= 256, "token tile");
    /* named barrier ids: 0 is __syncthreads */
    static __device__ __forceinline__ int full_id(int c, int s) { return 1 + c * S + s; }
    static __device__ __forceinline__ int empty_id(int s) { return 1 + 2 * S + s; }
};

/* The block's tile: weight rows [rt * BM, +BM) of expert e, token slots [tok0, tok0 + ntok). Returns
 * false for blocks past the last tile (grouped products launch an upper bound of tiles). Every thread
 * computes the same answer from the same data.
 * Plain products: row-tile-major (the blocks that share a weight tile run together, and the token tiles
 * of X are few enough to stay in L2), the BN-wide tiles first, then the narrow ones (BN / 2 tokens) that
 * fill the last wave (the host's choice of nwide). Grouped products: token-tile-major, so that the ~n /
 * BM blocks reading one X tile run at the same time and read it once from memory; row-tile-major, the
 * concurrent blocks were all different experts' token tiles and the whole X went through DRAM once per
 * row tile (7.5 GB per MoE down product at T = 2048). */
template <int BN>
__device__ __forceinline__ bool find_tile(const GParams &p, int &e, int &rt, int64_t &tok0, int &ntok) {
    const int b = blockIdx.x;
    if (!p.off) {
        e = 0;
        const int wide = p.row_tiles * p.nwide;
        if (b < wide) {
            rt = b / p.nwide;
            tok0 = (int64_t)(b - rt * p.nwide) * BN;
            ntok = (int)min((int64_t)BN, p.total - tok0);
        } else {
            const int nn = p.tok_tiles - p.nwide, b2 = b - wide;
            rt = b2 / nn;
            tok0 = (int64_t)p.nwide * BN + (int64_t)(b2 - rt * nn) * (BN / 2);
            ntok = (int)min((int64_t)(BN / 2), p.total - tok0);
        }
        return tok0 < p.total;
    }
    const int tt = b / p.row_tiles;
    rt = b - tt * p.row_tiles;
    int cum = 0;
    int64_t lo = min(max((int64_t)__ldg(p.off), (int64_t)0), p.total);
    for (int x = 0; x < p.n_experts; x++) {
        int64_t hi = min(max((int64_t)__ldg(p.off + x + 1), lo), p.total);
        int nt = (int)((hi - lo + BN - 1) / BN);
        if (tt < cum + nt) {
            e = x;
            tok0 = lo + (int64_t)(tt - cum) * BN;
            ntok = (int)min((int64_t)BN, hi - tok0);
            return true;
        }
        cum += nt;
        lo = hi;
    }
    return false;
}

/* ---- producer ---- */

template <class F, class C>
__device__ __forceinline__ void producer(const GParams &p, uint8_t *sm, int e, int rt, int64_t tok0, int ntok) {
    constexpr int BN = C::BN, S = C::S;
    const int tid = threadIdx.x; /* 0..127: weight row of the tile */
    const int KT = p.k / 64;
    const int64_t grow = (int64_t)e * p.n + min(rt * BM + tid, p.n - 1);
    Row w;
    F::row_init(w, p, grow);

    /* X: thread copies 16-byte chunk c of token rows jb + 16 i */
    const int c = tid & 7, jb = tid >> 3;
    uint32_t xo[BN / 16]; /* element offsets into x (x_rows * k < 2^31: checked on the host) */
#pragma unroll
    for (int i = 0; i < BN / 16; i++) {
        int64_t slot = tok0 + min(jb + 16 * i, ntok - 1), src;
        if (p.perm) src = min(max((int64_t)__ldg(p.perm + slot), (int64_t)0), p.x_rows - 1);
        else src = min(slot, p.x_rows - 1);
        xo[i] = (uint32_t)(src * p.k + c * 8);
    }
    /* X rows past the tile's tokens are never copied on the wgmma kernel: its consumers multiply only the
     * first 16, 32, 64 or 128 rows of a half that holds fewer tokens, and the rows past ntok in what they
     * do read only reach output columns that are never written. */
    const int nx = BN == 256 ? min(BN / 16, (ntok + 15) / 16) : BN / 16;
    const uint32_t base = smem_u32(sm);
    const uint32_t bdst = C::B_OFF + jb * 128 + ((c ^ (jb & 7)) << 4);
    const uint32_t wdst = F::DIRECT ? C::A_OFF + tid * 128 : C::RAW_OFF + tid * C::RAWSTRIDE;
    const uint32_t udst = C::U_OFF + tid * C::USTRIDE;

    /* Tiled formats copy a whole unit (4 groups) with the first step of the unit, into unit buffer
     * (u & 1): that buffer's previous unit (u - 2) was last decoded S - 1 or more iterations earlier. The
     * copies join the step's commit group, so the step's wait covers them. */
    auto load_stage = [&](int kt, int s) {
        uint32_t sb = base + s * C::SLOT;
#pragma unroll
        for (int i = 0; i < BN / 16; i++)
            if (i < nx) cp16(sb + bdst + i * 2048, p.x + xo[i] + kt * 64);
        if constexpr (F::UNIT > 0) {
            if ((kt & 3) == 0) F::load_unit(base + udst + ((kt >> 2) & 1) * (BM * C::USTRIDE), w, p, kt >> 2);
        } else {
            F::load(sb + wdst, w, p, kt, tid);
        }
    };

#pragma unroll 1
    for (int j = 0; j < S; j++) {
        if (j < KT) load_stage(j, j);
        cp_commit();
    }
#pragma unroll 1
    for (int kt = 0; kt < KT; kt++) {
        const int s = kt % S;
        cp_wait<S - 2>(); /* step kt's copies (group kt) have landed */
        uint8_t *slot = sm + s * C::SLOT;
        if constexpr (!F::DIRECT) {
            uint32_t o[32];
            float loc = 1.0f;
            const uint8_t *raw = F::UNIT > 0 ? sm + C::U_OFF + ((kt >> 2) & 1) * (BM * C::USTRIDE) + tid * C::USTRIDE
                                              : slot + C::RAW_OFF + tid * C::RAWSTRIDE;
            F::decode(raw, w, kt, o, loc);
            uint8_t *arow = slot + C::A_OFF + tid * 128;
#pragma unroll
            for (int cc = 0; cc < 8; cc++)
                *(uint4 *)(arow + ((cc ^ (tid & 7)) << 4)) = make_uint4(o[4 * cc], o[4 * cc + 1], o[4 * cc + 2], o[4 * cc + 3]);
            if constexpr (F::GROUPED) ((float *)(slot + C::LSC_OFF))[tid] = loc;
        }
        fence_async_smem();
        bar_arrive(C::full_id(0, s), 256);
        bar_arrive(C::full_id(1, s), 256);
        if (kt >= 1) {
            const int sp = (kt - 1) % S;
            bar_sync(C::empty_id(sp), NTHREAD);
            if (kt - 1 + S < KT) load_stage(kt - 1 + S, sp);
            cp_commit();
        }
    }
    bar_sync(C::empty_id((KT - 1) % S), NTHREAD);
}

/* ---- consumers ---- */

/* Writes accumulator value v of tile row rl (0..127) and token column col. */
__device__ __forceinline__ void emit(const GParams &p, int rt, int64_t tok0, int ntok, int rl, int col, float v,
                                     float sc) {
    int row = rt * BM + rl;
    if (row >= p.n || col >= ntok) return;
    int64_t o = (tok0 + col) * p.n + row;
    v *= sc;
    if (p.out_bf16) ((uint16_t *)p.y)[o] = f2bf16(v);
    else ((float *)p.y)[o] = v;
}

template <class F>
__device__ __forceinline__ float row_scale_of(const GParams &p, int e, int rt, int rl) {
    int row = min(rt * BM + rl, p.n - 1);
    return F::scale(p, (int64_t)e * p.n + row);
}

template <int BN>
__device__ __forceinline__ void wgmma_bn(float (&d)[BN / 2], uint64_t da, uint64_t db, int scale_d) {
    if constexpr (BN == 256) wgmma_m64n256k16(d, da, db, scale_d);
    else wgmma_m64n128k16(d, da, db, scale_d);
}

/* One 64-column step of a 64 x N block of sums into d (N = 128, 64, 32, 16: the first N / 2 registers),
 * from A at sa and the first N token rows of B at sb, committed as one group. */
template <int N>
__device__ __forceinline__ void wgmma_steps(float (&d)[64], uint32_t sa, uint32_t sb) {
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        const uint64_t da = desc_sw128(sa + kk * 32), db = desc_sw128(sb + kk * 32);
        if constexpr (N == 128) wgmma_m64n128k16(d, da, db, kk > 0);
        else if constexpr (N == 64) wgmma_m64n64k16(d, da, db, kk > 0);
        else if constexpr (N == 32) wgmma_m64n32k16(d, da, db, kk > 0);
        else wgmma_m64n16k16(d, da, db, kk > 0);
    }
    wgmma_commit();
}

template <int M>
__device__ __forceinline__ void fence_first(float (&d)[64]) {
#pragma unroll
    for (int i = 0; i < M; i++) asm volatile("" : "+f"(d[i])::"memory");
}

/* Half H of one step: the sums of its first N tokens into tmp, then added into acc[64 H ..]; LAST: the
 * slot is released once the tensor cores have read it. */
template <class C, int N, int H, bool LAST>
__device__ __forceinline__ void sep_half(float (&tmp)[64], float (&acc)[C::BN / 2], uint32_t sa, uint32_t sb, float l0,
                                         float l1, int s) {
    wgmma_steps<N>(tmp, sa, sb + H * 128 * 128);
    wgmma_wait<0>();
    fence_first<N / 2>(tmp);
    if (LAST) bar_arrive(C::empty_id(s), NTHREAD);
#pragma unroll
    for (int j = 0; j < N / 8; j++) {
        float *a = acc + 64 * H + 4 * j;
        a[0] = fmaf(l0, tmp[4 * j], a[0]);
        a[1] = fmaf(l0, tmp[4 * j + 1], a[1]);
        a[2] = fmaf(l1, tmp[4 * j + 2], a[2]);
        a[3] = fmaf(l1, tmp[4 * j + 3], a[3]);
    }
}

/* The per-step-sums main loop of a consumer: each 64-column step is summed by the tensor cores into tmp
 * (N0 tokens of the first half, then N1 of the second; N1 = 0: no second half) and added into the fp32
 * running sums acc with the group's local scale. tmp is the n128 block (64 registers) of which an nN
 * instruction uses the first N / 2. The running sums take 128, so the 256-token tile fits (setmaxnreg
 * gives the consumers 208). */
template <class F, class C, int N0, int N1>
__device__ __forceinline__ void sep_loop(const GParams &p, uint8_t *sm, int cw, int r0, uint32_t abase, uint32_t bbase,
                                         float (&acc)[C::BN / 2]) {
    static_assert(C::BN == 256, "two halves of 128 tokens");
    constexpr int S = C::S;
    const int KT = p.k / 64;
    float tmp[64];
#pragma unroll
    for (int i = 0; i < N0 / 2; i++) tmp[i] = 0.f;
#pragma unroll 1
    for (int kt = 0; kt < KT; kt++) {
        const int s = kt % S;
        bar_sync(C::full_id(cw, s), 256);
        float l0 = 1.f, l1 = 1.f;
        if constexpr (F::GROUPED) {
            const float *lsc = (const float *)(sm + s * C::SLOT + C::LSC_OFF);
            l0 = lsc[r0], l1 = lsc[r0 + 8];
        }
        const uint32_t sa = abase + s * C::SLOT, sb = bbase + s * C::SLOT;
        sep_half<C, N0, 0, N1 == 0>(tmp, acc, sa, sb, l0, l1, s);
        if constexpr (N1 > 0) sep_half<C, N1, 1, true>(tmp, acc, sa, sb, l0, l1, s);
    }
}

/* wgmma consumer: warpgroup cw (0, 1) owns tile rows 64 cw .. 64 cw + 63. Accumulator i = 4 j + q holds
 * row 16 warp + g + 8 (q >> 1), token 8 j + 2 t + (q & 1) (the m64nN D fragment). */
template <class F, class C>
__device__ __forceinline__ void consumer_wgmma(const GParams &p, uint8_t *sm, int e, int rt, int64_t tok0, int ntok) {
    constexpr int BN = C::BN, S = C::S, NA = BN / 2;
    const int tid = threadIdx.x - 128, cw = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
    const int g = lane >> 2, t = lane & 3;
    const int KT = p.k / 64;
    const int r0 = 64 * cw + 16 * warp + g; /* and r0 + 8 */
    float acc[NA];
#pragma unroll
    for (int i = 0; i < NA; i++) acc[i] = 0.f;
    const uint32_t abase = smem_u32(sm) + C::A_OFF + cw * 64 * 128, bbase = smem_u32(sm) + C::B_OFF;
    if constexpr (C::SEP) {
        /* One copy of the loop per instruction shape (a branch between shapes inside one loop made ptxas
         * serialize the wgmma pipeline for want of registers): full tiles take two n128 halves; a tile of
         * at most 128 tokens (an expert's last tile, short prompts, the narrow tiles) one half with the
         * narrowest of n128, n64, n32, n16 that holds its tokens. */
        if (ntok > 128) sep_loop<F, C, 128, 128>(p, sm, cw, r0, abase, bbase, acc);
        else if (ntok > 64) sep_loop<F, C, 128, 0>(p, sm, cw, r0, abase, bbase, acc);
        else if (ntok > 32) sep_loop<F, C, 64, 0>(p, sm, cw, r0, abase, bbase, acc);
        else if (ntok > 16) sep_loop<F, C, 32, 0>(p, sm, cw, r0, abase, bbase, acc);
        else sep_loop<F, C, 16, 0>(p, sm, cw, r0, abase, bbase, acc);
    } else {
        /* (A branch to an n128 instruction for short tiles here measured 10-25% slower on full tiles.) */
#pragma unroll 1
        for (int kt = 0; kt < KT; kt++) {
            const int s = kt % S;
            bar_sync(C::full_id(cw, s), 256);
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
                wgmma_bn<BN>(acc, desc_sw128(abase + s * C::SLOT + kk * 32), desc_sw128(bbase + s * C::SLOT + kk * 32),
                             1);
            wgmma_commit();
            wgmma_wait<1>();
            fence_regs(acc);
            if (kt >= 1) bar_arrive(C::empty_id((kt - 1) % S), NTHREAD);
        }
        wgmma_wait<0>();
        fence_regs(acc);
        bar_arrive(C::empty_id((KT - 1) % S), NTHREAD);
    }
    const float s0 = row_scale_of<F>(p, e, rt, r0), s1 = row_scale_of<F>(p, e, rt, r0 + 8);
#pragma unroll
    for (int j = 0; j < NA / 4; j++) {
        const int col = 8 * j + 2 * t;
        emit(p, rt, tok0, ntok, r0, col, acc[4 * j], s0);
        emit(p, rt, tok0, ntok, r0, col + 1, acc[4 * j + 1], s0);
        emit(p, rt, tok0, ntok, r0 + 8, col, acc[4 * j + 2], s1);
        emit(p, rt, tok0, ntok, r0 + 8, col + 1, acc[4 * j + 3], s1);
    }
}

__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t (&r)[4]) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void mma16816(float *c, const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* mma.sync consumer (Ampere, Ada; and Hopper binaries without sm_90a code): warpgroup cw owns rows
 * 64 cw .., its warp (wr, wc) = (warp & 1, warp >> 1) rows 32 wr .. + 31 and tokens wc BN/2 .. + BN/2 - 1.
 * Accumulator ((mt * NT + nt) * 4 + q): row 32 wr + 16 mt + g + 8 (q >> 1), token wc BN/2 + 8 nt + 2 t + (q & 1). */
template <class F, class C>
__device__ __forceinline__ void consumer_mma(const GParams &p, uint8_t *sm, int e, int rt, int64_t tok0, int ntok) {
    constexpr int BN = C::BN, S = C::S, NT = BN / 16, NA = 2 * NT * 4;
    const int tid = threadIdx.x - 128, cw = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
    const int g = lane >> 2, t = lane & 3, wr = warp & 1, wc = warp >> 1;
    const int KT = p.k / 64;
    const int rbase = 64 * cw + 32 * wr; /* rows of this warp */
    const int cbase = wc * (BN / 2);
    float acc[NA], tmp[C::SEP ? NA : 4];
#pragma unroll
    for (int i = 0; i < NA; i++) acc[i] = 0.f;
    (void)tmp;
    /* ldmatrix row addresses (lane l gives row l & 7 of matrix l >> 3) */
    const int mi = lane >> 3, lr = lane & 7;
    const uint32_t sbase = smem_u32(sm);
#pragma unroll 1
    for (int kt = 0; kt < KT; kt++) {
        const int s = kt % S;
        bar_sync(C::full_id(cw, s), 256);
        const uint32_t sa = sbase + s * C::SLOT + C::A_OFF, sb = sbase + s * C::SLOT + C::B_OFF;
        float *d = C::SEP ? tmp : acc;
        if constexpr (C::SEP) {
#pragma unroll
            for (int i = 0; i < NA; i++) tmp[i] = 0.f;
        }
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            uint32_t a[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                const int row = rbase + 16 * mt + lr + 8 * (mi & 1), ch = 2 * kk + (mi >> 1);
                ldsm_x4(sa + row * 128 + ((ch ^ (row & 7)) << 4), a[mt]);
            }
#pragma unroll
            for (int np = 0; np < NT / 2; np++) {
                uint32_t b[4];
                const int tok = cbase + 16 * np + lr + 8 * (mi >> 1), ch = 2 * kk + (mi & 1);
                ldsm_x4(sb + tok * 128 + ((ch ^ (tok & 7)) << 4), b);
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    mma16816(d + ((mt * NT + 2 * np) * 4), a[mt], b[0], b[1]);
                    mma16816(d + ((mt * NT + 2 * np + 1) * 4), a[mt], b[2], b[3]);
                }
            }
        }
        if constexpr (C::SEP) {
            float l[2][2] = {{1.f, 1.f}, {1.f, 1.f}};
            if constexpr (F::GROUPED) {
                const float *lsc = (const float *)(sm + s * C::SLOT + C::LSC_OFF);
#pragma unroll
                for (int mt = 0; mt < 2; mt++)
                    l[mt][0] = lsc[rbase + 16 * mt + g], l[mt][1] = lsc[rbase + 16 * mt + g + 8];
            }
            bar_arrive(C::empty_id(s), NTHREAD);
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int i = 0; i < NT * 4; i++) {
                    const int a = mt * NT * 4 + i;
                    acc[a] = fmaf(l[mt][(i & 3) >> 1], tmp[a], acc[a]);
                }
        } else {
            bar_arrive(C::empty_id(s), NTHREAD);
        }
    }
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
        const int ra = rbase + 16 * mt + g;
        const float s0 = row_scale_of<F>(p, e, rt, ra), s1 = row_scale_of<F>(p, e, rt, ra + 8);
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const float *v = acc + (mt * NT + nt) * 4;
            const int col = cbase + 8 * nt + 2 * t;
            emit(p, rt, tok0, ntok, ra, col, v[0], s0);
            emit(p, rt, tok0, ntok, ra, col + 1, v[1], s0);
            emit(p, rt, tok0, ntok, ra + 8, col, v[2], s1);
            emit(p, rt, tok0, ntok, ra + 8, col + 1, v[3], s1);
        }
    }
}

template <class F, class C, bool WG>
__global__ void __launch_bounds__(NTHREAD, 1) qgemm_kernel(const GParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr bool BUILD = true;
#else
    constexpr bool BUILD = !WG; /* the wgmma kernel exists only in the sm_90a code; the host checks first */
#endif
    if constexpr (BUILD) {
        extern __shared__ uint8_t smem_dyn[];
        uint8_t *sm = (uint8_t *)(((uintptr_t)smem_dyn + 1023) & ~(uintptr_t)1023);
        int e, rt, ntok;
        int64_t tok0;
        if (!find_tile<C::BN>(p, e, rt, tok0, ntok)) return;
        if (threadIdx.x < 128) {
            if constexpr (WG && C::SEP) setmaxnreg_dec<88>();
            producer<F, C>(p, sm, e, rt, tok0, ntok);
        } else {
            if constexpr (WG && C::SEP) setmaxnreg_inc<208>();
            if constexpr (WG) consumer_wgmma<F, C>(p, sm, e, rt, tok0, ntok);
            else consumer_mma<F, C>(p, sm, e, rt, tok0, ntok);
        }
    }
}

/* 1 when the code running on this device is the sm_90a build (wgmma available). */
__global__ void k_probe(int *out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    *out = 1;
#else
    *out = 0;
#endif
}

/* ---- host side ---- */

int ck(err_t *err, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 0;
    return err_set(err, ERR_NODEV, "%s: %s", what, cudaGetErrorString(e));
}

qgemm_path g_path = QGEMM_AUTO;

/* What QGEMM_AUTO uses where wgmma runs: the per-step fp32 sums, which measured both more accurate and
 * faster than accumulating in the tensor cores (docs/perf-gemm.md). */
constexpr qgemm_path AUTO_WG = QGEMM_WGMMA_FLUSH;

/* -1 unknown, else whether the sm_90a kernels run on device dev (cached per device, up to 64) */
int g_has_wg[64];
bool g_has_wg_init = false;

int has_wgmma(int *has, err_t *err) {
    int dev = 0;
    if (ck(err, cudaGetDevice(&dev), "cudaGetDevice")) return -1;
    if (!g_has_wg_init) {
        for (int i = 0; i < 64; i++) g_has_wg[i] = -1;
        g_has_wg_init = true;
    }
    if (dev < 64 && g_has_wg[dev] >= 0) {
        *has = g_has_wg[dev];
        return 0;
    }
    int major = 0, minor = 0;
    if (ck(err, cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "cudaDeviceGetAttribute") ||
        ck(err, cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev), "cudaDeviceGetAttribute"))
        return -1;
    int v = 0;
    if (major == 9 && minor == 0) {
        /* the probe tells which of the binary's images the driver loaded for this device */
        int *d = NULL;
        if (ck(err, cudaMalloc(&d, sizeof(int)), "cudaMalloc")) return -1;
        k_probe<<<1, 1>>>(d);
        cudaError_t ce = cudaGetLastError();
        if (ce == cudaSuccess) ce = cudaMemcpy(&v, d, sizeof(int), cudaMemcpyDeviceToHost);
        cudaFree(d);
        if (ck(err, ce, "qgemm probe")) return -1;
    }
    if (dev < 64) g_has_wg[dev] = v;
    *has = v;
    return 0;
}

/* The cost of a tile of at most 128 tokens on the 256-token kernel, in full-tile times: the consumers'
 * work halves, the producer's decode does not (measured on the H100, docs/perf-gemm.md). */
constexpr double NARROW_COST = 0.6;

/* Makespan, in full-tile times, of nw full tiles then nn narrow ones dispatched in that order to P
 * multiprocessors (one block each), each taking the next tile when it becomes free. After the full
 * tiles, P - r processors are free at q and r at q + 1 (nw = q P + r); the narrow tiles go to whichever
 * group frees first, a round of the group at a time. */
double makespan(int64_t nw, int64_t nn, int64_t P, double c) {
    const int64_t q = nw / P, r = nw % P;
    double t[2] = {(double)q, (double)(q + 1)}, m = r ? (double)(q + 1) : (double)q;
    const int64_t cnt[2] = {P - r, r};
    while (nn > 0) {
        const int i = cnt[1] > 0 && t[1] < t[0] ? 1 : 0;
        nn -= cnt[i];
        m = fmax(m, t[i] + c);
        t[i] += c;
    }
    return m;
}

/* How many of a plain product's token tiles are 256 wide (the rest are 128 wide, after them): the
 * choice with the shortest estimated makespan, preferring wide tiles on ties. At T = 2048 the 7168-row
 * gate/up product has 448 wide tiles, 3.4 waves on 132 SMs; its last token column as narrow tiles ends
 * the product at about 3.6 full-tile times instead of 4. Short prompts: T = 256 as 128-token tiles
 * fills twice the SMs. */
int64_t choose_wide(int64_t T, int64_t row_tiles, int64_t sms) {
    const int64_t all = (T + 255) / 256;
    int64_t best = all;
    double best_m = 1e300;
    for (int64_t nw = all; nw >= 0 && nw >= all - 4; nw--) {
        const int64_t rest = T - 256 * nw > 0 ? T - 256 * nw : 0;
        const int64_t last = nw > 0 ? T - 256 * (nw - 1) : 256; /* tokens of the last wide tile */
        const int64_t full = last > 128 ? nw : nw - 1, narrow = nw - full + (rest + 127) / 128;
        const double m = makespan(row_tiles * full, row_tiles * narrow, sms, NARROW_COST);
        if (m < best_m - 1e-9) best_m = m, best = nw;
    }
    return best;
}

template <class F, class C, bool WG>
int launch_cfg(const GParams &p0, int64_t tok_tiles, int64_t nwide, cudaStream_t st, err_t *err) {
    GParams p = p0;
    const void *kfn = (const void *)qgemm_kernel<F, C, WG>;
    static bool attr_done[64];
    int dev = 0;
    if (ck(err, cudaGetDevice(&dev), "cudaGetDevice")) return -1;
    if (dev >= 64 || !attr_done[dev]) {
        int optin = 0;
        if (ck(err, cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "cudaDeviceGetAttribute"))
            return -1;
        if (optin < C::SMEM)
            return err_set(err, ERR_UNSUPPORTED, "qgemm: needs %d bytes of shared memory per block, the device has %d",
                           C::SMEM, optin);
        if (ck(err, cudaFuncSetAttribute(kfn, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM),
               "cudaFuncSetAttribute"))
            return -1;
        if (dev < 64) attr_done[dev] = true;
    }
    int64_t row_tiles = (p.n + BM - 1) / BM, blocks = row_tiles * tok_tiles;
    if (blocks > 0x7fffffff) return err_set(err, ERR_ARG, "qgemm: %lld blocks: too many", (long long)blocks);
    p.row_tiles = (int)row_tiles;
    p.tok_tiles = (int)tok_tiles;
    p.nwide = (int)nwide;
    qgemm_kernel<F, C, WG><<<(unsigned)blocks, NTHREAD, C::SMEM, st>>>(p);
    return ck(err, cudaGetLastError(), "qgemm kernel launch");
}

/* Tile shapes. wgmma: 128 rows x 256 tokens, with per-step sums (two n128 halves) unless QGEMM_WGMMA asks
 * for tensor-core accumulation (formats without group scales); as many slots as shared memory takes
 * (4, or 3 for wint8 whose raw rows are larger); plain products add 128-token tiles where they shorten
 * the last wave (choose_wide). mma.sync: 128 tokens and 2 slots, which fit Ada's 99 KB. Grouped products
 * launch an upper bound of token tiles (one extra per expert); the surplus blocks exit. */
template <class F>
int launch_fmt(const GParams &p, qgemm_path path, int sms, cudaStream_t st, err_t *err) {
    const int64_t row_tiles = (p.n + BM - 1) / BM;
    int64_t tiles = (p.total + 255) / 256 + (p.off ? p.n_experts : 0), wide = tiles;
    if (!p.off && path != QGEMM_MMA) {
        wide = choose_wide(p.total, row_tiles, sms);
        tiles = wide + (p.total - 256 * wide > 0 ? (p.total - 256 * wide + 127) / 128 : 0);
    }
    if constexpr (!F::GROUPED) {
        if (path == QGEMM_WGMMA) {
            return launch_cfg<F, Cfg<F, 256, slots<F, 256>(), false>, true>(p, tiles, wide, st, err);
        }
    }
    if (path != QGEMM_MMA) {
        return launch_cfg<F, Cfg<F, 256, slots<F, 256>(), true>, true>(p, tiles, wide, st, err);
    }
    tiles = (p.total + 127) / 128 + (p.off ? p.n_experts : 0);
    return launch_cfg<F, Cfg<F, 128, 2, true>, false>(p, tiles, tiles, st, err);
}

int check_mat(const qmat_dev *m, const char *who, err_t *err) {
    if (!m) return err_set(err, ERR_ARG, "%s: NULL weight", who);
    if (m->fmt < 0 || m->fmt >= QF_COUNT) return err_set(err, ERR_ARG, "%s: bad format %d", who, (int)m->fmt);
    if (m->k <= 0 || m->k % 64 || m->n <= 0 || m->n_experts <= 0)
        return err_set(err, ERR_ARG, "%s: %s weight of %lld x %lld: needs n > 0 and k a positive multiple of 64", who,
                       qfmt_name(m->fmt), (long long)m->n, (long long)m->k);
    if (m->k > (1 << 26) || m->n * (int64_t)m->n_experts > ((int64_t)1 << 31))
        return err_set(err, ERR_ARG, "%s: weight of %lld x %lld is too large", who, (long long)m->n, (long long)m->k);
    const bool ccq = m->fmt == QF_CCQ275 || m->fmt == QF_CCQ25 || m->fmt == QF_CCQ206;
    if (m->layout != QLAYOUT_STORED && (!ccq || (m->layout != QLAYOUT_ROWS && m->layout != QLAYOUT_GATE_UP) ||
                                        (m->layout == QLAYOUT_GATE_UP && m->n % 2)))
        return err_set(err, ERR_ARG, "%s: %s weight with layout %d", who, qfmt_name(m->fmt), m->layout);
    if ((m->fmt == QF_CCQ275 || m->fmt == QF_CCQ25) && m->layout == QLAYOUT_STORED)
        return err_set(err, ERR_ARG, "%s: a %s weight is read in the tiled layout (qmat_tile)", who, qfmt_name(m->fmt));
    bool ok = m->q != NULL;
    switch (m->fmt) {
    case QF_WINT8:
    case QF_WINT4: ok = ok && m->scale; break;
    case QF_CCQ206:
        ok = ok && m->code_scale && m->code_zp && m->super && (m->layout != QLAYOUT_STORED || m->local);
        break;
    case QF_CCQ275:
    case QF_CCQ25: ok = ok && m->super; break;
    default: break;
    }
    if (!ok) return err_set(err, ERR_ARG, "%s: %s weight is missing a part", who, qfmt_name(m->fmt));
    if ((uintptr_t)m->q % 16 || (m->local && (uintptr_t)m->local % 4))
        return err_set(err, ERR_ARG, "%s: %s weight parts are not aligned (q to 16 bytes, local to 4)", who,
                       qfmt_name(m->fmt));
    return 0;
}

int run(const qmat_dev *m, const uint16_t *x, int64_t x_rows, const int32_t *perm, const int32_t *off, int64_t total,
        void *y, qout yt, cudaStream_t st, const char *who, err_t *err) {
    if (!x || !y) return err_set(err, ERR_ARG, "%s: NULL x or y", who);
    if ((uintptr_t)x % 16 || (uintptr_t)y % (yt == QOUT_BF16 ? 2 : 4))
        return err_set(err, ERR_ARG, "%s: x must be 16-byte aligned and y aligned to its element", who);
    if (total > ((int64_t)1 << 31) || x_rows * m->k >= ((int64_t)1 << 31))
        return err_set(err, ERR_ARG, "%s: %lld rows of x (%lld slots): too many", who, (long long)x_rows,
                       (long long)total);
    int wg = 0;
    if (g_path != QGEMM_MMA && has_wgmma(&wg, err)) return -1;
    if ((g_path == QGEMM_WGMMA || g_path == QGEMM_WGMMA_FLUSH) && !wg)
        return err_set(err, ERR_UNSUPPORTED, "%s: the wgmma kernel needs an sm_90 GPU and this binary's sm_90a code", who);
    qgemm_path path = g_path == QGEMM_AUTO ? (wg ? AUTO_WG : QGEMM_MMA) : g_path;
    GParams p;
    memset(&p, 0, sizeof p);
    p.q = (const uint8_t *)m->q;
    p.tail = (const uint8_t *)m->tail;
    p.tail2 = (const uint8_t *)m->tail2;
    p.local = m->local;
    p.scale = m->scale;
    p.cs = m->code_scale;
    p.zp = m->code_zp;
    p.super = m->super;
    p.n = (int)m->n;
    p.k = (int)m->k;
    p.layout = m->layout;
    p.units = (int)ql_units(m->k);
    p.lstride = (int)((m->k + 127) / 128);
    p.x = x;
    p.x_rows = x_rows;
    p.y = y;
    p.out_bf16 = yt == QOUT_BF16;
    p.perm = perm;
    p.off = off;
    p.n_experts = m->n_experts;
    p.total = total;
    int dev = 0, sms = 0;
    if (ck(err, cudaGetDevice(&dev), "cudaGetDevice") ||
        ck(err, cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute"))
        return -1;
    if (sms < 1) sms = 1;
    switch (m->fmt) {
    case QF_BF16: return launch_fmt<FBf16>(p, path, sms, st, err);
    case QF_WINT8: return launch_fmt<FWint8>(p, path, sms, st, err);
    case QF_WINT4: return launch_fmt<FWint4>(p, path, sms, st, err);
    case QF_CCQ275: return launch_fmt<FCcq275>(p, path, sms, st, err);
    case QF_CCQ25: return launch_fmt<FCcq25>(p, path, sms, st, err);
    case QF_CCQ206:
        return m->layout == QLAYOUT_STORED ? launch_fmt<FCcq206S>(p, path, sms, st, err)
                                           : launch_fmt<FCcq206>(p, path, sms, st, err);
    default: return err_set(err, ERR_ARG, "%s: bad format", who);
    }
}

} // namespace

extern "C" int qgemm(const qmat_dev *m, const uint16_t *x, int64_t T, void *y, qout yt, void *stream, err_t *err) {
    if (check_mat(m, "qgemm", err)) return -1;
    if (m->n_experts != 1) return err_set(err, ERR_ARG, "qgemm: a stacked weight needs qgemm_grouped");
    if (T < 1) return err_set(err, ERR_ARG, "qgemm: T = %lld", (long long)T);
    return run(m, x, T, NULL, NULL, T, y, yt, (cudaStream_t)stream, "qgemm", err);
}

extern "C" int qgemm_grouped(const qmat_dev *m, const uint16_t *x, int64_t x_rows, const int32_t *perm,
                             const int32_t *offsets, int64_t total, void *y, qout yt, void *stream, err_t *err) {
    if (check_mat(m, "qgemm_grouped", err)) return -1;
    if (!offsets || total < 0 || x_rows < 1)
        return err_set(err, ERR_ARG, "qgemm_grouped: bad arguments (total %lld, x_rows %lld)", (long long)total,
                       (long long)x_rows);
    if (total == 0) return 0;
    return run(m, x, x_rows, perm, offsets, total, y, yt, (cudaStream_t)stream, "qgemm_grouped", err);
}

extern "C" void qgemm_set_path(qgemm_path p) { g_path = p; }

extern "C" const char *qgemm_auto_path(err_t *err) {
    int wg = 0;
    if (has_wgmma(&wg, err)) return NULL;
    return !wg ? "mma.sync" : AUTO_WG == QGEMM_WGMMA ? "wgmma" : "wgmma-flush";
}
