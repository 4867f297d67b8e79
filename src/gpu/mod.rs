//! GPU backend: device queries and kernel launches. Built with the `cuda` or `rocm` feature;
//! without either, every entry point says how to build one.
//!
//! - `params`: the kernels' launch arguments (`kernels/pkv_params.h`), proven on the host;
//! - `launch`: the three entry points, shared by both runtimes;
//! - `cuda` / `hip`: the runtime's device queries, device guard and error text.

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
