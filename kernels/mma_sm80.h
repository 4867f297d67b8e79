// NVIDIA sm_80+ device primitives shared by the tensor-core kernels (decode.hip's
// paged_decode_mma_kernel, prefill.hip): the m16n8k16 product, the hardware 2^x and cp.async
// copies. NVIDIA-only (inline PTX); AMD builds see nothing here, and the planner sends those
// kernels no AMD work.
#pragma once

#include "pkv_common.h"

#if defined(PKV_CUDA)
namespace pkv {

constexpr float LOG2_E = 1.4426950408889634f;

// 2^x, the hardware approximation (relative error ~2^-22; results below 2^-126 flush to 0).
PKV_DEVICE float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// d += A . B, one mma.sync m16n8k16 with f32 accumulation, in the query's 16-bit dtype. Lane
// 4g + t holds A's pairs a0..a3 = (row g, k 2t), (row g + 8, k 2t), (row g, k 2t + 8),
// (row g + 8, k 2t + 8), B's b0, b1 = (k 2t, n g), (k 2t + 8, n g), and d = rows g, g + 8 x
// columns 2t, 2t + 1.
template <int kOp>
struct Mma;
template <>
struct Mma<PKV_DT_BF16> {
    static PKV_DEVICE void run(float* d, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    }
};
template <>
struct Mma<PKV_DT_F16> {
    static PKV_DEVICE void run(float* d, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    }
};

// cp.async: a global -> shared copy that stays in flight without holding a register. `valid`
// false copies nothing and zero-fills (the source is then never read). 16-byte copies go
// through L1 (`.ca`) when `l1`, else around it (`.cg`); 8-byte copies only have `.ca`.
// The `.cg` copies serve blocks longer than a tile, where a warp reads each value row as a
// 64-byte piece: they ask the L2 to fetch the piece's whole 128-byte line (`.L2::128B`), so
// that DRAM serves each row in 128-byte bursts and the next tile's piece is an L2 hit. A
// read-only kernel with this order streams at 98.7% of the copy rate with the hint and 89.5%
// without (B64 L4k block 2048; 256 bytes: 97.7, and 91.7 at block 544, whose rows are not
// 256-byte aligned; scripts/h200/paged_read.cu orders 6, 11, 12). This kernel with 256 bytes
// measured 0.8-2.2 points below 128 (docs/performance.md, session 10). `kLine` false: `.cg`
// without the hint (a value row's end tile where rows are not whole lines; issue_values).
template <int kBytes, bool kLine = true>
PKV_DEVICE void copy_async(void* dst, const void* src, bool valid, bool l1) {
    const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
    if (kBytes == 16 && l1) {
        asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 16 : 0)
                     : "memory");
    } else if (kBytes == 16 && kLine) {
        asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 16 : 0)
                     : "memory");
    } else if (kBytes == 16) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 16 : 0)
                     : "memory");
    } else {
        asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 8 : 0)
                     : "memory");
    }
}
PKV_DEVICE void copy_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most `kPending` of this thread's committed copy groups are still in flight.
template <int kPending>
PKV_DEVICE void copy_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

}  // namespace pkv
#endif  // PKV_CUDA
