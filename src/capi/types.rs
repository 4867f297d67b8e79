//! The C-visible structs and constants. Field order is ABI: append only, never reorder.

use std::ffi::{c_char, c_void};

/// Most dimensions a `pkv_tensor` can describe.
pub const PKV_MAX_DIMS: usize = 6;

/// Version of this header and library.
pub const PKV_VERSION_MAJOR: u32 = 0;
pub const PKV_VERSION_MINOR: u32 = 1;
pub const PKV_VERSION_PATCH: u32 = 0;
/// `MAJOR * 10000 + MINOR * 100 + PATCH`; compare with `pkv_version_number()` at run time.
pub const PKV_VERSION_NUMBER: u32 = PKV_VERSION_MAJOR * 10000 + PKV_VERSION_MINOR * 100 + PKV_VERSION_PATCH;

/// `pkv_dtype` values (the `dtype` field of `pkv_tensor`). 0 is never valid.
pub const PKV_DTYPE_FLOAT32: u32 = 1;
pub const PKV_DTYPE_FLOAT16: u32 = 2;
pub const PKV_DTYPE_BFLOAT16: u32 = 3;
pub const PKV_DTYPE_UINT8: u32 = 4;
pub const PKV_DTYPE_INT32: u32 = 5;
pub const PKV_DTYPE_INT64: u32 = 6;
pub const PKV_DTYPE_FLOAT8_E4M3FN: u32 = 7;
pub const PKV_DTYPE_FLOAT8_E4M3FNUZ: u32 = 8;
pub const PKV_DTYPE_FLOAT8_E5M2: u32 = 9;

/// Device types (DLPack's codes).
pub const PKV_DEVICE_CPU: i32 = 1;
pub const PKV_DEVICE_CUDA: i32 = 2;
pub const PKV_DEVICE_ROCM: i32 = 10;

/// `pkv_kv_cache_dtype` values (vLLM's `kv_cache_dtype` strings).
pub const PKV_KV_CACHE_DTYPE_AUTO: u32 = 0;
/// The device's e4m3: fnuz on gfx940/gfx942, OCP e4m3fn elsewhere (CPU included).
pub const PKV_KV_CACHE_DTYPE_FP8: u32 = 1;
/// Same as `PKV_KV_CACHE_DTYPE_FP8`.
pub const PKV_KV_CACHE_DTYPE_FP8_E4M3: u32 = 2;
pub const PKV_KV_CACHE_DTYPE_FP8_E4M3FN: u32 = 3;
pub const PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ: u32 = 4;
pub const PKV_KV_CACHE_DTYPE_FP8_E5M2: u32 = 5;

/// `pkv_kv_layout` values.
/// Key `[num_blocks, num_kv_heads, head_size/x, block_size, x]`, value `[num_blocks, num_kv_heads, head_size, block_size]`.
pub const PKV_KV_LAYOUT_SPLIT: u32 = 0;
/// Key and value `[num_blocks, block_size, num_kv_heads, head_size]`.
pub const PKV_KV_LAYOUT_NHD: u32 = 1;

/// Write paths reported by `pkv_write_kv_cache`.
pub const PKV_WRITE_PATH_NATIVE: u32 = 1;
pub const PKV_WRITE_PATH_STRIDED: u32 = 2;

/// Attention paths reported by the planner.
pub const PKV_ATTENTION_PATH_CPU_REFERENCE: u32 = 1;
pub const PKV_ATTENTION_PATH_GPU_SINGLE_PASS: u32 = 2;
pub const PKV_ATTENTION_PATH_GPU_SPLIT_KV: u32 = 3;

/// Bits of `pkv_features()`.
pub const PKV_FEATURE_CPU: u32 = 1;
pub const PKV_FEATURE_CUDA: u32 = 2;
pub const PKV_FEATURE_ROCM: u32 = 4;

/// Length of the `reason` text in `pkv_attention_plan`, terminating NUL included.
pub const PKV_PLAN_REASON_LEN: usize = 256;
/// Length of the `arch` text in `pkv_device_limits`, terminating NUL included.
pub const PKV_ARCH_NAME_LEN: usize = 32;

/// One strided tensor. Shapes and strides are in elements; strides must be >= 0.
/// The caller owns the memory; pagedkv only reads the description during a call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pkv_tensor {
    /// Base pointer (host or device). May be NULL only for tensors with no elements.
    pub data: *mut c_void,
    /// Bytes added to `data` to reach element 0.
    pub byte_offset: u64,
    /// `PKV_DEVICE_CPU`, `PKV_DEVICE_CUDA` or `PKV_DEVICE_ROCM`.
    pub device_type: i32,
    pub device_id: i32,
    /// A `PKV_DTYPE_*` value.
    pub dtype: u32,
    /// Number of valid entries in `shape` and `strides` (at most `PKV_MAX_DIMS`).
    pub ndim: u32,
    pub shape: [i64; PKV_MAX_DIMS],
    pub strides: [i64; PKV_MAX_DIMS],
}

/// Arguments of `pkv_write_kv_cache`. Set `struct_size = sizeof(pkv_write_kv_cache_args)`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pkv_write_kv_cache_args {
    pub struct_size: u32,
    /// `PKV_KV_LAYOUT_SPLIT` or `PKV_KV_LAYOUT_NHD`.
    pub kv_layout: u32,
    /// `[num_tokens, num_kv_heads, head_size]` float32/float16/bfloat16 (rows past `slot_mapping`'s length are ignored).
    pub key: *const pkv_tensor,
    /// Same shape and dtype as `key`.
    pub value: *const pkv_tensor,
    /// Destination caches (see `pkv_kv_layout`); uint8 or float8 for fp8 kv_cache_dtype.
    pub key_cache: *const pkv_tensor,
    pub value_cache: *const pkv_tensor,
    /// int64 `[n]`, `n <= num_tokens`: flat slot `block * block_size + offset`; negative = skip.
    pub slot_mapping: *const pkv_tensor,
    /// A `PKV_KV_CACHE_DTYPE_*` value.
    pub kv_cache_dtype: u32,
    /// Reserved; set to 0.
    pub reserved: u32,
    /// 1-element float32 tensors on the data's device, or NULL for 1.0. Stored = fp8(x / scale).
    pub k_scale: *const pkv_tensor,
    pub v_scale: *const pkv_tensor,
}

/// Arguments of `pkv_paged_attention` and its planning functions.
/// Set `struct_size = sizeof(pkv_paged_attention_args)`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pkv_paged_attention_args {
    pub struct_size: u32,
    /// `PKV_KV_LAYOUT_SPLIT` or `PKV_KV_LAYOUT_NHD`.
    pub kv_layout: u32,
    /// `[num_tokens, num_q_heads, head_size]`, varlen-packed by `query_start_loc`.
    pub query: *const pkv_tensor,
    pub key_cache: *const pkv_tensor,
    pub value_cache: *const pkv_tensor,
    /// int32 `[num_seqs, max_blocks_per_seq]`: physical block of each logical block.
    pub block_table: *const pkv_tensor,
    /// int32 `[num_seqs]`: cached tokens per sequence, this step's included.
    pub seq_lens: *const pkv_tensor,
    /// int32 `[num_seqs + 1]`: offsets of each sequence's query tokens.
    pub query_start_loc: *const pkv_tensor,
    /// `[num_tokens, num_q_heads, head_size]`, the query's dtype, or uint8/float8 with `output_scale`.
    pub output: *const pkv_tensor,
    /// A `PKV_KV_CACHE_DTYPE_*` value.
    pub kv_cache_dtype: u32,
    /// Nonzero: query token t of a sequence sees keys 0..p (p = seq_len - q_len + t); zero: all keys.
    pub causal: u32,
    /// 1-element float32 tensors, or NULL for 1.0. Cached fp8 dequantises as value * scale.
    pub k_scale: *const pkv_tensor,
    pub v_scale: *const pkv_tensor,
    /// float32 `[num_q_heads]` or NULL: score += slope[h] * (j - p).
    pub alibi_slopes: *const pkv_tensor,
    /// float32 `[num_q_heads]` or NULL: one extra logit per head with a zero value.
    pub sinks: *const pkv_tensor,
    /// 1-element float32 or NULL: output stored as fp8(out / output_scale).
    pub output_scale: *const pkv_tensor,
    /// Softmax scale; 0 means 1/sqrt(head_size).
    pub sm_scale: f32,
    /// Keys visible including the current one (p - j < W); <= 0 disables.
    pub sliding_window: i32,
    /// c * tanh(score / c) before ALiBi; 0 disables.
    pub logits_soft_cap: f32,
    /// The most query tokens any one sequence of the batch has (vLLM's `max_query_len`), or 0
    /// when unknown. Any other value is a promise: the CPU backend, which reads the offsets,
    /// refuses a longer query (`PKV_STATUS_INVALID_VALUE`). On the GPU only 1 changes what
    /// runs: a decode-only batch takes the decode kernel alone, and the output rows of a
    /// sequence with more query tokens than promised are set to NaN. Rows past
    /// `query_start_loc[num_seqs]` (graph padding) are allowed as always. (This field was
    /// `reserved`, set to 0: same place, and 0 keeps its meaning.)
    pub max_query_len: u32,
}

/// What `pkv_paged_attention` will do (or did) for a set of arguments.
/// The caller sets `struct_size`; pagedkv fills the rest on success only.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pkv_attention_plan {
    pub struct_size: u32,
    /// A `PKV_ATTENTION_PATH_*` value.
    pub path: u32,
    /// Keys per inner iteration (independent of the block size).
    pub tile_size: u32,
    /// Query tokens per work-group.
    pub block_q: u32,
    /// KV splits (1: single pass).
    pub num_splits: u32,
    /// Threads per work-group.
    pub threads: u32,
    /// Dynamic shared memory per work-group, in bytes.
    pub shared_mem_bytes: u64,
    /// Workspace `pkv_paged_attention` needs, in bytes.
    pub workspace_bytes: u64,
    /// Why, in words; NUL-terminated, truncated to fit.
    pub reason: [c_char; PKV_PLAN_REASON_LEN],
}

/// What the planner needs to know about a GPU. Filled by `pkv_device_limits_query`, or by
/// hand to ask what would run on a device that is not present.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pkv_device_limits {
    pub struct_size: u32,
    /// 32 or 64.
    pub wave_size: u32,
    /// Shared memory (LDS) per work-group without opt-in, bytes.
    pub shared_mem_per_block: u64,
    /// Shared memory per work-group with opt-in (NVIDIA); equal to the above on AMD.
    pub shared_mem_per_block_optin: u64,
    pub multiprocessor_count: u32,
    pub reserved: u32,
    /// "gfx942", "gfx1100", "sm_90", ...; NUL-terminated.
    pub arch: [c_char; PKV_ARCH_NAME_LEN],
}

impl pkv_paged_attention_args {
    /// Rust-side convenience: the required tensors set and every option off (no scales, no
    /// ALiBi, sinks, window or soft-cap, causal, default sm_scale). C callers zero-initialise
    /// the struct and set `struct_size` instead.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kv_layout: u32,
        query: &pkv_tensor,
        key_cache: &pkv_tensor,
        value_cache: &pkv_tensor,
        block_table: &pkv_tensor,
        seq_lens: &pkv_tensor,
        query_start_loc: &pkv_tensor,
        output: &pkv_tensor,
    ) -> Self {
        pkv_paged_attention_args {
            struct_size: std::mem::size_of::<Self>() as u32,
            kv_layout,
            query,
            key_cache,
            value_cache,
            block_table,
            seq_lens,
            query_start_loc,
            output,
            kv_cache_dtype: PKV_KV_CACHE_DTYPE_AUTO,
            causal: 1,
            k_scale: std::ptr::null(),
            v_scale: std::ptr::null(),
            alibi_slopes: std::ptr::null(),
            sinks: std::ptr::null(),
            output_scale: std::ptr::null(),
            sm_scale: 0.0,
            sliding_window: 0,
            logits_soft_cap: 0.0,
            max_query_len: 0,
        }
    }
}
