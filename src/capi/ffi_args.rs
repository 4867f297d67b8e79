//! Every raw-pointer read of the C API, in one audited file. Each function checks for NULL
//! and names the argument in its error instead of dereferencing it.

use std::ffi::{CStr, c_char};

use crate::capi::types::{PKV_MAX_DIMS, pkv_tensor};
use crate::core::dtype::{DType, Device, DeviceKind};
use crate::core::status::{Error, Result, Status};
use crate::core::tensor::TensorDesc;

/// Borrows a required pointer argument.
///
/// # Safety
/// `p` is NULL or points to a valid, initialised `T` that outlives the call.
pub(crate) unsafe fn arg_ref<'a, T>(p: *const T, name: &str) -> Result<&'a T> {
    // SAFETY: the caller guarantees `p` is NULL or valid; NULL is handled.
    unsafe { p.as_ref() }.ok_or_else(|| Error::new(Status::NullArgument, format!("{name} is NULL")))
}

/// Borrows an argument struct that starts with `uint32_t struct_size`, checking that the
/// caller's struct holds every field this version reads.
///
/// # Safety
/// As `arg_ref`; additionally the first 4 bytes are `struct_size`.
pub(crate) unsafe fn arg_sized<'a, T>(p: *const T, name: &str) -> Result<&'a T> {
    if p.is_null() {
        return Err(Error::new(Status::NullArgument, format!("{name} is NULL")));
    }
    // SAFETY: non-NULL and, by the contract, starts with a u32 struct_size.
    let size = unsafe { *(p as *const u32) } as usize;
    if size < std::mem::size_of::<T>() {
        return Err(Error::new(
            Status::InvalidStructSize,
            format!(
                "{name}->struct_size = {size}, expected at least {} (sizeof in this version's header)",
                std::mem::size_of::<T>()
            ),
        ));
    }
    // SAFETY: non-NULL and at least size_of::<T>() bytes as declared by the caller.
    Ok(unsafe { &*p })
}

/// Writes an out-parameter (only called once everything else succeeded).
///
/// # Safety
/// `p` is NULL or valid for a write of `T`.
pub(crate) unsafe fn out_write<T>(p: *mut T, name: &str, value: T) -> Result<()> {
    if p.is_null() {
        return Err(Error::new(Status::NullArgument, format!("{name} is NULL")));
    }
    // SAFETY: non-NULL and valid per the contract.
    unsafe { p.write(value) };
    Ok(())
}

/// Checks an out-pointer is non-NULL before any work, so nothing is done for a call that
/// could not report its result.
pub(crate) fn out_present<T>(p: *mut T, name: &str) -> Result<()> {
    if p.is_null() { Err(Error::new(Status::NullArgument, format!("{name} is NULL"))) } else { Ok(()) }
}

/// Reads a C string argument.
///
/// # Safety
/// `p` is NULL or a valid NUL-terminated string.
pub(crate) unsafe fn arg_str<'a>(p: *const c_char, name: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::new(Status::NullArgument, format!("{name} is NULL")));
    }
    // SAFETY: non-NULL, NUL-terminated per the contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|_| Error::new(Status::InvalidValue, format!("{name} is not valid UTF-8")))
}

/// Converts a `pkv_tensor` into a checked descriptor.
pub(crate) fn tensor_desc(t: &pkv_tensor, name: &str) -> Result<TensorDesc> {
    let ndim = t.ndim as usize;
    if ndim > PKV_MAX_DIMS {
        return Err(Error::new(Status::InvalidNdim, format!("{name}.ndim = {ndim}, expected at most {PKV_MAX_DIMS}")));
    }
    let dtype = DType::try_from(t.dtype).map_err(|e| Error::new(e.status, format!("{name}.{}", e.message)))?;
    let kind =
        DeviceKind::try_from(t.device_type).map_err(|e| Error::new(e.status, format!("{name}.{}", e.message)))?;
    if t.byte_offset > i64::MAX as u64 {
        return Err(Error::new(Status::InvalidValue, format!("{name}.byte_offset = {} is too large", t.byte_offset)));
    }
    TensorDesc::from_parts(
        name,
        t.data as usize,
        t.byte_offset as i64,
        Device { kind, id: t.device_id },
        dtype,
        &t.shape[..ndim],
        &t.strides[..ndim],
    )
}

/// Reads a required tensor pointer.
///
/// # Safety
/// `p` is NULL or points to a valid `pkv_tensor`.
pub(crate) unsafe fn tensor_arg(p: *const pkv_tensor, name: &str) -> Result<TensorDesc> {
    // SAFETY: forwarded contract.
    tensor_desc(unsafe { arg_ref(p, name) }?, name)
}

/// Reads an optional tensor pointer (NULL = absent).
///
/// # Safety
/// `p` is NULL or points to a valid `pkv_tensor`.
pub(crate) unsafe fn optional_tensor_arg(p: *const pkv_tensor, name: &str) -> Result<Option<TensorDesc>> {
    // SAFETY: forwarded contract.
    match unsafe { p.as_ref() } {
        None => Ok(None),
        Some(t) => tensor_desc(t, name).map(Some),
    }
}

/// Converts a descriptor back to the C struct (for split views).
pub(crate) fn tensor_to_c(t: &TensorDesc) -> pkv_tensor {
    let mut out = pkv_tensor {
        data: t.addr as *mut std::ffi::c_void,
        byte_offset: 0,
        device_type: t.device.kind as i32,
        device_id: t.device.id,
        dtype: t.dtype as u32,
        ndim: t.ndim as u32,
        shape: [0; PKV_MAX_DIMS],
        strides: [0; PKV_MAX_DIMS],
    };
    out.shape[..t.ndim].copy_from_slice(t.shape());
    out.strides[..t.ndim].copy_from_slice(t.strides());
    out
}

/// Copies `text` into a fixed C char array, truncating and always NUL-terminating.
pub(crate) fn fill_c_text(dst: &mut [c_char], text: &str) {
    let n = text.len().min(dst.len().saturating_sub(1));
    for (d, s) in dst.iter_mut().zip(text.as_bytes()[..n].iter()) {
        *d = *s as c_char;
    }
    if let Some(last) = dst.get_mut(n) {
        *last = 0;
    }
}

/// Reads a NUL-terminated text out of a fixed C char array.
pub(crate) fn read_c_text(src: &[c_char]) -> String {
    let bytes: Vec<u8> = src.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
