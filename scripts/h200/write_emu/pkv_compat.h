// Host stand-in for kernels/pkv_compat.h: compiles kernels/write_kv.hip as plain C++ so that its
// logic (work decomposition, slot handling, vector paths, the fp8 quantiser) can be run on a
// machine without a GPU. Threads of a launch run one after another, which is exact for a kernel
// without barriers or cross-lane operations (the CUDA branch of the writer has none).
#pragma once

#include <algorithm>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define PKV_CUDA 1
#define PKV_WAVE_SIZE 32
#define PKV_DEVICE inline
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define PKV_LAUNCH_BOUNDS(threads, min_blocks)
#define __noinline__
using std::min;
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline dim3 threadIdx, blockIdx, blockDim, gridDim;

struct uint2 {
    uint32_t x, y;
};
struct uint4 {
    uint32_t x, y, z, w;
};
inline uint2 make_uint2(uint32_t x, uint32_t y) { return uint2{x, y}; }
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return uint4{x, y, z, w}; }

inline float __uint_as_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline uint32_t __float_as_uint(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
// Built with -ffp-contract=off: plain operators round once each, as these intrinsics do.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }

// CUDA's byte permute: result byte i = byte (s >> 4i) & 7 of the pair {x (bytes 0-3), y (4-7)}.
inline uint32_t __byte_perm(uint32_t x, uint32_t y, uint32_t s) {
    const uint64_t v = (static_cast<uint64_t>(y) << 32) | x;
    uint32_t r = 0;
    for (int i = 0; i < 4; ++i) r |= static_cast<uint32_t>((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
    return r;
}

typedef int pkv_error_t;
typedef void* pkv_stream_t;
#define pkv_success 0
inline int pkv_get_last_error() { return 0; }

inline float pkv_f16_bits_to_f32(uint16_t bits) {
    _Float16 h;
    memcpy(&h, &bits, 2);
    return static_cast<float>(h);
}
inline uint16_t pkv_f32_to_f16_bits(float v) {
    _Float16 h = static_cast<_Float16>(v);
    uint16_t bits;
    memcpy(&bits, &h, 2);
    return bits;
}

// kernel<<<grid, threads, 0, stream>>>(args) is rewritten to this by write_emu.sh.
template <typename Kernel, typename Arg>
void pkv_emu_launch(Kernel kernel, dim3 grid, unsigned threads, const Arg& arg) {
    gridDim = grid;
    blockDim = dim3(threads);
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                blockIdx = dim3(x, y, z);
                for (unsigned t = 0; t < threads; ++t) {
                    threadIdx = dim3(t);
                    kernel(arg);
                }
            }
}
