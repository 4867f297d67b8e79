// Paged attention for prefill rows on tensor cores (NVIDIA sm_80+): the general kernel's work
// (attention.hip; semantics: the CPU reference, src/cpu/attention.rs) for f16/bf16 queries
// over a cache of the same dtype and head sizes that are multiples of 16 from 64 to 128 (one
// instance per head size: compile-time offsets and unrolled loops throughout). The
// planner (src/core/plan.rs, GeneralKernel::TensorCores) sends nothing else here; AMD builds
// and every other case keep the general kernel.
//
// Why: a prefill chunk does ~1300 FLOPs per cached byte (every query token of a chunk meets
// every key), so it is bound by arithmetic, not memory. The general kernel stages f32 tiles and
// multiplies on the FMA pipes (10 TFLOP/s on an H200); here both products run on mma.sync
// m16n8k16 with f32 accumulation.
//
// Grid and rows as in the general kernel: x = q-block (an upper bound from shapes), y = kv head
// x head group, z = KV split. A work-group serves PF_ROWS rows (block_q tokens x heads_per_cta
// query heads of one kv head: one staging of each K/V tile serves every head of the group);
// each of its four warps owns 16 rows (the m of the products) with its own online softmax.
//
// Per tile of PF_TILE keys at absolute positions (any block size: each key finds its block):
//  - the next tile's keys and values are copied into the other shared-memory stage by
//    cp.async while this one is computed (16-byte copies where the layout keeps 8 elements
//    contiguous and aligned, element loads otherwise);
//  - S = Q K^T: query fragments stay in registers, key fragments by ldmatrix;
//  - masks (causal, sliding window), soft-cap and ALiBi on the score fragments; online softmax
//    in base 2 (ex2), each row spread over a quad of lanes;
//  - O += P V: the score fragments are the A operand as they lie; P in two 16-bit parts
//    (hi + lo) so that the products keep ~16 significant bits, as the general kernel's f32 did;
//    value fragments by ldmatrix (.trans where the cache keeps dims adjacent).
// Only positions inside the work-group's visible range [lo, hi] (hi < seq_len) are read:
// unwritten (NaN-poisoned) slots and block-table columns past a sequence's last block are
// never touched; other positions stage as zeros.

#include "cache_io.h"
#include "pkv_common.h"
#include "prefill.h"

#if defined(PKV_CUDA)
#include <cuda_bf16.h>

namespace pkv {
namespace {

constexpr int PF_THREADS = 128;  // four warps
constexpr int PF_WARPS = PF_THREADS / 32;
constexpr int PF_ROWS = 16 * PF_WARPS;  // src/core/plan.rs PREFILL_MMA_ROWS
constexpr int PF_TILE = 64;             // keys per tile (src/core/plan.rs PREFILL_MMA_TILE)
constexpr int PF_PAD = 8;               // elements after each staged row: ldmatrix rows on distinct banks
constexpr int PF_MIN_BLOCKS = 2;        // resident work-groups per SM (shared memory allows two)
constexpr int PF_INFO_WORDS = 16;
constexpr float PF_LOG2_E = 1.4426950408889634f;
constexpr float PF_LN_2 = 0.6931471805599453f;

#define NEG_INF __uint_as_float(0xff800000u)

// Dynamic shared memory, by region (src/core/plan.rs prefill_mma_shared_mem_bytes adds the same).
// Two stages of one K tile [PF_TILE][kD + PF_PAD] and one V tile, [PF_TILE][kD + PF_PAD] when the
// cache keeps dims adjacent or transposed [kD][PF_TILE + PF_PAD] when it keeps slots adjacent
// (the split value layout); the stages hold the f32 output rows at the end.
template <int kD>
struct PfSmem {
    static const int LD = kD + PF_PAD;       // staged row of a key, value or query (elements)
    static const int LDT = PF_TILE + PF_PAD;  // staged row of a transposed value tile
    static const int INFO_BYTES = PF_INFO_WORDS * 4 + 2 * PF_ROWS * 4;  // CTA words, row max and sum
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

// 16 bytes global -> shared around L1 (tiles are shared between work-groups through L2);
// `valid` false copies nothing and zero-fills.
PKV_DEVICE void copy16_async(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}

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

PKV_DEVICE float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// d += a . b (m16n8k16, f32 accumulation) and the 16-bit pair packing, per query dtype.
template <int kOp>
struct PfOps;
template <>
struct PfOps<PKV_DT_BF16> {
    static PKV_DEVICE void mma(float* d, const uint32_t* a, uint32_t b0, uint32_t b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    // (x, y) as the pair hi = rn(x, y) and lo = rn((x, y) - hi).
    static PKV_DEVICE void split(float x, float y, uint32_t& hi, uint32_t& lo) {
        const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
        const float2 hf = __bfloat1622float2(h);
        const __nv_bfloat162 l = __floats2bfloat162_rn(x - hf.x, y - hf.y);
        hi = *reinterpret_cast<const uint32_t*>(&h);
        lo = *reinterpret_cast<const uint32_t*>(&l);
    }
};
template <>
struct PfOps<PKV_DT_F16> {
    static PKV_DEVICE void mma(float* d, const uint32_t* a, uint32_t b0, uint32_t b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static PKV_DEVICE void split(float x, float y, uint32_t& hi, uint32_t& lo) {
        const __half2 h = __floats2half2_rn(x, y);
        const float2 hf = __half22float2(h);
        const __half2 l = __floats2half2_rn(x - hf.x, y - hf.y);
        hi = *reinterpret_cast<const uint32_t*>(&h);
        lo = *reinterpret_cast<const uint32_t*>(&l);
    }
};

// Cache offset (elements) of key position j of sequence `seq`: its block from the table
// (clamped into the cache, never out of bounds) and its slot in the block.
PKV_DEVICE int64_t key_position_offset(const pkv_attention_params& p, const pkv_cache_addr& a, int seq, int j) {
    const int lb = j / p.block_size;
    const int off = j - lb * p.block_size;
    int64_t b = p.block_table[static_cast<int64_t>(seq) * p.block_table_strides[0] +
                              static_cast<int64_t>(lb) * p.block_table_strides[1]];
    b = b < 0 ? 0 : (b >= p.num_blocks ? p.num_blocks - 1 : b);
    return b * a.blk + static_cast<int64_t>(off) * a.tok;
}

// Where this thread's keys of tile `t0` (keys t0 .. t0 + PF_TILE - 1) live: thread `tid` takes
// key tid % PF_TILE (its key chunks, and its value chunks where the cache keeps dims adjacent)
// and, where it keeps slots adjacent, the 8-key group tid % 8 (its value chunks). Located a
// tile before its copies are issued, so that the block-table reads' round trip overlaps a
// tile's products instead of preceding its copies.
struct TileSlots {
    int64_t ko;  // the key's cache offset (valid)
    int64_t vo;  // the key's value offset (dims adjacent), or the group's first slot (whole)
    int t0;
    bool valid;  // the key is inside [lo, hi]
    bool whole;  // slots adjacent: the whole group is inside [lo, hi]
};

PKV_DEVICE TileSlots locate_tile(const pkv_attention_params& p, int seq, int t0, int lo, int hi, int tid) {
    TileSlots s;
    s.t0 = t0;
    const int j = t0 + (tid & (PF_TILE - 1));
    s.valid = j >= lo && j <= hi;
    s.ko = s.valid ? key_position_offset(p, p.key_addr, seq, j) : 0;
    if (p.value_mode != PKV_V_ALONG_TOKENS) {
        s.whole = false;
        s.vo = s.valid ? key_position_offset(p, p.value_addr, seq, j) : 0;
    } else {
        const int j0 = t0 + (tid & 7) * 8;
        s.whole = j0 >= lo && j0 + 7 <= hi;
        s.vo = s.whole ? key_position_offset(p, p.value_addr, seq, j0) : 0;
    }
    return s;
}

// Whether the dims of a cached token sit at offsets linear in the 16-dim step between a
// thread's chunks (x-groups of at most 16 elements, or one x-group spanning the head), so that
// chunk i is one fixed stride from chunk 0.
template <int kD>
PKV_DEVICE bool chunks_linear(const pkv_cache_addr& a) {
    return a.x_shift <= 4 || (1 << a.x_shift) >= kD;
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
            b = b < 0 ? 0 : (b >= num_blocks ? num_blocks - 1 : b);  // as key_position_offset
            r.set(e, vbase[b * a.blk + static_cast<int64_t>(j - lb * block_size) * a.tok + static_cast<int64_t>(d) * a.dhi]);
        }
    }
    r.store_all(dst);
}

// Issues the copies of a located tile into stage `stage` (keys, then values). Keys outside
// [lo, hi] stage as zeros and are never read.
template <int kD>
PKV_DEVICE void issue_tile(const pkv_attention_params& p, const TileSlots& s, int seq, int lo, int hi,
                           const uint16_t* kbase, const uint16_t* vbase, unsigned char* stage, int tid) {
    typedef PfSmem<kD> L;
    constexpr int PER_THREAD = kD / 8 / (PF_THREADS / PF_TILE);  // chunks of one key per thread
    const pkv_cache_addr& ka = p.key_addr;
    const pkv_cache_addr& va = p.value_addr;
    uint16_t* ks = reinterpret_cast<uint16_t*>(stage);
    uint16_t* vs = reinterpret_cast<uint16_t*>(stage + L::K_BYTES);
    const int k = tid & (PF_TILE - 1);
    const int c0 = tid / PF_TILE;  // chunks c0, c0 + 2, ...
    if (p.key_run == 8 && chunks_linear<kD>(ka)) {
        const uint16_t* src = s.valid ? kbase + s.ko + dim_offset(ka, c0 * 8) : kbase;
        const int64_t step = s.valid ? dim_offset(ka, 16) - dim_offset(ka, 0) : 0;
#pragma unroll
        for (int i = 0; i < PER_THREAD; ++i) copy16_async(ks + k * L::LD + (c0 + 2 * i) * 8, src + i * step, s.valid);
    } else {
#pragma unroll 1
        for (int c = c0; c < kD / 8; c += 2) stage_chunk_slow(ks + k * L::LD + c * 8, kbase + s.ko, ka, c * 8, p.key_run, s.valid);
    }
    if (p.value_mode != PKV_V_ALONG_TOKENS) {
        if (p.value_run == 8 && chunks_linear<kD>(va)) {
            const uint16_t* src = s.valid ? vbase + s.vo + dim_offset(va, c0 * 8) : vbase;
            const int64_t step = s.valid ? dim_offset(va, 16) - dim_offset(va, 0) : 0;
#pragma unroll
            for (int i = 0; i < PER_THREAD; ++i)
                copy16_async(vs + k * L::LD + (c0 + 2 * i) * 8, src + i * step, s.valid);
        } else {
#pragma unroll 1
            for (int c = c0; c < kD / 8; c += 2)
                stage_chunk_slow(vs + k * L::LD + c * 8, vbase + s.vo, va, c * 8, p.value_run, s.valid);
        }
    } else {
        // Transposed stage [kD][LDT]: a chunk is 8 slots of one dim. A group of 8 keys that is
        // wholly visible and (value_run 8: block size a multiple of 8, aligned) inside one block
        // is one 16-byte copy; a group at the visible range's edge is read key by key.
        const int g = tid & 7;
        const int j0 = s.t0 + g * 8;
        const bool none = j0 > hi || j0 + 7 < lo;
        const int d0 = tid >> 3;  // dims d0, d0 + 16, ...
        uint16_t* vd = vs + d0 * L::LDT + g * 8;
        if (p.value_run == 8 && (s.whole || none)) {
            const uint16_t* src = s.whole ? vbase + s.vo + static_cast<int64_t>(d0) * va.dhi : vbase;
            const int64_t step = s.whole ? static_cast<int64_t>(16) * va.dhi : 0;
#pragma unroll
            for (int i = 0; i < kD / 16; ++i) copy16_async(vd + i * 16 * L::LDT, src + i * step, s.whole);
        } else {
#pragma unroll 1
            for (int i = 0; i < kD / 16; ++i)
                stage_slots_slow(vd + i * 16 * L::LDT, p.block_table + static_cast<int64_t>(seq) * p.block_table_strides[0],
                                 p.block_table_strides[1], p.block_size, p.num_blocks, va, vbase, j0, d0 + 16 * i, lo, hi);
        }
    }
}

template <int kQuery, int kD>
PKV_DEVICE void prefill_body(const pkv_attention_params& p) {
    typedef PfOps<kQuery> Ops;
    typedef PfSmem<kD> L;
    extern __shared__ __attribute__((aligned(16))) unsigned char smem_raw[];
    int* info = reinterpret_cast<int*>(smem_raw);
    float* row_m = reinterpret_cast<float*>(smem_raw + PF_INFO_WORDS * 4);  // final max (natural log units)
    float* row_l = row_m + PF_ROWS;                                          // final sum
    uint16_t* s_q = reinterpret_cast<uint16_t*>(smem_raw + L::Q_AT);
    unsigned char* stages = smem_raw + L::STAGES_AT;
    const int tid = threadIdx.x;
    const int warp = tid >> 5, lane = tid & 31;
    const int G = p.num_q_heads / p.num_kv_heads;
    const int kvh = blockIdx.y / p.head_groups;
    const int hg = blockIdx.y % p.head_groups;
    const int split = blockIdx.z;

    // ---- Which sequence and which of its query tokens this work-group serves: the general
    // kernel's rule (attention.hip), counted by all threads.
    const int qb = blockIdx.x;
    const int bq = p.block_q;
    int s = 0;
    for (int i0 = 1; i0 < p.num_seqs; i0 += PF_THREADS) {
        const int i = i0 + tid;
        s += __syncthreads_count(i < p.num_seqs && qsl_at(p, i) / bq + i <= qb);
    }
    if (tid == 0) {
        const int q_begin = qsl_at(p, s);
        const int q_end = max(q_begin, qsl_at(p, s + 1));
        const int q_len = q_end - q_begin;
        const int local = qb - (q_begin / bq + s);
        const int tok0 = local * bq;
        const int active = local >= 0 && tok0 < q_len && !(p.decode_kernel && q_len == 1);
        const int64_t max_len = static_cast<int64_t>(p.max_blocks_per_seq) * p.block_size;
        const int seq_len = clamp_int(p.seq_lens[s * p.seq_lens_stride], 0, max_len);
        info[0] = active;
        info[1] = q_begin + tok0;                      // first query/output row
        info[2] = active ? min(bq, q_len - tok0) : 0;  // tokens
        info[3] = seq_len;
        info[4] = seq_len - q_len + tok0;              // position of the first token
        info[5] = min(p.heads_per_cta, G - hg * p.heads_per_cta);
    }
    __syncthreads();
    if (!info[0]) return;  // uniform: surplus q-block (or a sequence with q_len 0)
    const int seq = s;
    const int row0 = info[1];
    const int ntok = info[2];
    const int seq_len = info[3];
    const int p_first = info[4];
    const int hpc = info[5];
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
    // The key/value stages: tile range of this split (absolute tile indices).
    const uint16_t* kbase = static_cast<const uint16_t*>(p.key_cache) + static_cast<int64_t>(kvh) * p.key_addr.head;
    const uint16_t* vbase =
        static_cast<const uint16_t*>(p.value_cache) + static_cast<int64_t>(kvh) * p.value_addr.head;
    int tile_begin = 0, tile_end = 0;
    if (hi_all >= lo_all) {
        const int tb = lo_all / PF_TILE, te = hi_all / PF_TILE + 1;
        const int per = (te - tb + p.num_splits - 1) / p.num_splits;
        tile_begin = min(te, tb + split * per);
        tile_end = min(te, tile_begin + per);
    }
    if (tile_begin < tile_end) {
        const TileSlots first = locate_tile(p, seq, tile_begin * PF_TILE, lo_all, hi_all, tid);
        issue_tile<kD>(p, first, seq, lo_all, hi_all, kbase, vbase, stages, tid);
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    TileSlots next = locate_tile(p, seq, (tile_begin + 1) * PF_TILE, lo_all, hi_all, tid);
    __syncthreads();  // the query rows

    constexpr int KSTEPS = kD / 16;
    uint32_t qf[KSTEPS][4];
    {
        const int r = warp * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
        const uint16_t* qrow = s_q + r * L::LD + (lane >> 4) * 8;
#pragma unroll
        for (int kk = 0; kk < KSTEPS; ++kk) ldsm_x4(qf[kk], smem_addr(qrow + kk * 16));
    }

    // ---- This lane's two rows (g and g + 8 of the warp's 16): masks, slopes, softmax state.
    const int quad = lane & 3;
    int row_lo[2], row_hi[2], row_pos[2];
    float slope[2], m[2], l[2];
    int w_lo_min = 0x7fffffff, w_hi_max = -1, w_lo_max = 0, w_hi_min = 0x7fffffff;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int r = warp * 16 + (lane >> 2) + 8 * i;
        row_lo[i] = 0, row_hi[i] = -1, row_pos[i] = 0;
        slope[i] = 0.0f, m[i] = NEG_INF, l[i] = 0.0f;
        if (r < nrows) {
            const int pos = p_first + r / hpc;
            const int qh = qh0 + r % hpc;
            row_pos[i] = pos;
            row_lo[i] = W > 0 ? max(0, pos - W + 1) : 0;
            row_hi[i] = p.causal ? min(pos, seq_len - 1) : seq_len - 1;
            if (p.alibi_slopes) slope[i] = p.alibi_slopes[qh * p.alibi_stride];
            if (p.sinks && split == 0) {
                const float sink = p.sinks[qh * p.sinks_stride];
                m[i] = sink * PF_LOG2_E;                            // base-2 units, as every score below
                l[i] = sink > NEG_INF && quad == 0 ? 1.0f : 0.0f;  // a quad's lanes hold partial sums
            }
            if (row_hi[i] >= row_lo[i]) {
                w_lo_min = min(w_lo_min, row_lo[i]), w_hi_max = max(w_hi_max, row_hi[i]);
            }
            w_lo_max = max(w_lo_max, row_lo[i]), w_hi_min = min(w_hi_min, row_hi[i]);
        }
    }
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        w_lo_min = min(w_lo_min, __shfl_xor_sync(0xffffffffu, w_lo_min, o));
        w_hi_max = max(w_hi_max, __shfl_xor_sync(0xffffffffu, w_hi_max, o));
        w_lo_max = max(w_lo_max, __shfl_xor_sync(0xffffffffu, w_lo_max, o));
        w_hi_min = min(w_hi_min, __shfl_xor_sync(0xffffffffu, w_hi_min, o));
    }
    const bool plain_scores = p.logits_soft_cap <= 0.0f && p.alibi_slopes == nullptr;
    const float scale2 = p.sm_scale * PF_LOG2_E;
    const float cap = p.logits_soft_cap;
    const float inv_cap = cap > 0.0f ? 1.0f / cap : 0.0f;

    constexpr int NB = PF_TILE / 8;  // 8-key n-blocks of the scores
    constexpr int ND = kD / 8;       // 8-dim n-blocks of the output
    float o[ND][4];
#pragma unroll
    for (int n = 0; n < ND; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

    // Lane byte offsets of the ldmatrix rows inside a stage: keys (i >> 1) * 8 + (lane & 7) of
    // matrix i = lane / 8 at dims (i & 1) * 8 for the key fragments; for the value fragments
    // keys (i & 1) * 8 and dims (i >> 1) * 8.
    const int mi = lane >> 3;
    const uint32_t k_lane = (((mi >> 1) * 8 + (lane & 7)) * L::LD + (mi & 1) * 8) * 2;
    const bool v_tokens = p.value_mode == PKV_V_ALONG_TOKENS;
    const uint32_t v_lane = L::K_BYTES + (v_tokens ? (((mi >> 1) * 8 + (lane & 7)) * L::LDT + (mi & 1) * 8) * 2
                                                   : (((mi & 1) * 8 + (lane & 7)) * L::LD + (mi >> 1) * 8) * 2);
    const uint32_t stage0 = smem_addr(stages);

    for (int tile = tile_begin; tile < tile_end; ++tile) {
        const int st = (tile - tile_begin) & 1;
        if (tile + 1 < tile_end) {
            issue_tile<kD>(p, next, seq, lo_all, hi_all, kbase, vbase, stages + (st ^ 1) * L::STAGE_BYTES, tid);
            asm volatile("cp.async.commit_group;\n" ::: "memory");
            if (tile + 2 < tile_end) next = locate_tile(p, seq, (tile + 2) * PF_TILE, lo_all, hi_all, tid);
            asm volatile("cp.async.wait_group 1;\n" ::: "memory");
        } else {
            asm volatile("cp.async.wait_group 0;\n" ::: "memory");
        }
        __syncthreads();  // this tile's stage is complete for every warp

        const int t0 = tile * PF_TILE;
        if (t0 <= w_hi_max && t0 + PF_TILE - 1 >= w_lo_min) {  // some key of the tile is visible to the warp
            const uint32_t stage = stage0 + st * L::STAGE_BYTES;
            // S = Q K^T.
            float sc[NB][4];
#pragma unroll
            for (int n = 0; n < NB; ++n) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < KSTEPS; ++kk) {
#pragma unroll
                for (int n2 = 0; n2 < NB / 2; ++n2) {
                    uint32_t b[4];
                    ldsm_x4(b, stage + k_lane + (n2 * 16 * L::LD + kk * 16) * 2);
                    Ops::mma(sc[2 * n2], qf[kk], b[0], b[1]);
                    Ops::mma(sc[2 * n2 + 1], qf[kk], b[2], b[3]);
                }
            }
            // Scores in base-2 units, masked.
            const bool whole = t0 >= w_lo_max && t0 + PF_TILE - 1 <= w_hi_min;
#pragma unroll
            for (int n = 0; n < NB; ++n) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int i = e >> 1;
                    const int j = t0 + n * 8 + quad * 2 + (e & 1);
                    float x = sc[n][e];
                    if (plain_scores) {
                        x *= scale2;
                    } else {
                        x *= p.sm_scale;
                        if (cap > 0.0f) x = cap * tanhf(x * inv_cap);
                        x = (x + slope[i] * static_cast<float>(j - row_pos[i])) * PF_LOG2_E;
                    }
                    if (!whole && (j < row_lo[i] || j > row_hi[i])) x = NEG_INF;
                    sc[n][e] = x;
                }
            }
            // Online softmax per row (a quad of lanes per row).
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                float mx = NEG_INF;
#pragma unroll
                for (int n = 0; n < NB; ++n) mx = fmaxf(mx, fmaxf(sc[n][2 * i], sc[n][2 * i + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float m_new = fmaxf(m[i], mx);
                const float ref = m_new == NEG_INF ? 0.0f : m_new;  // nothing visible yet: all terms 0
                const float alpha = ex2(m[i] - ref);
                m[i] = m_new;
                float sum = 0.0f;
#pragma unroll
                for (int n = 0; n < NB; ++n) {
                    sc[n][2 * i] = ex2(sc[n][2 * i] - ref);
                    sc[n][2 * i + 1] = ex2(sc[n][2 * i + 1] - ref);
                    sum += sc[n][2 * i] + sc[n][2 * i + 1];
                }
                l[i] = l[i] * alpha + sum;
#pragma unroll
                for (int n = 0; n < ND; ++n) o[n][2 * i] *= alpha, o[n][2 * i + 1] *= alpha;
            }
            // O += P V, P as hi + lo 16-bit parts.
#pragma unroll
            for (int kb = 0; kb < PF_TILE / 16; ++kb) {
                uint32_t ph[4], pl[4];
                Ops::split(sc[2 * kb][0], sc[2 * kb][1], ph[0], pl[0]);
                Ops::split(sc[2 * kb][2], sc[2 * kb][3], ph[1], pl[1]);
                Ops::split(sc[2 * kb + 1][0], sc[2 * kb + 1][1], ph[2], pl[2]);
                Ops::split(sc[2 * kb + 1][2], sc[2 * kb + 1][3], ph[3], pl[3]);
#pragma unroll
                for (int n2 = 0; n2 < ND / 2; ++n2) {
                    uint32_t b[4];
                    if (v_tokens) {
                        ldsm_x4(b, stage + v_lane + (n2 * 16 * L::LDT + kb * 16) * 2);
                    } else {
                        ldsm_x4_trans(b, stage + v_lane + (kb * 16 * L::LD + n2 * 16) * 2);
                    }
                    Ops::mma(o[2 * n2], ph, b[0], b[1]);
                    Ops::mma(o[2 * n2], pl, b[0], b[1]);
                    Ops::mma(o[2 * n2 + 1], ph, b[2], b[3]);
                    Ops::mma(o[2 * n2 + 1], pl, b[2], b[3]);
                }
            }
        }
        __syncthreads();  // every warp is done with this stage before it is refilled
    }

    // ---- Results: rows through shared memory (f32, over the stages), then 8-element stores.
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    }
    const bool single = p.num_splits == 1;
    float* s_o = reinterpret_cast<float*>(stages);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int r = warp * 16 + (lane >> 2) + 8 * i;
        const float inv = single ? (l[i] > 0.0f ? 1.0f / l[i] : 0.0f) : 1.0f;
        float* orow = s_o + r * L::LD + quad * 2;
#pragma unroll
        for (int n = 0; n < ND; ++n)
            *reinterpret_cast<float2*>(orow + n * 8) = make_float2(o[n][2 * i] * inv, o[n][2 * i + 1] * inv);
        if (quad == 0) {
            row_m[r] = m[i] == NEG_INF ? NEG_INF : m[i] * PF_LN_2;
            row_l[r] = l[i];
        }
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
template <int kQuery, int kD>
__global__ void __launch_bounds__(PF_THREADS, PF_MIN_BLOCKS) paged_prefill_mma_kernel(pkv_attention_params p) {
    prefill_body<kQuery, kD>(p);
    if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0) pkv_wait_prior_grids();
}

template <int kQuery, int kD>
pkv_error_t launch_prefill(const pkv_attention_params& p, pkv_stream_t stream) {
    void (*kernel)(pkv_attention_params) = paged_prefill_mma_kernel<kQuery, kD>;
    static_assert(PfSmem<kD>::TOTAL <= 227 * 1024, "fits an sm_90 work-group");
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
