//! Version, features, status strings and the last-error message.

use std::ffi::c_char;

use crate::capi::boundary::{guard, last_error_ptr};
use crate::capi::ffi_args::{arg_str, out_present, out_write};
use crate::capi::types::*;
use crate::core::dtype::KvCacheDtype;
use crate::core::status::Status;

/// The library version as "MAJOR.MINOR.PATCH" (static storage; never NULL). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn pkv_version_string() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The library version as `MAJOR * 10000 + MINOR * 100 + PATCH`; equals the header's
/// `PKV_VERSION_NUMBER` when header and library match. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn pkv_version_number() -> u32 {
    PKV_VERSION_NUMBER
}

/// Backends compiled in: `PKV_FEATURE_CPU` always, plus `PKV_FEATURE_CUDA` or
/// `PKV_FEATURE_ROCM`. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn pkv_features() -> u32 {
    let gpu = if cfg!(feature = "cuda") {
        PKV_FEATURE_CUDA
    } else if cfg!(feature = "rocm") {
        PKV_FEATURE_ROCM
    } else {
        0
    };
    PKV_FEATURE_CPU | gpu
}

/// GPU targets the kernels were compiled for, ';'-separated ("gfx90a;gfx942;gfx1100",
/// "sm_90"), or "" for a CPU-only build. Static storage; never NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn pkv_gpu_targets() -> *const c_char {
    static TARGETS: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();
    TARGETS.get_or_init(|| std::ffi::CString::new(crate::gpu::GPU_TARGETS).unwrap_or_default()).as_ptr()
}

/// The name of a status value ("PKV_STATUS_SLOT_OUT_OF_RANGE"), or "PKV_STATUS_UNKNOWN" for a
/// value that was never assigned. Static storage; never NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn pkv_status_string(status: u32) -> *const c_char {
    match Status::from_u32(status) {
        Some(s) => s.name().as_ptr() as *const c_char,
        None => c"PKV_STATUS_UNKNOWN".as_ptr(),
    }
}

/// The message of the last failed call on this thread (empty after a success): it names the
/// argument, its value and what was expected. Valid until the next pagedkv call on this thread.
#[unsafe(no_mangle)]
pub extern "C" fn pkv_last_error_message() -> *const c_char {
    last_error_ptr()
}

/// Parses one of vLLM's `kv_cache_dtype` strings ("auto", "fp8", "fp8_e4m3", "fp8_e4m3fn",
/// "fp8_e4m3fnuz", "fp8_e5m2") into a `PKV_KV_CACHE_DTYPE_*` value written to `*out` on success.
/// Returns `PKV_STATUS_NULL_ARGUMENT` or `PKV_STATUS_UNKNOWN_KV_CACHE_DTYPE`. Thread-safe.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn pkv_kv_cache_dtype_from_string(name: *const c_char, out: *mut u32) -> Status {
    guard(|| {
        out_present(out, "out")?;
        // SAFETY: the caller's contract on `name`.
        let parsed = KvCacheDtype::parse(unsafe { arg_str(name, "name") }?)?;
        // SAFETY: checked non-NULL above; the caller's contract on `out`.
        unsafe { out_write(out, "out", parsed as u32) }
    })
}
