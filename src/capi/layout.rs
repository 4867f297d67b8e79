//! Cache views: split a combined cache, detect the native layout, import DLPack tensors.

use std::ffi::c_void;

use crate::capi::boundary::guard;
use crate::capi::ffi_args::{arg_ref, out_present, out_write, tensor_arg, tensor_desc, tensor_to_c};
use crate::capi::types::{PKV_MAX_DIMS, pkv_tensor};
use crate::core::dlpack::dtype_from_dlpack;
use crate::core::dtype::{Device, DeviceKind};
use crate::core::layout::{has_native_layout, split_kv_cache};
use crate::core::status::{Error, Status};
use crate::core::tensor::TensorDesc;

/// Splits vLLM's combined ROCm cache `[2, num_blocks, block_size, num_kv_heads, head_size]`
/// (or any strided view of it whose per-block dims are packed: K/V-first, blocks-first,
/// hybrid K/V-interleaved) into views sharing its memory:
/// key `[num_blocks, num_kv_heads, head_size/x, block_size, x]` and
/// value `[num_blocks, num_kv_heads, head_size, block_size]`, `x = 16 / element size`.
/// The input's block stride (dim 1) is preserved, so padded pages stay padded.
/// Nothing is read or written on the device; `*key_cache` and `*value_cache` are written on
/// success only. Errors: NULL arguments, `PKV_STATUS_INVALID_NDIM`, `PKV_STATUS_SHAPE_MISMATCH`
/// (dim 0 not 2, heads/head size disagree with the shape), `PKV_STATUS_INVALID_STRIDE` (a block
/// not packed), `PKV_STATUS_HEAD_SIZE_NOT_DIVISIBLE`. Thread-safe.
///
/// # Safety
/// Pointers are NULL or valid; `key_cache`/`value_cache` are writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn pkv_split_kv_cache(
    kv_cache: *const pkv_tensor,
    num_kv_heads: i64,
    head_size: i64,
    key_cache: *mut pkv_tensor,
    value_cache: *mut pkv_tensor,
) -> Status {
    guard(|| {
        out_present(key_cache, "key_cache")?;
        out_present(value_cache, "value_cache")?;
        // SAFETY: the caller's contract on `kv_cache`.
        let kv = unsafe { tensor_arg(kv_cache, "kv_cache") }?;
        let (k, v) = split_kv_cache(&kv, num_kv_heads, head_size)?;
        // SAFETY: both checked non-NULL; the caller's contract says writable.
        unsafe {
            out_write(key_cache, "key_cache", tensor_to_c(&k))?;
            out_write(value_cache, "value_cache", tensor_to_c(&v))
        }
    })
}

/// Writes to `*is_native` whether both caches are "native" (packed blocks): for each,
/// `stride(0) == product(shape[1:])`. vLLM's `has_native_kv_cache_layout`. Written on success
/// only. Errors: NULL arguments, `PKV_STATUS_INVALID_NDIM`, `PKV_STATUS_DEVICE_MISMATCH`.
/// Thread-safe.
///
/// # Safety
/// Pointers are NULL or valid; `is_native` is writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn pkv_has_native_layout(
    key_cache: *const pkv_tensor,
    value_cache: *const pkv_tensor,
    is_native: *mut bool,
) -> Status {
    guard(|| {
        out_present(is_native, "is_native")?;
        // SAFETY: the caller's contract on the tensor pointers.
        let (k, v) = unsafe { (tensor_arg(key_cache, "key_cache")?, tensor_arg(value_cache, "value_cache")?) };
        let native = has_native_layout(&k, &v)?;
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { out_write(is_native, "is_native", native) }
    })
}

/// DLPack's `DLTensor` (dlpack.h), as read by `pkv_tensor_from_dlpack`.
#[repr(C)]
struct DlTensor {
    data: *mut c_void,
    device_type: i32,
    device_id: i32,
    ndim: i32,
    dtype_code: u8,
    dtype_bits: u8,
    dtype_lanes: u16,
    shape: *const i64,
    strides: *const i64,
    byte_offset: u64,
}

/// Describes a DLPack `DLTensor*` (not the managed capsule: pass `&managed->dl_tensor`) as a
/// `pkv_tensor`, written to `*out` on success. NULL strides mean row-major contiguous;
/// pinned host memory (DLPack devices 3 and 11) is described as host memory.
/// The DLTensor is only read; its owner keeps it alive as long as the data is used.
/// Errors: NULL arguments, `PKV_STATUS_INVALID_NDIM` (more than `PKV_MAX_DIMS`),
/// `PKV_STATUS_INVALID_DTYPE`, `PKV_STATUS_INVALID_ENUM` (device type). Thread-safe.
///
/// # Safety
/// `dl_tensor` is NULL or a valid `DLTensor*` whose shape/strides arrays hold `ndim` entries.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn pkv_tensor_from_dlpack(dl_tensor: *const c_void, out: *mut pkv_tensor) -> Status {
    guard(|| {
        out_present(out, "out")?;
        // SAFETY: the caller's contract: NULL or a valid DLTensor.
        let dl = unsafe { arg_ref(dl_tensor as *const DlTensor, "dl_tensor") }?;
        if dl.ndim < 0 || dl.ndim as usize > PKV_MAX_DIMS {
            return Err(Error::new(
                Status::InvalidNdim,
                format!("dl_tensor.ndim = {}, expected 0..={PKV_MAX_DIMS}", dl.ndim),
            ));
        }
        let ndim = dl.ndim as usize;
        let dtype = dtype_from_dlpack(dl.dtype_code, dl.dtype_bits, dl.dtype_lanes)?;
        // Pinned host memory (kDLCUDAHost = 3, kDLROCMHost = 11) is host memory to us.
        let (device_type, device_id) = match dl.device_type {
            3 | 11 => (DeviceKind::Cpu as i32, 0),
            other => (other, dl.device_id),
        };
        let kind = DeviceKind::try_from(device_type)?;
        // SAFETY: DLPack guarantees `shape` holds `ndim` entries (checked non-NULL when ndim > 0).
        let shape: &[i64] = if ndim == 0 {
            &[]
        } else {
            unsafe { std::slice::from_raw_parts(arg_ref(dl.shape, "dl_tensor.shape")?, ndim) }
        };
        let desc = if dl.strides.is_null() {
            TensorDesc::contiguous(0, Device { kind, id: device_id }, dtype, shape)
        } else {
            // SAFETY: non-NULL strides hold `ndim` entries per DLPack.
            let strides = unsafe { std::slice::from_raw_parts(dl.strides, ndim) };
            let mut t = TensorDesc::contiguous(0, Device { kind, id: device_id }, dtype, shape);
            t.strides[..ndim].copy_from_slice(strides);
            t
        };
        let mut c = tensor_to_c(&desc);
        c.data = dl.data;
        c.byte_offset = dl.byte_offset;
        tensor_desc(&c, "dl_tensor")?;
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { out_write(out, "out", c) }
    })
}
