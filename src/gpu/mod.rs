//! GPU backend: device queries and kernel launches. Built with the `cuda` or `rocm` feature;
//! without either, every entry point says how to build one.
//!
//! - `params`: the kernels' launch arguments (`kernels/pkv_params.h`), proven on the host;
//! - `launch`: the three entry points, shared by both runtimes;
//! - `cuda` / `hip`: the runtime's device queries and device guard, through its FFI names;
//! - `runtime_error` (here): the error text and status mapping both runtimes share.

#[cfg(all(feature = "cuda", feature = "rocm"))]
compile_error!("features `cuda` and `rocm` are mutually exclusive: build with one GPU backend");

/// Build targets the GPU code was compiled for ("" for a CPU-only build).
pub const GPU_TARGETS: &str = match option_env!("PKV_BUILT_GPU_TARGETS") {
    Some(t) => t,
    None => "",
};

#[cfg(not(any(feature = "cuda", feature = "rocm")))]
mod disabled {
    use crate::core::attention::AttentionProblem;
    use crate::core::dtype::Device;
    use crate::core::plan::{DeviceLimits, Plan};
    use crate::core::status::{Error, Result, Status};
    use crate::core::write::WriteProblem;

    fn not_built(device: Device) -> Error {
        Error::new(
            Status::GpuBackendNotBuilt,
            format!(
                "tensors on {} need a GPU backend, but this libpagedkv was built CPU-only; rebuild with \
                 `cargo build --release --features rocm` (AMD, needs hipcc) or `--features cuda` (NVIDIA, needs nvcc)",
                device.describe()
            ),
        )
    }

    pub fn device_limits(device: Device) -> Result<DeviceLimits> {
        Err(not_built(device))
    }

    pub fn write_kv_cache(p: &WriteProblem, _stream: usize) -> Result<()> {
        Err(not_built(p.device))
    }

    pub fn paged_attention(
        p: &AttentionProblem,
        _plan: &Plan,
        _ws: usize,
        _ws_bytes: u64,
        _stream: usize,
    ) -> Result<()> {
        Err(not_built(p.device))
    }
}

#[cfg(not(any(feature = "cuda", feature = "rocm")))]
pub use disabled::*;

// The runtime layer is internal: none of it is C API (cbindgen skips these modules).
/// cbindgen:ignore
#[cfg(feature = "cuda")]
mod cuda;
/// cbindgen:ignore
#[cfg(all(feature = "rocm", not(feature = "cuda")))]
mod hip;
/// cbindgen:ignore
#[cfg(any(feature = "cuda", feature = "rocm"))]
mod launch;
/// cbindgen:ignore
#[cfg(any(feature = "cuda", feature = "rocm"))]
mod params;
#[cfg(feature = "cuda")]
use cuda as runtime;
#[cfg(all(feature = "rocm", not(feature = "cuda")))]
use hip as runtime;

#[cfg(any(feature = "cuda", feature = "rocm"))]
pub use launch::{device_limits, paged_attention, write_kv_cache};

/// cbindgen:ignore
#[cfg(any(feature = "cuda", feature = "rocm"))]
mod runtime_error {
    use std::ffi::{CStr, c_char, c_int};

    use super::runtime;
    use crate::core::status::{Error, Result, Status};

    // Both runtimes number these alike (HIP kept CUDA's values). Codes are taken as plain
    // integers because a code that a newer runtime adds would be an invalid Rust enum value.
    const SUCCESS: c_int = 0;
    const ERROR_INSUFFICIENT_DRIVER: c_int = 35;
    const ERROR_NO_DEVICE: c_int = 100;

    /// `cudaGetErrorName` / `cudaGetErrorString` and their HIP twins.
    type ErrorStringFn = unsafe extern "C" fn(c_int) -> *const c_char;

    /// "nameX (code): description" for a runtime error code, from the runtime's `name` and
    /// `text` functions.
    ///
    /// # Safety
    /// `name` and `text` must accept any code and return NULL or a static NUL-terminated string.
    pub unsafe fn runtime_error_text(name: ErrorStringFn, text: ErrorStringFn, code: c_int) -> String {
        let read = |f: ErrorStringFn| {
            // SAFETY: the caller guarantees `f` accepts any code.
            let p = unsafe { f(code) };
            if p.is_null() {
                // Some runtime versions return NULL for codes they do not know.
                "unknown".to_string()
            } else {
                // SAFETY: the caller guarantees non-NULL results point at static C strings.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        format!("{} ({code}): {}", read(name), read(text))
    }

    /// Maps a runtime call's return code to a status: "no device" and "driver too old" are
    /// `NoDevice`, any other failure is a `DeviceError` that names `what` failed.
    pub fn check_runtime(code: c_int, what: &str) -> Result<()> {
        let status = match code {
            SUCCESS => return Ok(()),
            ERROR_NO_DEVICE | ERROR_INSUFFICIENT_DRIVER => Status::NoDevice,
            _ => Status::DeviceError,
        };
        Err(Error::new(status, format!("{what}: {} error {}", runtime::RUNTIME, runtime::error_text(code))))
    }
}
#[cfg(any(feature = "cuda", feature = "rocm"))]
use runtime_error::{check_runtime, runtime_error_text};
