/* kernels/cuda/qgemv.cu: batch-1 products y = W x of quantized weights with one bf16 vector, and the MoE
 * expert products, at the speed of the memory. One kernel template, one small struct per format.
 *
 * Why the tensor cores at batch 1. A 2-bit weight byte carries 3 to 4 weights; at 3 TB/s an H100 has
 * about 11 lane-operations per weight byte for everything (spec/ccq.md section 7), and integer work
 * (shifts, masks, permutes) runs on a 16-lane pipe, at half that rate. A multiply-add per weight on the ALUs would
 * eat the budget by itself. So the ALUs only decode: each format turns its bytes into bf16 pairs
 * "offset + v" with shifts, one masked OR, and exponent bits set by constants (no conversions), and
 * mma.sync m16n8k16 (bf16 x bf16 -> fp32) does the multiply-adds and most of the reduction. Products
 * of bf16 values are exact in fp32, so the result is an fp32 dot product of the decoded weights with
 * the bf16 activations; the offsets are removed afterwards with precomputed sums of x (below).
 *
 * Tile and fragments. A warp owns a tile of 16 weight rows (mma M = 16; the 8 lanes g = lane/4 hold
 * rows g and g+8) and walks K. In one step every lane supplies 4 k-slots of each of its two rows
 * (the A fragment: slots 0,1 are k = 2t,2t+1 and slots 2,3 are k = 2t+8,2t+9 of the 16-wide step,
 * t = lane%4) and the same 4 slots of x (the B fragment). Which real column sits in which slot is
 * ours to choose, as long as A and B agree: each format picks the order that makes its decode
 * cheapest, and x is copied into shared memory in that order ("xs", once per block).
 *
 * Lane streams in separate output columns. The 4 lanes t of a row each read their own 16-byte piece
 * of the row ("lane-chunk"): 4 consecutive lane-chunks form a 64-byte run per row, so the 8 rows of a
 * warp-wide load touch 16 whole 32-byte sectors. For group formats a lane-chunk is one whole group of
 * 64 weights, so the 4 lanes of a row hold 4 different groups with 4 different scales. The trick:
 * mma's B has 8 columns and we need one; lane (g,t) provides column g of B, so we let only the lanes
 * with g == t load x (the others keep zeros). Column n of the result then holds the products of lane
 * t = n alone: C[row][n] is a per-group partial sum, and the group scale is applied to it afterwards
 * (two FFMA per group and row) instead of to every weight.
 *
 * Offsets. A decoded slot holds off + v (e.g. 128 + v for a 6-bit field v: bf16 0x4300 | v) so that
 * building it takes no arithmetic; the product picks up off * sum(x) per group, which the block
 * precomputes (S[chunk], from the same bf16 x, in fp32) and subtracts before scaling. The offsets are
 * kept within a few times the weight range so the cancellation costs under a bit of fp32 precision.
 *
 * Memory pipeline. Weights are read once, with 16-byte cp.async copies into a small ring per warp in
 * shared memory (3 or 4 stages, a flat stream across the warp's tiles, so tile boundaries never drain
 * it); a lane reads back only what it copied, so cp.async.wait_group is the only synchronisation.
 * (Register double buffers were tried first: a register that a pending load writes cannot be moved
 * without waiting for the load, and fully unrolled copies overflowed the instruction cache.) Each
 * copy carries an L2::256B prefetch hint: a warp takes 64 bytes of each of its 16 rows per step, and
 * without the hint nearly every such access opens a DRAM page; with it, bf16 went from 65% to 96% of
 * the copy bandwidth (docs/perf-notes.md). Side data (tails, local scales) uses 4-byte copies.
 *
 * Work split. Items are (tile, split): the split is a K range (plain products and gate/up when there
 * are too few tiles to fill the GPU) or an expert slot (down projection). A block serves one split
 * (so it copies one piece of x) and its 8 warps take tiles round-robin. With more than one split, each
 * warp writes fp32 partials to the workspace and the last warp to finish a tile (an atomic counter)
 * adds them in split order and writes the output: deterministic, one launch.
 *
 * Formats (slot order and offset in each struct): bf16 (as stored), wint8 (two mma per step: high
 * nibble x 16 and low nibble), wint4, ccq2.06 (code computed with fmaf and the floor done by adding a
 * power of two in round-down mode, fields placed with two IMADs), ccq2.75 and ccq2.5 (kernel layout
 * made by qmat_repack: 16-byte group heads plus tails; dummy slots with x = 0 absorb the odd counts).
 * A second ccq2.06 kernel decodes through per-row lookup tables in shared memory (off by default:
 * measured slower, see q206_table_kernel).
 *
 * Must never: read a weight byte twice, depend on the order blocks finish in for its result, or use
 * more than 85 registers (3 blocks of 256 threads per SM; the table kernel 2). */
#include "kernels/cuda/qgemv.h"

#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

namespace {

constexpr int NWARP = 8;
constexpr int NTHREAD = NWARP * 32;

constexpr unsigned FULL = 0xffffffffu;

enum { MODE_PLAIN = 0, MODE_GATEUP = 1, MODE_DOWN = 2 };

struct KParams {
    const uint8_t *q, *tail, *tail2, *local;
    const float *scale, *cs, *zp;
    const uint16_t *super;
    int64_t q_stride; /* bytes per row of q */
    int64_t t_stride; /* groups per row of the tail arrays */
    int64_t l_stride; /* bytes per row of local */
    int n;            /* rows of one expert */
    int k;
    int n_experts;
    int nchunk; /* lane-chunks per row */
    int mode, out_bf16;
    const uint16_t *x;
    void *y;
    const int32_t *ids;
    const float *route_w;
    int inter; /* gate/up: channels per expert */
    int T;     /* tiles per split */
    int splits, bps;
    int kparts; /* K parts per slot: splits = slots (down projection) x kparts */
    int cpp;    /* lane-chunks per K part, a multiple of 4 */
    float *wsp;
    int *wsc;
};

/* ---- small device helpers ---- */

/* (a & MASK) | c in one LOP3: the compiler, given two constants, spends two. c must be a register. */
template <uint32_t MASK>
__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t c) {
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "n"(MASK), "r"(c));
    return d;
}

/* MASK ? a ^ c : c per bit, in one LOP3: masked field, its top bit flipped by c, constant bits from c. */
template <uint32_t MASK>
__device__ __forceinline__ uint32_t and_xor_or(uint32_t a, uint32_t c) {
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, %3, 0x6A;" : "=r"(d) : "r"(a), "n"(MASK), "r"(c));
    return d;
}

/* A constant the compiler keeps in a register (so that LOP3 and PRMT can use it as an operand). */
template <uint32_t V>
__device__ __forceinline__ uint32_t reg_const() {
    uint32_t r;
    asm volatile("mov.b32 %0, %1;" : "=r"(r) : "n"(V));
    return r;
}

__device__ __forceinline__ uint32_t word_of(const uint4 &v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

/* x >> s for s >= 0, x << -s otherwise (s is a constant after unrolling) */
__device__ __forceinline__ uint32_t shr(uint32_t x, int s) { return s >= 0 ? x >> s : x << (-s); }

__device__ __forceinline__ float bf16f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

__device__ __forceinline__ uint16_t f2bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* D += A B, m16n8k16, bf16 inputs, fp32 accumulators. a: {row g slots 0,1; row g+8 slots 0,1;
 * row g slots 2,3; row g+8 slots 2,3}; b: {slots 0,1; slots 2,3} of column g. */
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* ---- cp.async: weights go from global memory to a per-warp ring in shared memory ----
 * Loads in flight live in shared memory, not registers: a register that an outstanding load writes
 * cannot be moved or reused without waiting for the load, which is what capped the first versions of
 * this file at half the bandwidth. Each lane reads back only what it copied itself, so a
 * cp.async.wait_group per thread is all the synchronisation the ring needs. */
#ifndef QGEMV_L2_PREFETCH
#define QGEMV_L2_PREFETCH 256
#endif
__device__ __forceinline__ void cp16(void *sdst, const void *gsrc) {
    uint32_t d = (uint32_t)__cvta_generic_to_shared(sdst);
#if QGEMV_L2_PREFETCH == 256
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;" ::"r"(d), "l"(gsrc));
#elif QGEMV_L2_PREFETCH == 128
    asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16;" ::"r"(d), "l"(gsrc));
#else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(gsrc));
#endif
}
__device__ __forceinline__ void cp4(void *sdst, const void *gsrc) {
    uint32_t d = (uint32_t)__cvta_generic_to_shared(sdst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(d), "l"(gsrc));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

/* ---- formats ----
 * Each format: LW weights per lane-chunk (16 bytes of q), STEPS mma steps per lane-chunk, NMMA mma per
 * step, GROUPED (lane-chunk = one 64-group with its own local scale), OFF (the offset of its slots),
 * kmap(s, j): which column of the lane-chunk slot j of step s holds (-1: a dummy slot, x = 0),
 * SIDE: 32-bit words of side data per lane and row in a ring stage (besides the two 16-byte heads),
 * issue() (the cp.async of the side data), fetch() (the stage into registers: Raw), a_regs() (the A
 * fragments of step s), and for group formats the two local scales of groups G, G+1 from Raw.
 * Side words of row r, word k, lane L sit at side[(r * SIDE + k) * 32 + L]. */

/* Constants the decoders OR in, kept in registers (LOP3 takes one immediate and one register). */
struct Ctx {
    uint32_t c16, c8, c128, c256x, c4b;
    float cs0, zp0, cs1, zp1; /* ccq2.06 direct: code line of rows g, g+8 (zp includes the + 0.5) */
};

/* Where an iteration's loads come from: the two rows' byte pointers into q and element offsets into
 * the tail and local arrays, computed once per tile. */
struct Rows {
    const uint8_t *q0, *q1;
    int64_t t0, t1, l0, l1;
};

__device__ __forceinline__ Rows make_rows(const KParams &p, int64_t r0, int64_t r1) {
    Rows r;
    r.q0 = p.q + r0 * p.q_stride, r.q1 = p.q + r1 * p.q_stride;
    r.t0 = r0 * p.t_stride, r.t1 = r1 * p.t_stride;
    r.l0 = r0 * p.l_stride, r.l1 = r1 * p.l_stride;
    return r;
}

/* bf16: slots in natural order; a 16-byte chunk is 8 weights, 2 steps. */
struct FBf16 {
    static constexpr int LW = 8, STEPS = 2, NMMA = 1;
    static constexpr bool GROUPED = false, ROWCONST = false;
    static constexpr float OFF = 0.f;
    struct Raw {
        uint4 h0, h1;
    };
    static __device__ int kmap(int s, int j) { return 4 * s + j; }
    static constexpr int SIDE = 0;
    static __device__ __forceinline__ void issue(uint32_t *, const KParams &, const Rows &, int, int) {}
    static __device__ __forceinline__ void fetch(Raw &r, uint4 h0, uint4 h1, const uint32_t *) { r.h0 = h0, r.h1 = h1; }
    static __device__ __forceinline__ void a_regs(const Raw &r, int s, const Ctx &, uint32_t (&a)[NMMA][4]) {
        a[0][0] = word_of(r.h0, 2 * s);
        a[0][1] = word_of(r.h1, 2 * s);
        a[0][2] = word_of(r.h0, 2 * s + 1);
        a[0][3] = word_of(r.h1, 2 * s + 1);
    }
};

/* wint8: q + 128 = 16 hi + lo; slot value (256 + 16 hi) from the high nibble and (16 + lo) from the low
 * nibble go through two mma into the same accumulators: (256 + 16 hi) + (16 + lo) = 400 + q. The XOR
 * with 0x80 (int8 to offset binary) folds into the mask instruction. Pairs are bytes (0,2) and (1,3). */
struct FWint8 {
    static constexpr int LW = 16, STEPS = 4, NMMA = 2;
    static constexpr bool GROUPED = false, ROWCONST = false;
    static constexpr float OFF = 400.f;
    struct Raw {
        uint4 h0, h1;
    };
    static __device__ int kmap(int s, int j) {
        const int o[4] = {0, 2, 1, 3};
        return 4 * s + o[j];
    }
    static constexpr int SIDE = 0;
    static __device__ __forceinline__ void issue(uint32_t *, const KParams &, const Rows &, int, int) {}
    static __device__ __forceinline__ void fetch(Raw &r, uint4 h0, uint4 h1, const uint32_t *) { r.h0 = h0, r.h1 = h1; }
    static __device__ __forceinline__ void a_regs(const Raw &r, int s, const Ctx &x, uint32_t (&a)[NMMA][4]) {
        uint32_t w0 = word_of(r.h0, s), w1 = word_of(r.h1, s);
        a[0][0] = and_or<0x00780078u>(w0 << 3, x.c16), a[0][1] = and_or<0x00780078u>(w1 << 3, x.c16);
        a[0][2] = and_or<0x00780078u>(w0 >> 5, x.c16), a[0][3] = and_or<0x00780078u>(w1 >> 5, x.c16);
        a[1][0] = and_xor_or<0x00780078u>(w0 >> 1, x.c256x), a[1][1] = and_xor_or<0x00780078u>(w1 >> 1, x.c256x);
        a[1][2] = and_xor_or<0x00780078u>(w0 >> 9, x.c256x), a[1][3] = and_xor_or<0x00780078u>(w1 >> 9, x.c256x);
    }
};

/* wint4: nibble j of a word is weight j of its 8; pairs (j, j+4) sit 16 bits apart, so one shift
 * and one masked OR make a bf16 pair 16 + n. Step 2i+h uses pairs 2h and 2h+1 of word i. */
struct FWint4 {
    static constexpr int LW = 32, STEPS = 8, NMMA = 1;
    static constexpr bool GROUPED = false, ROWCONST = false;
    static constexpr float OFF = 24.f;
    struct Raw {
        uint4 h0, h1;
    };
    static __device__ int kmap(int s, int j) {
        const int o[4] = {0, 4, 1, 5};
        return 8 * (s >> 1) + 2 * (s & 1) + o[j];
    }
    static constexpr int SIDE = 0;
    static __device__ __forceinline__ void issue(uint32_t *, const KParams &, const Rows &, int, int) {}
    static __device__ __forceinline__ void fetch(Raw &r, uint4 h0, uint4 h1, const uint32_t *) { r.h0 = h0, r.h1 = h1; }
    static __device__ __forceinline__ uint32_t pr(uint32_t w, int j, uint32_t c) {
        return and_or<0x00780078u>(shr(w, 4 * j - 3), c);
    }
    static __device__ __forceinline__ void a_regs(const Raw &r, int s, const Ctx &x, uint32_t (&a)[NMMA][4]) {
        uint32_t w0 = word_of(r.h0, s >> 1), w1 = word_of(r.h1, s >> 1);
        int j = 2 * (s & 1);
        a[0][0] = pr(w0, j, x.c16), a[0][1] = pr(w1, j, x.c16), a[0][2] = pr(w0, j + 1, x.c16),
        a[0][3] = pr(w1, j + 1, x.c16);
    }
};

/* ccq2.06, direct decode: byte q -> code = floor(fmaf(q, cs, zp + 0.5)) exactly as FastDeploy. The floor
 * is an FADD in round-down mode with 2^23 (mantissa = floor(t)), 2^26 (floor(t/8) = code>>3) and 2^32
 * (floor(t/512) = v0): three clean shifted copies of the code, no conversion instruction. Then
 *   IMAD(m9, 2^16, m0): code in bits 0..14 and v0 in 16..21 -> pair (v3, v0)
 *   IMAD(m3, 2^13 + 1): v2 in bits 0..5 and v1 in 16..21 -> pair (v2, v1)
 * and one masked OR each gives bf16 pairs 128 + v. Valid encodings have every code in [0, 2^15).
 * About 10 instructions per byte: used where the table kernel below does not fit (the down projection,
 * very long K). */
struct FCcq206 {
    static constexpr int LW = 64, STEPS = 16, NMMA = 1;
    static constexpr bool GROUPED = true, ROWCONST = true;
    static constexpr float OFF = 160.f;
    struct Raw {
        uint4 h0, h1;
        uint32_t l0, l1; /* local-scale bytes (lanes t < 2) */
    };
    static __device__ int kmap(int s, int j) {
        const int o[4] = {3, 0, 2, 1};
        return 4 * s + o[j];
    }
    /* side: the aligned 4 bytes holding the local-scale byte of groups gabs, gabs+1, and its bit offset */
    static constexpr int SIDE = 2;
    static __device__ __forceinline__ void issue(uint32_t *side, const KParams &p, const Rows &w, int, int gabs) {
        int64_t b0 = w.l0 + (gabs >> 1), b1 = w.l1 + (gabs >> 1);
        cp4(side, p.local + (b0 & ~(int64_t)3));
        side[32] = (uint32_t)(b0 & 3) * 8;
        cp4(side + 64, p.local + (b1 & ~(int64_t)3));
        side[96] = (uint32_t)(b1 & 3) * 8;
    }
    static __device__ __forceinline__ void fetch(Raw &r, uint4 h0, uint4 h1, const uint32_t *side) {
        r.h0 = h0, r.h1 = h1;
        r.l0 = (side[0] >> side[32]) & 0xFF;
        r.l1 = (side[64] >> side[96]) & 0xFF;
    }
    static __device__ __forceinline__ void pair2(uint32_t w, int b, float cs, float zp5, const Ctx &x, uint32_t &p1,
                                                 uint32_t &p2) {
        float q = __uint_as_float(__byte_perm(w, x.c4b, 0x7650 + b)) - 8388608.0f;
        float t = fmaf(q, cs, zp5);
        uint32_t m0 = __float_as_uint(__fadd_rd(t, 8388608.0f));
        uint32_t m3 = __float_as_uint(__fadd_rd(t, 67108864.0f));
        uint32_t m9 = __float_as_uint(__fadd_rd(t, 4294967296.0f));
        p1 = and_or<0x003F003Fu>(m9 * 65536u + m0, x.c128);
        p2 = and_or<0x003F003Fu>(m3 * 0x2001u, x.c128);
    }
    static __device__ __forceinline__ void a_regs(const Raw &r, int s, const Ctx &x, uint32_t (&a)[NMMA][4]) {
        pair2(word_of(r.h0, s >> 2), s & 3, x.cs0, x.zp0, x, a[0][0], a[0][2]);
        pair2(word_of(r.h1, s >> 2), s & 3, x.cs1, x.zp1, x, a[0][1], a[0][3]);
    }
    /* group gabs (even) is the high nibble, gabs+1 the low nibble of the byte */
    static __device__ float2 locals(const Raw &r, int row) {
        uint32_t b = row ? r.l1 : r.l0;
        return make_float2((float)(b >> 4), (float)(b & 15));
    }
};

/* ccq2.75 in the kernel layout: head = bytes 0..15 of the group, tail = bytes 16..19, tail2 = bytes 20
 * and 21 (v63 << 4 | local). Each byte holds windows w0 (bits 4..7), w1 (2..5), w2 (0..3); pairs are
 * (byte 0, byte 2) and (byte 1, byte 3) of a word: 6 pairs, 3 steps per word. Steps 0..11 head,
 * 12..14 tail, 15..16 the last byte's windows and v63 with dummy partners. 16 + w per slot. */
struct FCcq275 {
    static constexpr int LW = 64, STEPS = 17, NMMA = 1;
    static constexpr bool GROUPED = true, ROWCONST = false;
    static constexpr float OFF = 24.f;
    struct Raw {
        uint4 h0, h1;
        uint32_t t0, t1; /* bytes 16..19 */
        uint32_t u0, u1; /* bytes 20, 21 */
        uint32_t l0, l1; /* tail2 of groups gabs, gabs+1 (lanes t < 2) */
    };
    static __device__ int kmap(int s, int j) {
        if (s >= 15) {
            if (j & 1) return -1;
            return 60 + 2 * (s - 15) + (j >> 1);
        }
        int i = s / 3, m = s % 3, pidx = 2 * m + (j >> 1), half = j & 1;
        int X = pidx % 3, byte = pidx < 3 ? (half ? 2 : 0) : (half ? 3 : 1);
        return 3 * (4 * i + byte) + X;
    }
    /* side: bytes 16..19; the aligned word holding bytes 20, 21 and its bit offset; tail2 of gabs, gabs+1 */
    static constexpr int SIDE = 4;
    static __device__ __forceinline__ void issue1(uint32_t *side, const KParams &p, int64_t to, int c, int gabs) {
        const uint16_t *t2 = (const uint16_t *)p.tail2;
        int64_t u = to + c;
        cp4(side, (const uint32_t *)p.tail + u);
        cp4(side + 32, t2 + (u & ~(int64_t)1));
        side[64] = (uint32_t)(u & 1) * 16;
        cp4(side + 96, t2 + to + gabs);
    }
    static __device__ __forceinline__ void issue(uint32_t *side, const KParams &p, const Rows &w, int c, int gabs) {
        issue1(side, p, w.t0, c, gabs);
        issue1(side + 128, p, w.t1, c, gabs);
    }
    static __device__ __forceinline__ void fetch(Raw &r, uint4 h0, uint4 h1, const uint32_t *side) {
        r.h0 = h0, r.h1 = h1;
        r.t0 = side[0], r.u0 = (side[32] >> side[64]) & 0xFFFF, r.l0 = side[96];
        r.t1 = side[128], r.u1 = (side[160] >> side[192]) & 0xFFFF, r.l1 = side[224];
    }
    static __device__ __forceinline__ uint32_t pr(uint32_t w, int pidx, uint32_t c) {
        const int sh = pidx == 0 ? 1 : pidx == 1 ? -1 : pidx == 2 ? -3 : pidx == 3 ? 9 : pidx == 4 ? 7 : 5;
        return and_or<0x00780078u>(shr(w, sh), c);
    }
    static __device__ __forceinline__ void a_regs(const Raw &r, int s, const Ctx &x, uint32_t (&a)[NMMA][4]) {
        if (s < 15) {
            uint32_t w0 = s < 12 ? word_of(r.h0, s / 3) : r.t0;
            uint32_t w1 = s < 12 ? word_of(r.h1, s / 3) : r.t1;
            int m = s % 3;
            a[0][0] = pr(w0, 2 * m, x.c16), a[0][1] = pr(w1, 2 * m, x.c16);
            a[0][2] = pr(w0, 2 * m + 1, x.c16), a[0][3] = pr(w1, 2 * m + 1, x.c16);
        } else {
            int p0 = 2 * (s - 15); /* s = 15: pairs 0, 1; s = 16: pairs 2, 3 (3 = byte 21's w0 = v63) */
            a[0][0] = pr(r.u0, p0, x.c16), a[0][1] = pr(r.u1, p0, x.c16);
            a[0][2] = pr(r.u0, p0 + 1, x.c16), a[0][3] = pr(r.u1, p0 + 1, x.c16);
        }
    }
    static __device__ float2 locals(const Raw &r, int row) {
        uint32_t b = row ? r.l1 : r.l0;
        return make_float2((float)((b >> 8) & 15), (float)((b >> 24) & 15));
    }
};

/* ccq2.5 in the kernel layout: head = words 0..7 of the group, tail = word 8 | word 9 << 16. Window m of
 * a word sits at bit {13,11,9,6,4,2,0}[m]; pairs take window m of the two words of a 32-bit load (16
 * bits apart): 7 pairs per load. Pairs 0..27 head, 28..34 tail (window m of word 8 with window m of word
 * 9, which is v63 for m = 0 and a dummy otherwise), pair 35 a dummy: 18 steps. 8 + v per slot. */
struct FCcq25 {
    static constexpr int LW = 64, STEPS = 18, NMMA = 1;
    static constexpr bool GROUPED = true, ROWCONST = false;
    static constexpr float OFF = 12.f;
    struct Raw {
        uint4 h0, h1;
        uint32_t t0, t1;
        uint2 l0, l1; /* tails of groups gabs, gabs+1 (lanes t < 2) */
    };
    static __device__ int kmap(int s, int j) {
        int pidx = 2 * s + (j >> 1), half = j & 1;
        if (pidx < 28) return 7 * (2 * (pidx / 7) + half) + pidx % 7;
        if (pidx < 35) {
            int m = pidx - 28;
            return half == 0 ? 56 + m : (m == 0 ? 63 : -1);
        }
        return -1;
    }
    /* side: words 8, 9 of the lane's group; the tails of groups gabs, gabs+1 */
    static constexpr int SIDE = 3;
    static __device__ __forceinline__ void issue(uint32_t *side, const KParams &p, const Rows &w, int c, int gabs) {
        const uint32_t *tl = (const uint32_t *)p.tail;
        cp4(side, tl + w.t0 + c), cp4(side + 32, tl + w.t0 + gabs), cp4(side + 64, tl + w.t0 + gabs + 1);
        cp4(side + 96, tl + w.t1 + c), cp4(side + 128, tl + w.t1 + gabs), cp4(side + 160, tl + w.t1 + gabs + 1);
    }
    static __device__ __forceinline__ void fetch(Raw &r, uint4 h0, uint4 h1, const uint32_t *side) {
        r.h0 = h0, r.h1 = h1;
        r.t0 = side[0], r.l0 = make_uint2(side[32], side[64]);
        r.t1 = side[96], r.l1 = make_uint2(side[128], side[160]);
    }
    static __device__ __forceinline__ uint32_t pr(uint32_t w, int m, uint32_t c) {
        const int sh = m == 0 ? 9 : m == 1 ? 7 : m == 2 ? 5 : m == 3 ? 2 : m == 4 ? 0 : m == 5 ? -2 : -4;
        return and_or<0x00700070u>(shr(w, sh), c);
    }
    static __device__ __forceinline__ uint32_t pair_of(const uint4 &h, uint32_t tl, int pidx, uint32_t c) {
        if (pidx < 28) return pr(word_of(h, pidx / 7), pidx % 7, c);
        if (pidx < 35) return pr(tl, pidx - 28, c);
        return c; /* 8 + 0, times x = 0 */
    }
    static __device__ __forceinline__ void a_regs(const Raw &r, int s, const Ctx &x, uint32_t (&a)[NMMA][4]) {
        a[0][0] = pair_of(r.h0, r.t0, 2 * s, x.c8), a[0][1] = pair_of(r.h1, r.t1, 2 * s, x.c8);
        a[0][2] = pair_of(r.h0, r.t0, 2 * s + 1, x.c8), a[0][3] = pair_of(r.h1, r.t1, 2 * s + 1, x.c8);
    }
    static __device__ float2 locals(const Raw &r, int row) {
        uint2 b = row ? r.l1 : r.l0;
        return make_float2((float)((b.x >> 16) & 0x1FFF), (float)((b.y >> 16) & 0x1FFF));
    }
};

/* ---- the kernel ---- */

/* The two weight rows (global, experts stacked) of mma rows g and g+8 of a tile. */
__device__ __forceinline__ void tile_rows(const KParams &p, int slot, int tile, int g, int64_t &r0, int64_t &r1) {
    if (p.mode == MODE_PLAIN) {
        r0 = min(tile * 16 + g, p.n - 1);
        r1 = min(tile * 16 + 8 + g, p.n - 1);
    } else if (p.mode == MODE_GATEUP) {
        int tps = (p.inter + 7) >> 3, s = tile / tps, c = tile - s * tps;
        int64_t e = min(max(__ldg(p.ids + s), 0), p.n_experts - 1);
        int ch = min(c * 8 + g, p.inter - 1);
        r0 = e * p.n + ch;
        r1 = r0 + p.inter;
    } else {
        int64_t e = min(max(__ldg(p.ids + slot), 0), p.n_experts - 1);
        r0 = e * p.n + min(tile * 16 + g, p.n - 1);
        r1 = e * p.n + min(tile * 16 + 8 + g, p.n - 1);
    }
}

template <class F>
__device__ __forceinline__ float row_scale(const KParams &p, int64_t r) {
    if constexpr (F::GROUPED) return bf16f(__ldg(p.super + r));
    else if constexpr (F::OFF != 0.f) return __ldg(p.scale + r);
    else return 1.0f;
}

/* Writes the final value of mma row m of a tile (plain and down); gate/up writes channels. */
__device__ __forceinline__ void emit_row(const KParams &p, int tile, int m, float v) {
    int row = tile * 16 + m;
    if (row >= p.n) return;
    if (p.out_bf16) ((uint16_t *)p.y)[row] = f2bf16(v);
    else ((float *)p.y)[row] = v;
}

__device__ __forceinline__ void emit_swiglu(const KParams &p, int tile, int g, float gate, float up) {
    int tps = (p.inter + 7) >> 3, s = tile / tps, c = tile - s * tps, ch = c * 8 + g;
    if (ch >= p.inter) return;
    float h = gate / (1.0f + expf(-gate)) * up;
    int64_t o = (int64_t)s * p.inter + ch;
    if (p.out_bf16) ((uint16_t *)p.y)[o] = f2bf16(h);
    else ((float *)p.y)[o] = h;
}

/* bf16 elements per lane-chunk in xs: the steps' 4 slots plus 4 of padding, so that the 4 lanes that
 * read B (one per chunk of a unit) hit different banks. */
template <class F>
__host__ __device__ constexpr int XS_CHUNK() {
    return F::STEPS * 4 + 4;
}

/* Copies the block's piece of x into shared memory in the format's slot order (zeros for dummy slots
 * and for chunks past the piece, and one all-zero chunk at index ncp that the lanes which provide no
 * column of B read), and computes the offset sums: OFF * sum(x) per lane-chunk for group formats,
 * sum(x) over the piece for the others (S[0]). Fixed summation order: deterministic. */
template <class F>
__device__ void stage_x(const KParams &p, uint16_t *xs, float *S, int slot, int c0, int nch, int ncp) {
    const uint16_t *x = p.x + (p.mode == MODE_DOWN ? (int64_t)slot * p.k : 0) + (int64_t)c0 * F::LW;
    for (int i = threadIdx.x; i < (ncp + 1) * F::STEPS; i += blockDim.x) {
        int c = i / F::STEPS, s = i - c * F::STEPS;
        uint32_t v[4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int kk = F::kmap(s, j);
            v[j] = (c < nch && kk >= 0) ? x[c * F::LW + kk] : 0u;
        }
        *(uint2 *)(xs + (size_t)c * XS_CHUNK<F>() + s * 4) = make_uint2(v[0] | v[1] << 16, v[2] | v[3] << 16);
    }
    if constexpr (F::GROUPED) {
        for (int c = threadIdx.x; c < ncp; c += blockDim.x) {
            float s = 0.f;
            if (c < nch)
                for (int kk = 0; kk < F::LW; kk++) s += bf16f(x[c * F::LW + kk]);
            S[c] = F::OFF * s;
        }
    } else {
        float s = 0.f;
        for (int i = threadIdx.x; i < nch * F::LW; i += blockDim.x) s += bf16f(x[i]);
#pragma unroll
        for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(FULL, s, o);
        if ((threadIdx.x & 31) == 0) S[1 + (threadIdx.x >> 5)] = s;
        __syncthreads();
        if (threadIdx.x == 0) {
            float tot = 0.f;
            for (int w = 0; w < (int)(blockDim.x >> 5); w++) tot += S[1 + w];
            S[0] = tot;
        }
    }
}

__device__ __forceinline__ Ctx make_ctx() {
    Ctx x;
    x.c16 = reg_const<0x41804180u>();
    x.c8 = reg_const<0x41004100u>();
    x.c128 = reg_const<0x43004300u>();
    x.c256x = reg_const<0x43C043C0u>();
    x.c4b = reg_const<0x4B000000u>();
    x.cs0 = x.zp0 = x.cs1 = x.zp1 = 0.f;
    return x;
}

/* The end of a tile for one warp (all lanes): lanes t < 2 hold rows g and g+8 in acc0/acc1 over their
 * two columns; scale, then write, or add up the splits through the workspace. */
__device__ __forceinline__ void tile_end(const KParams &p, int split, int slot, int tile, int g, int t, int lane,
                                         float v0, float v1) {
    v0 += __shfl_xor_sync(FULL, v0, 1);
    v1 += __shfl_xor_sync(FULL, v1, 1);
    if (p.mode == MODE_DOWN) {
        float w = __ldg(p.route_w + slot);
        v0 *= w, v1 *= w;
    }
    if (p.splits == 1) {
        if (t == 0) {
            if (p.mode == MODE_GATEUP) emit_swiglu(p, tile, g, v0, v1);
            else emit_row(p, tile, g, v0), emit_row(p, tile, g + 8, v1);
        }
        return;
    }
    float *part = p.wsp + ((size_t)split * p.T + tile) * 16;
    if (t == 0) {
        __stcg(part + g, v0);
        __stcg(part + g + 8, v1);
        __threadfence();
    }
    __syncwarp();
    int last = 0;
    if (lane == 0) last = atomicAdd(p.wsc + tile, 1) == p.splits - 1;
    last = __shfl_sync(FULL, last, 0);
    if (!last) return;
    __threadfence();
    float v = 0.f;
    if (lane < 16)
        for (int s2 = 0; s2 < p.splits; s2++) v += __ldcg(p.wsp + ((size_t)s2 * p.T + tile) * 16 + lane);
    float up = __shfl_down_sync(FULL, v, 8);
    if (p.mode == MODE_GATEUP) {
        if (lane < 8) emit_swiglu(p, tile, lane, v, up);
    } else if (lane < 16) {
        emit_row(p, tile, lane, v);
    }
    if (lane == 0) p.wsc[tile] = 0;
}

/* Ring geometry: stages per warp and 32-bit words per stage (two 16-byte heads per lane, side data). */
template <class F>
__host__ __device__ constexpr int NST() {
    return F::SIDE == 0 ? 4 : 3;
}
template <class F>
__host__ __device__ constexpr int STAGE_WORDS() {
    return 256 + 64 * F::SIDE;
}

template <class F>
__global__ void __launch_bounds__(NTHREAD, 3) qgemv_kernel(const KParams p) {
    extern __shared__ __align__(16) uint8_t smem[];
    constexpr int NS = NST<F>(), SW = STAGE_WORDS<F>();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int split = blockIdx.x % p.splits, bsp = blockIdx.x / p.splits;
    const int slot = p.mode == MODE_DOWN ? split / p.kparts : 0;
    const int c0 = (split % p.kparts) * p.cpp; /* first lane-chunk of this block's K part */
    const int nch = min(p.cpp, p.nchunk - c0);
    const int U = (nch + 3) >> 2; /* units: 4 lane-chunks, one per lane t */
    const int ncp = U * 4;
    uint32_t *ring = (uint32_t *)smem + warp * NS * SW;
    uint16_t *xs = (uint16_t *)((uint32_t *)smem + NWARP * NS * SW);
    float *S = (float *)(xs + (size_t)(ncp + 1) * XS_CHUNK<F>());

    const int tile0 = bsp * NWARP + warp, tstride = p.bps * NWARP;
    const int nmy = tile0 < p.T ? (p.T - 1 - tile0) / tstride + 1 : 0;
    const int nit = nmy * U;
    Ctx cx = make_ctx();

    /* load cursor: NS - 1 iterations ahead of the decode */
    int ld_tile = tile0, ld_u = 0;
    int64_t r0 = 0, r1 = 0;
    if (nit) tile_rows(p, slot, ld_tile, g, r0, r1);
    Rows lr = make_rows(p, r0, r1);
    auto issue_next = [&](int stage) {
        uint32_t *st = ring + stage * SW;
        int c = min(c0 + ld_u * 4 + t, p.nchunk - 1);
        int gabs = min(c0 + ld_u * 4 + 2 * t, p.nchunk - 1) & ~1;
        cp16(st + lane * 4, lr.q0 + (int64_t)c * 16);
        cp16(st + (32 + lane) * 4, lr.q1 + (int64_t)c * 16);
        F::issue(st + 256 + lane, p, lr, c, gabs);
        if (++ld_u == U) {
            ld_u = 0;
            ld_tile += tstride;
            if (ld_tile < p.T) tile_rows(p, slot, ld_tile, g, r0, r1), lr = make_rows(p, r0, r1);
        }
    };
    for (int d = 0; d < NS - 1; d++) {
        if (d < nit) issue_next(d);
        cp_commit();
    }

    /* per-row constants of the tile being decoded and of the warp's next tile */
    float rs0 = 0.f, rs1 = 0.f, nrs0 = 0.f, nrs1 = 0.f, ncs0 = 0.f, nzp0 = 0.f, ncs1 = 0.f, nzp1 = 0.f;
    int pr_tile = tile0;
    if (nit) {
        tile_rows(p, slot, pr_tile, g, r0, r1);
        rs0 = row_scale<F>(p, r0), rs1 = row_scale<F>(p, r1);
        if constexpr (F::ROWCONST) {
            cx.cs0 = __ldg(p.cs + r0), cx.zp0 = __ldg(p.zp + r0) + 0.5f;
            cx.cs1 = __ldg(p.cs + r1), cx.zp1 = __ldg(p.zp + r1) + 0.5f;
        }
        if (pr_tile + tstride < p.T) {
            tile_rows(p, slot, pr_tile + tstride, g, r0, r1);
            nrs0 = row_scale<F>(p, r0), nrs1 = row_scale<F>(p, r1);
            if constexpr (F::ROWCONST) {
                ncs0 = __ldg(p.cs + r0), nzp0 = __ldg(p.zp + r0) + 0.5f;
                ncs1 = __ldg(p.cs + r1), nzp1 = __ldg(p.zp + r1) + 0.5f;
            }
        }
    }

    stage_x<F>(p, xs, S, slot, c0, nch, ncp);
    __syncthreads();
    const float sx = F::GROUPED ? 0.f : S[0];

    const bool bact = g == t; /* this lane provides column g = t of B; the others read the zero chunk */
    const uint16_t *xzero = xs + (size_t)ncp * XS_CHUNK<F>();
    float acc0 = 0.f, acc1 = 0.f;
    int pr_u = 0, st_cur = 0;
#pragma unroll 1
    for (int it = 0; it < nit; it++) {
        /* 1. this iteration's stage into registers, and the stage after the last one in flight refilled */
        cp_wait<NS - 2>();
        const uint32_t *st = ring + st_cur * SW;
        typename F::Raw raw;
        F::fetch(raw, *(const uint4 *)(st + lane * 4), *(const uint4 *)(st + (32 + lane) * 4), st + 256 + lane);
        if (it + NS - 1 < nit) issue_next(st_cur == 0 ? NS - 1 : st_cur - 1);
        cp_commit();
        st_cur = st_cur == NS - 1 ? 0 : st_cur + 1;
        /* 2. decode and multiply the lane-chunk of unit pr_u (fresh accumulators: at most 18 steps of
         *    tensor-core accumulation, then fp32 FFMA/FADD, which rounds to nearest) */
        const uint16_t *xb = bact ? xs + (size_t)(pr_u * 4 + t) * XS_CHUNK<F>() : xzero;
        float c[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int s = 0; s < F::STEPS; s++) {
            uint32_t a[F::NMMA][4];
            F::a_regs(raw, s, cx, a);
            uint2 b = *(const uint2 *)(xb + 4 * s);
#pragma unroll
            for (int m = 0; m < F::NMMA; m++) mma16816(c, a[m], b.x, b.y);
        }
        /* 3. lanes t < 2 hold columns 2t, 2t+1 = the chunks of lanes 2t, 2t+1: group scales, or plain sums */
        if constexpr (F::GROUPED) {
            float2 l0 = F::locals(raw, 0), l1 = F::locals(raw, 1);
            float s0 = S[pr_u * 4 + (2 * t & 3)], s1 = S[pr_u * 4 + ((2 * t + 1) & 3)];
            acc0 = fmaf(l0.x, c[0] - s0, fmaf(l0.y, c[1] - s1, acc0));
            acc1 = fmaf(l1.x, c[2] - s0, fmaf(l1.y, c[3] - s1, acc1));
        } else {
            acc0 += c[0] + c[1];
            acc1 += c[2] + c[3];
        }
        /* 4. end of a tile */
        if (++pr_u == U) {
            float v0 = acc0, v1 = acc1;
            if constexpr (!F::GROUPED) /* the offsets' share, once per row (lanes t = 0, 1 are summed) */
                if (t == 0) v0 -= F::OFF * sx, v1 -= F::OFF * sx;
            if (t >= 2) v0 = v1 = 0.f;
            tile_end(p, split, slot, pr_tile, g, t, lane, v0 * rs0, v1 * rs1);
            acc0 = acc1 = 0.f;
            pr_u = 0;
            pr_tile += tstride;
            rs0 = nrs0, rs1 = nrs1;
            cx.cs0 = ncs0, cx.zp0 = nzp0, cx.cs1 = ncs1, cx.zp1 = nzp1;
            if (pr_tile + tstride < p.T) {
                tile_rows(p, slot, pr_tile + tstride, g, r0, r1);
                nrs0 = row_scale<F>(p, r0), nrs1 = row_scale<F>(p, r1);
                if constexpr (F::ROWCONST) {
                    ncs0 = __ldg(p.cs + r0), nzp0 = __ldg(p.zp + r0) + 0.5f;
                    ncs1 = __ldg(p.cs + r1), nzp1 = __ldg(p.zp + r1) + 0.5f;
                }
            }
        }
    }
    cp_wait<0>();
}

/* ---- ccq2.06 with per-row lookup tables: the fast path for plain and gate/up products ----
 * The 256 codes of a row decode to 256 4-vectors: the block builds them once per tile in shared memory
 * (the spec's own rounding, __float2int_rd(fmaf(q, cs, zp + 0.5f))), and a byte then costs a shift and
 * a masked OR (its table address), one LDS and two PRMT (bf16 pairs 128 + v) instead of about ten
 * instructions. Table layout: [q][16 rows][2 copies] u32 = 32 KB; lane (g,t) reads copy t&1 of row g
 * (row g+8 sits 64 bytes on): a lookup touches 16 banks twice (two wavefronts; four copies would make
 * it one but would not fit twice on an SM next to the rings). The block's 8 warps share a tile (16
 * rows) and split its K (units u = warp, warp + 8, ...), add their partial sums through shared memory,
 * and rebuild the table between tiles (two barriers); the next tile's weights are already in the rings
 * then. x is in natural order: pairs (v0,v1), (v2,v3). */
constexpr int TBL_BYTES = 256 * 16 * 2 * 4;

struct FCcq206T {
    static constexpr int LW = 64, STEPS = 16, SIDE = 2;
    static constexpr float OFF = 160.f;
    static __device__ int kmap(int s, int j) { return 4 * s + j; }
    static constexpr bool GROUPED = true;
};

__global__ void __launch_bounds__(NTHREAD, 2) q206_table_kernel(const KParams p) {
    extern __shared__ __align__(16) uint8_t smem[];
    constexpr int NS = 3, SW = 256 + 64 * FCcq206T::SIDE;
    const uint8_t *tblb = smem;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int nch = p.nchunk, U = (nch + 3) >> 2, ncp = U * 4;
    constexpr int XSC = XS_CHUNK<FCcq206T>();
    uint32_t *ring = (uint32_t *)(smem + TBL_BYTES) + warp * NS * SW;
    uint16_t *xs = (uint16_t *)((uint32_t *)(smem + TBL_BYTES) + NWARP * NS * SW);
    float *S = (float *)(xs + (size_t)(ncp + 1) * XSC);
    float *red = S + ncp; /* [NWARP][16] */

    const int ntile = (int)blockIdx.x < p.T ? (p.T - 1 - (int)blockIdx.x) / (int)gridDim.x + 1 : 0;
    const int nu = warp < U ? (U - 1 - warp) / NWARP + 1 : 0;
    const int nit = ntile * nu;

    /* load cursor over (tile, this warp's units) */
    int ld_ti = 0, ld_j = 0;
    int64_t r0 = 0, r1 = 0;
    if (ntile) tile_rows(p, 0, blockIdx.x, g, r0, r1);
    Rows lr = make_rows(p, r0, r1);
    auto issue_next = [&](int stage) {
        uint32_t *st = ring + stage * SW;
        int u = warp + ld_j * NWARP;
        int c = min(u * 4 + t, nch - 1), gabs = min(u * 4 + 2 * t, nch - 1) & ~1;
        cp16(st + lane * 4, lr.q0 + (int64_t)c * 16);
        cp16(st + (32 + lane) * 4, lr.q1 + (int64_t)c * 16);
        FCcq206::issue(st + 256 + lane, p, lr, c, gabs);
        if (++ld_j == nu) {
            ld_j = 0, ld_ti++;
            if (ld_ti < ntile) tile_rows(p, 0, blockIdx.x + ld_ti * gridDim.x, g, r0, r1), lr = make_rows(p, r0, r1);
        }
    };
    for (int d = 0; d < NS - 1; d++) {
        if (d < nit) issue_next(d);
        cp_commit();
    }
    /* table-building rows: thread -> row (tid & 15), codes q = tid >> 4 + 16 i */
    const int brow = threadIdx.x & 15, bq0 = threadIdx.x >> 4;
    float bcs = 0.f, bzp = 0.f, rsc = 0.f;
    if (ntile) {
        tile_rows(p, 0, blockIdx.x, brow & 7, r0, r1);
        int64_t rr = brow < 8 ? r0 : r1;
        bcs = __ldg(p.cs + rr), bzp = __ldg(p.zp + rr) + 0.5f;
        if (warp == 0 && lane < 16) {
            tile_rows(p, 0, blockIdx.x, lane & 7, r0, r1);
            rsc = bf16f(__ldg(p.super + (lane < 8 ? r0 : r1)));
        }
    }
    stage_x<FCcq206T>(p, xs, S, 0, 0, nch, ncp);
    const uint32_t c43 = reg_const<0x43434343u>();
    const uint32_t loff = (uint32_t)(g * 8 + (t & 1) * 4); /* row g, copy t & 1 */
    const bool bact = g == t;
    const uint16_t *xzero = xs + (size_t)ncp * XSC;

    int it = 0, st_cur = 0;
    for (int ti = 0; ti < ntile; ti++) {
        const int tile = blockIdx.x + ti * gridDim.x;
        __syncthreads(); /* the previous tile's table and partial sums are no longer read */
        for (int i = 0; i < 16; i++) {
            int q = bq0 + 16 * i;
            uint32_t code = (uint32_t)__float2int_rd(fmaf((float)q, bcs, bzp));
            uint32_t w = ((code >> 9) & 63) | ((code >> 6) & 63) << 8 | ((code >> 3) & 63) << 16 | (code & 63) << 24;
            *(uint2 *)(smem + q * 128 + brow * 8) = make_uint2(w, w);
        }
        if (ti + 1 < ntile) { /* the next tile's code lines and scales, used after this tile */
            tile_rows(p, 0, tile + gridDim.x, brow & 7, r0, r1);
            int64_t rr = brow < 8 ? r0 : r1;
            bcs = __ldg(p.cs + rr), bzp = __ldg(p.zp + rr) + 0.5f;
        }
        float nrsc = 0.f;
        if (warp == 0 && lane < 16 && ti + 1 < ntile) {
            tile_rows(p, 0, tile + gridDim.x, lane & 7, r0, r1);
            nrsc = bf16f(__ldg(p.super + (lane < 8 ? r0 : r1)));
        }
        __syncthreads();
        float acc0 = 0.f, acc1 = 0.f;
#pragma unroll 1
        for (int j = 0; j < nu; j++, it++) {
            cp_wait<NS - 2>();
            const uint32_t *st = ring + st_cur * SW;
            FCcq206::Raw raw;
            FCcq206::fetch(raw, *(const uint4 *)(st + lane * 4), *(const uint4 *)(st + (32 + lane) * 4), st + 256 + lane);
            if (it + NS - 1 < nit) issue_next(st_cur == 0 ? NS - 1 : st_cur - 1);
            cp_commit();
            st_cur = st_cur == NS - 1 ? 0 : st_cur + 1;
            const int u = warp + j * NWARP;
            const uint16_t *xb = bact ? xs + (size_t)(u * 4 + t) * XSC : xzero;
            float c[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int s = 0; s < 16; s++) {
                uint32_t w0 = word_of(raw.h0, s >> 2), w1 = word_of(raw.h1, s >> 2);
                const int sh = 8 * (s & 3) - 7; /* byte s&3 to bits 7..14: q * 128 */
                uint32_t ad0 = and_or<0x7F80u>(shr(w0, sh), loff), ad1 = and_or<0x7F80u>(shr(w1, sh), loff);
                uint32_t e0 = *(const uint32_t *)(tblb + ad0), e1 = *(const uint32_t *)(tblb + ad1 + 64);
                uint32_t a[4];
                a[0] = __byte_perm(e0, c43, 0x4140), a[2] = __byte_perm(e0, c43, 0x4342);
                a[1] = __byte_perm(e1, c43, 0x4140), a[3] = __byte_perm(e1, c43, 0x4342);
                uint2 b = *(const uint2 *)(xb + 4 * s);
                mma16816(c, a, b.x, b.y);
            }
            float2 l0 = FCcq206::locals(raw, 0), l1 = FCcq206::locals(raw, 1);
            float s0 = S[u * 4 + (2 * t & 3)], s1 = S[u * 4 + ((2 * t + 1) & 3)];
            acc0 = fmaf(l0.x, c[0] - s0, fmaf(l0.y, c[1] - s1, acc0));
            acc1 = fmaf(l1.x, c[2] - s0, fmaf(l1.y, c[3] - s1, acc1));
        }
        /* the block's sum for the 16 rows of this tile */
        if (t >= 2) acc0 = acc1 = 0.f;
        acc0 += __shfl_xor_sync(FULL, acc0, 1);
        acc1 += __shfl_xor_sync(FULL, acc1, 1);
        if (t == 0) red[warp * 16 + g] = acc0, red[warp * 16 + g + 8] = acc1;
        __syncthreads();
        if (warp == 0) {
            float v = 0.f;
            if (lane < 16)
                for (int w = 0; w < NWARP; w++) v += red[w * 16 + lane];
            v *= rsc;
            float up = __shfl_down_sync(FULL, v, 8);
            if (p.mode == MODE_GATEUP) {
                if (lane < 8) emit_swiglu(p, tile, lane, v, up);
            } else if (lane < 16) {
                emit_row(p, tile, lane, v);
            }
            rsc = nrsc;
        }
    }
    cp_wait<0>();
}

/* ---- repack (load time) ---- */

__global__ void k_repack275(const uint8_t *src, int64_t rows, int gn, int gp, uint8_t *heads, uint32_t *tl,
                            uint16_t *tl2) {
    int64_t n = rows * gp;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / gp;
        int G = (int)(i - r * gp);
        uint4 h = make_uint4(0, 0, 0, 0);
        uint32_t a = 0;
        uint16_t b = 0;
        if (G < gn) {
            const uint8_t *s = src + (r * gn + G) * 22;
            uint32_t w[4];
            for (int j = 0; j < 4; j++) w[j] = s[4 * j] | s[4 * j + 1] << 8 | s[4 * j + 2] << 16 | (uint32_t)s[4 * j + 3] << 24;
            h = make_uint4(w[0], w[1], w[2], w[3]);
            a = s[16] | s[17] << 8 | s[18] << 16 | (uint32_t)s[19] << 24;
            b = (uint16_t)(s[20] | s[21] << 8);
        }
        *(uint4 *)(heads + i * 16) = h;
        tl[i] = a;
        tl2[i] = b;
    }
}

__global__ void k_repack25(const uint16_t *src, int64_t rows, int gn, int gp, uint8_t *heads, uint32_t *tl) {
    int64_t n = rows * gp;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / gp;
        int G = (int)(i - r * gp);
        uint4 h = make_uint4(0, 0, 0, 0);
        uint32_t a = 0;
        if (G < gn) {
            const uint16_t *s = src + (r * gn + G) * 10;
            h = make_uint4(s[0] | (uint32_t)s[1] << 16, s[2] | (uint32_t)s[3] << 16, s[4] | (uint32_t)s[5] << 16,
                           s[6] | (uint32_t)s[7] << 16);
            a = s[8] | (uint32_t)s[9] << 16;
        }
        *(uint4 *)(heads + i * 16) = h;
        tl[i] = a;
    }
}

/* ---- host side ---- */

int ck(err_t *err, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 0;
    return err_set(err, ERR_NODEV, "%s: %s", what, cudaGetErrorString(e));
}

int64_t groups_padded(int64_t k) { return (k / 64 + 3) / 4 * 4; }

struct FmtInfo {
    int ring_bytes, xs_chunk_bytes, lw;
    bool grouped;
    const void *kernel;
};

template <class F>
FmtInfo info_of() {
    return FmtInfo{NWARP * NST<F>() * STAGE_WORDS<F>() * 4, XS_CHUNK<F>() * 2, F::LW, F::GROUPED,
                   (const void *)qgemv_kernel<F>};
}

FmtInfo fmt_info(qfmt f) {
    switch (f) {
    case QF_BF16: return info_of<FBf16>();
    case QF_WINT8: return info_of<FWint8>();
    case QF_WINT4: return info_of<FWint4>();
    case QF_CCQ275: return info_of<FCcq275>();
    case QF_CCQ25: return info_of<FCcq25>();
    case QF_CCQ206: return info_of<FCcq206>();
    default: return FmtInfo{0, 0, 0, false, NULL};
    }
}

/* qgemv_ccq206_use_table. Off by default: on the H100 the table kernel measured no faster than the
 * arithmetic decode (its 2-way conflicted lookups saturate shared memory first); docs/perf-notes.md. */
bool g_ccq206_table = false;

/* Occupancy (blocks per SM) of a kernel at a shared-memory size, and the SM count. */
int plan_occupancy_k(const void *kernel, int slot, size_t smem, int *blocks_per_sm, int *sms, err_t *err) {
    static int sm_count = 0;
    static bool attr_set[QF_COUNT + 1];
    if (!sm_count) {
        int dev = 0;
        if (ck(err, cudaGetDevice(&dev), "cudaGetDevice")) return -1;
        if (ck(err, cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute"))
            return -1;
    }
    if (!attr_set[slot]) {
        int dev = 0, maxs = 0;
        if (ck(err, cudaGetDevice(&dev), "cudaGetDevice")) return -1;
        if (ck(err, cudaDeviceGetAttribute(&maxs, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "cudaDeviceGetAttribute"))
            return -1;
        if (ck(err, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, maxs),
               "cudaFuncSetAttribute"))
            return -1;
        attr_set[slot] = true;
    }
    int nb = 0;
    if (ck(err, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, kernel, NTHREAD, smem),
           "cudaOccupancyMaxActiveBlocksPerMultiprocessor"))
        return -1;
    if (nb < 1) return err_set(err, ERR_UNSUPPORTED, "qgemv: %zu bytes of shared memory do not fit one block", smem);
    *blocks_per_sm = nb;
    *sms = sm_count;
    return 0;
}

int plan_occupancy(qfmt f, size_t smem, int *blocks_per_sm, int *sms, err_t *err) {
    return plan_occupancy_k(fmt_info(f).kernel, (int)f, smem, blocks_per_sm, sms, err);
}

size_t xs_smem(const FmtInfo &fi, int chunks) {
    return fi.ring_bytes + (size_t)(chunks + 1) * fi.xs_chunk_bytes + (size_t)(chunks > 16 ? chunks : 16) * 4;
}

/* The ccq2.06 table kernel when it fits twice on an SM; returns 1 if launched, 0 to fall back. */
int try_table_launch(KParams &p, int tiles, cudaStream_t st, err_t *err) {
    int units = (p.nchunk + 3) / 4, ncp = units * 4;
    size_t smem = TBL_BYTES + (size_t)NWARP * 3 * (256 + 64 * FCcq206T::SIDE) * 4 +
                  (size_t)(ncp + 1) * XS_CHUNK<FCcq206T>() * 2 + (size_t)ncp * 4 + NWARP * 16 * 4;
    int nb = 0, sms = 0;
    if (plan_occupancy_k((const void *)q206_table_kernel, QF_COUNT, smem, &nb, &sms, err)) return -1;
    if (nb < 2) return 0;
    int64_t slots = (int64_t)nb * sms;
    int64_t per = (tiles + slots - 1) / slots;
    int grid = (int)((tiles + per - 1) / per);
    p.T = tiles, p.splits = 1, p.bps = grid, p.cpp = ncp, p.kparts = 1;
    void *args[] = {&p};
    if (ck(err, cudaLaunchKernel((const void *)q206_table_kernel, dim3(grid), dim3(NTHREAD), args, smem, st),
           "qgemv kernel launch"))
        return -1;
    if (ck(err, cudaGetLastError(), "qgemv kernel launch")) return -1;
    return 1;
}

int check_mat(const qmat_dev *m, err_t *err) {
    if (!m || (int)m->fmt < 0 || (int)m->fmt >= (int)QF_COUNT) return err_set(err, ERR_ARG, "qgemv: bad weight format");
    if (m->k <= 0 || m->k % 64 || m->n <= 0 || m->n_experts <= 0)
        return err_set(err, ERR_ARG, "qgemv: %s weight of %lld x %lld: needs n > 0 and k a positive multiple of 64",
                       qfmt_name(m->fmt), (long long)m->n, (long long)m->k);
    if (m->k > (1 << 26) || m->n * (int64_t)m->n_experts > ((int64_t)1 << 31))
        return err_set(err, ERR_ARG, "qgemv: weight of %lld x %lld is too large", (long long)m->n, (long long)m->k);
    bool ok = m->q != NULL;
    switch (m->fmt) {
    case QF_WINT8:
    case QF_WINT4: ok = ok && m->scale; break;
    case QF_CCQ206: ok = ok && m->local && m->code_scale && m->code_zp && m->super; break;
    case QF_CCQ275: ok = ok && m->tail && m->tail2 && m->super; break;
    case QF_CCQ25: ok = ok && m->tail && m->super; break;
    default: break;
    }
    if (!ok) return err_set(err, ERR_ARG, "qgemv: %s weight is missing a part", qfmt_name(m->fmt));
    return 0;
}

KParams base_params(const qmat_dev *m) {
    KParams p;
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
    p.n_experts = m->n_experts;
    int64_t K = m->k;
    switch (m->fmt) {
    case QF_BF16: p.q_stride = 2 * K, p.nchunk = (int)(K / 8); break;
    case QF_WINT8: p.q_stride = K, p.nchunk = (int)(K / 16); break;
    case QF_WINT4: p.q_stride = K / 2, p.nchunk = (int)(K / 32); break;
    case QF_CCQ206: p.q_stride = K / 4, p.nchunk = (int)(K / 64), p.l_stride = (K + 127) / 128; break;
    case QF_CCQ275:
    case QF_CCQ25:
        p.t_stride = groups_padded(K), p.q_stride = 16 * p.t_stride, p.nchunk = (int)(K / 64);
        break;
    default: break;
    }
    return p;
}

/* Chooses the grid and launches: `fixed_splits` splits (expert slots of the down projection, else 1),
 * times K parts when allowed and the tiles alone cannot give every resident warp a tile; blocks per
 * split so that each warp gets ceil(items / resident warps) tiles at most. */
int plan_and_launch(qfmt f, KParams &p, int tiles, int fixed_splits, bool allow_ksplit, qgemv_ws *ws,
                    cudaStream_t st, err_t *err) {
    FmtInfo fi = fmt_info(f);
    int units = (p.nchunk + 3) / 4;
    if (f == QF_CCQ206 && g_ccq206_table && p.mode != MODE_DOWN) {
        int r = try_table_launch(p, tiles, st, err);
        if (r) return r < 0 ? -1 : 0;
    }
    /* Resident warps W with the whole K in shared memory (splitting K only shrinks it). A warp's time
     * is about its items times the units per item: the per-warp rate, not DRAM, is what runs out first
     * at batch 1, so split K into kp parts when ceil(items / W) * units_per_item falls by 10% or more. */
    int nb = 0, sms = 0;
    if (plan_occupancy(f, xs_smem(fi, units * 4), &nb, &sms, err)) return -1;
    int64_t W = (int64_t)sms * nb * NWARP;
    int kparts = 1;
    double best = (double)(((int64_t)tiles * fixed_splits + W - 1) / W) * units;
    bool can_split = allow_ksplit && ws && ws->partial && ws->count;
    for (int kp = 2; can_split && kp <= 8 && kp <= units; kp++) {
        int upp = (units + kp - 1) / kp, kpe = (units + upp - 1) / upp;
        if (kpe != kp || fixed_splits * kpe > 64) continue;
        double cost = (double)(((int64_t)tiles * fixed_splits * kpe + W - 1) / W) * upp;
        if (cost < 0.9 * best) best = cost, kparts = kpe;
    }
    int upp = (units + kparts - 1) / kparts;
    p.cpp = upp * 4;
    p.kparts = kparts;
    int splits = fixed_splits * kparts;
    size_t smem = xs_smem(fi, p.cpp);
    if (plan_occupancy(f, smem, &nb, &sms, err)) return -1;
    W = (int64_t)sms * nb * NWARP;
    /* every resident warp gets tiles (up to one item of imbalance), never more blocks than fit */
    int64_t items = (int64_t)tiles * splits;
    int64_t warps = items < W ? items : W;
    int64_t wps = (warps + splits - 1) / splits;
    if (wps > tiles) wps = tiles;
    int bps = (int)((wps + NWARP - 1) / NWARP);
    int64_t bslots = (int64_t)sms * nb;
    if ((int64_t)bps * splits > bslots && bslots >= splits) bps = (int)(bslots / splits);
    if (bps < 1) bps = 1;
    if (splits > 1) {
        if (!ws || !ws->partial || !ws->count)
            return err_set(err, ERR_ARG, "qgemv: this product needs a workspace (qgemv_ws_alloc)");
        if ((size_t)splits * tiles * 16 > ws->partial_floats || (size_t)tiles > ws->count_ints)
            return err_set(err, ERR_ARG, "qgemv: workspace too small for %d splits of %d tiles", splits, tiles);
        p.wsp = ws->partial;
        p.wsc = ws->count;
    }
    p.T = tiles;
    p.splits = splits;
    p.bps = bps;
    dim3 grid((unsigned)(splits * bps));
    void *args[] = {&p};
    if (ck(err, cudaLaunchKernel(fi.kernel, grid, dim3(NTHREAD), args, smem, st), "qgemv kernel launch")) return -1;
    return ck(err, cudaGetLastError(), "qgemv kernel launch");
}

} /* namespace */

/* ---- the C API ---- */

extern "C" const char *qfmt_name(qfmt f) {
    switch (f) {
    case QF_BF16: return "bf16";
    case QF_WINT8: return "wint8";
    case QF_WINT4: return "wint4";
    case QF_CCQ275: return "ccq2.75";
    case QF_CCQ25: return "ccq2.5";
    case QF_CCQ206: return "ccq2.06";
    default: return "?";
    }
}

extern "C" double qfmt_row_bytes(qfmt f, int64_t k) {
    switch (f) {
    case QF_BF16: return 2.0 * k;
    case QF_WINT8: return k + 4.0;
    case QF_WINT4: return k / 2.0 + 4.0;
    case QF_CCQ275: return k / 64 * 22.0 + 2.0;
    case QF_CCQ25: return k / 64 * 20.0 + 2.0;
    case QF_CCQ206: return k / 4.0 + (double)((k + 127) / 128) + 4 + 4 + 2;
    default: return 0;
    }
}

extern "C" void qgemv_ccq206_use_table(int on) { g_ccq206_table = on != 0; }

extern "C" int qgemv_ws_alloc(qgemv_ws *ws, int64_t max_rows, int max_splits, err_t *err) {
    memset(ws, 0, sizeof *ws);
    int64_t tiles = (max_rows + 15) / 16 + 1;
    ws->partial_floats = (size_t)tiles * 16 * (size_t)max_splits;
    ws->count_ints = (size_t)tiles;
    if (ck(err, cudaMalloc(&ws->partial, ws->partial_floats * sizeof(float)), "cudaMalloc (qgemv workspace)")) return -1;
    if (ck(err, cudaMalloc(&ws->count, ws->count_ints * sizeof(int)), "cudaMalloc (qgemv workspace)")) {
        cudaFree(ws->partial);
        memset(ws, 0, sizeof *ws);
        return -1;
    }
    if (ck(err, cudaMemset(ws->count, 0, ws->count_ints * sizeof(int)), "cudaMemset (qgemv workspace)")) {
        qgemv_ws_free(ws);
        return -1;
    }
    return 0;
}

extern "C" void qgemv_ws_free(qgemv_ws *ws) {
    if (!ws) return;
    if (ws->partial) cudaFree(ws->partial);
    if (ws->count) cudaFree(ws->count);
    memset(ws, 0, sizeof *ws);
}

extern "C" size_t qmat_repack_bytes(qfmt f, int64_t rows, int64_t k) {
    int64_t gp = groups_padded(k);
    if (f == QF_CCQ275) return (size_t)(rows * gp * (16 + 4 + 2));
    if (f == QF_CCQ25) return (size_t)(rows * gp * (16 + 4));
    return 0;
}

extern "C" int qmat_repack(qfmt f, const void *src, int64_t rows, int64_t k, void *dst, qmat_dev *m, void *stream,
                           err_t *err) {
    if (f != QF_CCQ275 && f != QF_CCQ25) return err_set(err, ERR_ARG, "qmat_repack: %s needs no repack", qfmt_name(f));
    if (k <= 0 || k % 64 || rows <= 0) return err_set(err, ERR_ARG, "qmat_repack: bad shape %lld x %lld", (long long)rows, (long long)k);
    if ((uintptr_t)dst % 16) return err_set(err, ERR_ARG, "qmat_repack: destination not 16-byte aligned");
    int64_t gp = groups_padded(k), gn = k / 64, n = rows * gp;
    uint8_t *heads = (uint8_t *)dst;
    uint32_t *tl = (uint32_t *)(heads + n * 16);
    int blocks = (int)((n + 255) / 256 > 65535 ? 65535 : (n + 255) / 256);
    cudaStream_t st = (cudaStream_t)stream;
    if (f == QF_CCQ275) {
        uint16_t *tl2 = (uint16_t *)(tl + n);
        k_repack275<<<blocks, 256, 0, st>>>((const uint8_t *)src, rows, (int)gn, (int)gp, heads, tl, tl2);
        m->tail2 = tl2;
    } else {
        k_repack25<<<blocks, 256, 0, st>>>((const uint16_t *)src, rows, (int)gn, (int)gp, heads, tl);
        m->tail2 = NULL;
    }
    m->q = heads;
    m->tail = tl;
    return ck(err, cudaGetLastError(), "qmat_repack kernel launch");
}

extern "C" int qgemv(const qmat_dev *m, const uint16_t *x, void *y, qout yt, qgemv_ws *ws, void *stream, err_t *err) {
    if (check_mat(m, err)) return -1;
    if (m->n_experts != 1) return err_set(err, ERR_ARG, "qgemv: a stacked weight needs qmoe_gate_up or qmoe_down");
    if (!x || !y) return err_set(err, ERR_ARG, "qgemv: NULL x or y");
    KParams p = base_params(m);
    p.mode = MODE_PLAIN;
    p.out_bf16 = yt == QOUT_BF16;
    p.x = x;
    p.y = y;
    int tiles = (int)((m->n + 15) / 16);
    return plan_and_launch(m->fmt, p, tiles, 1, true, ws, (cudaStream_t)stream, err);
}

extern "C" int qmoe_gate_up(const qmat_dev *m, const int32_t *ids, int topk, const uint16_t *x, void *h, qout ht,
                            qgemv_ws *ws, void *stream, err_t *err) {
    if (check_mat(m, err)) return -1;
    if (m->n % 2) return err_set(err, ERR_ARG, "qmoe_gate_up: %lld rows per expert is not gate + up", (long long)m->n);
    if (topk < 1 || topk > 64 || !ids || !x || !h) return err_set(err, ERR_ARG, "qmoe_gate_up: bad arguments (topk %d)", topk);
    KParams p = base_params(m);
    p.mode = MODE_GATEUP;
    p.inter = (int)(m->n / 2);
    p.out_bf16 = ht == QOUT_BF16;
    p.x = x;
    p.y = h;
    p.ids = ids;
    int tiles = topk * ((p.inter + 7) / 8);
    return plan_and_launch(m->fmt, p, tiles, 1, true, ws, (cudaStream_t)stream, err);
}

extern "C" int qmoe_down(const qmat_dev *m, const int32_t *ids, const float *route_w, int topk, const uint16_t *h,
                         void *y, qout yt, qgemv_ws *ws, void *stream, err_t *err) {
    if (check_mat(m, err)) return -1;
    if (topk < 1 || topk > 64 || !ids || !route_w || !h || !y)
        return err_set(err, ERR_ARG, "qmoe_down: bad arguments (topk %d)", topk);
    if (topk > 1 && (!ws || !ws->partial || !ws->count))
        return err_set(err, ERR_ARG, "qmoe_down: %d experts are summed through a workspace (qgemv_ws_alloc)", topk);
    KParams p = base_params(m);
    p.mode = MODE_DOWN;
    p.out_bf16 = yt == QOUT_BF16;
    p.x = h;
    p.y = y;
    p.ids = ids;
    p.route_w = route_w;
    int tiles = (int)((m->n + 15) / 16);
    return plan_and_launch(m->fmt, p, tiles, topk, true, ws, (cudaStream_t)stream, err);
}
