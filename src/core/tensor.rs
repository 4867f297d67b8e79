//! `TensorDesc`: a safe description of one strided tensor (address, device, dtype, shape,
//! strides in elements). Core never dereferences the address; it only does arithmetic on it.

use crate::core::dtype::{DType, Device};
use crate::core::status::{Error, Result, Status};

/// Most dimensions a tensor may have (the split key cache has 5; one spare).
pub const MAX_DIMS: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorDesc {
    /// Address of element `[0, 0, ...]`: `data + byte_offset`.
    pub addr: usize,
    pub device: Device,
    pub dtype: DType,
    pub ndim: usize,
    pub shape: [i64; MAX_DIMS],
    pub strides: [i64; MAX_DIMS],
}

impl TensorDesc {
    /// Builds a descriptor from the raw fields of a `pkv_tensor`, checking each one.
    /// `name` is the argument's name for error messages.
    pub fn from_parts(
        name: &str,
        data: usize,
        byte_offset: i64,
        device: Device,
        dtype: DType,
        shape: &[i64],
        strides: &[i64],
    ) -> Result<Self> {
        if shape.len() > MAX_DIMS || shape.len() != strides.len() {
            fail!(Status::InvalidNdim, "{name}.ndim = {} exceeds the maximum of {MAX_DIMS}", shape.len());
        }
        if byte_offset < 0 {
            fail!(Status::InvalidValue, "{name}.byte_offset = {byte_offset} is negative (expected >= 0)");
        }
        for (i, &s) in shape.iter().enumerate() {
            if s < 0 {
                fail!(Status::ShapeMismatch, "{name}.shape[{i}] = {s} is negative (expected >= 0)");
            }
        }
        let numel = shape.iter().try_fold(1i64, |acc, &s| acc.checked_mul(s));
        if numel.is_none() {
            fail!(Status::ShapeMismatch, "{name}: the product of its shape {shape:?} overflows int64");
        }
        for (i, &st) in strides.iter().enumerate() {
            if st < 0 {
                fail!(Status::InvalidStride, "{name}.strides[{i}] = {st} is negative (expected >= 0)");
            }
        }
        let addr = data.checked_add(byte_offset as usize).ok_or_else(|| {
            Error::new(Status::InvalidValue, format!("{name}: data + byte_offset overflows the address space"))
        })?;
        if data == 0 && numel != Some(0) {
            fail!(Status::NullArgument, "{name}.data is NULL but the tensor has {} elements", numel.unwrap_or(0));
        }
        let mut t = TensorDesc { addr, device, dtype, ndim: shape.len(), shape: [0; MAX_DIMS], strides: [0; MAX_DIMS] };
        t.shape[..shape.len()].copy_from_slice(shape);
        t.strides[..strides.len()].copy_from_slice(strides);
        if t.span_elems().is_none() {
            fail!(
                Status::InvalidStride,
                "{name}: the extent of shape {shape:?} with strides {strides:?} overflows int64"
            );
        }
        if addr % dtype.size_bytes() != 0 {
            fail!(
                Status::InvalidValue,
                "{name}: address {addr:#x} is not aligned to its element size {} ({})",
                dtype.size_bytes(),
                dtype.name()
            );
        }
        Ok(t)
    }

    /// A packed (row-major contiguous) host descriptor, mostly for tests and the CLI.
    pub fn contiguous(addr: usize, device: Device, dtype: DType, shape: &[i64]) -> Self {
        let mut strides = [0i64; MAX_DIMS];
        let mut acc = 1i64;
        for i in (0..shape.len()).rev() {
            strides[i] = acc;
            // Saturate: an overflowing shape is rejected by `from_parts`, never wrapped.
            acc = acc.saturating_mul(shape[i]);
        }
        let mut s = [0i64; MAX_DIMS];
        s[..shape.len()].copy_from_slice(shape);
        TensorDesc { addr, device, dtype, ndim: shape.len(), shape: s, strides }
    }

    pub fn shape(&self) -> &[i64] {
        &self.shape[..self.ndim]
    }

    pub fn strides(&self) -> &[i64] {
        &self.strides[..self.ndim]
    }

    pub fn numel(&self) -> i64 {
        self.shape().iter().product()
    }

    /// Number of elements from the first to one past the last addressed element
    /// (0 for an empty tensor); `None` on overflow.
    pub fn span_elems(&self) -> Option<i64> {
        if self.shape().contains(&0) {
            return Some(0);
        }
        let mut last = 0i64;
        for (&n, &s) in self.shape().iter().zip(self.strides()) {
            last = last.checked_add((n - 1).checked_mul(s)?)?;
        }
        last.checked_add(1)
    }

    /// Bytes from the first addressed byte to one past the last.
    pub fn span_bytes(&self) -> usize {
        self.span_elems().unwrap_or(0) as usize * self.dtype.size_bytes()
    }

    /// Element offset of a multi-index (no bounds check; callers index within `shape`).
    pub fn offset(&self, index: &[i64]) -> i64 {
        index.iter().zip(self.strides()).map(|(i, s)| i * s).sum()
    }

    /// True when `stride(0) == prod(shape[1:])`: vLLM's "native" (packed blocks) predicate.
    pub fn dim0_is_packed(&self) -> bool {
        self.ndim >= 1 && self.strides[0] == self.shape()[1..].iter().product::<i64>()
    }

    /// True when every stride is the row-major contiguous one (size-1 dims excepted).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1i64;
        for i in (0..self.ndim).rev() {
            if self.shape[i] != 1 && self.strides[i] != expected {
                return false;
            }
            expected *= self.shape[i];
        }
        true
    }

    pub fn describe(&self) -> String {
        format!("{} {:?} strides {:?} on {}", self.dtype.name(), self.shape(), self.strides(), self.device.describe())
    }
}

/// Checks shared by every validator: dtype, ndim and exact shape.
pub fn expect_ndim(t: &TensorDesc, name: &str, ndim: usize, what: &str) -> Result<()> {
    if t.ndim != ndim {
        fail!(Status::InvalidNdim, "{name}.ndim = {} (shape {:?}), expected {ndim}: {what}", t.ndim, t.shape());
    }
    Ok(())
}

pub fn expect_dtype(t: &TensorDesc, name: &str, dtypes: &[DType]) -> Result<()> {
    if !dtypes.contains(&t.dtype) {
        let names: Vec<_> = dtypes.iter().map(|d| d.name()).collect();
        fail!(Status::InvalidDtype, "{name}.dtype = {}, expected {}", t.dtype.name(), names.join(" or "));
    }
    Ok(())
}

pub fn expect_dim(t: &TensorDesc, name: &str, dim: usize, value: i64, meaning: &str) -> Result<()> {
    if t.shape[dim] != value {
        fail!(
            Status::ShapeMismatch,
            "{name}.shape[{dim}] = {}, expected {value} ({meaning}); full shape {:?}",
            t.shape[dim],
            t.shape()
        );
    }
    Ok(())
}

pub fn expect_same_device(t: &TensorDesc, name: &str, device: Device, reference: &str) -> Result<()> {
    if t.device != device {
        fail!(
            Status::DeviceMismatch,
            "{name} is on {}, expected {} (the device of {reference})",
            t.device.describe(),
            device.describe()
        );
    }
    Ok(())
}

/// Tensors that are written must not write one element twice: ordered by stride, every
/// dimension of size > 1 must step past everything the smaller strides reach (a sufficient
/// non-overlap rule that every packed, padded or permuted layout satisfies).
pub fn expect_writable_strides(t: &TensorDesc, name: &str) -> Result<()> {
    if t.numel() == 0 {
        // Nothing is written; NumPy gives empty arrays all-zero strides.
        return Ok(());
    }
    let mut dims: Vec<usize> = (0..t.ndim).filter(|&i| t.shape[i] > 1).collect();
    dims.sort_by_key(|&i| t.strides[i]);
    let mut reach = 1i64;
    for i in dims {
        if t.strides[i] < reach {
            fail!(
                Status::InvalidStride,
                "{name}.strides[{i}] = {} with shape[{i}] = {}: elements would overlap (a written tensor needs \
                 stride >= {reach} here); strides {:?}",
                t.strides[i],
                t.shape[i],
                t.strides()
            );
        }
        reach = reach.saturating_add(t.strides[i].saturating_mul(t.shape[i] - 1));
    }
    Ok(())
}

/// A 1-element float32 scale tensor on `device`, or absent (= 1.0).
pub fn expect_scale(t: Option<&TensorDesc>, name: &str, device: Device) -> Result<()> {
    if let Some(t) = t {
        expect_dtype(t, name, &[DType::F32])?;
        if t.numel() != 1 {
            fail!(
                Status::ShapeMismatch,
                "{name} has {} elements (shape {:?}), expected exactly 1",
                t.numel(),
                t.shape()
            );
        }
        expect_same_device(t, name, device, "the data")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(shape: &[i64], strides: &[i64]) -> Result<TensorDesc> {
        TensorDesc::from_parts("t", 0x1000, 0, Device::CPU, DType::F16, shape, strides)
    }

    #[test]
    fn rejects_bad_parts() {
        assert_eq!(desc(&[2, -1], &[1, 1]).unwrap_err().status, Status::ShapeMismatch);
        assert_eq!(desc(&[2, 2], &[-1, 1]).unwrap_err().status, Status::InvalidStride);
        assert_eq!(desc(&[1; 7], &[1; 7]).unwrap_err().status, Status::InvalidNdim);
        let e = TensorDesc::from_parts("key", 0, 0, Device::CPU, DType::F16, &[2], &[1]).unwrap_err();
        assert_eq!(e.status, Status::NullArgument);
        assert!(e.message.starts_with("key.data"));
        let e = TensorDesc::from_parts("q", 0x1001, 0, Device::CPU, DType::F16, &[2], &[1]).unwrap_err();
        assert_eq!(e.status, Status::InvalidValue);
        // An empty tensor may have a NULL pointer.
        assert!(TensorDesc::from_parts("e", 0, 0, Device::CPU, DType::F16, &[0, 4], &[4, 1]).is_ok());
    }

    #[test]
    fn span_and_packing() {
        let t = desc(&[3, 4, 5], &[40, 5, 1]).unwrap();
        assert_eq!(t.span_elems(), Some(2 * 40 + 3 * 5 + 4 + 1));
        assert!(!t.dim0_is_packed());
        let p = desc(&[3, 4, 5], &[20, 5, 1]).unwrap();
        assert!(p.dim0_is_packed() && p.is_contiguous());
        assert_eq!(desc(&[3, 0], &[1, 1]).unwrap().span_elems(), Some(0));
    }
}
