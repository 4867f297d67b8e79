//! Cache write: argument validation and the choice between the packed ("native") writer and
//! the stride-aware writer. Pure: value checks that need the slot values take them as a slice.

use crate::core::dtype::{DType, Device, Fp8Format, KvCacheDtype, KvLayout};
use crate::core::layout::{CacheGeometry, cache_geometry, has_native_layout, is_fully_packed_split};
use crate::core::status::{Result, Status};
use crate::core::tensor::{TensorDesc, expect_dim, expect_dtype, expect_ndim, expect_same_device, expect_scale};

/// Which writer a call takes. C values are part of the ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritePath {
    /// Packed addressing from the shapes (vLLM's `reshape_and_cache`): split layout, block
    /// size 16 or 32, native layout.
    Native = 1,
    /// Stride-aware addressing (vLLM's `triton_reshape_and_cache_flash`): everything else.
    Strided = 2,
}

impl WritePath {
    pub fn name(self) -> &'static str {
        match self {
            WritePath::Native => "native",
            WritePath::Strided => "strided",
        }
    }
}

/// The arguments of one write, as descriptors.
#[derive(Clone, Copy, Debug)]
pub struct WriteArgs<'a> {
    pub kv_layout: KvLayout,
    pub key: &'a TensorDesc,
    pub value: &'a TensorDesc,
    pub key_cache: &'a TensorDesc,
    pub value_cache: &'a TensorDesc,
    pub slot_mapping: &'a TensorDesc,
    pub kv_cache_dtype: KvCacheDtype,
    pub k_scale: Option<&'a TensorDesc>,
    pub v_scale: Option<&'a TensorDesc>,
}

/// A validated write: everything a backend needs, nothing it must re-check.
#[derive(Clone, Copy, Debug)]
pub struct WriteProblem {
    pub device: Device,
    /// Tokens written: `len(slot_mapping)`; rows of `key` past it are ignored (graph padding).
    pub num_tokens: i64,
    pub num_kv_heads: i64,
    pub head_size: i64,
    pub key: TensorDesc,
    pub value: TensorDesc,
    pub slot_mapping: TensorDesc,
    pub geometry: CacheGeometry,
    /// `Some(format)` when the cache is fp8 and values are quantised on the way in.
    pub quant: Option<Fp8Format>,
    pub k_scale: Option<usize>,
    pub v_scale: Option<usize>,
    pub path: WritePath,
}

/// Checks every argument of a write. `device_e4m3` is the e4m3 flavour of the data's device
/// (OCP e4m3fn on CPU and NVIDIA, fnuz on gfx940/gfx942).
pub fn validate_write(args: &WriteArgs<'_>, device_e4m3: Fp8Format) -> Result<WriteProblem> {
    let device = args.key.device;
    expect_ndim(args.key, "key", 3, "[num_tokens, num_kv_heads, head_size]")?;
    expect_ndim(args.value, "value", 3, "[num_tokens, num_kv_heads, head_size]")?;
    expect_dtype(args.key, "key", &[DType::F32, DType::F16, DType::BF16])?;
    expect_dtype(args.value, "value", &[args.key.dtype])?;
    for dim in 0..3 {
        expect_dim(args.value, "value", dim, args.key.shape[dim], "the shape of key")?;
    }
    expect_same_device(args.value, "value", device, "key")?;
    expect_same_device(args.key_cache, "key_cache", device, "key")?;
    expect_same_device(args.slot_mapping, "slot_mapping", device, "key")?;
    expect_ndim(args.slot_mapping, "slot_mapping", 1, "[num_tokens] slots")?;
    expect_dtype(args.slot_mapping, "slot_mapping", &[DType::I64])?;
    let num_tokens = args.slot_mapping.shape[0];
    if num_tokens > args.key.shape[0] {
        fail!(
            Status::ShapeMismatch,
            "slot_mapping.shape[0] = {num_tokens}, expected at most key.shape[0] = {} (one slot per key row)",
            args.key.shape[0]
        );
    }
    let geometry = cache_geometry(args.kv_layout, args.key_cache, args.value_cache)?;
    expect_dim(args.key, "key", 1, geometry.num_kv_heads, "num_kv_heads of the cache")?;
    if args.key.shape[2] != geometry.head_size {
        fail!(
            Status::ShapeMismatch,
            "key.shape[2] = {}, expected head_size = {} of the cache",
            args.key.shape[2],
            geometry.head_size
        );
    }
    let quant = check_cache_dtype(args.kv_cache_dtype, args.key.dtype, geometry.dtype, device_e4m3)?;
    expect_scale(args.k_scale, "k_scale", device)?;
    expect_scale(args.v_scale, "v_scale", device)?;
    let native = args.kv_layout == KvLayout::Split
        && matches!(geometry.block_size, 16 | 32)
        && has_native_layout(args.key_cache, args.value_cache)?
        && is_fully_packed_split(&geometry, args.key_cache, args.value_cache);
    Ok(WriteProblem {
        device,
        num_tokens,
        num_kv_heads: geometry.num_kv_heads,
        head_size: geometry.head_size,
        key: *args.key,
        value: *args.value,
        slot_mapping: *args.slot_mapping,
        geometry,
        quant,
        k_scale: args.k_scale.map(|t| t.addr),
        v_scale: args.v_scale.map(|t| t.addr),
        path: if native { WritePath::Native } else { WritePath::Strided },
    })
}

/// Checks the cache element type against `kv_cache_dtype` and returns the fp8 format, if any.
/// Shared by the writer and the attention reader so both interpret a cache the same way.
pub fn check_cache_dtype(
    kv_cache_dtype: KvCacheDtype,
    model_dtype: DType,
    cache_dtype: DType,
    device_e4m3: Fp8Format,
) -> Result<Option<Fp8Format>> {
    match kv_cache_dtype.resolve(device_e4m3) {
        None => {
            if cache_dtype != model_dtype {
                fail!(
                    Status::InvalidDtype,
                    "key_cache.dtype = {}, expected {} (kv_cache_dtype \"auto\" stores the model dtype; \
                     use an fp8 kv_cache_dtype for uint8/float8 caches)",
                    cache_dtype.name(),
                    model_dtype.name()
                );
            }
            Ok(None)
        }
        Some(format) => {
            if !cache_dtype.is_fp8_storage() {
                fail!(
                    Status::InvalidDtype,
                    "key_cache.dtype = {}, expected uint8 or a float8 dtype for kv_cache_dtype \"{}\"",
                    cache_dtype.name(),
                    kv_cache_dtype.name()
                );
            }
            if let Some(typed) = cache_dtype.fp8_format()
                && typed != format
            {
                fail!(
                    Status::InvalidDtype,
                    "key_cache.dtype = {} but kv_cache_dtype \"{}\" means {} on this device",
                    cache_dtype.name(),
                    kv_cache_dtype.name(),
                    format.name()
                );
            }
            Ok(Some(format))
        }
    }
}

/// Checks slot values against the cache (run where the values are readable, before any write).
pub fn check_slots(slots: impl Iterator<Item = i64>, num_slots: i64, geometry: &CacheGeometry) -> Result<()> {
    for (i, slot) in slots.enumerate() {
        if slot >= num_slots {
            fail!(
                Status::SlotOutOfRange,
                "slot_mapping[{i}] = {slot} is outside the cache (num_blocks * block_size = {} * {} = {num_slots}); \
                 negative slots are skipped",
                geometry.num_blocks,
                geometry.block_size
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::layout::split_kv_cache;

    struct Fixture {
        key: TensorDesc,
        kc: TensorDesc,
        vc: TensorDesc,
        slots: TensorDesc,
    }

    fn fixture(bs: i64, hybrid: bool, cache_dtype: DType) -> Fixture {
        let (nb, h, d) = (8, 2, 64);
        let hidden = bs * h * d;
        let (s0, s1) = if hybrid { (hidden, 2 * hidden) } else { (nb * hidden, hidden) };
        let kv = TensorDesc::from_parts(
            "kv",
            0x100000,
            0,
            Device::CPU,
            cache_dtype,
            &[2, nb, bs, h, d],
            &[s0, s1, h * d, d, 1],
        )
        .unwrap();
        let (kc, vc) = split_kv_cache(&kv, h, d).unwrap();
        Fixture {
            key: TensorDesc::contiguous(0x2000, Device::CPU, DType::F16, &[5, h, d]),
            kc,
            vc,
            slots: TensorDesc::contiguous(0x3000, Device::CPU, DType::I64, &[4]),
        }
    }

    fn args<'a>(f: &'a Fixture, kv_cache_dtype: KvCacheDtype) -> WriteArgs<'a> {
        WriteArgs {
            kv_layout: KvLayout::Split,
            key: &f.key,
            value: &f.key,
            key_cache: &f.kc,
            value_cache: &f.vc,
            slot_mapping: &f.slots,
            kv_cache_dtype,
            k_scale: None,
            v_scale: None,
        }
    }

    #[test]
    fn path_follows_block_size_and_layout() {
        let f = fixture(16, false, DType::F16);
        assert_eq!(validate_write(&args(&f, KvCacheDtype::Auto), Fp8Format::E4M3FN).unwrap().path, WritePath::Native);
        let f = fixture(32, true, DType::F16);
        assert_eq!(validate_write(&args(&f, KvCacheDtype::Auto), Fp8Format::E4M3FN).unwrap().path, WritePath::Strided);
        let f = fixture(64, false, DType::F16);
        assert_eq!(validate_write(&args(&f, KvCacheDtype::Auto), Fp8Format::E4M3FN).unwrap().path, WritePath::Strided);
    }

    #[test]
    fn fp8_needs_byte_caches_and_resolves_per_device() {
        let f = fixture(16, false, DType::U8);
        let p = validate_write(&args(&f, KvCacheDtype::Fp8), Fp8Format::E4M3FNUZ).unwrap();
        assert_eq!(p.quant, Some(Fp8Format::E4M3FNUZ));
        let e = validate_write(&args(&f, KvCacheDtype::Auto), Fp8Format::E4M3FN).unwrap_err();
        assert_eq!(e.status, Status::InvalidDtype);
        let f = fixture(16, false, DType::F16);
        let e = validate_write(&args(&f, KvCacheDtype::Fp8E5M2), Fp8Format::E4M3FN).unwrap_err();
        assert_eq!(e.status, Status::InvalidDtype);
        let f = fixture(16, false, DType::F8E4M3FN);
        let e = validate_write(&args(&f, KvCacheDtype::Fp8), Fp8Format::E4M3FNUZ).unwrap_err();
        assert!(e.message.contains("fp8_e4m3fnuz"), "{}", e.message);
    }

    #[test]
    fn rejects_long_slot_mapping_and_bad_slots() {
        let mut f = fixture(16, false, DType::F16);
        f.slots = TensorDesc::contiguous(0x3000, Device::CPU, DType::I64, &[6]);
        assert_eq!(
            validate_write(&args(&f, KvCacheDtype::Auto), Fp8Format::E4M3FN).unwrap_err().status,
            Status::ShapeMismatch
        );
        let g = cache_geometry(KvLayout::Split, &f.kc, &f.vc).unwrap();
        assert!(check_slots([-1, 0, 127].into_iter(), 128, &g).is_ok());
        let e = check_slots([3, 128].into_iter(), 128, &g).unwrap_err();
        assert_eq!(e.status, Status::SlotOutOfRange);
        assert!(e.message.starts_with("slot_mapping[1] = 128"), "{}", e.message);
    }
}
