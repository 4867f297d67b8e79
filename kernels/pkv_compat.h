// Portability header: the handful of runtime names and intrinsics the kernels use, mapped
// onto HIP (hipcc / clang -x hip, AMD) or CUDA (nvcc -x cu, NVIDIA). The kernels are written
// once against the `pkv_*` names below; nothing else in kernels/ includes a vendor header.
// HIP's own HIP-on-NVIDIA headers are deliberately not used: Debian's (ROCm 5.2) do not
// compile with CUDA 13.
#pragma once

#include <stdint.h>

#if defined(__HIP__) || defined(__HIPCC__)
#define PKV_HIP 1
#include <hip/hip_fp16.h>
#include <hip/hip_runtime.h>

typedef hipError_t pkv_error_t;
typedef hipStream_t pkv_stream_t;
#define pkv_success hipSuccess
#define pkv_get_last_error hipGetLastError

// Dynamic shared memory above 48 KiB needs an opt-in on NVIDIA only. On AMD a work-group may
// use the whole LDS the runtime reports (the planner's limit) without asking, and
// hipFuncSetAttribute's support for this attribute differs between ROCm releases: no call.
static inline pkv_error_t pkv_allow_dynamic_smem(const void*, int) { return hipSuccess; }

#define pkv_shfl_xor(value, lane_mask, width) __shfl_xor((value), (lane_mask), (width))
// Votes over the lanes of the wave, and the ordering of their memory operations (a wave issues
// its lanes' memory operations in program order: nothing to do).
#define pkv_wave_all(pred) __all(pred)
#define pkv_wave_any(pred) __any(pred)
#define pkv_wave_sync() ((void)0)

// Wave size is a per-target compile-time constant on AMD (64 on CDNA, 32 on RDNA).
#if defined(__HIP_DEVICE_COMPILE__)
#if defined(__AMDGCN_WAVEFRONT_SIZE__)
#define PKV_WAVE_SIZE __AMDGCN_WAVEFRONT_SIZE__
#else
#define PKV_WAVE_SIZE __AMDGCN_WAVEFRONT_SIZE
#endif
#else
// Host pass: kernels are not executed here; the widest wave keeps static checks strict.
#define PKV_WAVE_SIZE 64
#endif

#else  // CUDA
#define PKV_CUDA 1
#include <cuda_fp16.h>
#include <cuda_runtime.h>

typedef cudaError_t pkv_error_t;
typedef cudaStream_t pkv_stream_t;
#define pkv_success cudaSuccess
#define pkv_get_last_error cudaGetLastError

static inline pkv_error_t pkv_allow_dynamic_smem(const void* kernel, int bytes) {
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

#define pkv_shfl_xor(value, lane_mask, width) __shfl_xor_sync(0xffffffffu, (value), (lane_mask), (width))
#define pkv_wave_all(pred) __all_sync(0xffffffffu, (pred))
#define pkv_wave_any(pred) __any_sync(0xffffffffu, (pred))
#define pkv_wave_sync() __syncwarp()

#define PKV_WAVE_SIZE 32
#endif

// Dynamic shared memory a launch may use without an opt-in on NVIDIA (48 KiB); above it the
// launchers call pkv_allow_dynamic_smem (a no-op on AMD).
#define PKV_DEFAULT_DYNAMIC_SMEM (48 * 1024)

#define PKV_DEVICE __device__ __forceinline__

// __launch_bounds__ with a register budget: on NVIDIA the second argument asks for
// `min_blocks` resident work-groups per SM (it caps registers per thread); HIP reads a second
// argument differently (waves per execution unit), so AMD gets the thread bound only.
#if defined(PKV_HIP)
#define PKV_LAUNCH_BOUNDS(threads, min_blocks) __launch_bounds__(threads)
#else
#define PKV_LAUNCH_BOUNDS(threads, min_blocks) __launch_bounds__(threads, min_blocks)
#endif

// f16 bits <-> f32 through the hardware conversion (exact f16 -> f32; round-nearest-even back).
PKV_DEVICE float pkv_f16_bits_to_f32(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }
PKV_DEVICE uint16_t pkv_f32_to_f16_bits(float v) { return __half_as_ushort(__float2half_rn(v)); }
