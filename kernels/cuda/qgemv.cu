/* kernels/cuda/qgemv.cu: products y = W x of quantized weights with bf16 activations for one token and
 * small batches (up to 64 tokens), and the MoE expert products, at the speed of the memory. Two kernel
 * templates: the row-major kernel (qgemv_kernel, bf16 / wint8 / wint4 as stored) and the tiled kernel
 * (qt_kernel, ccq2.75 / ccq2.5 / ccq2.06 in the load-time layout of qlayout.cuh), one small struct per
 * format.
 *
 * Why the tensor cores at batch 1. A 2-bit weight byte carries 3 to 4 weights; at 3 TB/s an H100 has
 * about 11 lane-operations per weight byte for everything (spec/ccq.md section 7), and integer work
 * (shifts, masks, permutes) runs on a 16-lane pipe, at half that rate. A multiply-add per weight on the
 * ALUs would eat the budget by itself. So the ALUs only decode: each format turns its bytes into bf16
 * pairs "offset + v" with shifts, one masked OR, and exponent bits set by constants (no conversions),
 * and mma.sync m16n8k16 (bf16 x bf16 -> fp32) does the multiply-adds and most of the reduction.
 * Products of bf16 values are exact in fp32, so the result is an fp32 dot product of the decoded
 * weights with the bf16 activations; the offsets are removed with precomputed sums of x (below).
 *
 * Tile and fragments. A warp owns a tile of 16 weight rows (mma M = 16; the 8 lanes g = lane/4 hold
 * rows g and g+8) and walks K. In one step every lane supplies 4 k-slots of each of its two rows
 * (the A fragment: slots 0,1 are k = 2t,2t+1 and slots 2,3 are k = 2t+8,2t+9 of the 16-wide step,
 * t = lane%4) and the same 4 slots of x (the B fragment). Which real column sits in which slot is
 * ours to choose, as long as A and B agree: each format picks the order that makes its decode
 * cheapest, and x is copied into shared memory in that order ("xs", once per block).
 *
 * Lane streams in separate output columns (batch 1). mma's B has 8 columns and one token needs one;
 * lane (g,t) provides column g of B, so only some lanes load x and the others give zeros: column n of
 * the result then holds the products of one lane alone, a partial sum to which a per-group scale can be
 * applied afterwards (two FFMA per group and row) instead of to every weight. In the row-major kernel
 * the 4 lanes t of a row each read their own 16-byte piece ("lane-chunk") and lanes g == t give x. In
 * the tiled kernel all lanes of a row work on the same group, and lanes g == t and g == t + 4 give x
 * for alternate groups (see the tiled section). Batches use B's columns for real tokens.
 *
 * Offsets. A decoded slot holds off + v (e.g. 128 + v for a 6-bit field v: bf16 0x4300 | v) so that
 * building it takes no arithmetic; the product picks up off * sum(x), which the block precomputes
 * (from the same bf16 x, in fp32) and removes. The offsets are kept within a few times the weight range
 * so the cancellation costs under a bit or two of fp32 precision.
 *
 * Memory pipeline. Weights are read once, with 16-byte cp.async copies into a small ring per warp in
 * shared memory (3 or 4 stages, a flat stream across the warp's tiles, so tile boundaries never drain
 * it). (Register double buffers were tried first: a register that a pending load writes cannot be
 * moved without waiting for the load, and fully unrolled copies overflowed the instruction cache.) The
 * row-major kernel's copies carry an L2::256B prefetch hint: a warp takes 64 bytes of each of its 16
 * rows per step, and without the hint nearly every such access opens a DRAM page; with it, bf16 went
 * from 65% to 96% of the copy bandwidth (docs/perf-notes.md). The tiled kernel copies whole contiguous
 * blocks and needs no hint.
 *
 * Work split. Items are (tile, split): the split is a K range (plain products and gate/up when there
 * are too few tiles to fill the GPU, and batches whose x does not fit in shared memory whole) or an
 * expert slot (down projection). A block serves one split (so it copies one piece of x) and its 8 warps
 * take tiles round-robin. With more than one split, each warp writes fp32 partials to the workspace
 * and the last warp to finish a tile (an atomic counter) adds them in split order and writes the
 * output: deterministic, one launch.
 *
 * Formats (slot order and offset in each struct): bf16 (as stored), wint8 (two mma per step: high
 * nibble x 16 and low nibble), wint4; tiled: ccq2.75, ccq2.5 (shifts, masks and byte permutes), ccq2.06
 * (code computed with fmaf and the floor done by adding a power of two in round-down mode, fields
 * placed with two IMADs). The row-major kernel keeps hooks for grouped formats and side data (GROUPED,
 * ROWCONST, SIDE) that no format uses now that the ccq formats are tiled.
 *
 * Must never: read a weight byte twice, or depend on the order blocks finish in for its result. Register
 * budgets: the row-major kernel 85 (3 blocks of 256 threads per SM), the tiled kernel 128 at batch 1. */
#include "kernels/cuda/qgemv.h"
#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/qlayout.cuh"

#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

namespace {

constexpr int NWARP = 8;
constexpr int NTHREAD = NWARP * 32;

constexpr unsigned FULL = 0xffffffffu;

/* MODE_GUB / MODE_DNB: gate/up and down of several tokens routed to experts (qmoe_*_batch): a block
 * serves one selected expert and all the slots (tokens) that chose it. */
enum { MODE_PLAIN = 0, MODE_GATEUP = 1, MODE_DOWN = 2, MODE_GUB = 3, MODE_DNB = 4 };

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
    /* batches (qb_kernel) */
    int ntok;                         /* tokens: rows of x (plain, gate/up) and of y (plain, down) */
    int xt;                           /* bf16 elements per token in the block's x staging */
    const int32_t *offsets, *perm;    /* routing (MODE_GUB / MODE_DNB), see qmoe_route in qgemv.h */
    const int32_t *rslot;             /* [ntok][topk]: slot of token t's j-th expert */
    int topk, total;                  /* slots = ntok * topk */
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
/* The tiled kernels read whole contiguous blocks, so the L2 prefetch hint that the row-major kernels
 * need for DRAM page locality only adds L2 work there (QGEMV_TILED_L2_PREFETCH=256 restores it). */
#ifndef QGEMV_TILED_L2_PREFETCH
#define QGEMV_TILED_L2_PREFETCH 0
#endif
__device__ __forceinline__ void cp16t(void *sdst, const void *gsrc) {
    uint32_t d = (uint32_t)__cvta_generic_to_shared(sdst);
#if QGEMV_TILED_L2_PREFETCH == 256
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;" ::"r"(d), "l"(gsrc));
#else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(gsrc));
#endif
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
    } else if (p.mode == MODE_DOWN) {
        int64_t e = min(max(__ldg(p.ids + slot), 0), p.n_experts - 1);
        r0 = e * p.n + min(tile * 16 + g, p.n - 1);
        r1 = e * p.n + min(tile * 16 + 8 + g, p.n - 1);
    } else if (p.mode == MODE_GUB) { /* slot: the block's expert */
        int ch = min(tile * 8 + g, p.inter - 1);
        r0 = (int64_t)slot * p.n + ch;
        r1 = r0 + p.inter;
    } else {
        r0 = (int64_t)slot * p.n + min(tile * 16 + g, p.n - 1);
        r1 = (int64_t)slot * p.n + min(tile * 16 + 8 + g, p.n - 1);
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

/* ==== batches: T tokens (2..64) per call, plain or routed to experts ====
 *
 * The mma's 8 B columns are 8 tokens (lane (g,t) gives token 8nt + g of column tile nt), so a weight
 * byte is read and decoded once for up to 64 tokens. For the experts (MODE_GUB, MODE_DNB) the tokens
 * of a block are the slots of one selected expert: slots are sorted by expert (qmoe_route), a block
 * takes the a-th expert that has slots and gathers the x rows of those slots into shared memory. The
 * column tiles past the expert's slot count are skipped (a warp-uniform branch), so an expert chosen
 * by 3 tokens costs one column tile even when the call has 64 tokens. */

/* The a-th expert (in expert order) that has slots: its first slot and slot count, and how many experts
 * have slots (e = -1 when a is past them). Every warp computes it with ballots over the offsets, so bad
 * offsets (falling, out of range) give wrong numbers, never a fault. */
__device__ __forceinline__ void find_expert(const int32_t *offsets, int n_experts, int total, int a, int &e, int &slot0,
                                            int &cnt, int &n_active) {
    const int lane = threadIdx.x & 31;
    int seen = 0;
    e = -1, slot0 = 0, cnt = 0;
    for (int b = 0; b < n_experts; b += 32) {
        const int i = b + lane;
        int lo = 0, hi = 0;
        if (i < n_experts) lo = min(max(__ldg(offsets + i), 0), total), hi = min(max(__ldg(offsets + i + 1), 0), total);
        const unsigned m = __ballot_sync(FULL, hi > lo);
        const int k = a - seen, np = __popc(m);
        if (e < 0 && k >= 0 && k < np) { /* uniform across the warp */
            unsigned mm = m;
            for (int q = 0; q < k; q++) mm &= mm - 1;
            const int pos = __ffs(mm) - 1;
            e = b + pos;
            slot0 = __shfl_sync(FULL, lo, pos);
            cnt = __shfl_sync(FULL, hi - lo, pos);
        }
        seen += np;
    }
    n_active = seen;
}

/* What the end of a batched tile needs (one per block). */
struct BEnd {
    int mode, out_bf16, n, inter;
    int ntok;          /* tokens of the call */
    int ntile, splits; /* tiles per split; K parts (plain: all splits) */
    int split;         /* this block's K part (plain: its split) */
    int e, slot0, cnt; /* experts: the block's expert, its first slot and slot count */
    int arrivals;      /* down: items that add to one output tile (active experts x K parts) */
    int total, topk;
    float *wsp;
    int *wsc;
    void *y;
    const int32_t *rslot;
    const float *route_w;
};

__device__ __forceinline__ void store_out(void *y, int bf16, int64_t o, float v) {
    if (bf16) ((uint16_t *)y)[o] = f2bf16(v);
    else ((float *)y)[o] = v;
}

__device__ __forceinline__ float silu_mul(float gate, float up) { return gate / (1.0f + expf(-gate)) * up; }

/* End of a batched tile: lane (g,t) holds acc[nt][e] (scaled, offsets removed) of tile row g + 8 (e >> 1)
 * and column 8 nt + 2t + (e & 1) (a token, or the block's expert's slot). Writes the outputs, or adds
 * the K parts (and for the down projection the experts) through the workspace: the last warp to finish
 * a tile (atomic counter) sums in a fixed order (K parts in order; a token's experts in its routing
 * order), so the result does not depend on timing. */
template <int NT>
__device__ void bt_end(const BEnd &b, int tile, int g, int t, int lane, const float (&acc)[NT][4]) {
    constexpr int T8 = 8 * NT;
    if (b.mode == MODE_PLAIN) {
        if (b.splits == 1) {
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int n = 8 * nt + 2 * t + (e & 1), row = tile * 16 + g + 8 * (e >> 1);
                    if (n < b.ntok && row < b.n) store_out(b.y, b.out_bf16, (int64_t)n * b.n + row, acc[nt][e]);
                }
            return;
        }
        float *part = b.wsp + ((size_t)b.split * b.ntile + tile) * 16 * T8;
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) __stcg(part + (8 * nt + 2 * t + (e & 1)) * 16 + g + 8 * (e >> 1), acc[nt][e]);
        __threadfence();
        __syncwarp();
        int last = 0;
        if (lane == 0) last = atomicAdd(b.wsc + tile, 1) == b.splits - 1;
        last = __shfl_sync(FULL, last, 0);
        if (!last) return;
        __threadfence();
        /* 4 values per lane and pass, 4 splits' loads in flight at a time; summed in split order */
        for (int i = 4 * lane; i < 16 * T8; i += 128) {
            float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
            const float *src = b.wsp + (size_t)tile * 16 * T8 + i;
            const size_t sstride = (size_t)b.ntile * 16 * T8;
            int s2 = 0;
            for (; s2 + 4 <= b.splits; s2 += 4) {
                float4 a0 = __ldcg((const float4 *)(src + s2 * sstride)), a1 = __ldcg((const float4 *)(src + (s2 + 1) * sstride));
                float4 a2 = __ldcg((const float4 *)(src + (s2 + 2) * sstride)), a3 = __ldcg((const float4 *)(src + (s2 + 3) * sstride));
                v.x += a0.x, v.y += a0.y, v.z += a0.z, v.w += a0.w;
                v.x += a1.x, v.y += a1.y, v.z += a1.z, v.w += a1.w;
                v.x += a2.x, v.y += a2.y, v.z += a2.z, v.w += a2.w;
                v.x += a3.x, v.y += a3.y, v.z += a3.z, v.w += a3.w;
            }
            for (; s2 < b.splits; s2++) {
                float4 a0 = __ldcg((const float4 *)(src + s2 * sstride));
                v.x += a0.x, v.y += a0.y, v.z += a0.z, v.w += a0.w;
            }
            const float vv[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int n = (i + e) >> 4, row = tile * 16 + ((i + e) & 15);
                if (n < b.ntok && row < b.n) store_out(b.y, b.out_bf16, (int64_t)n * b.n + row, vv[e]);
            }
        }
        if (lane == 0) b.wsc[tile] = 0;
        return;
    }
    /* experts: partial sums per (K part, slot, tile, tile row) */
    const size_t pstride = (size_t)b.ntile * 16; /* floats per slot */
    if (b.mode == MODE_GUB && b.splits == 1) {
        const int ch = tile * 8 + g;
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int n = 8 * nt + 2 * t + e;
                if (n < b.cnt && ch < b.inter)
                    store_out(b.y, b.out_bf16, (int64_t)(b.slot0 + n) * b.inter + ch, silu_mul(acc[nt][e], acc[nt][e + 2]));
            }
        return;
    }
    float *part = b.wsp + ((size_t)b.split * b.total + b.slot0) * pstride + (size_t)tile * 16;
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int n = 8 * nt + 2 * t + (e & 1);
            if (n < b.cnt) __stcg(part + n * pstride + g + 8 * (e >> 1), acc[nt][e]);
        }
    __threadfence();
    __syncwarp();
    const int ci = b.mode == MODE_GUB ? b.e * b.ntile + tile : tile;
    const int need = b.mode == MODE_GUB ? b.splits : b.arrivals;
    int last = 0;
    if (lane == 0) last = atomicAdd(b.wsc + ci, 1) == need - 1;
    last = __shfl_sync(FULL, last, 0);
    if (!last) return;
    __threadfence();
    const size_t kstride = (size_t)b.total * pstride; /* floats per K part */
    if (b.mode == MODE_GUB) {
        for (int i = lane; i < b.cnt * 8; i += 32) {
            const int n = i >> 3, m = i & 7, ch = tile * 8 + m;
            const float *src = b.wsp + (size_t)(b.slot0 + n) * pstride + (size_t)tile * 16 + m;
            float gs = 0.f, us = 0.f;
            for (int s2 = 0; s2 < b.splits; s2++) gs += __ldcg(src + s2 * kstride), us += __ldcg(src + s2 * kstride + 8);
            if (ch < b.inter) store_out(b.y, b.out_bf16, (int64_t)(b.slot0 + n) * b.inter + ch, silu_mul(gs, us));
        }
    } else {
        /* y[token][row] = sum_j route_w[token][j] * (sum of the K parts of slot rslot[token][j]), j in order */
        for (int i = lane; i < b.ntok * 4; i += 32) {
            const int tk = i >> 2, q4 = i & 3;
            float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
            for (int j = 0; j < b.topk; j++) {
                const int s = min(max(__ldg(b.rslot + tk * b.topk + j), 0), b.total - 1);
                const float w = __ldg(b.route_w + tk * b.topk + j);
                const float *src = b.wsp + (size_t)s * pstride + (size_t)tile * 16 + 4 * q4;
                float4 a = __ldcg((const float4 *)src);
                for (int s2 = 1; s2 < b.splits; s2++) {
                    const float4 c = __ldcg((const float4 *)(src + s2 * kstride));
                    a.x += c.x, a.y += c.y, a.z += c.z, a.w += c.w;
                }
                v.x = fmaf(w, a.x, v.x), v.y = fmaf(w, a.y, v.y), v.z = fmaf(w, a.z, v.z), v.w = fmaf(w, a.w, v.w);
            }
            const float vv[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const int row = tile * 16 + 4 * q4 + q;
                if (row < b.n) store_out(b.y, b.out_bf16, (int64_t)tk * b.n + row, vv[q]);
            }
        }
    }
    if (lane == 0) b.wsc[ci] = 0;
}

/* The row-major batch kernel (bf16, wint8, wint4; T = 2..64): the pipeline of qgemv_kernel, with B's
 * columns as tokens. The four lanes t of a row read four different lane-chunks, and lane t's B slots
 * are the same chunk's columns of its token, so one mma sums 16 columns of 8 tokens and no per-lane
 * streams are needed (these formats have no group scales). Accumulators start at -OFF * sum(x) of
 * their token (the offsets' share), and each unit's tensor-core sums are added in fp32. */
template <int NT>
__host__ __device__ constexpr int r_min_blocks() {
    return NT <= 2 ? 2 : 1;
}

template <class F>
__host__ __device__ constexpr int64_t xt_r(int64_t cpp) { /* token stride: 16 mod 64 elements (banks) */
    return (cpp * XS_CHUNK<F>() + 47) / 64 * 64 + 16;
}

template <class F, int NT>
__global__ void __launch_bounds__(NTHREAD, r_min_blocks<NT>()) qb_kernel(const KParams p) {
    static_assert(!F::GROUPED && F::SIDE == 0, "the batch kernel has no group scales or side data");
    extern __shared__ __align__(16) uint8_t smem[];
    constexpr int NS = NST<F>(), SW = STAGE_WORDS<F>(), T8 = 8 * NT, XC = XS_CHUNK<F>();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int split = blockIdx.x % p.splits, bsp = blockIdx.x / p.splits;
    const int kp = split % p.kparts;
    const bool routed = p.mode == MODE_GUB || p.mode == MODE_DNB;
    int ex = 0, slot0 = 0, cnt = p.ntok, nact = 1;
    if (routed) {
        find_expert(p.offsets, p.n_experts, p.total, split / p.kparts, ex, slot0, cnt, nact);
        if (ex < 0) return; /* fewer experts were chosen than the grid allows for */
    }
    cnt = min(cnt, T8);
    const int c0 = kp * p.cpp;
    const int nch = min(p.cpp, p.nchunk - c0);
    const int U = (nch + 3) >> 2;
    const int ncp = U * 4;
    uint32_t *ring = (uint32_t *)smem + warp * NS * SW;
    uint16_t *xs = (uint16_t *)((uint32_t *)smem + NWARP * NS * SW);
    float *S = (float *)(xs + (size_t)T8 * p.xt);

    /* x of the block's tokens and K part, in the format's slot order; zeros past the tokens and K */
    auto xrow = [&](int n) -> const uint16_t * {
        int64_t r = p.mode == MODE_GUB ? min(max(__ldg(p.perm + slot0 + n), 0), p.ntok - 1)
                    : p.mode == MODE_DNB ? slot0 + n
                                         : n;
        return p.x + r * p.k + (int64_t)c0 * F::LW;
    };
    for (int i = threadIdx.x; i < T8 * ncp * F::STEPS; i += blockDim.x) {
        const int n = i / (ncp * F::STEPS), rest = i - n * (ncp * F::STEPS), c = rest / F::STEPS, s = rest - c * F::STEPS;
        uint32_t v[4] = {0, 0, 0, 0};
        if (n < cnt && c < nch) {
            const uint16_t *xr = xrow(n) + c * F::LW;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int kk = F::kmap(s, j);
                v[j] = kk >= 0 ? xr[kk] : 0u;
            }
        }
        *(uint2 *)(xs + (size_t)n * p.xt + c * XC + s * 4) = make_uint2(v[0] | v[1] << 16, v[2] | v[3] << 16);
    }
    for (int n = warp; n < T8; n += NWARP) { /* -OFF * sum(x) per token, fixed order */
        float s = 0.f;
        if (n < cnt && F::OFF != 0.f) {
            const uint16_t *xr = xrow(n);
            for (int i = lane; i < nch * F::LW; i += 32) s += bf16f(xr[i]);
        }
#pragma unroll
        for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(FULL, s, o);
        if (lane == 0) S[n] = -F::OFF * s;
    }

    const int ntile = p.T, tile0 = bsp * NWARP + warp, tstride = p.bps * NWARP;
    const int nmy = tile0 < ntile ? (ntile - 1 - tile0) / tstride + 1 : 0;
    const int nit = nmy * U;
    Ctx cx = make_ctx();
    int ld_tile = tile0, ld_u = 0;
    int64_t r0 = 0, r1 = 0;
    if (nit) tile_rows(p, ex, ld_tile, g, r0, r1);
    Rows lr = make_rows(p, r0, r1);
    auto issue_next = [&](int stage) {
        uint32_t *st = ring + stage * SW;
        int c = min(c0 + ld_u * 4 + t, p.nchunk - 1);
        cp16(st + lane * 4, lr.q0 + (int64_t)c * 16);
        cp16(st + (32 + lane) * 4, lr.q1 + (int64_t)c * 16);
        if (++ld_u == U) {
            ld_u = 0;
            ld_tile += tstride;
            if (ld_tile < ntile) tile_rows(p, ex, ld_tile, g, r0, r1), lr = make_rows(p, r0, r1);
        }
    };
    for (int d = 0; d < NS - 1; d++) {
        if (d < nit) issue_next(d);
        cp_commit();
    }
    float rs0 = 0.f, rs1 = 0.f;
    int pr_tile = tile0;
    if (nit) tile_rows(p, ex, pr_tile, g, r0, r1), rs0 = row_scale<F>(p, r0), rs1 = row_scale<F>(p, r1);

    BEnd be;
    be.mode = p.mode, be.out_bf16 = p.out_bf16, be.n = p.n, be.inter = p.inter, be.ntok = p.ntok;
    be.ntile = ntile, be.splits = p.kparts, be.split = kp;
    be.e = ex, be.slot0 = slot0, be.cnt = cnt, be.arrivals = nact * p.kparts, be.total = p.total, be.topk = p.topk;
    be.wsp = p.wsp, be.wsc = p.wsc, be.y = p.y, be.rslot = p.rslot, be.route_w = p.route_w;
    __syncthreads();

    const int ntl = (cnt + 7) >> 3; /* column tiles with tokens */
    float so[NT][2];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) so[nt][0] = S[8 * nt + 2 * t], so[nt][1] = S[8 * nt + 2 * t + 1];
    float acc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) acc[nt][0] = acc[nt][2] = so[nt][0], acc[nt][1] = acc[nt][3] = so[nt][1];
    const uint16_t *xg = xs + (size_t)g * p.xt;
    int pr_u = 0, st_cur = 0;
#pragma unroll 1
    for (int it = 0; it < nit; it++) {
        cp_wait<NS - 2>();
        const uint32_t *st = ring + st_cur * SW;
        typename F::Raw raw;
        F::fetch(raw, *(const uint4 *)(st + lane * 4), *(const uint4 *)(st + (32 + lane) * 4), st + 256 + lane);
        if (it + NS - 1 < nit) issue_next(st_cur == 0 ? NS - 1 : st_cur - 1);
        cp_commit();
        st_cur = st_cur == NS - 1 ? 0 : st_cur + 1;
        const uint16_t *xb = xg + (pr_u * 4 + t) * XC;
        float c[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; nt++) c[nt][0] = c[nt][1] = c[nt][2] = c[nt][3] = 0.f;
#pragma unroll
        for (int s = 0; s < F::STEPS; s++) {
            uint32_t a[F::NMMA][4];
            F::a_regs(raw, s, cx, a);
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
                if (nt < ntl) {
                    const uint2 b = *(const uint2 *)(xb + (size_t)8 * nt * p.xt + 4 * s);
#pragma unroll
                    for (int m = 0; m < F::NMMA; m++) mma16816(c[nt], a[m], b.x, b.y);
                }
        }
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[nt][e] += c[nt][e];
        if (++pr_u == U) {
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) acc[nt][e] *= e >> 1 ? rs1 : rs0;
            bt_end<NT>(be, pr_tile, g, t, lane, acc);
#pragma unroll
            for (int nt = 0; nt < NT; nt++) acc[nt][0] = acc[nt][2] = so[nt][0], acc[nt][1] = acc[nt][3] = so[nt][1];
            pr_u = 0;
            pr_tile += tstride;
            if (pr_tile < ntile) tile_rows(p, ex, pr_tile, g, r0, r1), rs0 = row_scale<F>(p, r0), rs1 = row_scale<F>(p, r1);
        }
    }
    cp_wait<0>();
}

/* ==== tiled formats: ccq2.75, ccq2.5, ccq2.06 in the layout of qlayout.cuh ====
 *
 * A warp owns a tile of 16 rows and walks the units (256 columns) of its K range. For each unit it
 * copies the unit's contiguous block (1056 to 1408 bytes) into a ring stage with 16-byte cp.async of
 * consecutive addresses (lane L copies pieces L, L+32, L+64: every warp-wide copy is 512 contiguous
 * bytes), waits, and after one __syncwarp every lane reads its own words and the shared side bytes of its
 * two rows (rows g and g+8) from the stage. Each lane holds a quarter of every group (16 weights), so
 * the 16 mma steps of a unit go group by group: steps 4G..4G+3 are group G for all four lanes of a row.
 *
 * Batch 1 (NT = 0, "lane streams"): lane (g,t) provides column g of B, nonzero only when g == t (the
 * steps of groups 0 and 2) or g == t + 4 (groups 1 and 3). After steps 0..7 the 8 columns of the
 * result hold 4 partial sums of group 0 (columns 0..3) and 4 of group 1 (columns 4..7), one per lane
 * stream, all 8 lanes of a row useful; each lane scales its two columns by its group's local scale
 * (two FFMA per row) and the same again after steps 8..15. Batches (NT = 1, 2, 4, 8 column tiles of 8
 * tokens): B holds real tokens (lane (g,t) gives token 8nt + g), and the local scale is applied per
 * group (4 steps): each weight is decoded once for all tokens.
 *
 * Slot orders and offsets. A decoded bf16 pair holds off + v with v in mantissa bits q..q+w-1 of each
 * half, the exponent chosen so that the unit in the last place is 1 at bit q (q = 1: 64 + v, 2: 32 + v,
 * 3: 16 + v, 4: 8 + v), so that a shift and one masked OR (or a byte permute first) build it; each slot
 * has its own q, picked per field to save shifts while keeping the offset within 9x the field's range
 * (bigger offsets cost fp32 bits in the tensor-core sums). The block precomputes -sum(off * x) per group
 * and lane stream (or per group and token) and starts each accumulation from it. */

struct Kc { /* constants the decoders OR in, in registers (LOP3 takes one immediate) */
    uint32_t c8, c16, c32, c64, c128, c4b, cxy;
};

__device__ __forceinline__ Kc make_kc() {
    Kc k;
    k.c8 = reg_const<0x41004100u>();
    k.c16 = reg_const<0x41804180u>();
    k.c32 = reg_const<0x42004200u>();
    k.c64 = reg_const<0x42804280u>();
    k.c128 = reg_const<0x43004300u>();
    k.c4b = reg_const<0x4B000000u>();
    k.cxy = reg_const<0x42804180u>();
    return k;
}

/* Per-lane constants of the decoders that depend on t (byte selectors, shifts, masks), and the code line
 * of the tile's two rows for ccq2.06. */
struct Lc {
    uint32_t sel[4];
    uint32_t rx, ry, mx, cx;
    float cs0, zp0, cs1, zp1;
};

/* (a & m) | c with m and c in registers */
__device__ __forceinline__ uint32_t lop_and_or(uint32_t a, uint32_t m, uint32_t c) {
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "r"(m), "r"(c));
    return d;
}

/* a small unsigned integer (< 2^23) as a float, by exponent bits: one LOP3 (done by the caller's mask)
 * plus one FADD */
__device__ __forceinline__ float small_uint_f(uint32_t v_or_4b) { return __uint_as_float(v_or_4b) - 8388608.0f; }

/* ccq2.75: lane t holds bytes 5t..5t+3 (word A) and 5t+4 (c4) of each group; bytes 20 and 21 are shared by
 * the row's lanes. A's windows: c0.w1 (bits 2..5: q 2), c0.w2 (0..3, shifted left 1: q 1), c0.w0 (>> 1:
 * q 3), c1.w1 (>> 7: q 3), c1.w2 (>> 7: q 1), c1.w0 (>> 9: q 3), each paired with the same window of c2
 * or c3 in the high half. The last two pairs come from W = PRMT(c4, bytes 20/21): X pairs one window of
 * c4 with this lane's extra weight (window t of byte 20, or v63 for t = 3), Y the other two windows of
 * c4; which bytes of W and which shifts depend on t (Lc). */
struct T275 {
    static constexpr int FMT = QF_CCQ275, UB = 1408, NPIECE = 88;
    struct Raw {
        uint4 a0, a1;
        uint32_t b0, b1;
        uint2 s0, s1;
    };
    static __device__ __forceinline__ void fetch(Raw &r, const uint8_t *st, int lane, int g) {
        r.a0 = *(const uint4 *)(st + lane * 16);
        r.a1 = *(const uint4 *)(st + 512 + lane * 16);
        r.b0 = *(const uint32_t *)(st + 1024 + lane * 4);
        r.b1 = *(const uint32_t *)(st + 1152 + lane * 4);
        r.s0 = *(const uint2 *)(st + 1280 + g * 8);
        r.s1 = *(const uint2 *)(st + 1344 + g * 8);
    }
    static __device__ __forceinline__ void init_lane(Lc &c, int t) {
#pragma unroll
        for (int G = 0; G < 4; G++) {
            uint32_t E = 4 + 2 * (G & 1) + (t == 3);
            c.sel[G] = t == 2 ? (G | G << 4 | G << 8 | E << 12) : (G | G << 4 | E << 8 | G << 12);
        }
        c.rx = t == 2 ? 5 : 1;
        c.ry = t == 2 ? 1 : 7;
        c.mx = t == 1 ? 0x001E0078u : 0x00780078u;
        c.cx = t == 1 ? 0x42804180u : 0x41804180u;
    }
    static __device__ __forceinline__ void pairs(const Raw &r, int h, int G, int j, const Lc &c, const Kc &k,
                                                 uint32_t &p0, uint32_t &p1) {
        const uint32_t A = word_of(h ? r.a1 : r.a0, G);
        if (j == 0) {
            p0 = and_or<0x003C003Cu>(A, k.c32);
            p1 = and_or<0x001E001Eu>(A << 1, k.c64);
        } else if (j == 1) {
            p0 = and_or<0x00780078u>(A >> 1, k.c16);
            p1 = and_or<0x00780078u>(A >> 7, k.c16);
        } else if (j == 2) {
            p0 = and_or<0x001E001Eu>(A >> 7, k.c64);
            p1 = and_or<0x00780078u>(A >> 9, k.c16);
        } else {
            const uint2 s = h ? r.s1 : r.s0;
            const uint32_t W = __byte_perm(h ? r.b1 : r.b0, G < 2 ? s.x : s.y, c.sel[G]);
            p0 = lop_and_or(W >> c.rx, c.mx, c.cx);
            p1 = and_or<0x001E0078u>(W >> c.ry, k.cxy);
        }
    }
    /* G may vary per lane (batch-1 flushes) */
    static __device__ __forceinline__ float local(const Raw &r, int h, int G, const Kc &k) {
        const uint2 s = h ? r.s1 : r.s0;
        const uint32_t w = (G >> 1) ? s.y : s.x;
        return small_uint_f(and_or<0xFu>(w >> (8 + 16 * (G & 1)), k.c4b));
    }
    /* the weight (0..63 in the group) in slot `slot` (0,1: pair p0; 2,3: pair p1) of step j, lane t */
    static __host__ __device__ int kmap(int t, int j, int slot) {
        const int b = 5 * t;
        if (j == 0) return slot == 0 ? 3 * b + 1 : slot == 1 ? 3 * b + 7 : slot == 2 ? 3 * b + 2 : 3 * b + 8;
        if (j == 1) return slot == 0 ? 3 * b : slot == 1 ? 3 * b + 6 : slot == 2 ? 3 * b + 4 : 3 * b + 10;
        if (j == 2) return slot == 0 ? 3 * b + 5 : slot == 1 ? 3 * b + 11 : slot == 2 ? 3 * b + 3 : 3 * b + 9;
        const int c4 = 3 * b + 12;
        if (t == 2) return slot == 0 ? c4 + 2 : slot == 1 ? 62 : slot == 2 ? c4 : c4 + 1;
        return slot == 0 ? c4 : slot == 1 ? (t == 3 ? 63 : 60 + t) : slot == 2 ? c4 + 1 : c4 + 2;
    }
    /* slot value = off + (v - 8) */
    static __host__ __device__ float off(int t, int j, int slot) {
        if (j == 0) return slot < 2 ? 40.f : 72.f;
        if (j == 1) return 24.f;
        if (j == 2) return slot < 2 ? 72.f : 24.f;
        if (slot == 1) return t == 1 ? 72.f : 24.f;
        return slot == 3 ? 72.f : 24.f;
    }
};

/* ccq2.5: lane t holds words 2t, 2t+1 of each group as one 32-bit word A (window m of both halves makes
 * pair m: shifts 9, 7, 2, 0 and a left shift by 3); word 8 and word 9 (v63, local) are shared by the
 * row's lanes and give each lane one more pair through PRMT + shift + masked OR (Lc). */
struct T25 {
    static constexpr int FMT = QF_CCQ25, UB = 1280, NPIECE = 80;
    struct Raw {
        uint4 a0, a1, s0, s1;
    };
    static __device__ __forceinline__ void fetch(Raw &r, const uint8_t *st, int lane, int g) {
        r.a0 = *(const uint4 *)(st + lane * 16);
        r.a1 = *(const uint4 *)(st + 512 + lane * 16);
        r.s0 = *(const uint4 *)(st + 1024 + g * 16);
        r.s1 = *(const uint4 *)(st + 1152 + g * 16);
    }
    static __device__ __forceinline__ void init_lane(Lc &c, int t) {
        c.sel[0] = t == 0 ? 0x3210u : t == 3 ? 0x0000u : 0x1010u;
        c.sel[1] = c.sel[2] = c.sel[3] = 0;
        c.rx = t == 0 ? 9 : t == 1 ? 7 : t == 2 ? 2 : 6;
        c.ry = 0;
        c.mx = t == 0 ? 0x00700070u : 0x001C0070u;
        c.cx = t == 0 ? 0x41004100u : 0x42004100u;
    }
    static __device__ __forceinline__ void pairs(const Raw &r, int h, int G, int j, const Lc &c, const Kc &k,
                                                 uint32_t &p0, uint32_t &p1) {
        const uint32_t A = word_of(h ? r.a1 : r.a0, G);
        if (j == 0) {
            p0 = and_or<0x00700070u>(A >> 9, k.c8);
            p1 = and_or<0x00700070u>(A >> 7, k.c8);
        } else if (j == 1) {
            p0 = and_or<0x001C001Cu>(A >> 7, k.c32);
            p1 = and_or<0x00700070u>(A >> 2, k.c8);
        } else if (j == 2) {
            p0 = and_or<0x00700070u>(A, k.c8);
            p1 = and_or<0x001C001Cu>(A, k.c32);
        } else {
            p0 = and_or<0x00380038u>(A << 3, k.c16);
            const uint32_t W = __byte_perm(word_of(h ? r.s1 : r.s0, G), 0, c.sel[0]);
            p1 = lop_and_or(W >> c.rx, c.mx, c.cx);
        }
    }
    static __device__ __forceinline__ float local(const Raw &r, int h, int G, const Kc &k) {
        const uint4 s = h ? r.s1 : r.s0;
        const uint32_t w = G == 0 ? s.x : G == 1 ? s.y : G == 2 ? s.z : s.w;
        return small_uint_f(and_or<0x1FFFu>(w >> 16, k.c4b));
    }
    static __host__ __device__ int kmap(int t, int j, int slot) {
        const int b = 14 * t;
        if (j < 3) return b + 2 * j + (slot >> 1) + (slot & 1) * 7;
        if (slot == 0) return b + 6;
        if (slot == 1) return b + 13;
        if (t == 0) return slot == 2 ? 56 : 63;
        return 55 + 2 * t + (slot & 1);
    }
    /* slot value = off + (v - 4) */
    static __host__ __device__ float off(int t, int j, int slot) {
        if (j == 0) return 12.f;
        if (j == 1) return slot < 2 ? 36.f : 12.f;
        if (j == 2) return slot < 2 ? 12.f : 36.f;
        if (slot < 2) return 20.f;
        return (slot == 3 && t != 0) ? 36.f : 12.f;
    }
};

/* ccq2.06: lane t holds q bytes 4t..4t+3 of each group, decoded arithmetically: byte q -> code =
 * floor(fmaf(q, cs, zp + 0.5)) exactly as FastDeploy. The floor is an FADD in round-down mode with 2^23
 * (mantissa = floor(t)), 2^26 (floor(t/8) = code>>3) and 2^32 (floor(t/512) = v0): three clean shifted
 * copies of the code, no conversion instruction. Then
 *   IMAD(m9, 2^16, m0): code in bits 0..14 and v0 in 16..21 -> pair (v3, v0)
 *   IMAD(m3, 2^13 + 1): v2 in bits 0..5 and v1 in 16..21 -> pair (v2, v1)
 * and one masked OR each gives bf16 pairs 128 + v. Valid encodings have every code in [0, 2^15). */
struct T206 {
    static constexpr int FMT = QF_CCQ206, UB = 1056, NPIECE = 66;
    struct Raw {
        uint4 a0, a1;
        uint32_t L;
    };
    static __device__ __forceinline__ void fetch(Raw &r, const uint8_t *st, int lane, int g) {
        r.a0 = *(const uint4 *)(st + lane * 16);
        r.a1 = *(const uint4 *)(st + 512 + lane * 16);
        r.L = *(const uint32_t *)(st + 1024 + g * 4);
    }
    static __device__ __forceinline__ void init_lane(Lc &c, int) {
        c.sel[0] = c.sel[1] = c.sel[2] = c.sel[3] = 0;
        c.rx = c.ry = c.mx = c.cx = 0;
    }
    static __device__ __forceinline__ void pairs(const Raw &r, int h, int G, int j, const Lc &c, const Kc &k,
                                                 uint32_t &p0, uint32_t &p1) {
        const uint32_t w = word_of(h ? r.a1 : r.a0, G);
        const float cs = h ? c.cs1 : c.cs0, zp5 = h ? c.zp1 : c.zp0;
        float q = __uint_as_float(__byte_perm(w, k.c4b, 0x7650 + j)) - 8388608.0f;
        float tt = fmaf(q, cs, zp5);
        uint32_t m0 = __float_as_uint(__fadd_rd(tt, 8388608.0f));
        uint32_t m3 = __float_as_uint(__fadd_rd(tt, 67108864.0f));
        uint32_t m9 = __float_as_uint(__fadd_rd(tt, 4294967296.0f));
        p0 = and_or<0x003F003Fu>(m9 * 65536u + m0, k.c128);
        p1 = and_or<0x003F003Fu>(m3 * 0x2001u, k.c128);
    }
    static __device__ __forceinline__ float local(const Raw &r, int h, int G, const Kc &k) {
        return small_uint_f(and_or<0xFu>(r.L >> (16 * h + 4 * G), k.c4b));
    }
    static __host__ __device__ int kmap(int t, int j, int slot) {
        const int b = 4 * (4 * t + j);
        return b + (slot == 0 ? 3 : slot == 1 ? 0 : slot == 2 ? 2 : 1);
    }
    /* slot value = 128 + v = off + (v - 32) */
    static __host__ __device__ float off(int, int, int) { return 160.f; }
};

/* The x staging of the tiled kernel: per token, unit and lane t, the 16 steps' 4 slots (64 bf16) plus 4
 * of padding (LXQ = 68 elements), so that the lanes reading B hit different banks; a token's row is xt
 * elements (xt = 16 mod 64, same reason). */
constexpr int LXQ = 68, UXQ = 4 * LXQ;

__host__ __device__ constexpr int64_t xt_of(int64_t upp) { return (upp * UXQ + 47) / 64 * 64 + 16; }

struct TP {
    const uint8_t *q; /* tiled layout */
    const float *cs, *zp;
    const uint16_t *super;
    int n, k, n_experts, units, tpe; /* units per row, tiles per expert */
    unsigned tpe_inv;                /* ceil(2^32 / tpe): tau / tpe = umulhi(tau, tpe_inv) */
    int mode, out_bf16;
    int T; /* tokens (batch kernels) */
    const uint16_t *x;
    void *y;
    const int32_t *ids;
    const float *route_w;
    int inter;
    int ntile; /* items per split */
    int splits, bps, kparts, upp;
    int xt;
    float *wsp;
    int *wsc;
    const int32_t *offsets, *perm, *rslot; /* routing (MODE_GUB / MODE_DNB), see qmoe_route in qgemv.h */
    int topk, total;
};

/* The block (in the tiled layout) of item tau, unit 0, and the global rows of mma rows g and g+8 (for the
 * per-row data; clamped into the weight). */
template <class F>
__device__ __forceinline__ const uint8_t *t_item(const TP &p, int slot, int tau, int g, int64_t &r0, int64_t &r1) {
    int64_t e, j;
    if (p.mode == MODE_PLAIN) {
        e = 0, j = tau;
        r0 = min(tau * 16 + g, p.n - 1);
        r1 = min(tau * 16 + 8 + g, p.n - 1);
    } else if (p.mode == MODE_GATEUP) {
        int s = (int)__umulhi((unsigned)tau, p.tpe_inv); /* tau / tpe, exact while tau * tpe < 2^32 */
        j = tau - s * p.tpe;
        e = min(max(__ldg(p.ids + s), 0), p.n_experts - 1);
        int ch = min((int)j * 8 + g, p.inter - 1);
        r0 = e * p.n + ch;
        r1 = r0 + p.inter;
    } else if (p.mode == MODE_GUB) { /* slot: the block's expert */
        e = slot, j = tau;
        int ch = min(tau * 8 + g, p.inter - 1);
        r0 = e * p.n + ch;
        r1 = r0 + p.inter;
    } else {
        e = p.mode == MODE_DNB ? slot : min(max(__ldg(p.ids + slot), 0), p.n_experts - 1);
        j = tau;
        r0 = e * p.n + min(tau * 16 + g, p.n - 1);
        r1 = e * p.n + min(tau * 16 + 8 + g, p.n - 1);
    }
    return p.q + (e * p.tpe + j) * (int64_t)p.units * F::UB;
}

/* The slot of each column of a unit: inv[c] = t * LXQ + 4 s + slot (bits 0..11) | t << 12, and its
 * offset, from the format's forward map; built once per block. */
template <class F>
__device__ void slot_tables(uint16_t *inv, float *offc) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
        const int t = i >> 6, s = (i >> 2) & 15, slot = i & 3;
        const int c = 64 * (s >> 2) + F::kmap(t, s & 3, slot);
        inv[c] = (uint16_t)((t * LXQ + 4 * s + slot) | t << 12);
        offc[c] = F::off(t, s & 3, slot);
    }
}

/* x into shared memory in slot order, and the offset sums, negated: batch 1, S[(u*4 + G)*4 + t] over lane
 * t's slots of group G; batches, S[(u*4 + G)*T8 + n] over all slots of group G for token n. Each item is 8
 * columns (one 16-byte load), scattered through inv; the 8 items of a group add their sums by a fixed
 * shuffle tree, so the result does not depend on timing. Tokens past T and columns past K are zero. */
template <class F, int NT>
__device__ void stage_t(const TP &p, const uint16_t *inv, const float *offc, uint16_t *xs, float *S, int slot, int u0,
                        int nu, int slot0, int cnt) {
    constexpr int T8 = NT == 0 ? 1 : 8 * NT;
    const int ntok = NT == 0 ? 1 : min(cnt, T8);
    const uint16_t *xb = p.x + (p.mode == MODE_DOWN ? (int64_t)slot * p.k : 0);
    /* the x row of column n: a token (plain), the token of slot slot0 + n (gate/up), or that slot's row (down) */
    auto xrow = [&](int n) -> int64_t {
        if (NT == 0) return 0;
        return p.mode == MODE_GUB ? min(max(__ldg(p.perm + slot0 + n), 0), p.T - 1) : p.mode == MODE_DNB ? slot0 + n : n;
    };
    const int items = T8 * nu * 32;
    const int total = (items + blockDim.x - 1) / blockDim.x * blockDim.x;
    /* up to 4 items per thread and pass: their 16-byte loads are in flight together */
    for (int i0 = threadIdx.x; i0 < total; i0 += 4 * blockDim.x) {
        uint4 vv[4];
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int i = i0 + r * blockDim.x;
            const int c8 = i & 7, G = (i >> 3) & 3, rest = i >> 5, u = rest % nu, n = rest / nu;
            const int64_t col0 = (int64_t)(u0 + u) * 256 + 64 * G + 8 * c8;
            vv[r] = make_uint4(0, 0, 0, 0);
            if (i < items && n < ntok && col0 < p.k) vv[r] = *(const uint4 *)(xb + xrow(n) * p.k + col0);
        }
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int i = i0 + r * blockDim.x;
            if (i >= total) break; /* uniform across the warp: total is a multiple of the block size */
            const bool live = i < items;
            const int c8 = i & 7, G = (i >> 3) & 3, rest = i >> 5, u = rest % nu, n = rest / nu;
            const uint4 v = vv[r];
            float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
            uint16_t *xd = xs + (int64_t)n * p.xt + u * UXQ;
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const int c = 64 * G + 8 * c8 + e;
                const uint32_t w = word_of(v, e >> 1);
                const uint16_t val = (uint16_t)(e & 1 ? w >> 16 : w & 0xFFFF);
                const uint32_t code = inv[c];
                if (live) xd[code & 0xFFF] = val;
                const float pr = offc[c] * bf16f(val);
                const uint32_t st = code >> 12;
                a0 += st == 0 ? pr : 0.f, a1 += st == 1 ? pr : 0.f, a2 += st == 2 ? pr : 0.f, a3 += st == 3 ? pr : 0.f;
            }
#pragma unroll
            for (int o = 1; o < 8; o <<= 1) {
                a0 += __shfl_xor_sync(FULL, a0, o), a1 += __shfl_xor_sync(FULL, a1, o);
                a2 += __shfl_xor_sync(FULL, a2, o), a3 += __shfl_xor_sync(FULL, a3, o);
            }
            if (live && c8 == 0) {
                if (NT == 0) {
                    float *d = S + (u * 4 + G) * 4;
                    d[0] = -a0, d[1] = -a1, d[2] = -a2, d[3] = -a3;
                } else {
                    S[(u * 4 + G) * T8 + n] = -((a0 + a1) + (a2 + a3));
                }
            }
        }
    }
    if (NT == 0)
        for (int i = threadIdx.x; i < LXQ; i += blockDim.x) xs[p.xt + i] = 0;
}

/* End of a tile at batch 1: every lane holds the tile's sums of rows g and g+8 (all four lanes of a row
 * summed); write them, or add up the splits through the workspace (the last warp to finish a tile, by an
 * atomic counter, sums in split order). */
__device__ __forceinline__ void t_tile_end(const TP &p, int split, int slot, int tile, int g, int t, int lane, float v0,
                                           float v1) {
    if (p.mode == MODE_DOWN) {
        float w = __ldg(p.route_w + slot);
        v0 *= w, v1 *= w;
    }
    if (p.splits == 1) {
        if (t == 0) {
            if (p.mode == MODE_GATEUP) {
                int s = (int)__umulhi((unsigned)tile, p.tpe_inv), ch = (tile - s * p.tpe) * 8 + g;
                if (ch < p.inter) {
                    float hv = v0 / (1.0f + expf(-v0)) * v1;
                    int64_t o = (int64_t)s * p.inter + ch;
                    if (p.out_bf16) ((uint16_t *)p.y)[o] = f2bf16(hv);
                    else ((float *)p.y)[o] = hv;
                }
            } else {
                int row = tile * 16 + g;
                if (row < p.n) {
                    if (p.out_bf16) ((uint16_t *)p.y)[row] = f2bf16(v0);
                    else ((float *)p.y)[row] = v0;
                }
                if (row + 8 < p.n) {
                    if (p.out_bf16) ((uint16_t *)p.y)[row + 8] = f2bf16(v1);
                    else ((float *)p.y)[row + 8] = v1;
                }
            }
        }
        return;
    }
    float *part = p.wsp + ((size_t)split * p.ntile + tile) * 16;
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
        for (int s2 = 0; s2 < p.splits; s2++) v += __ldcg(p.wsp + ((size_t)s2 * p.ntile + tile) * 16 + lane);
    float up = __shfl_down_sync(FULL, v, 8);
    if (p.mode == MODE_GATEUP) {
        int s = (int)__umulhi((unsigned)tile, p.tpe_inv), ch = (tile - s * p.tpe) * 8 + lane;
        if (lane < 8 && ch < p.inter) {
            float hv = v / (1.0f + expf(-v)) * up;
            int64_t o = (int64_t)s * p.inter + ch;
            if (p.out_bf16) ((uint16_t *)p.y)[o] = f2bf16(hv);
            else ((float *)p.y)[o] = hv;
        }
    } else if (lane < 16) {
        int row = tile * 16 + lane;
        if (row < p.n) {
            if (p.out_bf16) ((uint16_t *)p.y)[row] = f2bf16(v);
            else ((float *)p.y)[row] = v;
        }
    }
    if (lane == 0) p.wsc[tile] = 0;
}

/* Blocks of 256 threads per SM the tiled kernel is compiled for (the register cap: 3 -> 85, 2 -> 128).
 * At batch 1, 2 blocks (16 warps) measured faster than 3 (24 warps): at 85 registers the compiler
 * recomputes the decoders' constants in every unit (docs/perf-notes.md, version 9). */
template <int NT>
__host__ __device__ constexpr int t_min_blocks() {
    return NT <= 2 ? 2 : 1;
}

template <class F, int NT>
__global__ void __launch_bounds__(NTHREAD, t_min_blocks<NT>()) qt_kernel(const TP p) {
    extern __shared__ __align__(16) uint8_t smem[];
    constexpr int NS = 3, UB = F::UB, T8 = NT == 0 ? 1 : 8 * NT, NTA = NT == 0 ? 1 : NT;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int split = blockIdx.x % p.splits, bsp = blockIdx.x / p.splits;
    int slot = p.mode == MODE_DOWN ? split / p.kparts : 0; /* routed batches: the block's expert */
    int slot0 = 0, cnt = p.T, nact = 1;
    if (NT > 0 && (p.mode == MODE_GUB || p.mode == MODE_DNB)) {
        find_expert(p.offsets, p.n_experts, p.total, split / p.kparts, slot, slot0, cnt, nact);
        if (slot < 0) return; /* fewer experts were chosen than the grid allows for */
    }
    cnt = min(cnt, T8);
    const int u0 = (split % p.kparts) * p.upp;
    const int nu = min(p.upp, p.units - u0);
    uint8_t *ring = smem + warp * NS * UB;
    uint16_t *xs = (uint16_t *)(smem + NWARP * NS * UB);
    float *S = (float *)(xs + (int64_t)T8 * p.xt + (NT == 0 ? LXQ : 0));
    float *offc = S + nu * 4 * (NT == 0 ? 4 : T8);
    uint16_t *inv = (uint16_t *)(offc + 256);
    slot_tables<F>(inv, offc);

    const int tile0 = bsp * NWARP + warp, tstride = p.bps * NWARP;
    const int nmy = tile0 < p.ntile ? (p.ntile - 1 - tile0) / tstride + 1 : 0;
    const int nit = nmy * nu;
    const Kc kc = make_kc();
    Lc lc;
    F::init_lane(lc, t);

    /* load cursor: NS - 1 units ahead of the decode; each lane copies pieces lane, lane+32, lane+64 */
    int ld_tile = tile0, ld_u = 0;
    int64_t r0 = 0, r1 = 0;
    const uint8_t *lblk = nit ? t_item<F>(p, slot, ld_tile, g, r0, r1) : p.q;
    auto issue_next = [&](int stage) {
        uint8_t *st = ring + stage * UB;
        const uint8_t *src = lblk + (int64_t)(u0 + ld_u) * UB;
#pragma unroll
        for (int i = 0; i < (F::NPIECE + 31) / 32; i++) {
            const int pc = i * 32 + lane;
            if (pc < F::NPIECE) cp16t(st + pc * 16, src + pc * 16);
        }
        if (++ld_u == nu) {
            ld_u = 0;
            ld_tile += tstride;
            if (ld_tile < p.ntile) lblk = t_item<F>(p, slot, ld_tile, g, r0, r1);
        }
    };
    for (int d = 0; d < NS - 1; d++) {
        if (d < nit) issue_next(d);
        cp_commit();
    }

    /* per-row constants of the tile being decoded and of the warp's next tile */
    float rs0 = 0.f, rs1 = 0.f, nrs0 = 0.f, nrs1 = 0.f, ncs0 = 0.f, nzp0 = 0.f, ncs1 = 0.f, nzp1 = 0.f;
    lc.cs0 = lc.zp0 = lc.cs1 = lc.zp1 = 0.f;
    int pr_tile = tile0;
    auto rowc = [&](int tile, float &s0, float &s1, float &c0, float &z0, float &c1, float &z1) {
        int64_t a, b;
        (void)t_item<F>(p, slot, tile, g, a, b);
        s0 = bf16f(__ldg(p.super + a)), s1 = bf16f(__ldg(p.super + b));
        if (F::FMT == QF_CCQ206) {
            c0 = __ldg(p.cs + a), z0 = __ldg(p.zp + a) + 0.5f;
            c1 = __ldg(p.cs + b), z1 = __ldg(p.zp + b) + 0.5f;
        }
    };
    if (nit) {
        rowc(pr_tile, rs0, rs1, lc.cs0, lc.zp0, lc.cs1, lc.zp1);
        if (pr_tile + tstride < p.ntile) rowc(pr_tile + tstride, nrs0, nrs1, ncs0, nzp0, ncs1, nzp1);
    }

    __syncthreads(); /* the slot tables */
    stage_t<F, NT>(p, inv, offc, xs, S, slot, u0, nu, slot0, cnt);
    BEnd be;
    be.mode = p.mode, be.out_bf16 = p.out_bf16, be.n = p.n, be.inter = p.inter, be.ntok = p.T;
    be.ntile = p.ntile, be.splits = p.mode == MODE_PLAIN ? p.splits : p.kparts;
    be.split = p.mode == MODE_PLAIN ? split : split % p.kparts;
    be.e = slot, be.slot0 = slot0, be.cnt = cnt, be.arrivals = nact * p.kparts, be.total = p.total, be.topk = p.topk;
    be.wsp = p.wsp, be.wsc = p.wsc, be.y = p.y, be.rslot = p.rslot, be.route_w = p.route_w;
    const int ntl = (cnt + 7) >> 3; /* column tiles with tokens */
    __syncthreads();

    const uint16_t *xzero = xs + p.xt;
    float acc0 = 0.f, acc1 = 0.f;
    float acc[NTA][4];
#pragma unroll
    for (int nt = 0; nt < NTA; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
    int pr_u = 0, st_cur = 0;
#pragma unroll 1
    for (int it = 0; it < nit; it++) {
        /* 1. this unit's stage, complete for all lanes; then the stage after the last one in flight refilled
         *    (every lane read that stage in the previous iteration, before the __syncwarp) */
        cp_wait<NS - 2>();
        __syncwarp();
        const uint8_t *st = ring + st_cur * UB;
        typename F::Raw raw;
        F::fetch(raw, st, lane, g);
        if (it + NS - 1 < nit) issue_next(st_cur == 0 ? NS - 1 : st_cur - 1);
        cp_commit();
        st_cur = st_cur == NS - 1 ? 0 : st_cur + 1;
        /* 2. decode and multiply */
        if constexpr (NT == 0) {
            const uint16_t *xsu = xs + pr_u * UXQ + t * LXQ;
            const uint16_t *xe = g == t ? xsu : xzero, *xo = g == t + 4 ? xsu : xzero;
#pragma unroll
            for (int pp = 0; pp < 2; pp++) {
                const int G = 2 * pp + (t >> 1);
                const float2 s2 = *(const float2 *)(S + (pr_u * 4 + G) * 4 + (2 * t & 3));
                /* two accumulator sets (even and odd steps): two chains of 4 dependent mma, not one of 8 */
                float c[2][4] = {{s2.x, s2.y, s2.x, s2.y}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
                for (int jj = 0; jj < 8; jj++) {
                    const int s = 8 * pp + jj;
                    uint32_t a[4];
                    F::pairs(raw, 0, s >> 2, s & 3, lc, kc, a[0], a[2]);
                    F::pairs(raw, 1, s >> 2, s & 3, lc, kc, a[1], a[3]);
                    const uint2 b = *(const uint2 *)((jj < 4 ? xe : xo) + 4 * s);
                    mma16816(c[jj & 1], a, b.x, b.y);
                }
                acc0 = fmaf(F::local(raw, 0, G, kc), (c[0][0] + c[1][0]) + (c[0][1] + c[1][1]), acc0);
                acc1 = fmaf(F::local(raw, 1, G, kc), (c[0][2] + c[1][2]) + (c[0][3] + c[1][3]), acc1);
            }
        } else {
            const uint16_t *xb = xs + g * p.xt + pr_u * UXQ + t * LXQ;
#pragma unroll
            for (int G = 0; G < 4; G++) {
                float c[NTA][4];
#pragma unroll
                for (int nt = 0; nt < NTA; nt++) {
                    const float2 s2 = *(const float2 *)(S + (pr_u * 4 + G) * T8 + 8 * nt + 2 * t);
                    c[nt][0] = c[nt][2] = s2.x, c[nt][1] = c[nt][3] = s2.y;
                }
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int s = 4 * G + j;
                    uint32_t a[4];
                    F::pairs(raw, 0, G, j, lc, kc, a[0], a[2]);
                    F::pairs(raw, 1, G, j, lc, kc, a[1], a[3]);
#pragma unroll
                    for (int nt = 0; nt < NTA; nt++)
                        if (nt < ntl) {
                            const uint2 b = *(const uint2 *)(xb + 8 * nt * p.xt + 4 * s);
                            mma16816(c[nt], a, b.x, b.y);
                        }
                }
                const float l0 = F::local(raw, 0, G, kc), l1 = F::local(raw, 1, G, kc);
#pragma unroll
                for (int nt = 0; nt < NTA; nt++) {
                    acc[nt][0] = fmaf(l0, c[nt][0], acc[nt][0]);
                    acc[nt][1] = fmaf(l0, c[nt][1], acc[nt][1]);
                    acc[nt][2] = fmaf(l1, c[nt][2], acc[nt][2]);
                    acc[nt][3] = fmaf(l1, c[nt][3], acc[nt][3]);
                }
            }
        }
        /* 3. end of a tile */
        if (++pr_u == nu) {
            if constexpr (NT == 0) {
                float v0 = acc0, v1 = acc1;
                v0 += __shfl_xor_sync(FULL, v0, 1), v1 += __shfl_xor_sync(FULL, v1, 1);
                v0 += __shfl_xor_sync(FULL, v0, 2), v1 += __shfl_xor_sync(FULL, v1, 2);
                t_tile_end(p, split, slot, pr_tile, g, t, lane, v0 * rs0, v1 * rs1);
                acc0 = acc1 = 0.f;
            } else {
#pragma unroll
                for (int nt = 0; nt < NTA; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) acc[nt][e] *= e >> 1 ? rs1 : rs0;
                bt_end<NTA>(be, pr_tile, g, t, lane, acc);
#pragma unroll
                for (int nt = 0; nt < NTA; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
            }
            pr_u = 0;
            pr_tile += tstride;
            rs0 = nrs0, rs1 = nrs1;
            lc.cs0 = ncs0, lc.zp0 = nzp0, lc.cs1 = ncs1, lc.zp1 = nzp1;
            if (pr_tile + tstride < p.ntile) rowc(pr_tile + tstride, nrs0, nrs1, ncs0, nzp0, ncs1, nzp1);
        }
    }
    cp_wait<0>();
}

/* ---- the tiled layout, made at load time (qmat_tile) ----
 * One thread per (tile, tile row, unit): it reads the row's 4 groups of the unit from the stored arrays
 * and writes them to their places in the block (16-byte stores for the lane words). */
template <int FMT>
__global__ void k_tile(const uint8_t *q, const uint8_t *loc, int64_t n, int64_t k, int64_t ntiles, int layout,
                       int64_t tpe, int64_t units, uint8_t *dst) {
    const int UB = FMT == QF_CCQ275 ? 1408 : FMT == QF_CCQ25 ? 1280 : 1056;
    const int64_t gn = k / 64, total = ntiles * 16 * units;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t u = i % units, rest = i / units, tile = rest / 16;
        const int p = (int)(rest % 16), h = p >> 3, g = p & 7;
        const int64_t e = tile / tpe, j = tile % tpe;
        int64_t r;
        bool valid;
        if (layout == QL_GATE_UP) {
            int64_t inter = n / 2, c = 8 * j + (p & 7);
            valid = c < inter;
            r = c + (p >= 8 ? inter : 0);
        } else {
            r = 16 * j + p;
            valid = r < n;
        }
        const int64_t grow = e * n + r;
        uint8_t *blk = dst + (tile * units + u) * UB;
        uint32_t A[4][4]; /* [t][Gi] */
        uint32_t B[4] = {0, 0, 0, 0}, Sx[4] = {0, 0, 0, 0};
        uint32_t L = 0;
        for (int Gi = 0; Gi < 4; Gi++) {
            const int64_t G = 4 * u + Gi;
            const bool gv = valid && G < gn;
            if (FMT == QF_CCQ275) {
                const uint8_t *s = q + (grow * gn + G) * 22;
                uint8_t b[22];
                for (int i2 = 0; i2 < 22; i2++) b[i2] = gv ? s[i2] : 0;
                for (int t = 0; t < 4; t++) {
                    A[t][Gi] = b[5 * t] | b[5 * t + 1] << 8 | b[5 * t + 2] << 16 | (uint32_t)b[5 * t + 3] << 24;
                    B[t] |= (uint32_t)b[5 * t + 4] << (8 * Gi);
                }
                Sx[Gi >> 1] |= (uint32_t)(b[20] | b[21] << 8) << (16 * (Gi & 1));
            } else if (FMT == QF_CCQ25) {
                const uint16_t *s = (const uint16_t *)q + (grow * gn + G) * 10;
                uint16_t w[10];
                for (int i2 = 0; i2 < 10; i2++) w[i2] = gv ? s[i2] : 0;
                for (int t = 0; t < 4; t++) A[t][Gi] = w[2 * t] | (uint32_t)w[2 * t + 1] << 16;
                Sx[Gi] = w[8] | (uint32_t)w[9] << 16;
            } else {
                const uint8_t *s = q + grow * (k / 4) + G * 16;
                uint4 v = gv ? *(const uint4 *)s : make_uint4(0, 0, 0, 0);
                A[0][Gi] = v.x, A[1][Gi] = v.y, A[2][Gi] = v.z, A[3][Gi] = v.w;
                uint32_t lb = gv ? loc[grow * ((k + 127) / 128) + G / 2] : 0;
                L |= ((G & 1) ? lb & 15 : lb >> 4) << (4 * Gi);
            }
        }
        for (int t = 0; t < 4; t++)
            *(uint4 *)(blk + h * 512 + (4 * g + t) * 16) = make_uint4(A[t][0], A[t][1], A[t][2], A[t][3]);
        if (FMT == QF_CCQ275) {
            for (int t = 0; t < 4; t++) *(uint32_t *)(blk + 1024 + h * 128 + (4 * g + t) * 4) = B[t];
            *(uint2 *)(blk + 1280 + h * 64 + g * 8) = make_uint2(Sx[0], Sx[1]);
        } else if (FMT == QF_CCQ25) {
            *(uint4 *)(blk + 1024 + h * 128 + g * 16) = make_uint4(Sx[0], Sx[1], Sx[2], Sx[3]);
        } else {
            *(uint16_t *)(blk + 1024 + g * 4 + 2 * h) = (uint16_t)L;
        }
    }
}

/* ---- host side ---- */

int ck(err_t *err, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 0;
    return err_set(err, ERR_NODEV, "%s: %s", what, cudaGetErrorString(e));
}

/* ---- host side of the tiled kernels ---- */

struct DevFacts {
    int sms, smem_sm, smem_optin;
};

int dev_facts(DevFacts *d, err_t *err) {
    static DevFacts f = {0, 0, 0};
    if (!f.sms) {
        int dev = 0;
        if (ck(err, cudaGetDevice(&dev), "cudaGetDevice")) return -1;
        if (ck(err, cudaDeviceGetAttribute(&f.sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute") ||
            ck(err, cudaDeviceGetAttribute(&f.smem_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev),
               "cudaDeviceGetAttribute") ||
            ck(err, cudaDeviceGetAttribute(&f.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
               "cudaDeviceGetAttribute"))
            return -1;
    }
    *d = f;
    return 0;
}

struct TInfo {
    const void *kernel;
    int ub, nb_max;
};

template <class F, int NT>
TInfo tinfo_of() {
    return TInfo{(const void *)qt_kernel<F, NT>, F::UB, t_min_blocks<NT>()};
}

template <class F>
TInfo tinfo_nt(int nt) {
    switch (nt) {
    case 0: return tinfo_of<F, 0>();
    case 1: return tinfo_of<F, 1>();
    case 2: return tinfo_of<F, 2>();
    case 4: return tinfo_of<F, 4>();
    default: return tinfo_of<F, 8>();
    }
}

TInfo tiled_info(qfmt f, int nt) {
    if (f == QF_CCQ275) return tinfo_nt<T275>(nt);
    if (f == QF_CCQ25) return tinfo_nt<T25>(nt);
    return tinfo_nt<T206>(nt);
}

size_t t_smem(int ub, int nt, int64_t upp) {
    int64_t T8 = nt ? 8 * nt : 1;
    return (size_t)NWARP * 3 * ub + (size_t)(T8 * xt_of(upp) + (nt ? 0 : LXQ)) * 2 + (size_t)upp * 4 * (nt ? T8 : 4) * 4 +
           256 * 4 + 256 * 2;
}

/* Raises a kernel's dynamic shared-memory limit once. */
int allow_smem(const void *kernel, const DevFacts &d, err_t *err) {
    static const void *done[64];
    static int ndone = 0;
    for (int i = 0; i < ndone; i++)
        if (done[i] == kernel) return 0;
    if (ck(err, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, d.smem_optin),
           "cudaFuncSetAttribute"))
        return -1;
    if (ndone < 64) done[ndone++] = kernel;
    return 0;
}

/* Grid and launch of a tiled product: `fixed` splits (the expert slots of the down projection, else 1)
 * times K parts. K parts come from two needs: the block's x must fit in shared memory (batches), and at
 * batch 1 the per-warp rate, not DRAM, runs out first when there are too few tiles, so K is split when
 * ceil(items / resident warps) * units per item falls by 10% or more. */
int t_launch(qfmt f, int nt, TP &p, int tiles, int fixed, qgemv_ws *ws, cudaStream_t st, err_t *err) {
    if ((uintptr_t)p.x % 16) return err_set(err, ERR_ARG, "qgemv: the activations are not 16-byte aligned");
    TInfo ti = tiled_info(f, nt);
    DevFacts d;
    if (dev_facts(&d, err) || allow_smem(ti.kernel, d, err)) return -1;
    const int T8 = nt ? 8 * nt : 1;
    const int units = p.units;
    const bool have_ws = ws && ws->partial && ws->count;
    int kparts = 0, nb = 0;
    double best = 0;
    for (int kp = 1; kp <= 64 && kp <= units; kp++) {
        int upp = (units + kp - 1) / kp, kpe = (units + upp - 1) / upp;
        if (kpe != kp) continue;
        size_t smem = t_smem(ti.ub, nt, upp);
        if (smem > (size_t)d.smem_optin) continue;
        int b = d.smem_sm / (int)(smem + 1024);
        if (b > ti.nb_max) b = ti.nb_max;
        if (b < 1) continue;
        int splits = fixed * kpe;
        if (splits > 1 && (!have_ws || (size_t)splits * tiles * 16 * T8 > ws->partial_floats ||
                           (size_t)tiles > ws->count_ints || splits > 64))
            continue;
        /* A warp's time is its items times (units per item + about one unit of fixed cost: the pipeline
         * start, the row data, the end of the tile); with batches every K part also adds T8 * 16 partial
         * sums per tile to the workspace, summed by one warp. */
        int64_t W = (int64_t)d.sms * b * NWARP;
        double cost = (double)(((int64_t)tiles * splits + W - 1) / W) * (upp + 1) + (splits > 1 && nt ? splits * T8 / 64.0 : 0);
        if (!kparts || cost < 0.9 * best) best = cost, kparts = kpe, nb = b;
    }
    if (!kparts) {
        if (!have_ws && (fixed > 1 || nt))
            return err_set(err, ERR_ARG, "qgemv: this product needs a workspace (qgemv_ws_alloc)");
        return err_set(err, ERR_ARG, "qgemv: no split of this product fits (shared memory or workspace too small)");
    }
    int upp = (units + kparts - 1) / kparts;
    size_t smem = t_smem(ti.ub, nt, upp);
    int splits = fixed * kparts;
    int64_t W = (int64_t)d.sms * nb * NWARP;
    int64_t items = (int64_t)tiles * splits;
    int64_t warps = items < W ? items : W;
    int64_t wps = (warps + splits - 1) / splits;
    if (wps > tiles) wps = tiles;
    int bps = (int)((wps + NWARP - 1) / NWARP);
    int64_t bslots = (int64_t)d.sms * nb;
    if ((int64_t)bps * splits > bslots && bslots >= splits) bps = (int)(bslots / splits);
    if (bps < 1) bps = 1;
    if (splits > 1) p.wsp = ws->partial, p.wsc = ws->count;
    p.upp = upp;
    p.kparts = kparts;
    p.xt = (int)xt_of(upp);
    p.ntile = tiles;
    p.splits = splits;
    p.bps = bps;
    void *args[] = {&p};
    if (ck(err, cudaLaunchKernel(ti.kernel, dim3((unsigned)(splits * bps)), dim3(NTHREAD), args, smem, st),
           "qgemv kernel launch"))
        return -1;
    return ck(err, cudaGetLastError(), "qgemv kernel launch");
}

TP t_params(const qmat_dev *m) {
    TP p;
    memset(&p, 0, sizeof p);
    p.q = (const uint8_t *)m->q;
    p.cs = m->code_scale;
    p.zp = m->code_zp;
    p.super = m->super;
    p.n = (int)m->n;
    p.k = (int)m->k;
    p.n_experts = m->n_experts;
    p.units = (int)ql_units(m->k);
    p.tpe = (int)ql_tiles_per_expert(m->n, m->layout);
    p.tpe_inv = (unsigned)((((uint64_t)1 << 32) + p.tpe - 1) / p.tpe);
    p.T = 1;
    return p;
}

bool is_tiled(qfmt f) { return f == QF_CCQ275 || f == QF_CCQ25 || f == QF_CCQ206; }

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
    default: return FmtInfo{0, 0, 0, false, NULL};
    }
}


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
    case QF_CCQ206: ok = ok && m->code_scale && m->code_zp && m->super; break;
    case QF_CCQ275:
    case QF_CCQ25: ok = ok && m->super; break;
    default: break;
    }
    if (!ok) return err_set(err, ERR_ARG, "qgemv: %s weight is missing a part", qfmt_name(m->fmt));
    if (is_tiled(m->fmt) != (m->layout == QL_ROWS || m->layout == QL_GATE_UP))
        return err_set(err, ERR_ARG, "qgemv: %s weight %s", qfmt_name(m->fmt),
                       is_tiled(m->fmt) ? "is not in the tiled layout (qmat_tile)" : "has a tiled layout it cannot have");
    return 0;
}

KParams base_params(const qmat_dev *m) {
    KParams p;
    memset(&p, 0, sizeof p);
    p.q = (const uint8_t *)m->q;
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


/* ---- batches: planning and launch ---- */

int nt_of(int T) { return T <= 8 ? 1 : T <= 16 ? 2 : T <= 32 ? 4 : 8; }

struct BPlan {
    int kparts, upp, nb, bps, splits;
    size_t smem;
};

/* Partial floats and counters a batched product needs in the workspace with kp K parts. */
struct WsNeed {
    int mode; /* MODE_PLAIN, MODE_GUB, MODE_DNB */
    int64_t tiles, T8, total, n_experts;
    void operator()(int kp, size_t &nf, size_t &ni) const {
        nf = ni = 0;
        if (mode == MODE_PLAIN && kp > 1) nf = (size_t)kp * tiles * 16 * T8, ni = (size_t)tiles;
        if (mode == MODE_GUB && kp > 1) nf = (size_t)kp * total * tiles * 16, ni = (size_t)(n_experts * tiles);
        if (mode == MODE_DNB) nf = (size_t)kp * total * tiles * 16, ni = (size_t)tiles;
    }
};

/* The K split and grid of a batched product: `fixed` splits (the expert positions of the routed products,
 * else 1) times K parts. The block's x of T8 tokens must fit in shared memory, so K is split into the
 * fewest parts that fit, and into more when that lowers a warp's time: ceil(items / resident warps) x
 * (units per item + one unit of fixed cost), plus a cost per K part for the workspace sums. */
template <class SmemFn>
int plan_batch(int units, int tiles, int fixed, int T8, int nb_max, SmemFn smem_of, const WsNeed &need, qgemv_ws *ws,
               BPlan &pl, err_t *err) {
    DevFacts d;
    if (dev_facts(&d, err)) return -1;
    const bool have_ws = ws && ws->partial && ws->count;
    int kparts = 0, ws_short = 0;
    double best = 0;
    for (int kp = 1; kp <= 64 && kp <= units; kp++) {
        int upp = (units + kp - 1) / kp, kpe = (units + upp - 1) / upp;
        if (kpe != kp) continue;
        size_t smem = smem_of(upp);
        if (smem > (size_t)d.smem_optin) continue;
        int b = d.smem_sm / (int)(smem + 1024);
        if (b > nb_max) b = nb_max;
        if (b < 1) continue;
        size_t nf = 0, ni = 0;
        need(kpe, nf, ni);
        if ((nf || ni) && (!have_ws || nf > ws->partial_floats || ni > ws->count_ints)) {
            ws_short = 1;
            continue;
        }
        int64_t W = (int64_t)d.sms * b * NWARP;
        double cost = (double)(((int64_t)tiles * fixed * kpe + W - 1) / W) * (upp + 1) + (kpe > 1 ? kpe * T8 / 64.0 : 0);
        if (!kparts || cost < 0.9 * best) best = cost, kparts = kpe, pl.nb = b;
    }
    if (!kparts) {
        if (ws_short && !have_ws) return err_set(err, ERR_ARG, "qgemv: this batch needs a workspace (qgemv_ws_alloc)");
        if (ws_short) return err_set(err, ERR_ARG, "qgemv: workspace too small for this batch (qgemv_ws_alloc)");
        return err_set(err, ERR_ARG, "qgemv: no K split of this batch fits in shared memory");
    }
    pl.kparts = kparts;
    pl.upp = (units + kparts - 1) / kparts;
    pl.smem = smem_of(pl.upp);
    pl.splits = fixed * kparts;
    int64_t W = (int64_t)d.sms * pl.nb * NWARP;
    int64_t items = (int64_t)tiles * pl.splits;
    int64_t warps = items < W ? items : W;
    int64_t wps = (warps + pl.splits - 1) / pl.splits;
    if (wps > tiles) wps = tiles;
    int bps = (int)((wps + NWARP - 1) / NWARP);
    int64_t bslots = (int64_t)d.sms * pl.nb;
    if ((int64_t)bps * pl.splits > bslots && bslots >= pl.splits) bps = (int)(bslots / pl.splits);
    pl.bps = bps < 1 ? 1 : bps;
    return 0;
}

template <class F>
size_t qb_smem_f(int T8, int64_t upp) {
    return (size_t)NWARP * NST<F>() * STAGE_WORDS<F>() * 4 + (size_t)T8 * xt_r<F>(4 * upp) * 2 + (size_t)T8 * 4;
}

template <class F>
const void *qb_kernel_nt(int nt) {
    switch (nt) {
    case 1: return (const void *)qb_kernel<F, 1>;
    case 2: return (const void *)qb_kernel<F, 2>;
    case 4: return (const void *)qb_kernel<F, 4>;
    default: return (const void *)qb_kernel<F, 8>;
    }
}

/* A row-major batch (bf16, wint8, wint4): p holds the weight, mode, x, y and routing; tiles per split. */
int qb_launch(qfmt f, int nt, KParams &p, int tiles, int fixed, qgemv_ws *ws, cudaStream_t st, err_t *err) {
    const int T8 = 8 * nt;
    const void *kernel = f == QF_BF16 ? qb_kernel_nt<FBf16>(nt) : f == QF_WINT8 ? qb_kernel_nt<FWint8>(nt) : qb_kernel_nt<FWint4>(nt);
    auto smem_of = [&](int64_t upp) -> size_t {
        return f == QF_BF16 ? qb_smem_f<FBf16>(T8, upp) : f == QF_WINT8 ? qb_smem_f<FWint8>(T8, upp) : qb_smem_f<FWint4>(T8, upp);
    };
    DevFacts d;
    if (dev_facts(&d, err) || allow_smem(kernel, d, err)) return -1;
    WsNeed need = {p.mode, tiles, T8, p.total, p.n_experts};
    BPlan pl = {0, 0, 0, 0, 0, 0};
    const int units = (p.nchunk + 3) / 4;
    if (plan_batch(units, tiles, fixed, T8, nt <= 2 ? 2 : 1, smem_of, need, ws, pl, err)) return -1;
    p.kparts = pl.kparts;
    p.cpp = pl.upp * 4;
    p.xt = (int)(f == QF_BF16 ? xt_r<FBf16>(p.cpp) : f == QF_WINT8 ? xt_r<FWint8>(p.cpp) : xt_r<FWint4>(p.cpp));
    p.T = tiles;
    p.splits = pl.splits;
    p.bps = pl.bps;
    if (ws) p.wsp = ws->partial, p.wsc = ws->count;
    void *args[] = {&p};
    if (ck(err, cudaLaunchKernel(kernel, dim3((unsigned)(pl.splits * pl.bps)), dim3(NTHREAD), args, pl.smem, st),
           "qgemv batch kernel launch"))
        return -1;
    return ck(err, cudaGetLastError(), "qgemv batch kernel launch");
}

/* A routed batch of the tiled formats (MODE_GUB / MODE_DNB): p holds the weight, x, y and routing. */
int t_launch_routed(qfmt f, int nt, TP &p, int tiles, int fixed, qgemv_ws *ws, cudaStream_t st, err_t *err) {
    if ((uintptr_t)p.x % 16) return err_set(err, ERR_ARG, "qgemv: the activations are not 16-byte aligned");
    const int T8 = 8 * nt;
    TInfo ti = tiled_info(f, nt);
    DevFacts d;
    if (dev_facts(&d, err) || allow_smem(ti.kernel, d, err)) return -1;
    WsNeed need = {p.mode, tiles, T8, p.total, p.n_experts};
    BPlan pl = {0, 0, 0, 0, 0, 0};
    auto smem_of = [&](int64_t upp) -> size_t { return t_smem(ti.ub, nt, upp); };
    if (plan_batch(p.units, tiles, fixed, T8, ti.nb_max, smem_of, need, ws, pl, err)) return -1;
    p.upp = pl.upp;
    p.kparts = pl.kparts;
    p.xt = (int)xt_of(pl.upp);
    p.ntile = tiles;
    p.splits = pl.splits;
    p.bps = pl.bps;
    if (ws) p.wsp = ws->partial, p.wsc = ws->count;
    void *args[] = {&p};
    if (ck(err, cudaLaunchKernel(ti.kernel, dim3((unsigned)(pl.splits * pl.bps)), dim3(NTHREAD), args, pl.smem, st),
           "qgemv batch kernel launch"))
        return -1;
    return ck(err, cudaGetLastError(), "qgemv batch kernel launch");
}

/* Routing from the router's choices (qmoe_route_build): one block. A thread per expert walks the slots
 * in (token, choice) order, so slots of an expert are in token order and the result is deterministic. */
__global__ void k_route(const int32_t *ids, int total, int topk, int n_experts, int32_t *offsets, int32_t *perm,
                        int32_t *slot) {
    extern __shared__ int32_t rsh[];
    int32_t *sid = rsh, *base = rsh + total;
    for (int i = threadIdx.x; i < total; i += blockDim.x) sid[i] = min(max(ids[i], 0), n_experts - 1);
    __syncthreads();
    for (int e = threadIdx.x; e < n_experts; e += blockDim.x) {
        int c = 0;
        for (int i = 0; i < total; i++) c += sid[i] == e;
        base[e] = c;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int run = 0;
        for (int e = 0; e < n_experts; e++) {
            int c = base[e];
            offsets[e] = base[e] = run;
            run += c;
        }
        offsets[n_experts] = run;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < n_experts; e += blockDim.x) {
        int pos = base[e];
        for (int i = 0; i < total; i++)
            if (sid[i] == e) perm[pos] = i / topk, slot[i] = pos, pos++;
    }
}

int check_route(const qmat_dev *m, const qmoe_route *r, err_t *err) {
    if (!r || r->T < 1 || r->T > QGEMV_MAX_T || r->topk < 1 || r->topk > 64 || !r->offsets || !r->perm || !r->slot)
        return err_set(err, ERR_ARG, "qmoe batch: bad routing (T %d, topk %d)", r ? r->T : 0, r ? r->topk : 0);
    if (m->n_experts > 4096) return err_set(err, ERR_ARG, "qmoe batch: %d experts (at most 4096)", m->n_experts);
    return 0;
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

extern "C" size_t qmat_tile_bytes(qfmt f, int n_experts, int64_t n, int64_t k, int layout) {
    if (!is_tiled(f) || n_experts < 1 || n < 1 || k < 64 || (layout != QL_ROWS && layout != QL_GATE_UP)) return 0;
    return (size_t)(n_experts * ql_tiles_per_expert(n, layout) * ql_units(k) * ql_unit_bytes(f));
}

extern "C" int qmat_tile(qmat_dev *m, int layout, void *dst, void *stream, err_t *err) {
    if (!m || !is_tiled(m->fmt)) return err_set(err, ERR_ARG, "qmat_tile: %s has no tiled layout", m ? qfmt_name(m->fmt) : "?");
    if (layout != QL_ROWS && layout != QL_GATE_UP) return err_set(err, ERR_ARG, "qmat_tile: bad layout %d", layout);
    if (m->layout != QL_STORED) return err_set(err, ERR_ARG, "qmat_tile: the weight is already tiled");
    if (m->k <= 0 || m->k % 64 || m->n <= 0 || m->n_experts <= 0 || (layout == QL_GATE_UP && m->n % 2))
        return err_set(err, ERR_ARG, "qmat_tile: bad shape %d x %lld x %lld", m->n_experts, (long long)m->n, (long long)m->k);
    if (!m->q || (m->fmt == QF_CCQ206 && !m->local)) return err_set(err, ERR_ARG, "qmat_tile: missing part");
    if ((uintptr_t)dst % 16) return err_set(err, ERR_ARG, "qmat_tile: destination not 16-byte aligned");
    int64_t tpe = ql_tiles_per_expert(m->n, layout), units = ql_units(m->k), ntiles = m->n_experts * tpe;
    int64_t work = ntiles * 16 * units;
    int blocks = (int)((work + 255) / 256 > 65535 ? 65535 : (work + 255) / 256);
    cudaStream_t st = (cudaStream_t)stream;
    const uint8_t *q = (const uint8_t *)m->q;
    if (m->fmt == QF_CCQ275)
        k_tile<QF_CCQ275><<<blocks, 256, 0, st>>>(q, NULL, m->n, m->k, ntiles, layout, tpe, units, (uint8_t *)dst);
    else if (m->fmt == QF_CCQ25)
        k_tile<QF_CCQ25><<<blocks, 256, 0, st>>>(q, NULL, m->n, m->k, ntiles, layout, tpe, units, (uint8_t *)dst);
    else
        k_tile<QF_CCQ206><<<blocks, 256, 0, st>>>(q, m->local, m->n, m->k, ntiles, layout, tpe, units, (uint8_t *)dst);
    if (ck(err, cudaGetLastError(), "qmat_tile kernel launch")) return -1;
    m->q = dst;
    m->local = NULL;
    m->tail = m->tail2 = NULL;
    m->layout = layout;
    return 0;
}

extern "C" int qgemv_batch(const qmat_dev *m, int T, const uint16_t *x, void *y, qout yt, qgemv_ws *ws, void *stream,
                           err_t *err) {
    if (check_mat(m, err)) return -1;
    if (m->n_experts != 1) return err_set(err, ERR_ARG, "qgemv: a stacked weight needs qmoe_gate_up or qmoe_down");
    if (!x || !y) return err_set(err, ERR_ARG, "qgemv: NULL x or y");
    if (T < 1 || T > QGEMV_MAX_T) return err_set(err, ERR_ARG, "qgemv: %d tokens (1..%d)", T, QGEMV_MAX_T);
    if (is_tiled(m->fmt) && m->layout != QL_ROWS) return err_set(err, ERR_ARG, "qgemv: a gate/up tiling needs qmoe_gate_up");
    int tiles = (int)((m->n + 15) / 16);
    if (is_tiled(m->fmt)) {
        TP p = t_params(m);
        p.mode = MODE_PLAIN;
        p.out_bf16 = yt == QOUT_BF16;
        p.x = x;
        p.y = y;
        p.T = T;
        int nt = T == 1 ? 0 : T <= 8 ? 1 : T <= 16 ? 2 : T <= 32 ? 4 : 8;
        return t_launch(m->fmt, nt, p, tiles, 1, ws, (cudaStream_t)stream, err);
    }
    if (T != 1) {
        KParams p = base_params(m);
        p.mode = MODE_PLAIN;
        p.out_bf16 = yt == QOUT_BF16;
        p.x = x;
        p.y = y;
        p.ntok = T;
        return qb_launch(m->fmt, nt_of(T), p, tiles, 1, ws, (cudaStream_t)stream, err);
    }
    KParams p = base_params(m);
    p.mode = MODE_PLAIN;
    p.out_bf16 = yt == QOUT_BF16;
    p.x = x;
    p.y = y;
    return plan_and_launch(m->fmt, p, tiles, 1, true, ws, (cudaStream_t)stream, err);
}

extern "C" int qgemv(const qmat_dev *m, const uint16_t *x, void *y, qout yt, qgemv_ws *ws, void *stream, err_t *err) {
    return qgemv_batch(m, 1, x, y, yt, ws, stream, err);
}

extern "C" int qmoe_gate_up(const qmat_dev *m, const int32_t *ids, int topk, const uint16_t *x, void *h, qout ht,
                            qgemv_ws *ws, void *stream, err_t *err) {
    if (check_mat(m, err)) return -1;
    if (m->n % 2) return err_set(err, ERR_ARG, "qmoe_gate_up: %lld rows per expert is not gate + up", (long long)m->n);
    if (topk < 1 || topk > 64 || !ids || !x || !h) return err_set(err, ERR_ARG, "qmoe_gate_up: bad arguments (topk %d)", topk);
    if (is_tiled(m->fmt)) {
        if (m->layout != QL_GATE_UP) return err_set(err, ERR_ARG, "qmoe_gate_up: the weight needs the gate/up tiling");
        TP p = t_params(m);
        p.mode = MODE_GATEUP;
        p.inter = (int)(m->n / 2);
        p.out_bf16 = ht == QOUT_BF16;
        p.x = x;
        p.y = h;
        p.ids = ids;
        return t_launch(m->fmt, 0, p, topk * p.tpe, 1, ws, (cudaStream_t)stream, err);
    }
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
    int tiles = (int)((m->n + 15) / 16);
    if (is_tiled(m->fmt)) {
        if (m->layout != QL_ROWS) return err_set(err, ERR_ARG, "qmoe_down: the weight needs the row tiling");
        TP p = t_params(m);
        p.mode = MODE_DOWN;
        p.out_bf16 = yt == QOUT_BF16;
        p.x = h;
        p.y = y;
        p.ids = ids;
        p.route_w = route_w;
        return t_launch(m->fmt, 0, p, tiles, topk, ws, (cudaStream_t)stream, err);
    }
    KParams p = base_params(m);
    p.mode = MODE_DOWN;
    p.out_bf16 = yt == QOUT_BF16;
    p.x = h;
    p.y = y;
    p.ids = ids;
    p.route_w = route_w;
    return plan_and_launch(m->fmt, p, tiles, topk, true, ws, (cudaStream_t)stream, err);
}

/* ---- several tokens routed to experts ---- */

extern "C" int qmoe_route_build(const int32_t *ids, int T, int topk, int n_experts, int32_t *offsets, int32_t *perm,
                                int32_t *slot, qmoe_route *r, void *stream, err_t *err) {
    if (!ids || !offsets || !perm || !slot || !r || T < 1 || T > QGEMV_MAX_T || topk < 1 || topk > 64 || n_experts < 1 ||
        n_experts > 4096)
        return err_set(err, ERR_ARG, "qmoe_route_build: bad arguments (T %d, topk %d, %d experts)", T, topk, n_experts);
    const int total = T * topk;
    k_route<<<1, 256, (size_t)(total + n_experts) * 4, (cudaStream_t)stream>>>(ids, total, topk, n_experts, offsets, perm,
                                                                                 slot);
    if (ck(err, cudaGetLastError(), "qmoe_route_build kernel launch")) return -1;
    r->T = T, r->topk = topk, r->offsets = offsets, r->perm = perm, r->slot = slot;
    return 0;
}

extern "C" int qmoe_gate_up_batch(const qmat_dev *m, const qmoe_route *r, const uint16_t *x, void *h, qout ht,
                                  qgemv_ws *ws, void *stream, err_t *err) {
    if (check_mat(m, err) || check_route(m, r, err)) return -1;
    if (m->n % 2) return err_set(err, ERR_ARG, "qmoe_gate_up_batch: %lld rows per expert is not gate + up", (long long)m->n);
    if (!x || !h) return err_set(err, ERR_ARG, "qmoe_gate_up_batch: NULL x or h");
    const int total = r->T * r->topk, A = total < m->n_experts ? total : m->n_experts, nt = nt_of(r->T);
    if (is_tiled(m->fmt)) {
        if (m->layout != QL_GATE_UP) return err_set(err, ERR_ARG, "qmoe_gate_up_batch: the weight needs the gate/up tiling");
        TP p = t_params(m);
        p.mode = MODE_GUB;
        p.inter = (int)(m->n / 2);
        p.out_bf16 = ht == QOUT_BF16;
        p.x = x, p.y = h, p.T = r->T;
        p.offsets = r->offsets, p.perm = r->perm, p.rslot = r->slot, p.topk = r->topk, p.total = total;
        return t_launch_routed(m->fmt, nt, p, p.tpe, A, ws, (cudaStream_t)stream, err);
    }
    KParams p = base_params(m);
    p.mode = MODE_GUB;
    p.inter = (int)(m->n / 2);
    p.out_bf16 = ht == QOUT_BF16;
    p.x = x, p.y = h, p.ntok = r->T;
    p.offsets = r->offsets, p.perm = r->perm, p.rslot = r->slot, p.topk = r->topk, p.total = total;
    return qb_launch(m->fmt, nt, p, (p.inter + 7) / 8, A, ws, (cudaStream_t)stream, err);
}

extern "C" int qmoe_down_batch(const qmat_dev *m, const qmoe_route *r, const float *route_w, const uint16_t *h, void *y,
                               qout yt, qgemv_ws *ws, void *stream, err_t *err) {
    if (check_mat(m, err) || check_route(m, r, err)) return -1;
    if (!route_w || !h || !y) return err_set(err, ERR_ARG, "qmoe_down_batch: NULL route_w, h or y");
    const int total = r->T * r->topk, A = total < m->n_experts ? total : m->n_experts, nt = nt_of(r->T);
    const int tiles = (int)((m->n + 15) / 16);
    if (is_tiled(m->fmt)) {
        if (m->layout != QL_ROWS) return err_set(err, ERR_ARG, "qmoe_down_batch: the weight needs the row tiling");
        TP p = t_params(m);
        p.mode = MODE_DNB;
        p.out_bf16 = yt == QOUT_BF16;
        p.x = h, p.y = y, p.T = r->T, p.route_w = route_w;
        p.offsets = r->offsets, p.perm = r->perm, p.rslot = r->slot, p.topk = r->topk, p.total = total;
        return t_launch_routed(m->fmt, nt, p, tiles, A, ws, (cudaStream_t)stream, err);
    }
    KParams p = base_params(m);
    p.mode = MODE_DNB;
    p.out_bf16 = yt == QOUT_BF16;
    p.x = h, p.y = y, p.ntok = r->T, p.route_w = route_w;
    p.offsets = r->offsets, p.perm = r->perm, p.rslot = r->slot, p.topk = r->topk, p.total = total;
    return qb_launch(m->fmt, nt, p, tiles, A, ws, (cudaStream_t)stream, err);
}
