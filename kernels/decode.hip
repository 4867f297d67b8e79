// Paged attention for decode rows: sequences whose query length is exactly 1. Semantics: the
// CPU reference backend (src/cpu/attention.rs); the general kernel (attention.hip) serves every
// other sequence and skips these when `decode_kernel` is set.
//
// Why a second kernel: a decode row reads each cached key and value once and does ~G FLOPs per
// element (G = query heads per kv head), so its time is bytes over HBM bandwidth. The general
// kernel stages K/V tiles as f32 in shared memory for its many-row tiles; for one row that
// staging, not HBM, is the bottleneck. Here K/V go straight from global memory to registers.
//
// Grid: x = sequence, y = kv head x head group, z = KV split (all from shapes: graph safe).
// A work-group serves up to DEC_HPC query heads of one kv head (one read of K/V for all).
// Each wave walks its own wave tiles (WAVE consecutive key positions, absolute, so any block
// size works: every key computes its block and offset) with its own online-softmax state and
// accumulators; no barrier in the key loop. Waves merge once at the end through shared
// memory, then write the output row (one split) or this split's partial, merged by
// decode_reduce_kernel.
//
// Per wave tile:
//  - scores: lane <-> key. The lane reads its key's head_size elements with 16-byte loads
//    (consecutive lanes = consecutive slots: contiguous x-chunks in the split key layout) and
//    dots them with the f32 queries in shared memory (broadcast reads).
//  - online softmax per head with wave shuffles; probabilities -> shared (per wave).
//  - P.V: split value layout ([.., head_size, block_size]): a 16-byte load is 8 consecutive
//    slots of one dim; lane <-> (8-slot group parity, dim), so one load instruction covers 16
//    slots x WAVE/2 dims, whole 32-byte sectors. NHD-like layouts: lane <-> (slot, 8-dim chunk).
// Only positions in [lo, seq_len) are read: unwritten (NaN-poisoned) slots and block-table
// columns past a sequence's last block are never touched.

#include "cache_io.h"
#include "mma_sm80.h"
#include "pkv_common.h"

#if defined(PKV_CUDA)
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#endif

namespace pkv {
namespace {

constexpr int DEC_THREADS = 128;     // per work-group: 4 waves of 32 or 2 of 64
// NVIDIA: resident work-groups per SM (a register cap): four (<= 128 registers) for head sizes
// up to 128; three for the larger accumulator set of head sizes up to 256.
constexpr int DEC_MIN_BLOCKS_SMALL = 4;
constexpr int DEC_MIN_BLOCKS_LARGE = 3;
constexpr int DEC_HPC = 4;           // query heads per work-group (src/core/plan.rs DECODE_HEADS_PER_CTA)
constexpr int CHUNK = 8;             // elements per 16-byte (8-byte for fp8) load
// Bytes of cache loads in flight per lane (memory-level parallelism, against registers).
constexpr int K_BYTES_IN_FLIGHT = 128;
constexpr int V_BYTES_IN_FLIGHT = 128;
constexpr int V_GROUP_LANES = 2;     // lanes splitting one dim's 8-slot groups (16 slots = 32 bytes)
// Split reduce: work-groups of REDUCE_THREADS threads, (chunk, split group) each, capped at 64
// registers per thread (REDUCE_MIN_BLOCKS resident per SM), so that one fits beside four decode
// work-groups and is resident, waiting, when the decode grid ends (kernel at the end of the file).
constexpr int REDUCE_THREADS = 64;
constexpr int REDUCE_MIN_BLOCKS = 16;
// A thread's splits, loaded together in one round trip; the split groups per chunk (a power of
// two, at most REDUCE_MAX_GROUPS: lanes of one wave) grow until this many cover the splits.
constexpr int REDUCE_SPLITS_PER_LOAD = 4;
constexpr int REDUCE_MAX_GROUPS = 32;
// Splits one reduce serves (one batch per thread); the planner's DECODE_MAX_SPLITS (src/core/plan.rs).
constexpr int REDUCE_MAX_SPLITS = REDUCE_SPLITS_PER_LOAD * REDUCE_MAX_GROUPS;

static_assert(DEC_THREADS % PKV_WAVE_SIZE == 0, "work-groups are whole waves");
static_assert(PKV_WAVE_SIZE % (CHUNK * V_GROUP_LANES) == 0, "a wave tile is whole slot-group pairs");
static_assert(REDUCE_THREADS % PKV_WAVE_SIZE == 0 && PKV_WAVE_SIZE % REDUCE_MAX_GROUPS == 0 &&
                  REDUCE_THREADS % REDUCE_MAX_GROUPS == 0,
              "reduce work-groups are whole waves, and a chunk's split groups lanes of one wave");

#define NEG_INF __uint_as_float(0xff800000u)

// Orders shared-memory writes of one wave before other lanes of the same wave read them.
PKV_DEVICE void wave_sync() {
#if defined(PKV_HIP)
    __builtin_amdgcn_fence(__ATOMIC_RELEASE, "wavefront");
    __builtin_amdgcn_wave_barrier();
    __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "wavefront");
#else
    __syncwarp();
#endif
}

// fp8 decode without a table (a table lookup per element would make fp8 bound by shared-memory
// bank conflicts): fp8 -> f16 bits, exact, then the hardware f16 -> f32 conversion. The values
// come out divided by fp8_unscale(format), a power of two folded into the k/v scale multipliers.
// NVIDIA sm_89+ converts OCP e4m3/e5m2 pairs in hardware (exact, NaN kept); elsewhere e4m3
// codes are re-biased with bit operations (the f16 pattern of an e4m3 code is the value times
// 2^-8 (fn) or 2^-7 (fnuz), subnormals included) and e5m2 codes are the top byte of an f16.
PKV_DEVICE float fp8_unscale(int format) {
#if defined(PKV_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    return format == PKV_FP8_E4M3FNUZ ? 128.0f : 1.0f;
#else
    return format == PKV_FP8_E4M3FN ? 256.0f : (format == PKV_FP8_E4M3FNUZ ? 128.0f : 1.0f);
#endif
}

// The portable decode, branch-free over the format: f16 bits = sign << 8 | magnitude << shift
// (shift 8 for e5m2: the code is the top byte of an f16; 7 for e4m3: re-biased), NaN where
// (code & nan_mask) == nan_code (e5m2 NaNs are f16 NaNs already: a mask that never matches).
struct Fp8Decode {
    uint32_t shift, nan_mask, nan_code;
};

PKV_DEVICE Fp8Decode fp8_decode_params(int format) {
    Fp8Decode d;
    d.shift = format == PKV_FP8_E5M2 ? 8u : 7u;
    d.nan_mask = format == PKV_FP8_E5M2 ? 0u : (format == PKV_FP8_E4M3FNUZ ? 0xffu : 0x7fu);
    d.nan_code = format == PKV_FP8_E5M2 ? 1u : (format == PKV_FP8_E4M3FNUZ ? 0x80u : 0x7fu);
    return d;
}

PKV_DEVICE float fp8_code_scaled(const Fp8Decode& d, uint32_t c) {
    const float v = pkv_f16_bits_to_f32(static_cast<uint16_t>(((c & 0x80u) << 8) | ((c & 0x7fu) << d.shift)));
    return (c & d.nan_mask) == d.nan_code ? __uint_as_float(0x7fc00000u) : v;
}

// 8 cache elements -> f32 (fp8: divided by fp8_unscale(format), scale not applied).
template <int kCache>
struct Deq8 {
    static PKV_DEVICE void run(const Raw8<typename Elem<kCache>::raw>& r, int, float* f) {
#pragma unroll
        for (int i = 0; i < CHUNK; ++i) f[i] = Elem<kCache>::to_f32(r.get(i));
    }
};
template <>
struct Deq8<PKV_DT_U8> {
    static PKV_DEVICE void run(const Raw8<uint8_t>& r, int format, float* f) {
#if defined(PKV_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
        if (format != PKV_FP8_E4M3FNUZ) {
            const __nv_fp8_interpretation_t kind = format == PKV_FP8_E5M2 ? __NV_E5M2 : __NV_E4M3;
#pragma unroll
            for (int i = 0; i < CHUNK; i += 2) {
                const uint32_t w = r.w[i / 4] >> (8 * (i % 4));
                const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(w & 0xffffu), kind);
                f[i] = pkv_f16_bits_to_f32(h.x);
                f[i + 1] = pkv_f16_bits_to_f32(h.y);
            }
            return;
        }
#endif
        const Fp8Decode d = fp8_decode_params(format);
#pragma unroll
        for (int i = 0; i < CHUNK; ++i) f[i] = fp8_code_scaled(d, r.get(i));
    }
};

// acc[u][h] += sum_i prob[h][i] * v_u[i] for the first n units u (8 slots of one dim each) and
// the first hpc heads. Heads go in pairs: a pair's 16 probabilities stay in registers while
// each unit is converted once per pair (all heads' probabilities at once would cost the
// registers that keep loads in flight).
template <int kCache, int kUnits>
PKV_DEVICE void pv_units(float (*acc)[DEC_HPC], const float* prob, int head_stride,
                         const Raw8<typename Elem<kCache>::raw>* v, int n, int fmt, int hpc) {
#pragma unroll
    for (int hp = 0; hp < DEC_HPC; hp += 2) {
        if (hp < hpc) {
            float pa[CHUNK], pb[CHUNK];
            const float4 a0 = *reinterpret_cast<const float4*>(prob + hp * head_stride);
            const float4 a1 = *reinterpret_cast<const float4*>(prob + hp * head_stride + 4);
            pa[0] = a0.x, pa[1] = a0.y, pa[2] = a0.z, pa[3] = a0.w, pa[4] = a1.x, pa[5] = a1.y, pa[6] = a1.z, pa[7] = a1.w;
            const bool second = hp + 1 < hpc;
#pragma unroll
            for (int i = 0; i < CHUNK; ++i) pb[i] = 0.0f;
            if (second) {
                const float4 b0 = *reinterpret_cast<const float4*>(prob + (hp + 1) * head_stride);
                const float4 b1 = *reinterpret_cast<const float4*>(prob + (hp + 1) * head_stride + 4);
                pb[0] = b0.x, pb[1] = b0.y, pb[2] = b0.z, pb[3] = b0.w, pb[4] = b1.x, pb[5] = b1.y, pb[6] = b1.z, pb[7] = b1.w;
            }
#pragma unroll
            for (int u = 0; u < kUnits; ++u) {
                if (u < n) {
                    float f[CHUNK];
                    Deq8<kCache>::run(v[u], fmt, f);
                    float x = acc[u][hp], y = acc[u][hp + 1];
#pragma unroll
                    for (int i = 0; i < CHUNK; ++i) {
                        x += pa[i] * f[i];
                        y += pb[i] * f[i];
                    }
                    acc[u][hp] = x;
                    acc[u][hp + 1] = y;
                }
            }
        }
    }
}

PKV_DEVICE float wave_max(float v) {
#pragma unroll
    for (int o = PKV_WAVE_SIZE / 2; o > 0; o /= 2) v = fmaxf(v, pkv_shfl_xor(v, o, PKV_WAVE_SIZE));
    return v;
}

PKV_DEVICE float wave_sum(float v) {
#pragma unroll
    for (int o = PKV_WAVE_SIZE / 2; o > 0; o /= 2) v += pkv_shfl_xor(v, o, PKV_WAVE_SIZE);
    return v;
}

// The decode workspace (more than one split): the splits' partials [num_seqs, num_q_heads,
// decode_splits, head_size], each relative to its own maximum, then their (max, sum) pairs
// [num_seqs, num_q_heads, decode_splits]. merge_waves writes both; the split reduce reads them.
// Slot (seq * num_q_heads + head) * decode_splits + split: its partial, and its (max, sum) pair.
PKV_DEVICE float* split_partial(const pkv_attention_params& p, int64_t slot) {
    return p.decode_workspace + slot * p.head_size;
}
PKV_DEVICE float2* split_stats(const pkv_attention_params& p) {
    return reinterpret_cast<float2*>(p.decode_workspace +
                                     static_cast<int64_t>(p.num_seqs) * p.num_q_heads * p.decode_splits * p.head_size);
}

// Merges the waves' partial results (shared memory, after a barrier) of `hpc` heads and writes
// the output row (one split) or this split's partial and (max, sum) pair (split_partial,
// split_stats).
template <int kQuery, int kWaves, int kHeads, int kMaxD>
PKV_DEVICE void merge_waves(const pkv_attention_params& p, const float (*s_acc)[kHeads][kMaxD],
                            const float (*s_ml)[kHeads][2], int hpc, int seq, int split, int q_begin, int qh0,
                            float vmul) {
    // This work-group's keys are done: the next kernel of the call (the split reduce, or the
    // general kernel when there is one split), a programmatic dependent launch on sm_90+, may be
    // scheduled once every work-group is here or gone. It waits on the device where it must.
    pkv_allow_next_grid();
    const int D = p.head_size;
    const int nch = D / CHUNK;
    const int S = p.decode_splits;
    const float out_inv_scale = p.output_scale ? 1.0f / *p.output_scale : 1.0f;
    for (int u = threadIdx.x; u < hpc * nch; u += blockDim.x) {
        const int h = u / nch, c = u - (u / nch) * nch;
        float M = NEG_INF;
#pragma unroll
        for (int w = 0; w < kWaves; ++w) M = fmaxf(M, s_ml[w][h][0]);
        float num[CHUNK], den = 0.0f;
#pragma unroll
        for (int i = 0; i < CHUNK; ++i) num[i] = 0.0f;
#pragma unroll
        for (int w = 0; w < kWaves; ++w) {
            const float mw = s_ml[w][h][0];
            if (mw == NEG_INF) continue;  // a wave that saw nothing
            const float e = expf(mw - M);
            den += e * s_ml[w][h][1];
#pragma unroll
            for (int i = 0; i < CHUNK; ++i) num[i] += e * s_acc[w][h][c * CHUNK + i];
        }
        const int qh = qh0 + h;
        if (S == 1) {
            float v[CHUNK];
#pragma unroll
            for (int i = 0; i < CHUNK; ++i) v[i] = den > 0.0f ? num[i] * vmul / den : 0.0f;
            const int64_t off = static_cast<int64_t>(q_begin) * p.output_strides[0] +
                                static_cast<int64_t>(qh) * p.output_strides[1] +
                                static_cast<int64_t>(c) * CHUNK * p.output_strides[2];
            store_out8<kQuery>(p.output, off, p.output_strides[2], p.output_contig != 0, v, p.out_fp8, out_inv_scale);
        } else {
            const int64_t slot = (static_cast<int64_t>(seq) * p.num_q_heads + qh) * S + split;
            float4* dst = reinterpret_cast<float4*>(split_partial(p, slot) + c * CHUNK);
            dst[0] = make_float4(num[0] * vmul, num[1] * vmul, num[2] * vmul, num[3] * vmul);
            dst[1] = make_float4(num[4] * vmul, num[5] * vmul, num[6] * vmul, num[7] * vmul);
            if (c == 0) split_stats(p)[slot] = make_float2(M, den);
        }
    }
}

// What one decode work-group serves: a sequence, grid row y (kv head x head group) and split.
struct DecodeItem {
    int seq, y, split;
};

// The heads a decode work-group serves: kv head `kvh` and its query heads qh0 .. qh0 + hpc - 1
// (grid row y is kv head x head group; a group holds decode_heads_per_cta of the kv head's G).
struct DecodeHeads {
    int kvh, qh0, hpc;
};
PKV_DEVICE DecodeHeads decode_heads(const pkv_attention_params& p, const DecodeItem& item) {
    const int hgs = p.decode_head_groups;
    const int kvh = item.y / hgs;
    const int hg = item.y - kvh * hgs;
    const int G = p.num_q_heads / p.num_kv_heads;
    return {kvh, kvh * G + hg * p.decode_heads_per_cta, min(p.decode_heads_per_cta, G - hg * p.decode_heads_per_cta)};
}

// A sequence with more than one query token although the caller bounded every query to one
// (`decode_covers_all`: max_query_len = 1, so no general kernel runs): split 0's work-groups
// set its rows of their query heads to NaN, so that the broken bound shows in the output
// instead of leaving those rows as they were. q_begin and q_end come clamped to [0, num_tokens].
template <int kOut>
PKV_DEVICE void poison_rows(const pkv_attention_params& p, const DecodeItem& item, int q_begin, int q_end) {
    if (!p.decode_covers_all || item.split != 0 || q_end - q_begin < 2) return;
    const DecodeHeads heads = decode_heads(p, item);
    const int qh0 = heads.qh0, hpc = heads.hpc;
    const int nch = p.head_size / CHUNK;
    float v[CHUNK];
#pragma unroll
    for (int i = 0; i < CHUNK; ++i) v[i] = __int_as_float(0x7fc00000);
    const int64_t n = static_cast<int64_t>(q_end - q_begin) * hpc * nch;
    for (int64_t u = threadIdx.x; u < n; u += blockDim.x) {
        const int c = static_cast<int>(u % nch);
        const int64_t r = u / nch;
        const int64_t off = (q_begin + r / hpc) * p.output_strides[0] +
                            static_cast<int64_t>(qh0 + static_cast<int>(r % hpc)) * p.output_strides[1] +
                            static_cast<int64_t>(c) * CHUNK * p.output_strides[2];
        store_out8<kOut>(p.output, off, p.output_strides[2], p.output_contig != 0, v, p.out_fp8, 1.0f);
    }
}

// Longest first (`decode_order`, set by the planner when the grid is more than one wave of
// resident work-groups and the batch has at most DECODE_ORDER_MAX_SEQS sequences): the
// hardware starts work-groups in the order of their linear index, and a long sequence whose
// work-groups start last sets the batch's time (mixed lengths). The linear index (x fastest)
// is read as (rank, y, split) with the rank slowest, and the rank-th longest sequence (ties by
// index) is served: longest-processing-time-first scheduling, from the device's own lengths
// (shapes stay the only launch input). Every work-group ranks the lengths itself in `scratch`
// (shared memory of at least DECODE_ORDER_MAX_SEQS + 1 ints, free again on return).
constexpr int DECODE_ORDER_MAX_SEQS = 256;  // src/core/plan.rs DECODE_ORDER_MAX_SEQS

PKV_DEVICE DecodeItem decode_item(const pkv_attention_params& p, int* scratch) {
    DecodeItem it = {static_cast<int>(blockIdx.x), static_cast<int>(blockIdx.y), static_cast<int>(blockIdx.z)};
    if (!p.decode_order) return it;
    const int yz = static_cast<int>(gridDim.y * gridDim.z);
    const int lin = static_cast<int>(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
    const int rank = lin / yz, rem = lin - (lin / yz) * yz;
    it.y = rem / static_cast<int>(gridDim.z);
    it.split = rem - it.y * static_cast<int>(gridDim.z);
    const int n = min(p.num_seqs, DECODE_ORDER_MAX_SEQS);
    const int64_t max_len = static_cast<int64_t>(p.max_blocks_per_seq) * p.block_size;
    int* lens = scratch;
    if (threadIdx.x == 0) scratch[DECODE_ORDER_MAX_SEQS] = rank;  // (the planner keeps every rank below n)
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        lens[i] = clamp_int(p.seq_lens[static_cast<int64_t>(i) * p.seq_lens_stride], 0, max_len);
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int li = lens[i];
        int r = 0;
        for (int j = 0; j < n; ++j) r += lens[j] > li || (lens[j] == li && j < i);
        if (r == rank) scratch[DECODE_ORDER_MAX_SEQS] = i;  // ranks are a permutation: one writer
    }
    __syncthreads();
    it.seq = scratch[DECODE_ORDER_MAX_SEQS];
    __syncthreads();  // the scratch is free again
    return it;
}

// kMaxD: 128 or 256, the largest head_size this instance serves (sizes shared memory and the
// per-lane accumulators; src/core/plan.rs decode_shared_mem_bytes mirrors the shared arrays).
// kVTok: the value layout keeps slots contiguous (PKV_V_ALONG_TOKENS), chosen on the host so
// that each instance holds the registers of one P.V scheme only.
template <int kQuery, int kCache, int kMaxD, bool kVTok>
__global__ void PKV_LAUNCH_BOUNDS(DEC_THREADS, kMaxD <= 128 ? DEC_MIN_BLOCKS_SMALL : DEC_MIN_BLOCKS_LARGE)
    paged_decode_kernel(pkv_attention_params p) {
    typedef typename Elem<kCache>::raw CRaw;
    typedef typename Elem<kQuery>::raw QRaw;
    // Loads of 8 elements (8 to 32 bytes) in flight per lane.
    const int K_LOADS = K_BYTES_IN_FLIGHT / (CHUNK * static_cast<int>(sizeof(CRaw)));
    const int V_LOADS = V_BYTES_IN_FLIGHT / (CHUNK * static_cast<int>(sizeof(CRaw)));
    const int WAVE = PKV_WAVE_SIZE;
    const int NW = DEC_THREADS / WAVE;
    // Along-tokens P.V: dims covered by one load instruction, 8-slot groups per lane.
    const int DS = WAVE / V_GROUP_LANES;
    const int GPL = WAVE / CHUNK / V_GROUP_LANES;
    // Accumulator dims per lane: kMaxD / DS along tokens, one 8-dim chunk along D.
    const int MAXJ = kMaxD / DS > CHUNK ? kMaxD / DS : CHUNK;
    // Value units (one dim x 8 slots) per batch of loads along tokens.
    const int VB = V_LOADS < MAXJ ? V_LOADS : MAXJ;
    static_assert(MAXJ % VB == 0, "value batches tile the accumulators");

    __shared__ __attribute__((aligned(16))) float s_q[DEC_HPC][kMaxD];         // queries, f32
    __shared__ __attribute__((aligned(16))) float s_p[NW][DEC_HPC][WAVE];      // probabilities of the wave tile
    __shared__ int64_t s_vofs[NW][WAVE];                                        // value offset per slot (-1: not visible)
    __shared__ __attribute__((aligned(16))) float s_acc[NW][DEC_HPC][kMaxD];   // per-wave accumulators (end)
    __shared__ float s_ml[NW][DEC_HPC][2];                                      // per-wave (max, sum)

    const int tid = threadIdx.x;
    const int lane = tid % WAVE;
    const int wave = tid / WAVE;
    static_assert(sizeof(s_acc) >= (DECODE_ORDER_MAX_SEQS + 1) * sizeof(int), "the order's scratch fits");
    const DecodeItem item = decode_item(p, reinterpret_cast<int*>(&s_acc[0][0][0]));
    const int seq = item.seq;
    const int q_begin = qsl_at(p, seq);
    const int q_end = qsl_at(p, seq + 1);
    if (q_end - q_begin != 1) {  // uniform: not a decode row
        poison_rows<kQuery>(p, item, q_begin, q_end);
        return;
    }

    const DecodeHeads heads = decode_heads(p, item);
    const int kvh = heads.kvh;
    const int split = item.split;
    const int S = p.decode_splits;
    const int D = p.head_size;
    const int nch = D / CHUNK;
    const int qh0 = heads.qh0;
    const int hpc = heads.hpc;
    const int64_t max_len = static_cast<int64_t>(p.max_blocks_per_seq) * p.block_size;
    const int seq_len = clamp_int(p.seq_lens[static_cast<int64_t>(seq) * p.seq_lens_stride], 0, max_len);
    // The row's query sits at position seq_len - 1: every key up to it is visible (causal or
    // not), down to the window's start.
    const int pos = seq_len - 1;
    const int lo = p.sliding_window > 0 ? max(0, pos - p.sliding_window + 1) : 0;
    const int hi = seq_len - 1;

    // ---- Queries -> shared f32.
    {
        const QRaw* query = static_cast<const QRaw*>(p.query);
        // Head slots past the work-group's heads get zero queries (their scores are masked).
        for (int u = tid; u < DEC_HPC * nch; u += DEC_THREADS) {
            const int h = u / nch, c = u - (u / nch) * nch;
            Raw8<QRaw> v;
            v.clear();
            if (h < hpc) {
                const int64_t off = static_cast<int64_t>(q_begin) * p.query_strides[0] +
                                    static_cast<int64_t>(qh0 + h) * p.query_strides[1] +
                                    static_cast<int64_t>(c) * CHUNK * p.query_strides[2];
                v = load8(query + off, p.query_strides[2], p.query_contig != 0);
            }
            float4* dst = reinterpret_cast<float4*>(&s_q[h][c * CHUNK]);
            dst[0] = make_float4(Elem<kQuery>::to_f32(v.get(0)), Elem<kQuery>::to_f32(v.get(1)),
                                 Elem<kQuery>::to_f32(v.get(2)), Elem<kQuery>::to_f32(v.get(3)));
            dst[1] = make_float4(Elem<kQuery>::to_f32(v.get(4)), Elem<kQuery>::to_f32(v.get(5)),
                                 Elem<kQuery>::to_f32(v.get(6)), Elem<kQuery>::to_f32(v.get(7)));
        }
    }

    // ---- This split's wave tiles (absolute indices of WAVE-slot tiles).
    int t_begin = 0, t_end = 0;
    if (hi >= lo) {
        const int tb = lo / WAVE, te = hi / WAVE + 1;
        const int per = (te - tb + S - 1) / S;
        t_begin = min(te, tb + split * per);
        t_end = min(te, t_begin + per);
    }

    // ---- Per-head constants and softmax state (sinks seed split 0, wave 0 only).
    float m[DEC_HPC], l[DEC_HPC], slope[DEC_HPC];
#pragma unroll
    for (int h = 0; h < DEC_HPC; ++h) {
        m[h] = NEG_INF;
        l[h] = 0.0f;
        slope[h] = 0.0f;
        if (h < hpc) {
            if (p.alibi_slopes) slope[h] = p.alibi_slopes[static_cast<int64_t>(qh0 + h) * p.alibi_stride];
            if (p.sinks && split == 0 && wave == 0) {
                m[h] = p.sinks[static_cast<int64_t>(qh0 + h) * p.sinks_stride];
                l[h] = m[h] > NEG_INF ? 1.0f : 0.0f;
            }
        }
    }
    // Score multiplier and value multiplier: sm_scale, fp8 scales and the fp8 decode factor.
    float kmul = p.sm_scale, vmul = 1.0f;
    if (kCache == PKV_DT_U8) {
        const float un = fp8_unscale(p.kv_fp8);
        kmul *= (p.k_scale ? *p.k_scale : 1.0f) * un;
        vmul = (p.v_scale ? *p.v_scale : 1.0f) * un;
    }
    const float cap = p.logits_soft_cap;
    const int fmt = p.kv_fp8;

    const pkv_cache_addr ka = p.key_addr;
    const pkv_cache_addr va = p.value_addr;
    const CRaw* kbase = static_cast<const CRaw*>(p.key_cache) + static_cast<int64_t>(kvh) * ka.head;
    const CRaw* vbase = static_cast<const CRaw*>(p.value_cache) + static_cast<int64_t>(kvh) * va.head;
    const int32_t* btab = p.block_table + static_cast<int64_t>(seq) * p.block_table_strides[0];
    const int64_t bt_col = p.block_table_strides[1];
    const int bs = p.block_size;
    const int key_run = p.key_run;
    const int value_run = p.value_run;

    // P.V lane roles. Along tokens: lane <-> (group parity g2, dim ds + DS*j).
    const bool v_tok = kVTok;
    const int g2 = lane % V_GROUP_LANES, ds = lane / V_GROUP_LANES;
    // This lane's dims: ds + DS * j for j < nj (D need not be a multiple of DS).
    const int nj = ds < D ? (D - ds + DS - 1) / DS : 0;
    // Along D: lane <-> (slot class vts, chunk vc); ncp chunks padded to a power of two.
    int ncp = 1;
    while (ncp < nch) ncp *= 2;
    const int vc = lane & (ncp - 1), vts = lane / ncp, tsc = WAVE / ncp;

    float acc[MAXJ][DEC_HPC];
#pragma unroll
    for (int j = 0; j < MAXJ; ++j)
#pragma unroll
        for (int h = 0; h < DEC_HPC; ++h) acc[j][h] = 0.0f;

    __syncthreads();  // queries staged

    // Block-table entry of this lane's key in a wave tile (0 when not visible), loaded one tile
    // ahead so that its latency overlaps the previous tile's work.
    auto block_entry = [&](int tile) -> int32_t {
        const int jj = tile * WAVE + lane;
        return tile < t_end && jj >= lo && jj <= hi ? btab[static_cast<int64_t>(jj / bs) * bt_col] : 0;
    };
    int32_t next_entry = block_entry(t_begin + wave);
    for (int t = t_begin + wave; t < t_end; t += NW) {
        const int j = t * WAVE + lane;
        const bool valid = j >= lo && j <= hi;
        const int32_t entry = next_entry;
        next_entry = block_entry(t + NW);
        int64_t kofs = 0, vofs = -1;
        if (valid) {
            const int lb = j / bs;
            const int off = j - lb * bs;
            int64_t b = entry;
            b = b < 0 ? 0 : (b >= p.num_blocks ? p.num_blocks - 1 : b);  // never out of bounds
            kofs = b * ka.blk + static_cast<int64_t>(off) * ka.tok;
            vofs = b * va.blk + static_cast<int64_t>(off) * va.tok;
        }
        wave_sync();  // the previous tile's P.V is done with s_vofs and s_p
        s_vofs[wave][lane] = vofs;

        // ---- Scores: this lane's key against every head's query.
        float dot[DEC_HPC];
#pragma unroll
        for (int h = 0; h < DEC_HPC; ++h) dot[h] = 0.0f;
        if (valid) {
            const CRaw* kp = kbase + kofs;
            for (int c0 = 0; c0 < nch; c0 += K_LOADS) {
                Raw8<CRaw> buf[K_LOADS];
#pragma unroll
                for (int u = 0; u < K_LOADS; ++u) {
                    buf[u].clear();
                    if (c0 + u < nch) buf[u] = load8_run(kp, ka, (c0 + u) * CHUNK, key_run);
                }
#pragma unroll
                for (int u = 0; u < K_LOADS; ++u) {
                    if (c0 + u < nch) {
                        float f[CHUNK];
                        Deq8<kCache>::run(buf[u], fmt, f);
#pragma unroll
                        for (int h = 0; h < DEC_HPC; ++h) {
                            if (h < hpc) {
                                const float4 qa = *reinterpret_cast<const float4*>(&s_q[h][(c0 + u) * CHUNK]);
                                const float4 qb = *reinterpret_cast<const float4*>(&s_q[h][(c0 + u) * CHUNK + 4]);
                                dot[h] += qa.x * f[0] + qa.y * f[1] + qa.z * f[2] + qa.w * f[3] + qb.x * f[4] +
                                          qb.y * f[5] + qb.z * f[6] + qb.w * f[7];
                            }
                        }
                    }
                }
            }
        }

        // ---- Online softmax per head over the wave tile.
#pragma unroll
        for (int h = 0; h < DEC_HPC; ++h) {
            if (h < hpc) {
                float s = NEG_INF;
                if (valid) {
                    s = dot[h] * kmul;
                    if (cap > 0.0f) s = cap * tanhf(s / cap);
                    s += slope[h] * static_cast<float>(j - pos);
                }
                const float mn = fmaxf(m[h], wave_max(s));
                float pr = 0.0f, alpha = 1.0f;
                if (mn != NEG_INF) {  // uniform; -inf - -inf would be NaN
                    pr = expf(s - mn);
                    alpha = expf(m[h] - mn);
                }
                l[h] = l[h] * alpha + wave_sum(pr);
                m[h] = mn;
                s_p[wave][h][lane] = pr;
#pragma unroll
                for (int jj = 0; jj < MAXJ; ++jj) acc[jj][h] *= alpha;
            }
        }
        wave_sync();  // s_vofs and s_p visible to the whole wave

        // ---- P.V.
        if (v_tok) {
            const bool run8 = value_run == CHUNK;
#pragma unroll
            for (int gi = 0; gi < GPL; ++gi) {
                const int t8 = (g2 + gi * V_GROUP_LANES) * CHUNK;  // first slot of the group in the tile
                const int64_t first = s_vofs[wave][t8];
                const float* prob = &s_p[wave][0][t8];
                // Whole group visible: one vector load per dim (8 slots of one block, as
                // block_size % 8 == 0). Else (an edge of the visible range, or blocks that are
                // not a multiple of 8 slots) slot by slot, only the visible ones.
                if (run8 && first >= 0 && s_vofs[wave][t8 + CHUNK - 1] >= 0) {
#pragma unroll
                    for (int j0 = 0; j0 < MAXJ; j0 += VB) {
                        if (j0 < nj) {
                            Raw8<CRaw> vb[VB];
#pragma unroll
                            for (int u = 0; u < VB; ++u) {
                                vb[u].clear();
                                if (j0 + u < nj) vb[u].load_all(vbase + static_cast<int64_t>(ds + DS * (j0 + u)) * va.dhi + first);
                            }
                            pv_units<kCache, VB>(acc + j0, prob, WAVE, vb, nj - j0, fmt, hpc);
                        }
                    }
                } else {
#pragma unroll
                    for (int jj = 0; jj < MAXJ; ++jj) {
                        if (jj < nj) {
                            const CRaw* src = vbase + static_cast<int64_t>(ds + DS * jj) * va.dhi;
                            Raw8<CRaw> v[1];
                            v[0].clear();
                            for (int i = 0; i < CHUNK; ++i) {
                                const int64_t vo = s_vofs[wave][t8 + i];
                                if (vo >= 0) v[0].set(i, src[vo]);
                            }
                            pv_units<kCache, 1>(acc + jj, prob, WAVE, v, 1, fmt, hpc);
                        }
                    }
                }
            }
        } else if (vc < nch) {
            // Dims contiguous: this lane's chunk vc for slots vts, vts + tsc, ...
            for (int i0 = 0; i0 < ncp; i0 += V_LOADS) {
                Raw8<CRaw> vb[V_LOADS];
#pragma unroll
                for (int u = 0; u < V_LOADS; ++u) {
                    vb[u].clear();
                    if (i0 + u < ncp) {
                        const int64_t vo = s_vofs[wave][vts + tsc * (i0 + u)];
                        if (vo >= 0) vb[u] = load8_run(vbase + vo, va, vc * CHUNK, value_run);
                    }
                }
#pragma unroll
                for (int u = 0; u < V_LOADS; ++u) {
                    if (i0 + u < ncp) {
                        const int slot = vts + tsc * (i0 + u);
                        float f[CHUNK];
                        Deq8<kCache>::run(vb[u], fmt, f);
#pragma unroll
                        for (int h = 0; h < DEC_HPC; ++h) {
                            if (h < hpc) {
                                const float pr = s_p[wave][h][slot];
#pragma unroll
                                for (int i = 0; i < CHUNK; ++i) acc[i][h] += pr * f[i];
                            }
                        }
                    }
                }
            }
        }
    }

    // ---- Merge: lanes sharing dims, then waves (through shared memory).
    if (v_tok) {
#pragma unroll
        for (int jj = 0; jj < MAXJ; ++jj)
#pragma unroll
            for (int h = 0; h < DEC_HPC; ++h) acc[jj][h] += pkv_shfl_xor(acc[jj][h], 1, WAVE);
        if (g2 == 0) {
#pragma unroll
            for (int jj = 0; jj < MAXJ; ++jj) {
                const int d = ds + DS * jj;
                if (jj < nj) {
#pragma unroll
                    for (int h = 0; h < DEC_HPC; ++h)
                        if (h < hpc) s_acc[wave][h][d] = acc[jj][h];
                }
            }
        }
    } else {
        for (int o = ncp; o < WAVE; o *= 2) {
#pragma unroll
            for (int jj = 0; jj < CHUNK; ++jj)
#pragma unroll
                for (int h = 0; h < DEC_HPC; ++h) acc[jj][h] += pkv_shfl_xor(acc[jj][h], o, WAVE);
        }
        if (vts == 0 && vc < nch) {
#pragma unroll
            for (int jj = 0; jj < CHUNK; ++jj)
#pragma unroll
                for (int h = 0; h < DEC_HPC; ++h)
                    if (h < hpc) s_acc[wave][h][vc * CHUNK + jj] = acc[jj][h];
        }
    }
    if (lane == 0) {
#pragma unroll
        for (int h = 0; h < DEC_HPC; ++h) {
            s_ml[wave][h][0] = m[h];
            s_ml[wave][h][1] = l[h];
        }
    }
    __syncthreads();

    merge_waves<kQuery, NW, DEC_HPC, kMaxD>(p, s_acc, s_ml, hpc, seq, split, q_begin, qh0, vmul);
}

#if defined(PKV_CUDA)
// ------------------------------------------------------------------------------------------
// Tensor-core variants (NVIDIA): the same algorithm, with both products on mma.sync m16n8k16
// (f32 accumulation). A wave tile of 32 keys costs 32-48 MMAs instead of ~G FMAs, conversions
// and shared reads per cache element.
//
//   scores   S[key x head]  = K[key x dim] . Q^T[dim x head]     (m = 16 keys, n = 8 heads)
//   output   O^T[dim x head] += V^T[dim x key] . P^T[key x head]  (m = 16 dims, n = 8 heads)
//
// Operands come straight from 16-byte chunks: a sum over k does not depend on the order of k,
// so k is permuted so that lane (g = lane / 4, t = lane % 4) holds, for each 32-wide k block,
// the 8 consecutive elements 8t..8t+7 of its rows (one chunk of a 16-bit cache, half a chunk
// of an fp8 cache, whose 16 codes serve two k blocks): elements 8t+{0,1}, 8t+{2,3}, 8t+{4,5},
// 8t+{6,7} are the fragment pairs k = {2t, 2t+8} of step 0 and 1. The queries (B of the
// scores) and the probabilities (B of the output) use the same permutation.
//
// paged_decode_mma_kernel (sm_80+): key chunks go straight to registers and a tile's value
// chunks to a per-warp shared-memory stage by cp.async; three-warp work-groups, four per SM,
// keep 12 warps' loads in flight. Caches of the query's dtype, or e4m3fn codes (sm_89+),
// converted to f16 pairs in hardware (exact) to meet f16 queries (bf16 queries are scaled per
// head by a power of two into f16's range, exact for bf16's 8-bit significand). A one-warp
// design that staged keys too through cp.async measured slower (docs/performance.md:
// latency-bound with one warp per scheduler, and cp.async of keys cost L2 request bandwidth).
// ------------------------------------------------------------------------------------------
template <bool kCond, typename T, typename F>
struct Pick {
    typedef T type;
};
template <typename T, typename F>
struct Pick<false, T, F> {
    typedef F type;
};

constexpr int MMA_HEADS = 8;   // n of m16n8k16: query heads per work-group (src/core/plan.rs)
// Lazy rescaling: how far (natural log) a score may exceed the running reference before the
// reference moves; probabilities stay below e^8 ~ 2981, well inside f16's range.
constexpr float LAZY_RESCALE = 8.0f;

// n / d for 0 <= n < 2^31 by a multiply and a shift (Granlund-Montgomery, the round-up
// variant): mul = ceil(2^(31 + l) / d) with l = ceil(log2 d) fits 32 bits and the error of
// n * mul / 2^(31 + l) against n / d stays below 1 / d. A division by a run-time divisor is a
// ~20-instruction chain; the decode tiles divide positions by the block size twice per tile.
struct FastDiv {
    uint32_t mul;
    int shift;
};
PKV_DEVICE FastDiv fast_div(int d) {
    FastDiv f;
    f.shift = 31 + (32 - __clz(d - 1));
    f.mul = static_cast<uint32_t>(((1ull << f.shift) + static_cast<uint64_t>(d) - 1) / static_cast<uint64_t>(d));
    return f;
}
PKV_DEVICE int divide(int n, FastDiv f) {
    return static_cast<int>((static_cast<uint64_t>(n) * f.mul) >> f.shift);
}
constexpr int MMA_TILE = 32;   // keys per wave tile: two 16-key m-tiles (a warp of 32)
// Threads and resident work-groups per SM (register caps) of the register kernel's head_size
// <= 128 and <= 256 instances (src/core/plan.rs decode_threads / decode_resident_per_cu).
// Three warps per work-group at four per SM: a whole wave of 528 work-groups is resident on an
// H200 (e.g. 64 sequences x 8 kv heads), so no second, mostly idle wave of work-groups trails
// the first. The 256 instance holds twice the accumulators: four warps at two per SM.
constexpr int MMA_THREADS_SMALL = 96;
constexpr int MMA_THREADS_LARGE = 128;
constexpr int MMA_MIN_BLOCKS_SMALL = 4;
constexpr int MMA_MIN_BLOCKS_LARGE = 2;

// A cache chunk of 8 elements as four 16-bit operand pairs: 16-bit caches as loaded; fp8
// (e4m3fn: the planner sends no other format here) through the hardware conversion to f16
// (exact, NaN kept; sm_89+, planned only there).
PKV_DEVICE void operand_pairs(const Raw8<uint16_t>& r, uint32_t* w) {
    w[0] = r.w[0], w[1] = r.w[1], w[2] = r.w[2], w[3] = r.w[3];
}
PKV_DEVICE void operand_pairs(const Raw8<uint8_t>& r, uint32_t* w) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const __half2_raw h =
            __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(r.w[i / 2] >> (16 * (i % 2))), __NV_E4M3);
        w[i] = static_cast<uint32_t>(h.x) | (static_cast<uint32_t>(h.y) << 16);
    }
#else
    (void)r;
    w[0] = w[1] = w[2] = w[3] = 0u;  // never launched: the planner needs sm_89 for fp8 here
#endif
}

// d += A . B over one 32-wide k block: rows r0 (m rows 0..7) and r1 (rows 8..15) as pairs.
template <int kOp>
PKV_DEVICE void mma_k32(float* d, const uint32_t* r0, const uint32_t* r1, const uint32_t* b) {
    Mma<kOp>::run(d, r0[0], r1[0], r0[1], r1[1], b[0], b[1]);
    Mma<kOp>::run(d, r0[2], r1[2], r0[3], r1[3], b[2], b[3]);
}

// 16 fp8 (e4m3fn) codes of a key chunk as two 8-code halves.
PKV_DEVICE Raw8<uint8_t> fp8_half(const Raw8<uint16_t>& r, int half) {
    Raw8<uint8_t> h;
    h.w[0] = r.w[2 * half];
    h.w[1] = r.w[2 * half + 1];
    return h;
}

// Key chunk of one lane (16 bytes: 8 16-bit elements or 16 fp8 codes) starting at dim d0 of a
// cached token; dims past head_size read as zero. fp8 `wide`: 16 codes along head_size are one
// aligned 16-byte access (src/gpu/params.rs key_wide), else two 8-code halves.
template <bool kFp8, typename CRaw>
PKV_DEVICE Raw8<uint16_t> load_key_chunk(const CRaw* base, const pkv_cache_addr& a, int d0, int D, int run,
                                         bool wide) {
    Raw8<uint16_t> r;
    if (!kFp8) {
        r = load8_run(reinterpret_cast<const uint16_t*>(base), a, d0, run);
    } else if (wide && d0 + 16 <= D) {
        r.load_all(reinterpret_cast<const uint16_t*>(base + dim_offset(a, d0)));
    } else {
        r.clear();
        const Raw8<uint8_t> lo = load8_run(reinterpret_cast<const uint8_t*>(base), a, d0, run);
        r.w[0] = lo.w[0], r.w[1] = lo.w[1];
        if (d0 + 8 < D) {
            const Raw8<uint8_t> hi = load8_run(reinterpret_cast<const uint8_t*>(base), a, d0 + 8, run);
            r.w[2] = hi.w[0], r.w[3] = hi.w[1];
        }
    }
    return r;
}

// The register kernel. kQuery: the query (and output) dtype, f16 or bf16; kFp8: the cache
// holds e4m3fn codes (sm_89+), else elements of kQuery. kMaxD: 128 or 256.
// Dynamic shared memory: one tile's value chunks per warp (8 slots of a dim per lane and chunk:
// 16 bytes, 8 for fp8; src/core/plan.rs decode_shared_mem_bytes adds the same).
constexpr int mma_value_stage_bytes(int max_d, bool fp8) {
    return (max_d <= 128 ? MMA_THREADS_SMALL : MMA_THREADS_LARGE) / 32 * 2 * (max_d / 16) * 32 * (fp8 ? 8 : 16);
}
// An upper bound of the register kernel's static shared memory (its __shared__ arrays below,
// plus alignment): the launcher opts in to more than the default when static and dynamic
// together exceed it. (Separate arrays, not one struct whose size the launcher could take: a
// version with the struct and other changes measured 20% slower, not yet isolated;
// docs/performance.md.)
constexpr int mma_static_bytes_bound(int max_d) {
    return (max_d <= 128 ? MMA_THREADS_SMALL : MMA_THREADS_LARGE) / 32 *
               (2 * MMA_TILE * 8 + 2 * MMA_HEADS * MMA_TILE * 2 + MMA_HEADS * max_d * 4 + MMA_HEADS * 2 * 4) +
           MMA_HEADS * (max_d + CHUNK) * 2 + MMA_HEADS * 4 + 256;
}

template <int kQuery, bool kFp8, int kMaxD, bool kFast>
__global__ void __launch_bounds__(kMaxD <= 128 ? MMA_THREADS_SMALL : MMA_THREADS_LARGE,
                                  kMaxD <= 128 ? MMA_MIN_BLOCKS_SMALL : MMA_MIN_BLOCKS_LARGE)
    paged_decode_mma_kernel(pkv_attention_params p) {
    typedef typename Pick<kFp8, uint8_t, uint16_t>::type CRaw;  // cache element
    typedef uint16_t ORaw;                                      // operand element (f16/bf16)
    // Operand dtype of both products: the query's for 16-bit caches, f16 for fp8 caches (the
    // hardware converts e4m3fn pairs to f16 exactly).
    const int kOp = kFp8 ? PKV_DT_F16 : kQuery;
    const int MMA_THREADS = kMaxD <= 128 ? MMA_THREADS_SMALL : MMA_THREADS_LARGE;
    const int NW = MMA_THREADS / 32;
    // Keys: a lane loads 16 bytes per row and k block, 8 elements (16-bit) or 16 (fp8): k
    // blocks of 32 or 64 dims, one or two mma_k32 per block.
    const int KE = kFp8 ? 16 : CHUNK;
    const int NB = kMaxD / (4 * KE);
    const int NMD = kMaxD / 16;  // 16-dim m-tiles of the output
    // Key loads in flight per lane: both m-tiles at once for head sizes up to 128, one at a
    // time above (where the accumulators are twice as many).
    const int KMT = kMaxD <= 128 ? 2 : 1;
    // Key loads per batch: four chunks per row; two for the 16-bit head-256 instance, whose
    // branch-free loads (kFast) need the registers (255 and a spill with four).
    const int KB = kMaxD > 128 && !kFp8 ? 2 : (NB < 4 ? NB : 4);
    static_assert(NB % KB == 0, "load batches tile the operands");

    // Keys one tile ahead (kPipe, below; fp8 run-folded instances up to head 128): the next
    // tile's offsets are written while this tile's values may still read theirs, so offsets are
    // double-buffered there.
    const bool kPipe = kFp8 && kFast && kMaxD <= 128;
    const int OB = kPipe ? 2 : 1;
    __shared__ int64_t s_kofs[OB][NW][MMA_TILE];  // key offset per slot (-1: not visible)
    __shared__ int64_t s_vofs[OB][NW][MMA_TILE];  // value offset per slot (-1: not visible)
    __shared__ __attribute__((aligned(16))) ORaw s_q[MMA_HEADS][kMaxD + CHUNK];  // queries (padded rows)
    __shared__ float s_qmul[MMA_HEADS];  // per head: the power of two its queries were scaled by, inverted
    // Probabilities in the operand dtype, split as p = hi + lo (two products): 16-bit
    // probabilities alone would cost ~3 significant digits against the f32 softmax.
    __shared__ __attribute__((aligned(16))) ORaw s_pb[NW][2][MMA_HEADS][MMA_TILE];
    __shared__ __attribute__((aligned(16))) float s_acc[NW][MMA_HEADS][kMaxD];  // per-wave outputs (end)
    __shared__ float s_ml[NW][MMA_HEADS][2];                                     // per-wave (max, sum)
    // The tile's value chunks, copied by cp.async when the tile starts so that their round
    // trip overlaps the keys' and the scores (dynamic: [NW][2 * NMD][32], mma_value_stage_bytes).
    extern __shared__ __attribute__((aligned(16))) unsigned char smem[];
    Raw8<CRaw>* s_vstage = reinterpret_cast<Raw8<CRaw>*>(smem);

    const int tid = threadIdx.x;
    const int lane = tid % 32;
    const int wave = tid / 32;
    const int g = lane / 4, t = lane % 4;
    static_assert(sizeof(s_acc) >= (DECODE_ORDER_MAX_SEQS + 1) * sizeof(int), "the order's scratch fits");
    const DecodeItem item = decode_item(p, reinterpret_cast<int*>(&s_acc[0][0][0]));
    const int seq = item.seq;
    // The sequence's length is loaded with its query offsets (not after the test), so that the
    // work-group's dependent loads before its first keys are one round trip fewer.
    const int32_t seq_len_raw = p.seq_lens[static_cast<int64_t>(seq) * p.seq_lens_stride];
    const int q_begin = qsl_at(p, seq);
    const int q_end = qsl_at(p, seq + 1);
    if (q_end - q_begin != 1) {  // uniform: not a decode row
        poison_rows<kQuery>(p, item, q_begin, q_end);
        return;
    }

    const DecodeHeads heads = decode_heads(p, item);
    const int kvh = heads.kvh;
    const int split = item.split;
    const int S = p.decode_splits;
    const int D = p.head_size;
    const int nch = D / CHUNK;
    const int qh0 = heads.qh0;
    const int hpc = heads.hpc;
    const int64_t max_len = static_cast<int64_t>(p.max_blocks_per_seq) * p.block_size;
    const int seq_len = clamp_int(seq_len_raw, 0, max_len);
    const int pos = seq_len - 1;
    const int lo = p.sliding_window > 0 ? max(0, pos - p.sliding_window + 1) : 0;
    const int hi = seq_len - 1;

    int t_begin = 0, t_end = 0;
    if (hi >= lo) {
        const int tb = lo / MMA_TILE, te = hi / MMA_TILE + 1;
        const int per = (te - tb + S - 1) / S;
        t_begin = min(te, tb + split * per);
        t_end = min(te, t_begin + per);
    }

    const int32_t* btab = p.block_table + static_cast<int64_t>(seq) * p.block_table_strides[0];
    const int64_t bt_col = p.block_table_strides[1];
    const int bs = p.block_size;
    const FastDiv bs_div = fast_div(bs);
    // Block-table entry of this lane's key in a wave tile (0 when not visible), loaded one tile
    // ahead so that its latency overlaps the previous tile's work.
    auto block_entry = [&](int tile) -> int32_t {
        const int j = tile * MMA_TILE + lane;
        const int32_t* row = btab;
        if (kPipe) {
            // The row pointer recomputed per tile rather than kept: with the next tile's keys
            // held in registers, ptxas spilled it (and reloaded it every tile).
            int s = seq;
            asm volatile("" : "+r"(s));
            row = p.block_table + static_cast<int64_t>(s) * p.block_table_strides[0];
        }
        return tile < t_end && j >= lo && j <= hi ? row[static_cast<int64_t>(divide(j, bs_div)) * bt_col] : 0;
    };
    // The first tile's entry is loaded now, beside the queries (one round trip, not two).
    int32_t next_entry = block_entry(t_begin + wave);

    // ---- Queries -> shared in the operand dtype (rows padded by 16 bytes against bank
    // conflicts), a head per warp, lane <-> 8-element chunk (head_size <= 256: at most 32);
    // lane (g, t) later reads head g's chunks as its B fragments. Chunks past head_size and
    // heads past the work-group's stay zero. (Shared rather than registers: the 256-dim
    // instance needs those registers.)
    for (int h = wave; h < MMA_HEADS; h += NW) {
        const int c = lane;
        Raw8<ORaw> v;
        v.clear();
        if (h < hpc && c < nch) {
            const int64_t off = static_cast<int64_t>(q_begin) * p.query_strides[0] +
                                static_cast<int64_t>(qh0 + h) * p.query_strides[1] +
                                static_cast<int64_t>(c) * CHUNK * p.query_strides[2];
            v = load8(static_cast<const ORaw*>(p.query) + off, p.query_strides[2], p.query_contig != 0);
        }
        float mul = 1.0f;
        if (kFp8 && kQuery == PKV_DT_BF16) {
            // bf16 -> f16 with a power of two per head that puts the largest element in
            // [2^14, 2^15): exact for every element down to 2^-28 of the largest.
            float mx = 0.0f;
#pragma unroll
            for (int i = 0; i < CHUNK; ++i) mx = fmaxf(mx, fabsf(Elem<PKV_DT_BF16>::to_f32(v.get(i))));
            mx = wave_max(mx);  // (NVIDIA only: a wave is the warp)
            int e = 0;
            frexpf(mx, &e);  // mx < 2^e
            // An infinite element keeps scale 1 (the scores are infinite or NaN either way, as
            // on the CPU); NaN elements stay NaN.
            const int shift = mx > 0.0f && mx <= 3.0e38f ? min(126, max(-126, 15 - e)) : 0;
            const float scale = ldexpf(1.0f, shift);
            mul = ldexpf(1.0f, -shift);
#pragma unroll
            for (int i = 0; i < CHUNK; ++i) v.set(i, pkv_f32_to_f16_bits(Elem<PKV_DT_BF16>::to_f32(v.get(i)) * scale));
        }
        if (c < kMaxD / CHUNK) v.store_all(&s_q[h][c * CHUNK]);
        if (c == 0) s_qmul[h] = mul;
    }
    __syncthreads();

    // Softmax state of this lane's heads 2t and 2t+1 (replicated over g).
    const float kscale = kFp8 && p.k_scale ? *p.k_scale : 1.0f;
    float m[2], l[2], slope[2], kmul[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        const int h = 2 * t + e;
        m[e] = NEG_INF;
        l[e] = 0.0f;
        slope[e] = 0.0f;
        kmul[e] = p.sm_scale * kscale * s_qmul[h];
        if (h < hpc) {
            if (p.alibi_slopes) slope[e] = p.alibi_slopes[static_cast<int64_t>(qh0 + h) * p.alibi_stride];
            if (p.sinks && split == 0 && wave == 0) {
                m[e] = p.sinks[static_cast<int64_t>(qh0 + h) * p.sinks_stride];
                // l is a per-lane partial sum (summed over the 8 lanes of a head at the end):
                // the sink's term counts once.
                l[e] = m[e] > NEG_INF && g == 0 ? 1.0f : 0.0f;
            }
        }
    }
    const float cap = p.logits_soft_cap;
    const pkv_cache_addr ka = p.key_addr;
    const pkv_cache_addr va = p.value_addr;
    const CRaw* kbase = static_cast<const CRaw*>(p.key_cache) + static_cast<int64_t>(kvh) * ka.head;
    const CRaw* vbase = static_cast<const CRaw*>(p.value_cache) + static_cast<int64_t>(kvh) * va.head;
    // kFast: the twin for the common layout (`key_fast`, proven on the host by
    // src/gpu/params.rs fast_key_chunks): keys come in whole 16-byte runs (16-bit: x-groups of
    // 8; fp8: `key_wide`), so the compiler folds the run-length variants of every key load away
    // (~18% fewer instructions, a third fewer branches; folding the head size too spilled).
    // Every instance has its twin since session 5 (the 16-bit head-128 twin had measured
    // slower in earlier builds; with the branch-free loads it gained 1-3 points). Measured
    // differences belong to a whole build: nvcc compiles every instance in one translation
    // unit, and adding one instance changed the SASS of others whose source did not change
    // (docs/performance.md).
    const int krun = kFast ? CHUNK : p.key_run;
    const bool kwide = kFast ? true : p.key_wide != 0;
    const bool run8 = p.value_run == CHUNK;
    // kFast also has the offset of a lane's key chunk inside a token linear in the chunk
    // index (x-groups that divide 4 chunks, or one x-group: `key_fast`): chunk b of this
    // lane starts at krow + b * kdstep, computed here once instead of per load (the
    // per-load address arithmetic was a sixth of a tile's time; docs/performance.md).
    const CRaw* krow = kbase + dim_offset(ka, t * KE);
    const int64_t kdstep = dim_offset(ka, 4 * KE);

    float o[NMD][4];  // O^T fragments: dims 16md + g (+8), heads 2t, 2t+1
#pragma unroll
    for (int md = 0; md < NMD; ++md)
#pragma unroll
        for (int i = 0; i < 4; ++i) o[md][i] = 0.0f;

    // Blocks longer than a tile: the work-group's warps take consecutive tiles in lockstep (a
    // barrier per round), so that their pieces of each key and value row (512 and 64 bytes
    // per warp in a 2048-slot block) reach DRAM together as longer bursts (B64 L4k block 2048:
    // 77 -> 83.5% of copy). Not for head sizes above 128: with two work-groups per SM the
    // barrier cost more than it gained (head 256: 75.4 -> 72.7%; with the L2 hint of the value
    // copies, see copy_async, 90.4 -> 87.4). At head 128 the barrier still pays with the hint:
    // without the barrier, block 2048 measured 89.3% against 91.1 (docs/performance.md,
    // session 10). Pacing the warps within one round of each other (an mbarrier) instead of
    // the barrier lost 6-9 points.
    const bool lockstep = kMaxD <= 128 && p.block_size > MMA_TILE;
    // 16-bit value copies through L1 (`cp.async.ca`) for blocks up to a tile, around it
    // (`.cg`) for longer ones. At block 16 a lane pair's copies share a 32-byte sector (a
    // block's dim row) and four pairs a line: through L1 the pairs' requests merge, and the L2,
    // which Nsight Compute had at 90% of its peak against DRAM at 83%, gets half of them (B64
    // L4k bs16 90 -> 95.5% of copy on one machine kind, 92 -> 98 on the other). With every
    // copy through L1, 2048- and 544-slot blocks lost 3-4 points (head 256, with its larger
    // stage, 22): there each row piece is 64 bytes of a new line.
    const bool values_l1 = p.block_size <= MMA_TILE;
    // Value rows that are not whole 128-byte lines (block 544: 1088 bytes) share the lines at
    // their ends with the neighbouring rows' pieces from the block's other end, which the
    // 128-byte hint would fetch long before their use: a tile holding a block's first or last
    // slot copies without the hint there (scripts/h200/paged_read.cu order 14).
    const bool rows_in_lines = (va.dhi * static_cast<int64_t>(sizeof(CRaw))) % 128 == 0;
    const int rounds = (t_end - t_begin + NW - 1) / NW;

    // A tile's key and value offsets (one slot per lane) into offset buffer `ob`.
    auto tile_offsets = [&](int tile, int32_t entry, int ob) {
        const int j = tile * MMA_TILE + lane;
        int64_t kofs = -1, vofs = -1;
        if (j >= lo && j <= hi) {
            const int lb = divide(j, bs_div);
            const int off = j - lb * bs;
            int64_t b = entry;
            b = b < 0 ? 0 : (b >= p.num_blocks ? p.num_blocks - 1 : b);  // never out of bounds
            kofs = b * ka.blk + static_cast<int64_t>(off) * ka.tok;
            vofs = b * va.blk + static_cast<int64_t>(off) * va.tok;
        }
        wave_sync();  // the tile that used this buffer is done with its offsets and probabilities
        s_kofs[ob][wave][lane] = kofs;
        s_vofs[ob][wave][lane] = vofs;
        wave_sync();
    };
    // One batch of key chunks (m-tiles mt0.., k blocks b0..) of the tile whose offsets are in `ob`.
    auto load_keys = [&](int ob, int mt0, int b0, Raw8<uint16_t> (&kf)[KMT][2][KB]) {
#pragma unroll
        for (int mi = 0; mi < KMT; ++mi)
#pragma unroll
            for (int rh = 0; rh < 2; ++rh) {
                const int64_t ko = s_kofs[ob][wave][16 * (mt0 + mi) + 8 * rh + g];
                // kFast instances: no branch per load. A key that is not visible reads the
                // first slot of block 0 instead (inside the cache; its score row is masked to
                // -inf whatever the bytes), and every chunk below the head size is whole
                // (`key_fast`).
                const CRaw* kp = krow + (ko < 0 ? 0 : ko);
#pragma unroll
                for (int b = 0; b < KB; ++b) {
                    const int d0 = (4 * (b0 + b) + t) * KE;
                    kf[mi][rh][b].clear();
                    if (kFast) {
                        if (d0 < D) kf[mi][rh][b].load_all(reinterpret_cast<const uint16_t*>(kp + (b0 + b) * kdstep));
                    } else if (ko >= 0 && d0 < D) {
                        kf[mi][rh][b] = load_key_chunk<kFp8>(kbase + ko, ka, d0, D, krun, kwide);
                    }
                }
            }
    };

    // kPipe: a tile's keys are loaded into registers during the tile before it, after that
    // tile's softmax (its own keys consumed), so that their round trip overlaps its P.V and the
    // next tile's start instead of preceding the next scores. A read-only kernel with this
    // access pattern streams an fp8 cache at 100% of the copy rate (scripts/h200/paged_read.cu)
    // where this kernel reached 84%; with keys ahead it reaches 88% (docs/performance.md). Not
    // for 16-bit caches: their keys are twice the registers, ptxas spilled, and they lost 3-5
    // points. Not through shared memory either: fp8 keys by cp.async measured 67%.
    static_assert(!kPipe || (NB == KB && KMT == 2), "keys ahead are one batch per tile");
    Raw8<uint16_t> kf_next[KMT][2][KB];
    if (kPipe && t_begin + wave < t_end) {
        tile_offsets(t_begin + wave, next_entry, 0);
        next_entry = block_entry(t_begin + wave + NW);
        load_keys(0, 0, 0, kf_next);
    }
    for (int round = 0; round < rounds; ++round) {
        const int tile = t_begin + round * NW + wave;
        const int ob = kPipe ? round & 1 : 0;
        if (lockstep) __syncthreads();
        if (tile >= t_end) continue;  // (uniform per warp)
        const int t0 = tile * MMA_TILE;
        if (!kPipe) {
            const int32_t entry = next_entry;
            next_entry = block_entry(tile + NW);
            tile_offsets(tile, entry, 0);
        }
        // ---- Values first: when every lane's 8 slots of a dim are one access (8 slots of one
        // block, block_size % 8 == 0), this lane's chunks go to the stage now and land while
        // the keys load and the scores and softmax run (one memory round trip per tile, not
        // two). A lane reads back only its own chunks: no barrier, only its own wait.
        const int64_t first = s_vofs[ob][wave][8 * t];
        const bool whole = run8 && first >= 0 && s_vofs[ob][wave][8 * t + CHUNK - 1] >= 0;
        const bool values_ahead = __all_sync(0xffffffffu, whole);
        Raw8<CRaw>* my_values = s_vstage + wave * (2 * NMD) * 32 + lane;
        // Issued right after the tile's first batch of key loads: the load/store unit takes
        // requests in order, and the keys are on the tile's critical path (scores, softmax)
        // while the values are needed only by P.V. (Measured neutral against values first,
        // docs/performance.md; kept as the order the critical path asks for.)
        auto issue_values = [&]() {
            if (values_ahead) {
                const CRaw* vrow = vbase + static_cast<int64_t>(g) * va.dhi + first;
                // Two loops, each copy's form fixed, rather than a choice per copy (which cost
                // the other instances 1-8 points). Only the 16-bit head-128 instances have the
                // second loop: fp8 values are 8-byte `.ca` copies, and head 256's instances
                // measured 2.2 points slower with it, their copies unchanged.
                const bool line = kFp8 || kMaxD > 128 || values_l1 || rows_in_lines || [&] {
                    const int off = t0 - divide(t0, bs_div) * bs;  // the tile's first slot in its block
                    return off != 0 && off + MMA_TILE < bs;
                }();
                if (line) {
#pragma unroll 4
                    for (int i = 0; i < 2 * NMD; ++i, vrow += 8 * va.dhi)
                        copy_async<static_cast<int>(sizeof(Raw8<CRaw>))>(my_values + i * 32, vrow, 8 * i + g < D,
                                                                         values_l1);
                } else {
#pragma unroll 4
                    for (int i = 0; i < 2 * NMD; ++i, vrow += 8 * va.dhi)
                        copy_async<static_cast<int>(sizeof(Raw8<CRaw>)), false>(my_values + i * 32, vrow,
                                                                                8 * i + g < D, false);
                }
                copy_async_commit();
            }
        };

        // ---- Scores: sc[mt] = fragments of keys 16mt + g (+8) x heads 2t, 2t+1.
        // SC accumulators per m-tile, alternating over the k steps and summed at the end: with
        // two, each chain of dependent MMAs is half as long (fixed-latency dependencies were the
        // largest stall; docs/performance.md). Measured per instance: head 256 gained (79 ->
        // 85.5%), fp8 at head 128 was unchanged and the 16-bit head-128 instance lost 22 points,
        // so only the 256 instances split.
        const int SC = kMaxD > 128 ? 2 : 1;
        float sc2[SC][2][4];
#pragma unroll
        for (int q = 0; q < SC; ++q)
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) sc2[q][mt][0] = sc2[q][mt][1] = sc2[q][mt][2] = sc2[q][mt][3] = 0.0f;
        if (kPipe) issue_values();  // (the keys were loaded during the previous tile)
#pragma unroll
        for (int mt0 = 0; mt0 < 2; mt0 += KMT) {
#pragma unroll
            for (int b0 = 0; b0 < NB; b0 += KB) {
                Raw8<uint16_t> kf[KMT][2][KB];
                if (kPipe) {
#pragma unroll
                    for (int mi = 0; mi < KMT; ++mi)
#pragma unroll
                        for (int rh = 0; rh < 2; ++rh)
#pragma unroll
                            for (int b = 0; b < KB; ++b) kf[mi][rh][b] = kf_next[mi][rh][b];
                } else {
                    load_keys(ob, mt0, b0, kf);
                    if (mt0 == 0 && b0 == 0) issue_values();
                }
#pragma unroll
                for (int b = 0; b < KB; ++b) {
                    const ORaw* qrow = &s_q[g][(4 * (b0 + b) + t) * KE];
#pragma unroll
                    for (int half = 0; half < KE / CHUNK; ++half) {
                        const uint4 q4 = *reinterpret_cast<const uint4*>(qrow + half * CHUNK);
                        const uint32_t qf[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
                        for (int mi = 0; mi < KMT; ++mi) {
                            uint32_t a0[4], a1[4];
                            if (kFp8) {
                                operand_pairs(fp8_half(kf[mi][0][b], half), a0);
                                operand_pairs(fp8_half(kf[mi][1][b], half), a1);
                            } else {
                                operand_pairs(kf[mi][0][b], a0);
                                operand_pairs(kf[mi][1][b], a1);
                            }
                            mma_k32<kOp>(sc2[(b + half) % SC][mt0 + mi], a0, a1, qf);
                        }
                    }
                }
            }
        }
        float sc[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                sc[mt][i] = sc2[0][mt][i];
#pragma unroll
                for (int q = 1; q < SC; ++q) sc[mt][i] += sc2[q][mt][i];
            }
        if (kPipe) wave_sync();  // the previous tile's P.V is done with s_pb

        // ---- Online softmax of heads 2t, 2t+1 over the tile's 32 keys (8 lanes share a head),
        // rescaled lazily: the probabilities are taken against the running reference m, which
        // moves only when a score exceeds it by more than LAZY_RESCALE (a warp vote, rare after
        // the first tile), so that most tiles need no shuffle, no rescale of the accumulators
        // and no exponential of the old maximum (the softmax was a third of a tile's time:
        // docs/performance.md). Probabilities stay below e^LAZY_RESCALE (f16 holds them) and l
        // is a per-lane partial sum, added over the head's lanes once at the end.
        // Scores without a branch per key (the per-key branches around the soft cap and the
        // mask were a fifth of a tile's stall samples): the cap's branch is uniform, once per
        // tile, and keys past the visible range or heads past the work-group's are selected
        // to -inf afterwards (whatever their cache bytes gave).
        float s8[2][4], lm[2];
#pragma unroll
        for (int e = 0; e < 2; ++e)
#pragma unroll
            for (int k = 0; k < 4; ++k) s8[e][k] = sc[k / 2][2 * (k % 2) + e] * kmul[e];
        if (cap > 0.0f) {
#pragma unroll
            for (int e = 0; e < 2; ++e)
#pragma unroll
                for (int k = 0; k < 4; ++k) s8[e][k] = cap * tanhf(s8[e][k] / cap);
        }
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const bool head = 2 * t + e < hpc;
            lm[e] = NEG_INF;
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const int j = t0 + 8 * k + g;  // k = 2 mt + rh: keys 16mt + 8rh + g
                const float sv = s8[e][k] + slope[e] * static_cast<float>(j - pos);
                s8[e][k] = head && j >= lo && j <= hi ? sv : NEG_INF;
                lm[e] = fmaxf(lm[e], s8[e][k]);
            }
        }
        if (__any_sync(0xffffffffu, lm[0] > m[0] + LAZY_RESCALE || lm[1] > m[1] + LAZY_RESCALE)) {
            // Both heads' maxima over the tile, their shuffles interleaved.
#pragma unroll
            for (int o2 = 4; o2 < 32; o2 *= 2) {
                const float x0 = pkv_shfl_xor(lm[0], o2, 32), x1 = pkv_shfl_xor(lm[1], o2, 32);
                lm[0] = fmaxf(lm[0], x0);
                lm[1] = fmaxf(lm[1], x1);
            }
            float alpha[2];
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const float mn = fmaxf(m[e], lm[e]);
                alpha[e] = mn != NEG_INF ? expf(m[e] - mn) : 1.0f;  // -inf - -inf would be NaN
                l[e] *= alpha[e];
                m[e] = mn;
            }
#pragma unroll
            for (int md = 0; md < NMD; ++md) {
                o[md][0] *= alpha[0];
                o[md][1] *= alpha[1];
                o[md][2] *= alpha[0];
                o[md][3] *= alpha[1];
            }
        }
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int h = 2 * t + e;
            // m = -inf: nothing visible yet for this head, every score is -inf (or NaN, dropped
            // as the maximum drops it).
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const float pr = m[e] != NEG_INF ? exp2_approx((s8[e][k] - m[e]) * LOG2_E) : 0.0f;
                l[e] += pr;
                const ORaw hi16 = Elem<kOp>::from_f32(pr);
                s_pb[wave][0][h][8 * k + g] = hi16;
                s_pb[wave][1][h][8 * k + g] = Elem<kOp>::from_f32(pr - Elem<kOp>::to_f32(hi16));
            }
        }
        if (kPipe && tile + NW < t_end) {
            // The next tile's keys, now that this tile's are consumed (see kPipe above); its
            // offsets' barriers also make the probabilities visible.
            tile_offsets(tile + NW, next_entry, ob ^ 1);
            next_entry = block_entry(tile + 2 * NW);
            load_keys(ob ^ 1, 0, 0, kf_next);
        } else {
            wave_sync();  // probabilities visible
        }

        // ---- P.V: B = probabilities of head g, keys 8t..8t+7; A = V rows (dims), keys 8t..8t+7.
        uint32_t pb[4], pl[4];
        {
            const uint4 w = *reinterpret_cast<const uint4*>(&s_pb[wave][0][g][8 * t]);
            pb[0] = w.x, pb[1] = w.y, pb[2] = w.z, pb[3] = w.w;
            const uint4 x = *reinterpret_cast<const uint4*>(&s_pb[wave][1][g][8 * t]);
            pl[0] = x.x, pl[1] = x.y, pl[2] = x.z, pl[3] = x.w;
        }
        if (values_ahead) {
            copy_async_wait<0>();
#pragma unroll
            for (int md = 0; md < NMD; ++md) {
                uint32_t a0[4], a1[4];
                operand_pairs(my_values[(2 * md) * 32], a0);
                operand_pairs(my_values[(2 * md + 1) * 32], a1);
                mma_k32<kOp>(o[md], a0, a1, pb);
                mma_k32<kOp>(o[md], a0, a1, pl);
            }
        } else {
            // An edge of the visible range, or blocks not a multiple of 8 slots: slot by slot,
            // only the visible ones. (Head sizes up to 128: the row pointer is made opaque so
            // that the compiler does not keep every row's address in registers across the tile
            // loop, which spilled at this instance's register cap. The 256 instance measured
            // slower with it: 75.4 -> 62.2% on head 256.)
            const CRaw* vrow = vbase + static_cast<int64_t>(g) * va.dhi;
            if (kMaxD <= 128) asm volatile("" : "+l"(vrow));
#pragma unroll
            for (int md = 0; md < NMD; ++md) {
                Raw8<CRaw> vf[2];
#pragma unroll
                for (int rh = 0; rh < 2; ++rh) {
                    const int d = 16 * md + 8 * rh + g;
                    vf[rh].clear();
                    if (d < D) {
                        const CRaw* src = vrow + static_cast<int64_t>(2 * md + rh) * 8 * va.dhi;
                        for (int i = 0; i < CHUNK; ++i) {
                            const int64_t vo = s_vofs[ob][wave][8 * t + i];
                            if (vo >= 0) vf[rh].set(i, src[vo]);
                        }
                    }
                }
                uint32_t a0[4], a1[4];
                operand_pairs(vf[0], a0);
                operand_pairs(vf[1], a1);
                mma_k32<kOp>(o[md], a0, a1, pb);
                mma_k32<kOp>(o[md], a0, a1, pl);
                // Keeps this rare path's scalar loads from being hoisted across dims (registers).
                asm volatile("" ::: "memory");
            }
        }
    }

    // ---- Per-wave results -> shared, then the merge.
#pragma unroll
    for (int md = 0; md < NMD; ++md) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int d = 16 * md + g + 8 * (i / 2);
            const int h = 2 * t + (i % 2);
            if (d < D) s_acc[wave][h][d] = o[md][i];
        }
    }
#pragma unroll
    for (int o2 = 4; o2 < 32; o2 *= 2) {
        const float x0 = pkv_shfl_xor(l[0], o2, 32), x1 = pkv_shfl_xor(l[1], o2, 32);
        l[0] += x0;
        l[1] += x1;
    }
    if (g == 0) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            s_ml[wave][2 * t + e][0] = m[e];
            s_ml[wave][2 * t + e][1] = l[e];
        }
    }
    __syncthreads();
    const float vmul = kFp8 && p.v_scale ? *p.v_scale : 1.0f;
    merge_waves<kQuery, NW, MMA_HEADS, kMaxD>(p, s_acc, s_ml, hpc, seq, split, q_begin, qh0, vmul);
}

#endif  // PKV_CUDA

// Merges the decode splits of one (sequence, query head): out = sum_j w_j acc_j / sum_j w_j l_j,
// w_j = e^(m_j - M). Work-groups (sequence, head, chunk range): the partials of a long single
// sequence spread over the whole GPU. Thread (chunk c, group) takes splits group, group +
// groups, ... of chunk c, at most REDUCE_SPLITS_PER_LOAD of them (REDUCE_MAX_SPLITS: 128; the
// planner asks for at most 64 on every architecture), and loads them all, maxima and partials
// together, in one memory round trip; it merges them against its own maximum, and the chunk's
// groups, lanes of one wave, merge by shuffles. History (docs/performance.md): maxima, weights
// and partials in three round trips took ~5 us of B1 L32k's 52; the groups merged through
// shared memory cost ~0.2 us more than shuffles; and 256-thread work-groups of 114 registers
// could not be resident beside four decode work-groups (61440 of an SM's 65536 registers), so
// they started only as decode work-groups left and ended 3.8 us after the decode kernel.

// Adds the partials of up to REDUCE_SPLITS_PER_LOAD splits j0, j0 + step, .. (< S) of chunk
// `c` to a running merge (m, den, num) relative to its maximum m. An empty split (m_j = -inf:
// it saw no key; its partial was never written) adds nothing.
// `acc` and `ml` point at split 0's partial of the chunk and split 0's (max, sum).
PKV_DEVICE void reduce_add_splits(const float* acc, const float2* ml_of, int j0, int step, int S, int D, float& m,
                                  float& den, float (&num)[CHUNK]) {
    float2 ml[REDUCE_SPLITS_PER_LOAD];
    float4 a[REDUCE_SPLITS_PER_LOAD][2];
    // Every load first (independent, in flight together), then the arithmetic.
#pragma unroll
    for (int b = 0; b < REDUCE_SPLITS_PER_LOAD; ++b) {
        const int j = j0 + b * step;
        ml[b] = make_float2(NEG_INF, 0.0f);
        if (j < S) {
            ml[b] = ml_of[j];
            const float4* src = reinterpret_cast<const float4*>(acc + static_cast<int64_t>(j) * D);
            a[b][0] = src[0];
            a[b][1] = src[1];
        }
    }
    float mx = m;
#pragma unroll
    for (int b = 0; b < REDUCE_SPLITS_PER_LOAD; ++b) mx = fmaxf(mx, ml[b].x);
    if (mx == NEG_INF) return;  // nothing seen yet
    const float r = expf(m - mx);  // 0 while the merge is still empty
    den *= r;
#pragma unroll
    for (int i = 0; i < CHUNK; ++i) num[i] *= r;
#pragma unroll
    for (int b = 0; b < REDUCE_SPLITS_PER_LOAD; ++b) {
        if (ml[b].x == NEG_INF) continue;
        const float w = expf(ml[b].x - mx);
        den += w * ml[b].y;
        num[0] += w * a[b][0].x;
        num[1] += w * a[b][0].y;
        num[2] += w * a[b][0].z;
        num[3] += w * a[b][0].w;
        num[4] += w * a[b][1].x;
        num[5] += w * a[b][1].y;
        num[6] += w * a[b][1].z;
        num[7] += w * a[b][1].w;
    }
    m = mx;
}

// Split groups per chunk for `splits` splits (host and device agree on it: the grid depends on it).
__host__ __device__ inline int reduce_groups(int splits) {
    int groups = 1;
    while (groups * REDUCE_SPLITS_PER_LOAD < splits && 2 * groups <= REDUCE_MAX_GROUPS) groups *= 2;
    return groups;
}

template <int kOut>
__global__ void PKV_LAUNCH_BOUNDS(REDUCE_THREADS, REDUCE_MIN_BLOCKS) decode_reduce_kernel(pkv_attention_params p) {
    // Launched as a programmatic dependent of the decode kernel where the device allows: the
    // general kernel after it may be scheduled now; wait for the partials before reading them.
    // The query offsets are the caller's (the decode kernel writes only partials and output
    // rows), so they load before the wait: after it, the partials are the only round trip. (The
    // output scale of fp8 outputs loads at the end: held from here, its register made the
    // kernel spill at 64.)
    pkv_allow_next_grid();
    const int seq = blockIdx.x;
    const int h = blockIdx.y;
    const int q_begin = qsl_at(p, seq);
    const bool decode_row = qsl_at(p, seq + 1) - q_begin == 1;
    pkv_wait_prior_grids();  // (before any exit: this kernel's completion implies the decode kernel's)
    if (!decode_row) return;  // uniform
    const int D = p.head_size;
    const int S = p.decode_splits;
    const int nch = D / CHUNK;
    const int64_t slot0 = (static_cast<int64_t>(seq) * p.num_q_heads + h) * S;

    // Thread (chunk c, group): the chunk's groups are lanes c * groups .. c * groups + groups - 1
    // of this work-group's range of chunks.
    const int groups = reduce_groups(S);
    const int c = static_cast<int>(blockIdx.z) * (REDUCE_THREADS / groups) + static_cast<int>(threadIdx.x) / groups;
    const int group = static_cast<int>(threadIdx.x) % groups;
    const bool active = c < nch;
    float m = NEG_INF, den = 0.0f, num[CHUNK];
#pragma unroll
    for (int i = 0; i < CHUNK; ++i) num[i] = 0.0f;
    if (active) {
        // This chunk of split 0's partial, and split 0's (max, sum).
        const float* acc = split_partial(p, slot0) + c * CHUNK;
        const float2* ml = split_stats(p) + slot0;
        // One batch: the launcher sends at most REDUCE_MAX_SPLITS splits. (A loop over further
        // batches kept state live across the loads: 72 registers, spilled at 64.)
        reduce_add_splits(acc, ml, group, groups, S, D, m, den, num);
    }
    // Merge the groups' running states pairwise (every lane of the wave takes part).
    for (int o = groups / 2; o > 0; o /= 2) {
        const float mo = pkv_shfl_xor(m, o, PKV_WAVE_SIZE);
        const float dn = pkv_shfl_xor(den, o, PKV_WAVE_SIZE);
        float no[CHUNK];
#pragma unroll
        for (int i = 0; i < CHUNK; ++i) no[i] = pkv_shfl_xor(num[i], o, PKV_WAVE_SIZE);
        const float M = fmaxf(m, mo);
        if (M == NEG_INF) continue;  // both empty
        const float r = expf(m - M), ro = expf(mo - M);  // an empty side weighs 0
        den = den * r + dn * ro;
#pragma unroll
        for (int i = 0; i < CHUNK; ++i) num[i] = num[i] * r + no[i] * ro;
        m = M;
    }
    if (!active || group != 0) return;
    const float out_inv_scale = p.output_scale ? 1.0f / *p.output_scale : 1.0f;
    float v[CHUNK];
#pragma unroll
    for (int i = 0; i < CHUNK; ++i) v[i] = den > 0.0f ? num[i] / den : 0.0f;
    const int64_t off = static_cast<int64_t>(q_begin) * p.output_strides[0] + static_cast<int64_t>(h) * p.output_strides[1] +
                        static_cast<int64_t>(c) * CHUNK * p.output_strides[2];
    store_out8<kOut>(p.output, off, p.output_strides[2], p.output_contig != 0, v, p.out_fp8, out_inv_scale);
}

// After a decode kernel's launch: its error, else the split reduce when there are splits.
template <int kOut>
pkv_error_t launch_reduce(const pkv_attention_params& p, pkv_stream_t stream) {
    pkv_error_t e = pkv_get_last_error();
    if (e != pkv_success || p.decode_splits == 1) return e;
    const int chunks_per_wg = REDUCE_THREADS / reduce_groups(p.decode_splits);
    const int ranges = (p.head_size / CHUNK + chunks_per_wg - 1) / chunks_per_wg;
    const dim3 grid(static_cast<unsigned>(p.num_seqs), static_cast<unsigned>(p.num_q_heads), static_cast<unsigned>(ranges));
    return pkv_launch(decode_reduce_kernel<kOut>, grid, dim3(REDUCE_THREADS), 0, stream, p.overlap_after_decode != 0, p);
}

template <int kQuery, int kCache, int kMaxD>
pkv_error_t launch(const pkv_attention_params& p, pkv_stream_t stream) {
    const dim3 grid(static_cast<unsigned>(p.num_seqs), static_cast<unsigned>(p.num_kv_heads * p.decode_head_groups),
                    static_cast<unsigned>(p.decode_splits));
    if (p.value_mode == PKV_V_ALONG_TOKENS) {
        paged_decode_kernel<kQuery, kCache, kMaxD, true><<<grid, DEC_THREADS, 0, stream>>>(p);
    } else {
        paged_decode_kernel<kQuery, kCache, kMaxD, false><<<grid, DEC_THREADS, 0, stream>>>(p);
    }
    return launch_reduce<kQuery>(p, stream);
}

template <int kQuery, int kCache>
pkv_error_t launch_for_cache(const pkv_attention_params& p, pkv_stream_t stream) {
    return p.head_size <= 128 ? launch<kQuery, kCache, 128>(p, stream) : launch<kQuery, kCache, 256>(p, stream);
}

#if defined(PKV_CUDA)
template <int kQuery, bool kFp8, int kMaxD>
pkv_error_t launch_mma(const pkv_attention_params& p, pkv_stream_t stream) {
    const dim3 grid(static_cast<unsigned>(p.num_seqs), static_cast<unsigned>(p.num_kv_heads * p.decode_head_groups),
                    static_cast<unsigned>(p.decode_splits));
    const int bytes = mma_value_stage_bytes(kMaxD, kFp8);
    void (*kernel)(pkv_attention_params) = p.key_fast != 0 ? paged_decode_mma_kernel<kQuery, kFp8, kMaxD, true>
                                                           : paged_decode_mma_kernel<kQuery, kFp8, kMaxD, false>;
    const int static_bytes = mma_static_bytes_bound(kMaxD);
    if (bytes + static_bytes > PKV_DEFAULT_DYNAMIC_SMEM) {
        const pkv_error_t e = pkv_allow_dynamic_smem(reinterpret_cast<const void*>(kernel), bytes);
        if (e != pkv_success) return e;
    }
    kernel<<<grid, kMaxD <= 128 ? MMA_THREADS_SMALL : MMA_THREADS_LARGE, bytes, stream>>>(p);
    return launch_reduce<kQuery>(p, stream);
}

// The tensor-core kernel for queries of dtype kQuery (the planner sends only e4m3fn fp8 caches).
template <int kQuery>
pkv_error_t launch_tensor_cores(const pkv_attention_params& p, pkv_stream_t stream) {
    const bool small = p.head_size <= 128;
    if (p.kv_fp8 != PKV_FP8_NONE)
        return small ? launch_mma<kQuery, true, 128>(p, stream) : launch_mma<kQuery, true, 256>(p, stream);
    return small ? launch_mma<kQuery, false, 128>(p, stream) : launch_mma<kQuery, false, 256>(p, stream);
}
#endif

template <int kQuery>
pkv_error_t launch_for_query(const pkv_attention_params& p, pkv_stream_t stream) {
    return p.kv_fp8 != PKV_FP8_NONE ? launch_for_cache<kQuery, PKV_DT_U8>(p, stream)
                                    : launch_for_cache<kQuery, kQuery>(p, stream);
}

}  // namespace
}  // namespace pkv

// Enqueues the decode kernel (and its split reduce) on `stream` when the plan asks for it.
// Returns the runtime's error code (0 = success).
extern "C" int pkv_kernel_paged_decode(const pkv_attention_params* p, void* stream) {
#if defined(PKV_HIP)
    // Not built for AMD yet: the FMA kernel exceeds the scalar-register file (lane masks of its
    // unrolled loops) on gfx90a/gfx942 and spills vector registers on gfx1100 (256-dim
    // instances), which this project's AMD builds forbid. The planner never sets
    // decode_kernel on AMD targets; the general kernel serves decode rows there.
    (void)stream;
    return p->decode_kernel ? static_cast<int>(hipErrorInvalidDeviceFunction) : 0;
#else
    if (!p->decode_kernel || p->num_tokens <= 0 || p->num_seqs <= 0) return 0;
    // More splits than one reduce serves: refused before anything runs (the planner caps them).
    if (p->decode_splits > pkv::REDUCE_MAX_SPLITS) return static_cast<int>(cudaErrorInvalidConfiguration);
    const pkv_stream_t s = static_cast<pkv_stream_t>(stream);
#if defined(PKV_CUDA)
    // The planner chose the tensor-core variant (f16/bf16 queries; a cache of the same dtype,
    // or e4m3fn on sm_89+; slots contiguous in the value layout).
    if (p->decode_mma) {
        return static_cast<int>(p->query_dtype == PKV_DT_F16 ? pkv::launch_tensor_cores<PKV_DT_F16>(*p, s)
                                                             : pkv::launch_tensor_cores<PKV_DT_BF16>(*p, s));
    }
#endif
    switch (p->query_dtype) {
        case PKV_DT_F32:
            return static_cast<int>(pkv::launch_for_query<PKV_DT_F32>(*p, s));
        case PKV_DT_F16:
            return static_cast<int>(pkv::launch_for_query<PKV_DT_F16>(*p, s));
        default:
            return static_cast<int>(pkv::launch_for_query<PKV_DT_BF16>(*p, s));
    }
#endif
}
