// Paged attention for prefill rows on tensor cores (NVIDIA sm_80+): the general kernel's work
// (attention.hip; semantics: the CPU reference, src/cpu/attention.rs) for f16/bf16 queries
// over a cache of the same dtype or (sm_89+) of e4m3fn / e5m2 codes, and head sizes 64, 80, 96,
// 112, 128, 192 and 256 (one instance per head size and cache kind: compile-time offsets and
// unrolled loops throughout). The
// planner (src/core/plan.rs, GeneralKernel::TensorCores) sends nothing else here; AMD builds
// and every other case keep the general kernel.
//
// Why: a prefill chunk does ~1300 FLOPs per cached byte (every query token of a chunk meets
// every key), so it is bound by arithmetic, not memory. The general kernel stages f32 tiles and
// multiplies on the FMA pipes (10 TFLOP/s on an H200); here both products run on mma.sync
// m16n8k16 with f32 accumulation.
//
// Grid and rows as in the general kernel: x = q-block (an upper bound from shapes), y = kv head
// x head group, z = KV split. A work-group serves PfShape::ROWS rows (block_q tokens x
// heads_per_cta query heads of one kv head: one staging of each K/V tile serves every head of
// the group); each of its four warps owns one or two 16-row m-tiles (the m of the products)
// with its own online softmax.
//
// Per tile of PfShape::TILE keys at absolute positions (any block size: each key finds its block):
//  - the next tile's keys and values are copied into the other shared-memory stage by
//    cp.async while this one is computed (16-byte copies where the layout keeps 8 elements
//    contiguous and aligned, element loads otherwise); fp8 codes are loaded, widened to 16 bits
//    in hardware and stored instead;
//  - S = Q K^T, one m-tile at a time: query and key fragments by ldmatrix;
//  - masks (causal, sliding window), soft-cap and ALiBi on the score fragments; online softmax
//    in base 2 (ex2), each row spread over a quad of lanes;
//  - O += P V: the probabilities, rounded to 16-bit pairs (as every flash-attention kernel
//    does: relative error <= 2^-9 per probability for bf16), are the A operand as they lie in
//    the score fragments; value fragments by ldmatrix (.trans where the cache keeps dims
//    adjacent), each serving both of the warp's m-tiles. fp8 outputs, where one rounding
//    decision must not move more than a code, keep the general kernel's f32 products.
// Only positions inside the work-group's visible range [lo, hi] (hi < seq_len) are read:
// unwritten (NaN-poisoned) slots and block-table columns past a sequence's last block are
// never touched; other positions stage as zeros.

#include "cache_io.h"
#include "mma_sm80.h"
#include "pkv_common.h"
#include "prefill.h"
#include "q_blocks.h"

#if defined(PKV_CUDA)
#include <cuda_bf16.h>
#include <cuda_fp8.h>

namespace pkv {
namespace {

constexpr int PF_THREADS = 128;  // four warps
constexpr int PF_WARPS = PF_THREADS / 32;
constexpr int PF_PAD = 8;               // elements after each staged row: ldmatrix rows on distinct banks
constexpr int PF_MIN_BLOCKS = 2;        // resident work-groups per SM (shared memory allows two)
constexpr int PF_INFO_WORDS = 16;
constexpr float PF_LN_2 = 0.6931471805599453f;

// The work-group's shape per head size (src/core/plan.rs prefill_mma_shape): up to 128 dims,
// each warp owns two 16-row m-tiles (each value fragment then serves both) and tiles are 64
// keys; above, the output accumulators of two m-tiles would not fit the registers, so one
// m-tile per warp and 32-key tiles (two work-groups per SM still fit the shared memory).
template <int kD>
struct PfShape {
    static const int MT = kD > 128 ? 1 : 2;          // m-tiles (the m of m16n8k16) per warp
    static const int TILE = kD > 128 ? 32 : 64;      // keys per tile
    static const int WARP_ROWS = 16 * MT;
    static const int ROWS = WARP_ROWS * PF_WARPS;    // rows per work-group
    static const int NB = TILE / 8;                   // 8-key n-blocks of the scores
    static const int CSTEP = PF_THREADS / TILE;       // threads per key: its chunks c0, c0 + CSTEP, ...
    static_assert(CSTEP == 2 || CSTEP == 4, "chunks_linear's step");
    static const int GROUPS = TILE / 8;               // 8-slot groups of a transposed value row
    static const int GROUP_SHIFT = GROUPS == 8 ? 3 : 2;  // log2(GROUPS)
    static_assert(GROUPS == 1 << GROUP_SHIFT, "GROUP_SHIFT");
    static const int DSTEP = PF_THREADS / GROUPS;     // dims between a thread's value chunks
};

#define NEG_INF __uint_as_float(0xff800000u)

// Dynamic shared memory, by region (src/core/plan.rs prefill_mma_shared_mem_bytes adds the same).
// Two stages of one K tile [TILE][kD + PF_PAD] and one V tile, [TILE][kD + PF_PAD] when the
// cache keeps dims adjacent or transposed [kD][TILE + PF_PAD] when it keeps slots adjacent
// (the split value layout); the stages hold the f32 output rows at the end.
template <int kD>
struct PfSmem {
    typedef PfShape<kD> S;
    static const int PF_ROWS = S::ROWS;
    static const int PF_TILE = S::TILE;
    static const int LD = kD + PF_PAD;       // staged row of a key, value or query (elements)
    static const int LDT = PF_TILE + PF_PAD;  // staged row of a transposed value tile
    // CTA words and per warp its rows' visible-range bounds; per row its running max and sum
    // (the final ones at the end), visible range [lo, hi], position and slope.
    static const int INFO_BYTES = PF_INFO_WORDS * 4 + 4 * PF_WARPS * 4 + 6 * PF_ROWS * 4;
    static const int Q_BYTES = PF_ROWS * LD * 2;
    static const int K_BYTES = PF_TILE * LD * 2;
    static const int V_BYTES = (PF_TILE * LD > kD * LDT ? PF_TILE * LD : kD * LDT) * 2;
    static const int STAGE_BYTES = K_BYTES + V_BYTES;
    static const int Q_AT = INFO_BYTES;
    static const int STAGES_AT = Q_AT + Q_BYTES;
    static const int TOTAL = STAGES_AT + 2 * STAGE_BYTES;
    static_assert(PF_ROWS * LD * 4 <= 2 * STAGE_BYTES, "the f32 output rows fit the stages");
    static_assert(Q_AT % 16 == 0 && K_BYTES % 16 == 0 && STAGE_BYTES % 16 == 0, "16-byte aligned regions");
};

PKV_DEVICE uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// Four 8x8 16-bit matrices from shared memory (`addr`: a shared-window address; lanes 8i..8i+7
// give the rows of matrix i), as mma fragments; .trans transposes each matrix.
PKV_DEVICE void ldsm_x4(uint32_t* r, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

PKV_DEVICE void ldsm_x4_trans(uint32_t* r, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// d += a . b (mma_sm80.h) with A as four pairs, and the 16-bit pair packing, per query dtype.
template <int kOp>
struct PfOps {
    static PKV_DEVICE void mma(float* d, const uint32_t* a, uint32_t b0, uint32_t b1) {
        Mma<kOp>::run(d, a[0], a[1], a[2], a[3], b0, b1);
    }
    // (x, y) rounded to the nearest 16-bit pair.
    static PKV_DEVICE uint32_t pack(float x, float y);
};
template <>
PKV_DEVICE uint32_t PfOps<PKV_DT_BF16>::pack(float x, float y) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    return *reinterpret_cast<const uint32_t*>(&h);
}
template <>
PKV_DEVICE uint32_t PfOps<PKV_DT_F16>::pack(float x, float y) {
    const __half2 h = __floats2half2_rn(x, y);
    return *reinterpret_cast<const uint32_t*>(&h);
}

// Where this thread's keys of tile `t0` (keys t0 .. t0 + TILE - 1) live: thread `tid` takes key
// tid % TILE (its key chunks, and its value chunks where the cache keeps dims adjacent) and,
// where it keeps slots adjacent, the 8-key group tid % GROUPS (its value chunks). Their
// block-table entries are read a tile before the copies are issued, so that the reads' round
// trip overlaps a tile's products instead of preceding its copies; only the two raw entries
// are held across it (registers are the kernel's limit), the rest is recomputed at issue.
struct TileBlocks {
    int key;    // the key's table entry (unread: 0)
    int value;  // the value's: the key's (dims adjacent) or its group's first slot's
};

// Table entry of position j of sequence `seq` (j below the sequence's length: its column exists).
PKV_DEVICE int table_entry(const pkv_attention_params& p, int seq, int j) {
    return p.block_table[static_cast<int64_t>(seq) * p.block_table_strides[0] +
                         static_cast<int64_t>(j / p.block_size) * p.block_table_strides[1]];
}

template <int kD>
PKV_DEVICE TileBlocks locate_tile(const pkv_attention_params& p, int seq, int t0, int lo, int hi, int tid) {
    typedef PfShape<kD> S;
    TileBlocks b;
    const int j = t0 + (tid & (S::TILE - 1));
    b.key = j >= lo && j <= hi ? table_entry(p, seq, j) : 0;
    if (p.value_mode != PKV_V_ALONG_TOKENS) {
        b.value = b.key;
    } else {
        const int j0 = t0 + (tid & (S::GROUPS - 1)) * 8;
        b.value = j0 >= lo && j0 + 7 <= hi ? table_entry(p, seq, j0) : 0;
    }
    return b;
}

// Cache offset (elements) of position j in table entry `entry`: the block clamped into the
// cache (never out of bounds), then the slot in the block.
PKV_DEVICE int64_t entry_offset(const pkv_attention_params& p, const pkv_cache_addr& a, int entry, int j) {
    const int64_t b = entry < 0 ? 0 : (entry >= p.num_blocks ? p.num_blocks - 1 : entry);
    return b * a.blk + static_cast<int64_t>(j % p.block_size) * a.tok;
}

// Whether the dims of a cached token sit at offsets linear in the step between a thread's chunks
// (8 * CSTEP dims: x-groups that divide it, or one x-group spanning the head), so that chunk i
// is one fixed stride from chunk 0.
template <int kD>
PKV_DEVICE bool chunks_linear(const pkv_cache_addr& a) {
    const int step_shift = PfShape<kD>::CSTEP == 2 ? 4 : 5;  // log2(8 * CSTEP): CSTEP is 2 or 4
    return a.x_shift <= step_shift || (1 << a.x_shift) >= kD;
}

// The slow staging paths, out of line (rare: layouts without aligned 8-element runs, and the
// groups of 8 slots at the visible range's edges) so that the tile loop's code stays small:
// 8 dims from `d0` of the token at `base` (zeros where not `valid`), or 8 slots from j0 of
// dim d where the value cache keeps slots adjacent (zeros outside [lo, hi]); loaded, then
// stored.
// (Arguments by value: a reference into the kernel's parameters would copy them all to the
// stack.)
__device__ __noinline__ void stage_chunk_slow(uint16_t* dst, const uint16_t* base, pkv_cache_addr a, int d0, int run,
                                              bool valid) {
    Raw8<uint16_t> r;
    r.clear();
    if (valid) r = load8_run(base, a, d0, run);
    r.store_all(dst);
}

__device__ __noinline__ void stage_slots_slow(uint16_t* dst, const int32_t* table_row, int64_t table_stride,
                                              int block_size, int64_t num_blocks, pkv_cache_addr a,
                                              const uint16_t* vbase, int j0, int d, int lo, int hi) {
    Raw8<uint16_t> r;
    r.clear();
#pragma unroll 1
    for (int e = 0; e < 8; ++e) {
        const int j = j0 + e;
        if (j >= lo && j <= hi) {
            const int lb = j / block_size;
            int64_t b = table_row[lb * table_stride];
            b = b < 0 ? 0 : (b >= num_blocks ? num_blocks - 1 : b);  // as entry_offset
            r.set(e, vbase[b * a.blk + static_cast<int64_t>(j - lb * block_size) * a.tok + static_cast<int64_t>(d) * a.dhi]);
        }
    }
    r.store_all(dst);
}

// fp8 caches (e4m3fn or e5m2, sm_89+): 8 codes widened to the query's 16-bit dtype by the
// hardware conversion to f16 (exact: every e4m3fn and e5m2 value is an f16 and a bf16; NaN
// kept); the scales apply to the products (k_scale to the scores, v_scale to the output).
template <int kQuery>
PKV_DEVICE Raw8<uint16_t> widen_fp8(const Raw8<uint8_t>& r, int format) {
    Raw8<uint16_t> o;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    const __nv_fp8_interpretation_t kind = format == PKV_FP8_E5M2 ? __NV_E5M2 : __NV_E4M3;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(
            static_cast<__nv_fp8x2_storage_t>((r.w[i / 2] >> (16 * (i % 2))) & 0xffffu), kind);
        if (kQuery == PKV_DT_F16) {
            o.w[i] = static_cast<uint32_t>(h.x) | (static_cast<uint32_t>(h.y) << 16);
        } else {
            o.w[i] = PfOps<PKV_DT_BF16>::pack(pkv_f16_bits_to_f32(h.x), pkv_f16_bits_to_f32(h.y));
        }
    }
#else
    (void)r, (void)format;
    o.clear();  // never launched: the planner sends fp8 caches here on sm_89 and later only
#endif
    return o;
}

// Stages a located tile of an fp8 cache (cp.async cannot convert): each thread loads its chunks
// (8 codes each; all of them first, so that their round trips overlap), widens and stores them.
// The same thread-to-chunk map and visibility rules as the copies of 16-bit caches.
template <int kQuery, int kD>
PKV_DEVICE void stage_tile_fp8(const pkv_attention_params& p, const TileBlocks& tb, int t0, int seq, int kvh, int lo,
                               int hi, unsigned char* stage, int tid) {
    typedef PfSmem<kD> L;
    typedef PfShape<kD> S;
    constexpr int PER_THREAD = kD / 8 / S::CSTEP;
    const pkv_cache_addr& ka = p.key_addr;
    const pkv_cache_addr& va = p.value_addr;
    const uint8_t* kbase = static_cast<const uint8_t*>(p.key_cache) + static_cast<int64_t>(kvh) * ka.head;
    const uint8_t* vbase = static_cast<const uint8_t*>(p.value_cache) + static_cast<int64_t>(kvh) * va.head;
    uint16_t* ks = reinterpret_cast<uint16_t*>(stage);
    uint16_t* vs = reinterpret_cast<uint16_t*>(stage + L::K_BYTES);
    const int k = tid & (S::TILE - 1);
    const int c0 = tid / S::TILE;
    const int j = t0 + k;
    const bool valid = j >= lo && j <= hi;
    const bool along_d = p.value_mode != PKV_V_ALONG_TOKENS;
    {
        const int64_t ko = valid ? entry_offset(p, ka, tb.key, j) : 0;
        Raw8<uint8_t> raw[PER_THREAD];
#pragma unroll
        for (int i = 0; i < PER_THREAD; ++i) {
            raw[i].clear();
            if (valid) raw[i] = load8_run(kbase + ko, ka, (c0 + S::CSTEP * i) * 8, p.key_run);
        }
#pragma unroll
        for (int i = 0; i < PER_THREAD; ++i)
            widen_fp8<kQuery>(raw[i], p.kv_fp8).store_all(ks + k * L::LD + (c0 + S::CSTEP * i) * 8);
    }
    if (along_d) {
        const int64_t vo = valid ? entry_offset(p, va, tb.value, j) : 0;
        Raw8<uint8_t> raw[PER_THREAD];
#pragma unroll
        for (int i = 0; i < PER_THREAD; ++i) {
            raw[i].clear();
            if (valid) raw[i] = load8_run(vbase + vo, va, (c0 + S::CSTEP * i) * 8, p.value_run);
        }
#pragma unroll
        for (int i = 0; i < PER_THREAD; ++i)
            widen_fp8<kQuery>(raw[i], p.kv_fp8).store_all(vs + k * L::LD + (c0 + S::CSTEP * i) * 8);
        return;
    }
    // Transposed values [kD][LDT]: a chunk is 8 slots of one dim, one 8-byte load where the
    // group is wholly visible inside one block (value_run 8), slot by slot at the range's edges.
    const int g = tid & (S::GROUPS - 1);
    const int j0 = t0 + g * 8;
    const bool whole = j0 >= lo && j0 + 7 <= hi;
    const int d0 = tid >> S::GROUP_SHIFT;
    constexpr int PER_GROUP = kD / S::DSTEP;
    Raw8<uint8_t> raw[PER_GROUP];
    if (whole && p.value_run == 8) {
        const uint8_t* src = vbase + entry_offset(p, va, tb.value, j0) + static_cast<int64_t>(d0) * va.dhi;
#pragma unroll
        for (int i = 0; i < PER_GROUP; ++i) raw[i].load_all(src + static_cast<int64_t>(S::DSTEP) * i * va.dhi);
    } else {
#pragma unroll
        for (int i = 0; i < PER_GROUP; ++i) raw[i].clear();
#pragma unroll
        for (int e = 0; e < 8; ++e) {  // unrolled: raw stays in registers
            const int je = j0 + e;
            if (je < lo || je > hi) continue;
            const int64_t vo = entry_offset(p, va, table_entry(p, seq, je), je);
#pragma unroll
            for (int i = 0; i < PER_GROUP; ++i)
                raw[i].set(e, vbase[vo + static_cast<int64_t>(d0 + S::DSTEP * i) * va.dhi]);
        }
    }
#pragma unroll
    for (int i = 0; i < PER_GROUP; ++i)
        widen_fp8<kQuery>(raw[i], p.kv_fp8).store_all(vs + (d0 + S::DSTEP * i) * L::LDT + g * 8);
}

// Issues the copies of a located tile into stage `stage` (keys, then values). Keys outside
// [lo, hi] stage as zeros and are never read.
template <int kQuery, int kD, bool kFp8>
PKV_DEVICE void issue_tile(const pkv_attention_params& p, const TileBlocks& tb, int t0, int seq, int kvh, int lo,
                           int hi, unsigned char* stage, int tid) {
    if (kFp8) {
        stage_tile_fp8<kQuery, kD>(p, tb, t0, seq, kvh, lo, hi, stage, tid);
        return;
    }
    typedef PfSmem<kD> L;
    typedef PfShape<kD> S;
    // This kv head's caches (formed here from the arguments rather than held across the tile's
    // products: registers are the kernel's limit).
    const uint16_t* kbase = static_cast<const uint16_t*>(p.key_cache) + static_cast<int64_t>(kvh) * p.key_addr.head;
    const uint16_t* vbase =
        static_cast<const uint16_t*>(p.value_cache) + static_cast<int64_t>(kvh) * p.value_addr.head;
    struct {
        int64_t ko, vo;
        bool valid, whole;
    } s;
    {
        const int j = t0 + (tid & (S::TILE - 1));
        s.valid = j >= lo && j <= hi;
        s.ko = s.valid ? entry_offset(p, p.key_addr, tb.key, j) : 0;
        if (p.value_mode != PKV_V_ALONG_TOKENS) {
            s.whole = false;
            s.vo = s.valid ? entry_offset(p, p.value_addr, tb.value, j) : 0;
        } else {
            const int j0 = t0 + (tid & (S::GROUPS - 1)) * 8;
            s.whole = j0 >= lo && j0 + 7 <= hi;
            s.vo = s.whole ? entry_offset(p, p.value_addr, tb.value, j0) : 0;
        }
    }
    constexpr int PER_THREAD = kD / 8 / S::CSTEP;  // chunks of one key per thread
    const pkv_cache_addr& ka = p.key_addr;
    const pkv_cache_addr& va = p.value_addr;
    uint16_t* ks = reinterpret_cast<uint16_t*>(stage);
    uint16_t* vs = reinterpret_cast<uint16_t*>(stage + L::K_BYTES);
    const int k = tid & (S::TILE - 1);
    const int c0 = tid / S::TILE;  // chunks c0, c0 + CSTEP, ...
    if (p.key_run == 8 && chunks_linear<kD>(ka)) {
        const uint16_t* src = s.valid ? kbase + s.ko + dim_offset(ka, c0 * 8) : kbase;
        const int64_t step = s.valid ? dim_offset(ka, 8 * S::CSTEP) - dim_offset(ka, 0) : 0;
#pragma unroll
        for (int i = 0; i < PER_THREAD; ++i) copy_async<16, false>(ks + k * L::LD + (c0 + S::CSTEP * i) * 8, src + i * step, s.valid, false);
    } else {
#pragma unroll 1
        for (int c = c0; c < kD / 8; c += S::CSTEP) stage_chunk_slow(ks + k * L::LD + c * 8, kbase + s.ko, ka, c * 8, p.key_run, s.valid);
    }
    if (p.value_mode != PKV_V_ALONG_TOKENS) {
        if (p.value_run == 8 && chunks_linear<kD>(va)) {
            const uint16_t* src = s.valid ? vbase + s.vo + dim_offset(va, c0 * 8) : vbase;
            const int64_t step = s.valid ? dim_offset(va, 8 * S::CSTEP) - dim_offset(va, 0) : 0;
#pragma unroll
            for (int i = 0; i < PER_THREAD; ++i)
                copy_async<16, false>(vs + k * L::LD + (c0 + S::CSTEP * i) * 8, src + i * step, s.valid, false);
        } else {
#pragma unroll 1
            for (int c = c0; c < kD / 8; c += S::CSTEP)
                stage_chunk_slow(vs + k * L::LD + c * 8, vbase + s.vo, va, c * 8, p.value_run, s.valid);
        }
    } else {
        // Transposed stage [kD][LDT]: a chunk is 8 slots of one dim. A group of 8 keys that is
        // wholly visible and (value_run 8: block size a multiple of 8, aligned) inside one block
        // is one 16-byte copy; a group at the visible range's edge is read key by key.
        const int g = tid & (S::GROUPS - 1);
        const int j0 = t0 + g * 8;
        const bool none = j0 > hi || j0 + 7 < lo;
        const int d0 = tid >> S::GROUP_SHIFT;  // dims d0, d0 + DSTEP, ...
        uint16_t* vd = vs + d0 * L::LDT + g * 8;
        if (p.value_run == 8 && (s.whole || none)) {
            const uint16_t* src = s.whole ? vbase + s.vo + static_cast<int64_t>(d0) * va.dhi : vbase;
            const int64_t step = s.whole ? static_cast<int64_t>(S::DSTEP) * va.dhi : 0;
#pragma unroll
            for (int i = 0; i < kD / S::DSTEP; ++i)
                copy_async<16, false>(vd + i * S::DSTEP * L::LDT, src + i * step, s.whole, false);
        } else {
#pragma unroll 1
            for (int i = 0; i < kD / S::DSTEP; ++i)
                stage_slots_slow(vd + i * S::DSTEP * L::LDT,
                                 p.block_table + static_cast<int64_t>(seq) * p.block_table_strides[0],
                                 p.block_table_strides[1], p.block_size, p.num_blocks, va, vbase, j0, d0 + S::DSTEP * i, lo,
                                 hi);
        }
    }
}

// o[mt] += P[mt] V over one tile. P[mt][n][i]: the probabilities of n-block n (keys 8n + 2q,
// 8n + 2q + 1 of quad q) of row g + 8i as one 16-bit pair, so that n-blocks 2 kb and 2 kb + 1
// are P's A fragment for keys 16 kb .. 16 kb + 15 as they lie. Each value fragment serves both
// m-tiles. `v`: this lane's ldmatrix row in the stage's values, [key][dim] (.trans) or
// transposed [dim][key] (`v_tokens`).
template <typename Ops, typename L, int ND, int kMT>
PKV_DEVICE void pv_products(float (*o)[ND][4], uint32_t (*P)[L::PF_TILE / 8][2], uint32_t v, bool v_tokens) {
#pragma unroll
    for (int kb = 0; kb < L::PF_TILE / 16; ++kb) {
#pragma unroll
        for (int n2 = 0; n2 < ND / 2; ++n2) {
            uint32_t b[4];
            if (v_tokens) {
                ldsm_x4(b, v + (n2 * 16 * L::LDT + kb * 16) * 2);
            } else {
                ldsm_x4_trans(b, v + (kb * 16 * L::LD + n2 * 16) * 2);
            }
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt) {
                const uint32_t a[4] = {P[mt][2 * kb][0], P[mt][2 * kb][1], P[mt][2 * kb + 1][0], P[mt][2 * kb + 1][1]};
                Ops::mma(o[mt][2 * n2], a, b[0], b[1]);
                Ops::mma(o[mt][2 * n2 + 1], a, b[2], b[3]);
            }
        }
    }
}

template <int kQuery, int kD, bool kFp8>
PKV_DEVICE void prefill_body(const pkv_attention_params& p) {
    typedef PfOps<kQuery> Ops;
    typedef PfSmem<kD> L;
    typedef PfShape<kD> S;
    constexpr int PF_ROWS = S::ROWS, PF_TILE = S::TILE, PF_WARP_ROWS = S::WARP_ROWS;
    extern __shared__ __attribute__((aligned(16))) unsigned char smem_raw[];
    int* info = reinterpret_cast<int*>(smem_raw);
    int* warp_bounds = info + PF_INFO_WORDS;  // [PF_WARPS][4]: min lo, max hi, max lo, min hi
    // Running max (base-2 units; natural at the end) and sum per row: kept in shared memory, not
    // registers, which the output accumulators fill (with them in registers the head-128
    // instances spilled).
    float* row_m = reinterpret_cast<float*>(warp_bounds + 4 * PF_WARPS);
    float* row_l = row_m + PF_ROWS;
    int* row_lo = reinterpret_cast<int*>(row_l + PF_ROWS);  // visible keys [lo, hi] (hi < lo: none)
    int* row_hi = row_lo + PF_ROWS;
    int* row_pos = row_hi + PF_ROWS;                        // the row's query position
    float* row_slope = reinterpret_cast<float*>(row_pos + PF_ROWS);
    uint16_t* s_q = reinterpret_cast<uint16_t*>(smem_raw + L::Q_AT);
    unsigned char* stages = smem_raw + L::STAGES_AT;
    const int tid = threadIdx.x;
    const int warp = tid >> 5, lane = tid & 31;
    const int G = p.num_q_heads / p.num_kv_heads;
    const int kvh = blockIdx.y / p.head_groups;
    const int hg = blockIdx.y % p.head_groups;
    const int split = blockIdx.z;

    // ---- Which sequence and which of its query tokens this work-group serves (q_blocks.h).
    const QBlock qblk = locate_q_block(p, blockIdx.x, hg, tid, PF_THREADS, info);
    if (!qblk.active) return;  // uniform
    const int seq = qblk.seq;
    const int row0 = qblk.row0;  // first query/output row
    const int ntok = qblk.ntok;
    const int seq_len = qblk.seq_len;
    const int p_first = qblk.p_first;
    const int hpc = qblk.hpc;
    const int nrows = ntok * hpc;
    const int qh0 = kvh * G + hg * p.heads_per_cta;  // query head of row r: qh0 + r % hpc
    const int W = p.sliding_window;
    const int lo_all = W > 0 ? max(0, p_first - W + 1) : 0;
    const int hi_all = p.causal ? min(p_first + ntok - 1, seq_len - 1) : seq_len - 1;

    // ---- Query rows -> shared (rows past nrows as zeros), then each warp's fragments.
    constexpr int NCHUNKS = kD / 8;
    {
        const uint16_t* query = static_cast<const uint16_t*>(p.query);
        for (int u = tid; u < PF_ROWS * NCHUNKS; u += PF_THREADS) {
            const int r = u / NCHUNKS, c = u % NCHUNKS;
            Raw8<uint16_t> v;
            v.clear();
            if (r < nrows) {
                const int64_t off = static_cast<int64_t>(row0 + r / hpc) * p.query_strides[0] +
                                    static_cast<int64_t>(qh0 + r % hpc) * p.query_strides[1] +
                                    static_cast<int64_t>(c) * 8 * p.query_strides[2];
                v = load8(query + off, p.query_strides[2], p.query_contig != 0);
            }
            v.store_all(s_q + r * L::LD + c * 8);
        }
    }
    // The tile range of this split (absolute tile indices).
    int tile_begin = 0, tile_end = 0;
    if (hi_all >= lo_all) {
        const int tb = lo_all / PF_TILE, te = hi_all / PF_TILE + 1;
        const int per = (te - tb + p.num_splits - 1) / p.num_splits;
        tile_begin = min(te, tb + split * per);
        tile_end = min(te, tile_begin + per);
    }
    if (tile_begin < tile_end) {
        const TileBlocks first = locate_tile<kD>(p, seq, tile_begin * PF_TILE, lo_all, hi_all, tid);
        issue_tile<kQuery, kD, kFp8>(p, first, tile_begin * PF_TILE, seq, kvh, lo_all, hi_all, stages + (tile_begin & 1) * L::STAGE_BYTES,
                       tid);
    }
    copy_async_commit();
    TileBlocks next = locate_tile<kD>(p, seq, (tile_begin + 1) * PF_TILE, lo_all, hi_all, tid);
    __syncthreads();  // the query rows

    // ---- Per row: visible range, position and slope (shared: read only where a tile needs
    // masks); the softmax state of the lane's rows g and g + 8 of each of the warp's m-tiles
    // (index ri = 2 * mt + i), and the warp's visible-range bounds.
    for (int r = tid; r < PF_ROWS; r += PF_THREADS) {
        int lo = 0, hi = -1, pos = 0;
        float sl = 0.0f;
        if (r < nrows) {
            pos = p_first + r / hpc;
            lo = W > 0 ? max(0, pos - W + 1) : 0;
            hi = p.causal ? min(pos, seq_len - 1) : seq_len - 1;
            if (p.alibi_slopes) sl = p.alibi_slopes[(qh0 + r % hpc) * p.alibi_stride];
        }
        row_lo[r] = lo, row_hi[r] = hi, row_pos[r] = pos, row_slope[r] = sl;
    }
    __syncthreads();
    const int quad = lane & 3;
    {
        // Softmax state (sinks seed split 0 only), and the warp's visible-range bounds.
        int w_lo_min = 0x7fffffff, w_hi_max = -1, w_lo_max = 0, w_hi_min = 0x7fffffff;
#pragma unroll
        for (int ri = 0; ri < 2 * S::MT; ++ri) {
            const int r = warp * PF_WARP_ROWS + (ri >> 1) * 16 + (lane >> 2) + 8 * (ri & 1);
            float m0 = NEG_INF, l0 = 0.0f;
            if (r < nrows) {
                if (p.sinks && split == 0) {
                    const float sink = p.sinks[(qh0 + r % hpc) * p.sinks_stride];
                    m0 = sink * LOG2_E;  // base-2 units, as every score below
                    l0 = sink > NEG_INF ? 1.0f : 0.0f;
                }
                const int lo = row_lo[r], hi = row_hi[r];
                if (hi >= lo) w_lo_min = min(w_lo_min, lo), w_hi_max = max(w_hi_max, hi);
                w_lo_max = max(w_lo_max, lo), w_hi_min = min(w_hi_min, hi);
            }
            if (quad == 0) row_m[r] = m0, row_l[r] = l0;
        }
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            w_lo_min = min(w_lo_min, __shfl_xor_sync(0xffffffffu, w_lo_min, o));
            w_hi_max = max(w_hi_max, __shfl_xor_sync(0xffffffffu, w_hi_max, o));
            w_lo_max = max(w_lo_max, __shfl_xor_sync(0xffffffffu, w_lo_max, o));
            w_hi_min = min(w_hi_min, __shfl_xor_sync(0xffffffffu, w_hi_min, o));
        }
        if (lane == 0) {
            int* wb = warp_bounds + 4 * warp;
            wb[0] = w_lo_min, wb[1] = w_hi_max, wb[2] = w_lo_max, wb[3] = w_hi_min;
        }
        __syncwarp();
    }
    // Plain scores (no soft-cap, no ALiBi) stay raw products until the exponent, whose one FFMA
    // applies the scale (positive: the running max of raw products is the max of the scaled).
    const bool plain_scores = p.logits_soft_cap <= 0.0f && p.alibi_slopes == nullptr;
    // fp8 caches: the key scale joins the score scale (the value scale joins the output's).
    const float score_scale = kFp8 && p.k_scale ? p.sm_scale * *p.k_scale : p.sm_scale;
    const float mult = plain_scores ? score_scale * LOG2_E : 1.0f;
    const float cap = p.logits_soft_cap;
    const float inv_cap = cap > 0.0f ? 1.0f / cap : 0.0f;

    constexpr int KSTEPS = kD / 16;
    constexpr int NB = S::NB;        // 8-key n-blocks of the scores
    constexpr int ND = kD / 8;       // 8-dim n-blocks of the output
    float o[S::MT][ND][4];
#pragma unroll
    for (int mt = 0; mt < S::MT; ++mt)
#pragma unroll
        for (int n = 0; n < ND; ++n) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.0f;

    // Lane byte offsets of the ldmatrix rows. Queries (A): rows (i & 1) * 8 + (lane & 7) of
    // matrix i = lane / 8 at dims (i >> 1) * 8. Keys (B): keys (i >> 1) * 8 + (lane & 7) at dims
    // (i & 1) * 8. Values (B): keys (i & 1) * 8 and dims (i >> 1) * 8.
    const int mi = lane >> 3;
    const uint32_t q_lane =
        smem_addr(s_q) + ((warp * PF_WARP_ROWS + (mi & 1) * 8 + (lane & 7)) * L::LD + (mi >> 1) * 8) * 2;
    const uint32_t k_lane = (((mi >> 1) * 8 + (lane & 7)) * L::LD + (mi & 1) * 8) * 2;
    const bool v_tokens = p.value_mode == PKV_V_ALONG_TOKENS;
    const uint32_t v_lane = L::K_BYTES + (v_tokens ? (((mi >> 1) * 8 + (lane & 7)) * L::LDT + (mi & 1) * 8) * 2
                                                   : (((mi & 1) * 8 + (lane & 7)) * L::LD + (mi >> 1) * 8) * 2);
    const uint32_t stage0 = smem_addr(stages);

    for (int tile = tile_begin; tile < tile_end; ++tile) {
        const int st = tile & 1;  // tile t lives in stage t % 2
        if (tile + 1 < tile_end) {
            issue_tile<kQuery, kD, kFp8>(p, next, (tile + 1) * PF_TILE, seq, kvh, lo_all, hi_all, stages + (st ^ 1) * L::STAGE_BYTES,
                           tid);
            copy_async_commit();
            if (tile + 2 < tile_end) next = locate_tile<kD>(p, seq, (tile + 2) * PF_TILE, lo_all, hi_all, tid);
            copy_async_wait<1>();
        } else {
            copy_async_wait<0>();
        }
        __syncthreads();  // this tile's stage is complete for every warp

        const int t0 = tile * PF_TILE;
        const int4 wb = *reinterpret_cast<const int4*>(warp_bounds + 4 * warp);  // min lo, max hi, max lo, min hi
        if (t0 <= wb.y && t0 + PF_TILE - 1 >= wb.x) {  // some key of the tile is visible to the warp
            const uint32_t stage = stage0 + st * L::STAGE_BYTES;
            const bool whole = t0 >= wb.z && t0 + PF_TILE - 1 <= wb.w;
            uint32_t P[S::MT][NB][2];  // probabilities as 16-bit pairs (pv_products)
#pragma unroll
            for (int mt = 0; mt < S::MT; ++mt) {
                // S = Q K^T for m-tile mt (one m-tile's scores at a time: the registers of both
                // beside the output accumulators would spill).
                float sc[NB][4];
#pragma unroll
                for (int n = 0; n < NB; ++n) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.0f;
#pragma unroll
                for (int kk = 0; kk < KSTEPS; ++kk) {
                    uint32_t qa[4];
                    ldsm_x4(qa, q_lane + mt * 16 * L::LD * 2 + kk * 32);
#pragma unroll
                    for (int n2 = 0; n2 < NB / 2; ++n2) {
                        uint32_t b[4];
                        ldsm_x4(b, stage + k_lane + (n2 * 16 * L::LD + kk * 16) * 2);
                        Ops::mma(sc[2 * n2], qa, b[0], b[1]);
                        Ops::mma(sc[2 * n2 + 1], qa, b[2], b[3]);
                    }
                }
                // Soft-cap and ALiBi (base-2 units), then the masks.
                if (!plain_scores || !whole) {
#pragma unroll
                    for (int i = 0; i < 2; ++i) {
                        const int r = warp * PF_WARP_ROWS + mt * 16 + (lane >> 2) + 8 * i;
                        const int lo = row_lo[r], hi = row_hi[r], pos = row_pos[r];
                        const float sl = row_slope[r];
#pragma unroll
                        for (int n = 0; n < NB; ++n)
#pragma unroll
                            for (int e = 0; e < 2; ++e) {
                                const int j = t0 + n * 8 + quad * 2 + e;
                                float x = sc[n][2 * i + e];
                                if (!plain_scores) {
                                    x *= score_scale;
                                    if (cap > 0.0f) x = cap * tanhf(x * inv_cap);
                                    x = (x + sl * static_cast<float>(j - pos)) * LOG2_E;
                                }
                                sc[n][2 * i + e] = j < lo || j > hi ? NEG_INF : x;
                            }
                    }
                }
                // Online softmax per row (a quad of lanes per row); the probabilities leave it
                // as 16-bit pairs (half the registers of the scores).
#pragma unroll
                for (int i = 0; i < 2; ++i) {
                    const int h = 2 * i;
                    const int r = warp * PF_WARP_ROWS + mt * 16 + (lane >> 2) + 8 * i;
                    float mx = NEG_INF;
#pragma unroll
                    for (int n = 0; n < NB; ++n) mx = fmaxf(mx, fmaxf(sc[n][h], sc[n][h + 1]));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                    const float m_old = row_m[r];
                    const float m_new = fmaxf(m_old, mx * mult);
                    const float ref = m_new == NEG_INF ? 0.0f : m_new;  // nothing visible yet: all terms 0
                    const float alpha = exp2_approx(m_old - ref);
                    float sum = 0.0f;
#pragma unroll
                    for (int n = 0; n < NB; ++n) {
                        const float e0 = exp2_approx(fmaf(sc[n][h], mult, -ref));
                        const float e1 = exp2_approx(fmaf(sc[n][h + 1], mult, -ref));
                        sum += e0 + e1;
                        P[mt][n][i] = Ops::pack(e0, e1);
                    }
                    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
                    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
                    const float l_new = row_l[r] * alpha + sum;
                    __syncwarp();  // every lane of the quad has read the row's state
                    if (quad == 0) row_m[r] = m_new, row_l[r] = l_new;
#pragma unroll
                    for (int n = 0; n < ND; ++n) o[mt][n][h] *= alpha, o[mt][n][h + 1] *= alpha;
                }
            }
            // O += P V.
            pv_products<Ops, L, ND, S::MT>(o, P, stage + v_lane, v_tokens);
        }
        __syncthreads();  // every warp is done with this stage before it is refilled
    }

    // ---- Results: rows through shared memory (f32, over the stages), then 8-element stores.
    const bool single = p.num_splits == 1;
    const float v_scale = kFp8 && p.v_scale ? *p.v_scale : 1.0f;
    float* s_o = reinterpret_cast<float*>(stages);
#pragma unroll
    for (int ri = 0; ri < 2 * S::MT; ++ri) {
        const int mt = ri >> 1, h = 2 * (ri & 1);
        const int r = warp * PF_WARP_ROWS + mt * 16 + (lane >> 2) + 8 * (ri & 1);
        const float l = row_l[r];
        const float inv = (single ? (l > 0.0f ? 1.0f / l : 0.0f) : 1.0f) * v_scale;
        float* orow = s_o + r * L::LD + quad * 2;
#pragma unroll
        for (int n = 0; n < ND; ++n)
            *reinterpret_cast<float2*>(orow + n * 8) = make_float2(o[mt][n][h] * inv, o[mt][n][h + 1] * inv);
    }
    __syncwarp();  // the row state is read
    if (lane < PF_WARP_ROWS) {
        const int r = warp * PF_WARP_ROWS + lane;
        row_m[r] = row_m[r] == NEG_INF ? NEG_INF : row_m[r] * PF_LN_2;  // natural-log units for the reduce
    }
    __syncthreads();
    const float out_inv_scale = p.output_scale ? 1.0f / *p.output_scale : 1.0f;
    for (int u = tid; u < nrows * NCHUNKS; u += PF_THREADS) {
        const int r = u / NCHUNKS, c = u % NCHUNKS;
        const int64_t row = row0 + r / hpc;
        const int qh = qh0 + r % hpc;
        const float* v = s_o + r * L::LD + c * 8;
        if (single) {
            const int64_t off = row * p.output_strides[0] + static_cast<int64_t>(qh) * p.output_strides[1] +
                                static_cast<int64_t>(c) * 8 * p.output_strides[2];
            store_out8<kQuery>(p.output, off, p.output_strides[2], p.output_contig != 0, v, p.out_fp8, out_inv_scale);
        } else {
            // Partials in the general kernel's workspace layout (its split reduce merges them).
            const int64_t slot = (row * p.num_q_heads + qh) * p.num_splits + split;
            float4* dst = reinterpret_cast<float4*>(p.workspace + slot * kD + c * 8);
            dst[0] = *reinterpret_cast<const float4*>(v);
            dst[1] = *reinterpret_cast<const float4*>(v + 4);
            if (c == 0) {
                float* ml = p.workspace + p.num_tokens * p.num_q_heads * p.num_splits * kD + slot * 2;
                ml[0] = row_m[r];
                ml[1] = row_l[r];
            }
        }
    }
}

// Stream order after the decode kernel: as the general kernel (attention.hip, its launcher's
// comment): work-group 0 waits for the kernel before it, so this one completes after it.
template <int kQuery, int kD, bool kFp8>
__global__ void __launch_bounds__(PF_THREADS, PF_MIN_BLOCKS) paged_prefill_mma_kernel(pkv_attention_params p) {
    prefill_body<kQuery, kD, kFp8>(p);
    if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0) pkv_wait_prior_grids();
}

template <int kQuery, int kD>
pkv_error_t launch_prefill(const pkv_attention_params& p, pkv_stream_t stream) {
    void (*kernel)(pkv_attention_params) = p.kv_fp8 != PKV_FP8_NONE ? paged_prefill_mma_kernel<kQuery, kD, true>
                                                                    : paged_prefill_mma_kernel<kQuery, kD, false>;
    static_assert(PfSmem<kD>::TOTAL <= 227 * 1024, "fits an sm_90 work-group");
    // The planner's size (src/core/plan.rs prefill_mma_shared_mem_bytes) mirrors PfSmem; a plan
    // that disagrees is refused rather than launched short.
    if (p.shared_mem_bytes != PfSmem<kD>::TOTAL) return cudaErrorInvalidValue;
    if (p.shared_mem_bytes > PKV_DEFAULT_DYNAMIC_SMEM) {
        const pkv_error_t e = pkv_allow_dynamic_smem(reinterpret_cast<const void*>(kernel), p.shared_mem_bytes);
        if (e != pkv_success) return e;
    }
    const dim3 grid(static_cast<unsigned>(p.num_q_blocks), static_cast<unsigned>(p.num_kv_heads * p.head_groups),
                    static_cast<unsigned>(p.num_splits));
    const bool overlap = p.overlap_after_decode != 0 && p.decode_kernel != 0;
    return pkv_launch(kernel, grid, dim3(PF_THREADS), p.shared_mem_bytes, stream, overlap, p);
}

// One instance per head size (src/core/plan.rs PREFILL_MMA_HEADS).
template <int kQuery>
pkv_error_t launch_for_head(const pkv_attention_params& p, pkv_stream_t stream) {
    switch (p.head_size) {
        case 64:
            return launch_prefill<kQuery, 64>(p, stream);
        case 80:
            return launch_prefill<kQuery, 80>(p, stream);
        case 96:
            return launch_prefill<kQuery, 96>(p, stream);
        case 112:
            return launch_prefill<kQuery, 112>(p, stream);
        case 192:
            return launch_prefill<kQuery, 192>(p, stream);
        case 256:
            return launch_prefill<kQuery, 256>(p, stream);
        default:
            return launch_prefill<kQuery, 128>(p, stream);
    }
}

}  // namespace

pkv_error_t launch_prefill_mma(const pkv_attention_params& p, pkv_stream_t stream) {
    return p.query_dtype == PKV_DT_F16 ? launch_for_head<PKV_DT_F16>(p, stream) : launch_for_head<PKV_DT_BF16>(p, stream);
}

}  // namespace pkv
#endif  // PKV_CUDA
