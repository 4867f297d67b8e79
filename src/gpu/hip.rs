//! The HIP runtime (ROCm). Attribute numbers come from the `hip-sys` bindings; the few
//! functions are declared here with plain integer error codes, because hip-sys returns
//! `hipError_t` as a Rust enum and a code that a newer ROCm adds would be an invalid enum
//! value (undefined behaviour) instead of an error to report. The architecture name is read
//! by `kernels/device_info.hip`, compiled against the installed headers, since
//! `hipDeviceProp_t` changed layout in ROCm 6. Every unsafe block is one FFI call.

use std::ffi::{CStr, c_char, c_int};

use super::check_runtime;
use hip_sys::hiprt::hipDeviceAttribute_t as Attr;

use crate::core::dtype::DeviceKind;
use crate::core::plan::DeviceLimits;
use crate::core::status::{Error, Result, Status};

pub const DEVICE_KIND: DeviceKind = DeviceKind::Rocm;
pub const RUNTIME: &str = "HIP";

const ARCH_NAME_CAPACITY: usize = 256;

unsafe extern "C" {
    fn hipGetDeviceCount(count: *mut c_int) -> c_int;
    fn hipDeviceGetAttribute(value: *mut c_int, attr: c_int, device: c_int) -> c_int;
    fn hipGetDevice(device: *mut c_int) -> c_int;
    fn hipSetDevice(device: c_int) -> c_int;
    fn hipGetErrorName(error: c_int) -> *const c_char;
    fn hipGetErrorString(error: c_int) -> *const c_char;
    /// kernels/device_info.hip
    fn pkv_kernel_device_arch(device: c_int, out: *mut c_char, capacity: c_int) -> c_int;
}

/// "hipErrorX (code): description" for a runtime error code.
pub fn error_text(code: c_int) -> String {
    // SAFETY: both functions accept any code and return NULL or a static NUL-terminated string.
    unsafe { super::runtime_error_text(hipGetErrorName, hipGetErrorString, code) }
}

fn attribute(attr: Attr, device: i32, what: &str) -> Result<i32> {
    let mut v: c_int = 0;
    // SAFETY: `v` is a valid out-pointer; the attribute is a hipDeviceAttribute_t value.
    check_runtime(unsafe { hipDeviceGetAttribute(&mut v, attr as c_int, device) }, what)?;
    Ok(v)
}

/// Reads the planner's view of device `id` from the runtime (uncached).
pub fn query_limits(id: i32) -> Result<DeviceLimits> {
    let mut count: c_int = 0;
    // SAFETY: `count` is a valid out-pointer.
    check_runtime(unsafe { hipGetDeviceCount(&mut count) }, "hipGetDeviceCount")?;
    if id < 0 || id >= count {
        return Err(Error::new(
            Status::NoDevice,
            format!("device id {id} is not a visible HIP device ({count} visible; HIP_VISIBLE_DEVICES applies)"),
        ));
    }
    let mut name = [0 as c_char; ARCH_NAME_CAPACITY];
    // SAFETY: `name` is writable for ARCH_NAME_CAPACITY bytes, the capacity passed.
    let code = unsafe { pkv_kernel_device_arch(id, name.as_mut_ptr(), ARCH_NAME_CAPACITY as c_int) };
    check_runtime(code, "device arch")?;
    // SAFETY: the helper NUL-terminates within the capacity.
    let full = unsafe { CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned();
    // "gfx942:sramecc+:xnack-" -> "gfx942": feature flags do not change what the planner does.
    let arch = full.split(':').next().unwrap_or("").to_string();
    let smem = attribute(Attr::hipDeviceAttributeMaxSharedMemoryPerBlock, id, "shared memory per block")?;
    // AMD has no opt-in beyond the default; some runtimes report 0 here.
    let optin = attribute(Attr::hipDeviceAttributeSharedMemPerBlockOptin, id, "opt-in shared memory").unwrap_or(0);
    Ok(DeviceLimits {
        arch,
        wave_size: attribute(Attr::hipDeviceAttributeWarpSize, id, "wave size")?.max(1) as u32,
        shared_mem_per_block: smem.max(0) as u64,
        shared_mem_per_block_optin: optin.max(smem).max(0) as u64,
        multiprocessor_count: attribute(Attr::hipDeviceAttributeMultiprocessorCount, id, "compute unit count")?.max(1)
            as u32,
    })
}

/// Makes `id` the calling thread's current device for a launch and restores the caller's on
/// drop.
pub struct DeviceGuard {
    previous: Option<c_int>,
}

impl DeviceGuard {
    pub fn enter(id: i32) -> Result<DeviceGuard> {
        let mut current: c_int = 0;
        // SAFETY: `current` is a valid out-pointer.
        check_runtime(unsafe { hipGetDevice(&mut current) }, "hipGetDevice")?;
        if current == id {
            return Ok(DeviceGuard { previous: None });
        }
        // SAFETY: plain runtime call; `id` was checked against the device count.
        check_runtime(unsafe { hipSetDevice(id) }, "hipSetDevice")?;
        Ok(DeviceGuard { previous: Some(current) })
    }
}

impl Drop for DeviceGuard {
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            // SAFETY: restores the device current before `enter`.
            let _ = unsafe { hipSetDevice(previous) };
        }
    }
}
