//! Status codes and the error type every fallible core function returns.
//!
//! Values are explicit and never reused: a value that is retired stays here as a comment, so a
//! caller compiled against an old header never reads a new meaning into an old number.
//! Ranges: 0 ok, 1xx argument errors, 2xx unsupported configurations, 3xx device and runtime
//! errors, 9xx internal errors.

use std::fmt;

/// Result of every `pkv_` call that can fail.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub enum Status {
    /// Success.
    Ok = 0,

    /// A required pointer argument was NULL.
    NullArgument = 100,
    /// An argument struct's `struct_size` is smaller than the fields this version reads.
    InvalidStructSize = 101,
    /// An enum-valued integer (dtype, device type, layout, kv-cache dtype, ...) is not a known value.
    InvalidEnum = 102,
    /// A tensor's dtype is not the one the operation needs.
    InvalidDtype = 103,
    /// A tensor has the wrong number of dimensions.
    InvalidNdim = 104,
    /// Two shapes that must agree do not, or a dimension has an impossible size.
    ShapeMismatch = 105,
    /// A stride is negative, zero where it must not be, or breaks a required packing.
    InvalidStride = 106,
    /// Tensors of one call live on different devices.
    DeviceMismatch = 107,
    /// `head_size` is not a multiple of `x` (elements per 16 bytes) for the x-split key layout.
    HeadSizeNotDivisible = 108,
    /// `num_q_heads` is not a multiple of `num_kv_heads`.
    GqaRatioNotIntegral = 109,
    /// A sequence needs more blocks than its `block_table` row holds.
    BlockTableTooShort = 110,
    /// A `slot_mapping` entry points past the end of the cache.
    SlotOutOfRange = 111,
    /// A `block_table` entry is outside `[0, num_blocks)`.
    BlockIdOutOfRange = 112,
    /// `seq_lens` holds a negative length or one shorter than the sequence's query length.
    InvalidSeqLen = 113,
    /// `query_start_loc` is not non-decreasing from 0 up to at most `num_tokens`.
    InvalidQueryStartLoc = 114,
    /// A scalar argument (scale, window, soft-cap, head count, ...) is out of its range.
    InvalidValue = 115,
    /// The caller's workspace is smaller than `pkv_paged_attention_workspace_size` asked for.
    WorkspaceTooSmall = 116,
    /// An unknown kv-cache dtype name.
    UnknownKvCacheDtype = 117,
    /// A caller-provided buffer (e.g. for a string) is too small.
    BufferTooSmall = 118,

    /// `head_size` outside what the kernels support.
    UnsupportedHeadSize = 200,
    /// A valid combination of arguments that this library does not implement.
    UnsupportedConfiguration = 201,
    /// GPU tensors were passed to a library built without a GPU backend.
    GpuBackendNotBuilt = 202,
    /// The tensors' device type is not the one this library's GPU backend drives.
    UnsupportedDevice = 203,
    /// No kernel configuration fits the device's shared-memory limit.
    SharedMemoryExceeded = 204,

    /// The GPU runtime reported an error (message carries the runtime's text).
    DeviceError = 300,
    /// A kernel launch failed.
    LaunchFailed = 301,
    /// No GPU device is visible to the runtime.
    NoDevice = 302,

    /// A bug in pagedkv: an invariant did not hold.
    Internal = 900,
    /// A Rust panic was caught at the C boundary; nothing further was done.
    Panic = 901,
}

impl Status {
    /// Every assigned status, in numeric order.
    pub fn all() -> &'static [Status] {
        &ALL_STATUSES
    }

    /// A static, NUL-terminated name for the status (for `pkv_status_string`).
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "PKV_STATUS_OK\0",
            Status::NullArgument => "PKV_STATUS_NULL_ARGUMENT\0",
            Status::InvalidStructSize => "PKV_STATUS_INVALID_STRUCT_SIZE\0",
            Status::InvalidEnum => "PKV_STATUS_INVALID_ENUM\0",
            Status::InvalidDtype => "PKV_STATUS_INVALID_DTYPE\0",
            Status::InvalidNdim => "PKV_STATUS_INVALID_NDIM\0",
            Status::ShapeMismatch => "PKV_STATUS_SHAPE_MISMATCH\0",
            Status::InvalidStride => "PKV_STATUS_INVALID_STRIDE\0",
            Status::DeviceMismatch => "PKV_STATUS_DEVICE_MISMATCH\0",
            Status::HeadSizeNotDivisible => "PKV_STATUS_HEAD_SIZE_NOT_DIVISIBLE\0",
            Status::GqaRatioNotIntegral => "PKV_STATUS_GQA_RATIO_NOT_INTEGRAL\0",
            Status::BlockTableTooShort => "PKV_STATUS_BLOCK_TABLE_TOO_SHORT\0",
            Status::SlotOutOfRange => "PKV_STATUS_SLOT_OUT_OF_RANGE\0",
            Status::BlockIdOutOfRange => "PKV_STATUS_BLOCK_ID_OUT_OF_RANGE\0",
            Status::InvalidSeqLen => "PKV_STATUS_INVALID_SEQ_LEN\0",
            Status::InvalidQueryStartLoc => "PKV_STATUS_INVALID_QUERY_START_LOC\0",
            Status::InvalidValue => "PKV_STATUS_INVALID_VALUE\0",
            Status::WorkspaceTooSmall => "PKV_STATUS_WORKSPACE_TOO_SMALL\0",
            Status::UnknownKvCacheDtype => "PKV_STATUS_UNKNOWN_KV_CACHE_DTYPE\0",
            Status::BufferTooSmall => "PKV_STATUS_BUFFER_TOO_SMALL\0",
            Status::UnsupportedHeadSize => "PKV_STATUS_UNSUPPORTED_HEAD_SIZE\0",
            Status::UnsupportedConfiguration => "PKV_STATUS_UNSUPPORTED_CONFIGURATION\0",
            Status::GpuBackendNotBuilt => "PKV_STATUS_GPU_BACKEND_NOT_BUILT\0",
            Status::UnsupportedDevice => "PKV_STATUS_UNSUPPORTED_DEVICE\0",
            Status::SharedMemoryExceeded => "PKV_STATUS_SHARED_MEMORY_EXCEEDED\0",
            Status::DeviceError => "PKV_STATUS_DEVICE_ERROR\0",
            Status::LaunchFailed => "PKV_STATUS_LAUNCH_FAILED\0",
            Status::NoDevice => "PKV_STATUS_NO_DEVICE\0",
            Status::Internal => "PKV_STATUS_INTERNAL\0",
            Status::Panic => "PKV_STATUS_PANIC\0",
        }
    }

    /// Looks a raw status value up; `None` for values that were never assigned.
    pub fn from_u32(value: u32) -> Option<Status> {
        ALL_STATUSES.iter().copied().find(|s| *s as u32 == value)
    }
}

const ALL_STATUSES: [Status; 30] = [
    Status::Ok,
    Status::NullArgument,
    Status::InvalidStructSize,
    Status::InvalidEnum,
    Status::InvalidDtype,
    Status::InvalidNdim,
    Status::ShapeMismatch,
    Status::InvalidStride,
    Status::DeviceMismatch,
    Status::HeadSizeNotDivisible,
    Status::GqaRatioNotIntegral,
    Status::BlockTableTooShort,
    Status::SlotOutOfRange,
    Status::BlockIdOutOfRange,
    Status::InvalidSeqLen,
    Status::InvalidQueryStartLoc,
    Status::InvalidValue,
    Status::WorkspaceTooSmall,
    Status::UnknownKvCacheDtype,
    Status::BufferTooSmall,
    Status::UnsupportedHeadSize,
    Status::UnsupportedConfiguration,
    Status::GpuBackendNotBuilt,
    Status::UnsupportedDevice,
    Status::SharedMemoryExceeded,
    Status::DeviceError,
    Status::LaunchFailed,
    Status::NoDevice,
    Status::Internal,
    Status::Panic,
];

/// An error: the status a caller branches on and a message a person reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub message: String,
}

impl Error {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Error { status, message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.name().trim_end_matches('\0'), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for building an error with a formatted message: `fail!(Status::X, "...", args)`.
#[macro_export]
macro_rules! fail {
    ($status:expr, $($fmt:tt)+) => {
        return Err($crate::core::status::Error::new($status, format!($($fmt)+)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unique_and_names_match_the_c_spelling() {
        let mut seen = std::collections::HashSet::new();
        for s in Status::all() {
            assert!(seen.insert(*s as u32), "duplicate value {}", *s as u32);
            assert!(s.name().starts_with("PKV_STATUS_") && s.name().ends_with('\0'));
            assert_eq!(Status::from_u32(*s as u32), Some(*s));
        }
        assert_eq!(Status::from_u32(7), None);
    }

    #[test]
    fn ranges_are_respected() {
        for &s in Status::all() {
            let v = s as u32;
            let name = s.name();
            let range_ok = matches!(v, 0 | 100..=199 | 200..=299 | 300..=399 | 900..=999);
            assert!(range_ok, "{name} = {v}");
        }
    }
}
