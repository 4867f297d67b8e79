//! The CUDA runtime, reached through the handful of cudart functions pagedkv needs, declared
//! here (cudart is linked statically by build.rs). Every unsafe block is one FFI call.

use std::ffi::{c_char, c_int};

use super::check_runtime;
use crate::core::dtype::DeviceKind;
use crate::core::plan::DeviceLimits;
use crate::core::status::{Error, Result, Status};

pub const DEVICE_KIND: DeviceKind = DeviceKind::Cuda;
pub const RUNTIME: &str = "CUDA";

// cudaDeviceAttr values (driver_types.h); part of CUDA's stable ABI.
const ATTR_MAX_SHARED_MEMORY_PER_BLOCK: c_int = 8;
const ATTR_WARP_SIZE: c_int = 10;
const ATTR_MULTIPROCESSOR_COUNT: c_int = 16;
const ATTR_COMPUTE_CAPABILITY_MAJOR: c_int = 75;
const ATTR_COMPUTE_CAPABILITY_MINOR: c_int = 76;
const ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: c_int = 97;

// Error codes are taken as plain integers (cudaError_t is a C enum: int-sized).
unsafe extern "C" {
    fn cudaGetDeviceCount(count: *mut c_int) -> c_int;
    fn cudaDeviceGetAttribute(value: *mut c_int, attr: c_int, device: c_int) -> c_int;
    fn cudaGetDevice(device: *mut c_int) -> c_int;
    fn cudaSetDevice(device: c_int) -> c_int;
    fn cudaGetErrorName(error: c_int) -> *const c_char;
    fn cudaGetErrorString(error: c_int) -> *const c_char;
}

/// "cudaErrorX (code): description" for a runtime error code.
pub fn error_text(code: c_int) -> String {
    // SAFETY: both functions accept any code and return NULL or a static NUL-terminated string.
    unsafe { super::runtime_error_text(cudaGetErrorName, cudaGetErrorString, code) }
}

fn attribute(attr: c_int, device: i32, what: &str) -> Result<i32> {
    let mut v: c_int = 0;
    // SAFETY: `v` is a valid out-pointer for the duration of the call.
    check_runtime(unsafe { cudaDeviceGetAttribute(&mut v, attr, device) }, what)?;
    Ok(v)
}

/// Reads the planner's view of device `id` from the runtime (uncached).
pub fn query_limits(id: i32) -> Result<DeviceLimits> {
    let mut count: c_int = 0;
    // SAFETY: `count` is a valid out-pointer.
    check_runtime(unsafe { cudaGetDeviceCount(&mut count) }, "cudaGetDeviceCount")?;
    if id < 0 || id >= count {
        return Err(Error::new(
            Status::NoDevice,
            format!("device id {id} is not a visible CUDA device ({count} visible; CUDA_VISIBLE_DEVICES applies)"),
        ));
    }
    let major = attribute(ATTR_COMPUTE_CAPABILITY_MAJOR, id, "compute capability")?;
    let minor = attribute(ATTR_COMPUTE_CAPABILITY_MINOR, id, "compute capability")?;
    let smem = attribute(ATTR_MAX_SHARED_MEMORY_PER_BLOCK, id, "shared memory per block")?;
    let optin = attribute(ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, id, "opt-in shared memory per block")?;
    Ok(DeviceLimits {
        arch: format!("sm_{major}{minor}"),
        wave_size: attribute(ATTR_WARP_SIZE, id, "warp size")?.max(1) as u32,
        shared_mem_per_block: smem.max(0) as u64,
        shared_mem_per_block_optin: optin.max(smem).max(0) as u64,
        multiprocessor_count: attribute(ATTR_MULTIPROCESSOR_COUNT, id, "multiprocessor count")?.max(1) as u32,
    })
}

/// Makes `id` the calling thread's current device for a launch and restores the caller's on
/// drop (launches go to the current device; the caller's stream belongs to the tensors' one).
pub struct DeviceGuard {
    previous: Option<c_int>,
}

impl DeviceGuard {
    pub fn enter(id: i32) -> Result<DeviceGuard> {
        let mut current: c_int = 0;
        // SAFETY: `current` is a valid out-pointer.
        check_runtime(unsafe { cudaGetDevice(&mut current) }, "cudaGetDevice")?;
        if current == id {
            return Ok(DeviceGuard { previous: None });
        }
        // SAFETY: plain runtime call; `id` was checked against the device count when the
        // limits were read.
        check_runtime(unsafe { cudaSetDevice(id) }, "cudaSetDevice")?;
        Ok(DeviceGuard { previous: Some(current) })
    }
}

impl Drop for DeviceGuard {
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            // SAFETY: restores the device that was current before `enter`; failure leaves the
            // launch's device current, which is all a drop can do.
            let _ = unsafe { cudaSetDevice(previous) };
        }
    }
}
