// Device helpers shared by the kernels: element conversions, bit-exact fp8 encode/decode (the
// integer algorithm of src/core/fp8.rs), and raw vector loads/stores of 1..32 bytes.
// Written in C++11 (Debian's hipcc defaults to -std=c++11) so every .hip file compiles with a
// bare `hipcc --offload-arch=<gfx> -c`.
#pragma once

#include "pkv_compat.h"
#include "pkv_params.h"

namespace pkv {

// ------------------------------------------------------------------------------------------
// Element types, by pkv dtype code (include/pagedkv.h): what a tensor's bytes mean.
// ------------------------------------------------------------------------------------------

template <int kDtype>
struct Elem;

template <>
struct Elem<PKV_DT_F32> {
    typedef uint32_t raw;
    static PKV_DEVICE float to_f32(raw r) { return __uint_as_float(r); }
    static PKV_DEVICE raw from_f32(float v) { return __float_as_uint(v); }
};

template <>
struct Elem<PKV_DT_F16> {
    typedef uint16_t raw;
    static PKV_DEVICE float to_f32(raw r) { return pkv_f16_bits_to_f32(r); }
    static PKV_DEVICE raw from_f32(float v) { return pkv_f32_to_f16_bits(v); }
};

template <>
struct Elem<PKV_DT_BF16> {
    typedef uint16_t raw;
    // bf16 is the top half of an f32: widening is a shift.
    static PKV_DEVICE float to_f32(raw r) { return __uint_as_float(static_cast<uint32_t>(r) << 16); }
    // Round to nearest even; NaN stays a (quiet) NaN, as the `half` crate does on the CPU.
    static PKV_DEVICE raw from_f32(float v) {
        uint32_t u = __float_as_uint(v);
        if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<raw>((u >> 16) | 0x40u);
        u += 0x7fffu + ((u >> 16) & 1u);
        return static_cast<raw>(u >> 16);
    }
};

// fp8 caches and fp8 outputs: raw bytes; the format is a run-time argument (pkv_fp8_format).
template <>
struct Elem<PKV_DT_U8> {
    typedef uint8_t raw;
};

// ------------------------------------------------------------------------------------------
// fp8: bit-identical to src/core/fp8.rs (round to nearest even, saturate to the largest
// finite value, NaN to the format's NaN code). Portable integer code: hardware conversions'
// saturation and NaN rules differ between vendors and generations. (The cache writer uses
// NVIDIA's sm_89+ satfinite conversion for e4m3fn/e5m2 where it is proven equal to this
// encoder for every f32 input, scripts/h200/fp8_cvt_proof.cu, and falls back to it otherwise.)
// ------------------------------------------------------------------------------------------

struct Fp8Spec {
    int bias;
    int mantissa_bits;
    uint32_t max_code;
    uint32_t nan_code;
    bool has_negative_zero;
};

PKV_DEVICE Fp8Spec fp8_spec(int format) {
    Fp8Spec s;
    if (format == PKV_FP8_E4M3FNUZ) {
        s.bias = 8;
        s.mantissa_bits = 3;
        s.max_code = 0x7F;
        s.nan_code = 0x80;
        s.has_negative_zero = false;
    } else if (format == PKV_FP8_E5M2) {
        s.bias = 15;
        s.mantissa_bits = 2;
        s.max_code = 0x7B;
        s.nan_code = 0x7F;
        s.has_negative_zero = true;
    } else {  // PKV_FP8_E4M3FN
        s.bias = 7;
        s.mantissa_bits = 3;
        s.max_code = 0x7E;
        s.nan_code = 0x7F;
        s.has_negative_zero = true;
    }
    return s;
}

// encode(v): the nearest fp8 value (ties to the even code), saturated.
PKV_DEVICE uint8_t fp8_encode(int format, float v) {
    const Fp8Spec s = fp8_spec(format);
    const uint32_t u = __float_as_uint(v);
    const uint32_t sign = (u >> 24) & 0x80u;
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return static_cast<uint8_t>(s.nan_code);
    if (a == 0x7f800000u) return static_cast<uint8_t>(sign | s.max_code);
    uint32_t code = 0;
    // f32 subnormals (< 2^-126) are far below half the smallest fp8 subnormal: they round to 0.
    if ((a >> 23) != 0) {
        const int ef = static_cast<int>(a >> 23) - 127;
        const uint32_t sig = (a & 0x7fffffu) | 0x800000u;  // value = sig * 2^(ef - 23)
        const int emin = 1 - s.bias;                      // smallest normal exponent
        const int e = ef > emin ? ef : emin;              // binade whose quantum applies
        // Quanta of 2^(e - m): n = sig / 2^shift, shift >= 20.
        const int shift = 23 + e - ef - s.mantissa_bits;
        uint32_t n = 0;
        if (shift <= 24) {
            n = sig >> shift;
            const uint32_t rem = sig & ((1u << shift) - 1u);
            const uint32_t half = 1u << (shift - 1);
            if (rem > half || (rem == half && (n & 1u))) n += 1;
        }
        if (n != 0) {
            // Normal: exponent field e + bias plus the mantissa n - 2^m (a carry out of the
            // mantissa bumps the exponent by itself). Subnormal (e == emin, n < 2^m): code = n.
            const int c = ((e + s.bias) << s.mantissa_bits) + static_cast<int>(n) - (1 << s.mantissa_bits);
            code = c >= static_cast<int>(s.max_code) ? s.max_code : static_cast<uint32_t>(c);
        }
    }
    if (code == 0) return static_cast<uint8_t>(s.has_negative_zero ? sign : 0u);
    return static_cast<uint8_t>(sign | code);
}

// decode(code): exact (every fp8 value is an f32).
PKV_DEVICE float fp8_decode(int format, uint32_t code) {
    const Fp8Spec s = fp8_spec(format);
    const uint32_t mag = code & 0x7fu;
    if (format == PKV_FP8_E4M3FNUZ) {
        if (code == 0x80u) return __uint_as_float(0x7fc00000u);
    } else if (format == PKV_FP8_E5M2) {
        if ((mag & 0x7cu) == 0x7cu) {
            if (mag & 3u) return __uint_as_float(0x7fc00000u);
            return __uint_as_float((code & 0x80u) ? 0xff800000u : 0x7f800000u);
        }
    } else if (mag == 0x7fu) {
        return __uint_as_float(0x7fc00000u);
    }
    const uint32_t exp = mag >> s.mantissa_bits;
    const uint32_t mant = mag & ((1u << s.mantissa_bits) - 1u);
    const int sig = static_cast<int>(exp ? (mant | (1u << s.mantissa_bits)) : mant);
    const int e = static_cast<int>(exp ? exp : 1u) - s.bias - s.mantissa_bits;  // in [-16, 13]
    const float v = static_cast<float>(sig) * __uint_as_float(static_cast<uint32_t>(e + 127) << 23);
    return (code & 0x80u) ? -v : v;
}

// ------------------------------------------------------------------------------------------
// Eight raw elements in registers, packed little-endian into 32-bit words, and moved to and
// from memory through the widest access the caller has proven aligned. Words (never byte
// arrays reinterpreted as wider types) keep the values in registers on every compiler.
// ------------------------------------------------------------------------------------------

// Moves kWords 32-bit words: 1 -> 4 bytes, 2 -> 8 bytes, 4 -> 16 bytes, 8 -> two 16-byte accesses.
template <int kWords>
struct Words;
template <>
struct Words<1> {
    static PKV_DEVICE void load(uint32_t* w, const void* p) { w[0] = *static_cast<const uint32_t*>(p); }
    static PKV_DEVICE void store(void* p, const uint32_t* w) { *static_cast<uint32_t*>(p) = w[0]; }
};
template <>
struct Words<2> {
    static PKV_DEVICE void load(uint32_t* w, const void* p) {
        const uint2 q = *static_cast<const uint2*>(p);
        w[0] = q.x;
        w[1] = q.y;
    }
    static PKV_DEVICE void store(void* p, const uint32_t* w) { *static_cast<uint2*>(p) = make_uint2(w[0], w[1]); }
};
template <>
struct Words<4> {
    static PKV_DEVICE void load(uint32_t* w, const void* p) {
        const uint4 q = *static_cast<const uint4*>(p);
        w[0] = q.x;
        w[1] = q.y;
        w[2] = q.z;
        w[3] = q.w;
    }
    static PKV_DEVICE void store(void* p, const uint32_t* w) {
        *static_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
    }
};
template <>
struct Words<8> {
    static PKV_DEVICE void load(uint32_t* w, const void* p) {
        Words<4>::load(w, p);
        Words<4>::load(w + 4, static_cast<const uint4*>(p) + 1);
    }
    static PKV_DEVICE void store(void* p, const uint32_t* w) {
        Words<4>::store(p, w);
        Words<4>::store(static_cast<uint4*>(p) + 1, w + 4);
    }
};

template <typename Raw>
struct Raw8 {
    static const int kBytes = 8 * static_cast<int>(sizeof(Raw));
    static const int kWords = kBytes / 4;           // 2, 4 or 8
    static const int kPerWord = 4 / static_cast<int>(sizeof(Raw));
    uint32_t w[kWords];

    PKV_DEVICE Raw get(int i) const {
        return static_cast<Raw>(w[i / kPerWord] >> (8 * sizeof(Raw) * (i % kPerWord)));
    }
    PKV_DEVICE void set(int i, Raw v) {
        const int shift = 8 * static_cast<int>(sizeof(Raw)) * (i % kPerWord);
        const uint32_t mask = static_cast<uint32_t>((1ull << (8 * sizeof(Raw))) - 1ull) << shift;
        w[i / kPerWord] = (w[i / kPerWord] & ~mask) | ((static_cast<uint32_t>(v) << shift) & mask);
    }
    PKV_DEVICE void clear() {
#pragma unroll
        for (int i = 0; i < kWords; ++i) w[i] = 0;
    }
    // All 8 elements from/to `p` (aligned to min(kBytes, 16)).
    PKV_DEVICE void load_all(const Raw* p) { Words<kWords>::load(w, p); }
    PKV_DEVICE void store_all(Raw* p) const { Words<kWords>::store(p, w); }
    // Elements 4*half .. 4*half+3 from/to `p` (aligned to kBytes / 2).
    PKV_DEVICE void load_half(int half, const Raw* p) { Words<kWords / 2>::load(w + half * (kWords / 2), p); }
    PKV_DEVICE void store_half(int half, Raw* p) const { Words<kWords / 2>::store(p, w + half * (kWords / 2)); }
};

// Loads 8 elements at `base + i * step` (elements); `contiguous` (step == 1 and the address
// aligned to min(8 * sizeof(Raw), 16) bytes, proven by the host) makes it one wide access.
template <typename Raw>
PKV_DEVICE Raw8<Raw> load8(const Raw* base, int64_t step, bool contiguous) {
    Raw8<Raw> r;
    if (contiguous) {
        r.load_all(base);
    } else {
        r.clear();
#pragma unroll
        for (int i = 0; i < 8; ++i) r.set(i, base[i * step]);
    }
    return r;
}

// ------------------------------------------------------------------------------------------
// Attention arguments that live on the device (never validated by the host: clamped here).
// ------------------------------------------------------------------------------------------

PKV_DEVICE int clamp_int(int64_t v, int64_t lo, int64_t hi) {
    return static_cast<int>(v < lo ? lo : (v > hi ? hi : v));
}

// query_start_loc[i], clamped into [0, num_tokens], so that garbage values cannot index out of
// bounds (the host validated the shapes; the values are the caller's device data).
PKV_DEVICE int qsl_at(const pkv_attention_params& p, int i) {
    return clamp_int(p.query_start_loc[static_cast<int64_t>(i) * p.query_start_loc_stride], 0, p.num_tokens);
}

}  // namespace pkv
