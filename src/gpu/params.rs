//! Kernel launch arguments: `#[repr(C)]` mirrors of `kernels/pkv_params.h` (both sides assert
//! the sizes), filled from validated problems. Safe code: this is where the host proves the
//! access shapes (contiguity, alignment, 32-bit strides) that let the kernels use wide loads,
//! so that a kernel never has to check them.

use std::mem::size_of;

use crate::core::attention::AttentionProblem;
use crate::core::dtype::{DType, Fp8Format, KvLayout};
use crate::core::layout::{CacheGeometry, KeyAddressing, ValueAddressing};
use crate::core::plan::{GeneralKernel, Plan};
use crate::core::status::{Error, Result, Status};
use crate::core::tensor::TensorDesc;
use crate::core::write::{WritePath, WriteProblem};

/// pkv dtype codes the kernels dispatch on (`PKV_DT_*`).
const DT_F32: i32 = 1;
const DT_F16: i32 = 2;
const DT_BF16: i32 = 3;

/// `PKV_V_ALONG_D` / `PKV_V_ALONG_TOKENS`.
const V_ALONG_D: i32 = 0;
const V_ALONG_TOKENS: i32 = 1;

/// Elements the kernels move as one unit along head_size (`CHUNK`).
const CHUNK: i64 = 8;
/// Widest single access the kernels issue.
const MAX_ACCESS_BYTES: i64 = 16;
/// Tokens per tile of the cache writer (`TILE_TOKENS` in kernels/write_kv.hip).
const WRITE_TILE_TOKENS: i64 = 16;

/// `pkv_cache_addr`: element (b, h, d, o) at
/// `b*blk + h*head + (d >> x_shift)*dhi + o*tok + (d & (2^x_shift - 1))*dlo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheAddr {
    pub(crate) blk: i32,
    pub(crate) head: i32,
    pub(crate) dhi: i32,
    pub(crate) tok: i32,
    pub(crate) dlo: i32,
    pub(crate) x_shift: i32,
}

/// `pkv_write_params`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriteParams {
    pub(crate) key: usize,
    pub(crate) value: usize,
    pub(crate) slot_mapping: usize,
    pub(crate) key_cache: usize,
    pub(crate) value_cache: usize,
    pub(crate) k_scale: usize,
    pub(crate) v_scale: usize,
    pub(crate) key_strides: [i64; 3],
    pub(crate) value_strides: [i64; 3],
    pub(crate) slot_stride: i64,
    pub(crate) key_addr: CacheAddr,
    pub(crate) value_addr: CacheAddr,
    pub(crate) num_tokens: i64,
    pub(crate) num_slots: i64,
    pub(crate) num_kv_heads: i32,
    pub(crate) head_size: i32,
    pub(crate) block_size: i32,
    pub(crate) src_dtype: i32,
    pub(crate) fp8_format: i32,
    pub(crate) packed: i32,
    pub(crate) key_src_contig: i32,
    pub(crate) value_src_contig: i32,
    pub(crate) key_run: i32,
    pub(crate) value_run: i32,
    pub(crate) value_vec: i32,
    pub(crate) work_items: i32,
}

/// `pkv_attention_params`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttentionParams {
    pub(crate) query: usize,
    pub(crate) output: usize,
    pub(crate) key_cache: usize,
    pub(crate) value_cache: usize,
    pub(crate) block_table: usize,
    pub(crate) seq_lens: usize,
    pub(crate) query_start_loc: usize,
    pub(crate) k_scale: usize,
    pub(crate) v_scale: usize,
    pub(crate) output_scale: usize,
    pub(crate) alibi_slopes: usize,
    pub(crate) sinks: usize,
    pub(crate) workspace: usize,
    pub(crate) query_strides: [i64; 3],
    pub(crate) output_strides: [i64; 3],
    pub(crate) block_table_strides: [i64; 2],
    pub(crate) seq_lens_stride: i64,
    pub(crate) query_start_loc_stride: i64,
    pub(crate) alibi_stride: i64,
    pub(crate) sinks_stride: i64,
    pub(crate) key_addr: CacheAddr,
    pub(crate) value_addr: CacheAddr,
    pub(crate) num_tokens: i64,
    pub(crate) num_blocks: i64,
    pub(crate) num_seqs: i32,
    pub(crate) num_q_heads: i32,
    pub(crate) num_kv_heads: i32,
    pub(crate) head_size: i32,
    pub(crate) block_size: i32,
    pub(crate) max_blocks_per_seq: i32,
    pub(crate) query_dtype: i32,
    pub(crate) kv_fp8: i32,
    pub(crate) out_fp8: i32,
    pub(crate) sliding_window: i32,
    pub(crate) causal: i32,
    pub(crate) sm_scale: f32,
    pub(crate) logits_soft_cap: f32,
    pub(crate) tile: i32,
    pub(crate) block_q: i32,
    pub(crate) heads_per_cta: i32,
    pub(crate) head_groups: i32,
    pub(crate) num_q_blocks: i32,
    pub(crate) num_splits: i32,
    pub(crate) shared_mem_bytes: i32,
    pub(crate) query_contig: i32,
    pub(crate) output_contig: i32,
    pub(crate) key_run: i32,
    pub(crate) key_token_fastest: i32,
    pub(crate) value_mode: i32,
    pub(crate) value_run: i32,
    pub(crate) decode_workspace: usize,
    pub(crate) decode_kernel: i32,
    pub(crate) decode_splits: i32,
    pub(crate) decode_heads_per_cta: i32,
    pub(crate) decode_head_groups: i32,
    pub(crate) decode_mma: i32,
    pub(crate) key_wide: i32,
    pub(crate) decode_order: i32,
    pub(crate) key_fast: i32,
    pub(crate) overlap_after_decode: i32,
    pub(crate) decode_covers_all: i32,
    pub(crate) general_mma: i32,
}

// The C side asserts the same numbers (kernels/pkv_params.h).
const _: () = assert!(size_of::<CacheAddr>() == 24);
const _: () = assert!(size_of::<WriteParams>() == 56 + 56 + 48 + 16 + 48);
// (The last row: decode_workspace and eleven 32-bit fields, padded to 8 bytes.)
const _: () = assert!(size_of::<AttentionParams>() == 104 + 96 + 48 + 16 + 104 + 56);

fn unsupported(msg: String) -> Error {
    Error::new(Status::UnsupportedConfiguration, msg)
}

/// A value the kernels hold in 32 bits (strides, counts).
fn fits_i32(v: i64, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        unsupported(format!("{what} = {v} exceeds 2^31 - 1, the GPU kernels' 32-bit limit for this quantity"))
    })
}

fn dtype_code(d: DType) -> i32 {
    match d {
        DType::F32 => DT_F32,
        DType::F16 => DT_F16,
        _ => DT_BF16,
    }
}

fn fp8_code(f: Option<Fp8Format>) -> i32 {
    match f {
        None => 0,
        Some(Fp8Format::E4M3FN) => 1,
        Some(Fp8Format::E4M3FNUZ) => 2,
        Some(Fp8Format::E5M2) => 3,
    }
}

fn key_addr(k: &KeyAddressing, name: &str) -> Result<CacheAddr> {
    debug_assert!(k.x > 0 && (k.x & (k.x - 1)) == 0, "x is a power of two");
    Ok(CacheAddr {
        blk: fits_i32(k.blk, &format!("{name}.strides (block)"))?,
        head: fits_i32(k.head, &format!("{name}.strides (head)"))?,
        dhi: fits_i32(k.dhi, &format!("{name}.strides (head_size)"))?,
        tok: fits_i32(k.tok, &format!("{name}.strides (slot)"))?,
        dlo: fits_i32(k.dlo, &format!("{name}.strides (x)"))?,
        x_shift: k.x.trailing_zeros() as i32,
    })
}

fn value_addr(v: &ValueAddressing, name: &str) -> Result<CacheAddr> {
    key_addr(&KeyAddressing { blk: v.blk, head: v.head, dhi: v.dim, tok: v.tok, dlo: 0, x: 1 }, name)
}

fn all_aligned(values: &[i64], align: i64) -> bool {
    values.iter().all(|v| v.rem_euclid(align) == 0)
}

/// Destination/source elements contiguous along head_size in one 8-element unit (8, 4 or 1),
/// downgraded to 1 unless every run start is aligned for one access of its size.
fn run_along_d(a: &CacheAddr, base: usize, itemsize: i64) -> i32 {
    let contiguous = if a.x_shift == 0 {
        if a.dhi == 1 { 8 } else { 1 }
    } else if a.dlo == 1 {
        (1i64 << a.x_shift).min(CHUNK)
    } else {
        1
    };
    if contiguous == 1 {
        return 1;
    }
    let align = (contiguous * itemsize).min(MAX_ACCESS_BYTES);
    let mut terms = vec![base as i64, a.blk as i64 * itemsize, a.head as i64 * itemsize, a.tok as i64 * itemsize];
    if a.x_shift > 0 {
        terms.push(a.dhi as i64 * itemsize);
    }
    if all_aligned(&terms, align) { contiguous as i32 } else { 1 }
}

/// 16 bytes of one cached key along head_size (16 elements of a 1-byte cache) are one aligned
/// access: the fp8 decode kernel then loads a lane's 16 codes at once (two 8-byte halves
/// otherwise). Dims contiguous (`dhi == 1`) or x-groups of at least 16 elements, and every
/// start of such a run 16-byte aligned.
fn wide_key_access(a: &CacheAddr, base: usize, itemsize: i64) -> bool {
    const WIDE: i64 = 16;
    let contiguous = if a.x_shift == 0 { a.dhi == 1 } else { a.dlo == 1 && (1i64 << a.x_shift) >= WIDE };
    let mut terms = vec![base as i64, a.blk as i64, a.head as i64, a.tok as i64];
    if a.x_shift > 0 {
        terms.push(a.dhi as i64);
    }
    itemsize == 1 && contiguous && all_aligned(&terms, WIDE)
}

/// The decode tensor-core kernel may take its run-folded twin (`kFast` in kernels/decode.hip):
/// a lane's key chunk (16 bytes: 8 elements, or 16 fp8 codes) is one aligned access
/// (`key_run` of 8, or `key_wide` for 1-byte caches, as computed for the same keys), every
/// chunk below head_size is whole, and chunk `b` of a lane sits `b` times one fixed distance
/// from its first (x-groups that divide four chunks, or one x-group spanning the head).
fn fast_key_chunks(a: &CacheAddr, head_size: i64, itemsize: i64, key_run: i32, key_wide: bool) -> bool {
    let chunk = if itemsize == 1 { 16 } else { CHUNK };
    let whole_runs = if itemsize == 1 { key_wide } else { key_run == CHUNK as i32 };
    let x = 1i64 << a.x_shift;
    whole_runs && head_size % chunk == 0 && ((4 * chunk) % x == 0 || x >= head_size)
}

/// Neighbouring threads should take neighbouring tokens when the token stride is small.
fn token_fastest(a: &CacheAddr, itemsize: i64) -> i32 {
    (a.tok as i64 * itemsize <= MAX_ACCESS_BYTES) as i32
}

/// The writer may store 8 consecutive slots of one dim as one access: the value layout keeps
/// slots adjacent (split values `[.., head_size, block_size]`; not when dims are adjacent too,
/// block size 1) and every run start that is 8-aligned within its block is aligned for it.
fn value_token_vectors(a: &CacheAddr, base: usize, block_size: i64, itemsize: i64) -> bool {
    let align = (CHUNK * itemsize).min(MAX_ACCESS_BYTES);
    a.x_shift == 0
        && a.tok == 1
        && a.dhi != 1
        && block_size >= CHUNK
        && all_aligned(
            &[base as i64, a.blk as i64 * itemsize, a.head as i64 * itemsize, a.dhi as i64 * itemsize],
            align,
        )
}

/// 8 elements along the last dim of a `[rows, heads, head_size]` tensor are one aligned access.
fn rows_contiguous(t: &TensorDesc) -> bool {
    let es = t.dtype.size_bytes() as i64;
    let align = (CHUNK * es).min(MAX_ACCESS_BYTES);
    t.strides[2] == 1 && all_aligned(&[t.addr as i64, t.strides[0] * es, t.strides[1] * es], align)
}

fn cache_itemsize(g: &CacheGeometry) -> i64 {
    g.dtype.size_bytes() as i64
}

pub(crate) fn write_params(p: &WriteProblem) -> Result<WriteParams> {
    let g = &p.geometry;
    let es = cache_itemsize(g);
    let ka = key_addr(&g.key, "key_cache")?;
    let va = value_addr(&g.value, "value_cache")?;
    let packed = p.path == WritePath::Native;
    if packed {
        // The native writer derives packed strides from the shapes in 32 bits; core chose it
        // only for a fully packed split cache, so they equal the tensors' own strides and the
        // access shapes below hold for both.
        debug_assert!(g.layout == KvLayout::Split);
        let per_block = p.num_kv_heads.saturating_mul(p.head_size).saturating_mul(g.block_size);
        fits_i32(per_block, "num_kv_heads * head_size * block_size")?;
    }
    // The kernels take whole 8-element units when proven aligned; else element by element.
    let key_run = run_along_d(&ka, g.key_addr, es);
    let value_run = run_along_d(&va, g.value_addr, es);
    let head_size = fits_i32(p.head_size, "head_size")?;
    // One thread per (16-token tile, kv head, 8-element chunk, half tile) and tensor; the
    // kernel splits the index in 32 bits.
    let work_items = fits_i32(
        ((p.num_tokens + WRITE_TILE_TOKENS - 1) / WRITE_TILE_TOKENS)
            .saturating_mul(p.num_kv_heads)
            .saturating_mul((p.head_size + CHUNK - 1) / CHUNK)
            .saturating_mul(WRITE_TILE_TOKENS / CHUNK),
        "the cache writer's thread count (num_tokens * num_kv_heads * head_size / 64)",
    )?;
    let src_contig = |t: &TensorDesc| (rows_contiguous(t) && p.head_size % CHUNK == 0) as i32;
    Ok(WriteParams {
        key: p.key.addr,
        value: p.value.addr,
        slot_mapping: p.slot_mapping.addr,
        key_cache: g.key_addr,
        value_cache: g.value_addr,
        k_scale: p.k_scale.unwrap_or(0),
        v_scale: p.v_scale.unwrap_or(0),
        key_strides: [p.key.strides[0], p.key.strides[1], p.key.strides[2]],
        value_strides: [p.value.strides[0], p.value.strides[1], p.value.strides[2]],
        slot_stride: p.slot_mapping.strides[0],
        key_addr: ka,
        value_addr: va,
        num_tokens: p.num_tokens,
        num_slots: g.num_slots(),
        num_kv_heads: fits_i32(p.num_kv_heads, "num_kv_heads")?,
        head_size,
        block_size: fits_i32(g.block_size, "block_size")?,
        src_dtype: dtype_code(p.key.dtype),
        fp8_format: fp8_code(p.quant),
        packed: packed as i32,
        key_src_contig: src_contig(&p.key),
        value_src_contig: src_contig(&p.value),
        key_run,
        value_run,
        value_vec: value_token_vectors(&va, g.value_addr, g.block_size, es) as i32,
        work_items,
    })
}

pub(crate) fn attention_params(p: &AttentionProblem, plan: &Plan, workspace: usize) -> Result<AttentionParams> {
    let g = &p.geometry;
    let es = cache_itemsize(g);
    let ka = key_addr(&g.key, "key_cache")?;
    let va = value_addr(&g.value, "value_cache")?;
    let key_run = run_along_d(&ka, g.key_addr, es);
    let key_wide = wide_key_access(&ka, g.key_addr, es);
    // Value cache staging: the split layout keeps 8 consecutive slots of one dim adjacent.
    let (value_mode, value_run) = if va.tok == 1 {
        let align = (CHUNK * es).min(MAX_ACCESS_BYTES);
        let aligned =
            all_aligned(&[g.value_addr as i64, va.blk as i64 * es, va.head as i64 * es, va.dhi as i64 * es], align);
        (V_ALONG_TOKENS, if g.block_size % CHUNK == 0 && aligned { CHUNK as i32 } else { 1 })
    } else {
        (V_ALONG_D, run_along_d(&va, g.value_addr, es))
    };
    let opt_stride = |t: &Option<TensorDesc>| t.as_ref().map_or(0, |t| t.strides[0]);
    let general = &plan.general;
    let decode = plan.decode.as_ref();
    let decode_workspace = match decode {
        Some(d) if d.num_splits > 1 => workspace + d.workspace_offset as usize,
        _ => 0,
    };
    Ok(AttentionParams {
        query: p.query.addr,
        output: p.output.addr,
        key_cache: g.key_addr,
        value_cache: g.value_addr,
        block_table: p.block_table.addr,
        seq_lens: p.seq_lens.addr,
        query_start_loc: p.query_start_loc.addr,
        k_scale: p.k_scale.unwrap_or(0),
        v_scale: p.v_scale.unwrap_or(0),
        output_scale: p.output_scale.unwrap_or(0),
        alibi_slopes: p.alibi_slopes.map_or(0, |t| t.addr),
        sinks: p.sinks.map_or(0, |t| t.addr),
        workspace: if general.num_splits > 1 { workspace } else { 0 },
        query_strides: [p.query.strides[0], p.query.strides[1], p.query.strides[2]],
        output_strides: [p.output.strides[0], p.output.strides[1], p.output.strides[2]],
        block_table_strides: [p.block_table.strides[0], p.block_table.strides[1]],
        seq_lens_stride: p.seq_lens.strides[0],
        query_start_loc_stride: p.query_start_loc.strides[0],
        alibi_stride: opt_stride(&p.alibi_slopes),
        sinks_stride: opt_stride(&p.sinks),
        key_addr: ka,
        value_addr: va,
        num_tokens: p.num_tokens,
        num_blocks: g.num_blocks,
        num_seqs: fits_i32(p.num_seqs, "num_seqs")?,
        num_q_heads: fits_i32(p.num_q_heads, "num_q_heads")?,
        num_kv_heads: fits_i32(p.num_kv_heads, "num_kv_heads")?,
        head_size: fits_i32(p.head_size, "head_size")?,
        block_size: fits_i32(g.block_size, "block_size")?,
        // Positions are int32 (seq_lens is int32): the table never needs more columns than that.
        max_blocks_per_seq: p.max_blocks_per_seq.min(i32::MAX as i64) as i32,
        query_dtype: dtype_code(p.query.dtype),
        kv_fp8: fp8_code(p.kv_quant),
        out_fp8: fp8_code(p.out_quant),
        sliding_window: p.sliding_window,
        causal: p.causal as i32,
        sm_scale: p.sm_scale,
        logits_soft_cap: p.logits_soft_cap,
        tile: general.tile_size as i32,
        block_q: general.block_q as i32,
        heads_per_cta: general.heads_per_cta as i32,
        head_groups: general.head_groups as i32,
        num_q_blocks: fits_i32(general.num_q_blocks as i64, "q-blocks in the grid")?,
        num_splits: general.num_splits as i32,
        shared_mem_bytes: fits_i32(general.shared_mem_bytes as i64, "shared memory bytes")?,
        query_contig: rows_contiguous(&p.query) as i32,
        output_contig: rows_contiguous(&p.output) as i32,
        key_run,
        key_token_fastest: token_fastest(&ka, es),
        value_mode,
        value_run,
        decode_workspace,
        decode_kernel: decode.is_some() as i32,
        decode_splits: decode.map_or(1, |d| d.num_splits as i32),
        decode_heads_per_cta: decode.map_or(1, |d| d.heads_per_cta as i32),
        decode_head_groups: decode.map_or(1, |d| d.head_groups as i32),
        decode_mma: decode.is_some_and(|d| d.tensor_cores()) as i32,
        key_wide: key_wide as i32,
        decode_order: decode.is_some_and(|d| d.longest_first) as i32,
        key_fast: fast_key_chunks(&ka, g.head_size, es, key_run, key_wide) as i32,
        overlap_after_decode: decode.is_some_and(|d| d.overlap_next) as i32,
        decode_covers_all: decode.is_some_and(|d| d.covers_all) as i32,
        general_mma: (general.kernel == GeneralKernel::TensorCores) as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_follow_layout_and_alignment() {
        // Split fp16 keys: x = 8, one 16-byte x-group per unit.
        let split_k = CacheAddr { blk: 16 * 4 * 64, head: 64 * 16, dhi: 16 * 8, tok: 8, dlo: 1, x_shift: 3 };
        assert_eq!(run_along_d(&split_k, 0x1000, 2), 8);
        assert_eq!(token_fastest(&split_k, 2), 1);
        // A misaligned base address falls back to element access.
        assert_eq!(run_along_d(&split_k, 0x1002, 2), 1);
        // fp32 split keys: x = 4, two 16-byte runs per unit.
        let split_k32 = CacheAddr { x_shift: 2, tok: 4, dhi: 16 * 4, ..split_k };
        assert_eq!(run_along_d(&split_k32, 0x1000, 4), 4);
        // fp8 split keys: x = 16, half an x-group (8 bytes) per unit.
        let split_k8 = CacheAddr { x_shift: 4, tok: 16, dhi: 16 * 16, ..split_k };
        assert_eq!(run_along_d(&split_k8, 0x1000, 1), 8);
        // ... and a whole x-group (16 bytes) per wide fp8 key access, when aligned.
        assert!(wide_key_access(&split_k8, 0x1000, 1));
        assert!(!wide_key_access(&split_k8, 0x1008, 1));
        assert!(!wide_key_access(&CacheAddr { tok: 24, ..split_k8 }, 0x1000, 1));
        assert!(!wide_key_access(&split_k, 0x1000, 2)); // 16-bit caches: a chunk is 8 elements
        assert!(!wide_key_access(&CacheAddr { x_shift: 3, tok: 8, ..split_k8 }, 0x1000, 1)); // x = 8
        // NHD: dims contiguous, tokens far apart.
        let nhd = CacheAddr { blk: 16 * 4 * 64, head: 64, dhi: 1, tok: 4 * 64, dlo: 0, x_shift: 0 };
        assert_eq!(run_along_d(&nhd, 0x1000, 2), 8);
        assert_eq!(token_fastest(&nhd, 2), 0);
        assert!(wide_key_access(&nhd, 0x1000, 1));
        assert!(!wide_key_access(&CacheAddr { head: 72, ..nhd }, 0x1000, 1));
        // Split values: dims bs apart, no run along d; 8 consecutive slots are one access.
        let split_v = CacheAddr { blk: 16 * 4 * 64, head: 64 * 16, dhi: 16, tok: 1, dlo: 0, x_shift: 0 };
        assert_eq!(run_along_d(&split_v, 0x1000, 2), 1);
        assert_eq!(token_fastest(&split_v, 2), 1);
        assert!(value_token_vectors(&split_v, 0x1000, 16, 2));
        // ... unless a run start can be misaligned, slots are not adjacent, or blocks are short.
        assert!(!value_token_vectors(&split_v, 0x1008, 16, 2));
        assert!(!value_token_vectors(&CacheAddr { blk: 16 * 4 * 64 + 4, ..split_v }, 0x1000, 16, 2));
        assert!(!value_token_vectors(&nhd, 0x1000, 16, 2));
        assert!(!value_token_vectors(&CacheAddr { dhi: 1, head: 64, ..split_v }, 0x1000, 1, 2));
        assert!(!value_token_vectors(&CacheAddr { dhi: 4, head: 64 * 4, ..split_v }, 0x1000, 4, 2));
        // fp8 split values: 8-byte runs.
        assert!(value_token_vectors(&CacheAddr { blk: 16 * 4 * 64 + 8, ..split_v }, 0x1008, 16, 1));
    }

    #[test]
    fn fast_key_chunks_need_whole_runs_and_a_fixed_chunk_distance() {
        // As attention_params calls it: the runs and the wide access of the same keys.
        let fast = |a: &CacheAddr, head_size: i64, itemsize: i64, base: usize| {
            fast_key_chunks(a, head_size, itemsize, run_along_d(a, base, itemsize), wide_key_access(a, base, itemsize))
        };
        // bf16 split keys (x = 8) and NHD keys: whole 8-element runs, chunks 4 runs apart.
        let split_k = CacheAddr { blk: 16 * 8 * 128, head: 128 * 16, dhi: 16 * 8, tok: 8, dlo: 1, x_shift: 3 };
        assert!(fast(&split_k, 128, 2, 0x1000));
        let nhd = CacheAddr { blk: 16 * 8 * 128, head: 128, dhi: 1, tok: 8 * 128, dlo: 0, x_shift: 0 };
        assert!(fast(&nhd, 128, 2, 0x1000));
        // x = 16 and 32 divide four 8-element chunks; x = 64 does not, unless one group is the head.
        assert!(fast(&CacheAddr { x_shift: 5, tok: 32, dhi: 16 * 32, ..split_k }, 128, 2, 0x1000));
        assert!(!fast(&CacheAddr { x_shift: 6, tok: 64, dhi: 16 * 64, ..split_k }, 128, 2, 0x1000));
        assert!(fast(&CacheAddr { x_shift: 6, tok: 64, dhi: 16 * 64, ..split_k }, 64, 2, 0x1000));
        // Runs shorter than a chunk (x = 4), or a misaligned base: the generic instance.
        assert!(!fast(&CacheAddr { x_shift: 2, tok: 4, dhi: 16 * 4, ..split_k }, 128, 2, 0x1000));
        assert!(!fast(&split_k, 128, 2, 0x1002));
        // fp8 split keys (x = 16): 16-code chunks when wide, and only for head sizes of whole chunks.
        let split_k8 = CacheAddr { x_shift: 4, tok: 16, dhi: 16 * 16, ..split_k };
        assert!(fast(&split_k8, 128, 1, 0x1000));
        assert!(!fast(&split_k8, 72, 1, 0x1000));
        assert!(!fast(&split_k8, 128, 1, 0x1008));
    }

    #[test]
    fn large_strides_are_refused_not_truncated() {
        let k = KeyAddressing { blk: 1 << 31, head: 1, dhi: 1, tok: 1, dlo: 0, x: 1 };
        assert_eq!(key_addr(&k, "key_cache").unwrap_err().status, Status::UnsupportedConfiguration);
    }
}
