// Read-only kernels with the decode benchmark's access patterns (scripts/h200/paged_read_ceiling.py):
// how fast this GPU streams exactly the bytes a paged decode must read, in a given order, with
// no arithmetic beyond an XOR per load. They bound what any decode kernel that reads the cache
// in that order can reach; docs/performance.md compares the decode kernel against them.
//
// The caches are vLLM's split layout (scripts/bench.py through pagedkv.split_kv_cache): keys
// [blocks, heads, head_size / x, block_size, x] (x-groups of 16 bytes), values
// [blocks, heads, head_size, block_size]; a block's heads follow each other (`head_stride`
// bytes), and `blk` bytes separate blocks (hybrid pages hold a block's keys, then its values).
// A "unit" is the 32-token tile of one kv head, read as the decode kernel reads it: a lane takes
// one token's 16-byte x-groups of the keys, and 16-byte runs of slots of one dim of the values.
// Orders (a work-group's warps, 3 or 4 as run; a warp reads one unit at a time, all its loads in
// flight before any is used):
//   0 per head: work-group = (seq, head, split), warps take consecutive tiles of that head (the
//     decode kernel's order);
//   3 per head in lockstep: order 0 with a barrier per round of tiles (the decode kernel's
//     `lockstep` for blocks longer than a tile), so the warps' pieces of a row go out together;
//   1 heads together: work-group = (seq, split), its warps take the heads of a tile together, then
//     the next tile (all of a block's heads, one dense span at block 16, at about the same time);
//   2 contiguous: the same bytes as one dense span per work-group (no table; the ideal);
//   4-7 and 10-13: orders 0 and 3 with the values staged through shared memory by cp.async,
//     8 and 9: order 3 paced by an mbarrier (see paged_read below and the kernels).
#include <cstdint>

struct Pattern {
    const unsigned char* k;
    const unsigned char* v;
    const int32_t* table;
    int64_t blk;          // bytes between blocks (keys and values alike)
    int64_t head_stride;  // bytes between heads of a block (block_size * head_size * elem)
    int elem;             // bytes per element: 2 (bf16) or 1 (fp8)
    int head_size;
    int table_width;
    int bs;
    int seqs, heads, seq_len, splits;
    uint32_t* sink;
};

__device__ __forceinline__ uint4 load16(const unsigned char* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }
// acc ^ a, as asm starting from acc: the compiler does not reassociate the XORs (it folded each
// load's four words as soon as the load arrived, which blocked the next loads' issue).
__device__ __forceinline__ uint32_t xor4(uint32_t acc, uint4 a) {
    uint32_t r;
    asm("lop3.b32 %0, %1, %2, %3, 0x96;\n\tlop3.b32 %0, %0, %4, %5, 0x96;"
        : "=r"(r)
        : "r"(acc), "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w));
    return r;
}

// Reads one unit (tile `tile` of head `head` of sequence `seq`) with one warp. Head size 128,
// kElem bytes per element (compile-time: the loads' offsets fold, as in the decode kernel).
// Values through shared memory as the decode kernel reads them (kStage 1: cp.async.cg, 2:
// cp.async.ca into a per-warp stage, waited for and read back before use; 3 and 4: .cg with
// the L2 prefetch hint of 256 or 128 bytes; 5: 128 bytes except where `hint` is false, plain
// .cg there); 0: registers.
template <int kStage>
__device__ __forceinline__ void stage_copy(uint4* dst, const unsigned char* src, bool hint = true) {
    const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
    if (kStage == 1 || (kStage == 5 && !hint))
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src) : "memory");
    else if (kStage == 3) asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;\n" ::"r"(d), "l"(src) : "memory");
    else if (kStage == 4 || kStage == 5)
        asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16;\n" ::"r"(d), "l"(src) : "memory");
    else asm volatile("cp.async.ca.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src) : "memory");
}

template <int kElem, int kStage = 0>
__device__ __forceinline__ uint32_t read_unit(const Pattern& p, int seq, int head, int tile, int lane) {
    constexpr int kHead = 128;
    const int32_t* tab = p.table + static_cast<int64_t>(seq) * p.table_width;
    // Keys: lane <-> token, 16-byte x-groups 0.. (16 for bf16 head 128, 8 for fp8).
    constexpr int groups = kHead * kElem / 16;
    const int tok = tile * 32 + lane;
    const unsigned char* krow = p.k + static_cast<int64_t>(tab[tok / p.bs]) * p.blk + head * p.head_stride +
                                static_cast<int64_t>(tok % p.bs) * 16;
    const int64_t kstep = static_cast<int64_t>(p.bs) * 16;  // between x-groups
    // Values: 16 bytes are `run` slots of one dim (8 bf16, 16 fp8); a tile is 32 / run runs per
    // dim, lanes <-> (dim, run), dims lanes / (32 / run) apart per load.
    constexpr int run = 16 / kElem, runs = 32 / run;
    const int vtok = tile * 32 + (lane % runs) * run;
    const unsigned char* vrow = p.v + static_cast<int64_t>(tab[vtok / p.bs]) * p.blk + head * p.head_stride +
                                static_cast<int64_t>(lane / runs) * p.bs * kElem +
                                static_cast<int64_t>(vtok % p.bs) * kElem;
    const int64_t vstep = static_cast<int64_t>(32 / runs) * p.bs * kElem;  // between a lane's dims
    constexpr int vloads = kHead * runs / 32;
    uint4 kv[2][16];
    if (kStage != 0) {
        // The warp's stage: 16 chunks of 16 bytes per lane (dynamic shared memory).
        extern __shared__ uint4 stage[];
        uint4* mine = stage + (threadIdx.x / 32) * 16 * 32 + lane;
        // kStage 5: value rows that do not fill whole 128-byte lines (block 544: 1088 bytes)
        // share the lines at their ends with the neighbouring rows' far tiles (the block's
        // other end), so a tile holding a block's first or last slot asks for no more than its
        // own bytes there; every other tile's line partner is the adjacent tile.
        const int off = (tile * 32) % p.bs;
        const bool hint = (p.bs * kElem) % 128 == 0 || (off != 0 && off + 32 < p.bs);
#pragma unroll
        for (int i = 0; i < 16; ++i)
            if (i < groups) kv[0][i] = load16(krow + i * kstep);
#pragma unroll
        for (int i = 0; i < 16; ++i)
            if (i < vloads) stage_copy<kStage>(mine + i * 32, vrow + i * vstep, hint);
        asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
#pragma unroll
        for (int i = 0; i < 16; ++i)
            if (i < vloads) kv[1][i] = mine[i * 32];
    } else {
#pragma unroll
        for (int i = 0; i < 16; ++i) {
            if (i < groups) kv[0][i] = load16(krow + i * kstep);
            if (i < vloads) kv[1][i] = load16(vrow + i * vstep);
        }
    }
    // One chain through every load, consumed from the last. It keeps all 32 (16 for fp8) loads
    // of the unit in flight before the first use only together with the build's 168-register
    // budget (paged_read_ceiling.py): below that, ptxas interleaved loads and uses, with as
    // few as four loads in flight (checked in the SASS).
    uint32_t acc = 0;
#pragma unroll
    for (int i = 15; i >= 0; --i) {
        if (i < vloads) acc = xor4(acc, kv[1][i]);
        if (i < groups) acc = xor4(acc, kv[0][i]);
    }
    return acc;
}

// The tiles [t0, t1) of split `split`, as the decode kernel divides a sequence.
__device__ __forceinline__ void split_tiles(const Pattern& p, int split, int& t0, int& t1) {
    const int tiles = p.seq_len / 32;
    const int per = (tiles + p.splits - 1) / p.splits;
    t0 = split * per;
    t1 = min(tiles, t0 + per);
}

// What a per-head work-group reads: work-group = (seq, head, split), the split's tiles [t0, t1).
struct HeadItem {
    int seq, head, t0, t1;
};
__device__ __forceinline__ HeadItem head_item(const Pattern& p) {
    HeadItem it;
    const int split = blockIdx.x % p.splits;
    const int item = blockIdx.x / p.splits;
    it.head = item % p.heads;
    it.seq = item / p.heads;
    split_tiles(p, split, it.t0, it.t1);
    return it;
}

template <int kElem, int kStage = 0>
__global__ void read_per_head(Pattern p) {
    const int warps = blockDim.x / 32, wave = threadIdx.x / 32, lane = threadIdx.x % 32;
    const HeadItem it = head_item(p);
    const int seq = it.seq, head = it.head, t0 = it.t0, t1 = it.t1;
    uint32_t acc = 0;
#pragma unroll 1
    for (int t = t0 + wave; t < t1; t += warps) acc ^= read_unit<kElem, kStage>(p, seq, head, t, lane);
    p.sink[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

template <int kElem, int kStage = 0>
__global__ void read_per_head_lockstep(Pattern p) {
    const int warps = blockDim.x / 32, wave = threadIdx.x / 32, lane = threadIdx.x % 32;
    const HeadItem it = head_item(p);
    const int seq = it.seq, head = it.head, t0 = it.t0, t1 = it.t1;
    uint32_t acc = 0;
#pragma unroll 1
    for (int r = t0; r < t1; r += warps) {
        __syncthreads();
        if (r + wave < t1) acc ^= read_unit<kElem, kStage>(p, seq, head, r + wave, lane);
    }
    p.sink[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

// Order 3 paced instead of barriered: a warp reads round r once every warp has issued round
// r - 1 (an mbarrier phase per round; kTry: try_wait, which suspends the warp, else a
// test_wait spin). The warps stay within one round of each other without waiting together.
template <int kElem, bool kTry>
__global__ void read_per_head_paced(Pattern p) {
    __shared__ uint64_t bar;
    const int warps = blockDim.x / 32, wave = threadIdx.x / 32, lane = threadIdx.x % 32;
    const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(&bar));
    if (threadIdx.x == 0) asm volatile("mbarrier.init.shared.b64 [%0], %1;\n" ::"r"(a), "r"(warps) : "memory");
    __syncthreads();
    const HeadItem it = head_item(p);
    const int seq = it.seq, head = it.head, t0 = it.t0, t1 = it.t1;
    uint32_t acc = 0;
    int round = 0;
#pragma unroll 1
    for (int r = t0; r < t1; r += warps, ++round) {
        if (round > 0) {
            uint32_t done;
            do {
                if (kTry)
                    asm volatile("{\n\t.reg .pred q;\n\tmbarrier.try_wait.parity.shared.b64 q, [%1], %2;\n\tselp.u32 %0, 1, 0, q;\n\t}\n"
                                 : "=r"(done) : "r"(a), "r"((round - 1) & 1) : "memory");
                else
                    asm volatile("{\n\t.reg .pred q;\n\tmbarrier.test_wait.parity.shared.b64 q, [%1], %2;\n\tselp.u32 %0, 1, 0, q;\n\t}\n"
                                 : "=r"(done) : "r"(a), "r"((round - 1) & 1) : "memory");
            } while (!done);
        }
        if (r + wave < t1) acc ^= read_unit<kElem>(p, seq, head, r + wave, lane);
        if (lane == 0) asm volatile("{\n\t.reg .b64 st;\n\tmbarrier.arrive.shared.b64 st, [%0];\n\t}\n" ::"r"(a) : "memory");
    }
    p.sink[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

template <int kElem>
__global__ void read_heads_together(Pattern p) {
    const int warps = blockDim.x / 32, wave = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int split = blockIdx.x % p.splits;
    const int seq = blockIdx.x / p.splits;
    int t0, t1;
    split_tiles(p, split, t0, t1);
    const int units = (t1 - t0) * p.heads;
    uint32_t acc = 0;
#pragma unroll 1
    for (int u = wave; u < units; u += warps) acc ^= read_unit<kElem>(p, seq, u % p.heads, t0 + u / p.heads, lane);
    p.sink[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

// The same number of bytes per work-group as one dense span of keys and one of values.
__global__ void read_contiguous(Pattern p, int64_t bytes_per_group) {
    const unsigned char* k = p.k + blockIdx.x * bytes_per_group;
    const unsigned char* v = p.v + blockIdx.x * bytes_per_group;
    uint32_t acc = 0;
    const int64_t step = static_cast<int64_t>(blockDim.x) * 16 * 16;
#pragma unroll 1
    for (int64_t base = threadIdx.x * 16; base < bytes_per_group; base += step) {
        uint4 a[2][16];
#pragma unroll
        for (int i = 0; i < 16; ++i) {
            const int64_t o = base + static_cast<int64_t>(i) * blockDim.x * 16;
            if (o < bytes_per_group) {
                a[0][i] = load16(k + o);
                a[1][i] = load16(v + o);
            } else {
                a[0][i] = a[1][i] = make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int i = 15; i >= 0; --i) acc = xor4(xor4(acc, a[1][i]), a[0][i]);
    }
    p.sink[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

// A per-head order with the values staged by `stage_copy<kStage>` (16-bit caches), free or in lockstep.
template <int kStage>
void launch_staged(bool lockstep, const Pattern& p, int threads, cudaStream_t s) {
    const int n = p.seqs * p.heads * p.splits, smem = threads / 32 * 16 * 32 * 16;  // 16 chunks per lane
    if (lockstep) read_per_head_lockstep<2, kStage><<<n, threads, smem, s>>>(p);
    else read_per_head<2, kStage><<<n, threads, smem, s>>>(p);
}

extern "C" int paged_read(int order, Pattern p, int threads, void* stream) {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (p.head_size != 128 || (p.elem != 1 && p.elem != 2)) return -1;
    if (order == 0) {
        if (p.elem == 2) read_per_head<2><<<p.seqs * p.heads * p.splits, threads, 0, s>>>(p);
        else read_per_head<1><<<p.seqs * p.heads * p.splits, threads, 0, s>>>(p);
    } else if (order == 3) {
        if (p.elem == 2) read_per_head_lockstep<2><<<p.seqs * p.heads * p.splits, threads, 0, s>>>(p);
        else read_per_head_lockstep<1><<<p.seqs * p.heads * p.splits, threads, 0, s>>>(p);
    } else if (order == 8 || order == 9) {
        const int n = p.seqs * p.heads * p.splits;
        if (p.elem != 2) return -1;
        if (order == 8) read_per_head_paced<2, false><<<n, threads, 0, s>>>(p);
        else read_per_head_paced<2, true><<<n, threads, 0, s>>>(p);
    } else if ((order >= 4 && order <= 7) || (order >= 10 && order <= 15)) {
        // Values staged through shared memory (16-bit only): 4/5 lockstep with cp.async .cg/.ca,
        // 6/7 free; .cg with an L2 prefetch hint: 10 lockstep 256 B, 11 free 256 B, 12 free 128 B,
        // 13 lockstep 128 B (the decode kernel's order for blocks longer than a tile); 14 / 15
        // lockstep / free with 128 B except at the block's ends of rows not in whole lines.
        if (p.elem != 2) return -1;
        const bool lockstep = order == 4 || order == 5 || order == 10 || order == 13 || order == 14;
        if (order == 4 || order == 6) launch_staged<1>(lockstep, p, threads, s);
        if (order == 5 || order == 7) launch_staged<2>(lockstep, p, threads, s);
        if (order == 10 || order == 11) launch_staged<3>(lockstep, p, threads, s);
        if (order == 12 || order == 13) launch_staged<4>(lockstep, p, threads, s);
        if (order == 14 || order == 15) launch_staged<5>(lockstep, p, threads, s);
    } else if (order == 1) {
        if (p.elem == 2) read_heads_together<2><<<p.seqs * p.splits, threads, 0, s>>>(p);
        else read_heads_together<1><<<p.seqs * p.splits, threads, 0, s>>>(p);
    } else {
        const int groups = p.seqs * p.heads * p.splits;
        const int64_t bytes = static_cast<int64_t>(p.seqs) * p.heads * p.seq_len * p.head_size * p.elem / groups;
        read_contiguous<<<groups, threads, 0, s>>>(p, bytes);
    }
    return static_cast<int>(cudaGetLastError());
}
