// Device helpers shared by the attention kernels (attention.hip, decode.hip, prefill.hip):
// where a cached element lives, 8-element loads from the cache, and 8-element output stores.
// Written once here; each kernel file had its own copy before.
#pragma once

#include "pkv_common.h"

namespace pkv {

// Offset of dim d inside one token of one head (x is a power of two: shifts, no division).
PKV_DEVICE int64_t dim_offset(const pkv_cache_addr& a, int d) {
    return static_cast<int64_t>(d >> a.x_shift) * a.dhi + static_cast<int64_t>(d & ((1 << a.x_shift) - 1)) * a.dlo;
}

// Dims d0..d0+7 of one cached token whose layout keeps `run` elements (8, 4 or 1) contiguous
// and aligned for one access (src/gpu/params.rs proves it).
template <typename Raw>
PKV_DEVICE Raw8<Raw> load8_run(const Raw* base, const pkv_cache_addr& a, int d0, int run) {
    Raw8<Raw> r;
    if (run == 8) {
        r.load_all(base + dim_offset(a, d0));
    } else if (run == 4) {
        r.load_half(0, base + dim_offset(a, d0));
        r.load_half(1, base + dim_offset(a, d0 + 4));
    } else {
        r.clear();
#pragma unroll
        for (int i = 0; i < 8; ++i) r.set(i, base[dim_offset(a, d0 + i)]);
    }
    return r;
}

// Writes 8 output elements (final f32 values) as the output dtype: kOut, or fp8 codes of
// v / output_scale when the output is fp8. `contig`: one aligned access (proven by the host),
// else element by element `step` apart.
template <int kOut>
PKV_DEVICE void store_out8(void* out, int64_t off, int64_t step, bool contig, const float* v, int out_fp8,
                           float out_inv_scale) {
    if (out_fp8 != PKV_FP8_NONE) {
        Raw8<uint8_t> r;
        r.clear();
#pragma unroll
        for (int i = 0; i < 8; ++i) r.set(i, fp8_encode(out_fp8, v[i] * out_inv_scale));
        uint8_t* o = static_cast<uint8_t*>(out) + off;
        if (contig) {
            r.store_all(o);
        } else {
#pragma unroll
            for (int i = 0; i < 8; ++i) o[i * step] = r.get(i);
        }
        return;
    }
    typedef typename Elem<kOut>::raw Raw;
    Raw8<Raw> r;
    r.clear();
#pragma unroll
    for (int i = 0; i < 8; ++i) r.set(i, Elem<kOut>::from_f32(v[i]));
    Raw* o = static_cast<Raw*>(out) + off;
    if (contig) {
        r.store_all(o);
    } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) o[i * step] = r.get(i);
    }
}

}  // namespace pkv
