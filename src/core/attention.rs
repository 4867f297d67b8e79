//! Paged attention: argument validation and the value checks on the batch description
//! (`seq_lens`, `query_start_loc`, `block_table`). Pure; backends read the values and pass
//! them in as slices.

use crate::core::dtype::{DType, Device, Fp8Format, KvCacheDtype, KvLayout};
use crate::core::layout::{CacheGeometry, cache_geometry};
use crate::core::status::{Result, Status};
use crate::core::tensor::{
    TensorDesc, expect_dim, expect_dtype, expect_ndim, expect_same_device, expect_scale, expect_writable_strides,
};
use crate::core::write::check_cache_dtype;

/// Head sizes the kernels serve: multiples of 8 from 8 to 256.
pub const MAX_HEAD_SIZE: i64 = 256;
pub const HEAD_SIZE_MULTIPLE: i64 = 8;

#[derive(Clone, Copy, Debug)]
pub struct AttentionArgs<'a> {
    pub kv_layout: KvLayout,
    pub query: &'a TensorDesc,
    pub key_cache: &'a TensorDesc,
    pub value_cache: &'a TensorDesc,
    pub block_table: &'a TensorDesc,
    pub seq_lens: &'a TensorDesc,
    pub query_start_loc: &'a TensorDesc,
    pub output: &'a TensorDesc,
    pub kv_cache_dtype: KvCacheDtype,
    pub k_scale: Option<&'a TensorDesc>,
    pub v_scale: Option<&'a TensorDesc>,
    pub alibi_slopes: Option<&'a TensorDesc>,
    pub sinks: Option<&'a TensorDesc>,
    pub output_scale: Option<&'a TensorDesc>,
    /// 0 means the default `1 / sqrt(head_size)`.
    pub sm_scale: f32,
    /// Keys visible including the current one (`p - j < W`); `<= 0` disables.
    pub sliding_window: i32,
    /// `c * tanh(score / c)`; 0 disables.
    pub logits_soft_cap: f32,
    pub causal: bool,
    /// The caller's bound on any sequence's query tokens; 0 when unknown.
    pub max_query_len: u32,
}

/// A validated attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttentionProblem {
    pub device: Device,
    pub num_tokens: i64,
    pub num_seqs: i64,
    pub num_q_heads: i64,
    pub num_kv_heads: i64,
    pub head_size: i64,
    /// Columns of `block_table`: the most blocks any sequence may have. Together with the
    /// block size it bounds every sequence's length without reading `seq_lens`.
    pub max_blocks_per_seq: i64,
    pub geometry: CacheGeometry,
    pub query: TensorDesc,
    pub output: TensorDesc,
    pub block_table: TensorDesc,
    pub seq_lens: TensorDesc,
    pub query_start_loc: TensorDesc,
    pub kv_quant: Option<Fp8Format>,
    /// `Some(format)` when the output is fp8 (`output_scale` given).
    pub out_quant: Option<Fp8Format>,
    pub k_scale: Option<usize>,
    pub v_scale: Option<usize>,
    pub output_scale: Option<usize>,
    pub alibi_slopes: Option<TensorDesc>,
    pub sinks: Option<TensorDesc>,
    /// Resolved (never 0).
    pub sm_scale: f32,
    /// 0 when disabled.
    pub sliding_window: i32,
    /// 0 when disabled.
    pub logits_soft_cap: f32,
    pub causal: bool,
    /// The caller's bound on any sequence's query tokens; 0 when unknown (`AttentionArgs`).
    pub max_query_len: u32,
}

impl AttentionProblem {
    /// Query heads per kv head.
    pub fn gqa_ratio(&self) -> i64 {
        self.num_q_heads / self.num_kv_heads
    }

    /// Upper bound of any sequence's length, known without reading device memory.
    pub fn max_context_bound(&self) -> i64 {
        self.max_blocks_per_seq * self.geometry.block_size
    }
}

pub fn validate_attention(args: &AttentionArgs<'_>, device_e4m3: Fp8Format) -> Result<AttentionProblem> {
    let q = args.query;
    let device = q.device;
    expect_ndim(q, "query", 3, "[num_tokens, num_q_heads, head_size]")?;
    expect_dtype(q, "query", &[DType::F32, DType::F16, DType::BF16])?;
    let (num_tokens, num_q_heads, head_size) = (q.shape[0], q.shape[1], q.shape[2]);
    let geometry = cache_geometry(args.kv_layout, args.key_cache, args.value_cache)?;
    expect_same_device(args.key_cache, "key_cache", device, "query")?;
    if head_size != geometry.head_size {
        fail!(
            Status::ShapeMismatch,
            "query.shape[2] = {head_size}, expected head_size = {} of the cache",
            geometry.head_size
        );
    }
    if head_size % HEAD_SIZE_MULTIPLE != 0 || head_size > MAX_HEAD_SIZE || head_size == 0 {
        fail!(
            Status::UnsupportedHeadSize,
            "head_size = {head_size} is not supported (expected a multiple of {HEAD_SIZE_MULTIPLE} from 8 to {MAX_HEAD_SIZE})"
        );
    }
    let num_kv_heads = geometry.num_kv_heads;
    if num_kv_heads == 0 || num_q_heads == 0 || num_q_heads % num_kv_heads != 0 {
        fail!(
            Status::GqaRatioNotIntegral,
            "query.shape[1] = num_q_heads = {num_q_heads} is not a positive multiple of num_kv_heads = {num_kv_heads}"
        );
    }
    if geometry.block_size == 0 {
        fail!(Status::ShapeMismatch, "block_size = 0: the cache has no slots per block (expected >= 1)");
    }

    let bt = args.block_table;
    expect_same_device(bt, "block_table", device, "query")?;
    expect_ndim(bt, "block_table", 2, "[num_seqs, max_blocks_per_seq]")?;
    expect_dtype(bt, "block_table", &[DType::I32])?;
    let num_seqs = bt.shape[0];
    let sl = args.seq_lens;
    expect_same_device(sl, "seq_lens", device, "query")?;
    expect_ndim(sl, "seq_lens", 1, "[num_seqs]")?;
    expect_dtype(sl, "seq_lens", &[DType::I32])?;
    expect_dim(sl, "seq_lens", 0, num_seqs, "num_seqs = block_table.shape[0]")?;
    let qsl = args.query_start_loc;
    expect_same_device(qsl, "query_start_loc", device, "query")?;
    expect_ndim(qsl, "query_start_loc", 1, "[num_seqs + 1]")?;
    expect_dtype(qsl, "query_start_loc", &[DType::I32])?;
    expect_dim(qsl, "query_start_loc", 0, num_seqs + 1, "num_seqs + 1 = block_table.shape[0] + 1")?;

    let out = args.output;
    expect_same_device(out, "output", device, "query")?;
    expect_ndim(out, "output", 3, "[num_tokens, num_q_heads, head_size]")?;
    for dim in 0..3 {
        expect_dim(out, "output", dim, q.shape[dim], "the shape of query")?;
    }
    expect_writable_strides(out, "output")?;
    expect_scale(args.output_scale, "output_scale", device)?;
    let out_quant = match args.output_scale {
        Some(_) => {
            if !out.dtype.is_fp8_storage() {
                fail!(
                    Status::InvalidDtype,
                    "output.dtype = {}, expected uint8 or a float8 dtype when output_scale is given",
                    out.dtype.name()
                );
            }
            Some(out.dtype.fp8_format().unwrap_or(device_e4m3))
        }
        None => {
            expect_dtype(out, "output", &[q.dtype])?;
            None
        }
    };

    let kv_quant = check_cache_dtype(args.kv_cache_dtype, q.dtype, geometry.dtype, device_e4m3)?;
    expect_scale(args.k_scale, "k_scale", device)?;
    expect_scale(args.v_scale, "v_scale", device)?;
    for (t, name) in [(args.alibi_slopes, "alibi_slopes"), (args.sinks, "sinks")] {
        if let Some(t) = t {
            expect_same_device(t, name, device, "query")?;
            expect_ndim(t, name, 1, "[num_q_heads] float32")?;
            expect_dtype(t, name, &[DType::F32])?;
            expect_dim(t, name, 0, num_q_heads, "num_q_heads")?;
        }
    }
    if !args.sm_scale.is_finite() || args.sm_scale < 0.0 {
        fail!(
            Status::InvalidValue,
            "sm_scale = {}, expected a finite value > 0 (or 0 for 1/sqrt(head_size))",
            args.sm_scale
        );
    }
    if !args.logits_soft_cap.is_finite() || args.logits_soft_cap < 0.0 {
        fail!(
            Status::InvalidValue,
            "logits_soft_cap = {}, expected a finite value > 0 (or 0 to disable)",
            args.logits_soft_cap
        );
    }
    let sm_scale = if args.sm_scale == 0.0 { 1.0 / (head_size as f32).sqrt() } else { args.sm_scale };
    Ok(AttentionProblem {
        device,
        num_tokens,
        num_seqs,
        num_q_heads,
        num_kv_heads,
        head_size,
        max_blocks_per_seq: bt.shape[1],
        geometry,
        query: *q,
        output: *out,
        block_table: *bt,
        seq_lens: *sl,
        query_start_loc: *qsl,
        kv_quant,
        out_quant,
        k_scale: args.k_scale.map(|t| t.addr),
        v_scale: args.v_scale.map(|t| t.addr),
        output_scale: args.output_scale.map(|t| t.addr),
        alibi_slopes: args.alibi_slopes.copied(),
        sinks: args.sinks.copied(),
        sm_scale,
        sliding_window: args.sliding_window.max(0),
        logits_soft_cap: args.logits_soft_cap,
        causal: args.causal,
        max_query_len: args.max_query_len,
    })
}

/// The batch description's values, read by a backend that can see them.
pub struct BatchValues<'a> {
    pub seq_lens: &'a [i32],
    pub query_start_loc: &'a [i32],
    /// `block_table(seq, column)`.
    pub block_table: &'a dyn Fn(i64, i64) -> i32,
}

/// Checks `seq_lens`, `query_start_loc` and the used `block_table` entries.
pub fn check_batch_values(p: &AttentionProblem, v: &BatchValues<'_>) -> Result<()> {
    let qsl = v.query_start_loc;
    if qsl[0] != 0 {
        fail!(Status::InvalidQueryStartLoc, "query_start_loc[0] = {}, expected 0", qsl[0]);
    }
    for i in 0..p.num_seqs as usize {
        if qsl[i + 1] < qsl[i] {
            fail!(
                Status::InvalidQueryStartLoc,
                "query_start_loc[{}] = {} < query_start_loc[{i}] = {}, expected non-decreasing offsets",
                i + 1,
                qsl[i + 1],
                qsl[i]
            );
        }
    }
    let last = qsl[p.num_seqs as usize] as i64;
    if last > p.num_tokens {
        fail!(
            Status::InvalidQueryStartLoc,
            "query_start_loc[{}] = {last}, expected at most num_tokens = query.shape[0] = {}",
            p.num_seqs,
            p.num_tokens
        );
    }
    let bs = p.geometry.block_size;
    for s in 0..p.num_seqs as usize {
        let seq_len = v.seq_lens[s] as i64;
        let q_len = (qsl[s + 1] - qsl[s]) as i64;
        if seq_len < q_len {
            fail!(
                Status::InvalidSeqLen,
                "seq_lens[{s}] = {seq_len} is shorter than the sequence's {q_len} query tokens (expected seq_len >= \
                 query_start_loc[{}] - query_start_loc[{s}]; seq_lens count cached tokens including this step's)",
                s + 1
            );
        }
        if p.max_query_len > 0 && q_len > p.max_query_len as i64 {
            fail!(
                Status::InvalidValue,
                "query_start_loc[{}] - query_start_loc[{s}] = {q_len} query tokens, more than max_query_len = {} \
                 (expected 0 for unknown, or at least the longest query)",
                s + 1,
                p.max_query_len
            );
        }
        if q_len == 0 {
            // Graph padding: nothing is read or written for this sequence.
            continue;
        }
        let blocks = (seq_len + bs - 1) / bs;
        if blocks > p.max_blocks_per_seq {
            fail!(
                Status::BlockTableTooShort,
                "seq_lens[{s}] = {seq_len} needs {blocks} blocks of {bs}, but block_table has {} columns",
                p.max_blocks_per_seq
            );
        }
        for j in 0..blocks {
            let b = (v.block_table)(s as i64, j) as i64;
            if b < 0 || b >= p.geometry.num_blocks {
                fail!(
                    Status::BlockIdOutOfRange,
                    "block_table[{s}][{j}] = {b} is outside the cache (num_blocks = {})",
                    p.geometry.num_blocks
                );
            }
        }
    }
    Ok(())
}
