//! `pkv_write_kv_cache`.

use std::ffi::c_void;

use crate::capi::boundary::guard;
use crate::capi::ffi_args::{arg_sized, optional_tensor_arg, out_write, tensor_arg};
use crate::capi::types::pkv_write_kv_cache_args;
use crate::core::dtype::{KvCacheDtype, KvLayout};
use crate::core::status::Status;
use crate::core::write::WriteArgs;
use crate::ops;

/// Scatters `key`/`value` rows into the caches at `slot_mapping` (vLLM's `reshape_and_cache`
/// for the native split layout with block size 16 or 32, the stride-aware writer otherwise;
/// NHD caches always take the stride-aware writer). Negative slots are skipped; rows of `key`
/// past `len(slot_mapping)` are ignored. fp8 caches store `fp8(x / scale)`, rounded to nearest
/// even and saturated. If `path_taken` is not NULL it receives `PKV_WRITE_PATH_NATIVE` or
/// `PKV_WRITE_PATH_STRIDED` on success.
///
/// Host tensors are written before return. Device tensors: the kernel is enqueued on `stream`
/// (a `hipStream_t`/`cudaStream_t`; NULL = the default stream), nothing is synchronised or
/// allocated. Every argument is checked first and nothing is written on error. Host slots
/// past the cache fail with `PKV_STATUS_SLOT_OUT_OF_RANGE`; on a device the values cannot be
/// read without a sync, so such slots are skipped by the kernel instead (never written out of
/// bounds). Thread-safe for calls that write disjoint slots.
///
/// # Safety
/// `args` and its tensor pointers are NULL or valid; the described memory is valid for the
/// call (host) or until the enqueued work completes (device).
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn pkv_write_kv_cache(
    args: *const pkv_write_kv_cache_args,
    stream: *mut c_void,
    path_taken: *mut u32,
) -> Status {
    guard(|| {
        // SAFETY: the caller's contract on `args` and its tensors.
        let a = unsafe { arg_sized(args, "args") }?;
        let (key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale) = unsafe {
            (
                tensor_arg(a.key, "key")?,
                tensor_arg(a.value, "value")?,
                tensor_arg(a.key_cache, "key_cache")?,
                tensor_arg(a.value_cache, "value_cache")?,
                tensor_arg(a.slot_mapping, "slot_mapping")?,
                optional_tensor_arg(a.k_scale, "k_scale")?,
                optional_tensor_arg(a.v_scale, "v_scale")?,
            )
        };
        let write_args = WriteArgs {
            kv_layout: KvLayout::try_from(a.kv_layout)?,
            key: &key,
            value: &value,
            key_cache: &key_cache,
            value_cache: &value_cache,
            slot_mapping: &slot_mapping,
            kv_cache_dtype: KvCacheDtype::try_from(a.kv_cache_dtype)?,
            k_scale: k_scale.as_ref(),
            v_scale: v_scale.as_ref(),
        };
        let path = ops::write_kv_cache(&write_args, stream as usize)?;
        if !path_taken.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { out_write(path_taken, "path_taken", path as u32) }?;
        }
        Ok(())
    })
}
