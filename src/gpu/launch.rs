//! The GPU backend's entry points, shared by CUDA and ROCm: cached device limits, and the two
//! operations, which fill the kernels' launch arguments and enqueue them on the caller's
//! stream. No synchronisation and no allocation happen here: scratch comes from the caller's
//! workspace, and errors are the launch's own (execution errors surface on the caller's
//! stream, as with any asynchronous kernel).

use std::ffi::{c_int, c_void};
use std::sync::{Mutex, OnceLock};

use super::params::{AttentionParams, WriteParams, attention_params, write_params};
use super::runtime;
use crate::core::attention::AttentionProblem;
use crate::core::dtype::Device;
use crate::core::plan::{DeviceLimits, GeneralKernel, KERNEL_THREADS, PREFILL_MMA_THREADS, Plan, decode_threads};
use crate::core::status::{Error, Result, Status};
use crate::core::write::WriteProblem;

unsafe extern "C" {
    /// kernels/write_kv.hip: enqueues the cache write; returns the runtime's error code.
    fn pkv_kernel_write_kv_cache(params: *const WriteParams, stream: *mut c_void) -> c_int;
    /// kernels/attention.hip: enqueues attention (and the split reduce); returns the code.
    fn pkv_kernel_paged_attention(params: *const AttentionParams, stream: *mut c_void) -> c_int;
    /// kernels/decode.hip: enqueues the decode kernel for one-token sequences (and its split
    /// reduce) when `decode_kernel` is set; returns the code.
    fn pkv_kernel_paged_decode(params: *const AttentionParams, stream: *mut c_void) -> c_int;
}

fn check_device(device: Device) -> Result<()> {
    if device.kind != runtime::DEVICE_KIND {
        return Err(Error::new(
            Status::UnsupportedDevice,
            format!(
                "tensors on {} cannot be used: this libpagedkv was built with the {} backend (device type {})",
                device.describe(),
                runtime::RUNTIME,
                runtime::DEVICE_KIND as i32
            ),
        ));
    }
    Ok(())
}

/// The planner's view of `device`, read once per device and cached for the process.
pub fn device_limits(device: Device) -> Result<DeviceLimits> {
    check_device(device)?;
    Ok(apply_test_limits(cached_limits(device)?))
}

/// Test hook, off unless `PKV_TEST_DEVICE_LIMITS` is set (e.g. `arch=gfx942,smem=65536,cus=304`):
/// the planner then sees those limits instead of the device's own, so that the NVIDIA proof
/// runs the plans (tile, splits, fp8 flavour) an AMD GPU would get. The kernels still run on
/// this device, so shared memory is only ever lowered.
fn apply_test_limits(mut l: DeviceLimits) -> DeviceLimits {
    static SPEC: OnceLock<Vec<(String, String)>> = OnceLock::new();
    let spec = SPEC.get_or_init(|| {
        std::env::var("PKV_TEST_DEVICE_LIMITS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    });
    for (key, value) in spec {
        let n = value.parse::<u64>().ok();
        match (key.as_str(), n) {
            ("arch", _) => l.arch = value.clone(),
            ("smem", Some(n)) => {
                l.shared_mem_per_block_optin = n.min(l.shared_mem_per_block_optin);
                l.shared_mem_per_block = l.shared_mem_per_block.min(l.shared_mem_per_block_optin);
            }
            ("cus", Some(n)) => l.multiprocessor_count = n.max(1) as u32,
            ("wave", Some(n)) => l.wave_size = n.max(1) as u32,
            _ => {}
        }
    }
    l
}

fn cached_limits(device: Device) -> Result<DeviceLimits> {
    static CACHE: OnceLock<Mutex<Vec<(i32, DeviceLimits)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    if let Some((_, l)) = cache.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(id, _)| *id == device.id) {
        return Ok(l.clone());
    }
    // Queried outside the lock (a first query may initialise the runtime); a racing thread
    // stores the same values.
    let limits = runtime::query_limits(device.id)?;
    let mut entries = cache.lock().unwrap_or_else(|e| e.into_inner());
    if !entries.iter().any(|(id, _)| *id == device.id) {
        entries.push((device.id, limits.clone()));
    }
    Ok(limits)
}

fn launch_error(code: c_int, what: &str) -> Error {
    Error::new(Status::LaunchFailed, format!("{what}: {} error {}", runtime::RUNTIME, runtime::error_text(code)))
}

pub fn write_kv_cache(p: &WriteProblem, stream: usize) -> Result<()> {
    check_device(p.device)?;
    if p.num_tokens == 0 {
        return Ok(());
    }
    let params = write_params(p)?;
    let _guard = runtime::DeviceGuard::enter(p.device.id)?;
    // SAFETY: `params` describes device memory validated by core (shapes, strides, dtypes,
    // extents); the kernel only reads/writes inside those extents and skips slots outside the
    // cache. `stream` is the caller's stream handle (0 = the default stream), per the C API.
    let code = unsafe { pkv_kernel_write_kv_cache(&params, stream as *mut c_void) };
    if code != 0 {
        return Err(launch_error(code, "launching the cache writer"));
    }
    Ok(())
}

pub fn paged_attention(
    p: &AttentionProblem,
    plan: &Plan,
    workspace: usize,
    workspace_bytes: u64,
    stream: usize,
) -> Result<()> {
    check_device(p.device)?;
    let decode_threads = plan.decode.map(|d| decode_threads(p.head_size as u32, d.kernel));
    let general_threads = match plan.general.kernel {
        GeneralKernel::Fma => KERNEL_THREADS,
        GeneralKernel::TensorCores => PREFILL_MMA_THREADS,
    };
    if plan.threads != general_threads && Some(plan.threads) != decode_threads {
        return Err(Error::new(
            Status::Internal,
            format!(
                "plan asks for {} threads, the attention kernels are compiled for {general_threads} (general) and \
                 {decode_threads:?} (decode)",
                plan.threads
            ),
        ));
    }
    let decode_splits = plan.decode.map_or(1, |d| d.num_splits);
    if plan.general.num_splits > 1 || decode_splits > 1 {
        // ops checked size and presence; the kernels store partials as 16-byte vectors.
        debug_assert!(workspace_bytes >= plan.workspace_bytes);
        if workspace % 16 != 0 {
            return Err(Error::new(
                Status::InvalidValue,
                format!(
                    "workspace = {workspace:#x} is not 16-byte aligned (split-KV partials are stored as 16-byte vectors)"
                ),
            ));
        }
    }
    let params = attention_params(p, plan, workspace)?;
    if p.num_tokens == 0 || p.num_seqs == 0 {
        return Ok(());
    }
    let _guard = runtime::DeviceGuard::enter(p.device.id)?;
    // SAFETY: `params` describes device memory validated by core; the kernel clamps the values
    // it reads from the device (lengths, offsets, block ids) so that it stays inside the
    // validated extents, and uses the caller's workspace of `workspace_bytes` >= the plan's.
    // The decode kernel first: it carries decode-shaped batches; the general kernel then only
    // serves (and otherwise quickly skips) the sequences with other query lengths. Both write
    // disjoint output rows. On sm_90+ the decode kernel's split reduce and the general kernel
    // are programmatic dependents that overlap the end of the kernel before them (the plan's
    // `overlap_next`; kernels/attention.hip says how stream order is kept).
    let code = unsafe { pkv_kernel_paged_decode(&params, stream as *mut c_void) };
    if code != 0 {
        return Err(launch_error(code, "launching paged attention (decode kernel)"));
    }
    if plan.decode.is_some_and(|d| d.covers_all) {
        // The caller bounded every query to one token: the decode kernel serves every row.
        return Ok(());
    }
    // SAFETY: as above.
    let code = unsafe { pkv_kernel_paged_attention(&params, stream as *mut c_void) };
    if code != 0 {
        return Err(launch_error(code, "launching paged attention"));
    }
    Ok(())
}
