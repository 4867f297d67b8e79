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

/// Device buffers for a GPU build: the CLI allocates (the library never does), uploads inputs,
/// and waits for the device before reading results back.
#[cfg(any(feature = "cuda", feature = "rocm"))]
pub mod device {
    use std::ffi::{c_int, c_void};

    use pagedkv::core::dtype::Fp8Format;

    use super::Memory;

    #[cfg(feature = "cuda")]
    mod rt {
        use std::ffi::{c_int, c_void};
        pub const DEVICE_TYPE: i32 = pagedkv::capi::PKV_DEVICE_CUDA;
        pub const H2D: c_int = 1;
        pub const D2H: c_int = 2;
        unsafe extern "C" {
            #[link_name = "cudaMalloc"]
            pub fn malloc(p: *mut *mut c_void, bytes: usize) -> c_int;
            #[link_name = "cudaFree"]
            pub fn free(p: *mut c_void) -> c_int;
            #[link_name = "cudaMemcpy"]
            pub fn memcpy(dst: *mut c_void, src: *const c_void, bytes: usize, kind: c_int) -> c_int;
            #[link_name = "cudaDeviceSynchronize"]
            pub fn synchronize() -> c_int;
        }
    }

    #[cfg(feature = "rocm")]
    mod rt {
        use std::ffi::{c_int, c_void};
        pub const DEVICE_TYPE: i32 = pagedkv::capi::PKV_DEVICE_ROCM;
        pub const H2D: c_int = 1;
        pub const D2H: c_int = 2;
        unsafe extern "C" {
            #[link_name = "hipMalloc"]
            pub fn malloc(p: *mut *mut c_void, bytes: usize) -> c_int;
            #[link_name = "hipFree"]
            pub fn free(p: *mut c_void) -> c_int;
            #[link_name = "hipMemcpy"]
            pub fn memcpy(dst: *mut c_void, src: *const c_void, bytes: usize, kind: c_int) -> c_int;
            #[link_name = "hipDeviceSynchronize"]
            pub fn synchronize() -> c_int;
        }
    }

    fn ok(code: c_int, what: &str) {
        assert_eq!(code, 0, "{what} failed with runtime error {code}");
    }

    pub struct DeviceMemory {
        pub arch: String,
        pub fp8: Fp8Format,
    }

    impl Memory for DeviceMemory {
        fn describe(&self) -> String {
            format!("the GPU ({}, device 0)", self.arch)
        }

        fn device_type(&self) -> i32 {
            rt::DEVICE_TYPE
        }

        fn fp8_e4m3(&self) -> Fp8Format {
            self.fp8
        }

        fn alloc(&self, bytes: usize) -> *mut c_void {
            let mut p = std::ptr::null_mut();
            // SAFETY: a valid out-pointer; the runtime allocates device memory.
            ok(unsafe { rt::malloc(&mut p, bytes.max(1)) }, "device malloc");
            p
        }

        fn upload(&self, bytes: &[u8]) -> *mut c_void {
            let p = self.alloc(bytes.len());
            // SAFETY: `p` holds `bytes.len()` bytes of device memory.
            ok(unsafe { rt::memcpy(p, bytes.as_ptr() as *const c_void, bytes.len(), rt::H2D) }, "upload");
            p
        }

        fn download(&self, src: *mut c_void, dst: &mut [u8]) {
            // SAFETY: waits for enqueued work; `src` holds at least `dst.len()` bytes.
            unsafe {
                ok(rt::synchronize(), "device synchronize");
                ok(rt::memcpy(dst.as_mut_ptr() as *mut c_void, src, dst.len(), rt::D2H), "download");
            }
        }

        fn free(&self, p: *mut c_void) {
            // SAFETY: `p` came from `alloc`; the device is idle when the demo frees.
            unsafe {
                ok(rt::synchronize(), "device synchronize");
                ok(rt::free(p), "device free");
            }
        }
    }
}
