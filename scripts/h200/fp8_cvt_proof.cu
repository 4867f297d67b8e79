// Device proof for the hardware fp8 encoder of kernels/write_kv.hip (NVIDIA sm_89+):
//
// 1. cvt.rn.satfinite.{e4m3,e5m2}x2.f32 (fp8x4_cvt, as the writer issues it: two conversions
//    into one word) against the portable device encoder pkv::fp8_encode for EVERY f32 bit
//    pattern, each value once as the high and once as the low operand of a conversion.
//    Required: 0 mismatches on non-NaN inputs (both signs, zeros, subnormals, infinities,
//    overflow); NaN inputs must give a code above the format's largest finite code (the writer
//    detects those and re-encodes the chunk portably).
// 2. The portable fast encoder (quantize_one, kFast, scale 1) against pkv::fp8_encode for every
//    f32 bit pattern and all three formats.
// 3. The writer's chunk quantiser quantize8 (hardware path for e4m3fn/e5m2, portable for
//    e4m3fnuz) against pkv::fp8_encode(a / scale) (IEEE division) for every bf16 and f16 input,
//    in chunks of 8 consecutive and of 8 shuffled bit patterns, for 337 scales of both modes.
// 4. quotient_short (one Markstein correction, the 2-byte sources' quotient) equal to the IEEE
//    quotient, bit for bit, for every significand pair: a = +-[1, 2) with 10 fraction bits
//    (every f16 significand; bf16's 7 bits are a subset), b = every f32 in [1, 2). With the
//    scaling argument in write_kv.hip this proves the quotient exact wherever it reaches a code.
// 5. End to end at the kFast range's ends and middle: quotient_short(a, b) against a / b for
//    every bf16 and every f16 bit pattern a (zeros, subnormals, infinities, NaN included) and
//    every b = 2^e * [1, 2), e in {-40, 0, 39}, plus b = 2^40: equal bits, or a NaN (the writer
//    re-encodes those exactly), or the same e4m3fn and e5m2 codes.
//
// Build (no GPU needed): nvcc -x cu -O3 -std=c++17 -arch=sm_90 -I kernels \
//     scripts/h200/fp8_cvt_proof.cu -o fp8_cvt_proof       (scripts/h200/write_pass.sh does it)
// Exit status 0 only when every count of mismatches is 0.

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <random>
#include <vector>

#include "write_kv.hip"
#include "quotient_scales.h"

using namespace pkv;

#define CK(x)                                                                                   \
    do {                                                                                        \
        cudaError_t e_ = (x);                                                                   \
        if (e_ != cudaSuccess) {                                                                \
            printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__);     \
            exit(2);                                                                            \
        }                                                                                       \
    } while (0)

struct Counts {
    unsigned long long checked;
    unsigned long long mismatch;     // non-NaN inputs whose code differs
    unsigned long long nan_inputs;
    unsigned long long nan_not_over; // NaN inputs whose code magnitude is <= kMax
    unsigned int nan_code_min, nan_code_max;  // NaN codes seen (with sign bit)
    unsigned int first_bad_input, first_bad_got, first_bad_want;
};

__device__ void record_bad(Counts* c, uint32_t in, uint32_t got, uint32_t want) {
    if (atomicAdd(&c->mismatch, 1ull) == 0ull) {
        c->first_bad_input = in;
        c->first_bad_got = got;
        c->first_bad_want = want;
    }
}

// Test 1: every f32 pattern u, paired with partner v = u ^ 0xA5A5A5A5 (also every pattern):
// cvt(u, v) and cvt(v, u) check u in both operand positions.
template <int F>
__global__ void cvt_all(uint64_t begin, uint64_t count, Counts* c) {
    typedef Fp8Fmt<F> Fmt;
    unsigned long long local_checked = 0;
    for (uint64_t i = begin + blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < begin + count;
         i += (uint64_t)gridDim.x * blockDim.x) {
        const uint32_t u = static_cast<uint32_t>(i);
        const uint32_t v = u ^ 0xA5A5A5A5u;
        const float x = __uint_as_float(u), y = __uint_as_float(v);
        // Bytes x, y, y, x: x is the low operand of the first conversion (byte 0) and the high
        // operand of the second (byte 3).
        const uint32_t r = fp8x4_cvt<F>(x, y, y, x);
        const uint32_t got_lo = r & 0xffu, got_hi = r >> 24;
        if ((u & 0x7fffffffu) > 0x7f800000u) {
            atomicAdd(&c->nan_inputs, 1ull);
            if ((got_hi & 0x7fu) <= Fmt::kMax || (got_lo & 0x7fu) <= Fmt::kMax) atomicAdd(&c->nan_not_over, 1ull);
            atomicMin(&c->nan_code_min, min(got_hi, got_lo));
            atomicMax(&c->nan_code_max, max(got_hi, got_lo));
        } else {
            const uint32_t want = fp8_encode(F, x);
            if (got_hi != want || got_lo != want) record_bad(c, u, got_hi | (got_lo << 8), want);
        }
        ++local_checked;
    }
    atomicAdd(&c->checked, local_checked);
}

// Test 2: the portable fast encoder (scale 1: the quotient is the input) for every pattern.
template <int F>
__global__ void portable_all(uint64_t begin, uint64_t count, Counts* c) {
    const Quotient s = make_quotient(1.0f);
    unsigned long long local_checked = 0;
    for (uint64_t i = begin + blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < begin + count;
         i += (uint64_t)gridDim.x * blockDim.x) {
        const uint32_t u = static_cast<uint32_t>(i);
        const float x = __uint_as_float(u);
        const uint32_t got = quantize_one<F, kFast>(s, x);
        const uint32_t want = fp8_encode(F, x);
        if (got != want) record_bad(c, u, got, want);
        ++local_checked;
    }
    atomicAdd(&c->checked, local_checked);
}

// Test 3: quantize8 over chunks of 8 bit patterns of a 2-byte source, one chunk per thread.
template <int kSrc, int F>
__global__ void chunks(const uint16_t* order, int n, const float* scales, int num_scales, Counts* c) {
    const int chunks_per_scale = n / 8;
    unsigned long long local_checked = 0;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < (long long)chunks_per_scale * num_scales;
         t += (long long)gridDim.x * blockDim.x) {
        const float scale = scales[t / chunks_per_scale];
        const int base = static_cast<int>(t % chunks_per_scale) * 8;
        Raw8<uint16_t> in;
        for (int i = 0; i < 8; ++i) in.set(i, order[base + i]);
        const Quotient s = make_quotient(scale);
        const Raw8<uint8_t> got = s.mode == kFast ? quantize8<kSrc, F, kFast>(in, s) : quantize8<kSrc, F, kDivide>(in, s);
        for (int i = 0; i < 8; ++i) {
            const float a = Elem<kSrc>::to_f32(order[base + i]);
            const uint32_t want = fp8_encode(F, a / scale);
            if (got.get(i) != want) record_bad(c, (uint32_t)order[base + i] | ((uint32_t)(t / chunks_per_scale) << 16), got.get(i), want);
        }
        local_checked += 8;
    }
    atomicAdd(&c->checked, local_checked);
}

// Test 4: quotient_short on significand pairs, one b per thread, every a (both signs).
__global__ void short_pairs(Counts* c) {
    unsigned long long local_checked = 0;
    for (uint32_t bm = blockIdx.x * blockDim.x + threadIdx.x; bm < (1u << 23); bm += gridDim.x * blockDim.x) {
        const float b = __uint_as_float(0x3f800000u | bm);
        const Quotient s = make_quotient(b);
        for (uint32_t am = 0; am < 2048; ++am) {
            const float a = __uint_as_float(((am & 1024u) << 21) | 0x3f800000u | ((am & 1023u) << 13));
            const float got = quotient_short(s, a), want = __fdiv_rn(a, b);
            if (__float_as_uint(got) != __float_as_uint(want) || s.mode != kFast)
                record_bad(c, __float_as_uint(a), __float_as_uint(got), bm);
        }
        local_checked += 2048;
    }
    atomicAdd(&c->checked, local_checked);
}

// Test 5: quotient_short for every 2-byte pattern a and every b = 2^e * [1, 2) (one b per thread).
template <int kSrc>
__global__ void short_end_to_end(int e, bool only_power, Counts* c) {
    unsigned long long local_checked = 0;
    const uint32_t nb = only_power ? 1u : (1u << 23);
    for (uint32_t bm = blockIdx.x * blockDim.x + threadIdx.x; bm < nb; bm += gridDim.x * blockDim.x) {
        const float b = __uint_as_float((static_cast<uint32_t>(127 + e) << 23) | bm);
        const Quotient s = make_quotient(b);
        if (s.mode != kFast) record_bad(c, 0xffffffffu, __float_as_uint(b), 0);
        for (uint32_t ab = 0; ab < 65536; ++ab) {
            const float a = Elem<kSrc>::to_f32(static_cast<uint16_t>(ab));
            const float got = quotient_short(s, a), want = __fdiv_rn(a, b);
            if (__float_as_uint(got) != __float_as_uint(want) && got == got &&
                (fp8_encode(PKV_FP8_E4M3FN, got) != fp8_encode(PKV_FP8_E4M3FN, want) ||
                 fp8_encode(PKV_FP8_E5M2, got) != fp8_encode(PKV_FP8_E5M2, want)))
                record_bad(c, ab | (static_cast<uint32_t>(e + 64) << 16), __float_as_uint(got), __float_as_uint(want));
        }
        local_checked += 65536;
    }
    atomicAdd(&c->checked, local_checked);
}

// Counters live in device memory (plain allocations); `fetch` copies them back.
static Counts* new_counts() {
    Counts h = Counts{};
    h.nan_code_min = 0xffffffffu;
    Counts* c;
    CK(cudaMalloc(&c, sizeof(Counts)));
    CK(cudaMemcpy(c, &h, sizeof(Counts), cudaMemcpyHostToDevice));
    return c;
}

static Counts fetch(Counts* d) {
    Counts h;
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(&h, d, sizeof(Counts), cudaMemcpyDeviceToHost));
    CK(cudaFree(d));
    return h;
}

__global__ void cvt_compiled(int* r) {
#if defined(PKV_FP8_CVT)
    *r = 1;
#else
    *r = 0;
#endif
}

static int failures = 0;
static const char* fmt_name(int f) {
    return f == PKV_FP8_E4M3FN ? "e4m3fn" : (f == PKV_FP8_E5M2 ? "e5m2" : "e4m3fnuz");
}

template <int F>
static void run_cvt() {
    Counts* d = new_counts();
    const uint64_t total = 1ull << 32, step = 1ull << 30;
    for (uint64_t b = 0; b < total; b += step) cvt_all<F><<<132 * 16, 256>>>(b, step, d);
    const Counts h = fetch(d);
    const Counts* c = &h;
    const bool ok = c->mismatch == 0 && c->nan_not_over == 0 && c->checked == total;
    printf("[cvt %-8s] %llu f32 patterns (each as high and low operand): %llu mismatches on non-NaN inputs; "
           "%llu NaN inputs -> codes 0x%02x..0x%02x, %llu not above max 0x%02x  %s\n",
           fmt_name(F), c->checked, c->mismatch, c->nan_inputs, c->nan_code_min, c->nan_code_max, c->nan_not_over,
           (unsigned)Fp8Fmt<F>::kMax, ok ? "OK" : "FAIL");
    if (c->mismatch)
        printf("    first: input 0x%08x got 0x%x want 0x%x\n", c->first_bad_input, c->first_bad_got, c->first_bad_want);
    failures += !ok;
}

template <int F>
static void run_portable() {
    Counts* d = new_counts();
    const uint64_t total = 1ull << 32, step = 1ull << 30;
    for (uint64_t b = 0; b < total; b += step) portable_all<F><<<132 * 16, 256>>>(b, step, d);
    const Counts h = fetch(d);
    const Counts* c = &h;
    const bool ok = c->mismatch == 0 && c->checked == total;
    printf("[portable %-8s] %llu f32 patterns: %llu mismatches  %s\n", fmt_name(F), c->checked, c->mismatch,
           ok ? "OK" : "FAIL");
    if (c->mismatch)
        printf("    first: input 0x%08x got 0x%x want 0x%x\n", c->first_bad_input, c->first_bad_got, c->first_bad_want);
    failures += !ok;
}

template <int kSrc, int F>
static void run_chunks(const uint16_t* seq, const uint16_t* shuf, const float* scales, int num_scales) {
    Counts* d = new_counts();
    chunks<kSrc, F><<<132 * 8, 256>>>(seq, 65536, scales, num_scales, d);
    chunks<kSrc, F><<<132 * 8, 256>>>(shuf, 65536, scales, num_scales, d);
    const Counts h = fetch(d);
    const Counts* c = &h;
    const bool ok = c->mismatch == 0 && c->checked == 2ull * 65536 * num_scales;
    printf("[quantize8 %s -> %-8s] %llu (input, scale) pairs: %llu mismatches  %s\n",
           kSrc == PKV_DT_BF16 ? "bf16" : "f16 ", fmt_name(F), c->checked, c->mismatch, ok ? "OK" : "FAIL");
    if (c->mismatch)
        printf("    first: input 0x%04x scale #%u got 0x%x want 0x%x\n", c->first_bad_input & 0xffff,
               c->first_bad_input >> 16, c->first_bad_got, c->first_bad_want);
    failures += !ok;
}

static void run_short() {
    Counts* d = new_counts();
    short_pairs<<<132 * 16, 256>>>(d);
    const Counts h = fetch(d);
    const bool ok = h.mismatch == 0 && h.checked == 2048ull << 23;
    printf("[quotient_short pairs] %llu (a, b) significand pairs: %llu differ from the IEEE quotient  %s\n", h.checked,
           h.mismatch, ok ? "OK" : "FAIL");
    if (h.mismatch)
        printf("    first: a 0x%08x got 0x%08x b significand 0x%06x\n", h.first_bad_input, h.first_bad_got,
               h.first_bad_want);
    failures += !ok;
}

template <int kSrc>
static void run_short_end_to_end() {
    const int exps[] = {-40, 0, 39, 40};
    for (int e : exps) {
        Counts* d = new_counts();
        short_end_to_end<kSrc><<<132 * 16, 256>>>(e, e == 40, d);
        const Counts h = fetch(d);
        const unsigned long long want = 65536ull << (e == 40 ? 0 : 23);
        const bool ok = h.mismatch == 0 && h.checked == want;
        printf("[quotient_short %s, scale 2^%d%s] %llu (a, b) pairs: %llu with another code  %s\n",
               kSrc == PKV_DT_BF16 ? "bf16" : "f16 ", e, e == 40 ? "" : " * [1, 2)", h.checked, h.mismatch,
               ok ? "OK" : "FAIL");
        if (h.mismatch)
            printf("    first: a 0x%04x got 0x%08x want 0x%08x\n", h.first_bad_input & 0xffff, h.first_bad_got,
                   h.first_bad_want);
        failures += !ok;
    }
}

int main() {
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    int* d_flag;
    int flag = 0;
    CK(cudaMalloc(&d_flag, sizeof(int)));
    cvt_compiled<<<1, 1>>>(d_flag);
    CK(cudaMemcpy(&flag, d_flag, sizeof(int), cudaMemcpyDeviceToHost));
    printf("device %s (sm_%d%d); hardware fp8 encoder (PKV_FP8_CVT) compiled in: %s\n", prop.name, prop.major,
           prop.minor, flag ? "yes" : "NO");
    if (!flag) return 1;
    run_cvt<PKV_FP8_E4M3FN>();
    run_cvt<PKV_FP8_E5M2>();
    run_portable<PKV_FP8_E4M3FN>();
    run_portable<PKV_FP8_E4M3FNUZ>();
    run_portable<PKV_FP8_E5M2>();
    run_short();
    run_short_end_to_end<PKV_DT_BF16>();
    run_short_end_to_end<PKV_DT_F16>();

    // Every 2-byte pattern, consecutive and shuffled; the scales of quotient_scales.h.
    std::vector<uint16_t> seq(65536), shuf(65536);
    for (uint32_t i = 0; i < 65536; ++i) seq[i] = shuf[i] = static_cast<uint16_t>(i);
    std::mt19937_64 rng(11);
    std::shuffle(shuf.begin(), shuf.end(), rng);
    std::vector<float> scales = quotient_test_scales(rng);
    uint16_t *d_seq, *d_shuf;
    float* d_scales;
    CK(cudaMalloc(&d_seq, 65536 * 2));
    CK(cudaMalloc(&d_shuf, 65536 * 2));
    CK(cudaMalloc(&d_scales, scales.size() * 4));
    CK(cudaMemcpy(d_seq, seq.data(), 65536 * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_shuf, shuf.data(), 65536 * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_scales, scales.data(), scales.size() * 4, cudaMemcpyHostToDevice));
    const int ns = static_cast<int>(scales.size());
    run_chunks<PKV_DT_BF16, PKV_FP8_E4M3FN>(d_seq, d_shuf, d_scales, ns);
    run_chunks<PKV_DT_BF16, PKV_FP8_E5M2>(d_seq, d_shuf, d_scales, ns);
    run_chunks<PKV_DT_BF16, PKV_FP8_E4M3FNUZ>(d_seq, d_shuf, d_scales, ns);
    run_chunks<PKV_DT_F16, PKV_FP8_E4M3FN>(d_seq, d_shuf, d_scales, ns);
    run_chunks<PKV_DT_F16, PKV_FP8_E5M2>(d_seq, d_shuf, d_scales, ns);
    run_chunks<PKV_DT_F16, PKV_FP8_E4M3FNUZ>(d_seq, d_shuf, d_scales, ns);
    printf(failures ? "FP8 PROOF: FAILED (%d checks)\n" : "FP8 PROOF: OK (%d failing checks)\n", failures);
    return failures ? 1 : 0;
}
