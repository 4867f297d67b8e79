//! Host memory access for the CPU backend: the only unsafe code in `cpu`. A `HostTensor`
//! reads and writes elements through raw pointers (never references), so two views of one
//! allocation (a split cache's key and value) may alias, and every access is bounds-checked
//! against the tensor's extent.

use half::{bf16, f16};

use crate::core::dtype::DType;
use crate::core::status::{Error, Result, Status};
use crate::core::tensor::TensorDesc;

#[derive(Clone, Copy)]
pub(crate) struct HostTensor {
    base: *mut u8,
    dtype: DType,
    span_elems: i64,
}

impl HostTensor {
    /// # Safety
    /// `t` describes host memory that is valid for reads (and writes, if written) over its
    /// whole extent for as long as this value is used, per the C API's contract.
    pub(crate) unsafe fn new(t: &TensorDesc) -> Self {
        HostTensor { base: t.addr as *mut u8, dtype: t.dtype, span_elems: t.span_elems().unwrap_or(0) }
    }

    #[inline]
    fn ptr(&self, elem: i64) -> *mut u8 {
        // A panic here is caught at the C boundary; an out-of-extent access never happens.
        assert!(elem >= 0 && elem < self.span_elems, "element {elem} outside the tensor extent {}", self.span_elems);
        // SAFETY: in bounds of the extent the constructor's contract makes valid.
        unsafe { self.base.add(elem as usize * self.dtype.size_bytes()) }
    }

    /// Reads a float element (f32, f16 or bf16) as f32.
    #[inline]
    pub(crate) fn read_f32(&self, elem: i64) -> f32 {
        let p = self.ptr(elem);
        // SAFETY: `ptr` checked bounds; unaligned reads are allowed.
        unsafe {
            match self.dtype {
                DType::F32 => (p as *const f32).read_unaligned(),
                DType::F16 => f16::from_bits((p as *const u16).read_unaligned()).to_f32(),
                DType::BF16 => bf16::from_bits((p as *const u16).read_unaligned()).to_f32(),
                other => panic!("read_f32 on a {} tensor", other.name()),
            }
        }
    }

    /// Writes an f32 rounded (nearest even) to the tensor's float dtype.
    #[inline]
    pub(crate) fn write_f32(&self, elem: i64, v: f32) {
        let p = self.ptr(elem);
        // SAFETY: `ptr` checked bounds; the constructor's contract makes the extent writable.
        unsafe {
            match self.dtype {
                DType::F32 => (p as *mut f32).write_unaligned(v),
                DType::F16 => (p as *mut u16).write_unaligned(f16::from_f32(v).to_bits()),
                DType::BF16 => (p as *mut u16).write_unaligned(bf16::from_f32(v).to_bits()),
                other => panic!("write_f32 on a {} tensor", other.name()),
            }
        }
    }

    #[inline]
    pub(crate) fn read_u8(&self, elem: i64) -> u8 {
        // SAFETY: bounds checked by `ptr`.
        unsafe { self.ptr(elem).read() }
    }

    #[inline]
    pub(crate) fn write_u8(&self, elem: i64, v: u8) {
        // SAFETY: bounds checked by `ptr`; writable per the constructor's contract.
        unsafe { self.ptr(elem).write(v) }
    }

    /// Copies one element's bytes from `src` (same dtype) without converting.
    #[inline]
    pub(crate) fn copy_from(&self, elem: i64, src: &HostTensor, src_elem: i64) {
        debug_assert_eq!(self.dtype, src.dtype);
        let n = self.dtype.size_bytes();
        let (d, s) = (self.ptr(elem), src.ptr(src_elem));
        // SAFETY: both in bounds; `copy` tolerates overlap.
        unsafe { std::ptr::copy(s, d, n) }
    }

    #[inline]
    pub(crate) fn read_i32(&self, elem: i64) -> i32 {
        assert_eq!(self.dtype, DType::I32);
        // SAFETY: bounds checked by `ptr`.
        unsafe { (self.ptr(elem) as *const i32).read_unaligned() }
    }

    #[inline]
    pub(crate) fn read_i64(&self, elem: i64) -> i64 {
        assert_eq!(self.dtype, DType::I64);
        // SAFETY: bounds checked by `ptr`.
        unsafe { (self.ptr(elem) as *const i64).read_unaligned() }
    }
}

/// Reads an optional 1-element float32 scale at `addr` (None = 1.0) and checks it is a
/// finite positive number (a zero scale would turn every value into a saturated extreme).
///
/// # Safety
/// `addr` is None or the address of a readable f32 (validated as a 1-element float32 tensor).
pub(crate) unsafe fn read_scale(addr: Option<usize>, name: &str) -> Result<f32> {
    let v = match addr {
        // SAFETY: per the contract.
        Some(a) => unsafe { (a as *const f32).read_unaligned() },
        None => 1.0,
    };
    if !(v.is_finite() && v > 0.0) {
        return Err(Error::new(Status::InvalidValue, format!("{name}[0] = {v}, expected a finite value > 0")));
    }
    Ok(v)
}
