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

// Programmatic dependent launch (NVIDIA sm_90 and later): a kernel launched with `overlap`
// may be scheduled while the kernel before it in the stream still runs, as soon as every
// work-group of that kernel has called pkv_allow_next_grid() or exited; it must call
// pkv_wait_prior_grids() before it reads anything the earlier kernel writes (the wait returns
// once that kernel has completed and its memory is visible). Without `overlap`, on earlier
// GPUs and on AMD the launch is an ordinary stream-ordered one and both calls do nothing.
PKV_DEVICE void pkv_wait_prior_grids() {
#if defined(PKV_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

PKV_DEVICE void pkv_allow_next_grid() {
#if defined(PKV_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Launches `kernel` on `stream`; `overlap` asks for a programmatic dependent launch (above;
// the host only asks on sm_90 and later). Returns the launch's error.
template <typename... Args>
static inline pkv_error_t pkv_launch(void (*kernel)(Args...), dim3 grid, dim3 block, size_t shared_bytes,
                                     pkv_stream_t stream, bool overlap, Args... args) {
#if defined(PKV_CUDA)
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = shared_bytes;
    config.stream = stream;
    config.attrs = attr;
    config.numAttrs = overlap ? 1 : 0;
    return cudaLaunchKernelEx(&config, kernel, args...);
#else
    (void)overlap;
    kernel<<<grid, block, shared_bytes, stream>>>(args...);
    return hipGetLastError();
#endif
}

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
