//! CPU reference backend: the same operations on host memory. It is the oracle every GPU
//! test compares against, so it favours obviously-correct over fast.

mod attention;
mod host_memory;
mod write;

pub use attention::paged_attention;
pub use write::write_kv_cache;
