//! Cache layout math: the classic ROCm split of a combined cache into key/value views, the
//! native-layout predicate, and the per-semantic-dimension addressing every reader and writer
//! uses (so K/V-first, blocks-first, hybrid-interleaved and NHD caches are one code path).

use crate::core::dtype::{DType, Device, KvLayout, x_for};
use crate::core::status::{Result, Status};
use crate::core::tensor::{TensorDesc, expect_dim, expect_ndim, expect_same_device, expect_writable_strides};

/// Key addressing: element `(block, head, d, token)` lives at
/// `block*blk + head*head + (d / x)*dhi + token*tok + (d % x)*dlo`.
/// The split layout has `x = 16 / itemsize`; NHD is expressed with `x = 1`, `dlo = 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyAddressing {
    pub blk: i64,
    pub head: i64,
    pub dhi: i64,
    pub tok: i64,
    pub dlo: i64,
    pub x: i64,
}

impl KeyAddressing {
    #[inline]
    pub fn offset(&self, block: i64, head: i64, d: i64, token: i64) -> i64 {
        block * self.blk + head * self.head + (d / self.x) * self.dhi + token * self.tok + (d % self.x) * self.dlo
    }
}

/// Value addressing: element `(block, head, d, token)` at `block*blk + head*head + d*dim + token*tok`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueAddressing {
    pub blk: i64,
    pub head: i64,
    pub dim: i64,
    pub tok: i64,
}

impl ValueAddressing {
    #[inline]
    pub fn offset(&self, block: i64, head: i64, d: i64, token: i64) -> i64 {
        block * self.blk + head * self.head + d * self.dim + token * self.tok
    }
}

/// Everything a kernel needs to find one cached element, checked for consistency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheGeometry {
    pub layout: KvLayout,
    pub num_blocks: i64,
    pub block_size: i64,
    pub num_kv_heads: i64,
    pub head_size: i64,
    /// Storage element type of both caches.
    pub dtype: DType,
    pub key: KeyAddressing,
    pub value: ValueAddressing,
    pub key_addr: usize,
    pub value_addr: usize,
}

impl CacheGeometry {
    /// Slots in the cache: `num_blocks * block_size`.
    pub fn num_slots(&self) -> i64 {
        self.num_blocks * self.block_size
    }

    /// Elements from the key cache's first addressed element to one past its last.
    pub fn key_extent_elems(&self) -> i64 {
        self.extent(|b, h, d, t| self.key.offset(b, h, d, t))
    }

    /// Elements from the value cache's first addressed element to one past its last.
    pub fn value_extent_elems(&self) -> i64 {
        self.extent(|b, h, d, t| self.value.offset(b, h, d, t))
    }

    /// One cache (`key` or value) as a flat 1-D descriptor over its whole extent, for code that
    /// addresses it through this geometry.
    pub fn extent_desc(&self, key: bool, device: Device) -> TensorDesc {
        let (addr, n) =
            if key { (self.key_addr, self.key_extent_elems()) } else { (self.value_addr, self.value_extent_elems()) };
        TensorDesc::contiguous(addr, device, self.dtype, &[n])
    }

    fn extent(&self, offset: impl Fn(i64, i64, i64, i64) -> i64) -> i64 {
        if self.num_blocks == 0 || self.block_size == 0 || self.num_kv_heads == 0 || self.head_size == 0 {
            return 0;
        }
        // Strides are non-negative, so the last element is at the largest index of every dim;
        // with x-split keys the largest offset is at d = head_size - 1 (both d/x and d%x max).
        offset(self.num_blocks - 1, self.num_kv_heads - 1, self.head_size - 1, self.block_size - 1) + 1
    }
}

/// Reads and checks the key/value cache pair for `layout`.
pub fn cache_geometry(layout: KvLayout, key_cache: &TensorDesc, value_cache: &TensorDesc) -> Result<CacheGeometry> {
    let (k, v) = (key_cache, value_cache);
    expect_same_device(v, "value_cache", k.device, "key_cache")?;
    if k.dtype != v.dtype {
        fail!(
            Status::InvalidDtype,
            "value_cache.dtype = {}, expected {} (the dtype of key_cache)",
            v.dtype.name(),
            k.dtype.name()
        );
    }
    if !(k.dtype.is_model_float() || k.dtype.is_fp8_storage()) {
        fail!(
            Status::InvalidDtype,
            "key_cache.dtype = {}, expected float32, float16, bfloat16, or uint8/float8 for fp8 caches",
            k.dtype.name()
        );
    }
    let geometry = match layout {
        KvLayout::Split => {
            expect_ndim(
                k,
                "key_cache",
                5,
                "[num_blocks, num_kv_heads, head_size/x, block_size, x] for kv_layout split",
            )?;
            expect_ndim(v, "value_cache", 4, "[num_blocks, num_kv_heads, head_size, block_size] for kv_layout split")?;
            let x = x_for(k.dtype);
            expect_dim(k, "key_cache", 4, x, "x = 16 / element size of the cache dtype")?;
            let [nb, h, dx, bs, _] = [k.shape[0], k.shape[1], k.shape[2], k.shape[3], k.shape[4]];
            let d = dx * x;
            expect_dim(v, "value_cache", 0, nb, "num_blocks of key_cache")?;
            expect_dim(v, "value_cache", 1, h, "num_kv_heads of key_cache")?;
            expect_dim(v, "value_cache", 2, d, "head_size = key_cache.shape[2] * x")?;
            expect_dim(v, "value_cache", 3, bs, "block_size of key_cache")?;
            let s = k.strides;
            let vs = v.strides;
            CacheGeometry {
                layout,
                num_blocks: nb,
                block_size: bs,
                num_kv_heads: h,
                head_size: d,
                dtype: k.dtype,
                key: KeyAddressing { blk: s[0], head: s[1], dhi: s[2], tok: s[3], dlo: s[4], x },
                value: ValueAddressing { blk: vs[0], head: vs[1], dim: vs[2], tok: vs[3] },
                key_addr: k.addr,
                value_addr: v.addr,
            }
        }
        KvLayout::Nhd => {
            expect_ndim(k, "key_cache", 4, "[num_blocks, block_size, num_kv_heads, head_size] for kv_layout nhd")?;
            expect_ndim(v, "value_cache", 4, "[num_blocks, block_size, num_kv_heads, head_size] for kv_layout nhd")?;
            for dim in 0..4 {
                expect_dim(v, "value_cache", dim, k.shape[dim], "the same shape as key_cache")?;
            }
            let (s, vs) = (k.strides, v.strides);
            CacheGeometry {
                layout,
                num_blocks: k.shape[0],
                block_size: k.shape[1],
                num_kv_heads: k.shape[2],
                head_size: k.shape[3],
                dtype: k.dtype,
                key: KeyAddressing { blk: s[0], head: s[2], dhi: s[3], tok: s[1], dlo: 0, x: 1 },
                value: ValueAddressing { blk: vs[0], head: vs[2], dim: vs[3], tok: vs[1] },
                key_addr: k.addr,
                value_addr: v.addr,
            }
        }
    };
    // After the shape checks, so a wrong shape is reported as such.
    expect_writable_strides(k, "key_cache")?;
    expect_writable_strides(v, "value_cache")?;
    Ok(geometry)
}

/// vLLM's `has_native_kv_cache_layout`: both caches have `stride(0) == prod(shape[1:])`.
pub fn has_native_layout(key_cache: &TensorDesc, value_cache: &TensorDesc) -> Result<bool> {
    if key_cache.ndim < 2 || value_cache.ndim < 2 {
        let (name, t) = if key_cache.ndim < 2 { ("key_cache", key_cache) } else { ("value_cache", value_cache) };
        fail!(Status::InvalidNdim, "{name}.ndim = {}, expected at least 2 (a block dimension and more)", t.ndim);
    }
    expect_same_device(value_cache, "value_cache", key_cache.device, "key_cache")?;
    Ok(key_cache.dim0_is_packed() && value_cache.dim0_is_packed())
}

/// True when every stride of a split-layout cache pair is the packed one, so that the packed
/// ("native") writer, which ignores strides, writes the same bytes as the stride-aware writer.
pub fn is_fully_packed_split(geometry: &CacheGeometry, key_cache: &TensorDesc, value_cache: &TensorDesc) -> bool {
    geometry.layout == KvLayout::Split && key_cache.is_contiguous() && value_cache.is_contiguous()
}

/// Splits a combined cache into the classic ROCm key/value views without moving data.
///
/// `kv_cache` is `[2, num_blocks, ...]` where dims 2.. hold one block of one of K/V and are
/// packed (vLLM allocates `(2, num_blocks, block_size, num_kv_heads, head_size)`); dims 0 and 1
/// may have any strides (K/V-first, blocks-first permuted, hybrid interleaved). Each block is
/// reinterpreted as `[num_kv_heads, head_size/x, block_size, x]` (key) and
/// `[num_kv_heads, head_size, block_size]` (value); the block stride is preserved.
pub fn split_kv_cache(kv_cache: &TensorDesc, num_kv_heads: i64, head_size: i64) -> Result<(TensorDesc, TensorDesc)> {
    let t = kv_cache;
    if t.ndim < 3 {
        fail!(
            Status::InvalidNdim,
            "kv_cache.ndim = {} (shape {:?}), expected at least 3: [2, num_blocks, block_size, num_kv_heads, head_size]",
            t.ndim,
            t.shape()
        );
    }
    expect_dim(t, "kv_cache", 0, 2, "the K/V dimension")?;
    if !(t.dtype.is_model_float() || t.dtype.is_fp8_storage()) {
        fail!(
            Status::InvalidDtype,
            "kv_cache.dtype = {}, expected float32, float16, bfloat16, or uint8/float8 for fp8 caches",
            t.dtype.name()
        );
    }
    if num_kv_heads <= 0 {
        fail!(Status::InvalidValue, "num_kv_heads = {num_kv_heads}, expected > 0");
    }
    if head_size <= 0 {
        fail!(Status::InvalidValue, "head_size = {head_size}, expected > 0");
    }
    let x = x_for(t.dtype);
    if head_size % x != 0 {
        fail!(
            Status::HeadSizeNotDivisible,
            "head_size = {head_size} is not a multiple of x = {x} (16 bytes of {}) required by the split key layout",
            t.dtype.name()
        );
    }
    // Dims 2.. must be packed: the split reinterprets a block's memory.
    let mut expected = 1i64;
    for i in (2..t.ndim).rev() {
        if t.shape[i] != 1 && t.strides[i] != expected {
            fail!(
                Status::InvalidStride,
                "kv_cache.strides[{i}] = {}, expected {expected}: dims 2.. (one block) must be packed to be \
                 reinterpreted as the split layout; strides {:?}",
                t.strides[i],
                t.strides()
            );
        }
        // Checked: an empty tensor (a zero dim) may have other dims whose product overflows.
        let Some(next) = expected.checked_mul(t.shape[i]) else {
            fail!(Status::ShapeMismatch, "kv_cache.shape = {:?}: one block's element count overflows int64", t.shape())
        };
        expected = next;
    }
    let per_block = expected;
    let Some(per_token) = num_kv_heads.checked_mul(head_size) else {
        fail!(Status::ShapeMismatch, "num_kv_heads * head_size = {num_kv_heads} * {head_size} overflows int64")
    };
    if per_block == 0 || per_block % per_token != 0 {
        fail!(
            Status::ShapeMismatch,
            "kv_cache block of {per_block} elements (shape {:?}) is not a whole number of tokens of \
             num_kv_heads * head_size = {num_kv_heads} * {head_size} = {per_token}",
            &t.shape()[2..]
        );
    }
    if t.ndim == 5 && (t.shape[3] != num_kv_heads || t.shape[4] != head_size) {
        fail!(
            Status::ShapeMismatch,
            "kv_cache.shape = {:?} has (num_kv_heads, head_size) = ({}, {}), but the arguments say ({num_kv_heads}, {head_size})",
            t.shape(),
            t.shape[3],
            t.shape[4]
        );
    }
    let (nb, bs, h, d) = (t.shape[1], per_block / per_token, num_kv_heads, head_size);
    let block_stride = t.strides[1];
    let key = TensorDesc {
        addr: t.addr,
        device: t.device,
        dtype: t.dtype,
        ndim: 5,
        shape: [nb, h, d / x, bs, x, 0],
        strides: [block_stride, d * bs, bs * x, x, 1, 0],
    };
    let value_addr = t.addr + (t.strides[0] as usize) * t.dtype.size_bytes();
    let value = TensorDesc {
        addr: value_addr,
        device: t.device,
        dtype: t.dtype,
        ndim: 4,
        shape: [nb, h, d, bs, 0, 0],
        strides: [block_stride, d * bs, bs, 1, 0, 0],
    };
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn combined(dtype: DType, nb: i64, bs: i64, h: i64, d: i64, hybrid: bool) -> TensorDesc {
        let hidden = bs * h * d;
        let (s0, s1) = if hybrid { (hidden, 2 * hidden) } else { (nb * hidden, hidden) };
        TensorDesc::from_parts("kv_cache", 0x10000, 0, Device::CPU, dtype, &[2, nb, bs, h, d], &[s0, s1, h * d, d, 1])
            .unwrap()
    }

    #[test]
    fn native_split_is_packed_and_native() {
        let kv = combined(DType::F16, 10, 16, 4, 64, false);
        let (k, v) = split_kv_cache(&kv, 4, 64).unwrap();
        assert_eq!(k.shape(), &[10, 4, 8, 16, 8]);
        assert_eq!(k.strides(), &[16 * 4 * 64, 64 * 16, 16 * 8, 8, 1]);
        assert_eq!(v.shape(), &[10, 4, 64, 16]);
        assert_eq!(v.addr, 0x10000 + 10 * 16 * 4 * 64 * 2);
        assert!(has_native_layout(&k, &v).unwrap());
        let g = cache_geometry(KvLayout::Split, &k, &v).unwrap();
        assert!(is_fully_packed_split(&g, &k, &v));
        assert_eq!(g.head_size, 64);
        assert_eq!(g.block_size, 16);
    }

    #[test]
    fn hybrid_split_keeps_doubled_block_stride_and_value_offset() {
        let kv = combined(DType::BF16, 3, 544, 2, 256, true);
        let (k, v) = split_kv_cache(&kv, 2, 256).unwrap();
        let hidden = 544 * 2 * 256;
        assert_eq!(k.strides[0], 2 * hidden);
        assert_eq!(v.strides[0], 2 * hidden);
        assert_eq!(v.addr - k.addr, hidden as usize * 2);
        assert!(!has_native_layout(&k, &v).unwrap());
        let g = cache_geometry(KvLayout::Split, &k, &v).unwrap();
        // Block 1, head 1, dim 9, token 3 of K: page 1 starts at 2*hidden.
        assert_eq!(g.key.offset(1, 1, 9, 3), 2 * hidden + 256 * 544 + 544 * 8 + 3 * 8 + 1);
    }

    #[test]
    fn split_rejects_bad_inputs() {
        let kv = combined(DType::F16, 2, 16, 4, 64, false);
        assert_eq!(split_kv_cache(&kv, 4, 60).unwrap_err().status, Status::HeadSizeNotDivisible);
        assert_eq!(split_kv_cache(&kv, 3, 64).unwrap_err().status, Status::ShapeMismatch);
        assert_eq!(split_kv_cache(&kv, 0, 64).unwrap_err().status, Status::InvalidValue);
        let mut padded = kv;
        padded.strides[3] = 65;
        assert_eq!(split_kv_cache(&padded, 4, 64).unwrap_err().status, Status::InvalidStride);
        let mut three = kv;
        three.shape[0] = 3;
        assert_eq!(split_kv_cache(&three, 4, 64).unwrap_err().status, Status::ShapeMismatch);
    }

    #[test]
    fn nhd_geometry_maps_strides_by_meaning() {
        let k = TensorDesc::contiguous(0x1000, Device::CPU, DType::F16, &[5, 32, 2, 128]);
        let g = cache_geometry(KvLayout::Nhd, &k, &k).unwrap();
        assert_eq!(g.key.offset(1, 1, 3, 2), 32 * 2 * 128 + 128 + 3 + 2 * 256);
        assert_eq!(g.value.offset(1, 1, 3, 2), g.key.offset(1, 1, 3, 2));
    }
}
