//! Attention planning: which path, compute tile, split count, shared memory and workspace a
//! call takes, and why. Pure and cheap (it runs on every call); every input is shape data
//! fixed for a captured graph, never a sequence length read from the device.

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
    pub workspace_bytes: u64,
    /// The numbers behind the choice; turned into words only when asked (`Reason::describe`),
    /// so that a launch pays no formatting.
    pub reason: Reason,
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
    },
}

impl Reason {
    pub fn describe(&self, arch: &str, num_splits: u32) -> String {
        match *self {
            Reason::Cpu { block_size } => format!(
                "host tensors: CPU reference backend, one key at a time with per-token block addressing \
                 (block_size {block_size} any)"
            ),
            Reason::Gpu { block_size: bs, tile, shared_mem, limit, ctas, target_ctas, cus, table_width } => {
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
                format!("{tile_reason}; {shared_mem} B shared memory of {limit} B allowed on {arch}; {split_reason}")
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
        }),
        Target::Gpu(limits) => plan_gpu(p, limits, tuning_for(&limits.arch)),
    }
}

fn plan_gpu(p: &AttentionProblem, limits: &DeviceLimits, tuning: &Tuning) -> Result<Plan> {
    let g = p.gqa_ratio() as u32;
    let d = p.head_size as u32;
    let (heads_per_cta, head_groups) = attention_head_split(g);
    // Rows of one work-group: `heads_per_cta` q heads of one kv head for `block_q` tokens.
    // A batch with no more tokens than sequences is decode-shaped: one token per work-group,
    // so that no rows are computed for tokens that do not exist (a shape, not a length).
    let row_budget = tuning.rows_per_cta.clamp(1, KERNEL_MAX_ROWS);
    let block_q = if p.num_tokens <= p.num_seqs { 1 } else { (row_budget / heads_per_cta).max(1) };
    let rows = block_q * heads_per_cta;
    let hard_limit = limits.shared_mem_per_block_optin.max(limits.shared_mem_per_block);
    let budget = hard_limit.min(tuning.preferred_shared_mem as u64).max(limits.shared_mem_per_block.min(hard_limit));
    let bs = p.geometry.block_size as u32;
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
            "no attention tile fits: tile {tile} with {rows} rows of head_size {d} needs {smem} bytes of shared \
             memory, the device ({}) allows {hard_limit}",
            limits.arch
        );
    }
    // Graph-safe grid: an upper bound of q-blocks from the token and sequence counts.
    let num_q_blocks = (p.num_tokens as u64 / block_q as u64 + p.num_seqs as u64).max(1);
    let ctas = num_q_blocks * p.num_kv_heads as u64 * head_groups as u64;
    let target_ctas = limits.multiprocessor_count as u64 * tuning.target_ctas_per_cu as u64;
    let max_tiles = ((p.max_context_bound() as u64).div_ceil(tile as u64)).max(1);
    let wanted = target_ctas.div_ceil(ctas.max(1));
    let num_splits = wanted.min(tuning.max_splits as u64).min(max_tiles).max(1) as u32;
    let workspace_bytes = if num_splits > 1 {
        p.num_tokens as u64 * p.num_q_heads as u64 * num_splits as u64 * split_partial_bytes(p.head_size)
    } else {
        0
    };
    Ok(Plan {
        path: if num_splits > 1 { AttentionPath::GpuSplitKv } else { AttentionPath::GpuSinglePass },
        tile_size: tile,
        block_q,
        num_splits,
        threads: KERNEL_THREADS,
        num_q_blocks: num_q_blocks.min(u32::MAX as u64) as u32,
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
        },
    })
}
