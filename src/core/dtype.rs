//! Element types, devices, kv-cache dtypes and layouts: the enums that come in from C as
//! integers and are converted here with `TryFrom<u32>` (an out-of-range Rust enum would be
//! undefined behaviour, an out-of-range integer is just an error).

use crate::core::status::{Error, Result, Status};

/// Element type of a tensor. C values are explicit; 0 is left unassigned so that a
/// zero-initialised `pkv_tensor` is rejected instead of read as some type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32 = 1,
    F16 = 2,
    BF16 = 3,
    U8 = 4,
    I32 = 5,
    I64 = 6,
    F8E4M3FN = 7,
    F8E4M3FNUZ = 8,
    F8E5M2 = 9,
}

impl DType {
    pub const ALL: [DType; 9] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::U8,
        DType::I32,
        DType::I64,
        DType::F8E4M3FN,
        DType::F8E4M3FNUZ,
        DType::F8E5M2,
    ];

    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::U8 | DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 => 1,
            DType::I64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::U8 => "uint8",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::F8E4M3FN => "float8_e4m3fn",
            DType::F8E4M3FNUZ => "float8_e4m3fnuz",
            DType::F8E5M2 => "float8_e5m2",
        }
    }

    /// Model dtypes: what queries, new keys/values and unquantised caches hold.
    pub fn is_model_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// Dtypes that can hold an fp8 cache or output: raw bytes or a typed fp8 tensor.
    pub fn is_fp8_storage(self) -> bool {
        matches!(self, DType::U8 | DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2)
    }

    /// The fp8 format a typed fp8 tensor carries (`None` for uint8 and non-fp8 types).
    pub fn fp8_format(self) -> Option<Fp8Format> {
        match self {
            DType::F8E4M3FN => Some(Fp8Format::E4M3FN),
            DType::F8E4M3FNUZ => Some(Fp8Format::E4M3FNUZ),
            DType::F8E5M2 => Some(Fp8Format::E5M2),
            _ => None,
        }
    }
}

impl TryFrom<u32> for DType {
    type Error = Error;
    fn try_from(v: u32) -> Result<Self> {
        DType::ALL.iter().copied().find(|d| *d as u32 == v).ok_or_else(|| {
            Error::new(Status::InvalidEnum, format!("dtype = {v} is not a pkv_dtype value (expected 1..=9)"))
        })
    }
}

/// The three 8-bit float encodings the caches can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fp8Format {
    /// OCP e4m3 ("fn": finite, NaN = S.1111.111, max 448).
    E4M3FN,
    /// e4m3 "fnuz" (no negative zero, NaN = 0x80, max 240): MI300-class GPUs (gfx940/gfx942).
    E4M3FNUZ,
    /// OCP e5m2 (IEEE-like with inf, max 57344).
    E5M2,
}

impl Fp8Format {
    pub fn name(self) -> &'static str {
        match self {
            Fp8Format::E4M3FN => "fp8_e4m3fn",
            Fp8Format::E4M3FNUZ => "fp8_e4m3fnuz",
            Fp8Format::E5M2 => "fp8_e5m2",
        }
    }
}

/// Where a tensor's memory lives. Codes are DLPack's `DLDeviceType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    Cpu = 1,
    Cuda = 2,
    Rocm = 10,
}

impl TryFrom<i32> for DeviceKind {
    type Error = Error;
    fn try_from(v: i32) -> Result<Self> {
        match v {
            1 => Ok(DeviceKind::Cpu),
            2 => Ok(DeviceKind::Cuda),
            10 => Ok(DeviceKind::Rocm),
            _ => Err(Error::new(
                Status::InvalidEnum,
                format!("device_type = {v} is not supported (expected 1 = CPU, 2 = CUDA or 10 = ROCm)"),
            )),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Device {
    pub kind: DeviceKind,
    pub id: i32,
}

impl Device {
    pub const CPU: Device = Device { kind: DeviceKind::Cpu, id: 0 };

    pub fn is_gpu(self) -> bool {
        self.kind != DeviceKind::Cpu
    }

    pub fn describe(self) -> String {
        match self.kind {
            DeviceKind::Cpu => "cpu".to_string(),
            DeviceKind::Cuda => format!("cuda:{}", self.id),
            DeviceKind::Rocm => format!("rocm:{}", self.id),
        }
    }
}

/// What the cache stores, as vLLM's `kv_cache_dtype` string says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvCacheDtype {
    /// Same element type as the model (no quantisation).
    Auto = 0,
    /// The device's e4m3: fnuz on gfx940/gfx942, OCP e4m3fn everywhere else (CPU included).
    Fp8 = 1,
    /// A synonym of `Fp8`, as vLLM spells it.
    Fp8E4M3 = 2,
    Fp8E4M3FN = 3,
    Fp8E4M3FNUZ = 4,
    Fp8E5M2 = 5,
}

impl KvCacheDtype {
    pub const ALL: [KvCacheDtype; 6] = [
        KvCacheDtype::Auto,
        KvCacheDtype::Fp8,
        KvCacheDtype::Fp8E4M3,
        KvCacheDtype::Fp8E4M3FN,
        KvCacheDtype::Fp8E4M3FNUZ,
        KvCacheDtype::Fp8E5M2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KvCacheDtype::Auto => "auto",
            KvCacheDtype::Fp8 => "fp8",
            KvCacheDtype::Fp8E4M3 => "fp8_e4m3",
            KvCacheDtype::Fp8E4M3FN => "fp8_e4m3fn",
            KvCacheDtype::Fp8E4M3FNUZ => "fp8_e4m3fnuz",
            KvCacheDtype::Fp8E5M2 => "fp8_e5m2",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        KvCacheDtype::ALL.iter().copied().find(|k| k.name() == name).ok_or_else(|| {
            Error::new(
                Status::UnknownKvCacheDtype,
                format!(
                    "kv_cache_dtype = \"{name}\" is not known (expected one of auto, fp8, fp8_e4m3, \
                     fp8_e4m3fn, fp8_e4m3fnuz, fp8_e5m2)"
                ),
            )
        })
    }

    /// The concrete fp8 encoding on a device whose e4m3 flavour is `device_e4m3`;
    /// `None` for `Auto`.
    pub fn resolve(self, device_e4m3: Fp8Format) -> Option<Fp8Format> {
        match self {
            KvCacheDtype::Auto => None,
            KvCacheDtype::Fp8 | KvCacheDtype::Fp8E4M3 => Some(device_e4m3),
            KvCacheDtype::Fp8E4M3FN => Some(Fp8Format::E4M3FN),
            KvCacheDtype::Fp8E4M3FNUZ => Some(Fp8Format::E4M3FNUZ),
            KvCacheDtype::Fp8E5M2 => Some(Fp8Format::E5M2),
        }
    }
}

impl TryFrom<u32> for KvCacheDtype {
    type Error = Error;
    fn try_from(v: u32) -> Result<Self> {
        KvCacheDtype::ALL.iter().copied().find(|k| *k as u32 == v).ok_or_else(|| {
            Error::new(
                Status::InvalidEnum,
                format!("kv_cache_dtype = {v} is not a pkv_kv_cache_dtype value (expected 0..=5)"),
            )
        })
    }
}

/// How the cache tensors are shaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvLayout {
    /// vLLM's ROCm split: key `[num_blocks, num_kv_heads, head_size/x, block_size, x]`,
    /// value `[num_blocks, num_kv_heads, head_size, block_size]`.
    Split = 0,
    /// Flash layout: key and value `[num_blocks, block_size, num_kv_heads, head_size]`.
    Nhd = 1,
}

impl KvLayout {
    pub fn name(self) -> &'static str {
        match self {
            KvLayout::Split => "split",
            KvLayout::Nhd => "nhd",
        }
    }
}

impl TryFrom<u32> for KvLayout {
    type Error = Error;
    fn try_from(v: u32) -> Result<Self> {
        match v {
            0 => Ok(KvLayout::Split),
            1 => Ok(KvLayout::Nhd),
            _ => Err(Error::new(
                Status::InvalidEnum,
                format!("kv_layout = {v} is not a pkv_kv_layout value (expected 0 = split or 1 = nhd)"),
            )),
        }
    }
}

/// `x`: elements per 16 bytes in the split key layout.
pub fn x_for(dtype: DType) -> i64 {
    16 / dtype.size_bytes() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_and_reject_unknown_values() {
        for d in DType::ALL {
            assert_eq!(DType::try_from(d as u32).unwrap(), d);
        }
        assert_eq!(DType::try_from(0).unwrap_err().status, Status::InvalidEnum);
        assert_eq!(DType::try_from(10).unwrap_err().status, Status::InvalidEnum);
        for k in KvCacheDtype::ALL {
            assert_eq!(KvCacheDtype::try_from(k as u32).unwrap(), k);
            assert_eq!(KvCacheDtype::parse(k.name()).unwrap(), k);
        }
        assert_eq!(KvCacheDtype::try_from(6).unwrap_err().status, Status::InvalidEnum);
        let e = KvCacheDtype::parse("fp8_e4m3fnx").unwrap_err();
        assert_eq!(e.status, Status::UnknownKvCacheDtype);
        assert!(e.message.contains("fp8_e4m3fnx"));
        assert_eq!(KvLayout::try_from(2).unwrap_err().status, Status::InvalidEnum);
        assert_eq!(DeviceKind::try_from(3).unwrap_err().status, Status::InvalidEnum);
    }

    #[test]
    fn fp8_spellings_resolve_per_device() {
        assert_eq!(KvCacheDtype::Fp8.resolve(Fp8Format::E4M3FNUZ), Some(Fp8Format::E4M3FNUZ));
        assert_eq!(KvCacheDtype::Fp8E4M3.resolve(Fp8Format::E4M3FN), Some(Fp8Format::E4M3FN));
        assert_eq!(KvCacheDtype::Fp8E5M2.resolve(Fp8Format::E4M3FNUZ), Some(Fp8Format::E5M2));
        assert_eq!(KvCacheDtype::Auto.resolve(Fp8Format::E4M3FN), None);
        assert_eq!(x_for(DType::F16), 8);
        assert_eq!(x_for(DType::U8), 16);
        assert_eq!(x_for(DType::F32), 4);
    }
}
