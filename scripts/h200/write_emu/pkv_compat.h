// Host stand-in for kernels/pkv_compat.h: compiles kernels/write_kv.hip as plain C++ so that its
// logic (work decomposition, slot handling, vector paths, the fp8 quantiser) can be run on a
// machine without a GPU. Threads of a launch run four lanes at a time, one host thread each,
// meeting at every exchange, vote and wave sync (the writer's cross-lane operations, all inside
// groups of 4 lanes; it has no barriers).
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <thread>
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
inline dim3 blockDim, gridDim;
inline thread_local dim3 threadIdx, blockIdx;

// The writer's cross-lane operations stay inside groups of 4 lanes (exchanges with lane ^ 1
// and lane ^ 2), so the emulator runs 4 lanes at a time, one host thread each, meeting here.
constexpr unsigned kEmuLanes = 4;
struct LaneBarrier {
    std::mutex m;
    std::condition_variable cv;
    unsigned arrived = 0;
    unsigned active = kEmuLanes;  // lanes that have not left the kernel (GPU: exited lanes do not take part)
    long phase = 0;
    void release() {
        arrived = 0;
        ++phase;
        cv.notify_all();
    }
    void wait() {
        std::unique_lock<std::mutex> lock(m);
        const long ph = phase;
        if (++arrived == active) {
            release();
            return;
        }
        // A lane whose group took another branch would wait for ever (on a GPU: undefined
        // behaviour of the shuffle or sync): fail instead of hanging.
        if (!cv.wait_for(lock, std::chrono::seconds(20), [&] { return phase != ph; })) {
            fprintf(stderr, "lanes diverged: one lane waits at an exchange another never reaches\n");
            abort();
        }
    }
    // A lane leaves the kernel: the others no longer wait for it.
    void leave() {
        std::lock_guard<std::mutex> lock(m);
        --active;
        if (arrived > 0 && arrived == active) release();
    }
    void reset() {
        std::lock_guard<std::mutex> lock(m);
        arrived = 0;
        active = kEmuLanes;
    }
};
// pkv_emu_lanes: exchanges inside the kernel; pkv_emu_group: the start and end of each group
// of lanes (all four host threads, every time).
inline LaneBarrier pkv_emu_lanes, pkv_emu_group;
inline uint64_t pkv_emu_lane_value[kEmuLanes];

// Each lane posts its value, all meet, each reads lane ^ mask's, all meet again (so that the
// next exchange cannot overwrite a value before it is read).
template <typename T>
inline T pkv_emu_shfl_xor(T v, int lane_mask) {
    if (lane_mask <= 0 || static_cast<unsigned>(lane_mask) >= kEmuLanes) {
        fprintf(stderr, "emulator: exchanges reach lane ^ 1 .. lane ^ %u only\n", kEmuLanes - 1);
        abort();
    }
    const unsigned lane = threadIdx.x % kEmuLanes;
    pkv_emu_lane_value[lane] = static_cast<uint64_t>(v);
    pkv_emu_lanes.wait();
    const T r = static_cast<T>(pkv_emu_lane_value[lane ^ static_cast<unsigned>(lane_mask)]);
    pkv_emu_lanes.wait();
    return r;
}
// Votes are taken over the group of 4: the emulator checks each group's logic; uniformity over
// a whole wave is the GPU matrix's to check.
inline int pkv_emu_vote(bool pred, bool all) {
    const unsigned lane = threadIdx.x % kEmuLanes;
    pkv_emu_lane_value[lane] = pred;
    pkv_emu_lanes.wait();
    int r = all ? 1 : 0;
    for (unsigned i = 0; i < kEmuLanes; ++i) r = all ? (r & static_cast<int>(pkv_emu_lane_value[i])) : (r | static_cast<int>(pkv_emu_lane_value[i]));
    pkv_emu_lanes.wait();
    return r;
}
#define pkv_shfl_xor(value, lane_mask, width) pkv_emu_shfl_xor((value), (lane_mask))
#define pkv_wave_all(pred) pkv_emu_vote(static_cast<bool>(pred), true)
#define pkv_wave_any(pred) pkv_emu_vote(static_cast<bool>(pred), false)
#define pkv_wave_sync() pkv_emu_lanes.wait()

// Aligned as CUDA's: run.sh builds with -fsanitize=alignment, so a vector access that the GPU
// would fault on (an 8- or 16-byte access at an address its size does not divide) fails here.
struct alignas(8) uint2 {
    uint32_t x, y;
};
struct alignas(16) uint4 {
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
    // Lanes 4i .. 4i + 3 run together, one per host thread, starting and ending each group at
    // the barrier (a lane that leaves early still meets the others at the end).
    auto lanes = [&](unsigned first) {
        for (unsigned z = 0; z < grid.z; ++z)
            for (unsigned y = 0; y < grid.y; ++y)
                for (unsigned x = 0; x < grid.x; ++x) {
                    blockIdx = dim3(x, y, z);
                    for (unsigned t = first; t < threads; t += kEmuLanes) {
                        threadIdx = dim3(t);
                        pkv_emu_group.wait();
                        kernel(arg);
                        pkv_emu_lanes.leave();
                        pkv_emu_group.wait();
                        if (first == 0) pkv_emu_lanes.reset();  // every lane has left
                        pkv_emu_group.wait();
                    }
                }
    };
    std::thread others[kEmuLanes - 1];
    for (unsigned i = 1; i < kEmuLanes; ++i) others[i - 1] = std::thread(lanes, i);
    lanes(0u);
    for (auto& t : others) t.join();
}
