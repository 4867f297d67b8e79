//! `pkv_paged_attention` and its planning functions.

use std::ffi::c_void;

use crate::capi::boundary::guard;
use crate::capi::ffi_args::{
    arg_sized, fill_c_text, optional_tensor_arg, out_present, out_write, read_c_text, tensor_arg,
};
use crate::capi::types::{pkv_attention_plan, pkv_device_limits, pkv_paged_attention_args};
use crate::core::attention::AttentionArgs;
use crate::core::dtype::{Device, DeviceKind, KvCacheDtype, KvLayout};
use crate::core::plan::{DeviceLimits, Plan, Target};
use crate::core::status::{Error, Result, Status};
use crate::core::tensor::TensorDesc;
use crate::ops;

/// The attention arguments read out of the C struct, owning their descriptors.
struct ReadArgs {
    kv_layout: KvLayout,
    tensors: [TensorDesc; 7],
    optional: [Option<TensorDesc>; 5],
    kv_cache_dtype: KvCacheDtype,
    sm_scale: f32,
    sliding_window: i32,
    logits_soft_cap: f32,
    causal: bool,
    max_query_len: u32,
}

impl ReadArgs {
    /// # Safety
    /// `args` and its tensor pointers are NULL or valid.
    unsafe fn read(args: *const pkv_paged_attention_args) -> Result<Self> {
        // SAFETY: forwarded contract.
        let a = unsafe { arg_sized(args, "args") }?;
        // SAFETY: forwarded contract on every tensor pointer.
        unsafe {
            Ok(ReadArgs {
                kv_layout: KvLayout::try_from(a.kv_layout)?,
                tensors: [
                    tensor_arg(a.query, "query")?,
                    tensor_arg(a.key_cache, "key_cache")?,
                    tensor_arg(a.value_cache, "value_cache")?,
                    tensor_arg(a.block_table, "block_table")?,
                    tensor_arg(a.seq_lens, "seq_lens")?,
                    tensor_arg(a.query_start_loc, "query_start_loc")?,
                    tensor_arg(a.output, "output")?,
                ],
                optional: [
                    optional_tensor_arg(a.k_scale, "k_scale")?,
                    optional_tensor_arg(a.v_scale, "v_scale")?,
                    optional_tensor_arg(a.alibi_slopes, "alibi_slopes")?,
                    optional_tensor_arg(a.sinks, "sinks")?,
                    optional_tensor_arg(a.output_scale, "output_scale")?,
                ],
                kv_cache_dtype: KvCacheDtype::try_from(a.kv_cache_dtype)?,
                sm_scale: a.sm_scale,
                sliding_window: a.sliding_window,
                logits_soft_cap: a.logits_soft_cap,
                causal: a.causal != 0,
                max_query_len: a.max_query_len,
            })
        }
    }

    fn args(&self) -> AttentionArgs<'_> {
        let [query, key_cache, value_cache, block_table, seq_lens, query_start_loc, output] = &self.tensors;
        let [k_scale, v_scale, alibi_slopes, sinks, output_scale] = &self.optional;
        AttentionArgs {
            kv_layout: self.kv_layout,
            query,
            key_cache,
            value_cache,
            block_table,
            seq_lens,
            query_start_loc,
            output,
            kv_cache_dtype: self.kv_cache_dtype,
            k_scale: k_scale.as_ref(),
            v_scale: v_scale.as_ref(),
            alibi_slopes: alibi_slopes.as_ref(),
            sinks: sinks.as_ref(),
            output_scale: output_scale.as_ref(),
            sm_scale: self.sm_scale,
            sliding_window: self.sliding_window,
            logits_soft_cap: self.logits_soft_cap,
            causal: self.causal,
            max_query_len: self.max_query_len,
        }
    }
}

fn plan_to_c(plan: &Plan, target: &Target, struct_size: u32) -> pkv_attention_plan {
    let mut out = pkv_attention_plan {
        struct_size,
        path: plan.path as u32,
        tile_size: plan.tile_size,
        block_q: plan.block_q,
        num_splits: plan.num_splits,
        threads: plan.threads,
        shared_mem_bytes: plan.shared_mem_bytes,
        workspace_bytes: plan.workspace_bytes,
        reason: [0; crate::capi::types::PKV_PLAN_REASON_LEN],
    };
    fill_c_text(&mut out.reason, &plan.reason.describe(target.arch(), plan.num_splits));
    out
}

/// Reads the caller-set `struct_size` of an out-struct.
///
/// # Safety
/// `p` is non-NULL and its first 4 bytes are readable.
unsafe fn out_struct_size<T>(p: *mut T, name: &str) -> Result<u32> {
    out_present(p, name)?;
    // SAFETY: non-NULL; the struct starts with u32 struct_size per the contract.
    let size = unsafe { *(p as *const u32) };
    if (size as usize) < std::mem::size_of::<T>() {
        return Err(Error::new(
            Status::InvalidStructSize,
            format!("{name}->struct_size = {size}, expected at least {}", std::mem::size_of::<T>()),
        ));
    }
    Ok(size)
}

/// Paged attention with vLLM's `chunked_prefill_paged_decode` semantics: decode tokens and
/// prefill chunks of several sequences in one call, all keys read from the cache (write this
/// step's tokens first). Query token t of sequence i sits at `p = seq_lens[i] - q_len_i + t`;
/// causal: keys `0..=p`; non-causal: all `seq_lens[i]` keys; window W > 0 keeps keys with
/// `p - j < W`. Masked keys contribute exactly 0. Sequences with no query tokens write nothing.
///
/// `workspace` must hold `pkv_paged_attention_workspace_size` bytes (NULL is fine when that is
/// 0), 16-byte aligned (every device allocator aligns to 256); it is scratch owned by the
/// caller, device memory for device tensors. On a GPU, strides and sizes above 2^31 - 1
/// elements per dimension return `PKV_STATUS_UNSUPPORTED_CONFIGURATION` (offsets themselves
/// are 64-bit, so caches far above 4 GiB work). Host tensors are
/// computed before return (and `seq_lens`/`query_start_loc`/`block_table` values are checked,
/// e.g. `PKV_STATUS_BLOCK_ID_OUT_OF_RANGE`); device work is enqueued on `stream` (NULL =
/// default) without synchronising or allocating, and out-of-range table values are clamped
/// away by the kernel instead of read. Nothing is written on error. Thread-safe for calls with
/// disjoint outputs and workspaces.
///
/// # Safety
/// `args` and its tensor pointers are NULL or valid; `workspace` is NULL or holds
/// `workspace_bytes` bytes on the data's device.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn pkv_paged_attention(
    args: *const pkv_paged_attention_args,
    workspace: *mut c_void,
    workspace_bytes: u64,
    stream: *mut c_void,
) -> Status {
    guard(|| {
        // SAFETY: forwarded contract.
        let read = unsafe { ReadArgs::read(args) }?;
        ops::paged_attention(&read.args(), workspace as usize, workspace_bytes, stream as usize).map(|_| ())
    })
}

/// Writes to `*bytes` the workspace `pkv_paged_attention` needs for these arguments (0 when
/// no split-KV scratch is needed). Depends only on shapes and the device, never on
/// sequence lengths, so one allocation serves a captured graph. Thread-safe.
///
/// # Safety
/// As `pkv_paged_attention`; `bytes` is writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn pkv_paged_attention_workspace_size(
    args: *const pkv_paged_attention_args,
    bytes: *mut u64,
) -> Status {
    guard(|| {
        out_present(bytes, "bytes")?;
        // SAFETY: forwarded contract.
        let read = unsafe { ReadArgs::read(args) }?;
        let a = read.args();
        let (_, plan) = ops::plan(&a, &ops::target_for(a.query.device)?)?;
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { out_write(bytes, "bytes", plan.workspace_bytes) }
    })
}

/// Fills `*plan` (set its `struct_size` first) with what `pkv_paged_attention` would do for
/// these arguments on their own device: path, compute tile, split count, shared memory,
/// workspace and the reason. Runs nothing; written on success only. Thread-safe.
///
/// # Safety
/// As `pkv_paged_attention`; `plan` is writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn pkv_paged_attention_plan(
    args: *const pkv_paged_attention_args,
    plan: *mut pkv_attention_plan,
) -> Status {
    guard(|| {
        // SAFETY: forwarded contracts.
        let size = unsafe { out_struct_size(plan, "plan") }?;
        let read = unsafe { ReadArgs::read(args) }?;
        let a = read.args();
        let target = ops::target_for(a.query.device)?;
        let (_, p) = ops::plan(&a, &target)?;
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { out_write(plan, "plan", plan_to_c(&p, &target, size)) }
    })
}

/// Like `pkv_paged_attention_plan`, but for the GPU described by `*limits` (filled by
/// `pkv_device_limits_query` or by hand, e.g. a gfx942 with 65536 bytes of LDS), whatever
/// device the tensors claim. Lets a CPU-only host ask what would run where. Thread-safe.
///
/// # Safety
/// As `pkv_paged_attention_plan`; `limits` is NULL or valid.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn pkv_paged_attention_plan_for_device(
    args: *const pkv_paged_attention_args,
    limits: *const pkv_device_limits,
    plan: *mut pkv_attention_plan,
) -> Status {
    guard(|| {
        // SAFETY: forwarded contracts.
        let size = unsafe { out_struct_size(plan, "plan") }?;
        let l = unsafe { arg_sized(limits, "limits") }?;
        let target = Target::Gpu(limits_from_c(l)?);
        let read = unsafe { ReadArgs::read(args) }?;
        let (_, p) = ops::plan(&read.args(), &target)?;
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { out_write(plan, "plan", plan_to_c(&p, &target, size)) }
    })
}

fn limits_from_c(l: &pkv_device_limits) -> Result<DeviceLimits> {
    if l.wave_size != 32 && l.wave_size != 64 {
        return Err(Error::new(
            Status::InvalidValue,
            format!("limits->wave_size = {}, expected 32 or 64", l.wave_size),
        ));
    }
    if l.multiprocessor_count == 0 || l.shared_mem_per_block == 0 {
        return Err(Error::new(
            Status::InvalidValue,
            format!(
                "limits: multiprocessor_count = {} and shared_mem_per_block = {}, expected both > 0",
                l.multiprocessor_count, l.shared_mem_per_block
            ),
        ));
    }
    Ok(DeviceLimits {
        arch: read_c_text(&l.arch),
        wave_size: l.wave_size,
        shared_mem_per_block: l.shared_mem_per_block,
        shared_mem_per_block_optin: l.shared_mem_per_block_optin.max(l.shared_mem_per_block),
        multiprocessor_count: l.multiprocessor_count,
    })
}

/// Fills `*limits` (set its `struct_size` first) with the planner's view of GPU `device_id`
/// of `device_type` (`PKV_DEVICE_CUDA` or `PKV_DEVICE_ROCM`), read from the runtime and cached
/// per device. Errors: `PKV_STATUS_GPU_BACKEND_NOT_BUILT` in a CPU-only build,
/// `PKV_STATUS_UNSUPPORTED_DEVICE`, `PKV_STATUS_NO_DEVICE`, `PKV_STATUS_DEVICE_ERROR`. Thread-safe.
///
/// # Safety
/// `limits` is NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn pkv_device_limits_query(
    device_type: i32,
    device_id: i32,
    limits: *mut pkv_device_limits,
) -> Status {
    guard(|| {
        // SAFETY: forwarded contract.
        let size = unsafe { out_struct_size(limits, "limits") }?;
        let kind = DeviceKind::try_from(device_type)?;
        if kind == DeviceKind::Cpu {
            return Err(Error::new(
                Status::UnsupportedDevice,
                "device_type = 1 (CPU) has no GPU limits; expected 2 or 10",
            ));
        }
        let l = crate::gpu::device_limits(Device { kind, id: device_id })?;
        let mut out = pkv_device_limits {
            struct_size: size,
            wave_size: l.wave_size,
            shared_mem_per_block: l.shared_mem_per_block,
            shared_mem_per_block_optin: l.shared_mem_per_block_optin,
            multiprocessor_count: l.multiprocessor_count,
            reserved: 0,
            arch: [0; crate::capi::types::PKV_ARCH_NAME_LEN],
        };
        fill_c_text(&mut out.arch, &l.arch);
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { out_write(limits, "limits", out) }
    })
}

/// Validation and planning of a call exactly as `pkv_paged_attention` does them, without the
/// launch: what the host-overhead benchmark (`benches/host_overhead.rs`) times. Not exported.
///
/// # Safety
/// As `pkv_paged_attention`.
#[doc(hidden)]
pub unsafe fn validate_and_plan(args: *const pkv_paged_attention_args, target: &Target) -> Result<Plan> {
    // SAFETY: forwarded contract.
    let read = unsafe { ReadArgs::read(args) }?;
    ops::plan(&read.args(), target).map(|(_, plan)| plan)
}
