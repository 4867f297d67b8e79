// Paged attention for decode tokens and prefill chunks in one launch plan, with optional
// split-KV and its reduce kernel. Semantics: the CPU reference backend (src/cpu/attention.rs).
//
// Grid: x = q-blocks (an upper bound from the token and sequence counts, never from seq_lens,
// so the grid is fixed under graph capture), y = kv head x head group, z = KV split.
// A work-group finds its sequence by binary search over query_start_loc, then serves up to
// MAX_ROWS query rows (block_q tokens x the query heads of one kv head) from one staging of each
// K/V tile. Tiles are `tile` keys at absolute positions, independent of the physical block
// size: every key computes its own block (pos / block_size) and offset (pos % block_size), so
// any block size and any stride (split, NHD, hybrid-interleaved pages) works.
//
// Per tile: (1) per-key cache offsets from the block table, (2) K tile -> shared f32
// [tile][head_size + KPAD], (3) V tile -> shared f32 transposed [head_size][tile] (swizzled),
// (4) scores with the row masks, soft-cap and ALiBi, (5) online softmax in f32 per row,
// (6) P.V into register accumulators. Only positions inside the work-group's visible range
// [lo, hi] (hi < seq_len) are read: unwritten (NaN-poisoned) slots and block-table columns
// past a sequence's last block are never touched; other positions stage as exact zeros.

#include "cache_io.h"
#include "pkv_common.h"
#include "prefill.h"
#include "q_blocks.h"

namespace pkv {
namespace {

constexpr int ATT_THREADS = 256;  // per work-group: whole waves of 32 and of 64
constexpr int ATT_MIN_BLOCKS = 2; // NVIDIA: two resident work-groups per SM (<= 128 registers)
constexpr int MAX_ROWS = 16;      // query rows per work-group (src/core/plan.rs KERNEL_MAX_ROWS)
constexpr int MAX_TILE = 64;      // src/core/plan.rs KERNEL_MAX_TILE
constexpr int CHUNK = 8;          // elements per unit of work along head_size
constexpr int KPAD = 4;           // floats padding each staged key row: conflict-free column reads
constexpr int ROW_SEG = ATT_THREADS / MAX_ROWS;                     // threads reducing one row
constexpr int MAX_SCORES = MAX_ROWS * MAX_TILE / ATT_THREADS;       // scores per thread
constexpr int MAX_PV_UNITS = MAX_ROWS * (256 / CHUNK) / ATT_THREADS;  // (row, chunk) accumulators
constexpr int ROW_STAT_WORDS = 16 * MAX_ROWS;  // per-row statistics and the CTA info words
constexpr int REDUCE_THREADS = 128;
constexpr int FP8_CODES = 256;    // decode table entries, one per thread to fill
constexpr int PARAM_BYTES = 512;  // the launch arguments' copy (used on AMD, see below)
static_assert(sizeof(pkv_attention_params) <= PARAM_BYTES, "the argument copy fits its region");
static_assert(ATT_THREADS == FP8_CODES, "each thread fills one fp8 table entry");

static_assert(ATT_THREADS % PKV_WAVE_SIZE == 0, "work-groups are whole waves");
static_assert(ROW_SEG <= PKV_WAVE_SIZE && (ROW_SEG & (ROW_SEG - 1)) == 0, "a row's reduction stays in one wave");
static_assert(MAX_SCORES >= 1 && MAX_PV_UNITS >= 1, "thread work bounds");
static_assert(REDUCE_THREADS % PKV_WAVE_SIZE == 0, "work-groups are whole waves");

// -inf, spelled as bits so that no host constant is needed in device code.
#define NEG_INF __uint_as_float(0xff800000u)

// CTA info words after the row statistics.
enum { INFO_COUNT = 8 };  // the words locate_q_block (q_blocks.h) exchanges

// Byte offsets of the dynamic shared-memory regions (after PARAM_BYTES for the arguments). src/core/plan.rs
// (attention_shared_mem_bytes) computes the same total: change both together.
struct SmemLayout {
    int64_t* kofs;    // [tile] key-cache offset of each staged key (-1: not staged)
    int64_t* vofs;    // [tile]
    int* row_lo;      // [MAX_ROWS] first visible key position of each row
    int* row_hi;      // [MAX_ROWS] last visible key position (< row_lo: none)
    int* row_pos;     // [MAX_ROWS] position of the row's query token
    float* slope;     // [MAX_ROWS] ALiBi slope
    float* row_m;     // [MAX_ROWS] running max
    float* row_l;     // [MAX_ROWS] running sum
    float* alpha;     // [MAX_ROWS] rescale factor of the current tile
    int* info;        // [INFO_COUNT]
    float* lut;       // [256] fp8 code -> value (fp8 caches)
    float* q;         // [rows][head_size]
    float* k;         // [tile][head_size + KPAD]
    float* vt;        // [head_size][tile], 16-byte slots XOR-swizzled by (d / 8)
    float* s;         // [rows][tile] scores, then probabilities
};

PKV_DEVICE SmemLayout smem_layout(unsigned char* base, int tile, int rows, int d) {
    SmemLayout l;
    l.kofs = reinterpret_cast<int64_t*>(base + PARAM_BYTES);
    l.vofs = l.kofs + tile;
    int* words = reinterpret_cast<int*>(l.vofs + tile);
    l.row_lo = words;
    l.row_hi = words + MAX_ROWS;
    l.slope = reinterpret_cast<float*>(words + 2 * MAX_ROWS);
    l.row_m = l.slope + MAX_ROWS;
    l.row_l = l.row_m + MAX_ROWS;
    l.alpha = l.row_l + MAX_ROWS;
    l.row_pos = words + 6 * MAX_ROWS;
    l.info = words + 7 * MAX_ROWS;
    l.lut = reinterpret_cast<float*>(words + ROW_STAT_WORDS);
    l.q = l.lut + FP8_CODES;
    l.k = l.q + rows * d;
    l.vt = l.k + tile * (d + KPAD);
    l.s = l.vt + d * tile;
    return l;
}

// Element index of (d, key) in the transposed value tile: the 16-byte slot holding keys
// 4j..4j+3 of row d is XORed with (d / 8) so that threads reading the same keys of
// neighbouring 8-dim chunks hit different banks.
PKV_DEVICE int vt_index(int d, int key, int tile) {
    const int slots = tile >> 2;
    const int mask = (slots < 8 ? slots : 8) - 1;
    return d * tile + ((((key >> 2) ^ (d >> 3)) & mask) | ((key >> 2) & ~mask)) * 4 + (key & 3);
}

template <typename Raw>
PKV_DEVICE Raw8<Raw> zero8() {
    Raw8<Raw> r;
    r.clear();
    return r;
}

// Cache element -> f32: the model dtype, or fp8 dequantised as decode(byte) * scale through
// the work-group's decode table (exact: the table holds fp8_decode of every code).
template <int kCache>
struct Dequant {
    static PKV_DEVICE float run(typename Elem<kCache>::raw r, const float*, float) { return Elem<kCache>::to_f32(r); }
};
template <>
struct Dequant<PKV_DT_U8> {
    static PKV_DEVICE float run(uint8_t r, const float* lut, float scale) { return lut[r] * scale; }
};

PKV_DEVICE int log2_of(int pow2) { return __ffs(pow2) - 1; }

// Independent global loads in flight per thread while staging a tile: about 64 bytes.
template <typename Raw>
struct LoadBatch {
    static const int value = sizeof(Raw) >= 4 ? 2 : 4;
};

// The kernel's work (paged_attention_kernel below); returns from any point.
template <int kQuery, int kCache>
PKV_DEVICE void paged_attention_body(const pkv_attention_params& p_arg) {
    typedef typename Elem<kCache>::raw CRaw;
    const int LOAD_BATCH = LoadBatch<CRaw>::value;
    typedef typename Elem<kQuery>::raw QRaw;
    extern __shared__ __attribute__((aligned(16))) unsigned char smem_raw[];
#if defined(PKV_HIP)
    // AMD keeps kernel arguments in scalar registers wherever they are used; this kernel uses
    // more of them across its tile loop than the SGPR file holds, and they would spill. Read
    // from LDS they become per-use broadcast loads into vector registers instead.
    pkv_attention_params* p_copy = reinterpret_cast<pkv_attention_params*>(smem_raw);
    if (threadIdx.x < sizeof(pkv_attention_params) / sizeof(uint32_t))
        reinterpret_cast<uint32_t*>(p_copy)[threadIdx.x] = reinterpret_cast<const uint32_t*>(&p_arg)[threadIdx.x];
    __syncthreads();
    const pkv_attention_params& p = *p_copy;
#else
    // NVIDIA reads kernel arguments straight from the constant bank.
    const pkv_attention_params& p = p_arg;
#endif

    const int tid = threadIdx.x;
    const int D = p.head_size;
    const int TILE = p.tile;
    const int nchunks = D / CHUNK;
    const int G = p.num_q_heads / p.num_kv_heads;
    const int kvh = blockIdx.y / p.head_groups;
    const int hg = blockIdx.y % p.head_groups;
    const int split = blockIdx.z;
    const int rows_cap = p.block_q * p.heads_per_cta;
    const SmemLayout sm = smem_layout(smem_raw, TILE, rows_cap, D);

    if (kCache == PKV_DT_U8) sm.lut[tid] = fp8_decode(p.kv_fp8, static_cast<uint32_t>(tid));

    // ---- Which sequence and which of its query tokens this work-group serves (q_blocks.h).
    const QBlock qblk = locate_q_block(p, blockIdx.x, hg, tid, ATT_THREADS, sm.info);
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

    // Keys any row of this work-group may see: [lo_all, hi_all].
    const int lo_all = W > 0 ? max(0, p_first - W + 1) : 0;
    const int hi_all = p.causal ? min(p_first + ntok - 1, seq_len - 1) : seq_len - 1;

    // ---- Row setup: masks, slopes, softmax state (sinks seed split 0 only).
    if (tid < MAX_ROWS) {
        const int r = tid;
        int lo = 0, hi = -1;
        float slope = 0.0f, m = NEG_INF, l = 0.0f;
        if (r < nrows) {
            const int pos = p_first + r / hpc;
            const int qh = qh0 + r % hpc;
            lo = W > 0 ? max(0, pos - W + 1) : 0;
            hi = p.causal ? min(pos, seq_len - 1) : seq_len - 1;
            if (p.alibi_slopes) slope = p.alibi_slopes[qh * p.alibi_stride];
            if (p.sinks && split == 0) {
                m = p.sinks[qh * p.sinks_stride];
                l = m > NEG_INF ? 1.0f : 0.0f;
            }
        }
        sm.row_lo[r] = lo;
        sm.row_pos[r] = r < nrows ? p_first + r / hpc : 0;
        sm.row_hi[r] = hi;
        sm.slope[r] = slope;
        sm.row_m[r] = m;
        sm.row_l[r] = l;
    }
    // ---- Query rows -> shared f32.
    {
        const QRaw* query = static_cast<const QRaw*>(p.query);
        for (int u = tid; u < nrows * nchunks; u += ATT_THREADS) {
            const int r = u / nchunks, c = u % nchunks;
            const int64_t off = static_cast<int64_t>(row0 + r / hpc) * p.query_strides[0] +
                                static_cast<int64_t>(qh0 + r % hpc) * p.query_strides[1] +
                                static_cast<int64_t>(c) * CHUNK * p.query_strides[2];
            const Raw8<QRaw> v = load8(query + off, p.query_strides[2], p.query_contig != 0);
            float* dst = sm.q + r * D + c * CHUNK;
#pragma unroll
            for (int i = 0; i < CHUNK; ++i) dst[i] = Elem<kQuery>::to_f32(v.get(i));
        }
    }

    // ---- Work split: P.V units (row, 8-dim chunk), and key parts when rows are few.
    const int cunits = nrows * nchunks;
    int kparts = 1;
    {
        const int scratch_floats = TILE * (2 * D + KPAD);  // K + V^T regions, reused at the end
        while (kparts * 2 * cunits <= ATT_THREADS && kparts * 2 <= TILE / 4 &&
               (kparts * 2 - 1) * cunits * CHUNK <= scratch_floats)
            kparts *= 2;
    }
    const int keys_per_part = TILE / kparts;
    // This thread's P.V units, decoded once (no divisions inside the tile loop).
    int pv_r[MAX_PV_UNITS], pv_c[MAX_PV_UNITS], pv_kp[MAX_PV_UNITS];
#pragma unroll
    for (int j = 0; j < MAX_PV_UNITS; ++j) {
        const int idx = tid + j * ATT_THREADS;
        const int cu = idx % cunits;
        pv_kp[j] = idx / cunits;
        pv_r[j] = cu / nchunks;
        pv_c[j] = cu % nchunks;
    }
    const int tile_shift = log2_of(TILE);
    const int group_shift = tile_shift - 3;  // groups of CHUNK = 8 keys
    const int groups = TILE >> 3;
    int nchunks_p2_shift = 0;
    while ((1 << nchunks_p2_shift) < nchunks) ++nchunks_p2_shift;
    float acc[MAX_PV_UNITS][CHUNK];
#pragma unroll
    for (int j = 0; j < MAX_PV_UNITS; ++j)
#pragma unroll
        for (int i = 0; i < CHUNK; ++i) acc[j][i] = 0.0f;

    const float k_scale = p.k_scale ? *p.k_scale : 1.0f;
    const float v_scale = p.v_scale ? *p.v_scale : 1.0f;
    const CRaw* kcache = static_cast<const CRaw*>(p.key_cache);
    const CRaw* vcache = static_cast<const CRaw*>(p.value_cache);
    const pkv_cache_addr ka = p.key_addr;
    const pkv_cache_addr va = p.value_addr;
    const CRaw* kbase = kcache + static_cast<int64_t>(kvh) * ka.head;
    const CRaw* vbase = vcache + static_cast<int64_t>(kvh) * va.head;

    // ---- This split's tiles (absolute tile indices).
    int tile_begin = 0, tile_end = 0;
    if (hi_all >= lo_all) {
        const int tb = lo_all / TILE, te = hi_all / TILE + 1;
        const int per = (te - tb + p.num_splits - 1) / p.num_splits;
        tile_begin = min(te, tb + split * per);
        tile_end = min(te, tile_begin + per);
    }

    for (int tile = tile_begin; tile < tile_end; ++tile) {
        const int t0 = tile * TILE;
        // (1) Cache offsets of this tile's keys.
        __syncthreads();  // the previous tile's P.V is done with V^T and S
        if (tid < TILE) {
            const int j = t0 + tid;
            int64_t ko = -1, vo = -1;
            if (j >= lo_all && j <= hi_all) {
                const int lb = j / p.block_size;
                const int off = j - lb * p.block_size;
                int64_t b = p.block_table[static_cast<int64_t>(seq) * p.block_table_strides[0] +
                                          static_cast<int64_t>(lb) * p.block_table_strides[1]];
                b = b < 0 ? 0 : (b >= p.num_blocks ? p.num_blocks - 1 : b);  // never out of bounds
                ko = b * ka.blk + static_cast<int64_t>(off) * ka.tok;
                vo = b * va.blk + static_cast<int64_t>(off) * va.tok;
            }
            sm.kofs[tid] = ko;
            sm.vofs[tid] = vo;
        }
        __syncthreads();

        // (2) K tile: units (key, chunk); neighbouring threads take neighbouring keys when the
        // cache's token stride is small (split layout), else neighbouring chunks (NHD). Keys
        // outside [lo_all, hi_all] stage as raw zeros (0.0 in every dtype, fp8 code 0 too).
        {
            // Token-fastest: u = c * TILE + k. Chunk-fastest: u = k * nchunks_p2 + c (chunks
            // padded to a power of two so that no division is needed).
            const bool tf = p.key_token_fastest != 0;
            const int units = tf ? TILE * nchunks : TILE << nchunks_p2_shift;
            for (int base = tid; base < units; base += ATT_THREADS * LOAD_BATCH) {
                Raw8<CRaw> buf[LOAD_BATCH];
                int kk[LOAD_BATCH], cc[LOAD_BATCH];
#pragma unroll
                for (int b = 0; b < LOAD_BATCH; ++b) {
                    const int u = base + b * ATT_THREADS;
                    kk[b] = tf ? u & (TILE - 1) : u >> nchunks_p2_shift;
                    cc[b] = tf ? u >> tile_shift : u & ((1 << nchunks_p2_shift) - 1);
                    buf[b] = zero8<CRaw>();
                    if (u < units && cc[b] < nchunks) {
                        const int64_t ko = sm.kofs[kk[b]];
                        if (ko >= 0) buf[b] = load8_run(kbase + ko, ka, cc[b] * CHUNK, p.key_run);
                    }
                }
#pragma unroll
                for (int b = 0; b < LOAD_BATCH; ++b) {
                    if (base + b * ATT_THREADS < units && cc[b] < nchunks) {
                        float f[CHUNK];
#pragma unroll
                        for (int i = 0; i < CHUNK; ++i) f[i] = Dequant<kCache>::run(buf[b].get(i), sm.lut, k_scale);
                        float4* dst = reinterpret_cast<float4*>(sm.k + kk[b] * (D + KPAD) + cc[b] * CHUNK);
                        dst[0] = make_float4(f[0], f[1], f[2], f[3]);
                        dst[1] = make_float4(f[4], f[5], f[6], f[7]);
                    }
                }
            }
        }
        // (3) V tile, transposed.
        if (p.value_mode == PKV_V_ALONG_TOKENS) {
            // Split value layout: 8 consecutive keys of one dim are adjacent in the cache. The
            // staged keys form one interval, so a group is whole when its ends are staged.
            const int units = groups * D;
            for (int base = tid; base < units; base += ATT_THREADS * LOAD_BATCH) {
                Raw8<CRaw> buf[LOAD_BATCH];
#pragma unroll
                for (int b = 0; b < LOAD_BATCH; ++b) {
                    const int u = base + b * ATT_THREADS;
                    buf[b] = zero8<CRaw>();
                    if (u < units) {
                        const int g = u & (groups - 1), d = u >> group_shift;
                        const CRaw* src = vbase + static_cast<int64_t>(d) * va.dhi;
                        const int64_t first = sm.vofs[g * CHUNK];
                        if (p.value_run == CHUNK && first >= 0 && sm.vofs[g * CHUNK + CHUNK - 1] >= 0) {
                            buf[b].load_all(src + first);
                        } else {
#pragma unroll
                            for (int i = 0; i < CHUNK; ++i) {
                                const int64_t vo = sm.vofs[g * CHUNK + i];
                                if (vo >= 0) buf[b].set(i, src[vo]);
                            }
                        }
                    }
                }
#pragma unroll
                for (int b = 0; b < LOAD_BATCH; ++b) {
                    const int u = base + b * ATT_THREADS;
                    if (u < units) {
                        const int g = u & (groups - 1), d = u >> group_shift;
                        float f[CHUNK];
#pragma unroll
                        for (int i = 0; i < CHUNK; ++i) f[i] = Dequant<kCache>::run(buf[b].get(i), sm.lut, v_scale);
                        *reinterpret_cast<float4*>(sm.vt + vt_index(d, g * CHUNK, TILE)) =
                            make_float4(f[0], f[1], f[2], f[3]);
                        *reinterpret_cast<float4*>(sm.vt + vt_index(d, g * CHUNK + 4, TILE)) =
                            make_float4(f[4], f[5], f[6], f[7]);
                    }
                }
            }
        } else {
            // Dims contiguous (NHD and others): units (key, chunk), neighbouring threads take
            // neighbouring keys so the transposed shared stores do not conflict.
            const int units = TILE * nchunks;
            for (int base = tid; base < units; base += ATT_THREADS * LOAD_BATCH) {
                Raw8<CRaw> buf[LOAD_BATCH];
#pragma unroll
                for (int b = 0; b < LOAD_BATCH; ++b) {
                    const int u = base + b * ATT_THREADS;
                    buf[b] = zero8<CRaw>();
                    if (u < units) {
                        const int64_t vo = sm.vofs[u & (TILE - 1)];
                        if (vo >= 0) buf[b] = load8_run(vbase + vo, va, (u >> tile_shift) * CHUNK, p.value_run);
                    }
                }
#pragma unroll
                for (int b = 0; b < LOAD_BATCH; ++b) {
                    const int u = base + b * ATT_THREADS;
                    if (u < units) {
                        const int k = u & (TILE - 1), c = u >> tile_shift;
#pragma unroll
                        for (int i = 0; i < CHUNK; ++i)
                            sm.vt[vt_index(c * CHUNK + i, k, TILE)] = Dequant<kCache>::run(buf[b].get(i), sm.lut, v_scale);
                    }
                }
            }
        }
        __syncthreads();

        // (4) Scores: thread (key k, row group rg) computes rows rg, rg + RG, ...
        {
            const int RG = ATT_THREADS >> tile_shift;
            const int k = tid & (TILE - 1);
            const int rg = tid >> tile_shift;
            const int my_rows = rg < nrows ? (nrows - rg + RG - 1) / RG : 0;
            float dot[MAX_SCORES];
#pragma unroll
            for (int i = 0; i < MAX_SCORES; ++i) dot[i] = 0.0f;
            const float* krow = sm.k + k * (D + KPAD);
            for (int d = 0; d < D; d += 4) {
                const float4 kv = *reinterpret_cast<const float4*>(krow + d);
#pragma unroll
                for (int i = 0; i < MAX_SCORES; ++i) {
                    if (i < my_rows) {
                        const float4 qv = *reinterpret_cast<const float4*>(sm.q + (rg + i * RG) * D + d);
                        dot[i] += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
                    }
                }
            }
            const int j = t0 + k;
#pragma unroll
            for (int i = 0; i < MAX_SCORES; ++i) {
                if (i < my_rows) {
                    const int r = rg + i * RG;
                    float s = NEG_INF;
                    if (j >= sm.row_lo[r] && j <= sm.row_hi[r]) {
                        s = dot[i] * p.sm_scale;
                        if (p.logits_soft_cap > 0.0f) s = p.logits_soft_cap * tanhf(s / p.logits_soft_cap);
                        s += sm.slope[r] * static_cast<float>(j - sm.row_pos[r]);
                    }
                    sm.s[r * TILE + k] = s;
                }
            }
        }
        __syncthreads();

        // (5) Online softmax: ROW_SEG threads per row.
        {
            const int r = tid / ROW_SEG;
            const int lane = tid % ROW_SEG;
            const bool live = r < nrows;
            float mx = NEG_INF;
            if (live)
                for (int k = lane; k < TILE; k += ROW_SEG) mx = fmaxf(mx, sm.s[r * TILE + k]);
            for (int o = ROW_SEG / 2; o > 0; o /= 2) mx = fmaxf(mx, pkv_shfl_xor(mx, o, ROW_SEG));
            float sum = 0.0f, m_old = NEG_INF, m_new = NEG_INF;
            if (live) {
                m_old = sm.row_m[r];
                m_new = fmaxf(m_old, mx);
                for (int k = lane; k < TILE; k += ROW_SEG) {
                    // Masked keys (-inf) get exactly 0; a row with nothing visible yet stays 0.
                    const float e = m_new == NEG_INF ? 0.0f : expf(sm.s[r * TILE + k] - m_new);
                    sm.s[r * TILE + k] = e;
                    sum += e;
                }
            }
            for (int o = ROW_SEG / 2; o > 0; o /= 2) sum += pkv_shfl_xor(sum, o, ROW_SEG);
            if (live && lane == 0) {
                const float a = m_new == NEG_INF ? 1.0f : expf(m_old - m_new);
                sm.alpha[r] = a;
                sm.row_l[r] = sm.row_l[r] * a + sum;
                sm.row_m[r] = m_new;
            }
        }
        __syncthreads();

        // (6) P.V: unit (row, chunk, key part) accumulates dims 8c..8c+7 over its keys.
#pragma unroll
        for (int j = 0; j < MAX_PV_UNITS; ++j) {
            if (pv_kp[j] < kparts) {
                const int r = pv_r[j], c = pv_c[j], kp = pv_kp[j];
                const float a = sm.alpha[r];
#pragma unroll
                for (int i = 0; i < CHUNK; ++i) acc[j][i] *= a;
                const float* prow = sm.s + r * TILE;
                // Rows 8c..8c+7 of V^T share one swizzle (d / 8 == c): one slot offset per key quad.
                const float* vrows = sm.vt + c * CHUNK * TILE;
                for (int k = kp * keys_per_part; k < (kp + 1) * keys_per_part; k += 4) {
                    const float4 pv = *reinterpret_cast<const float4*>(prow + k);
                    const float* vk = vrows + (vt_index(c * CHUNK, k, TILE) - c * CHUNK * TILE);
#pragma unroll
                    for (int i = 0; i < CHUNK; ++i) {
                        const float4 v = *reinterpret_cast<const float4*>(vk + i * TILE);
                        acc[j][i] += pv.x * v.x + pv.y * v.y + pv.z * v.z + pv.w * v.w;
                    }
                }
            }
        }
    }

    // ---- Combine key parts (K and V^T regions are free now).
    __syncthreads();
    if (kparts > 1) {
        float* scratch = sm.k;
        const int cu = tid % max(cunits, 1);
        const int kp = tid / max(cunits, 1);
        if (cunits > 0 && kp > 0 && kp < kparts) {
#pragma unroll
            for (int i = 0; i < CHUNK; ++i) scratch[((kp - 1) * cunits + cu) * CHUNK + i] = acc[0][i];
        }
        __syncthreads();
        if (cunits > 0 && kp == 0) {
            for (int q = 1; q < kparts; ++q)
#pragma unroll
                for (int i = 0; i < CHUNK; ++i) acc[0][i] += scratch[((q - 1) * cunits + cu) * CHUNK + i];
        }
    }

    // ---- Results: final rows (single pass) or this split's partials.
    const float out_inv_scale = p.output_scale ? 1.0f / *p.output_scale : 1.0f;
#pragma unroll
    for (int j = 0; j < MAX_PV_UNITS; ++j) {
        const int idx = tid + j * ATT_THREADS;
        if (cunits == 0 || idx / cunits != 0) continue;  // key parts > 0 were folded into part 0
        const int cu = idx % cunits;
        const int r = cu / nchunks, c = cu % nchunks;
        const int64_t row = row0 + r / hpc;
        const int qh = qh0 + r % hpc;
        if (p.num_splits == 1) {
            const float l = sm.row_l[r];
            float v[CHUNK];
#pragma unroll
            for (int i = 0; i < CHUNK; ++i) v[i] = l > 0.0f ? acc[j][i] / l : 0.0f;
            const int64_t off = row * p.output_strides[0] + static_cast<int64_t>(qh) * p.output_strides[1] +
                                static_cast<int64_t>(c) * CHUNK * p.output_strides[2];
            store_out8<kQuery>(p.output, off, p.output_strides[2], p.output_contig != 0, v, p.out_fp8, out_inv_scale);
        } else {
            const int64_t slot = (row * p.num_q_heads + qh) * p.num_splits + split;
            float4* dst = reinterpret_cast<float4*>(p.workspace + slot * D + c * CHUNK);
            dst[0] = make_float4(acc[j][0], acc[j][1], acc[j][2], acc[j][3]);
            dst[1] = make_float4(acc[j][4], acc[j][5], acc[j][6], acc[j][7]);
            if (c == 0) {
                float* ml = p.workspace + p.num_tokens * p.num_q_heads * p.num_splits * D + slot * 2;
                ml[0] = sm.row_m[r];
                ml[1] = sm.row_l[r];
            }
        }
    }
}

// After the decode kernel on sm_90+, this kernel is launched as a programmatic dependent of
// the decode kernel or of its split reduce (p.overlap_after_decode): it reads nothing they write
// and writes nothing they read (other output rows, its own workspace region), so it runs
// alongside their end; but a kernel later in the stream may start only when all of this call's
// work is done, so one work-group waits for the earlier kernel before it exits: this kernel then
// completes after that one. The others exit as soon as their rows are done (at once for decode
// rows), so that the grid drains beside the decode kernel's last work-groups. (With every
// work-group waiting, a B64 decode-only batch's grid of ~550 work-groups, two waves, ended
// 7-8 us after the decode kernel; docs/performance.md, session 11.)
template <int kQuery, int kCache>
__global__ void PKV_LAUNCH_BOUNDS(ATT_THREADS, ATT_MIN_BLOCKS) paged_attention_kernel(pkv_attention_params p) {
    paged_attention_body<kQuery, kCache>(p);
    if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0) pkv_wait_prior_grids();
}

// Merges the splits of one query row: out = sum_j w_j acc_j / sum_j w_j l_j, w_j = e^(m_j - M).
template <int kOut>
__global__ void __launch_bounds__(REDUCE_THREADS) split_reduce_kernel(pkv_attention_params p) {
    __shared__ int member;
    const int64_t t = blockIdx.x;
    if (threadIdx.x == 0) {
        // Same ownership rule as the attention kernel: rows inside some sequence's range.
        int lo = 0, hi = p.num_seqs - 1;
        while (lo < hi) {
            const int mid = (lo + hi + 1) / 2;
            if (qsl_at(p, mid) <= t) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        const int q_begin = qsl_at(p, lo);
        const int q_end = max(q_begin, qsl_at(p, lo + 1));
        // Decode rows (one query token) are merged by the decode kernel's own reduce.
        member = t >= q_begin && t < q_end && !(p.decode_kernel && q_end - q_begin == 1);
    }
    __syncthreads();
    if (!member) return;
    const int D = p.head_size;
    const int S = p.num_splits;
    const int nchunks = D / CHUNK;
    const float* ws_acc = p.workspace;
    const float* ws_ml = p.workspace + p.num_tokens * p.num_q_heads * S * D;
    const float out_inv_scale = p.output_scale ? 1.0f / *p.output_scale : 1.0f;
    for (int u = threadIdx.x; u < p.num_q_heads * nchunks; u += REDUCE_THREADS) {
        const int h = u / nchunks, c = u % nchunks;
        const int64_t slot0 = (t * p.num_q_heads + h) * S;
        float M = NEG_INF;
        for (int j = 0; j < S; ++j) M = fmaxf(M, ws_ml[(slot0 + j) * 2]);
        float num[CHUNK], den = 0.0f;
#pragma unroll
        for (int i = 0; i < CHUNK; ++i) num[i] = 0.0f;
        for (int j = 0; j < S; ++j) {
            const float m = ws_ml[(slot0 + j) * 2];
            if (m == NEG_INF) continue;  // an empty split: nothing to add
            const float w = expf(m - M);
            den += w * ws_ml[(slot0 + j) * 2 + 1];
            const float4* a = reinterpret_cast<const float4*>(ws_acc + (slot0 + j) * D + c * CHUNK);
            const float4 a0 = a[0], a1 = a[1];
            num[0] += w * a0.x;
            num[1] += w * a0.y;
            num[2] += w * a0.z;
            num[3] += w * a0.w;
            num[4] += w * a1.x;
            num[5] += w * a1.y;
            num[6] += w * a1.z;
            num[7] += w * a1.w;
        }
        float v[CHUNK];
#pragma unroll
        for (int i = 0; i < CHUNK; ++i) v[i] = den > 0.0f ? num[i] / den : 0.0f;
        const int64_t off = t * p.output_strides[0] + static_cast<int64_t>(h) * p.output_strides[1] +
                            static_cast<int64_t>(c) * CHUNK * p.output_strides[2];
        store_out8<kOut>(p.output, off, p.output_strides[2], p.output_contig != 0, v, p.out_fp8, out_inv_scale);
    }
}

template <int kQuery, int kCache>
pkv_error_t launch_general(const pkv_attention_params& p, pkv_stream_t stream) {
#if defined(PKV_CUDA)
    if (p.general_mma != 0) return launch_prefill_mma(p, stream);
#endif
    void (*kernel)(pkv_attention_params) = paged_attention_kernel<kQuery, kCache>;
    if (p.shared_mem_bytes > PKV_DEFAULT_DYNAMIC_SMEM) {
        const pkv_error_t e = pkv_allow_dynamic_smem(reinterpret_cast<const void*>(kernel), p.shared_mem_bytes);
        if (e != pkv_success) return e;
    }
    const dim3 grid(static_cast<unsigned>(p.num_q_blocks), static_cast<unsigned>(p.num_kv_heads * p.head_groups),
                    static_cast<unsigned>(p.num_splits));
    // (The decode kernel, when the plan has one, was launched just before: pkv_kernel_paged_decode
    // launches whenever decode_kernel is set and the batch is not empty, as here.)
    const bool overlap = p.overlap_after_decode != 0 && p.decode_kernel != 0;
    return pkv_launch(kernel, grid, dim3(ATT_THREADS), p.shared_mem_bytes, stream, overlap, p);
}

// The general kernel, or in its place the tensor-core prefill kernel (prefill.hip) where the
// plan chose it; then the split reduce, which merges either kernel's partials.
template <int kQuery, int kCache>
pkv_error_t launch(const pkv_attention_params& p, pkv_stream_t stream) {
    pkv_error_t e = launch_general<kQuery, kCache>(p, stream);
    if (e != pkv_success || p.num_splits == 1) return e;
    split_reduce_kernel<kQuery><<<static_cast<unsigned>(p.num_tokens), REDUCE_THREADS, 0, stream>>>(p);
    return pkv_get_last_error();
}

template <int kQuery>
pkv_error_t launch_for_query(const pkv_attention_params& p, pkv_stream_t stream) {
    return p.kv_fp8 != PKV_FP8_NONE ? launch<kQuery, PKV_DT_U8>(p, stream) : launch<kQuery, kQuery>(p, stream);
}

}  // namespace
}  // namespace pkv

// Enqueues paged attention (and the split reduce) on `stream`. Returns the runtime's error
// code (0 = success). Nothing is launched for an empty batch.
extern "C" int pkv_kernel_paged_attention(const pkv_attention_params* p, void* stream) {
    if (p->num_tokens <= 0 || p->num_seqs <= 0 || p->num_q_blocks <= 0) return 0;
    const pkv_stream_t s = static_cast<pkv_stream_t>(stream);
    switch (p->query_dtype) {
        case PKV_DT_F32:
            return static_cast<int>(pkv::launch_for_query<PKV_DT_F32>(*p, s));
        case PKV_DT_F16:
            return static_cast<int>(pkv::launch_for_query<PKV_DT_F16>(*p, s));
        default:
            return static_cast<int>(pkv::launch_for_query<PKV_DT_BF16>(*p, s));
    }
}
