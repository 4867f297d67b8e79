//! Where the CLI keeps its buffers: host memory (CPU backend) or device memory (GPU build).
//! The library itself never allocates; the CLI does, as an engine would.

use std::ffi::c_void;

use pagedkv::capi::PKV_DEVICE_CPU;
use pagedkv::core::dtype::Fp8Format;

pub trait Memory {
    fn describe(&self) -> String;
    fn device_type(&self) -> i32;
    /// The e4m3 flavour "fp8" means here.
    fn fp8_e4m3(&self) -> Fp8Format;
    fn alloc(&self, bytes: usize) -> *mut c_void;
    /// Allocates and fills a buffer with `bytes`.
    fn upload(&self, bytes: &[u8]) -> *mut c_void;
    /// Copies a buffer back (waits for enqueued work first).
    fn download(&self, src: *mut c_void, dst: &mut [u8]);
    fn free(&self, p: *mut c_void);
    fn stream(&self) -> *mut c_void {
        std::ptr::null_mut()
    }
}

/// Host buffers for the CPU backend. Allocations are 64-byte aligned and remember their size.
pub struct HostMemory;

const ALIGN: usize = 64;

impl Memory for HostMemory {
    fn describe(&self) -> String {
        "the CPU (host memory, CPU reference backend)".to_string()
    }

    fn device_type(&self) -> i32 {
        PKV_DEVICE_CPU
    }

    fn fp8_e4m3(&self) -> Fp8Format {
        Fp8Format::E4M3FN
    }

    fn alloc(&self, bytes: usize) -> *mut c_void {
        let layout = std::alloc::Layout::from_size_align(bytes.max(1) + ALIGN, ALIGN).expect("layout");
        // SAFETY: non-zero size; the size is stored in the first ALIGN bytes for `free`.
        unsafe {
            let base = std::alloc::alloc_zeroed(layout);
            assert!(!base.is_null(), "out of host memory");
            (base as *mut usize).write(bytes.max(1));
            base.add(ALIGN) as *mut c_void
        }
    }

    fn upload(&self, bytes: &[u8]) -> *mut c_void {
        let p = self.alloc(bytes.len());
        // SAFETY: `p` holds at least `bytes.len()` bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p as *mut u8, bytes.len()) };
        p
    }

    fn download(&self, src: *mut c_void, dst: &mut [u8]) {
        // SAFETY: `src` came from `alloc` with at least `dst.len()` bytes.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
    }

    fn free(&self, p: *mut c_void) {
        // SAFETY: `p` came from `alloc`, whose header holds the size.
        unsafe {
            let base = (p as *mut u8).sub(ALIGN);
            let bytes = (base as *const usize).read();
            std::alloc::dealloc(base, std::alloc::Layout::from_size_align(bytes + ALIGN, ALIGN).unwrap());
        }
    }
}
