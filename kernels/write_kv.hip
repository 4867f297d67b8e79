// Cache writers: new keys/values [num_tokens, num_kv_heads, head_size] into a paged cache,
// optionally quantised to fp8 (encode(v / scale), bit-identical to src/core/fp8.rs).
//
// One kernel body serves both writers:
// - native (packed = 1): vLLM's reshape_and_cache addressing, computed from the shapes; strides
//   are ignored (the host only picks it for fully packed split caches with block size 16/32);
// - stride-aware (packed = 0): every stride honoured, so split (x-split keys), NHD, blocks-first
//   and hybrid-interleaved pages are one code path.
//
// Work decomposition. Tokens go in tiles of TILE_TOKENS = 16 (two groups of 8). A thread takes
// one tensor (grid y: key or value), one kv head, one 8-element chunk along head_size and one
// group of 8 tokens of a tile; the two threads of a tile that share a chunk are neighbouring
// lanes, and the chunks of a head fill the lanes after them. Every thread issues its 8 row loads
// (16 bytes each for 2-byte sources) before its first store, so a warp keeps 4 KiB in flight
// without shared memory or barriers; reads of one instruction are whole 256-byte rows.
//
// Stores, by the destination's shape (the host proves which applies):
// - per token (keys of every layout; NHD and other values): the 8 elements of one token are one
//   store (16 bytes for 2-byte caches: x-split keys, NHD) or element stores. The lane pair takes
//   tokens interleaved (lane 0: tokens 0, 2, .., 14; lane 1: 1, 3, .., 15), so when slots are
//   consecutive one store instruction fills whole 32-byte sectors (x-split keys: adjacent
//   slots are adjacent 16-byte x-groups). For 1-byte (fp8) caches a token's 8 codes are half a
//   16-byte row (x-split keys, x = 16; NHD): where every row is 16-byte aligned (uniform over
//   the launch), the two lanes holding a row's halves trade them with shuffles and each stores
//   whole rows, one 16-byte store per token for any slot pattern (store_token_rows; NVIDIA).
// - token vectors (split values [.., head_size, block_size], slot stride 1): a thread holds 8
//   consecutive tokens and transposes them in registers; when their slots are 8 consecutive,
//   8-aligned slots of one block, each dim is one 8-element store (16 bytes for 2-byte caches),
//   and the lane pair fills 32 consecutive bytes. For 1-byte (fp8) caches a dim of 8 tokens is
//   only 8 bytes: when every lane pair of the wave holds 16 consecutive slots, the pair trades
//   halves with shuffles and each lane stores one dim's 16 codes (store_token_vectors). Any other
//   slot pattern (padding, block ends, unaligned runs, random slots) falls back to element
//   stores, correct for every input.
//
// fp8: `encode(v / scale)` with the division correctly rounded (IEEE f32, as the CPU's `v /
// scale`), computed without a per-element division (see Quotient; one correction for 2-byte
// sources) and encoded by the hardware (NVIDIA sm_89+, e4m3fn/e5m2: cvt.rn.satfinite, four
// values per two instructions, proven against the portable encoder for every f32 by
// scripts/h200/fp8_cvt_proof.cu) or branch-free (fp8_code_fast: e4m3fnuz, AMD); inputs or scales
// outside the ranges where that is proven take the plain division and pkv::fp8_encode. A
// thread's rare inputs that the fast path cannot encode (NaN, overflow) are caught by one test
// after its stores and rewritten by write_exact.
//
// The scale is read together with the rows and used after them (one memory round trip), and
// only valid tokens are converted when a thread's tokens are not one full vector run (a 1-token
// write converts 8 elements per thread, not 64).

#include "pkv_common.h"

namespace pkv {
namespace {

// Threads per work-group: whole waves of 32 and of 64. 128 rather than 256: a work-group's
// registers are freed when its slowest warp ends, so smaller groups keep more warps resident
// (fp8 65536 tokens, same call: 73.6% of copy at 256, 76.4% at 128; docs/performance.md).
constexpr int WRITE_THREADS = 128;
constexpr int CHUNK = 8;            // elements along head_size per thread
constexpr int GROUP = 8;            // tokens per thread
constexpr int PAIR = 2;             // token groups side by side in neighbouring lanes
constexpr int TILE_TOKENS = GROUP * PAIR;
static_assert(PKV_WAVE_SIZE % PAIR == 0, "a lane pair never straddles two waves");

// Work-group size and the resident work-groups per SM asked of the register allocator (NVIDIA;
// 64K registers per SM). The writers are latency-bound (a thread waits for its rows, then
// converts and stores with nothing in flight), so resident warps set the rate:
// - copies of 2-byte elements: 8 rows of 16 bytes plus addresses, <= 80 registers (6 groups,
//   24 warps);
// - fp8 from 2-byte sources: the quantiser's temporaries too, <= 96 (5 groups, 20 warps;
//   at 80 they spill; 96 instead of 128 registers: 79.2 instead of 76.4% of copy);
// - f32 sources: 32-byte rows, <= 128 (4 groups, 16 warps).
template <int kSrc, int kFp8>
struct WriteShape {
    static const bool kShort = sizeof(typename Elem<kSrc>::raw) == 2;
    static const int kThreads = WRITE_THREADS;
    static const int kMinBlocks = !kShort ? 4 : (kFp8 == PKV_FP8_NONE ? 6 : 5);
    static_assert(kThreads % PKV_WAVE_SIZE == 0, "work-groups are whole waves");
    static_assert(sizeof(pkv_write_params) / 4 <= kThreads, "one thread copies each argument word");
};

// Grid y: which tensor a work-group writes.
constexpr int TENSOR_KEY = 0;
constexpr int TENSOR_VALUE = 1;
constexpr int NUM_TENSORS = 2;

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

// ------------------------------------------------------------------------------------------
// fp8 quantisation
// ------------------------------------------------------------------------------------------

// The quantiser's roundings must happen where written. CUDA's __fmul_rn/__fadd_rn are never
// contracted into FMAs; some HIP headers define them as plain operators, which clang may fuse
// after inlining unless contraction is off in the function.
#if defined(PKV_HIP)
#define PKV_NO_CONTRACT _Pragma("clang fp contract(off)")
#else
#define PKV_NO_CONTRACT
#endif

// Formats as compile-time constants: the encoder's shifts and limits become immediates.
template <int kFormat>
struct Fp8Fmt;
template <>
struct Fp8Fmt<PKV_FP8_E4M3FN> {
    static const int kBias = 7, kMant = 3;
    static const uint32_t kMax = 0x7E, kNan = 0x7F;
    static const bool kNegZero = true;
};
template <>
struct Fp8Fmt<PKV_FP8_E4M3FNUZ> {
    static const int kBias = 8, kMant = 3;
    static const uint32_t kMax = 0x7F, kNan = 0x80;
    static const bool kNegZero = false;  // 0x80 is NaN
};
template <>
struct Fp8Fmt<PKV_FP8_E5M2> {
    static const int kBias = 15, kMant = 2;
    static const uint32_t kMax = 0x7B, kNan = 0x7F;
    static const bool kNegZero = true;
};

// Code (0..kMax) of a non-negative f32 magnitude `q` (NaN bits count as huge: saturated; the
// caller substitutes the NaN code for NaN inputs). Same results as pkv::fp8_encode:
// - below the smallest normal 2^(1-bias): q + 2^(24-bias-mant) has its last place at the
//   subnormal quantum, so the FPU's round-to-nearest-even produces the code in the low bits
//   (a result of 2^mant is the smallest normal's code);
// - normal: integer round-to-nearest-even on the bits, dropping 23-mant mantissa bits; the
//   exponent rebias is folded into the same add, and a carry out of the mantissa bumps the
//   exponent by itself;
// - saturation: codes are monotonic in magnitude, so min(code, max) is "saturate to the
//   largest finite value" (infinities included).
template <int kFormat>
PKV_DEVICE uint32_t fp8_code_fast(float q) {
    PKV_NO_CONTRACT
    typedef Fp8Fmt<kFormat> F;
    const int kShift = 23 - F::kMant;
    const uint32_t kMagicBits = static_cast<uint32_t>(127 + 24 - F::kBias - F::kMant) << 23;
    const uint32_t kMinNormalBits = static_cast<uint32_t>(127 + 1 - F::kBias) << 23;
    const uint32_t kRoundRebias = ((1u << (kShift - 1)) - 1u) - (static_cast<uint32_t>(127 - F::kBias) << 23);
    const uint32_t mb = __float_as_uint(q);
    const uint32_t sub = __float_as_uint(__fadd_rn(q, __uint_as_float(kMagicBits))) - kMagicBits;
    const uint32_t norm = (mb + kRoundRebias + ((mb >> kShift) & 1u)) >> kShift;
    const uint32_t code = mb < kMinNormalBits ? sub : norm;
    return code < F::kMax ? code : F::kMax;
}

// `encode(a / scale)`, bit-identical to pkv::fp8_encode(format, a / scale) with an IEEE f32
// division, for every a and scale. The quotient is correctly rounded (as the division is), its
// sign is the XOR of the operands' signs (also for zeros and infinities, as IEEE division gives
// it). Modes, uniform per tensor and chosen once from the scale:
// - kFast: scale in [2^-40, 2^40] (positive): y = RN(1/scale), q0 = RN(a y), then Markstein
//   corrections q' = RN(q - RN(scale q - a) y) (the residual negated: see quotient_short).
//   4-byte sources take two: the first makes q faithful (q0 is within 1.5 ulp of the quotient),
//   the second then yields the correctly rounded quotient (Markstein's theorem: y within half
//   an ulp of 1/b, q faithful, residual exact). 2-byte sources (at most 11 significant bits)
//   take one, proven exact by exhaustion (quotient_short). The proofs need no underflow or
//   overflow, which holds wherever the quotient's last bits matter: quotients below 2^-19
//   encode to zero and above 2^19 saturate, and in between a and the residual are normal for
//   scales in this range. A quotient that overflows gives an infinite q0 and a NaN after the
//   corrections, which fp8_code_fast saturates as the infinity would be (the hardware path
//   re-encodes it portably); a NaN code therefore comes from a NaN input only.
//   (Powers of two get exact products: the corrections change nothing.)
// - kDivide: any other scale (negative, zero, subnormal, beyond 2^40, inf, NaN): the IEEE
//   division, whose NaN quotients (0/0, inf/inf, NaN scale) give the NaN code. Negative scales
//   are legal but not used by engines: they take this exact, slower mode so that kFast's
//   quotients carry their sign for zeros too (quotient_short).
enum QuantMode { kFast, kDivide };

struct Quotient {
    int mode;
    float mag;      // |scale| (kFast: the scale)
    float inv;      // RN(1 / |scale|)
    uint32_t sign;  // sign bit of the scale, at bit 31 (kFast: 0)
};

PKV_DEVICE Quotient make_quotient(float scale) {
    const uint32_t kFastLo = static_cast<uint32_t>(127 - 40) << 23;  // 2^-40
    const uint32_t kFastHi = static_cast<uint32_t>(127 + 40) << 23;  // 2^40
    Quotient r;
    const uint32_t bits = __float_as_uint(scale);
    const uint32_t mag = bits & 0x7fffffffu;
    r.sign = bits & 0x80000000u;
    r.mag = __uint_as_float(mag);
    r.inv = 1.0f / r.mag;
    r.mode = bits >= kFastLo && bits <= kFastHi ? kFast : kDivide;  // sign bit set: kDivide
    return r;
}

// a / scale (kFast) for a of at most 11 significant bits (every bf16 and f16 value), correctly
// rounded with one correction: q0 = RN(a y), r = RN(scale q0 - a), q = RN(q0 - r y).
// Exactness: scripts/h200/fp8_cvt_proof.cu checks q == RN(a / b) on the device for every
// significand pair (a of 11 bits, b of 24 bits, in [1, 2), all four sign combinations); for
// other exponents every rounding scales by the same power of two as long as y, q0, r and q are
// normal or r is an exact subnormal, which holds where the quotient's bits reach the fp8 code
// (|a / scale| >= 2^-19 with scale >= 2^-40: a >= 2^-59, r a multiple of 2^(e(a) - 47) >=
// 2^-106). The same check runs end to end (codes against fp8_encode of the IEEE division) for
// every bf16 and f16 input and every scale significand at scale exponents -40, 0 and 40.
// Signs: with scale > 0 the result is -0 exactly when a is -0 or the quotient rounds to -0
// (a = -0: q0 = -0, r = RN(+0 - -0) = +0, q = RN(-0 - +0) = -0; a != 0: q0 - r y is never an
// exact zero), so the hardware encoder needs no sign fix-up; the magnitude path (av = |a|)
// ORs the signs itself.
PKV_DEVICE float quotient_short(const Quotient& s, float a) {
    PKV_NO_CONTRACT
    const float q = __fmul_rn(a, s.inv);
    return fmaf(fmaf(s.mag, q, -a), -s.inv, q);
}

// |a| / |scale| (av = |a|), correctly rounded; kShort: av has at most 11 significant bits.
template <int kMode, bool kShort>
PKV_DEVICE float quotient(const Quotient& s, float av) {
    PKV_NO_CONTRACT
    if (kMode == kDivide) return av / s.mag;
    if (kShort) return quotient_short(s, av);
    // Explicit rounding steps: a contracted q + magic (an FMA) would skip the rounding of q.
    float q = __fmul_rn(av, s.inv);
    q = fmaf(fmaf(-s.mag, q, av), s.inv, q);
    q = fmaf(fmaf(-s.mag, q, av), s.inv, q);
    return q;
}

// Hardware f32 -> fp8 conversion (NVIDIA sm_89+, OCP formats e4m3fn and e5m2): cvt.rn.satfinite
// rounds to nearest even and saturates every finite value and infinity to the largest finite
// value with its sign, as pkv::fp8_encode does; it differs only for NaN inputs (whose code the
// hardware picks, > kMax in magnitude). scripts/h200/fp8_cvt_proof.cu checks every f32 bit
// pattern against pkv::fp8_encode on the device. e4m3fnuz (no hardware format) and AMD keep the
// portable encoder.
#if defined(PKV_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
#define PKV_FP8_CVT 1
#endif

template <int kFormat>
struct Fp8Cvt {
    static const bool kOn = false;
};
#if defined(PKV_FP8_CVT)
template <>
struct Fp8Cvt<PKV_FP8_E4M3FN> {
    static const bool kOn = true;
};
template <>
struct Fp8Cvt<PKV_FP8_E5M2> {
    static const bool kOn = true;
};
#endif

// Codes of four f32 values, a0 in bits 0..7 .. a3 in bits 24..31: two conversions and one move
// (the 16-bit results are known to be whole halves, so nothing is masked).
template <int kFormat>
PKV_DEVICE uint32_t fp8x4_cvt(float a0, float a1, float a2, float a3) {
#if defined(PKV_FP8_CVT)
    uint32_t r;
    if (kFormat == PKV_FP8_E5M2) {
        asm("{\n\t.reg .b16 lo, hi;\n\t"
            "cvt.rn.satfinite.e5m2x2.f32 lo, %2, %1;\n\t"
            "cvt.rn.satfinite.e5m2x2.f32 hi, %4, %3;\n\t"
            "mov.b32 %0, {lo, hi};\n\t}"
            : "=r"(r)
            : "f"(a0), "f"(a1), "f"(a2), "f"(a3));
    } else {
        asm("{\n\t.reg .b16 lo, hi;\n\t"
            "cvt.rn.satfinite.e4m3x2.f32 lo, %2, %1;\n\t"
            "cvt.rn.satfinite.e4m3x2.f32 hi, %4, %3;\n\t"
            "mov.b32 %0, {lo, hi};\n\t}"
            : "=r"(r)
            : "f"(a0), "f"(a1), "f"(a2), "f"(a3));
    }
    return r;
#else
    (void)a0;
    (void)a1;
    (void)a2;
    (void)a3;
    return 0;
#endif
}

template <int kFormat, int kMode>
PKV_DEVICE uint32_t quantize_one(const Quotient& s, float a) {
    typedef Fp8Fmt<kFormat> F;
    const uint32_t abits = __float_as_uint(a);
    const float q = quotient<kMode, false>(s, __uint_as_float(abits & 0x7fffffffu));
    const uint32_t code = fp8_code_fast<kFormat>(q);
    const uint32_t sign = ((abits ^ s.sign) >> 24) & 0x80u;
    uint32_t out = F::kNegZero ? (code | sign) : (code != 0 ? (code | sign) : 0u);
    const uint32_t nan_test = kMode == kDivide ? __float_as_uint(q) : (abits & 0x7fffffffu);
    if (nan_test > 0x7f800000u) out = F::kNan;
    return out;
}

// 8 source elements -> 8 fp8 codes (little-endian bytes of two words), element by element:
// f32 sources, chunks holding a NaN, and the kDivide mode.
template <int kSrc, int kFp8, int kMode>
PKV_DEVICE Raw8<uint8_t> quantize8_each(const Raw8<typename Elem<kSrc>::raw>& in, const Quotient& s) {
    Raw8<uint8_t> out;
#pragma unroll
    for (int w = 0; w < 2; ++w) {
        uint32_t word = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i)
            word |= quantize_one<kFp8, kMode>(s, Elem<kSrc>::to_f32(in.get(4 * w + i))) << (8 * i);
        out.w[w] = word;
    }
    return out;
}

// Bit 15 of each 16-bit half set when that bf16 (f16) half is a NaN: |h| > the infinity's
// bits, tested for both halves at once (|h| + (0x7fff - inf) carries into bit 15).
template <int kSrc>
PKV_DEVICE uint32_t nan_halves(uint32_t w) {
    const uint32_t kGap = kSrc == PKV_DT_BF16 ? 0x007fu : 0x03ffu;  // 0x7fff - 0x7f80 / 0x7c00
    return ((w & 0x7fff7fffu) + (kGap | (kGap << 16))) & 0x80008000u;
}

// The fast chunk quantisers below may leave wrong codes for rare inputs (NaN, overflow) and
// say so by setting a bit of kRedoBits in `redo` (OR-accumulated over a thread's chunks); the
// caller then stores every chunk again through quantize8_each (one test per thread, and one
// copy of the slow path per store loop instead of one per chunk).
const uint32_t kRedoBits = 0x80808080u;

// 2-byte sources through the hardware conversion (kFast, OCP formats): quotient_short (signs
// included, zeros too: the scale is positive), four codes per fp8x4_cvt. No NaN test on the
// inputs: a NaN input, and the NaN that an overflowing quotient (|a| / scale >= 2^128, bf16
// only) or an infinite input leaves after the correction, give a code above kMax, which
// flags a redo.
template <int kSrc, int kFp8>
PKV_DEVICE Raw8<uint8_t> quantize8_cvt(const Raw8<typename Elem<kSrc>::raw>& in, const Quotient& s, uint32_t& redo) {
    typedef Fp8Fmt<kFp8> F;
    const uint32_t kOver = (0x7fu - F::kMax) * 0x01010101u;  // code + kOver has bit 7 set iff code > kMax
    Raw8<uint8_t> out;
#pragma unroll
    for (int w = 0; w < 2; ++w) {
        const float q0 = quotient_short(s, Elem<kSrc>::to_f32(in.get(4 * w)));
        const float q1 = quotient_short(s, Elem<kSrc>::to_f32(in.get(4 * w + 1)));
        const float q2 = quotient_short(s, Elem<kSrc>::to_f32(in.get(4 * w + 2)));
        const float q3 = quotient_short(s, Elem<kSrc>::to_f32(in.get(4 * w + 3)));
        out.w[w] = fp8x4_cvt<kFp8>(q0, q1, q2, q3);
    }
    redo |= ((out.w[0] & 0x7f7f7f7fu) + kOver) | ((out.w[1] & 0x7f7f7f7fu) + kOver);
    return out;
}

// 2-byte sources, portable encoder: codes from the magnitudes, then the four sign bits of a
// word in one byte permute (bits 15 and 31 of two source words to bits 7, 15, 23, 31). The NaN
// code does not carry a sign, so chunks with a NaN flag a redo. Other sources and kDivide:
// quantize8_each.
template <int kSrc, int kFp8, int kMode>
PKV_DEVICE Raw8<uint8_t> quantize8_fast(const Raw8<typename Elem<kSrc>::raw>& in, const Quotient& s, uint32_t& redo) {
    typedef Fp8Fmt<kFp8> F;
    const uint32_t kSignBits = 0x80808080u;
    const uint32_t kSignsOfHalves = 0x7531;  // __byte_perm selector: bytes 1, 3 of x, then of y
    if (kMode == kDivide || sizeof(typename Elem<kSrc>::raw) != 2) return quantize8_each<kSrc, kFp8, kMode>(in, s);
    if (Fp8Cvt<kFp8>::kOn) return quantize8_cvt<kSrc, kFp8>(in, s, redo);
    redo |= nan_halves<kSrc>(in.w[0]) | nan_halves<kSrc>(in.w[1]) | nan_halves<kSrc>(in.w[2]) |
            nan_halves<kSrc>(in.w[3]);  // bits 15 and 31: inside kRedoBits
    const uint32_t scale_signs = s.sign ? kSignBits : 0u;
    Raw8<uint8_t> out;
#pragma unroll
    for (int w = 0; w < 2; ++w) {
        uint32_t word = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float av = __uint_as_float(__float_as_uint(Elem<kSrc>::to_f32(in.get(4 * w + i))) & 0x7fffffffu);
            word |= fp8_code_fast<kFp8>(quotient<kMode, true>(s, av)) << (8 * i);
        }
        uint32_t signs = (__byte_perm(in.w[2 * w], in.w[2 * w + 1], kSignsOfHalves) & kSignBits) ^ scale_signs;
        // fnuz has no negative zero (0x80 is its NaN): zero codes keep no sign. Codes are at
        // most 0x7f, so code + 0x7f carries into bit 7 exactly when the code is nonzero.
        if (!F::kNegZero) signs &= (word + 0x7f7f7f7fu) & kSignBits;
        out.w[w] = word | signs;
    }
    return out;
}

// The chunk quantiser with its redo done at once (tests, rare paths).
template <int kSrc, int kFp8, int kMode>
PKV_DEVICE Raw8<uint8_t> quantize8(const Raw8<typename Elem<kSrc>::raw>& in, const Quotient& s) {
    uint32_t redo = 0;
    const Raw8<uint8_t> out = quantize8_fast<kSrc, kFp8, kMode>(in, s, redo);
    if ((redo & kRedoBits) != 0) return quantize8_each<kSrc, kFp8, kMode>(in, s);
    return out;
}

// Source elements -> cache elements: a raw copy, or fp8 quantisation (kFp8 = PKV_FP8_*).
// run<false>: the fast quantiser (may flag a redo); run<true>: the exact one (the redo pass).
template <int kSrc, int kFp8, int kMode>
struct Convert {
    typedef uint8_t DRaw;
    template <bool kExact>
    static PKV_DEVICE Raw8<DRaw> run(const Raw8<typename Elem<kSrc>::raw>& in, const Quotient& s, uint32_t& redo) {
        return kExact ? quantize8_each<kSrc, kFp8, kMode>(in, s) : quantize8_fast<kSrc, kFp8, kMode>(in, s, redo);
    }
};
template <int kSrc, int kMode>
struct Convert<kSrc, PKV_FP8_NONE, kMode> {
    typedef typename Elem<kSrc>::raw DRaw;
    template <bool kExact>
    static PKV_DEVICE Raw8<DRaw> run(const Raw8<DRaw>& in, const Quotient&, uint32_t&) {
        return in;
    }
};

// ------------------------------------------------------------------------------------------
// The writer
// ------------------------------------------------------------------------------------------

// One tensor's side of a write, uniform over the work-group.
struct TensorJob {
    const void* src;         // [>= num_tokens, num_kv_heads, head_size], strides
    const int64_t* strides;  // of src
    bool src_contig;         // 8 elements along head_size are one aligned access
    void* cache;             // addr
    pkv_cache_addr addr;
    int run;                 // destination elements contiguous along head_size: 8, 4 or 1
    bool token_vectors;      // slot stride 1, 8-aligned: 8 consecutive slots are one store
    const float* scale;      // fp8: 1-element scale (null: 1.0)
};

// What one thread writes: 8 tokens (at t0 + k * step) of one head, dims d0 .. d0 + 7.
struct ThreadWork {
    int64_t t0;
    int step;
    int h;
    int d0;
};

PKV_DEVICE int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Slot of token t, or -1 when it is skipped: past slot_mapping, negative (padding), or past
// the cache (an out-of-range slot cannot be reported without a host sync).
PKV_DEVICE int64_t read_slot(const pkv_write_params& p, int64_t t) {
    if (t >= p.num_tokens) return -1;
    const int64_t s = p.slot_mapping[t * p.slot_stride];
    return s < p.num_slots ? s : -1;
}

// Block and offset of a valid slot: a 32-bit division when every slot fits (always, for any
// cache a GPU can hold), else bitwise long division, slow but small: a 64-bit division would
// bring its subroutine's registers into every writer.
PKV_DEVICE void split_slot(int64_t slot, int block_size, bool narrow, int64_t& b, int64_t& o) {
    const uint32_t bs = static_cast<uint32_t>(block_size);
    if (narrow) {
        const uint32_t s = static_cast<uint32_t>(slot);
        const uint32_t q = s / bs;
        b = q;
        o = s - q * bs;
    } else {
        const uint64_t s = static_cast<uint64_t>(slot);
        uint64_t q = 0, r = 0;
#pragma unroll 1
        for (int i = 63; i >= 0; --i) {
            r = (r << 1) | ((s >> i) & 1u);
            if (r >= bs) {
                r -= bs;
                q |= 1ull << i;
            }
        }
        b = static_cast<int64_t>(q);
        o = static_cast<int64_t>(r);
    }
}

// Dims d0 .. min(d0 + 8, head_size) - 1 of each of a thread's tokens, element by element, with
// the exact quantiser: the last, partial chunk of head sizes that are not a multiple of 8 (NHD,
// f32 split caches), and the redo of a thread whose fast quantiser flagged one (Convert). Rare,
// so kept small: tokens in a loop that is not unrolled, slots and rows read again.
template <int kSrc, int kFp8, int kMode>
PKV_DEVICE void write_exact(const pkv_write_params& p, const TensorJob& job, const ThreadWork& w, const Quotient& s) {
    typedef typename Elem<kSrc>::raw SRaw;
    typedef Convert<kSrc, kFp8, kMode> Conv;
    typedef typename Conv::DRaw DRaw;
    const SRaw* src = static_cast<const SRaw*>(job.src);
    DRaw* cache = static_cast<DRaw*>(job.cache);
    const bool narrow = p.num_slots <= 0xffffffffll;
    const int valid = p.head_size - w.d0;
#pragma unroll 1
    for (int k = 0; k < GROUP; ++k) {
        const int64_t t = w.t0 + static_cast<int64_t>(k) * w.step;
        const int64_t slot = read_slot(p, t);
        if (slot < 0) continue;
        int64_t b, o;
        split_slot(slot, p.block_size, narrow, b, o);
        const int64_t base = b * job.addr.blk + w.h * job.addr.head + o * job.addr.tok;
        const SRaw* e = src + t * job.strides[0] + w.h * job.strides[1] + w.d0 * job.strides[2];
        Raw8<SRaw> in;
        in.clear();
        // Unrolled with predicates: a run-time index into a register array would put it in
        // local memory.
#pragma unroll
        for (int i = 0; i < CHUNK; ++i, e += job.strides[2])
            if (i < valid) in.set(i, *e);
        uint32_t unused = 0;
        const Raw8<DRaw> out = Conv::template run<true>(in, s, unused);
#pragma unroll
        for (int i = 0; i < CHUNK; ++i)
            if (i < valid) cache[base + dim_offset(job.addr, w.d0 + i)] = out.get(i);
    }
}

// The slots and source rows (dims d0 .. d0+7) of a thread's 8 tokens. Every load is issued
// before any result is used, with no branch between them: tokens past the end read the last
// row again (valid memory) and are marked skipped afterwards, and rows are read whatever their
// slot (skipped tokens, padding, are rare). One memory round trip per thread instead of one
// per token.
template <typename SRaw>
PKV_DEVICE void load_group(const pkv_write_params& p, const TensorJob& job, const ThreadWork& w,
                           int64_t (&slots)[GROUP], Raw8<SRaw> (&in)[GROUP]) {
    const SRaw* src = static_cast<const SRaw*>(job.src) + w.h * job.strides[1] + w.d0 * job.strides[2];
    const int64_t last = p.num_tokens - 1;
    if (job.src_contig) {
#pragma unroll
        for (int k = 0; k < GROUP; ++k) {
            const int64_t t = min64(w.t0 + static_cast<int64_t>(k) * w.step, last);
            slots[k] = p.slot_mapping[t * p.slot_stride];
            in[k].load_all(src + t * job.strides[0]);
        }
    } else {
        // Element loads (sources not contiguous along head_size, rare) in two halves of 4
        // rows, the second issued once the first is in (an opaque dependency on its bits): 64
        // element loads in flight would hold 64 registers.
#pragma unroll
        for (int k = 0; k < GROUP / 2; ++k) {
            const int64_t t = min64(w.t0 + static_cast<int64_t>(k) * w.step, last);
            slots[k] = p.slot_mapping[t * p.slot_stride];
            in[k] = load8(src + t * job.strides[0], job.strides[2], false);
        }
        uint32_t got = 0;
#pragma unroll
        for (int k = 0; k < GROUP / 2; ++k) got |= in[k].w[0] | in[k].w[Raw8<SRaw>::kWords - 1];
        int64_t zero = 0;
#if defined(PKV_CUDA)
        asm volatile("" : "+l"(zero) : "r"(got));
#else
        (void)got;  // AMD (no "l" constraint): its register files held all 64 loads before this split
#endif
#pragma unroll
        for (int k = GROUP / 2; k < GROUP; ++k) {
            const int64_t t = min64(w.t0 + static_cast<int64_t>(k) * w.step, last);
            slots[k] = p.slot_mapping[t * p.slot_stride];
            in[k] = load8(src + zero + t * job.strides[0], job.strides[2], false);
        }
    }
    // Skipped: past slot_mapping, negative (padding), or past the cache (an out-of-range slot
    // cannot be reported without a host sync).
#pragma unroll
    for (int k = 0; k < GROUP; ++k) {
        if (w.t0 + static_cast<int64_t>(k) * w.step > last || slots[k] >= p.num_slots) slots[k] = -1;
    }
}

// The tensor's scale (1 without one). Read before the rows and slots, used after them: the
// quotient's mode branch (and the reciprocal) would otherwise hold every row load back by one
// memory round trip.
template <int kFp8>
PKV_DEVICE float read_scale(const TensorJob& job) {
    return kFp8 != PKV_FP8_NONE && job.scale ? *job.scale : 1.0f;
}

// Per-token stores of 8 loaded tokens (slots: -1 for skipped ones): one slot division for a run
// of consecutive slots inside one block, else token by token.
template <int kSrc, int kFp8, int kMode>
PKV_DEVICE void store_per_token(const pkv_write_params& p, const TensorJob& job, const ThreadWork& w,
                                const int64_t (&slots)[GROUP], const Raw8<typename Elem<kSrc>::raw> (&in)[GROUP],
                                bool run, int64_t b0, int64_t o0, const Quotient& s, uint32_t& redo) {
    typedef Convert<kSrc, kFp8, kMode> Conv;
    typedef typename Conv::DRaw DRaw;
    DRaw* cache = static_cast<DRaw*>(job.cache);
    if (run) {
        const int64_t base = b0 * job.addr.blk + w.h * job.addr.head + o0 * job.addr.tok;
        const int64_t step = static_cast<int64_t>(w.step) * job.addr.tok;
#pragma unroll
        for (int k = 0; k < GROUP; ++k)
            store8(cache, base + k * step, job.addr, w.d0, job.run, Conv::template run<false>(in[k], s, redo));
        return;
    }
    const bool narrow = p.num_slots <= 0xffffffffll;
#pragma unroll
    for (int k = 0; k < GROUP; ++k) {
        if (slots[k] < 0) continue;
        int64_t b, o;
        split_slot(slots[k], p.block_size, narrow, b, o);
        const int64_t base = b * job.addr.blk + w.h * job.addr.head + o * job.addr.tok;
        store8(cache, base, job.addr, w.d0, job.run, Conv::template run<false>(in[k], s, redo));
    }
}

// One 16-byte store of four words (p 16-byte aligned, global memory). Spelled out on NVIDIA:
// for the traded rows below (words picked per lane) nvcc emitted an 8-byte and two 4-byte
// stores for a plain uint4 store, which measured 79 -> 61% of copy for the fp8 write.
PKV_DEVICE void store_words16(void* p, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
#if defined(PKV_CUDA) && defined(__CUDA_ARCH__)
    asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(__cvta_generic_to_global(p)), "r"(a), "r"(b),
                 "r"(c), "r"(d)
                 : "memory");
#else
    *static_cast<uint4*>(p) = make_uint4(a, b, c, d);
#endif
}

// Lanes trade halves of 16-byte rows (store_token_rows) on NVIDIA only, where it was measured
// (fp8 write, 65536 tokens, block 16); AMD keeps the 8-byte stores.
#if defined(PKV_CUDA)
const bool kTradeRows = true;
#else
const bool kTradeRows = false;
#endif

// Per-token destinations (1-byte caches) whose 16 dims 16m .. 16m + 15 of a token are one row
// (x-split with x >= 16, or dims contiguous), every row 16-byte aligned (as the host's
// wide_key_access), with an even number of chunks per head: lanes l and l ^ 2 then hold the
// two 8-byte halves of the same rows (item = ((tile * heads + h) * chunks + c) * PAIR + lane:
// same tokens, chunks 2m and 2m + 1), and threads past the work end leave in whole groups of
// 4 lanes. Uniform over the launch: no vote needed.
PKV_DEVICE bool token_rows16(const pkv_write_params& p, const TensorJob& job) {
    const pkv_cache_addr& a = job.addr;
    const bool contiguous = a.x_shift == 0 ? a.dhi == 1 : (a.x_shift >= 4 && a.dlo == 1);
    const uint32_t starts = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(job.cache)) |
                            static_cast<uint32_t>(a.blk | a.head | a.tok | (a.x_shift > 0 ? a.dhi : 0));
    return contiguous && (starts & 15u) == 0 && ((p.head_size / CHUNK) & 1) == 0;
}

// Two lanes (this one and lane ^ partner) each hold two 8-byte halves c0, c1 of 16-byte rows:
// c0 is half of row 0, c1 half of row 1, and the partner holds the other halves of the same
// two rows. They trade so that each ends with one whole row: the lane with odd = 0 builds row 0
// (its c0 first, then the partner's c0), the lane with odd = 1 row 1 (the partner's c1 first,
// then its c1); `row` gets the four words. Used for per-token key rows (partner 2: the other
// chunk of the same tokens) and for token-vector value rows (partner 1: the other 8 tokens of
// the same dims). Words are picked by value: a reference chosen at run time would put c0 and c1
// in local memory.
template <typename DRaw>
PKV_DEVICE void trade_halves(const Raw8<DRaw>& c0, const Raw8<DRaw>& c1, int odd, int partner, uint32_t (&row)[4]) {
    const uint32_t got0 = pkv_shfl_xor(odd ? c0.w[0] : c1.w[0], partner, PKV_WAVE_SIZE);
    const uint32_t got1 = pkv_shfl_xor(odd ? c0.w[1] : c1.w[1], partner, PKV_WAVE_SIZE);
    row[0] = odd ? got0 : c0.w[0];
    row[1] = odd ? got1 : c0.w[1];
    row[2] = odd ? c1.w[0] : got0;
    row[3] = odd ? c1.w[1] : got1;
}

// Per-token stores of whole 16-byte rows (token_rows16; fp8, fast quantiser mode). A thread's
// chunk of a token is only half a row, so the lanes holding a row's two halves (l, l ^ 2) trade
// them: of each two tokens k, k + 1, the even-chunk lane stores token k's row and the odd-chunk
// lane token k + 1's. Every token's row is one 16-byte store instead of two 8-byte ones (and
// one slot division instead of two), and with consecutive slots a group of 4 lanes fills 64
// consecutive bytes per instruction. No slot pattern is needed (both lanes have the same
// tokens and slots): skipped tokens are converted and traded too, and only their stores are
// left out, so that every lane takes part in every exchange. As in store_per_token, a run of
// consecutive slots in one block has its own loop (the slots are dead there).
template <int kSrc, int kFp8>
PKV_DEVICE void store_token_rows(const pkv_write_params& p, const TensorJob& job, const ThreadWork& w,
                                 const int64_t (&slots)[GROUP], const Raw8<typename Elem<kSrc>::raw> (&in)[GROUP],
                                 bool run, int64_t b0, int64_t o0, const Quotient& s, uint32_t& redo) {
    typedef Convert<kSrc, kFp8, kFast> Conv;
    typedef typename Conv::DRaw DRaw;
    DRaw* cache = static_cast<DRaw*>(job.cache);
    // Which half of its rows this lane converts (chunk parity) is which token of two it stores.
    const int odd = (w.d0 / CHUNK) & 1;
    const int64_t row_offset = w.h * job.addr.head + dim_offset(job.addr, w.d0 - odd * CHUNK);
    uint32_t row[4];
    if (run) {
        const int64_t base = b0 * job.addr.blk + (o0 + odd * w.step) * job.addr.tok + row_offset;
        const int64_t step = static_cast<int64_t>(w.step) * job.addr.tok;
#pragma unroll
        for (int k = 0; k < GROUP; k += 2) {
            trade_halves(Conv::template run<false>(in[k], s, redo), Conv::template run<false>(in[k + 1], s, redo), odd,
                         2, row);
            store_words16(cache + base + k * step, row[0], row[1], row[2], row[3]);
        }
        return;
    }
    const bool narrow = p.num_slots <= 0xffffffffll;
#pragma unroll
    for (int k = 0; k < GROUP; k += 2) {
        trade_halves(Conv::template run<false>(in[k], s, redo), Conv::template run<false>(in[k + 1], s, redo), odd,
                     2, row);
        const int64_t slot = odd ? slots[k + 1] : slots[k];
        if (slot < 0) continue;
        int64_t b, o;
        split_slot(slot, p.block_size, narrow, b, o);
        store_words16(cache + b * job.addr.blk + o * job.addr.tok + row_offset, row[0], row[1], row[2], row[3]);
    }
}

// Per-token stores: 8 tokens interleaved with the neighbouring lane's.
template <int kSrc, int kFp8>
PKV_DEVICE void write_per_token(const pkv_write_params& p, const TensorJob& job, const ThreadWork& w) {
    typedef typename Elem<kSrc>::raw SRaw;
    const float scale = read_scale<kFp8>(job);
    int64_t slots[GROUP];
    Raw8<SRaw> in[GROUP];
    load_group(p, job, w, slots, in);
    const bool narrow = p.num_slots <= 0xffffffffll;
    // Consecutive slots inside one block (an engine's step): one division, offsets by adding.
    bool run = slots[0] >= 0;
#pragma unroll
    for (int k = 1; k < GROUP; ++k) run = run && slots[k] == slots[0] + k * w.step;
    int64_t b0 = 0, o0 = 0;
    if (run) {
        split_slot(slots[0], p.block_size, narrow, b0, o0);
        run = o0 + (GROUP - 1) * w.step < p.block_size;
    }
    const Quotient s = make_quotient(scale);
    uint32_t redo = 0;
    if (kFp8 == PKV_FP8_NONE || s.mode == kFast) {
        if (kTradeRows && kFp8 != PKV_FP8_NONE && token_rows16(p, job)) {
            store_token_rows<kSrc, kFp8>(p, job, w, slots, in, run, b0, o0, s, redo);
            // Lanes stored codes of their partners' chunks: when any lane has a redo, every lane
            // of the wave redoes its own chunk, after all stores.
            redo = pkv_wave_any((redo & kRedoBits) != 0) ? kRedoBits : 0u;
            if (redo != 0) pkv_wave_sync();
        } else {
            store_per_token<kSrc, kFp8, kFast>(p, job, w, slots, in, run, b0, o0, s, redo);
        }
        // One copy of the rare redo for both store paths: a second inlined copy spilled the fp8
        // writers from 2-byte sources at their 96-register cap.
        if ((redo & kRedoBits) != 0) write_exact<kSrc, kFp8, kFast>(p, job, w, s);
    } else {
        store_per_token<kSrc, kFp8, kDivide>(p, job, w, slots, in, run, b0, o0, s, redo);
    }
}

// Token-vector stores of 8 consecutive tokens at cache offset `base` (dim 0): transposed in
// registers and converted one dim at a time (only one dim's quantiser temporaries live).
//
// 1-byte caches (fp8), where one dim of 8 tokens is only 8 bytes, go two dims at a time: when
// each lane pair's 16 tokens are 16 consecutive slots (`pair`, uniform over the wave), the pair
// trades halves so that lane 0 stores the even dim and lane 1 the odd one, each dim's 16 codes
// as one 16-byte store at `base - lane * 8`. At block 16 the pair's two stores are one whole
// 32-byte sector instead of half sectors from two instructions: half the store requests to L2.
// One loop serves both cases, so the quantiser is not emitted twice.
template <int kSrc, int kFp8, int kMode>
PKV_DEVICE void store_token_vectors(const TensorJob& job, const ThreadWork& w, int64_t base,
                                    const Raw8<typename Elem<kSrc>::raw> (&in)[GROUP], const Quotient& s,
                                    uint32_t& redo, bool pair, int lane) {
    typedef typename Elem<kSrc>::raw SRaw;
    typedef Convert<kSrc, kFp8, kMode> Conv;
    typedef typename Conv::DRaw DRaw;
    DRaw* cache = static_cast<DRaw*>(job.cache);
    if (sizeof(DRaw) != 1) {
#pragma unroll
        for (int j = 0; j < CHUNK; ++j) {
            Raw8<SRaw> t;
#pragma unroll
            for (int k = 0; k < GROUP; ++k) t.set(k, in[k].get(j));
            Conv::template run<false>(t, s, redo).store_all(cache + base + dim_offset(job.addr, w.d0 + j));
        }
        return;
    }
#pragma unroll
    for (int j = 0; j < CHUNK; j += 2) {
        Raw8<SRaw> even, odd;
#pragma unroll
        for (int k = 0; k < GROUP; ++k) {
            even.set(k, in[k].get(j));
            odd.set(k, in[k].get(j + 1));
        }
        const Raw8<DRaw> ce = Conv::template run<false>(even, s, redo);
        const Raw8<DRaw> co = Conv::template run<false>(odd, s, redo);
        if (pair) {
            // Lane 0 stores the even dim's 16 codes (its tokens 0..7, then lane 1's 8..15), lane 1
            // the odd dim's.
            uint32_t row[4];
            trade_halves(ce, co, lane, 1, row);
            store_words16(cache + base - lane * GROUP + dim_offset(job.addr, w.d0 + j + lane), row[0], row[1], row[2],
                          row[3]);
        } else {
            ce.store_all(cache + base + dim_offset(job.addr, w.d0 + j));
            co.store_all(cache + base + dim_offset(job.addr, w.d0 + j + 1));
        }
    }
}

// Element stores of each valid token (any slot pattern), converting only those tokens: a
// 1-token write converts 8 elements, not 64.
template <int kSrc, int kFp8, int kMode>
PKV_DEVICE void store_token_elements(const pkv_write_params& p, const TensorJob& job, const ThreadWork& w,
                                     const int64_t (&slots)[GROUP], const Raw8<typename Elem<kSrc>::raw> (&in)[GROUP],
                                     const Quotient& s, uint32_t& redo) {
    typedef Convert<kSrc, kFp8, kMode> Conv;
    typedef typename Conv::DRaw DRaw;
    DRaw* cache = static_cast<DRaw*>(job.cache);
    const bool narrow = p.num_slots <= 0xffffffffll;
#pragma unroll
    for (int k = 0; k < GROUP; ++k) {
        if (slots[k] < 0) continue;
        int64_t b, o;
        split_slot(slots[k], p.block_size, narrow, b, o);
        const int64_t off = b * job.addr.blk + w.h * job.addr.head + o * job.addr.tok;
        const Raw8<DRaw> out = Conv::template run<false>(in[k], s, redo);
#pragma unroll
        for (int j = 0; j < CHUNK; ++j) cache[off + dim_offset(job.addr, w.d0 + j)] = out.get(j);
    }
}

// Token-vector stores (split values: slot stride 1): when the 8 slots are consecutive, start
// 8-aligned and stay inside one block (skipped slots read as -1 and break the run), one vector
// per dim; otherwise element stores token by token.
template <int kSrc, int kFp8>
PKV_DEVICE void write_token_vectors(const pkv_write_params& p, const TensorJob& job, const ThreadWork& w) {
    typedef typename Elem<kSrc>::raw SRaw;
    const float scale = read_scale<kFp8>(job);
    int64_t slots[GROUP];
    Raw8<SRaw> in[GROUP];
    load_group(p, job, w, slots, in);
    // This thread's side of its lane pair (t0 = tile * 16 + lane * 8), taken from t0 rather than
    // kept live across the loads: one more register there spills the element-load path.
    const int lane = static_cast<int>(w.t0 >> 3) & 1;
    const bool narrow = p.num_slots <= 0xffffffffll;
    bool vec = slots[0] >= 0;
#pragma unroll
    for (int k = 1; k < GROUP; ++k) vec = vec && slots[k] == slots[0] + k;
    int64_t base = 0;
    // Lane pairs (1-byte caches, slots below 2^32): the first slot the pair would start at, or
    // kNoPair. Lane 1 stays inside lane 0's block (offset >= 8); the pair's rows must take
    // 16-byte stores.
    const bool kPairs = sizeof(typename Convert<kSrc, kFp8, kFast>::DRaw) == 1;
    const uint32_t kNoPair = 0xffffffffu;
    uint32_t pair_first = kNoPair;
    if (vec) {
        int64_t b0, o0;
        split_slot(slots[0], p.block_size, narrow, b0, o0);
        vec = (o0 & (GROUP - 1)) == 0 && o0 + GROUP <= p.block_size;
        base = b0 * job.addr.blk + w.h * job.addr.head + o0;  // slot stride 1
        if (kPairs) {
            const uintptr_t row0 = reinterpret_cast<uintptr_t>(static_cast<const uint8_t*>(job.cache) + base - lane * GROUP);
            const bool aligned = ((static_cast<uint32_t>(row0) | static_cast<uint32_t>(job.addr.dhi)) & 15u) == 0;
            if (vec && narrow && o0 >= lane * GROUP && aligned) pair_first = static_cast<uint32_t>(slots[0]) - lane * GROUP;
        }
    }
    // Pairs only where every lane of the wave (that has not left) forms one: `pair` is then
    // uniform over the wave and the exchanges are whole-wave shuffles. (Shuffles among the two
    // lanes of a pair alone need per-pair masks, which NVIDIA compiles to a match and a
    // divergence test per exchange.)
    bool pair = false;
    if (kPairs) {
        const uint32_t other = pkv_shfl_xor(pair_first, 1, PKV_WAVE_SIZE);
        pair = pkv_wave_all(pair_first != kNoPair && other == pair_first);
    }
    const Quotient s = make_quotient(scale);
    uint32_t redo = 0;
    if (kFp8 == PKV_FP8_NONE || s.mode == kFast) {
        if (vec) {
            store_token_vectors<kSrc, kFp8, kFast>(job, w, base, in, s, redo, pair, lane);
            if (pair) {
                // Lanes stored codes of their partners' tokens: when any lane has a redo, every
                // lane of the wave redoes its own tokens, after all stores.
                if (pkv_wave_any((redo & kRedoBits) != 0)) {
                    pkv_wave_sync();
                    write_exact<kSrc, kFp8, kFast>(p, job, w, s);
                }
            } else if ((redo & kRedoBits) != 0) {
                write_exact<kSrc, kFp8, kFast>(p, job, w, s);
            }
        } else {
            store_token_elements<kSrc, kFp8, kFast>(p, job, w, slots, in, s, redo);
            if ((redo & kRedoBits) != 0) write_exact<kSrc, kFp8, kFast>(p, job, w, s);
        }
    } else if (vec) {
        store_token_vectors<kSrc, kFp8, kDivide>(job, w, base, in, s, redo, false, lane);
    } else {
        store_token_elements<kSrc, kFp8, kDivide>(p, job, w, slots, in, s, redo);
    }
}

// Chunks of 8 dims a launch covers: every whole one (main kernel), or the last, partial one
// (kTail: head sizes that are not a multiple of 8; a second, small launch).
PKV_DEVICE uint32_t launch_chunks(int head_size, bool tail) {
    return tail ? 1u : static_cast<uint32_t>(head_size) / CHUNK;
}

// Threads per tensor of one launch: tiles x heads x chunks x PAIR (the host checked that the
// count over all chunks, work_items, fits in 31 bits).
PKV_DEVICE uint32_t launch_items(const pkv_write_params& p, bool tail) {
    const uint32_t tiles = static_cast<uint32_t>((p.num_tokens + TILE_TOKENS - 1) / TILE_TOKENS);
    return tiles * static_cast<uint32_t>(p.num_kv_heads) * launch_chunks(p.head_size, tail) * PAIR;
}

template <int kSrc, int kFp8, bool kPacked, bool kTail>
__global__ void PKV_LAUNCH_BOUNDS((WriteShape<kSrc, kFp8>::kThreads), (WriteShape<kSrc, kFp8>::kMinBlocks))
    write_kv_kernel(pkv_write_params p_arg) {
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
    // No barrier below: threads past the work end may leave.
    const uint32_t item = blockIdx.x * WriteShape<kSrc, kFp8>::kThreads + threadIdx.x;
    if (item >= launch_items(p, kTail)) return;
    // item = ((tile * num_kv_heads + h) * chunks + c) * PAIR + lane.
    const uint32_t chunks = launch_chunks(p.head_size, kTail);
    const int lane = static_cast<int>(item % PAIR);
    uint32_t rest = item / PAIR;
    const int d0 = static_cast<int>(kTail ? static_cast<uint32_t>(p.head_size) / CHUNK : rest % chunks) * CHUNK;
    rest /= chunks;
    const int h = static_cast<int>(rest % static_cast<uint32_t>(p.num_kv_heads));
    const int64_t tile = rest / static_cast<uint32_t>(p.num_kv_heads);

    const bool is_key = blockIdx.y == TENSOR_KEY;
    pkv_cache_addr addr = is_key ? p.key_addr : p.value_addr;
    if (kPacked) {
        // reshape_and_cache: key [B, H, D/x, bs, x], value [B, H, D, bs], packed.
        typedef typename Convert<kSrc, kFp8, kFast>::DRaw DRaw;
        const int x_shift = sizeof(DRaw) == 1 ? 4 : (sizeof(DRaw) == 2 ? 3 : 2);  // x = 16 / itemsize
        // The host proved these products fit in 32 bits (it checks the packed strides).
        const int bs = p.block_size;
        const int per_head = p.head_size * bs;
        addr.blk = per_head * p.num_kv_heads;
        addr.head = per_head;
        if (is_key) {
            addr.dhi = bs << x_shift;
            addr.tok = 1 << x_shift;
            addr.dlo = 1;
            addr.x_shift = x_shift;
        } else {
            addr.dhi = bs;
            addr.tok = 1;
            addr.dlo = 0;
            addr.x_shift = 0;
        }
    }
    TensorJob job;
    job.src = is_key ? p.key : p.value;
    job.strides = is_key ? p.key_strides : p.value_strides;
    job.src_contig = (is_key ? p.key_src_contig : p.value_src_contig) != 0;
    job.cache = is_key ? p.key_cache : p.value_cache;
    job.addr = addr;
    job.run = is_key ? p.key_run : p.value_run;
    job.token_vectors = !is_key && p.value_vec != 0;
    job.scale = is_key ? p.k_scale : p.v_scale;
    if (kTail) {
        // Rare (head sizes that are not a multiple of 8): the scale first, then the tokens.
        const ThreadWork w = {tile * TILE_TOKENS + lane * GROUP, 1, h, d0};
        const Quotient s = make_quotient(read_scale<kFp8>(job));
        if (kFp8 == PKV_FP8_NONE || s.mode == kFast) {
            write_exact<kSrc, kFp8, kFast>(p, job, w, s);
        } else {
            write_exact<kSrc, kFp8, kDivide>(p, job, w, s);
        }
    } else if (job.token_vectors) {
        const ThreadWork w = {tile * TILE_TOKENS + lane * GROUP, 1, h, d0};
        write_token_vectors<kSrc, kFp8>(p, job, w);
    } else {
        const ThreadWork w = {tile * TILE_TOKENS + lane, PAIR, h, d0};
        write_per_token<kSrc, kFp8>(p, job, w);
    }
}

template <int kSrc, int kFp8, bool kPacked>
pkv_error_t launch(const pkv_write_params& p, pkv_stream_t stream) {
    const int kThreads = WriteShape<kSrc, kFp8>::kThreads;
    // The same counts as launch_items, in 64 bits on the host.
    const int64_t per_chunk = (p.num_tokens + TILE_TOKENS - 1) / TILE_TOKENS * p.num_kv_heads * PAIR;
    const int64_t full_items = per_chunk * (p.head_size / CHUNK);
    if (full_items > 0) {
        const dim3 grid(static_cast<unsigned>((full_items + kThreads - 1) / kThreads), NUM_TENSORS);
        write_kv_kernel<kSrc, kFp8, kPacked, false><<<grid, kThreads, 0, stream>>>(p);
        const pkv_error_t e = pkv_get_last_error();
        if (e != pkv_success) return e;
    }
    if (p.head_size % CHUNK != 0) {
        const dim3 grid(static_cast<unsigned>((per_chunk + kThreads - 1) / kThreads), NUM_TENSORS);
        write_kv_kernel<kSrc, kFp8, kPacked, true><<<grid, kThreads, 0, stream>>>(p);
    }
    return pkv_get_last_error();
}

template <int kSrc, int kFp8>
pkv_error_t launch_packed(const pkv_write_params& p, pkv_stream_t stream) {
    return p.packed ? launch<kSrc, kFp8, true>(p, stream) : launch<kSrc, kFp8, false>(p, stream);
}

template <int kSrc>
pkv_error_t launch_for_source(const pkv_write_params& p, pkv_stream_t stream) {
    switch (p.fp8_format) {
        case PKV_FP8_E4M3FN:
            return launch_packed<kSrc, PKV_FP8_E4M3FN>(p, stream);
        case PKV_FP8_E4M3FNUZ:
            return launch_packed<kSrc, PKV_FP8_E4M3FNUZ>(p, stream);
        case PKV_FP8_E5M2:
            return launch_packed<kSrc, PKV_FP8_E5M2>(p, stream);
        default:
            return launch_packed<kSrc, PKV_FP8_NONE>(p, stream);
    }
}

}  // namespace
}  // namespace pkv

// Enqueues the cache write on `stream`. Returns the runtime's error code (0 = success).
extern "C" int pkv_kernel_write_kv_cache(const pkv_write_params* p, void* stream) {
    if (p->num_tokens <= 0 || p->num_kv_heads <= 0 || p->work_items <= 0) return 0;
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
