//! Safe, deterministic core: dtype and layout math, validation, planning and dispatch tables.
//! No I/O, no GPU calls and no unsafe code; everything here is unit-tested on any CPU.
#![forbid(unsafe_code)]

#[macro_use]
pub mod status;
pub mod attention;
pub mod dlpack;
pub mod dtype;
pub mod fp8;
pub mod layout;
pub mod plan;
pub mod tensor;
pub mod tuning;
pub mod write;
