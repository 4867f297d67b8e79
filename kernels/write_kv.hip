// Cache writers: new keys/values [num_tokens, num_kv_heads, head_size] into a paged cache,
// optionally quantised to fp8 (encode(v / scale), bit-identical to src/core/fp8.rs).
//
// One kernel body serves both writers:
// - native (packed = 1): vLLM's reshape_and_cache addressing, computed from the shapes; strides
//   are ignored (the host only picks it for fully packed split caches with block size 16/32);
// - stride-aware (packed = 0): every stride honoured, so split (x-split keys), NHD, blocks-first
//   and hybrid-interleaved pages are one code path.
// A work-group takes WRITE_TOKENS tokens of one kv head. The unit of work is 8 elements along
// head_size (every supported head_size is a multiple of 8): read as one 16/32-byte access when
// the source rows are contiguous, written as the widest run the destination layout allows.
// Neighbouring threads take neighbouring tokens when the destination's token stride is small
// (split keys: 16-byte x-groups of consecutive slots are adjacent; split values: consecutive
// slots are adjacent elements), so stores coalesce whenever the slots of a batch are
// consecutive, as they are for prefill chunks.

#include "pkv_common.h"

namespace pkv {
namespace {

constexpr int WRITE_THREADS = 256;  // per work-group: whole waves of 32 and of 64
constexpr int WRITE_TOKENS = 32;    // tokens per work-group
constexpr int CHUNK = 8;            // elements per unit of work
static_assert(WRITE_THREADS % PKV_WAVE_SIZE == 0, "work-groups are whole waves");
static_assert(WRITE_TOKENS <= WRITE_THREADS, "one thread reads each slot");
static_assert(sizeof(pkv_write_params) / 4 <= WRITE_THREADS, "one thread copies each argument word");

template <bool kCond, typename A, typename B>
struct Select {
    typedef A type;
};
template <typename A, typename B>
struct Select<false, A, B> {
    typedef B type;
};

// Offset of dim d inside one token of one head (x is a power of two: shifts, no division).
PKV_DEVICE int64_t dim_offset(const pkv_cache_addr& a, int d) {
    return static_cast<int64_t>(d >> a.x_shift) * a.dhi + static_cast<int64_t>(d & ((1 << a.x_shift) - 1)) * a.dlo;
}

// Writes 8 elements (dims d0..d0+7) of one token: runs of `run` contiguous elements.
template <typename DRaw>
PKV_DEVICE void store8(DRaw* cache, int64_t base, const pkv_cache_addr& a, int d0, int run, const Raw8<DRaw>& v) {
    if (run == 8) {
        v.store_all(cache + base + dim_offset(a, d0));
    } else if (run == 4) {
        v.store_half(0, cache + base + dim_offset(a, d0));
        v.store_half(1, cache + base + dim_offset(a, d0 + 4));
    } else {
#pragma unroll
        for (int i = 0; i < CHUNK; ++i) cache[base + dim_offset(a, d0 + i)] = v.get(i);
    }
}

// Source element -> cache element: a raw copy, or fp8 quantisation.
template <int kSrc, bool kQuant>
struct Convert {
    typedef typename Elem<kSrc>::raw SRaw;
    static PKV_DEVICE Raw8<SRaw> run(const Raw8<SRaw>& in, float, int) { return in; }
};
template <int kSrc>
struct Convert<kSrc, true> {
    typedef typename Elem<kSrc>::raw SRaw;
    static PKV_DEVICE Raw8<uint8_t> run(const Raw8<SRaw>& in, float scale, int format) {
        Raw8<uint8_t> out;
        out.clear();
#pragma unroll
        for (int i = 0; i < CHUNK; ++i) {
            // IEEE f32 division, as the CPU backend's `v / scale`.
            out.set(i, fp8_encode(format, Elem<kSrc>::to_f32(in.get(i)) / scale));
        }
        return out;
    }
};

struct TensorJob {
    const void* src;         // [>= num_tokens, num_kv_heads, head_size]
    const int64_t* strides;  // of src
    bool src_contig;
    void* cache;
    pkv_cache_addr addr;
    int run;
    bool token_fastest;
    float scale;
};

template <int kSrc, bool kQuant>
PKV_DEVICE void write_tensor(const TensorJob& job, const int64_t* slots, int64_t t0, int h, int head_size,
                             int block_size, int fp8_format) {
    typedef typename Elem<kSrc>::raw SRaw;
    typedef typename Select<kQuant, uint8_t, SRaw>::type DRaw;
    const SRaw* src = static_cast<const SRaw*>(job.src);
    DRaw* cache = static_cast<DRaw*>(job.cache);
    // head_size is a multiple of 8 for attention; writes accept any, the tail chunk goes
    // element by element.
    const int nchunks = (head_size + CHUNK - 1) / CHUNK;
    const int units = WRITE_TOKENS * nchunks;
    for (int u = threadIdx.x; u < units; u += WRITE_THREADS) {
        int tl, c;
        if (job.token_fastest) {
            tl = u % WRITE_TOKENS;
            c = u / WRITE_TOKENS;
        } else {
            c = u % nchunks;
            tl = u / nchunks;
        }
        const int64_t slot = slots[tl];
        if (slot < 0) continue;
        const int64_t b = slot / block_size;
        const int64_t o = slot - b * block_size;
        const int64_t t = t0 + tl;
        const SRaw* row = src + t * job.strides[0] + h * job.strides[1] + static_cast<int64_t>(c) * CHUNK * job.strides[2];
        const int64_t base = b * job.addr.blk + h * job.addr.head + o * job.addr.tok;
        const int valid = head_size - c * CHUNK;
        if (valid >= CHUNK) {
            const Raw8<SRaw> in = load8(row, job.strides[2], job.src_contig);
            const Raw8<DRaw> out = Convert<kSrc, kQuant>::run(in, job.scale, fp8_format);
            store8(cache, base, job.addr, c * CHUNK, job.run, out);
        } else {
            for (int i = 0; i < valid; ++i) {
                Raw8<SRaw> in;
                in.clear();
                in.set(0, row[i * job.strides[2]]);
                const Raw8<DRaw> out = Convert<kSrc, kQuant>::run(in, job.scale, fp8_format);
                cache[base + dim_offset(job.addr, c * CHUNK + i)] = out.get(0);
            }
        }
    }
}

template <int kSrc, bool kQuant, bool kPacked>
__global__ void __launch_bounds__(WRITE_THREADS) write_kv_kernel(pkv_write_params p_arg) {
    __shared__ int64_t slots[WRITE_TOKENS];
#if defined(PKV_HIP)
    // As in attention.hip: AMD would hold every kernel argument in scalar registers (and spill
    // some); read from LDS they become broadcast loads into vector registers.
    __shared__ pkv_write_params p_copy;
    if (threadIdx.x < sizeof(pkv_write_params) / sizeof(uint32_t))
        reinterpret_cast<uint32_t*>(&p_copy)[threadIdx.x] = reinterpret_cast<const uint32_t*>(&p_arg)[threadIdx.x];
    __syncthreads();
    const pkv_write_params& p = p_copy;
#else
    const pkv_write_params& p = p_arg;
#endif
    const int64_t t0 = static_cast<int64_t>(blockIdx.x) * WRITE_TOKENS;
    const int h = blockIdx.y;
    if (threadIdx.x < WRITE_TOKENS) {
        const int64_t t = t0 + threadIdx.x;
        int64_t slot = -1;
        if (t < p.num_tokens) {
            slot = p.slot_mapping[t * p.slot_stride];
            // Out-of-range slots cannot be reported without a host sync: they are skipped.
            if (slot >= p.num_slots) slot = -1;
        }
        slots[threadIdx.x] = slot;
    }
    __syncthreads();

    pkv_cache_addr ka = p.key_addr;
    pkv_cache_addr va = p.value_addr;
    if (kPacked) {
        // reshape_and_cache: key [B, H, D/x, bs, x], value [B, H, D, bs], packed.
        typedef typename Select<kQuant, uint8_t, typename Elem<kSrc>::raw>::type DRaw;
        const int x_shift = sizeof(DRaw) == 1 ? 4 : (sizeof(DRaw) == 2 ? 3 : 2);  // x = 16 / itemsize
        // The host proved these products fit in 32 bits (it checks the packed strides).
        const int bs = p.block_size;
        const int per_head = p.head_size * bs;
        const int per_block = per_head * p.num_kv_heads;
        ka.blk = per_block;
        ka.head = per_head;
        ka.dhi = bs << x_shift;
        ka.tok = 1 << x_shift;
        ka.dlo = 1;
        ka.x_shift = x_shift;
        va.blk = per_block;
        va.head = per_head;
        va.dhi = bs;
        va.tok = 1;
        va.dlo = 0;
        va.x_shift = 0;
    }
    const float k_scale = p.k_scale ? *p.k_scale : 1.0f;
    const float v_scale = p.v_scale ? *p.v_scale : 1.0f;
    TensorJob key = {p.key,          p.key_strides, p.key_src_contig != 0, p.key_cache, ka, p.key_run,
                     p.key_token_fastest != 0, k_scale};
    TensorJob value = {p.value,          p.value_strides, p.value_src_contig != 0, p.value_cache, va, p.value_run,
                       p.value_token_fastest != 0, v_scale};
    write_tensor<kSrc, kQuant>(key, slots, t0, h, p.head_size, p.block_size, p.fp8_format);
    write_tensor<kSrc, kQuant>(value, slots, t0, h, p.head_size, p.block_size, p.fp8_format);
}

template <int kSrc, bool kQuant, bool kPacked>
pkv_error_t launch(const pkv_write_params& p, pkv_stream_t stream) {
    const dim3 grid(static_cast<unsigned>((p.num_tokens + WRITE_TOKENS - 1) / WRITE_TOKENS),
                    static_cast<unsigned>(p.num_kv_heads));
    write_kv_kernel<kSrc, kQuant, kPacked><<<grid, WRITE_THREADS, 0, stream>>>(p);
    return pkv_get_last_error();
}

template <int kSrc>
pkv_error_t launch_for_source(const pkv_write_params& p, pkv_stream_t stream) {
    const bool quant = p.fp8_format != PKV_FP8_NONE;
    if (p.packed) return quant ? launch<kSrc, true, true>(p, stream) : launch<kSrc, false, true>(p, stream);
    return quant ? launch<kSrc, true, false>(p, stream) : launch<kSrc, false, false>(p, stream);
}

}  // namespace
}  // namespace pkv

// Enqueues the cache write on `stream`. Returns the runtime's error code (0 = success).
extern "C" int pkv_kernel_write_kv_cache(const pkv_write_params* p, void* stream) {
    if (p->num_tokens <= 0 || p->num_kv_heads <= 0) return 0;
    const pkv_stream_t s = static_cast<pkv_stream_t>(stream);
    switch (p->src_dtype) {
        case PKV_DT_F32:
            return static_cast<int>(pkv::launch_for_source<PKV_DT_F32>(*p, s));
        case PKV_DT_F16:
            return static_cast<int>(pkv::launch_for_source<PKV_DT_F16>(*p, s));
        default:
            return static_cast<int>(pkv::launch_for_source<PKV_DT_BF16>(*p, s));
    }
}
