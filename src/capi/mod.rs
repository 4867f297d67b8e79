//! The C ABI: the only `#[unsafe(no_mangle)]` functions. Each is glue: read pointers,
//! call core or `ops`, map the error. Every function that can fail returns a status and
//! goes through `boundary::guard`, so no panic crosses into C.

// `pkv_status` is already `#[must_use]`, but cbindgen emits PKV_MUST_USE (warn_unused_result)
// into the header only for functions that carry the attribute themselves.
#![allow(clippy::double_must_use)]

pub mod attention;
mod boundary;
mod ffi_args;
pub mod info;
pub mod layout;
pub mod types;
pub mod write;

pub use types::*;
