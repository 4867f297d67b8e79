//! Attention planning: which path, compute tile, split count, shared memory and workspace a
//! call takes, and why. Pure and cheap (it runs on every call); every input is shape data
//! fixed for a captured graph, never a sequence length read from the device.
//!
//! A GPU call runs up to two kernels: the decode kernel (`kernels/decode.hip`) for sequences
//! with exactly one query token, and the general kernel (`kernels/attention.hip`) for every
//! other sequence (it skips the decode rows). Both always launch (which sequences are decode
//! rows is device data); each has its own split count and workspace region. The plan's
//! headline numbers (`path`, `tile_size`, `num_splits`, `threads`, `shared_mem_bytes`) are the
//! decode kernel's for a decode-shaped batch (no more tokens than sequences) and the general
//! kernel's otherwise: the kernel that carries the batch.

use crate::core::attention::AttentionProblem;
use crate::core::dtype::{DType, Fp8Format};
use crate::core::status::{Result, Status};
use crate::core::tuning::{Tuning, tuning_for};

/// What the planner knows about a GPU: read from the device (or given by a user asking
/// "what would you do on a gfx942?").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceLimits {
    /// "gfx942", "gfx1100", "sm_90", ...
    pub arch: String,
    pub wave_size: u32,
    /// Shared memory (LDS) a work-group may use without opting in.
    pub shared_mem_per_block: u64,
    /// Shared memory a work-group may use after opting in (equal to the above on AMD).
    pub shared_mem_per_block_optin: u64,
    pub multiprocessor_count: u32,
}

impl DeviceLimits {
    /// e4m3 flavour the device computes in: fnuz on gfx940/gfx942 (MI300), OCP elsewhere.
    pub fn fp8_e4m3(&self) -> Fp8Format {
        fp8_e4m3_for_arch(&self.arch)
    }
}

pub fn fp8_e4m3_for_arch(arch: &str) -> Fp8Format {
    if arch.starts_with("gfx940") || arch.starts_with("gfx941") || arch.starts_with("gfx942") {
        Fp8Format::E4M3FNUZ
    } else {
        Fp8Format::E4M3FN
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Cpu,
    Gpu(DeviceLimits),
}

/// The path a call takes. C values are part of the ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionPath {
    /// Host memory: the CPU reference backend.
    CpuReference = 1,
    /// One GPU pass; each work-group walks all keys of its queries.
    GpuSinglePass = 2,
    /// GPU split-KV: keys divided among work-groups, merged by a reduce kernel.
    GpuSplitKv = 3,
}

impl AttentionPath {
    pub fn name(self) -> &'static str {
        match self {
            AttentionPath::CpuReference => "cpu_reference",
            AttentionPath::GpuSinglePass => "gpu_single_pass",
            AttentionPath::GpuSplitKv => "gpu_split_kv",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub path: AttentionPath,
    /// Keys per inner iteration; independent of the physical block size.
    pub tile_size: u32,
    /// Query tokens per work-group (prefill chunks); 1 for pure decode.
    pub block_q: u32,
    pub num_splits: u32,
    pub threads: u32,
    /// Upper bound of work-groups along the query axis (graph safe: no length read).
    pub num_q_blocks: u32,
    pub shared_mem_bytes: u64,
    /// Both kernels' split partials (general first, then decode).
    pub workspace_bytes: u64,
    /// The numbers behind the choice; turned into words only when asked (`Reason::describe`),
    /// so that a launch pays no formatting.
    pub reason: Reason,
    /// The general kernel's launch (`kernels/attention.hip`).
    pub general: GeneralPlan,
    /// The decode kernel's launch (`kernels/decode.hip`), when it runs.
    pub decode: Option<DecodePlan>,
}

/// The general kernel's launch: any query length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneralPlan {
    /// The kernel this plan launches.
    pub kernel: GeneralKernel,
    pub tile_size: u32,
    pub block_q: u32,
    /// Query heads of one kv head per work-group, and the work-groups per kv head.
    pub heads_per_cta: u32,
    pub head_groups: u32,
    pub num_splits: u32,
    pub num_q_blocks: u32,
    pub shared_mem_bytes: u64,
    /// Its split partials, at the start of the workspace.
    pub workspace_bytes: u64,
}

impl DecodePlan {
    /// A tensor-core kernel (NVIDIA, f16/bf16 queries, a cache of the same dtype or e4m3fn on
    /// sm_89+, slots contiguous in the value layout): `DECODE_MMA_HEADS` heads per work-group,
    /// dynamic shared memory.
    pub fn tensor_cores(&self) -> bool {
        self.kernel != DecodeKernel::Fma
    }
}

/// The decode kernel's launch: grid (num_seqs, num_kv_heads * head_groups, num_splits) of
/// `DECODE_THREADS` threads; work-groups of sequences whose query length is not 1 exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodePlan {
    pub num_splits: u32,
    /// Query heads of one kv head per work-group (one read of K/V serves them all).
    pub heads_per_cta: u32,
    pub head_groups: u32,
    /// Shared memory of the kernel instance (`decode_shared_mem_bytes`).
    pub shared_mem_bytes: u64,
    /// Byte offset of its split partials in the workspace (after the general kernel's).
    pub workspace_offset: u64,
    pub workspace_bytes: u64,
    /// The kernel this plan launches.
    pub kernel: DecodeKernel,
    /// Work-groups serve the sequences longest first (`decode_item` in kernels/decode.hip):
    /// the grid is more than one wave of resident work-groups, so the order they start in
    /// decides whether a long sequence's work-groups run last.
    pub longest_first: bool,
    /// The kernels launched after the decode kernel in the same call (its split reduce, then
    /// the general kernel) are programmatic dependents of the one before them (NVIDIA sm_90
    /// and later): each is scheduled while the previous one finishes, instead of after it,
    /// and waits on the device where it must (kernels/pkv_compat.h, `pkv_launch`).
    pub overlap_next: bool,
    /// The caller bounded every query to one token (`max_query_len` = 1): the decode kernel
    /// serves every row and the general kernel is not launched. Its launch after a decode-only
    /// batch cost 5-8 us, its work-groups finding that every row is the decode kernel's
    /// (docs/performance.md, session 11).
    pub covers_all: bool,
}

/// Why a plan is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Cpu {
        block_size: i64,
    },
    Gpu {
        block_size: u32,
        tile: u32,
        shared_mem: u64,
        limit: u64,
        ctas: u64,
        target_ctas: u64,
        cus: u32,
        table_width: i64,
        /// Split count of the decode kernel that serves the batch's one-token sequences (0: no
        /// decode kernel).
        decode_splits: u32,
        /// The kernel that serves the other rows.
        kernel: GeneralKernel,
    },
    /// A decode-shaped batch: the decode kernel carries it.
    Decode {
        block_size: u32,
        shared_mem: u64,
        limit: u64,
        ctas: u64,
        target_ctas: u64,
        cus: u32,
        table_width: i64,
        heads_per_cta: u32,
        head_groups: u32,
        kernel: DecodeKernel,
        /// Keys per iteration of a work-group (one per thread).
        tile: u32,
        /// `DecodePlan::longest_first`.
        longest_first: bool,
        /// `DecodePlan::covers_all`.
        covers_all: bool,
    },
}

impl Reason {
    pub fn describe(&self, arch: &str, num_splits: u32) -> String {
        match *self {
            Reason::Cpu { block_size } => format!(
                "host tensors: CPU reference backend, one key at a time with per-token block addressing \
                 (block_size {block_size} any)"
            ),
            Reason::Decode {
                block_size: bs,
                shared_mem,
                limit,
                ctas,
                target_ctas,
                cus,
                table_width,
                heads_per_cta,
                head_groups,
                kernel,
                tile,
                longest_first,
                covers_all,
            } => {
                let products = match kernel {
                    DecodeKernel::TensorCores => "tensor cores",
                    DecodeKernel::Fma => "FMA",
                };
                let tile_reason = if bs > tile {
                    format!("block_size {bs} > tile {tile}: tile decoupled, per-token block addressing")
                } else {
                    format!("tile {tile} over blocks of {bs}, per-token block addressing")
                };
                let split_reason = if num_splits > 1 {
                    format!(
                        "{ctas} work-groups x {num_splits} splits fill {target_ctas} resident on {cus} CUs (from \
                         table width {table_width} x block {bs}, not from seq_lens)"
                    )
                } else {
                    format!("{ctas} work-groups for {target_ctas} resident on {cus} CUs: single pass")
                };
                let order = if longest_first { "; more than one wave: longest sequences first" } else { "" };
                let general = if covers_all {
                    "; max_query_len 1: no general kernel"
                } else {
                    "; the general kernel skips its one-token rows"
                };
                format!(
                    "{tile_reason}; {shared_mem} B shared memory of {limit} B on {arch}; decode kernel ({products}, \
                     a work-group per sequence x kv head x {heads_per_cta} of its query heads, {head_groups} \
                     group(s)); {split_reason}{order}{general}"
                )
            }
            Reason::Gpu {
                block_size: bs,
                tile,
                shared_mem,
                limit,
                ctas,
                target_ctas,
                cus,
                table_width,
                decode_splits,
                kernel,
            } => {
                let tile_reason = if bs > tile {
                    format!("block_size {bs} > tile {tile}: tile decoupled, per-token block addressing")
                } else if tile % bs.max(1) != 0 {
                    format!("tile {tile} straddles blocks of {bs}: per-token block addressing")
                } else {
                    format!("tile {tile} covers {} block(s) of {bs}", tile / bs.max(1))
                };
                let split_reason = if num_splits > 1 {
                    format!(
                        "{ctas} work-groups < {target_ctas} wanted on {cus} CUs: split KV {num_splits} ways (from \
                         table width {table_width} x block {bs}, not from seq_lens)"
                    )
                } else if ctas < target_ctas {
                    format!(
                        "{ctas} work-groups < {target_ctas} wanted on {cus} CUs, but the block table ({table_width} x \
                         block {bs}) holds at most one tile of keys: single pass"
                    )
                } else {
                    format!("{ctas} work-groups fill {cus} CUs: single pass")
                };
                let decode_reason = if decode_splits > 0 {
                    format!("; one-token sequences take the decode kernel ({decode_splits} split(s))")
                } else {
                    String::new()
                };
                let products = match kernel {
                    GeneralKernel::TensorCores => "tensor-core prefill kernel",
                    GeneralKernel::Fma => "general kernel (FMA)",
                };
                format!(
                    "{products}; {tile_reason}; {shared_mem} B shared memory of {limit} B allowed on {arch}; \
                     {split_reason}{decode_reason}"
                )
            }
        }
    }
}

impl Target {
    /// Name used in plan explanations.
    pub fn arch(&self) -> &str {
        match self {
            Target::Cpu => "cpu",
            Target::Gpu(l) => &l.arch,
        }
    }
}

/// Threads of one attention work-group: `ATT_THREADS` in `kernels/attention.hip` (the kernel is
/// compiled for exactly this many; whole waves of 32 and of 64).
pub(crate) const KERNEL_THREADS: u32 = 256;
/// Most query rows (tokens x query heads of one kv head) one work-group serves (`MAX_ROWS`).
pub(crate) const KERNEL_MAX_ROWS: u32 = 16;
/// Compute tiles the kernel supports: powers of two in this range (`MAX_TILE`; the floor keeps
/// one 16-lane segment per row in the softmax step).
pub(crate) const KERNEL_MIN_TILE: u32 = 16;
pub(crate) const KERNEL_MAX_TILE: u32 = 64;

/// Threads of one decode work-group: `DEC_THREADS` in `kernels/decode.hip` (whole waves of 32
/// and of 64).
pub(crate) const DECODE_THREADS: u32 = 128;
/// Query heads one decode work-group serves (`DEC_HPC`).
pub(crate) const DECODE_HEADS_PER_CTA: u32 = 4;
/// Query heads one work-group of the decode kernel's tensor-core variant serves (`MMA_HEADS`:
/// the n of its m16n8k16 products).
pub(crate) const DECODE_MMA_HEADS: u32 = 8;
/// Threads of the register tensor-core kernel's work-groups for head sizes up to 128 and above
/// (`MMA_THREADS_SMALL` / `MMA_THREADS_LARGE`).
pub(crate) const DECODE_MMA_THREADS_SMALL: u32 = 96;
pub(crate) const DECODE_MMA_THREADS_LARGE: u32 = 128;
/// Shared memory the NVIDIA runtime reserves per resident work-group, besides its own.
const NVIDIA_RESERVED_SMEM_PER_CTA: u64 = 1024;
/// Most resident work-groups per SM (NVIDIA sm_80 to sm_90).
const NVIDIA_MAX_CTAS_PER_SM: u64 = 32;

/// Which kernel serves the rows that are not the decode kernel's (prefill chunks, and every row
/// where no decode kernel runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeneralKernel {
    /// `paged_attention_kernel` (`kernels/attention.hip`): f32 tiles, FMA products; any dtype,
    /// layout, head size and vendor.
    Fma,
    /// `paged_prefill_mma_kernel` (`kernels/prefill.hip`): mma.sync tensor-core products (NVIDIA
    /// sm_80+, f16/bf16 queries over a cache of the same dtype or, sm_89+, of e4m3fn / e5m2
    /// codes, the head sizes of `PREFILL_MMA_HEADS`: one instance each).
    TensorCores,
}

/// The tensor-core prefill kernel's threads (`PF_THREADS` in `kernels/prefill.hip`) and the head
/// sizes of its instances (`launch_for_head`).
pub(crate) const PREFILL_MMA_THREADS: u32 = 128;
pub(crate) const PREFILL_MMA_HEADS: [u32; 7] = [64, 80, 96, 112, 128, 192, 256];

/// The tensor-core prefill kernel's `(rows, tile)` per work-group for a head size (`PfShape` in
/// `kernels/prefill.hip`): up to 128 dims two 16-row m-tiles per warp and 64-key tiles; above,
/// one m-tile per warp and 32-key tiles (the accumulators of two would not fit the registers).
pub fn prefill_mma_shape(head_size: u32) -> (u32, u32) {
    let warps = PREFILL_MMA_THREADS / 32;
    if head_size > 128 { (16 * warps, 32) } else { (32 * warps, 64) }
}

/// Bytes of dynamic shared memory of one tensor-core prefill work-group. Mirrors `PfSmem` in
/// `kernels/prefill.hip` region by region (the launcher refuses a plan whose size differs).
pub fn prefill_mma_shared_mem_bytes(head_size: u32) -> u64 {
    const PAD: u64 = 8; // elements after each staged row
    const WARPS: u64 = PREFILL_MMA_THREADS as u64 / 32;
    let (rows, tile) = prefill_mma_shape(head_size);
    let (d, rows, tile) = (head_size as u64, rows as u64, tile as u64);
    // CTA words, each warp's 4 visible-range bounds, and per row its max, sum, range, position
    // and slope.
    let info = 16 * 4 + WARPS * 4 * 4 + 6 * rows * 4;
    let q = rows * (d + PAD) * 2;
    let k_stage = tile * (d + PAD) * 2;
    // Values as [key][dim] (dims adjacent in the cache) or transposed [dim][key] (slots adjacent).
    let v_stage = (tile * (d + PAD)).max(d * (tile + PAD)) * 2;
    info + q + 2 * (k_stage + v_stage)
}

/// Which decode kernel serves a batch (`kernels/decode.hip`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeKernel {
    /// `paged_decode_kernel`: FMA products, any wave size.
    Fma,
    /// `paged_decode_mma_kernel`: tensor cores (f16/bf16 caches of the query's dtype, or
    /// e4m3fn codes converted to f16 in registers).
    TensorCores,
}

/// Threads of one decode work-group of the chosen kernel.
pub fn decode_threads(head_size: u32, kernel: DecodeKernel) -> u32 {
    match kernel {
        DecodeKernel::TensorCores if head_size <= 128 => DECODE_MMA_THREADS_SMALL,
        DecodeKernel::TensorCores => DECODE_MMA_THREADS_LARGE,
        DecodeKernel::Fma => DECODE_THREADS,
    }
}

/// Decode work-groups resident per compute unit. NVIDIA: the register caps of the kernels'
/// launch bounds (`DEC_MIN_BLOCKS_*`, `MMA_MIN_BLOCKS_*` in kernels/decode.hip), or fewer when
/// shared memory binds first (the opt-in limit of one work-group is what an SM holds, less the
/// runtime's reservation per work-group); elsewhere the tuning table's estimate.
fn decode_resident_per_cu(
    limits: &DeviceLimits,
    tuning: &Tuning,
    head_size: u32,
    kernel: DecodeKernel,
    shared_mem_bytes: u64,
) -> u32 {
    if !limits.arch.starts_with("sm_") {
        return tuning.decode_ctas_per_cu.max(1);
    }
    let per_cta = shared_mem_bytes + NVIDIA_RESERVED_SMEM_PER_CTA;
    let sm_bytes = limits.shared_mem_per_block_optin.max(limits.shared_mem_per_block);
    let by_smem = (sm_bytes / per_cta).clamp(1, NVIDIA_MAX_CTAS_PER_SM) as u32;
    match (kernel, head_size <= 128) {
        (DecodeKernel::TensorCores, true) => by_smem.min(4),
        (DecodeKernel::TensorCores, false) => by_smem.min(2),
        (DecodeKernel::Fma, true) => by_smem.min(4),
        (DecodeKernel::Fma, false) => by_smem.min(3),
    }
}
/// Most sequences a longest-first decode grid ranks (every work-group ranks them all in shared
/// memory: `DECODE_ORDER_MAX_SEQS` in kernels/decode.hip).
pub(crate) const DECODE_ORDER_MAX_SEQS: i64 = 256;
/// A decode split walks at least this many keys of the longest possible context, so that a
/// split's fixed costs (setup, merge, reduce) stay small against its streaming.
pub(crate) const DECODE_MIN_KEYS_PER_SPLIT: u64 = 256;
/// A decode split walks at most about this many keys of the longest possible context: a
/// batch's lengths are unknown to the plan (graph-safe), and one work-group streaming a whole
/// long context while its neighbours finish short ones would set the batch's time (mixed
/// lengths). Splits of a sequence share its keys equally, so no work-group walks more.
pub(crate) const DECODE_MAX_KEYS_PER_SPLIT: u64 = 6144;
/// Most decode splits one split reduce serves (`REDUCE_MAX_SPLITS` in kernels/decode.hip: its
/// threads each load at most 4 splits, 32 lanes per chunk). The tuning rows ask for fewer.
pub(crate) const DECODE_MAX_SPLITS: u64 = 128;

/// Shared memory of the decode kernel instance serving `head_size` on waves of `wave_size`:
/// the `__shared__` arrays of `paged_decode_kernel` (FMA), or those of `paged_decode_mma_kernel`
/// (tensor cores) plus its dynamic value stage, whose chunks are 8 slots of one dim: 16 bytes,
/// 8 for an fp8 cache (instances for head sizes up to 128 and up to 256). Mirrors
/// `kernels/decode.hip`: change both together.
pub fn decode_shared_mem_bytes(head_size: u32, wave_size: u32, kernel: DecodeKernel, fp8_cache: bool) -> u64 {
    let max_d: u64 = if head_size <= 128 { 128 } else { 256 };
    if kernel == DecodeKernel::TensorCores {
        // Warps of 32; 32-key wave tiles.
        let waves = (decode_threads(head_size, kernel) / 32) as u64;
        let (tile, heads) = (32u64, DECODE_MMA_HEADS as u64);
        let queries = heads * (max_d + 8) * 2; // s_q: 16-bit queries, rows padded by 16 bytes
        let query_scales = heads * 4; // s_qmul
        let offsets = 2 * waves * tile * 8; // s_kofs, s_vofs: i64 per slot
        let probs = 2 * waves * heads * tile * 2; // s_pb: 16-bit probabilities, hi and lo parts
        let partials = waves * heads * max_d * 4; // s_acc
        let stats = waves * heads * 2 * 4; // s_ml
        let chunk = if fp8_cache { 8 } else { 16 };
        let value_stage = waves * 2 * (max_d / 16) * 32 * chunk; // dynamic: one tile's value chunks
        return queries + query_scales + offsets + probs + partials + stats + value_stage;
    }
    let (waves, wave, hpc) =
        ((DECODE_THREADS / wave_size.max(1)) as u64, wave_size as u64, DECODE_HEADS_PER_CTA as u64);
    let queries = hpc * max_d * 4; // s_q: f32 queries
    let probs = waves * hpc * wave * 4; // s_p: one wave tile's probabilities per wave
    let value_offsets = waves * wave * 8; // s_vofs: i64 per slot of the wave tile
    let partials = waves * hpc * max_d * 4; // s_acc: per-wave accumulators for the merge
    let stats = waves * hpc * 2 * 4; // s_ml: per-wave (max, sum)
    queries + probs + value_offsets + partials + stats
}

/// How the query heads of one kv head are spread over work-groups: `(heads_per_cta,
/// head_groups)`. All of them share one K/V staging while the GQA ratio fits the row budget;
/// larger ratios take `head_groups` work-groups per kv head.
pub fn attention_head_split(gqa_ratio: u32) -> (u32, u32) {
    let heads = gqa_ratio.clamp(1, KERNEL_MAX_ROWS);
    (heads, gqa_ratio.max(1).div_ceil(heads))
}

/// Bytes of dynamic shared memory the attention kernel needs for one work-group. Mirrors
/// `smem_layout` in `kernels/attention.hip` region by region: change both together.
/// Staging is f32 whatever the query and cache dtypes (fp8 is dequantised once, on the way
/// in), so the dtype does not change the size.
pub fn attention_shared_mem_bytes(tile: u32, rows: u32, head_size: u32, _query_dtype: DType) -> u64 {
    const PARAM_BYTES: u64 = 512; // the launch arguments' copy (read from LDS on AMD)
    const ROW_STAT_BYTES: u64 = 16 * KERNEL_MAX_ROWS as u64 * 4; // per-row softmax state and CTA info
    const FP8_TABLE_BYTES: u64 = 256 * 4; // fp8 decode table
    const KEY_PAD: u64 = 4; // floats padding each staged key row
    let (t, r, d) = (tile as u64, rows as u64, head_size as u64);
    let key_offsets = 2 * 8 * t; // per staged key: its K and V cache offsets (i64)
    let floats = r * d + t * (d + KEY_PAD) + d * t + r * t; // q, K, V^T, scores
    PARAM_BYTES + key_offsets + ROW_STAT_BYTES + FP8_TABLE_BYTES + 4 * floats
}

/// Bytes of split-KV scratch per (token, query head, split): the unnormalised accumulator
/// plus the running max and sum, all f32.
pub fn split_partial_bytes(head_size: i64) -> u64 {
    (head_size as u64 + 2) * 4
}

pub fn plan_attention(p: &AttentionProblem, target: &Target) -> Result<Plan> {
    match target {
        Target::Cpu => Ok(Plan {
            path: AttentionPath::CpuReference,
            tile_size: 1,
            block_q: 1,
            num_splits: 1,
            threads: 1,
            num_q_blocks: p.num_seqs.max(0) as u32,
            shared_mem_bytes: 0,
            workspace_bytes: 0,
            reason: Reason::Cpu { block_size: p.geometry.block_size },
            general: GeneralPlan {
                kernel: GeneralKernel::Fma,
                tile_size: 1,
                block_q: 1,
                heads_per_cta: 1,
                head_groups: 1,
                num_splits: 1,
                num_q_blocks: p.num_seqs.max(0) as u32,
                shared_mem_bytes: 0,
                workspace_bytes: 0,
            },
            decode: None,
        }),
        Target::Gpu(limits) => plan_gpu(p, limits, tuning_for(&limits.arch)),
    }
}

fn plan_gpu(p: &AttentionProblem, limits: &DeviceLimits, tuning: &Tuning) -> Result<Plan> {
    let g = p.gqa_ratio() as u32;
    let d = p.head_size as u32;
    let hard_limit = limits.shared_mem_per_block_optin.max(limits.shared_mem_per_block);
    let bs = p.geometry.block_size as u32;
    let decode = decode_kernel_shape(p, limits);
    // A decode-shaped batch (no more tokens than sequences) is carried by the decode kernel:
    // the general kernel then only meets the rare longer sequence of such a batch, in a single
    // pass, so that its grid stays small (its work-groups of decode rows exit at once).
    // Decode-shaped: every row is a one-token query (or padding past the last sequence's), so
    // the decode kernel carries the batch: at most one row per sequence, or the caller's bound.
    let decode_shaped = (p.num_tokens <= p.num_seqs || p.max_query_len == 1) && decode.is_some();
    let general_kernel =
        if !decode_shaped && prefill_mma_fits(p, limits) { GeneralKernel::TensorCores } else { GeneralKernel::Fma };
    let (heads_per_cta, head_groups, block_q, tile, smem, threads) = match general_kernel {
        GeneralKernel::TensorCores => {
            // Rows of one work-group: every query head of a kv head (up to the row count) for as
            // many tokens as the rows leave.
            let (rows, tile) = prefill_mma_shape(d);
            let heads = g.clamp(1, rows);
            (heads, g.max(1).div_ceil(heads), rows / heads, tile, prefill_mma_shared_mem_bytes(d), PREFILL_MMA_THREADS)
        }
        GeneralKernel::Fma => {
            let (heads_per_cta, head_groups) = attention_head_split(g);
            // Rows of one work-group: `heads_per_cta` q heads of one kv head for `block_q` tokens.
            // A batch with no more tokens than sequences is decode-shaped: one token per
            // work-group, so that no rows are computed for tokens that do not exist (a shape,
            // not a length).
            let row_budget = tuning.rows_per_cta.clamp(1, KERNEL_MAX_ROWS);
            let block_q = if p.num_tokens <= p.num_seqs { 1 } else { (row_budget / heads_per_cta).max(1) };
            let rows = block_q * heads_per_cta;
            let budget =
                hard_limit.min(tuning.preferred_shared_mem as u64).max(limits.shared_mem_per_block.min(hard_limit));
            let min_tile = tuning.min_tile.clamp(KERNEL_MIN_TILE, KERNEL_MAX_TILE);
            let mut tile = tuning.max_tile.clamp(min_tile, KERNEL_MAX_TILE);
            let mut smem = attention_shared_mem_bytes(tile, rows, d, p.query.dtype);
            while smem > budget && tile > min_tile {
                tile /= 2;
                smem = attention_shared_mem_bytes(tile, rows, d, p.query.dtype);
            }
            if smem > hard_limit {
                fail!(
                    Status::SharedMemoryExceeded,
                    "no attention tile fits: tile {tile} with {rows} rows of head_size {d} needs {smem} bytes of \
                     shared memory, the device ({}) allows {hard_limit}",
                    limits.arch
                );
            }
            (heads_per_cta, head_groups, block_q, tile, smem, KERNEL_THREADS)
        }
    };
    // Graph-safe grid: an upper bound of q-blocks from the token and sequence counts.
    let num_q_blocks = (p.num_tokens as u64 / block_q as u64 + p.num_seqs as u64).max(1);
    let ctas = num_q_blocks * p.num_kv_heads as u64 * head_groups as u64;
    let target_ctas = limits.multiprocessor_count as u64 * tuning.target_ctas_per_cu as u64;
    let max_tiles = ((p.max_context_bound() as u64).div_ceil(tile as u64)).max(1);
    let wanted = target_ctas.div_ceil(ctas.max(1));
    let mut num_splits = wanted.min(tuning.max_splits as u64).min(max_tiles).max(1) as u32;
    if decode_shaped {
        num_splits = 1;
    }
    let general_workspace = if num_splits > 1 {
        p.num_tokens as u64 * p.num_q_heads as u64 * num_splits as u64 * split_partial_bytes(p.head_size)
    } else {
        0
    };
    let general = GeneralPlan {
        kernel: general_kernel,
        tile_size: tile,
        block_q,
        heads_per_cta,
        head_groups,
        num_splits,
        num_q_blocks: num_q_blocks.min(u32::MAX as u64) as u32,
        shared_mem_bytes: smem,
        workspace_bytes: general_workspace,
    };

    let decode_slots = decode.map_or(0, |(_, _, smem, kernel)| {
        limits.multiprocessor_count as u64 * decode_resident_per_cu(limits, tuning, d, kernel, smem) as u64
    });
    let decode = decode.map(|(heads_per_cta, head_groups, shared_mem_bytes, kernel)| {
        let base = p.num_seqs as u64 * p.num_kv_heads as u64 * head_groups as u64;
        // Every split of every (sequence, kv head, head group) streams about the same bytes, so
        // work-groups finish in waves: the split count keeps the grid within one wave of
        // resident work-groups (as many splits as fit), or leaves it at one split when the
        // batch alone is more than a wave. Shape-only, and never growing with the batch. Each
        // split walks a useful stretch of the longest context, and long tables get enough
        // splits that no work-group walks more than DECODE_MAX_KEYS_PER_SPLIT keys.
        // More splits than fill one wave are rounded up to whole waves (a wave and a half
        // of equal work-groups would take two).
        let fill = if base <= decode_slots { decode_slots / base.max(1) } else { 1 }.max(1);
        let for_length = (p.max_context_bound() as u64).div_ceil(DECODE_MAX_KEYS_PER_SPLIT);
        let wanted = if for_length > fill { for_length.div_ceil(fill) * fill } else { fill };
        let by_length = (p.max_context_bound() as u64).div_ceil(DECODE_MIN_KEYS_PER_SPLIT).max(1);
        let mut splits = wanted.min(tuning.max_splits as u64).min(DECODE_MAX_SPLITS).min(by_length).max(1) as u32;
        if !decode_shaped {
            // Decode rows of a prefill-carried batch: no more splits than the general kernel.
            splits = splits.min(num_splits);
        }
        let workspace_offset = general_workspace.next_multiple_of(DECODE_WORKSPACE_ALIGN);
        let workspace_bytes = if splits > 1 {
            p.num_seqs as u64 * p.num_q_heads as u64 * splits as u64 * split_partial_bytes(p.head_size)
        } else {
            0
        };
        // Longest first when work-groups start in more than one wave (a single wave starts
        // all at once, where order cannot matter) and the batch is small enough to rank.
        let longest_first = (2..=DECODE_ORDER_MAX_SEQS).contains(&p.num_seqs) && base * splits as u64 > decode_slots;
        DecodePlan {
            num_splits: splits,
            heads_per_cta,
            head_groups,
            shared_mem_bytes,
            workspace_offset,
            workspace_bytes,
            kernel,
            longest_first,
            overlap_next: cuda_sm(&limits.arch).is_some_and(|v| v >= 90),
            covers_all: p.max_query_len == 1,
        }
    });
    let workspace_bytes = match decode {
        Some(d) if d.workspace_bytes > 0 => d.workspace_offset + d.workspace_bytes,
        _ => general_workspace,
    };
    if decode_shaped {
        let d = decode.expect("decode-shaped implies a decode plan");
        let d_size = p.head_size as u32;
        return Ok(Plan {
            path: if d.num_splits > 1 { AttentionPath::GpuSplitKv } else { AttentionPath::GpuSinglePass },
            // Keys one work-group walks per iteration: one per thread (each wave its own tile).
            tile_size: decode_threads(d_size, d.kernel),
            block_q: 1,
            num_splits: d.num_splits,
            threads: decode_threads(d_size, d.kernel),
            num_q_blocks: p.num_seqs.clamp(1, u32::MAX as i64) as u32,
            shared_mem_bytes: d.shared_mem_bytes,
            workspace_bytes,
            reason: Reason::Decode {
                block_size: bs,
                shared_mem: d.shared_mem_bytes,
                limit: if d.tensor_cores() { limits.shared_mem_per_block_optin } else { limits.shared_mem_per_block },
                ctas: p.num_seqs as u64 * p.num_kv_heads as u64 * d.head_groups as u64,
                target_ctas: decode_slots,
                cus: limits.multiprocessor_count,
                table_width: p.max_blocks_per_seq,
                heads_per_cta: d.heads_per_cta,
                head_groups: d.head_groups,
                kernel: d.kernel,
                tile: decode_threads(d_size, d.kernel),
                longest_first: d.longest_first,
                covers_all: d.covers_all,
            },
            general,
            decode,
        });
    }
    Ok(Plan {
        path: if num_splits > 1 { AttentionPath::GpuSplitKv } else { AttentionPath::GpuSinglePass },
        tile_size: tile,
        block_q,
        num_splits,
        threads,
        num_q_blocks: general.num_q_blocks,
        shared_mem_bytes: smem,
        workspace_bytes,
        reason: Reason::Gpu {
            block_size: bs,
            tile,
            shared_mem: smem,
            limit: hard_limit,
            ctas,
            target_ctas,
            cus: limits.multiprocessor_count,
            table_width: p.max_blocks_per_seq,
            decode_splits: decode.map_or(0, |d| d.num_splits),
            kernel: general_kernel,
        },
        general,
        decode,
    })
}

/// The compute capability of an NVIDIA architecture name as one number ("sm_90a" -> 90); None
/// for other vendors' names.
fn cuda_sm(arch: &str) -> Option<u32> {
    arch.strip_prefix("sm_").and_then(|v| v.trim_end_matches(|c: char| !c.is_ascii_digit()).parse::<u32>().ok())
}

/// Whether the tensor-core prefill kernel can serve this problem's general rows on this device:
/// NVIDIA sm_80 and later (mma.sync m16n8k16 in f16 and bf16, 32-lane warps), f16/bf16 queries
/// over a cache of the same dtype or (sm_89 and later, whose hardware widens OCP fp8 pairs to
/// f16 exactly) of e4m3fn or e5m2 codes, an output that is not fp8 (its 16-bit probabilities
/// could move an fp8 rounding decision by more than a code), a head size with an instance
/// (multiples of 16, the k of the score products: 64 to 128, 192 and 256), and its shared memory
/// within the opt-in limit.
fn prefill_mma_fits(p: &AttentionProblem, limits: &DeviceLimits) -> bool {
    let d = p.head_size as u32;
    let sm = cuda_sm(&limits.arch);
    let cache_ok = match p.kv_quant {
        None => p.geometry.dtype == p.query.dtype,
        Some(Fp8Format::E4M3FN | Fp8Format::E5M2) => sm.is_some_and(|v| v >= 89),
        Some(Fp8Format::E4M3FNUZ) => false,
    };
    sm.is_some_and(|v| v >= 80)
        && limits.wave_size == 32
        && matches!(p.query.dtype, DType::F16 | DType::BF16)
        && cache_ok
        && p.out_quant.is_none()
        && PREFILL_MMA_HEADS.contains(&d)
        && prefill_mma_shared_mem_bytes(d) <= limits.shared_mem_per_block_optin.max(limits.shared_mem_per_block)
}

/// Byte alignment of the decode kernel's partials inside the workspace (16-byte vector stores).
const DECODE_WORKSPACE_ALIGN: u64 = 256;

/// Whether the decode kernel can run on this device, and its shape: `(heads_per_cta,
/// head_groups, shared_mem_bytes)`. Its shared memory is static, so it must fit the limit a
/// work-group gets without opting in; its work-groups must be whole waves.
fn decode_kernel_shape(p: &AttentionProblem, limits: &DeviceLimits) -> Option<(u32, u32, u64, DecodeKernel)> {
    // NVIDIA only for now: AMD builds of the kernel do not yet fit the register files without
    // spilling (kernels/decode.hip, pkv_kernel_paged_decode); the general kernel serves there.
    if !limits.arch.starts_with("sm_") {
        return None;
    }
    let wave = limits.wave_size;
    if wave == 0 || DECODE_THREADS % wave != 0 {
        return None;
    }
    // Tensor cores: NVIDIA sm_80 and later (mma.sync m16n8k16 in f16 and bf16), f16/bf16
    // queries, slots adjacent in the value layout (8 slots of one dim are one operand row
    // segment), and a cache of the query's dtype or (sm_89 and later, whose hardware converts
    // OCP fp8 pairs to f16 exactly) e4m3fn codes.
    let sm = cuda_sm(&limits.arch);
    let cache_ok = match p.kv_quant {
        None => true,
        // One fp8 format per kernel instance (a run-time format would convert both ways);
        // e5m2 and fnuz caches take the FMA variant.
        Some(Fp8Format::E4M3FN) => sm.is_some_and(|v| v >= 89),
        Some(Fp8Format::E5M2 | Fp8Format::E4M3FNUZ) => false,
    };
    let tensor_cores = sm.is_some_and(|v| v >= 80)
        && wave == 32
        && matches!(p.query.dtype, DType::F16 | DType::BF16)
        && cache_ok
        && p.geometry.value.tok == 1;
    let kernel = if tensor_cores { DecodeKernel::TensorCores } else { DecodeKernel::Fma };
    // The tensor-core kernel's value stage is dynamic shared memory, opted in above the default
    // limit at launch; the FMA kernel's is static.
    let optin = limits.shared_mem_per_block_optin.max(limits.shared_mem_per_block);
    let smem = decode_shared_mem_bytes(p.head_size as u32, wave, kernel, p.kv_quant.is_some());
    let smem_limit = if tensor_cores { optin } else { limits.shared_mem_per_block };
    if smem > smem_limit {
        return None;
    }
    let g = (p.gqa_ratio() as u32).max(1);
    let heads_per_cta = g.min(if tensor_cores { DECODE_MMA_HEADS } else { DECODE_HEADS_PER_CTA });
    let head_groups = g.div_ceil(heads_per_cta);
    // Grid y = num_kv_heads * head_groups (and the reduce's num_q_heads) must stay within the
    // launch limit.
    if p.num_kv_heads as u64 * head_groups as u64 > 65_535 || p.num_q_heads > 65_535 {
        return None;
    }
    Some((heads_per_cta, head_groups, smem, kernel))
}
