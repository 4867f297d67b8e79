//! pagedkv: store and read the paged KV cache of LLM inference through a C ABI.
//!
//! Layers, data flowing one way: `capi` (the only exported functions) -> `core` (safe
//! validation, layout math, planning) -> `ops` (routes a validated call to a backend) ->
//! `cpu` (host reference backend) or `gpu` (device runtime + HIP kernels).
#![deny(unsafe_op_in_unsafe_fn)]

pub mod capi;
pub mod core;
pub mod cpu;
pub mod gpu;
pub mod ops;

pub use crate::core::status::{Error, Result, Status};

/// Crate version pieces, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
