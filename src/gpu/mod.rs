//! GPU backend: device queries and kernel launches. Built with the `cuda` or `rocm` feature;
//! without either, every entry point says how to build one.

use crate::core::attention::AttentionProblem;
use crate::core::dtype::Device;
use crate::core::plan::{DeviceLimits, Plan};
use crate::core::status::{Error, Result, Status};
use crate::core::write::WriteProblem;

#[cfg(all(feature = "cuda", feature = "rocm"))]
compile_error!("features `cuda` and `rocm` are mutually exclusive: build with one GPU backend");

/// Build targets the GPU code was compiled for ("" for a CPU-only build).
pub const GPU_TARGETS: &str = match option_env!("PKV_BUILT_GPU_TARGETS") {
    Some(t) => t,
    None => "",
};

#[cfg(not(any(feature = "cuda", feature = "rocm")))]
mod disabled {
    use super::*;

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
