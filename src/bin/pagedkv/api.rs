//! Safe wrappers over the exported `pkv_*` functions for the CLI. The CLI deliberately goes
//! through the C ABI (raw structs, status codes, last-error messages), as a C++ engine would.

use std::ffi::{CStr, c_void};

use pagedkv::Status;
use pagedkv::capi::attention::{
    pkv_paged_attention, pkv_paged_attention_plan, pkv_paged_attention_plan_for_device,
    pkv_paged_attention_workspace_size,
};
use pagedkv::capi::info::pkv_last_error_message;
use pagedkv::capi::layout::{pkv_has_native_layout, pkv_split_kv_cache};
use pagedkv::capi::write::pkv_write_kv_cache;
use pagedkv::capi::*;

/// A failed call: status name and the library's message.
pub fn check(status: Status, what: &str) -> Result<(), String> {
    if status == Status::Ok {
        return Ok(());
    }
    // SAFETY: the library returns a valid NUL-terminated thread-local string.
    let msg = unsafe { CStr::from_ptr(pkv_last_error_message()) }.to_string_lossy().into_owned();
    Err(format!("{what} failed: {}: {msg}", status.name().trim_end_matches('\0')))
}

/// Describes `len` elements at `ptr` (host or device) with the given shape and strides.
pub fn tensor(ptr: *mut c_void, device_type: i32, dtype: u32, shape: &[i64], strides: &[i64]) -> pkv_tensor {
    let mut t = pkv_tensor {
        data: ptr,
        byte_offset: 0,
        device_type,
        device_id: 0,
        dtype,
        ndim: shape.len() as u32,
        shape: [0; PKV_MAX_DIMS],
        strides: [0; PKV_MAX_DIMS],
    };
    t.shape[..shape.len()].copy_from_slice(shape);
    t.strides[..strides.len()].copy_from_slice(strides);
    t
}

/// Row-major strides of `shape`.
pub fn contiguous_strides(shape: &[i64]) -> Vec<i64> {
    let mut s = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

pub fn split_kv_cache(kv: &pkv_tensor, num_kv_heads: i64, head_size: i64) -> Result<(pkv_tensor, pkv_tensor), String> {
    let mut k = std::mem::MaybeUninit::<pkv_tensor>::uninit();
    let mut v = std::mem::MaybeUninit::<pkv_tensor>::uninit();
    // SAFETY: valid pointers; outputs are written on success only, and read only then.
    unsafe {
        check(pkv_split_kv_cache(kv, num_kv_heads, head_size, k.as_mut_ptr(), v.as_mut_ptr()), "pkv_split_kv_cache")?;
        Ok((k.assume_init(), v.assume_init()))
    }
}

pub fn has_native_layout(k: &pkv_tensor, v: &pkv_tensor) -> Result<bool, String> {
    let mut native = false;
    // SAFETY: valid pointers for the call.
    check(unsafe { pkv_has_native_layout(k, v, &mut native) }, "pkv_has_native_layout")?;
    Ok(native)
}

pub fn write_kv_cache(args: &pkv_write_kv_cache_args, stream: *mut c_void) -> Result<u32, String> {
    let mut path = 0u32;
    // SAFETY: `args` and the tensors it points to are valid for the call.
    check(unsafe { pkv_write_kv_cache(args, stream, &mut path) }, "pkv_write_kv_cache")?;
    Ok(path)
}

pub fn empty_plan() -> pkv_attention_plan {
    pkv_attention_plan {
        struct_size: std::mem::size_of::<pkv_attention_plan>() as u32,
        path: 0,
        tile_size: 0,
        block_q: 0,
        num_splits: 0,
        threads: 0,
        shared_mem_bytes: 0,
        workspace_bytes: 0,
        reason: [0; PKV_PLAN_REASON_LEN],
    }
}

pub fn plan(args: &pkv_paged_attention_args) -> Result<pkv_attention_plan, String> {
    let mut plan = empty_plan();
    // SAFETY: valid pointers for the call.
    check(unsafe { pkv_paged_attention_plan(args, &mut plan) }, "pkv_paged_attention_plan")?;
    Ok(plan)
}

pub fn plan_for_device(
    args: &pkv_paged_attention_args,
    limits: &pkv_device_limits,
) -> Result<pkv_attention_plan, String> {
    let mut plan = empty_plan();
    // SAFETY: valid pointers for the call.
    check(
        unsafe { pkv_paged_attention_plan_for_device(args, limits, &mut plan) },
        "pkv_paged_attention_plan_for_device",
    )?;
    Ok(plan)
}

pub fn workspace_size(args: &pkv_paged_attention_args) -> Result<u64, String> {
    let mut bytes = 0u64;
    // SAFETY: valid pointers for the call.
    check(unsafe { pkv_paged_attention_workspace_size(args, &mut bytes) }, "pkv_paged_attention_workspace_size")?;
    Ok(bytes)
}

pub fn paged_attention(
    args: &pkv_paged_attention_args,
    workspace: *mut c_void,
    bytes: u64,
    stream: *mut c_void,
) -> Result<(), String> {
    // SAFETY: `args`, its tensors and the workspace are valid for the call.
    check(unsafe { pkv_paged_attention(args, workspace, bytes, stream) }, "pkv_paged_attention")
}

pub fn path_name(path: u32) -> &'static str {
    match path {
        PKV_ATTENTION_PATH_CPU_REFERENCE => "cpu_reference",
        PKV_ATTENTION_PATH_GPU_SINGLE_PASS => "gpu_single_pass",
        PKV_ATTENTION_PATH_GPU_SPLIT_KV => "gpu_split_kv",
        _ => "unknown",
    }
}

pub fn write_path_name(path: u32) -> &'static str {
    match path {
        PKV_WRITE_PATH_NATIVE => "native",
        PKV_WRITE_PATH_STRIDED => "strided",
        _ => "unknown",
    }
}

pub fn describe_plan(p: &pkv_attention_plan) -> String {
    let reason: Vec<u8> = p.reason.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
    format!(
        "path {} | tile {} | block_q {} | splits {} | threads {} | smem {} B | workspace {} B\n      why: {}",
        path_name(p.path),
        p.tile_size,
        p.block_q,
        p.num_splits,
        p.threads,
        p.shared_mem_bytes,
        p.workspace_bytes,
        String::from_utf8_lossy(&reason)
    )
}
